//! CI fan-out through the real binary: a plan run as three shards and merged gives the same
//! case ids, outcomes and verdicts as the same plan run whole; merge refuses directories that
//! are not all the shards of one plan.

use crate::util::{Sandbox, combination, combination_ids, results, suite_toml, workspace};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn suites(sb: &Sandbox) {
    let ksh = workspace().join("tests/fixtures/tap/kselftest.sh");
    let s = |id: &str, cases: &str| suite_toml(id, id, "os", cases);
    sb.write("suites/one.toml", &s("t.one", "[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\n\n[[case]]\nid = \"b\"\ntitle = \"b\"\nrun = \"echo $ADAPTEST_TARGET\"\n"));
    sb.write(
        "suites/two.toml",
        &s("t.two", "[[case]]\nid = \"ok\"\ntitle = \"ok\"\nrun = \"true\"\n\n[[case]]\nid = \"opt-fail\"\ntitle = \"optional failure\"\nlevel = \"optional\"\nrun = \"false\"\n"),
    );
    sb.write(
        "suites/three.toml",
        &s(
            "t.three",
            "[[case]]\nid = \"must-fail\"\ntitle = \"mandatory failure\"\nrun = \"exit 3\"\n",
        ),
    );
    sb.write(
        "suites/four.toml",
        &s("t.four", &format!("[[case]]\nid = \"ktap\"\ntitle = \"imported\"\nlevel = \"optional\"\nimport = {{ run = \"sh {}\", format = \"tap\" }}\n", ksh.display())),
    );
    sb.write(
        "suites/five.toml",
        &s("t.five", "[[case]]\nid = \"elsewhere\"\ntitle = \"not here\"\nrequires = { arch = [\"sparc64\"] }\nrun = \"true\"\n"),
    );
}

fn plan(extra: &str) -> String {
    format!(
        "[product]\nname = \"p\"\nversion = \"1\"\nvendor = \"v\"\n\n\
         [[target]]\nid = \"a\"\nkind = \"local\"\n\n[[target]]\nid = \"b\"\nkind = \"local\"\n\n\
         [[component]]\nid = \"svc\"\nkind = \"os\"\nlifecycle = {{ install = \"true\", start = \"true\", ready = \"true\", stop = \"true\" }}\n\n\
         [[matrix]]\ntargets = [\"a\", \"b\"]\ncomponents = [\"os\", \"svc\"]\nsuites = [\"t.*\"]\n\n\
         [[waiver]]\ncase = \"t.three/must-fail\"\ntarget = \"a\"\nreason = \"known on a\"\nowner = \"qa@example.com\"\nexpires = 2999-12-31\n{extra}"
    )
}

fn dirs(base: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Everything that must not depend on sharding: per combination its verdict and its cases'
/// ids, statuses and levels; the pairs' and the overall verdicts; the counts.
fn essence(res: &Value) -> Value {
    let combos: Vec<Value> = res["combinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let cases: Vec<Value> = c["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| serde_json::json!([k["id"], k["status"], k["level"], k["waiver"]]))
                .collect();
            serde_json::json!({ "id": c["id"], "verdict": c["verdict"], "cases": cases })
        })
        .collect();
    serde_json::json!({
        "combinations": combos,
        "summary": res["summary"],
        "verdict": res["certification"]["verdict"],
        "pairs": res["certification"]["pairs"],
        "basis": res["certification"]["basis"],
        "waivers": res["certification"]["waivers"],
    })
}

#[test]
fn three_shards_merged_equal_one_unsharded_run() {
    let sb = Sandbox::new();
    suites(&sb);
    sb.write("plan.toml", &plan(""));
    let whole = sb.run_own_suites(&["--out", "whole"]);
    whole.expect_code(1); // t.three/must-fail on b is a mandatory failure with no waiver
    let whole_res = results(&sb.run_dir_in("whole"));
    assert_eq!(
        whole_res["combinations"].as_array().unwrap().len(),
        22,
        "20 suites combinations and 2 lifecycles"
    );

    for i in 1..=3 {
        let shard = format!("{i}/3");
        sb.run_own_suites(&["--out", "shards", "--shard", &shard]);
    }
    let shard_dirs = dirs(&sb.path().join("shards"));
    assert_eq!(shard_dirs.len(), 3);
    let mut owned = Vec::new();
    for d in &shard_dirs {
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("shard.json")).unwrap()).unwrap();
        let n = info["combinations"].as_array().unwrap().len();
        owned.push(n);
        let res = results(d);
        // A shard's results hold its own combinations and the lifecycles they need.
        assert_eq!(
            combination_ids(&res)
                .iter()
                .filter(|id| !id.ends_with("/lifecycle"))
                .count(),
            n
        );
    }
    owned.sort();
    assert_eq!(owned, vec![6, 7, 7], "round-robin: balanced to within one");

    // Merge in any order.
    let mut args = vec!["merge".to_string()];
    args.extend(shard_dirs.iter().rev().map(|d| d.display().to_string()));
    args.extend(["--out".to_string(), "merged".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = sb.run(&args);
    m.expect_code(whole.code);
    assert!(
        m.stdout.contains("merged 3 shard(s)") && m.stdout.contains("not certified"),
        "{}",
        m.stdout
    );
    let merged_dir = sb.run_dir_in("merged");
    let merged = results(&merged_dir);
    assert_eq!(essence(&merged), essence(&whole_res));
    assert!(merged_dir.join("junit.xml").exists() && merged_dir.join("report.html").exists());
    // The imported tests went through the merge too, with their logs.
    let ktap = combination(&merged, "b/svc/t.four")["cases"]
        .as_array()
        .unwrap();
    assert_eq!(ktap.len(), 4);
    let log = ktap[3]["log"].as_str().unwrap();
    assert!(merged_dir.join(log).exists(), "{log}");
    let junit = std::fs::read_to_string(merged_dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("a/svc/lifecycle"),
        "lifecycle cases are merged once"
    );

    // Refusals: a missing shard, a shard given twice, a shard of another plan.
    let d = |i: usize| shard_dirs[i].display().to_string();
    let r = sb.run(&["merge", &d(0), &d(1), "--out", "bad"]);
    r.expect_code(2);
    r.expect_in_stderr("missing");
    let r = sb.run(&["merge", &d(0), &d(0), &d(1), &d(2), "--out", "bad"]);
    r.expect_code(2);
    r.expect_in_stderr("given twice");
    sb.write("other.toml", &plan("\n# another plan\n"));
    sb.run(&[
        "run",
        "--plan",
        "other.toml",
        "--suites",
        "suites",
        "--no-builtin",
        "--out",
        "other",
        "--shard",
        "1/3",
    ]);
    let other = sb.run_dir_in("other").display().to_string();
    let r = sb.run(&["merge", &other, &d(1), &d(2), "--out", "bad"]);
    r.expect_code(2);
    r.expect_in_stderr("not shards of one plan");
    let r = sb.run(&["run", "--plan", "plan.toml", "--shard", "4/3"]);
    r.expect_code(2);
}
