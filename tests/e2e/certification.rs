//! Certification through the real binary: verdicts from levels, outcomes and the plan's waivers
//! (including an expired one), exit codes, the two reports, the cover, and waiver diagnostics.

use crate::util::{Run, Sandbox, cover_plan, results};

/// `known` (mandatory) and `legacy` (optional) fail; `ok` passes; `na` is not applicable.
const SUITE: &str = r#"[suite]
id = "cert.demo"
title = "Certification demo"
title_zh = "认证演示"
component = "os"
version = "1.0.0"

[[case]]
id = "ok"
title = "passes"
title_zh = "通过的用例"
run = "true"

[[case]]
id = "known"
title = "known bug"
title_zh = "已知缺陷"
run = "echo 'window functions: not supported' >&2; exit 3"

[[case]]
id = "legacy"
title = "legacy charset"
title_zh = "旧字符集"
level = "optional"
run = "exit 1"

[[case]]
id = "na"
title = "s390x only"
requires = { arch = ["s390x"] }
run = "true"
"#;

fn plan(waivers: &str) -> String {
    cover_plan("cert.demo", waivers)
}

fn run(sb: &Sandbox, waivers: &str, extra: &[&str]) -> Run {
    sb.write("suites/cert.toml", SUITE);
    sb.write("plan.toml", &plan(waivers));
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    sb.run_own_suites(&args)
}

/// `validate` of the plan and the suites.
fn validate(sb: &Sandbox) -> Run {
    sb.run(&[
        "validate",
        "plan.toml",
        "--suites",
        "suites",
        "--no-builtin",
    ])
}

const ACTIVE: &str = r#"
[[waiver]]
case = "cert.demo/known"
reason = "window functions arrive in 8.2"
owner = "qa@foo.example"
expires = 2099-12-31
"#;

const EXPIRED: &str = r#"
[[waiver]]
case = "cert.*/kn*"
target = "local"
component = "os"
reason = "was fixed in 8.0"
owner = "qa@foo.example"
expires = "2020-01-31"
"#;

#[test]
fn an_unwaived_mandatory_failure_is_not_certified_and_exits_1() {
    let sb = Sandbox::new();
    run(&sb, "", &[]).expect_code(1);
    let r = results(&sb.run_dir());
    assert_eq!(r["schema_version"], 3);
    assert_eq!(r["certification"]["verdict"], "not_certified");
    assert_eq!(r["combinations"][0]["verdict"], "not_certified");
    assert_eq!(r["certification"]["pairs"][0]["verdict"], "not_certified");
    assert_eq!(r["certification"]["basis"]["mandatory_failed"], 1);
    assert_eq!(r["certification"]["basis"]["optional_failed"], 1);
}

#[test]
fn an_active_waiver_makes_it_certified_with_notes_and_exits_0() {
    let sb = Sandbox::new();
    let out = run(&sb, ACTIVE, &[]);
    out.expect_code(0);
    let finished = out.stdout.lines().last().unwrap();
    assert!(finished.contains("\"exit_code\":0"), "{finished}");
    let r = results(&sb.run_dir());
    let cert = &r["certification"];
    assert_eq!(cert["verdict"], "certified_with_notes");
    assert_eq!(cert["basis"]["mandatory_failed"], 0);
    assert_eq!(cert["basis"]["mandatory_waived"], 1);
    assert_eq!(cert["waivers"][0]["status"], "active");
    assert_eq!(cert["waivers"][0]["expires"], "2099-12-31");
    assert_eq!(cert["waivers"][0]["matched"], 1);
    let known = &r["combinations"][0]["cases"][1];
    assert_eq!(known["id"], "known");
    assert_eq!(known["status"], "failed");
    assert_eq!(known["waiver"], 0);
    assert!(r["combinations"][0]["cases"][0].get("waiver").is_none());

    // Both reports are written, say so, and list the waiver.
    let dir = sb.run_dir();
    let en = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let zh = std::fs::read_to_string(dir.join("report.zh-CN.html")).unwrap();
    assert!(en.contains("<div class=\"big\">Certified with notes</div>"));
    assert!(en.contains("window functions arrive in 8.2"));
    assert!(en.contains("<span class=\"tag waived\">waived W1</span>"));
    assert!(zh.contains("<div class=\"big\">基本兼容</div>"));
    assert!(zh.contains("<tr><th>报告编号</th><td>ECAC-2026-0042</td></tr>"));
    assert!(zh.contains("<tr><th>测试人员</th><td>张三</td></tr>"));
}

