//! Helpers shared by the end-to-end tests: run the binary, write inputs, read outputs.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) use crate::servers::{free_port, listening};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_adaptest")
}

/// A finished invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stdout contains `needle` (the message shows stdout).
    #[track_caller]
    pub fn expect_in_stdout(&self, needle: &str) -> &Run {
        self.expect_in("stdout", &self.stdout, needle)
    }

    /// Asserts that stderr contains `needle` (the message shows stderr).
    #[track_caller]
    pub fn expect_in_stderr(&self, needle: &str) -> &Run {
        self.expect_in("stderr", &self.stderr, needle)
    }

    #[track_caller]
    fn expect_in(&self, stream: &str, text: &str, needle: &str) -> &Run {
        assert!(text.contains(needle), "`{needle}` not in {stream}:\n{text}");
        self
    }

    /// Asserts that stdout or stderr contains `needle` (the message shows both).
    #[track_caller]
    pub fn expect_in_output(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "`{needle}` missing in:\n{}{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A scratch directory with the binary run inside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `text` to `name` (parents created) and return its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).current_dir(self.path()).stdin(Stdio::null());
        c.env_remove("ADAPTEST_LOG");
        c
    }

    /// Run to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("spawn adaptest"))
    }

    /// `adaptest run` of the sandbox's `plan.toml` over its own `suites/` only (`--no-builtin`),
    /// with `extra` arguments after those.
    pub fn own_suites_cmd(&self, extra: &[&str]) -> Command {
        let mut c = self.cmd(&[
            "run",
            "--plan",
            "plan.toml",
            "--suites",
            "suites",
            "--no-builtin",
        ]);
        c.args(extra);
        c
    }

    /// [`Sandbox::own_suites_cmd`] run to completion.
    pub fn run_own_suites(&self, extra: &[&str]) -> Run {
        Run::from(self.own_suites_cmd(extra).output().expect("spawn adaptest"))
    }

    /// The one run directory under `adaptest-runs/` (panics if not exactly one).
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir_in("adaptest-runs")
    }

    /// The one run directory under `out` (a `--out` directory; panics if not exactly one).
    pub fn run_dir_in(&self, out: &str) -> PathBuf {
        let base = self.path().join(out);
        let dirs: Vec<PathBuf> = std::fs::read_dir(&base)
            .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "expected one run dir, found {dirs:?}");
        dirs.into_iter().next().unwrap()
    }

    /// The directory of a run still going on (the first under `adaptest-runs/`), once it exists.
    pub fn run_in_progress(&self) -> Option<PathBuf> {
        let entry = std::fs::read_dir(self.path().join("adaptest-runs"))
            .ok()?
            .next()?
            .ok()?;
        Some(entry.path())
    }

    /// The journal of the run going on, as far as it is written ("" before it exists).
    pub fn journal_so_far(&self) -> String {
        self.run_in_progress()
            .and_then(|d| std::fs::read_to_string(d.join("journal.jsonl")).ok())
            .unwrap_or_default()
    }
}

/// Poll `probe` every `every` until it returns something; fails the test with `what` when
/// `within` has passed first.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(every);
    }
}

/// results.json of a run directory.
pub fn results(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json parses")
}

/// `env/<target>.json` of a run directory: the environment captured on `target`.
pub fn env_of(run_dir: &Path, target: &str) -> Value {
    let text = std::fs::read_to_string(run_dir.join("env").join(format!("{target}.json")))
        .unwrap_or_else(|e| panic!("env/{target}.json: {e}"));
    serde_json::from_str(&text).expect("env json")
}

/// Every case of results.json as (combination id, case id, status, reason or "").
pub fn case_rows(results: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for c in results["combinations"].as_array().unwrap() {
        for k in c["cases"].as_array().unwrap() {
            out.push((
                c["id"].as_str().unwrap().to_string(),
                k["id"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
                reason(k).to_string(),
            ));
        }
    }
    out
}

/// Every case of results.json as (combination id, case id, status).
pub fn case_statuses(results: &Value) -> Vec<(String, String, String)> {
    case_rows(results)
        .into_iter()
        .map(|(c, k, s, _)| (c, k, s))
        .collect()
}

/// Asserts that the combinations of results.json whose id starts with `prefix` have cases and
/// that every mandatory one passed or was skipped (its requirements are not met there); the
/// message lists the others with their reasons and output.
#[track_caller]
pub fn assert_mandatory_pass(results: &Value, prefix: &str) {
    let mut seen = 0;
    let mut failed = Vec::new();
    for c in results["combinations"].as_array().unwrap() {
        if !c["id"].as_str().unwrap().starts_with(prefix) {
            continue;
        }
        for k in c["cases"].as_array().unwrap() {
            seen += 1;
            let status = k["status"].as_str();
            if k["level"] == "mandatory" && !matches!(status, Some("passed" | "skipped")) {
                failed.push(format!(
                    "{} {} {}: {}\n{}",
                    c["id"], k["id"], k["status"], k["reason"], k["stdout"]
                ));
            }
        }
    }
    assert!(seen > 0, "no cases under {prefix}");
    assert!(
        failed.is_empty(),
        "mandatory cases that did not pass:\n{}",
        failed.join("\n")
    );
}

/// The ids of the combinations of results.json (or of `plan show --format json`), in order.
pub fn combination_ids(doc: &Value) -> Vec<&str> {
    doc["combinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

/// The combination `id` of results.json (panics if there is none).
pub fn combination<'a>(results: &'a Value, id: &str) -> &'a Value {
    results["combinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no combination {id} in {}", results["combinations"]))
}

