//! The `ssh` target against a real sshd that each test starts on 127.0.0.1 with its own host
//! key, client key and config: `os.basic` over ssh, remote timeouts that leave nothing behind,
//! and an sshd that dies in the middle of a suite.

use crate::util::{
    Run, Sandbox, alive, assert_mandatory_pass, case, case_statuses, detached_daemon_case, env_of,
    free_port, kill_tree, reason, results, suite_toml, toml_list, wait_for, workspace,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An sshd on 127.0.0.1:`port` accepting `client_key` for root; killed (with everything it
/// started) when dropped, also when the test panics.
struct Sshd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            let st = Command::new("bash")
                .arg(workspace().join("scripts/install-deps.sh"))
                .status()
                .expect("run scripts/install-deps.sh");
            assert!(
                st.success() && sshd.exists(),
                "sshd is missing and scripts/install-deps.sh could not install openssh-server"
            );
        }
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "adaptest-test", "-f"])
                .arg(d.join(key))
                .stdin(Stdio::null())
                .status()
                .expect("ssh-keygen");
            assert!(st.success(), "ssh-keygen failed");
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let mut log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPermitRootLogin prohibit-password\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n",
                d = d.display()
            );
            std::fs::write(d.join("sshd_config"), config).unwrap();
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .expect("spawn sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child: Some(child),
                        dir,
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Not listening (the port was taken meanwhile?): try another one.
            kill_tree(child.id() as i32);
            let _ = child.wait();
            log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not come up:\n{log}");
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A `[[target]]` table for this sshd.
    fn target(&self, id: &str) -> String {
        format!(
            "[[target]]\nid = \"{id}\"\nkind = \"ssh\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
             identity_file = \"{}\"\nssh_options = [\"StrictHostKeyChecking=no\", \"UserKnownHostsFile={}/known_hosts\"]\n",
            self.port,
            self.key().display(),
            self.dir.path().display()
        )
    }

    /// Kill sshd, its per-connection processes and the remote commands they run.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(c.id() as i32);
            let _ = c.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn plan(targets: &str, target_ids: &[&str], suites: &[&str]) -> String {
    format!(
        "[product]\nname = \"test\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n{targets}\n[[matrix]]\ntargets = [{}]\ncomponents = [\"os\"]\nsuites = [{}]\n",
        toml_list(target_ids),
        toml_list(suites)
    )
}

#[test]
fn os_basic_passes_over_ssh_and_the_environment_is_the_remote_one() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        &plan(&sshd.target("lab"), &["lab"], &["os.basic"]),
    );
    let run = sb.run(&["run", "--plan", "plan.toml", "--format", "json"]);
    run.expect_code(0);

    let dir = sb.run_dir();
    let env = env_of(&dir, "lab");
    assert_eq!(env["target_kind"], "ssh");
    assert_eq!(env["arch"], "x86_64");
    assert_eq!(env["extra"]["ssh"], format!("root@127.0.0.1:{}", sshd.port));
    assert_mandatory_pass(&results(&dir), "");
}

