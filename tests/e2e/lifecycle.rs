//! Component lifecycle: install/start/ready run as certification items before a component's
//! suites, stop/uninstall after; `component.restart` in steps; a failed start errors the pair.

use crate::util::{Sandbox, alive, case, combination, free_port, results, suite_toml};
use std::path::PathBuf;

const KV_SUITE: &str = r#"[suite]
id = "t.kv-restart"
title = "kv survives a restart"
title_zh = "重启后数据仍在"
component = "kv"

[[case]]
id = "set-restart-get"
title = "a value written before a restart is read after it"
steps = [
  # shell steps carry the combination's scope (what they leave running is ended with it)
  { op = "shell", run = "case \"$ADAPTEST_SCOPE\" in */local/cache/t.kv-restart\\;) echo scoped;; esac", expect = { stdout = "scoped\n" } },
  { op = "kv.set", key = "adaptest:persist", value = "持久" },
  { op = "component.restart" },
  { op = "kv.get", key = "adaptest:persist", expect = "持久" },
  { op = "kv.get", key = "adaptest:absent", expect = "不存在", session = "b" },
]
"#;

fn plan(port: u16, dir: &std::path::Path, start: &str) -> String {
    let d = dir.display();
    format!(
        r#"[product]
name = "Redis"
vendor = "test"

[[target]]
id = "local"
kind = "local"

[[component]]
id = "cache"
kind = "redis"
port = {port}

[component.lifecycle]
install = "command -v redis-server"
start = "{start}"
ready = "redis-cli -p {port} ping | grep -q PONG"
ready_timeout = "20s"
stop = "echo \"$ADAPTEST_COMPONENT $ADAPTEST_WORKDIR\" >> {d}/stops; redis-cli -p {port} shutdown nosave || true; while [ -e {d}/redis.pid ] && kill -0 $(cat {d}/redis.pid) 2>/dev/null; do sleep 0.1; done"

[[matrix]]
targets = ["local"]
components = ["cache", "os"]
suites = ["t.*"]
"#
    )
}

fn start_cmd(port: u16, dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "redis-server --bind 127.0.0.1 --port {port} --daemonize yes --pidfile {d}/redis.pid --dir {d} --appendonly yes --appendfsync always --save ''"
    )
}

/// A sandbox with the suites `t.kv-restart` and `t.os`, a free port for the Redis component
/// and an empty directory for its data.
fn sandbox() -> (Sandbox, u16, PathBuf) {
    let sb = Sandbox::new();
    let data = sb.path().join("redis-data");
    std::fs::create_dir(&data).unwrap();
    sb.write("suites/kv.toml", KV_SUITE);
    sb.write(
        "suites/os.toml",
        &suite_toml(
            "t.os",
            "os",
            "os",
            "[[case]]\nid = \"up\"\ntitle = \"up\"\nrun = \"true\"\n",
        ),
    );
    (sb, free_port(), data)
}

#[test]
fn lifecycle_runs_around_the_suites_and_restart_keeps_durable_data() {
    let (sb, port, data) = sandbox();
    sb.write("plan.toml", &plan(port, &data, &start_cmd(port, &data)));
    let r = sb.run_own_suites(&[]);
    let dir = sb.run_dir();
    let res = results(&dir);
    let status = |combo: &str, id: &str| case(&res, combo, id)["status"].clone();
    for step in ["install", "start", "ready", "stop"] {
        let log =
            std::fs::read_to_string(dir.join(format!("logs/local/cache/lifecycle/{step}.log")))
                .unwrap_or_default();
        assert_eq!(
            status("local/cache/lifecycle", step),
            "passed",
            "lifecycle {step}\n{log}\n{}",
            r.stdout
        );
    }
    // The restart case fails only on its last step (the absent key), after the shell step saw
    // its scope and the value survived.
    let restart = &combination(&res, "local/cache/t.kv-restart")["cases"][0];
    assert_eq!(restart["status"], "failed", "{restart}");
    let reason = restart["reason"].as_str().unwrap();
    assert!(reason.starts_with("step 5 (kv.get)"), "{reason}");
    assert_eq!(status("local/os/t.os", "up"), "passed");
    r.expect_code(1);
    // One lifecycle function for restart and teardown: both stops saw the ADAPTEST_* variables
    // and ran in a scratch directory of the run (not a fixed /tmp), and the restart's commands
    // are in the case's log.
    let stops = std::fs::read_to_string(data.join("stops")).unwrap();
    let stops: Vec<&str> = stops.lines().collect();
    assert_eq!(stops.len(), 2, "{stops:?}");
    for line in &stops {
        let (component, workdir) = line.split_once(' ').unwrap();
        assert_eq!(component, "cache", "{stops:?}");
        assert!(workdir.contains("adaptest."), "{stops:?}");
    }
    let log = std::fs::read_to_string(dir.join(restart["log"].as_str().unwrap())).unwrap();
    assert!(log.contains("restart: lifecycle `stop`"), "{log}");
    assert!(log.contains("restart: lifecycle `start`"), "{log}");
    // The lifecycle's stop ran: the server is gone.
    let pid: i32 = std::fs::read_to_string(data.join("redis.pid"))
        .map(|t| t.trim().parse().unwrap())
        .unwrap_or(0);
    assert!(
        pid == 0 || !alive(pid),
        "redis-server {pid} still running after the run"
    );
    // The lifecycle items are in the report as certification items.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("lifecycle"),
        "lifecycle combination missing from the report"
    );
}

