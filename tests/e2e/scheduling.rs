//! Scheduling: timeouts kill whole process trees, retries, fail-fast, skips, parallel combinations.

use crate::util::{
    Sandbox, alive, case_statuses, combination_ids, detached_daemon_case, local_plan, results,
    suite_toml, wait_for,
};

#[test]
fn a_timeout_kills_the_whole_process_tree() {
    let sb = Sandbox::new();
    let pids = sb.path().join("pids");
    std::fs::create_dir(&pids).unwrap();
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.orphans",
            "orphans",
            "os",
            &format!(
                r#"[[case]]
id = "grandchild"
title = "a command that leaves a sleeping grandchild"
timeout = "1s"
run = '''
sleep 300 &
echo $! > {p}/bg
sh -c 'sleep 301 & echo $! > {p}/nested; wait'  &
setsid sleep 302 &
echo $! > {p}/setsid
sleep 303
'''
"#,
                p = pids.display()
            ),
        ),
    );
    sb.write("plan.toml", &local_plan(&["t.orphans"]));
    let r = sb.run_own_suites(&[]);
    r.expect_code(1);
    let res = results(&sb.run_dir());
    let case = &res["combinations"][0]["cases"][0];
    assert_eq!(case["status"], "failed");
    assert!(
        case["reason"]
            .as_str()
            .unwrap()
            .contains("timed out after 1.0s"),
        "{case}"
    );
    for f in ["bg", "nested", "setsid"] {
        let text = std::fs::read_to_string(pids.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let pid: i32 = text.trim().parse().unwrap();
        // SIGKILL was sent before the run ended; its delivery is asynchronous.
        wait_for(
            &format!("process {pid} ({f}) survived the timeout"),
            std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(20),
            || (!alive(pid)).then_some(()),
        );
    }
}

