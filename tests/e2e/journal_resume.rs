//! The journal survives SIGKILL and `--resume` finishes the run without repeating a case.

use crate::util::{Run, Sandbox, case_statuses, local_plan, results, suite_toml, wait_for};
use std::collections::HashMap;
use std::time::Duration;

fn case_records(journal: &str) -> Vec<serde_json::Value> {
    journal
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("journal line parses"))
        .filter(|v| v["type"] == "case")
        .collect()
}

#[test]
fn sigkill_midway_then_resume_records_every_case_exactly_once() {
    let sb = Sandbox::new();
    let mut suite = suite_toml("t.forty", "forty", "os", "");
    for i in 0..40 {
        // Every 7th case fails, so outcomes differ and can be compared.
        let run = if i % 7 == 3 {
            "sleep 0.1; exit 1"
        } else {
            "sleep 0.1; echo ok"
        };
        suite.push_str(&format!(
            "\n[[case]]\nid = \"c{i:02}\"\ntitle = \"case {i}\"\nrun = \"{run}\"\n"
        ));
    }
    sb.write("suites/t.toml", &suite);
    sb.write("plan.toml", &local_plan(&["t.forty"]));

    let mut child = sb
        .own_suites_cmd(&["--format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some, but not all, cases are in the journal, then SIGKILL the harness.
    wait_for(
        "the run never reached 12 cases",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || (case_records(&sb.journal_so_far()).len() >= 12).then_some(()),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let run_dir = sb.run_dir();
    let journal_path = run_dir.join("journal.jsonl");
    let before = case_records(&std::fs::read_to_string(&journal_path).unwrap());
    assert!(before.len() < 40, "the run finished before it was killed");
    assert!(
        !run_dir.join("results.json").exists(),
        "a killed run writes no results"
    );

    let r = sb.run(&["run", "--resume", run_dir.to_str().unwrap()]);
    r.expect_code(1);
    r.expect_in_stdout(&format!("{} already done", before.len()));

    let after = case_records(&std::fs::read_to_string(&journal_path).unwrap());
    let mut count: HashMap<String, usize> = HashMap::new();
    for rec in &after {
        *count
            .entry(rec["case"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(count.len(), 40, "every case recorded");
    assert!(
        count.values().all(|&n| n == 1),
        "a case was recorded twice: {count:?}"
    );
    // Earlier outcomes are unchanged: the first records are byte-for-byte the same.
    assert_eq!(&after[..before.len()], &before[..]);
    let res = results(&run_dir);
    let statuses = case_statuses(&res);
    assert_eq!(statuses.len(), 40);
    for (_, case, status) in statuses {
        let i: usize = case[1..].parse().unwrap();
        let want = if i % 7 == 3 { "failed" } else { "passed" };
        assert_eq!(status, want, "{case}");
    }
}

#[test]
fn resume_of_a_finished_run_runs_nothing_again() {
    let sb = Sandbox::new();
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.one",
            "one",
            "os",
            "[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"echo ran\"\n",
        ),
    );
    sb.write("plan.toml", &local_plan(&["t.one"]));
    sb.run_own_suites(&[]).expect_code(0);
    let dir = sb.run_dir();
    let j1 = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let r = sb.run(&["run", "--resume", dir.to_str().unwrap()]);
    r.expect_code(0);
    let j2 = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(case_records(&j1), case_records(&j2), "no case ran again");
}

#[test]
fn resume_of_something_that_is_not_a_run_is_refused() {
    let sb = Sandbox::new();
    let r = sb.run(&["run", "--resume", sb.path().to_str().unwrap()]);
    r.expect_code(2);
    r.expect_in_stderr("not an adaptest run directory");
}

#[test]
fn sigint_stops_cleanly_keeps_the_journal_and_resume_finishes() {
    let sb = Sandbox::new();
    let mut suite = suite_toml("t.int", "int", "os", "");
    suite.push_str("\n[[case]]\nid = \"quick\"\ntitle = \"quick\"\nrun = \"echo done\"\n");
    let marker = sb.path().join("resumed");
    // The long case says when it runs (a rendezvous file), so the test knows when to Ctrl-C.
    let running = sb.path().join("long-running");
    suite.push_str(&format!(
        "\n[[case]]\nid = \"long\"\ntitle = \"long\"\nrun = \"test -e {} || {{ : > {}; sleep 60; }}\"\n",
        marker.display(),
        running.display()
    ));
    suite.push_str("\n[[case]]\nid = \"after\"\ntitle = \"after\"\nrun = \"true\"\n");
    sb.write("suites/t.toml", &suite);
    sb.write("plan.toml", &local_plan(&["t.int"]));
    let child = sb
        .own_suites_cmd(&[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the long case is running (the quick one is journaled), then Ctrl-C.
    wait_for(
        "the long case never started",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || (running.exists() && case_records(&sb.journal_so_far()).len() == 1).then_some(()),
    );
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = Run::from(child.wait_with_output().unwrap());
    // Interrupted, not waited for: the long case (a minute's sleep) stays unrecorded below.
    out.expect_code(130);
    let dir = sb.run_dir();
    let res = results(&dir);
    assert_eq!(res["run"]["completion"], "interrupted");
    let statuses: Vec<String> = case_statuses(&res).into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(statuses, ["passed", "not_run", "not_run"]);
    // The interrupted case was not recorded; a resume runs it and the rest.
    std::fs::write(&marker, "").unwrap();
    let r = sb.run(&["run", "--resume", dir.to_str().unwrap()]);
    r.expect_code(0);
    r.expect_in_stdout("1 already done");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let ids: Vec<String> = case_records(&journal)
        .iter()
        .map(|r| r["case"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids[0], "quick");
    assert_eq!(ids.iter().filter(|i| *i == "quick").count(), 1);
}
