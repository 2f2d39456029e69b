//! Component plugins through the real binary: the example Memcached plugin passes its suite
//! hosted as a dylib and as an exec plugin against a real memcached; a plugin that panics
//! (dylib), aborts or hangs (exec) errors only its own cases, with the cause, and the run
//! completes; a plugin built for another ABI or protocol version is refused with both named.

use crate::servers::Server;
use crate::util::{
    Sandbox, bin, case, combination, free_port, reason, results, suite_toml, workspace,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding the plugin artefacts (`libmemcached_plugin.so`, `memcached-plugin`,
/// `libfaulty_plugin.so`, `faulty-plugin`): the profile directory of the binary under test.
/// Builds them with cargo into the same target directory when they are missing.
fn artefacts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile = Path::new(bin()).parent().expect("the binary has a directory").to_path_buf();
        let wanted = ["libmemcached_plugin.so", "memcached-plugin", "libfaulty_plugin.so", "faulty-plugin"];
        let missing = || wanted.iter().filter(|f| !profile.join(f).exists()).copied().collect::<Vec<_>>();
        if !missing().is_empty() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "memcached-plugin", "-p", "faulty-plugin"])
                .current_dir(workspace())
                .env("CARGO_TARGET_DIR", profile.parent().expect("target dir"));
            if profile.ends_with("release") {
                cmd.arg("--release");
            }
            let _ = cmd.status();
        }
        let still = missing();
        assert!(
            still.is_empty(),
            "plugin artefacts {still:?} are missing from {}: build them with `cargo build -p memcached-plugin -p faulty-plugin` (scripts/test.sh does)",
            profile.display()
        );
        profile
    })
}

/// A memcached this test started on a free loopback port (its log in `dir`); killed by PID when
/// dropped.
fn memcached(dir: &Path) -> Server {
    let port = free_port();
    let mut cmd = Command::new("memcached");
    cmd.args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-t",
        "2",
        "-m",
        "32",
    ]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "root"]);
    }
    // (scripts/install-deps.sh installs memcached)
    Server::start("memcached", port, &dir.join("memcached.log"), &mut cmd)
}

/// The version of this machine's memcached.
fn memcached_version() -> String {
    let out = Command::new("memcached").arg("-V").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("memcached ")
        .to_string()
}

const HEAD: &str = "[product]\nname = \"p\"\nversion = \"1\"\nvendor = \"v\"\n\n[[target]]\nid = \"local\"\nkind = \"local\"\n\n";

#[test]
fn the_memcached_plugin_passes_its_suite_as_dylib_and_as_exec() {
    let dir = artefacts();
    let sb = Sandbox::new();
    let mc = memcached(sb.path());
    sb.write(
        "plan.toml",
        &format!(
            "{HEAD}[[component]]\nid = \"mc-dylib\"\nkind = \"plugin\"\nport = {port}\noptions = {{ plugin = \"dylib:{so}\" }}\n\n\
             [[component]]\nid = \"mc-exec\"\nkind = \"plugin\"\nport = {port}\noptions = {{ plugin = \"exec:{exe}\", timeout = \"10s\" }}\n\n\
             [[matrix]]\ntargets = [\"local\"]\ncomponents = [\"mc-dylib\", \"mc-exec\"]\nsuites = [\"mw.kv-memcached\", \"mw.pubsub\"]\n",
            port = mc.port,
            so = dir.join("libmemcached_plugin.so").display(),
            exe = dir.join("memcached-plugin").display(),
        ),
    );
    let suites = workspace().join("examples/memcached-plugin/suites");
    let r = sb.run(&[
        "run",
        "--plan",
        "plan.toml",
        "--suites",
        suites.to_str().unwrap(),
        "--jobs",
        "1",
    ]);
    r.expect_code(0);
    let res = results(&sb.run_dir());
    for comp in ["mc-dylib", "mc-exec"] {
        let id = format!("local/{comp}/mw.kv-memcached");
        let cases = combination(&res, &id)["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 11);
        for k in cases {
            let want = if k["id"] == "sql-is-not-offered" {
                "skipped"
            } else {
                "passed"
            };
            assert_eq!(k["status"], want, "{comp}: {k}");
        }
        // Capabilities come from the plugin's describe, not from the plan-time kind.
        assert!(
            reason(case(&res, &id, "sql-is-not-offered")).contains("sql"),
            "{comp}"
        );
        let bench = case(&res, &id, "set-throughput");
        let ops = bench["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "ops")
            .unwrap();
        assert_eq!(ops["value"], 4000.0);
        // A suite for a capability the plugin does not describe pairs at plan time, then is
        // skipped whole, with the reason.
        let pubsub = combination(&res, &format!("local/{comp}/mw.pubsub"))["cases"]
            .as_array()
            .unwrap();
        assert!(!pubsub.is_empty());
        for k in pubsub {
            assert_eq!(k["status"], "skipped", "{k}");
            let why = reason(k);
            assert!(
                why.contains("does not offer")
                    && why.contains("`pubsub`")
                    && why.contains("it offers: kv"),
                "{why}"
            );
        }
        let version = res["environments"]["local"]["components"][comp]
            .as_str()
            .unwrap_or_default();
        assert!(
            version.contains(&memcached_version()) && version.contains("plugin memcached"),
            "the server's version as the plugin reported it: {version:?}"
        );
    }
}

/// Processes whose command line mentions `needle` (this test's own copies of plugins).
fn processes_mentioning(needle: &str) -> Vec<i32> {
    crate::util::pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(needle))
                && crate::util::alive(*pid)
        })
        .collect()
}