/// A daemon that left the command's process tree (double fork + setsid: reparented to init, so
/// no walk of descendants finds it) lives on for the combination's later cases, and is killed
/// when the combination ends, by the scope variable it inherited. A process the run did not
/// start is left alone.
#[test]
fn daemons_outside_the_process_tree_are_killed_when_the_combination_ends() {
    let sb = Sandbox::new();
    let pids = sb.path().join("pids");
    std::fs::create_dir(&pids).unwrap();
    let mut bystander = std::process::Command::new("sleep")
        .arg("305")
        .spawn()
        .unwrap();
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.daemon",
            "daemon",
            "os",
            &format!(
                r#"{daemon}
[[case]]
id = "still-there"
title = "later cases of the combination still have it (not a zombie)"
run = 'grep "^State:" "/proc/$(cat {p}/daemon)/status"'
expect = {{ stdout_regex = '^State:\s+S' }}
"#,
                daemon = detached_daemon_case(
                    "starts a daemon that leaves the process tree",
                    &pids.join("daemon")
                ),
                p = pids.display()
            ),
        ),
    );
    sb.write("plan.toml", &local_plan(&["t.daemon"]));
    let r = sb.run_own_suites(&[]);
    r.expect_code(0);
    r.expect_in_stderr("left running");
    let pid: i32 = std::fs::read_to_string(pids.join("daemon"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        &format!("the daemon (pid {pid}) outlived its combination"),
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(50),
        || (!alive(pid)).then_some(()),
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a process the run did not start was killed"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn retries_mark_flaky_and_failures_are_reported_with_the_reason() {
    let sb = Sandbox::new();
    let marker = sb.path().join("marker");
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.mixed",
            "mixed",
            "os",
            &format!(
                r#"[[case]]
id = "flaky"
title = "fails once, then passes"
retries = 2
run = "if [ -e {m} ]; then echo second; else touch {m}; echo first; exit 1; fi"
expect = {{ stdout = "second" }}

[[case]]
id = "wrong-output"
title = "wrong output"
run = "echo 你好"
expect = {{ stdout_contains = ["再见"] }}

[[case]]
id = "optional-failure"
title = "an optional failure does not fail the run"
level = "optional"
run = "exit 3"

[[case]]
id = "needs-missing-command"
title = "skipped where a command is absent"
requires = {{ commands = ["adaptest-no-such-command"] }}
run = "adaptest-no-such-command"

[[case]]
id = "needs-other-arch"
title = "skipped on another architecture"
requires = {{ arch = ["s390x"] }}
run = "true"

[[case]]
id = "env-and-workdir"
title = "variables and the scratch directory"
stdin = "输入"
env = {{ GREETING = "hello" }}
run = 'test "$PWD" = "$ADAPTEST_WORKDIR" && echo "$GREETING $ADAPTEST_TARGET $(cat)"'
expect = {{ stdout = "hello local 输入" }}
"#,
                m = marker.display()
            ),
        ),
    );
    sb.write("plan.toml", &local_plan(&["t.mixed"]));
    let r = sb.run_own_suites(&[]);
    r.expect_code(1);
    let res = results(&sb.run_dir());
    let got: Vec<(String, String)> = case_statuses(&res)
        .into_iter()
        .map(|(_, c, s)| (c, s))
        .collect();
    let want = [
        ("flaky", "flaky"),
        ("wrong-output", "failed"),
        ("optional-failure", "failed"),
        ("needs-missing-command", "skipped"),
        ("needs-other-arch", "skipped"),
        ("env-and-workdir", "passed"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    let cases = &res["combinations"][0]["cases"];
    assert_eq!(cases[0]["attempts"], 2);
    assert!(
        cases[1]["reason"]
            .as_str()
            .unwrap()
            .contains("does not contain \"再见\"")
    );
    assert!(
        cases[3]["reason"]
            .as_str()
            .unwrap()
            .contains("adaptest-no-such-command")
    );
    assert_eq!(res["summary"]["mandatory_failed"], 1);
    // The full output of a failed case is in its log.
    let log =
        std::fs::read_to_string(sb.run_dir().join(cases[1]["log"].as_str().unwrap())).unwrap();
    assert!(log.contains("你好"), "{log}");
}

#[test]
fn only_optional_failures_exit_0() {
    let sb = Sandbox::new();
    sb.write(
        "suites/t.toml",
        &suite_toml("t.opt", "o", "os", "[[case]]\nid = \"a\"\ntitle = \"a\"\nlevel = \"optional\"\nrun = \"exit 1\"\n\n[[case]]\nid = \"b\"\ntitle = \"b\"\nrun = \"true\"\n"),
    );
    sb.write("plan.toml", &local_plan(&["t.opt"]));
    sb.run_own_suites(&[]).expect_code(0);
}

#[test]
fn fail_fast_stops_scheduling_and_marks_the_rest_not_run() {
    let sb = Sandbox::new();
    let mut suite = suite_toml("t.ff", "ff", "os", "");
    suite.push_str("\n[[case]]\nid = \"c0\"\ntitle = \"fails\"\nrun = \"exit 1\"\n");
    for i in 1..10 {
        suite.push_str(&format!(
            "\n[[case]]\nid = \"c{i}\"\ntitle = \"c\"\nrun = \"true\"\n"
        ));
    }
    sb.write("suites/t.toml", &suite);
    sb.write("plan.toml", &local_plan(&["t.ff"]));
    let r = sb.run_own_suites(&["--fail-fast"]);
    r.expect_code(1);
    let res = results(&sb.run_dir());
    assert_eq!(res["run"]["completion"], "fail_fast");
    assert_eq!(res["summary"]["failed"], 1);
    assert_eq!(res["summary"]["not_run"], 9);
}

/// Four combinations meet at a rendezvous: each case leaves its mark and waits until all four
/// marks are there. With four slots they all run at once and meet; with one slot they run one
/// after another, so only the last finds all four and the others time out (no clock is read:
/// the order of events decides).
#[test]
fn combinations_run_in_parallel_within_target_slots() {
    let sb = Sandbox::new();
    let meet = sb.path().join("meet");
    let write_suites = |timeout: &str| {
        for i in 0..4 {
            sb.write(
                &format!("suites/s{i}.toml"),
                &suite_toml(
                    &format!("t.meet{i}"),
                    "s",
                    "os",
                    &format!(
                        "[[case]]\nid = \"meet\"\ntitle = \"meet\"\ntimeout = \"{timeout}\"\n\
                         run = '''\nd={m}; : > $d/{i}; ls $d | grep -cv seen > $d/seen{i}\n\
                         until [ $(ls $d | grep -cv seen) -ge 4 ]; do sleep 0.05; done\n'''\n",
                        m = meet.display()
                    ),
                ),
            );
        }
    };
    sb.write("plan.toml", &local_plan(&["t.meet*"]));

    std::fs::create_dir(&meet).unwrap();
    write_suites("120s");
    sb.run_own_suites(&["--jobs", "4"]).expect_code(0);
    let res = results(&sb.run_dir());
    assert_eq!(res["summary"]["passed"], 4, "{}", res["summary"]);

    std::fs::remove_dir_all(sb.path().join("adaptest-runs")).unwrap();
    std::fs::remove_dir_all(&meet).unwrap();
    std::fs::create_dir(&meet).unwrap();
    write_suites("1s");
    sb.run_own_suites(&["--jobs", "1"]).expect_code(1);
    let res = results(&sb.run_dir());
    // The first three wait in vain and time out; only the last one finds all four marks.
    let mut timed_out = 0;
    for c in res["combinations"].as_array().unwrap() {
        let case = &c["cases"][0];
        if case["status"] == "failed" {
            assert!(
                case["reason"].as_str().unwrap().contains("timed out"),
                "{case}"
            );
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 3, "{}", res["summary"]);
    // One at a time: the k-th case to run found the marks of the k-1 before it and its own.
    let mut seen: Vec<u32> = (0..4)
        .map(|i| {
            std::fs::read_to_string(meet.join(format!("seen{i}")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4]);
}

#[test]
fn plan_show_is_deterministic_and_honours_exclude() {
    let sb = Sandbox::new();
    for id in ["b.two", "a.one", "c.three"] {
        sb.write(
            &format!("suites/{id}.toml"),
            &suite_toml(
                id,
                "x",
                "os",
                "[[case]]\nid = \"k\"\ntitle = \"k\"\nrun = \"true\"\n",
            ),
        );
    }
    sb.write(
        "plan.toml",
        "[[target]]\nid = \"h1\"\nkind = \"local\"\n\n[[target]]\nid = \"h2\"\nkind = \"local\"\n\n[[matrix]]\ntargets = [\"h2\", \"h1\"]\ncomponents = [\"os\"]\nsuites = [\"*\"]\nexclude = [{ target = \"h1\", suite = \"c.*\" }]\n",
    );
    let show = || {
        sb.run(&[
            "plan",
            "show",
            "plan.toml",
            "--suites",
            "suites",
            "--no-builtin",
            "--format",
            "json",
        ])
    };
    let a = show();
    a.expect_code(0);
    let b = show();
    assert_eq!(a.stdout, b.stdout);
    let doc: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
    assert_eq!(
        combination_ids(&doc),
        [
            "h2/os/a.one",
            "h2/os/b.two",
            "h2/os/c.three",
            "h1/os/a.one",
            "h1/os/b.two"
        ]
    );
}

/// A case whose command leaves a process behind in its group (no daemonising) passes, but the
/// leftover the harness killed is recorded on the case (results `leaked`) and shown in the
/// report, not only logged.
#[test]
fn a_leaked_process_is_recorded_on_the_case_and_shown_in_the_report() {
    // The case waits (busy, no sleep) until its child has exec'd `sleep`: before that the
    // leftover is a forked `sh`, and that is the name the harness would rightly record.
    let sb = Sandbox::new();
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.leak",
            "leak",
            "os",
            "[[case]]\nid = \"leaves\"\ntitle = \"leaves a sleep\"\nrun = 'sleep 300 & p=$!; until [ \"$(cat /proc/$p/comm)\" = sleep ]; do :; done; echo $p'\n\n\
             [[case]]\nid = \"clean\"\ntitle = \"clean\"\nrun = \"true\"\n",
        ),
    );
    sb.write("plan.toml", &local_plan(&["t.leak"]));
    let r = sb.run_own_suites(&[]);
    r.expect_code(0);
    let dir = sb.run_dir();
    let res = results(&dir);
    let cases = &res["combinations"][0]["cases"];
    let leaves = &cases[0];
    assert_eq!(leaves["status"], "passed", "{leaves}");
    let pid: u64 = leaves["stdout"].as_str().unwrap().trim().parse().unwrap();
    assert_eq!(
        leaves["leaked"],
        serde_json::json!([{ "pid": pid, "command": "sleep" }]),
        "{leaves}"
    );
    assert!(cases[1].get("leaked").is_none(), "{}", cases[1]);
    assert!(!alive(pid as i32), "the leaked sleep still runs");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("left running, killed by the harness")
            && html.contains(&format!("pid {pid} (sleep)")),
        "the leak is not in the report"
    );
}
