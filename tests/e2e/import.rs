//! `import` cases through the real binary, against real producers: `prove -v` on Perl test
//! files, a kselftest-style KTAP script, and pytest's JUnit XML. The names, counts and outcomes
//! adaptest records are checked against each format's reference consumer (Perl's TAP::Parser,
//! Python's junitparser) reading the same producers.

use crate::util::{Sandbox, case, combination, local_plan, results, suite_toml, workspace};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Copy `tests/fixtures/<from>` into the sandbox (producers write nothing into the tree).
fn fixture(sb: &Sandbox, from: &str) -> std::path::PathBuf {
    let src = workspace().join("tests/fixtures").join(from);
    let dst = sb.path().join(from);
    let status = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(status.success(), "copying {}", src.display());
    dst
}

/// `name<TAB>status` lines of an oracle, as a map.
fn oracle(cmd: &mut Command) -> BTreeMap<String, String> {
    let out = cmd.output().expect("run the reference consumer");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, s) = l.rsplit_once('\t').unwrap();
            (n.to_string(), s.to_string())
        })
        .collect()
}

/// The cases of one combination as `name (id minus the import prefix) → status`.
fn imported(res: &Value, combo: &str, import: &str) -> BTreeMap<String, String> {
    combination(res, combo)["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| {
            let id = k["id"].as_str().unwrap();
            id.strip_prefix(&format!("{import}/"))
                .map(|n| (n.to_string(), k["status"].as_str().unwrap().to_string()))
        })
        .collect()
}

fn suite(cases: &str) -> String {
    suite_toml("t.import", "imports", "os", cases)
}

#[test]
fn tap_imports_match_tap_parser_for_prove_and_a_kselftest_script() {
    let sb = Sandbox::new();
    let tap = fixture(&sb, "tap");
    let dir = tap.display();
    sb.write(
        "suites/import.toml",
        &suite(&format!(
            "[[case]]\nid = \"perl\"\ntitle = \"Perl test files\"\ncwd = \"{dir}\"\nimport = {{ run = \"prove -v --merge t/\", format = \"tap\" }}\n\n\
             [[case]]\nid = \"kselftest\"\ntitle = \"kselftest-style KTAP\"\nlevel = \"optional\"\ncwd = \"{dir}\"\nimport = {{ run = \"sh kselftest.sh\", format = \"tap\" }}\n\n\
             [[case]]\nid = \"after\"\ntitle = \"a plain case after the imports\"\nrun = \"true\"\n"
        )),
    );
    sb.write("plan.toml", &local_plan(&["t.import"]));
    let r = sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"]);
    r.expect_code(1); // `arithmetic is wrong` is a mandatory failure
    let res = results(&sb.run_dir());
    let combo = "local/os/t.import";

    let want =
        oracle(
            Command::new("perl")
                .current_dir(&tap)
                .args(["oracle.pl", "t/basic.t", "t/fail.t"]),
        );
    assert_eq!(want.len(), 8, "the producer's own count: {want:?}");
    assert_eq!(
        imported(&res, combo, "perl"),
        want,
        "names and outcomes as TAP::Parser sees them"
    );
    let want = oracle(Command::new("perl").current_dir(&tap).args([
        "oracle.pl",
        "--exec",
        "sh",
        "kselftest.sh",
    ]));
    assert_eq!(imported(&res, combo, "kselftest"), want);

    // Order, diagnostics, levels: the imports stand in their place among the suite's cases.
    let ids: Vec<&str> = res["combinations"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&"perl/t/basic.t/addition"));
    assert_eq!(ids.last(), Some(&"after"));
    assert_eq!(ids.len(), 8 + 4 + 1, "{ids:?}");
    let wrong = case(&res, combo, "perl/t/fail.t/arithmetic is wrong");
    assert_eq!(wrong["level"], "mandatory");
    let reason = wrong["reason"].as_str().unwrap();
    assert!(
        reason.contains("not ok 2") && reason.contains("Failed test 'arithmetic is wrong'"),
        "{reason}"
    );
    assert!(
        wrong["stdout"].as_str().unwrap().contains("expected: '5'"),
        "the diagnostics are the case's output"
    );
    let log = std::fs::read_to_string(sb.run_dir().join(wrong["log"].as_str().unwrap())).unwrap();
    assert!(log.contains("got: '4'"), "{log}");
    let todo = case(&res, combo, "perl/t/fail.t/future feature");
    assert!(todo["reason"].as_str().unwrap().contains("TODO"), "{todo}");
    let nested = case(&res, combo, "perl/t/fail.t/nested");
    assert!(
        nested["stdout"]
            .as_str()
            .unwrap()
            .contains("(subtests: 2 ok, 0 not ok)"),
        "{nested}"
    );
    let upper = case(
        &res,
        combo,
        "kselftest/selftests: text: upper-case # exit=1",
    );
    assert_eq!(
        upper["level"], "optional",
        "imported tests take the import case's level"
    );
    assert!(
        upper["stdout"]
            .as_str()
            .unwrap()
            .contains("expected ABD, got ABC"),
        "{upper}"
    );
    assert_eq!(res["summary"]["failed"], 2);
    assert_eq!(res["summary"]["total"], 13);

    // JUnit for CI lists the imported tests too.
    let junit = std::fs::read_to_string(sb.run_dir().join("junit.xml")).unwrap();
    assert!(junit.contains("perl/t/basic.t/lowercase"), "{junit}");
}