#[test]
fn faulty_plugins_error_their_own_cases_with_the_cause_and_the_run_completes() {
    let dir = artefacts();
    let sb = Sandbox::new();
    // A private copy of the exec plugin, so its processes can be told from any other test's.
    let exe = sb.path().join("faulty-plugin");
    std::fs::copy(dir.join("faulty-plugin"), &exe).unwrap();
    let echo = |id: &str| {
        format!(
            "[[case]]\nid = \"{id}\"\ntitle = \"{id}\"\nsteps = [{{ op = \"fault.echo\", message = \"hi\", expect = {{ message = \"hi\" }} }}]\n\n"
        )
    };
    let fault = |id: &str, op: &str| {
        format!(
            "[[case]]\nid = \"{id}\"\ntitle = \"{id}\"\nsteps = [{{ op = \"{op}\", message = \"bye\" }}]\n\n"
        )
    };
    let head = |id: &str| suite_toml(id, "faults", "plugin", "");
    sb.write(
        "suites/panic.toml",
        &format!(
            "{}{}{}{}",
            head("t.faults-panic"),
            echo("echo"),
            fault("panic", "fault.panic"),
            echo("echo-again")
        ),
    );
    sb.write(
        "suites/crash.toml",
        &format!(
            "{}{}{}{}{}{}",
            head("t.faults-crash"),
            echo("echo"),
            fault("abort", "fault.abort"),
            echo("echo-after-abort"),
            fault("hang", "fault.hang"),
            echo("echo-final")
        ),
    );
    sb.write(
        "suites/after.toml",
        &suite_toml("t.after", "after", "os", "[[case]]\nid = \"still-running\"\ntitle = \"x\"\nrun = \"echo fine\"\nexpect = { stdout = \"fine\" }\n"),
    );
    let so = dir.join("libfaulty_plugin.so");
    sb.write(
        "plan.toml",
        &format!(
            "{HEAD}[[component]]\nid = \"dy\"\nkind = \"plugin\"\noptions = {{ plugin = \"dylib:{so}\" }}\n\n\
             [[component]]\nid = \"dy-open\"\nkind = \"plugin\"\noptions = {{ plugin = \"dylib:{so}\", panic_on_open = \"yes\" }}\n\n\
             [[component]]\nid = \"ex\"\nkind = \"plugin\"\noptions = {{ plugin = \"exec:faulty-plugin\", timeout = \"2s\" }}\n\n\
             [[matrix]]\ntargets = [\"local\"]\ncomponents = [\"dy\", \"dy-open\"]\nsuites = [\"t.faults-panic\"]\n\n\
             [[matrix]]\ntargets = [\"local\"]\ncomponents = [\"ex\"]\nsuites = [\"t.faults-crash\"]\n\n\
             [[matrix]]\ntargets = [\"local\"]\ncomponents = [\"os\"]\nsuites = [\"t.after\"]\n",
            so = so.display()
        )
        .replace("exec:faulty-plugin", &format!("exec:{}", exe.display())),
    );
    let started = Instant::now();
    let r = sb.run_own_suites(&[]);
    r.expect_code(3); // errored cases: infrastructure, not the product
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a hang is cut by the timeout"
    );
    let res = results(&sb.run_dir());
    assert_eq!(res["run"]["completion"], "complete");

    let p = "local/dy/t.faults-panic";
    assert_eq!(case(&res, p, "echo")["status"], "passed");
    let panic = case(&res, p, "panic");
    assert_eq!(panic["status"], "error");
    assert!(
        reason(panic).contains("panicked") && reason(panic).contains("deliberate panic: bye"),
        "{panic}"
    );
    assert_eq!(
        case(&res, p, "echo-again")["status"],
        "passed",
        "the library goes on serving"
    );
    for k in combination(&res, "local/dy-open/t.faults-panic")["cases"]
        .as_array()
        .unwrap()
    {
        assert_eq!(k["status"], "error");
        assert!(reason(k).contains("asked to panic on open"), "{k}");
    }

    let c = "local/ex/t.faults-crash";
    assert_eq!(case(&res, c, "echo")["status"], "passed");
    let abort = case(&res, c, "abort");
    assert_eq!(abort["status"], "error");
    assert!(
        reason(abort).contains("SIGABRT") && reason(abort).contains("aborting: bye"),
        "{abort}"
    );
    assert_eq!(
        case(&res, c, "echo-after-abort")["status"],
        "passed",
        "a fresh process serves the next case"
    );
    let hang = case(&res, c, "hang");
    assert_eq!(hang["status"], "error");
    assert!(
        reason(hang).contains("did not answer") && reason(hang).contains("2s"),
        "{hang}"
    );
    assert_eq!(case(&res, c, "echo-final")["status"], "passed");
    assert_eq!(
        case(&res, "local/os/t.after", "still-running")["status"],
        "passed"
    );

    // Nothing of the plugin outlives the run (the hung one was killed with its group).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(exe.to_str().unwrap()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        processes_mentioning(exe.to_str().unwrap()),
        Vec::<i32>::new(),
        "leftover plugin processes"
    );
}