#[test]
fn remote_commands_get_stdin_env_cwd_exit_codes_and_timeouts_kill_the_remote_tree() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let pids = sb.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let p = pids.display();
    sb.write(
        "suites/remote.toml",
        &suite_toml(
            "remote.behaviour",
            "remote",
            "os",
            &format!(
                r#"[[case]]
id = "stdin-env-cwd"
title = "stdin, env and the working directory reach the remote command"
stdin = "中文 in\n"
env = {{ GREETING = "hello world", QUOTE = "it's" }}
run = 'cat; echo "$GREETING/$QUOTE"; [ "$(pwd)" = "$ADAPTEST_WORKDIR" ] && echo in-workdir; echo to-stderr >&2'
expect = {{ stdout = "中文 in\nhello world/it's\nin-workdir", stderr = "to-stderr" }}

[[case]]
id = "exit-127"
title = "a command that is not found exits 127 (not an infrastructure error)"
run = "no-such-command-adaptest"
expect = {{ exit = 127 }}

[[case]]
id = "exit-3"
title = "exit codes cross the channel"
run = "exit 3"
expect = {{ exit = 3 }}

[[case]]
id = "leftover"
title = "a background process left behind is killed when the command exits"
run = 'sleep 300 & echo $! > {p}/leftover; echo done'
expect = {{ stdout = "done" }}

{daemon}
[[case]]
id = "hang"
title = "times out; its whole remote tree is killed"
timeout = "2s"
run = '''
echo $$ > {p}/shell
sleep 300 & echo $! > {p}/child
setsid sh -c 'echo $$ > {p}/escapee; exec sleep 300' &
sleep 300
'''

[[case]]
id = "after"
title = "the connection is still usable after a timeout"
run = "echo still-here"
expect = {{ stdout = "still-here" }}
"#,
                daemon = detached_daemon_case(
                    "a daemon outside the command's tree is killed when the combination ends",
                    &pids.join("daemon")
                ),
            ),
        ),
    );
    sb.write(
        "plan.toml",
        &plan(&sshd.target("lab"), &["lab"], &["remote.*"]),
    );
    let run = sb.run_own_suites(&[]);
    run.expect_code(1);
    run.expect_in_stderr("left running");
    let res = results(&sb.run_dir());
    let statuses = case_statuses(&res);
    let status = |id: &str| {
        statuses
            .iter()
            .find(|s| s.1 == id)
            .map(|s| s.2.clone())
            .unwrap()
    };
    for id in [
        "stdin-env-cwd",
        "exit-127",
        "exit-3",
        "leftover",
        "daemon",
        "after",
    ] {
        assert_eq!(status(id), "passed", "{id}: {res:#}");
    }
    assert_eq!(status("hang"), "failed");
    let hang = reason(case(&res, "lab/os/remote.behaviour", "hang"));
    assert!(hang.contains("timed out"), "{hang}");

    // Everything the commands started is gone (this host is the remote side).
    let deadline = Instant::now() + Duration::from_secs(5);
    for name in ["leftover", "shell", "child", "escapee", "daemon"] {
        let pid: i32 = std::fs::read_to_string(pids.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .trim()
            .parse()
            .unwrap();
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive(pid), "{name} (pid {pid}) is still running");
    }
}

#[test]
fn sshd_killed_mid_suite_makes_the_rest_errors_and_other_targets_finish() {
    let mut sshd = Sshd::start();
    let sb = Sandbox::new();
    let mark = sb.path().join("hanging");
    sb.write(
        "suites/fault.toml",
        &suite_toml(
            "fault.ssh",
            "fault",
            "os",
            &format!(
                r#"[[case]]
id = "first"
title = "before"
run = "echo one"

[[case]]
id = "hang"
title = "sshd dies while this runs (on the ssh target)"
timeout = "60s"
run = '[ "$ADAPTEST_TARGET" = lab ] || exit 0; touch {}; sleep 50'

[[case]]
id = "third"
title = "after"
run = "echo three"

[[case]]
id = "fourth"
title = "after"
run = "echo four"
"#,
                mark.display()
            ),
        ),
    );
    let targets = format!(
        "{}\n[[target]]\nid = \"local\"\nkind = \"local\"\n",
        sshd.target("lab")
    );
    sb.write(
        "plan.toml",
        &plan(&targets, &["lab", "local"], &["fault.*"]),
    );
    let child = sb
        .own_suites_cmd(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn adaptest");
    wait_for(
        "the hang case never started",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || mark.exists().then_some(()),
    );
    sshd.kill();
    Run::from(child.wait_with_output().unwrap()).expect_code(3);

    let res = results(&sb.run_dir());
    assert_eq!(case(&res, "lab/os/fault.ssh", "first")["status"], "passed");
    for id in ["hang", "third", "fourth"] {
        let c = case(&res, "lab/os/fault.ssh", id);
        assert_eq!(c["status"], "error", "{id}: {c:#}");
        let reason = c["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("127.0.0.1:{}", sshd.port)),
            "{id}: {reason}"
        );
    }
    assert!(
        case(&res, "lab/os/fault.ssh", "hang")["reason"]
            .as_str()
            .unwrap()
            .contains("was lost"),
        "{:#}",
        case(&res, "lab/os/fault.ssh", "hang")
    );
    for id in ["first", "hang", "third", "fourth"] {
        assert_eq!(
            case(&res, "local/os/fault.ssh", id)["status"],
            "passed",
            "local {id}"
        );
    }
}

#[test]
fn an_unreachable_ssh_target_is_an_infrastructure_error_naming_the_destination() {
    let sb = Sandbox::new();
    let port = free_port(); // nothing listens there
    let key = sb.write("key", "not a key");
    let target = format!(
        "[[target]]\nid = \"gone\"\nkind = \"ssh\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"tester\"\nidentity_file = \"{}\"\nssh_options = [\"StrictHostKeyChecking=no\", \"UserKnownHostsFile=/dev/null\", \"ConnectTimeout=5\"]\n",
        key.display()
    );
    sb.write("plan.toml", &plan(&target, &["gone"], &["os.basic"]));
    let run = sb.run(&["run", "--plan", "plan.toml"]);
    run.expect_code(3);
    let res = results(&sb.run_dir());
    let first = &res["combinations"][0]["cases"][0];
    assert_eq!(first["status"], "error");
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("tester@127.0.0.1:{port}")),
        "{reason}"
    );
}

