//! The embedded default: `adaptest run` with no arguments certifies this host's OS basics.

use crate::util::{Sandbox, combination, results};

#[test]
fn default_run_passes_os_basic_on_this_machine() {
    let sb = Sandbox::new();
    let r = sb.run(&["run"]);
    r.expect_code(0);
    let dir = sb.run_dir();
    for f in [
        "results.json",
        "junit.xml",
        "report.html",
        "journal.jsonl",
        "run.json",
        "env/local.json",
        "inputs/plan.toml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let res = results(&dir);
    let combo = res["combinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["suite"] == "os.basic")
        .expect("os.basic ran");
    assert_eq!(combo["id"], "local/os/os.basic");
    let cases = combo["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "os.basic has {} cases", cases.len());
    for c in cases {
        if c["level"] == "mandatory" {
            assert_eq!(c["status"], "passed", "mandatory case failed: {c}");
        }
    }
    // db.sql-core ran on the embedded SQLite.
    let sql = combination(&res, "local/sqlite/db.sql-core");
    let sql_cases = sql["cases"].as_array().unwrap();
    assert!(
        sql_cases.len() >= 10,
        "db.sql-core has {} cases",
        sql_cases.len()
    );
    for c in sql_cases {
        assert!(
            matches!(c["status"].as_str(), Some("passed" | "skipped")),
            "db.sql-core case on SQLite: {c}"
        );
    }
    let env = &res["environments"]["local"];
    let uname = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .unwrap();
    assert_eq!(
        env["arch"].as_str().unwrap(),
        String::from_utf8_lossy(&uname.stdout).trim()
    );
    // The host's own facts, whatever distribution it runs.
    assert_eq!(env["os_id"], crate::util::host_os_id().as_str());
    let libc = env["libc"].as_str().unwrap();
    if crate::util::host_has_glibc() {
        assert!(libc.starts_with("glibc"), "{env}");
    } else {
        assert!(!libc.is_empty(), "{env}");
    }
}

#[test]
fn env_and_list_describe_the_host_and_the_builtin_suites() {
    let sb = Sandbox::new();
    let r = sb.run(&["env", "--format", "json"]);
    r.expect_code(0);
    let env: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(env["cores"].as_u64().unwrap() >= 1);
    assert!(env["memory_bytes"].as_u64().unwrap() > 0);
    assert!(!env["kernel"].as_str().unwrap().is_empty());
    let r = sb.run(&["list", "--cases"]);
    r.expect_code(0);
    r.expect_in_stdout("os.basic");
    r.expect_in_stdout("操作系统");
}