#[test]
fn abi_and_protocol_version_mismatches_are_refused_naming_both_versions() {
    let sb = Sandbox::new();
    let fixtures = workspace().join("tests/fixtures/plugins");
    let so = sb.path().join("libabi99.so");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(fixtures.join("abi_v99.c"))
        .status()
        .expect("a C compiler (cc) is installed");
    assert!(cc.success());
    sb.write(
        "suites/s.toml",
        &suite_toml("t.any", "any", "kv", "[[case]]\nid = \"set\"\ntitle = \"set\"\nsteps = [{ op = \"kv.set\", key = \"k\", value = \"v\" }]\n\n[[case]]\nid = \"get\"\ntitle = \"get\"\nsteps = [{ op = \"kv.get\", key = \"k\", expect = \"v\" }]\n"),
    );
    sb.write(
        "plan.toml",
        &format!(
            "{HEAD}[[component]]\nid = \"abi99\"\nkind = \"plugin\"\noptions = {{ plugin = \"dylib:{so}\" }}\n\n\
             [[component]]\nid = \"proto2\"\nkind = \"plugin\"\noptions = {{ plugin = \"exec:python3 {v2}\" }}\n\n\
             [[component]]\nid = \"py\"\nkind = \"plugin\"\noptions = {{ plugin = \"exec:python3 {py}\" }}\n\n\
             [[matrix]]\ntargets = [\"local\"]\ncomponents = [\"abi99\", \"proto2\", \"py\"]\nsuites = [\"t.any\"]\n",
            so = so.display(),
            v2 = fixtures.join("protocol_v2.py").display(),
            py = fixtures.join("echo_plugin.py").display(),
        ),
    );
    let r = sb.run_own_suites(&["--jobs", "1"]);
    r.expect_code(3);
    let res = results(&sb.run_dir());
    for k in combination(&res, "local/abi99/t.any")["cases"]
        .as_array()
        .unwrap()
    {
        assert_eq!(k["status"], "error");
        let why = reason(k);
        assert!(
            why.contains("C ABI version 99") && why.contains("supports ABI version 1"),
            "{why}"
        );
    }
    for k in combination(&res, "local/proto2/t.any")["cases"]
        .as_array()
        .unwrap()
    {
        assert_eq!(k["status"], "error");
        let why = reason(k);
        assert!(
            why.contains("adapter protocol 2") && why.contains("adapter protocol 1"),
            "{why}"
        );
    }
    // The same protocol in plain Python, without the SDK, is a working plugin.
    for k in combination(&res, "local/py/t.any")["cases"]
        .as_array()
        .unwrap()
    {
        assert_eq!(k["status"], "passed", "{k}");
    }

    // A plan naming no plugin, or a hosting that does not exist, is an input error.
    sb.write(
        "bad.toml",
        &format!("{HEAD}[[component]]\nid = \"x\"\nkind = \"plugin\"\noptions = {{ plugin = \"libx.so\" }}\n\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"x\"]\nsuites = [\"t.any\"]\n"),
    );
    let v = sb.run(&["validate", "bad.toml", "--suites", "suites", "--no-builtin"]);
    v.expect_code(2);
    assert!(
        v.stderr.contains("options.plugin") && v.stderr.contains("dylib:"),
        "{}",
        v.stderr
    );
}
