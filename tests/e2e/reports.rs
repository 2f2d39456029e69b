//! Reports: JUnit read back by quick-junit and by an independent consumer (Python junitparser),
//! and `adaptest report` re-rendering a run.

use crate::util::{Sandbox, local_plan};

const SUITE: &str = r#"[suite]
id = "t.report"
title = "report"
title_zh = "报告"
component = "os"
version = "2.1.0"

[[case]]
id = "ok"
title = "passes"
run = "echo fine"

[[case]]
id = "bad"
title = "fails"
run = "echo '<oops> & 失败' >&2; exit 4"

[[case]]
id = "skip"
title = "skipped"
requires = { arch = ["s390x"] }
run = "true"

[[case]]
id = "ok2"
title = "passes too"
run = "true"
"#;

fn run_report_suite() -> Sandbox {
    let sb = Sandbox::new();
    sb.write("suites/t.toml", SUITE);
    sb.write("plan.toml", &local_plan(&["t.report", "os.basic"]));
    sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"])
        .expect_code(1);
    sb
}

#[test]
fn junit_reads_back_with_quick_junit_and_junitparser() {
    let sb = run_report_suite();
    let dir = sb.run_dir();
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let report =
        quick_junit::Report::deserialize_from_str(&xml).expect("quick-junit parses our junit.xml");
    let suite = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "local/os/t.report")
        .expect("a testsuite per combination");
    assert_eq!(suite.test_cases.len(), 4);
    assert_eq!(suite.failures, 1);
    assert_eq!(suite.skipped, 1);
    let prop = |name: &str| {
        suite
            .properties
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.value.to_string())
            .unwrap_or_else(|| panic!("property {name} missing"))
    };
    let uname = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .unwrap();
    assert_eq!(prop("arch"), String::from_utf8_lossy(&uname.stdout).trim());
    assert_eq!(prop("target"), "local");
    assert_eq!(prop("os_id"), crate::util::host_os_id());
    assert_eq!(prop("suite_version"), "2.1.0");
    assert!(!prop("kernel").is_empty());
    assert!(
        report
            .test_suites
            .iter()
            .any(|s| s.name.as_str() == "local/os/os.basic")
    );

    // An independent consumer: Python's junitparser (installed by scripts/test.sh).
    let script = r#"
import sys
from junitparser import JUnitXml, Failure, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
for s in xml:
    if s.name != "local/os/t.report":
        continue
    props = {p.name: p.value for p in s.properties()}
    cases = list(s)
    fails = [c.name for c in cases if any(isinstance(r, Failure) for r in c.result)]
    skips = [c.name for c in cases if any(isinstance(r, Skipped) for r in c.result)]
    print(s.tests, s.failures, s.skipped, ",".join(fails), ",".join(skips), props["target"], props["component"])
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("junit.xml"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "junitparser failed (install it: pip install junitparser): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "4 1 1 bad skip local os"
    );
}

#[test]
fn report_rerenders_a_run_in_every_format() {
    let sb = run_report_suite();
    let dir = sb.run_dir();
    let d = dir.to_str().unwrap();
    let json = sb.run(&["report", d, "--format", "json"]);
    json.expect_code(0);
    let again: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let orig: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(again, orig);
    let html = sb.run(&["report", d, "--format", "html", "--lang", "zh-CN"]);
    html.expect_code(0);
    assert!(
        html.stdout.contains("&lt;oops&gt;"),
        "output is escaped in HTML"
    );
    assert!(!html.stdout.contains("<oops>"));
    assert!(html.stdout.contains("报告"));
    let junit = sb.run(&[
        "report",
        &format!("{d}/results.json"),
        "--format",
        "junit",
        "-o",
        "out.xml",
    ]);
    junit.expect_code(0);
    let xml = std::fs::read_to_string(sb.path().join("out.xml")).unwrap();
    assert_eq!(xml, std::fs::read_to_string(dir.join("junit.xml")).unwrap());
    let bad = sb.run(&["report", "nope.json"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("nope.json"));
}

#[test]
fn json_event_stream_is_one_object_per_line() {
    let sb = Sandbox::new();
    sb.write("suites/t.toml", SUITE);
    sb.write("plan.toml", &local_plan(&["t.report"]));
    let r = sb.run_own_suites(&["--format", "json"]);
    r.expect_code(1);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    // Every line says which version of the stream it is.
    assert!(
        events.iter().all(|e| e["stream_version"] == 1),
        "{}",
        r.stdout
    );
    assert_eq!(events.last().unwrap()["exit_code"], 1);
    // A mandatory case failed: the stream says so without reading results.json.
    assert_eq!(events.last().unwrap()["verdict"], "not_certified");
    let finished = events
        .iter()
        .filter(|e| e["event"] == "case_finished")
        .count();
    assert_eq!(finished, 4);
}
