//! Helpers shared by the end-to-end tests: run the binary, write inputs, read outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
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

    /// The one run directory under `adaptest-runs/` (panics if not exactly one).
    pub fn run_dir(&self) -> PathBuf {
        let base = self.path().join("adaptest-runs");
        let dirs: Vec<PathBuf> = std::fs::read_dir(&base)
            .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "expected one run dir, found {dirs:?}");
        dirs.into_iter().next().unwrap()
    }
}

/// results.json of a run directory.
pub fn results(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json parses")
}

/// Every case of results.json as (combination id, case id, status).
pub fn case_statuses(results: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for c in results["combinations"].as_array().unwrap() {
        for k in c["cases"].as_array().unwrap() {
            out.push((
                c["id"].as_str().unwrap().to_string(),
                k["id"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// A plan running the given suite ids on the local host.
pub fn local_plan(suites: &[&str]) -> String {
    let list: Vec<String> = suites.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "[product]\nname = \"test\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n[[target]]\nid = \"local\"\nkind = \"local\"\n\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"os\"]\nsuites = [{}]\n",
        list.join(", ")
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

/// The workspace's root directory (where `scripts/` lives).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
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

/// Every descendant of `pid` (children, their children, …), found through `/proc`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
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
pub fn kill_tree(pid: i32) {
    let mut all = descendants(pid);
    all.push(pid);
    for p in all {
        if p > 1 {
            // SAFETY: kill(2) with a pid > 1 that this test started (or one of its children).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}