#[test]
fn ssh_target_fields_are_validated() {
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        "[[target]]\nid = \"lab\"\nkind = \"ssh\"\nrootfs = \"/\"\nssh_options = [\"novalue\"]\n\n\
         [[matrix]]\ntargets = [\"lab\"]\ncomponents = [\"os\"]\nsuites = [\"os.basic\"]\n",
    );
    let run = sb.run(&["validate", "plan.toml"]);
    run.expect_code(2);
    for needle in [
        "target[0].host",
        "an ssh target needs `host`",
        "target[0].rootfs",
        "target[0].ssh_options",
    ] {
        run.expect_in_output(needle);
    }
}

/// A component on the machine is reached through an ssh local forward: Redis started over ssh
/// by the plan's lifecycle, the built-in `mw.kv` suite through the forwarded port.
#[test]
fn a_component_port_is_forwarded_over_ssh() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let port = free_port();
    let data = sb.path().join("redis");
    std::fs::create_dir(&data).unwrap();
    let d = data.display();
    struct KillRedis(PathBuf);
    impl Drop for KillRedis {
        fn drop(&mut self) {
            if let Some(pid) = std::fs::read_to_string(&self.0)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .filter(|&p| p > 1 && alive(p))
            {
                kill_tree(pid);
            }
        }
    }
    let _redis = KillRedis(data.join("redis.pid"));
    let component = format!(
        r#"[[component]]
id = "cache"
kind = "redis"
port = {port}

[component.lifecycle]
start = "redis-server --bind 127.0.0.1 --port {port} --daemonize yes --save '' --pidfile {d}/redis.pid --logfile {d}/redis.log --dir {d}"
ready = "redis-cli -p {port} ping | grep -q PONG"
stop = "redis-cli -p {port} shutdown nosave || true"
"#
    );
    sb.write(
        "plan.toml",
        &format!(
            "{}\n{component}\n[[matrix]]\ntargets = [\"lab\"]\ncomponents = [\"cache\"]\nsuites = [\"mw.kv\"]\n",
            sshd.target("lab")
        ),
    );
    let run = sb.run(&["run", "--plan", "plan.toml"]);
    run.expect_code(0);
    let res = results(&sb.run_dir());
    let kv: Vec<_> = case_statuses(&res)
        .into_iter()
        .filter(|(c, _, _)| c == "lab/cache/mw.kv")
        .collect();
    assert!(!kv.is_empty(), "{res:#}");
    for (combo, case_id, status) in kv {
        let c = case(&res, &combo, &case_id);
        // Optional throughput thresholds depend on the machine's load (the forward adds a hop):
        // such a case must still have run and measured, and missed only its threshold.
        if c["level"] == "optional"
            && !c["metrics"].as_array().unwrap().is_empty()
            && status == "failed"
        {
            assert!(
                c["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("threshold missed"),
                "{case_id}: {c}"
            );
            continue;
        }
        assert_eq!(status, "passed", "{case_id}: {c}");
    }
}