#[test]
fn an_expired_waiver_is_listed_as_expired_and_not_applied() {
    let sb = Sandbox::new();
    run(&sb, EXPIRED, &[]).expect_code(1);
    let r = results(&sb.run_dir());
    let cert = &r["certification"];
    assert_eq!(cert["verdict"], "not_certified");
    assert_eq!(cert["waivers"][0]["status"], "expired");
    assert_eq!(cert["basis"]["expired_waiver"], 1);
    assert_eq!(r["combinations"][0]["cases"][1]["waiver"], 0);
    let en = std::fs::read_to_string(sb.run_dir().join("report.html")).unwrap();
    assert!(en.contains("<span class=\"tag expired\">W1 expired (not applied)</span>"));
    assert!(en.contains("1 failure(s) matched a waiver that had expired; it was not applied."));

    // With an active waiver as well, the active one applies.
    let sb = Sandbox::new();
    run(&sb, &format!("{EXPIRED}{ACTIVE}"), &[]).expect_code(0);
    let r = results(&sb.run_dir());
    assert_eq!(r["combinations"][0]["cases"][1]["waiver"], 1);
    assert_eq!(r["certification"]["verdict"], "certified_with_notes");
}

#[test]
fn report_re_renders_stored_verdicts_and_takes_cover_overrides() {
    let sb = Sandbox::new();
    run(
        &sb,
        ACTIVE,
        &["--report-number", "ECAC-2026-0099", "--tester", "王五"],
    )
    .expect_code(0);
    let dir = sb.run_dir();
    let r = results(&dir);
    assert_eq!(r["product"]["report_number"], "ECAC-2026-0099");
    assert_eq!(r["product"]["tester"], "王五");
    assert_eq!(r["product"]["reviewer"], "李四");
    let d = dir.to_str().unwrap();
    let html = sb.run(&["report", d, "--lang", "zh-CN", "--reviewer", "赵六"]);
    html.expect_code(0);
    assert!(html.stdout.contains("<div class=\"big\">基本兼容</div>"));
    assert!(
        html.stdout
            .contains("<tr><th>审核人员</th><td>赵六</td></tr>")
    );
    assert!(
        html.stdout
            .contains("<tr><th>报告编号</th><td>ECAC-2026-0099</td></tr>")
    );
    // The fingerprint is that of the stored results.json, whatever the overrides.
    let stored = std::fs::read(dir.join("results.json")).unwrap();
    let fp = adaptest_reports::fingerprint::fingerprint(&stored);
    assert!(html.stdout.contains(&format!(
        "<span class=\"fp\" id=\"fingerprint\">{fp}</span>"
    )));
    let file = std::fs::read_to_string(dir.join("report.zh-CN.html")).unwrap();
    assert!(
        file.contains(&format!("content=\"{fp}\"")),
        "the run's reports show it too"
    );
}

#[test]
fn a_resumed_run_keeps_the_cover_given_to_its_first_session() {
    let sb = Sandbox::new();
    run(&sb, ACTIVE, &["--report-number", "R-1"]).expect_code(0);
    let dir = sb.run_dir();
    sb.run(&["run", "--resume", dir.to_str().unwrap(), "--format", "json"])
        .expect_code(0);
    assert_eq!(results(&dir)["product"]["report_number"], "R-1");
}

#[test]
fn waiver_mistakes_are_diagnostics_with_file_line_and_field() {
    let sb = Sandbox::new();
    sb.write("suites/cert.toml", SUITE);
    let waivers = r#"
[[waiver]]
case = "cert.demo/known"
owner = "qa@foo.example"
expires = "31/03/2027"

[[waiver]]
case = "known"
reason = "x"
owner = "qa"
expires = 2027-03-31

[[waiver]]
case = "cert.demo/nope-*"
reason = "x"
owner = "qa"
expires = 2027-03-31T10:00:00

[[waiver]]
case = "cert.demo/ok"
reason = ""
owner = "qa"
expires = 2027-03-31
target = "elsewhere"
"#;
    sb.write("plan.toml", &plan(waivers));
    let out = validate(&sb);
    out.expect_code(2);
    let e = &out.stderr;
    for expected in [
        "plan.toml:19:1: waiver[0].reason: missing field `reason`",
        "plan.toml:22:11: waiver[0].expires: `31/03/2027` is not a date",
        "plan.toml:25:8: waiver[1].case: `known` does not name a suite and a",
        "plan.toml:31:8: waiver[2].case: `cert.demo/nope-*` matches no case of",
        "plan.toml:34:11: waiver[2].expires: `2027-03-31T10:00:00` is not a date",
        "plan.toml:38:10: waiver[3].reason: `reason` is empty",
        "plan.toml:41:10: waiver[3].target: `elsewhere` matches no target",
    ] {
        assert!(e.contains(expected), "missing `{expected}` in:\n{e}");
    }
    assert!(e.contains("7 problem(s) in the input"), "{e}");
    let typo = plan(
        "\n[[waiver]]\ncase = \"cert.demo/known\"\nreason = \"x\"\nowner = \"qa\"\nexpires = 2027-03-31\nexpiry = 2027-01-01\n",
    );
    sb.write("plan.toml", &typo);
    validate(&sb)
        .expect_code(2)
        .expect_in_stderr("unknown field `expiry`")
        .expect_in_stderr("plan.toml:24:1");
}