/// Without a `ready` command the component is ready when it accepts a connection (as README
/// says): a server that comes up a little after `start` returned is waited for, not raced.
#[test]
fn without_a_ready_command_setup_waits_until_the_component_answers() {
    let (sb, port, data) = sandbox();
    let start = format!("(sleep 2; {}) >/dev/null 2>&1 &", start_cmd(port, &data));
    let text = plan(port, &data, &start);
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ready = "))
        .map(|l| format!("{l}\n"))
        .collect();
    sb.write("plan.toml", &text);
    sb.write(
        "suites/kv.toml",
        &suite_toml(
            "t.kv-restart",
            "kv",
            "kv",
            "[[case]]\nid = \"set\"\ntitle = \"set\"\nsteps = [ { op = \"kv.set\", key = \"adaptest:ready\", value = \"1\" } ]\n",
        ),
    );
    let r = sb.run_own_suites(&[]);
    let res = results(&sb.run_dir());
    let set = &combination(&res, "local/cache/t.kv-restart")["cases"][0];
    assert_eq!(set["status"], "passed", "{set}\n{}", r.stdout);
    r.expect_code(0);
}

#[test]
fn a_component_that_does_not_start_errors_its_cases_and_the_rest_finish() {
    let (sb, port, data) = sandbox();
    sb.write(
        "plan.toml",
        &plan(port, &data, "echo cannot start >&2; exit 7"),
    );
    let r = sb.run_own_suites(&[]);
    r.expect_code(3);
    let res = results(&sb.run_dir());
    let start = case(&res, "local/cache/lifecycle", "start");
    assert_eq!(start["status"], "failed");
    assert!(start["stderr"].as_str().unwrap().contains("cannot start"));
    let kv = &combination(&res, "local/cache/t.kv-restart")["cases"][0];
    assert_eq!(kv["status"], "error");
    assert!(
        kv["reason"]
            .as_str()
            .unwrap()
            .contains("lifecycle `start` failed"),
        "{kv}"
    );
    assert_eq!(
        combination(&res, "local/os/t.os")["cases"][0]["status"],
        "passed"
    );
}

/// A failing `shell` step says how the command ended in words ("exited with status 3",
/// "killed by SIGKILL"), not `Some(3)`/`None`, and its output is kept in the case's log.
#[test]
fn shell_steps_say_how_the_command_ended_and_keep_its_output() {
    let sb = Sandbox::new();
    sb.write(
        "suites/kv.toml",
        &suite_toml(
            "t.shell",
            "shell",
            "kv",
            r#"[[case]]
id = "status"
title = "status"
steps = [ { op = "shell", run = "echo out-marker; echo err-marker >&2; exit 3" } ]

[[case]]
id = "signal"
title = "signal"
steps = [ { op = "shell", run = "kill -9 $$" } ]
"#,
        ),
    );
    sb.write(
        "plan.toml",
        "[[target]]\nid = \"local\"\nkind = \"local\"\n\n[[component]]\nid = \"cache\"\nkind = \"redis\"\nport = 6379\n\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"cache\"]\nsuites = [\"t.*\"]\n",
    );
    let r = sb.run_own_suites(&[]);
    r.expect_code(1);
    let dir = sb.run_dir();
    let res = results(&dir);
    let status = case(&res, "local/cache/t.shell", "status");
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("command exited with status 3: err-marker"),
        "{reason}"
    );
    let log = std::fs::read_to_string(dir.join(status["log"].as_str().unwrap())).unwrap();
    assert!(
        log.contains("out-marker") && log.contains("err-marker"),
        "{log}"
    );
    let signal = case(&res, "local/cache/t.shell", "signal");
    let reason = signal["reason"].as_str().unwrap();
    assert!(reason.contains("command killed by SIGKILL"), "{reason}");
    assert!(
        !reason.contains("None") && !reason.contains("Some("),
        "{reason}"
    );
}