/// The case `id` of the combination `combo` of results.json (panics if there is none).
pub fn case<'a>(results: &'a Value, combo: &str, id: &str) -> &'a Value {
    combination(results, combo)["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("no case {id} in {combo}"))
}

/// A case's reason ("" when it has none).
pub fn reason(case: &Value) -> &str {
    case["reason"].as_str().unwrap_or_default()
}

/// `items` as the inside of a TOML array of strings: `"a", "b"`.
pub fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    quoted.join(", ")
}

/// A suite file: the `[suite]` table (`id`, `title`, `component`), then `cases` (TOML).
pub fn suite_toml(id: &str, title: &str, component: &str, cases: &str) -> String {
    format!("[suite]\nid = \"{id}\"\ntitle = \"{title}\"\ncomponent = \"{component}\"\n\n{cases}")
}

/// A `[[case]]` (id `daemon`) that starts `sleep 300` as a daemon outside the command's process
/// tree (double fork + setsid), writes its pid to `pid_file` once it is out of the case's
/// process group, and prints `started`.
pub fn detached_daemon_case(title: &str, pid_file: &Path) -> String {
    let p = pid_file.display();
    format!(
        r#"[[case]]
id = "daemon"
title = "{title}"
# The pid is written after setsid(2): the case ends only once the daemon is out of its group.
run = """
( setsid sh -c 'echo $$ > {p}.tmp && mv {p}.tmp {p}; exec sleep 300' & )
until [ -s {p} ]; do sleep 0.1; done
echo started
"""
expect = {{ stdout = "started" }}
"#
    )
}

/// A plan running the given suite ids on the local host.
pub fn local_plan(suites: &[&str]) -> String {
    format!(
        "[product]\nname = \"test\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n[[target]]\nid = \"local\"\nkind = \"local\"\n\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"os\"]\nsuites = [{}]\n",
        toml_list(suites)
    )
}

/// A plan running `suite` on the local host for a product with every field of a report's cover
/// (FooDB 8.1.2 by Foo Software Co., tested by 华东软硬件适配中心 as ECAC-2026-0042, tester 张三,
/// reviewer 李四), followed by `tail` (waivers). The plan's lines are those of the TOML below:
/// tests point at them.
pub fn cover_plan(suite: &str, tail: &str) -> String {
    format!(
        r#"[product]
name = "FooDB"
version = "8.1.2"
vendor = "Foo Software Co."
center = "华东软硬件适配中心"
report_number = "ECAC-2026-0042"
tester = "张三"
reviewer = "李四"

[[target]]
id = "local"
kind = "local"

[[matrix]]
targets = ["local"]
components = ["os"]
suites = ["{suite}"]
{tail}"#
    )
}

/// Is a process alive (not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(") ")
                .map(|(_, r)| r.chars().next().unwrap_or('?'));
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// This host's distribution id (`ID` of os-release), as the environment probe reports it:
/// tests compare with the host they run on instead of assuming one.
pub fn host_os_id() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .unwrap_or_else(|| "linux".into())
}

/// Whether this host's C library is glibc (`getconf GNU_LIBC_VERSION` answers).
pub fn host_has_glibc() -> bool {
    std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workspace's root directory (where `scripts/` lives).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// A payload built by `scripts/build-payloads.sh` (`aarch64`: the arm64 Debian rootfs with
/// redis-server; `loongarch64`: the LoongArch sysroot). Builds it on first use (minutes) and
/// reuses the cache after that; fails the test with the script's output when it cannot.
pub fn payload(which: &str) -> PathBuf {
    let script = workspace().join("scripts/build-payloads.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(which)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(_, p)| PathBuf::from(p))
        .next_back();
    match path {
        Some(p) if out.status.success() && p.is_dir() => p,
        _ => panic!(
            "the `{which}` payload is missing and scripts/build-payloads.sh could not build it \
             (run `scripts/build-payloads.sh {which}` as root to see why)\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The PIDs of every process of this machine (its entries in `/proc`).
pub fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
}

/// Every descendant of `pid` (children, their children, …), found through `/proc`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for p in pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let cur = found[i];
        for &(p, pp) in &parent_of {
            if pp == cur && !found.contains(&p) {
                found.push(p);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILL `pid` and every descendant of it (processes this test started).
///
/// The tree is frozen first (SIGSTOP, repeated until a pass finds no new descendant), so a
/// process cannot fork a child that the kill misses: a listening sshd killed children-first
/// could still accept a reconnect and fork a session that outlived it (seen in CI: the ssh
/// fault test's next case passed through such an orphaned session).
pub fn kill_tree(pid: i32) {
    if pid <= 1 {
        return;
    }
    let mut frozen: Vec<i32> = Vec::new();
    let mut next = vec![pid];
    while !next.is_empty() {
        for &p in &next {
            // SAFETY: kill(2) with a pid > 1 that this test started (or one of its children).
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
        frozen.extend(&next);
        next = descendants(pid)
            .into_iter()
            .filter(|p| *p > 1 && !frozen.contains(p))
            .collect();
    }
    for p in frozen {
        // SAFETY: as above; SIGKILL also ends a stopped process.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}