#[test]
fn a_bail_out_is_an_error_and_a_resume_reruns_the_import_as_a_whole() {
    let sb = Sandbox::new();
    let tap = fixture(&sb, "tap");
    sb.write(
        "suites/import.toml",
        &suite(&format!(
            "[[case]]\nid = \"bail\"\ntitle = \"a suite that bails out\"\ncwd = \"{}\"\nimport = {{ run = \"prove -v bail/\", format = \"tap\" }}\n",
            tap.display()
        )),
    );
    sb.write("plan.toml", &local_plan(&["t.import"]));
    let r = sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"]);
    r.expect_code(3); // an error: the suite could not finish
    let dir = sb.run_dir();
    let res = results(&dir);
    let combo = "local/os/t.import";
    assert_eq!(
        case(&res, combo, "bail/bail/stop.t/connected")["status"],
        "passed"
    );
    let bail = case(&res, combo, "bail/bail/stop.t/(bail out)");
    assert_eq!(bail["status"], "error");
    assert_eq!(bail["reason"], "Bail out! database went away");

    // The import is not finished (its record is an error): a resume runs it again, whole.
    std::fs::remove_file(tap.join("bail/stop.t")).unwrap();
    std::fs::write(
        tap.join("bail/stop.t"),
        "use Test::More tests => 1;\nok(1, 'connected');\n",
    )
    .unwrap();
    let r = sb.run(&["run", "--resume", dir.to_str().unwrap()]);
    r.expect_code(0);
    let res = results(&dir);
    let cases: Vec<(&str, &str)> = res["combinations"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cases,
        vec![("bail/bail/stop.t/connected", "passed")],
        "the first attempt's bail-out is gone"
    );
}

#[test]
fn junit_imports_match_junitparser_for_pytest() {
    let sb = Sandbox::new();
    let py = fixture(&sb, "junit");
    sb.write(
        "suites/import.toml",
        &suite(&format!(
            "[[case]]\nid = \"pytest\"\ntitle = \"pytest through JUnit\"\ncwd = \"{}\"\nenv = {{ PYTHONDONTWRITEBYTECODE = \"1\" }}\nimport = {{ run = \"python3 -m pytest -q -p no:cacheprovider -o junit_logging=all --junitxml=report/out.xml test_sample.py\", format = \"junit\", file = \"report/out.xml\" }}\n",
            py.display()
        )),
    );
    sb.write("plan.toml", &local_plan(&["t.import"]));
    let r = sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"]);
    r.expect_code(1);
    let res = results(&sb.run_dir());
    let combo = "local/os/t.import";
    let want = oracle(
        Command::new("python3")
            .arg(workspace().join("tests/fixtures/junit/oracle.py"))
            .arg(py.join("report/out.xml")),
    );
    assert_eq!(want.len(), 6, "{want:?}");
    assert_eq!(imported(&res, combo, "pytest"), want);
    let ok = case(&res, combo, "pytest/test_sample.test_ok");
    assert!(
        ok["stdout"]
            .as_str()
            .unwrap()
            .contains("hello from test_ok"),
        "system-out is the output: {ok}"
    );
    let err = case(&res, combo, "pytest/test_sample.test_error");
    assert!(
        err["reason"].as_str().unwrap().starts_with("error: "),
        "{err}"
    );
    let fail = case(&res, combo, "pytest/test_sample.test_fail");
    assert!(
        fail["reason"].as_str().unwrap().contains("upper is wrong"),
        "{fail}"
    );
    assert_eq!(
        case(&res, combo, "pytest/test_sample.test_skip")["reason"],
        "skipped: not on this platform"
    );
    assert!(Path::new(&py.join("report/out.xml")).exists());
}

#[test]
fn an_import_without_a_report_fails_with_the_cause() {
    let sb = Sandbox::new();
    sb.write(
        "suites/import.toml",
        &suite(
            "[[case]]\nid = \"silent\"\ntitle = \"prints no TAP\"\nimport = { run = \"echo hello\", format = \"tap\" }\n\n\
             [[case]]\nid = \"nofile\"\ntitle = \"writes no JUnit\"\nimport = { run = \"true\", format = \"junit\", file = \"missing.xml\" }\n",
        ),
    );
    sb.write("plan.toml", &local_plan(&["t.import"]));
    sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"])
        .expect_code(1);
    let res = results(&sb.run_dir());
    let silent = case(&res, "local/os/t.import", "silent");
    assert_eq!(silent["status"], "failed");
    assert!(
        silent["reason"]
            .as_str()
            .unwrap()
            .contains("reported no tests"),
        "{silent}"
    );
    let nofile = case(&res, "local/os/t.import", "nofile");
    assert!(
        nofile["reason"].as_str().unwrap().contains("missing.xml"),
        "{nofile}"
    );
    // A typo in the table is an input error naming the field.
    sb.write(
        "bad/s.toml",
        &suite(
            "[[case]]\nid = \"x\"\ntitle = \"x\"\nimport = { run = \"x\", format = \"junit\" }\n",
        ),
    );
    let v = sb.run(&["validate", "bad/s.toml"]);
    v.expect_code(2);
    v.expect_in_stderr("import.file");
}
