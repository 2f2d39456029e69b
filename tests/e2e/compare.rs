//! `adaptest compare` on two real runs of one plan, where cases were made to fail (and one to
//! pass) in the second: terminal table, JSON and HTML, and the exit code.

use crate::util::Sandbox;
use std::path::PathBuf;

fn suite(marker: &str) -> String {
    format!(
        r#"[suite]
id = "cmp.demo"
title = "compare demo"
component = "os"

[[case]]
id = "steady"
title = "always passes"
run = "true"

[[case]]
id = "toggle"
title = "fails once the marker exists"
run = "test ! -e '{marker}'"

[[case]]
id = "only-b"
title = "fails on target local-b once the marker exists"
run = "test \"$ADAPTEST_TARGET\" != local-b || test ! -e '{marker}'"

[[case]]
id = "fixed"
title = "passes once the marker exists"
level = "optional"
run = "test -e '{marker}'"
"#
    )
}

const PLAN: &str = r#"[product]
name = "FooDB"
version = "8.1.2"
vendor = "Foo"

[[target]]
id = "local"
kind = "local"

[[target]]
id = "local-b"
kind = "local"

[[matrix]]
targets = ["local", "local-b"]
components = ["os"]
suites = ["cmp.demo"]
"#;

/// Run the plan twice: before and after the marker file appears.
fn two_runs() -> (Sandbox, PathBuf, PathBuf) {
    let sb = Sandbox::new();
    let marker = sb.path().join("marker");
    sb.write("suites/cmp.toml", &suite(marker.to_str().unwrap()));
    sb.write("plan.toml", PLAN);
    let run = |out: &str, code: i32| {
        sb.run_own_suites(&["--out", out, "--format", "json"])
            .expect_code(code);
    };
    run("runs-a", 0);
    std::fs::write(&marker, "").unwrap();
    run("runs-b", 1);
    let (a, b) = (sb.run_dir_in("runs-a"), sb.run_dir_in("runs-b"));
    (sb, a, b)
}

#[test]
fn compare_lists_new_failures_fixed_and_target_specific_cases() {
    let (sb, a, b) = two_runs();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let table = sb.run(&["compare", a, b]);
    table.expect_code(1);
    let t = &table.stdout;
    assert!(
        t.contains("(certified with notes") || t.contains("(certified_with_notes"),
        "{t}"
    );
    assert!(t.contains("→  B "), "{t}");
    let section = |name: &str| -> Vec<String> {
        let start = t
            .find(&format!("\n{name} ("))
            .unwrap_or_else(|| panic!("{name} in {t}"));
        t[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        section("new failures"),
        [
            "local/os/cmp.demo toggle",
            "local-b/os/cmp.demo toggle",
            "local-b/os/cmp.demo only-b"
        ],
        "{t}"
    );
    assert_eq!(
        section("fixed"),
        ["local/os/cmp.demo fixed", "local-b/os/cmp.demo fixed"],
        "{t}"
    );
    assert!(section("still failing").is_empty(), "{t}");
    assert!(
        t.contains("target-specific: fails on local-b; passes on local"),
        "same arch and OS on both targets: a machine, not a platform, problem\n{t}"
    );
    assert!(t.contains("passed → failed"), "{t}");

    let json = sb.run(&[
        "compare",
        a,
        b,
        "--format",
        "json",
        "--metric-threshold",
        "5%",
    ]);
    json.expect_code(1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["metric_threshold_pct"], 5.0);
    assert_eq!(doc["new_failures"].as_array().unwrap().len(), 3);
    assert_eq!(doc["fixed"].as_array().unwrap().len(), 2);
    assert_eq!(doc["a"]["verdict"], "certified_with_notes");
    assert_eq!(doc["b"]["verdict"], "not_certified");
    let only_b = doc["new_failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == "only-b")
        .unwrap();
    assert_eq!(only_b["spread"]["kind"], "target_specific");
    assert_eq!(only_b["before"], "passed");
    assert_eq!(only_b["after"], "failed");

    let html = sb.run(&[
        "compare", a, b, "--format", "html", "--lang", "zh-CN", "-o", "cmp.html",
    ]);
    html.expect_code(1);
    let page = std::fs::read_to_string(sb.path().join("cmp.html")).unwrap();
    assert!(page.contains("<h1>测试运行对比</h1>"));
    assert!(page.contains("<h2>新增失败 <span class=\"count\">(3)</span></h2>"));
    assert!(page.contains("<h2>已修复 <span class=\"count\">(2)</span></h2>"));
    assert!(page.contains("<span class=\"tag\">目标相关</span>"));

    // The other way round (B → A, B given as its results.json): the new failures are fixed,
    // and the case fixed in B fails again.
    let back = sb.run(&["compare", &format!("{b}/results.json"), a]);
    back.expect_code(1);
    back.expect_in_stdout("\nfixed (3)\n");
    back.expect_in_stdout("\nnew failures (2)\n");

    // Comparing a run with itself: nothing new, exit 0.
    let same = sb.run(&["compare", a, a]);
    same.expect_code(0);
    same.expect_in_stdout("\nnew failures (0)\n");
}

#[test]
fn compare_refuses_what_is_not_a_run() {
    let sb = Sandbox::new();
    let out = sb.run(&["compare", "nope", "nope2"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("nope/results.json") || out.stderr.contains("nope"),
        "{}",
        out.stderr
    );
    let out = sb.run(&["compare", ".", ".", "--metric-threshold", "ten"]);
    out.expect_code(2);
    out.expect_in_stderr("not a percentage");
}
