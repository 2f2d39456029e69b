//! The `qemu-user` target on this x86_64 host: an arm64 Debian rootfs and a LoongArch sysroot
//! (both built by `scripts/build-payloads.sh`, cached) run under QEMU user-mode emulation.
//! `os.basic` and the environment come from inside the emulated root, and servers started there
//! (Redis) serve on the host's loopback.

use crate::util::{
    Run, Sandbox, assert_mandatory_pass, case, env_of, free_port, payload, results, wait_for,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kills the Redis a test started inside a root (by the pid in its pid file), even when the
/// test fails before the plan's lifecycle `stop` ran.
struct RedisGuard {
    pidfile: PathBuf,
}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.pidfile)
            && let Ok(pid) = text.trim().parse::<i32>()
            && pid > 1
            && crate::util::alive(pid)
        {
            // SAFETY: kill(2) on the pid of the redis-server this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

fn target(id: &str, arch: &str, rootfs: &Path) -> String {
    format!(
        "[[target]]\nid = \"{id}\"\nkind = \"qemu-user\"\narch = \"{arch}\"\nrootfs = \"{}\"\n",
        rootfs.display()
    )
}

/// A `redis` component started inside the root on `port` (pid file under /var/tmp of the root).
fn redis_component(port: u16) -> String {
    format!(
        r#"[[component]]
id = "redis"
kind = "redis"
port = {port}

[component.lifecycle]
start = "redis-server --bind 127.0.0.1 --port {port} --daemonize yes --save '' --appendonly no --pidfile /var/tmp/adaptest-redis-{port}.pid --logfile /tmp/adaptest-redis-{port}.log --dir /tmp"
ready = "redis-cli -p {port} ping | grep -q PONG"
ready_timeout = "60s"
stop = "redis-cli -p {port} shutdown nosave || true"
"#
    )
}

#[test]
fn arm64_rootfs_passes_os_basic_and_its_redis_serves_the_kv_suite() {
    let rootfs = payload("aarch64");
    let port = free_port();
    let _redis = RedisGuard {
        pidfile: rootfs.join(format!("var/tmp/adaptest-redis-{port}.pid")),
    };
    let sb = Sandbox::new();
    sb.write(
        "suites/arch.toml",
        &format!(
            "[suite]\nid = \"t.redis-arch\"\ntitle = \"redis runs emulated\"\ncomponent = \"kv\"\n\n\
             [[case]]\nid = \"info\"\ntitle = \"INFO reports the emulated architecture\"\n\
             run = \"redis-cli -p {port} info server | tr -d '\\\\r' | grep '^os:'\"\n\
             expect = {{ stdout_regex = '^os:Linux .* aarch64$' }}\n"
        ),
    );
    sb.write(
        "plan.toml",
        &format!(
            "[product]\nname = \"arm64 under qemu-user\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n{}\n{}\n\
             [[matrix]]\ntargets = [\"arm64\"]\ncomponents = [\"os\"]\nsuites = [\"os.basic\"]\n\n\
             [[matrix]]\ntargets = [\"arm64\"]\ncomponents = [\"redis\"]\nsuites = [\"mw.kv\", \"t.redis-arch\"]\n",
            target("arm64", "aarch64", &rootfs),
            redis_component(port)
        ),
    );
    let run = sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"]);
    run.expect_code(0);
    let dir = sb.run_dir();
    let env = env_of(&dir, "arm64");
    assert_eq!(env["arch"], "aarch64", "{env:#}");
    assert_eq!(env["target_kind"], "qemu-user");
    assert_eq!(env["os_id"], "debian");
    assert_eq!(env["extra"]["qemu_user_mode"], "chroot");
    assert!(
        env["cpu_model"]
            .as_str()
            .unwrap()
            .starts_with("qemu-user aarch64 emulation"),
        "{env:#}"
    );
    let res = results(&dir);
    assert_mandatory_pass(&res, "arm64/os/os.basic");
    assert_eq!(case(&res, "arm64/os/os.basic", "arch")["status"], "passed");
    assert_mandatory_pass(&res, "arm64/redis/mw.kv");
    assert_eq!(
        case(&res, "arm64/redis/t.redis-arch", "info")["status"],
        "passed"
    );
    // The mounts the target made inside the rootfs never reached this (the host's) namespace.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!(" {}/", rootfs.display())),
        "mounts left under {}:\n{mounts}",
        rootfs.display()
    );
}

#[test]
fn loongarch64_sysroot_reports_loongarch_and_runs_sqlite_and_redis() {
    let sysroot = payload("loongarch64");
    let port = free_port();
    let _redis = RedisGuard {
        pidfile: sysroot.join(format!("var/tmp/adaptest-redis-{port}.pid")),
    };
    let sb = Sandbox::new();
    sb.write(
        "suites/la.toml",
        "[suite]\nid = \"t.la64\"\ntitle = \"LoongArch programs\"\ncomponent = \"os\"\n\n\
         [[case]]\nid = \"uname\"\ntitle = \"uname -m\"\nrun = \"uname -m\"\nexpect = { stdout = \"loongarch64\" }\n\n\
         [[case]]\nid = \"sqlite\"\ntitle = \"the zig-built sqlite3 answers\"\nstdin = \"select sqlite_version();\"\n\
         run = \"sqlite3\"\nexpect = { stdout_regex = '^3\\.[0-9]+\\.[0-9]+$' }\n\n\
         [[case]]\nid = \"sqlite-elf\"\ntitle = \"sqlite3 is a LoongArch ELF\"\n\
         run = \"od -An -tu1 -j18 -N2 /usr/bin/sqlite3 | awk '{print $1 + 256 * $2}'\"\nexpect = { stdout = \"258\" }\n",
    );
    sb.write(
        "suites/la-redis.toml",
        &format!(
            "[suite]\nid = \"t.la64-redis\"\ntitle = \"redis runs emulated\"\ncomponent = \"kv\"\n\n\
             [[case]]\nid = \"info\"\ntitle = \"INFO reports loongarch64\"\n\
             run = \"redis-cli -p {port} info server | tr -d '\\\\r' | grep '^os:'\"\n\
             expect = {{ stdout_regex = '^os:Linux .* loongarch64$' }}\n"
        ),
    );
    sb.write(
        "plan.toml",
        &format!(
            "[product]\nname = \"loongarch64 under qemu-user\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n{}\n{}\n\
             [[matrix]]\ntargets = [\"la64\"]\ncomponents = [\"os\"]\nsuites = [\"os.basic\", \"t.la64\"]\n\n\
             [[matrix]]\ntargets = [\"la64\"]\ncomponents = [\"redis\"]\nsuites = [\"mw.kv\", \"t.la64-redis\"]\n",
            target("la64", "loongarch64", &sysroot),
            redis_component(port)
        ),
    );
    let run = sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"]);
    run.expect_code(0);
    let dir = sb.run_dir();
    let env = env_of(&dir, "la64");
    assert_eq!(env["arch"], "loongarch64", "{env:#}");
    assert_eq!(env["os_id"], "adaptest-sysroot");
    assert_eq!(env["extra"]["qemu_user_mode"], "chroot");
    let res = results(&dir);
    assert_mandatory_pass(&res, "la64/os/t.la64");
    assert_mandatory_pass(&res, "la64/os/os.basic");
    assert_eq!(case(&res, "la64/os/os.basic", "arch")["status"], "passed");
    assert_mandatory_pass(&res, "la64/redis/mw.kv");
    assert_eq!(
        case(&res, "la64/redis/t.la64-redis", "info")["status"],
        "passed"
    );
}

/// Two runs on one root at the same time, the one that mounted the root's `/proc`, `/tmp`, …
/// finishing first: the other keeps its mounts and its scratch directory (each `adaptest` has a
/// mount namespace of its own). With shared mounts, the first run's stop unmounted the `/tmp`
/// holding the second's scratch directory and each later case of it failed to spawn (`chdir`:
/// ENOENT), as a CI run showed.
#[test]
fn runs_sharing_a_root_keep_their_own_mounts() {
    let sysroot = payload("loongarch64");
    let tag = format!("adaptest-mounts-{}-{}", std::process::id(), free_port());
    let flag = |name: &str| sysroot.join(format!("var/tmp/{tag}.{name}"));
    struct Flags(Vec<PathBuf>);
    impl Drop for Flags {
        fn drop(&mut self) {
            for f in &self.0 {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    let _flags = Flags(vec![flag("a"), flag("b"), flag("a-done")]);
    // Inside the root the flags are /var/tmp/<tag>.<name> (not under /tmp: that is per run).
    let sandbox = |cases: &str| {
        let sb = Sandbox::new();
        sb.write(
            "suites/s.toml",
            &crate::util::suite_toml("t.mounts", "mounts", "os", cases),
        );
        sb.write(
            "plan.toml",
            &format!(
                "[product]\nname = \"mounts\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n{}\n                 [[matrix]]\ntargets = [\"la64\"]\ncomponents = [\"os\"]\nsuites = [\"t.mounts\"]\n",
                target("la64", "loongarch64", &sysroot)
            ),
        );
        sb
    };
    // A mounts first and holds on until B has started on the same root.
    let a = sandbox(&format!(
        r#"[[case]]
id = "wait-for-b"
title = "until B runs"
timeout = "120s"
run = "touch /var/tmp/{tag}.a; until [ -e /var/tmp/{tag}.b ]; do sleep 1; done"
"#
    ));
    // B starts while A runs, then goes on after A has ended.
    let b = sandbox(&format!(
        r#"[[case]]
id = "outlive-a"
title = "until A is over"
timeout = "120s"
run = "touch /var/tmp/{tag}.b; until [ -e /var/tmp/{tag}.a-done ]; do sleep 1; done"

[[case]]
id = "scratch"
title = "scratch directory, /proc and /dev still there"
run = "echo kept > f && cat f && test -r /proc/self/status && test -c /dev/null && echo ok"
expect = {{ stdout = "kept\nok" }}
"#
    ));
    let start = |sb: &Sandbox, name: &str| {
        let mut c = sb.own_suites_cmd(&[]);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().expect("spawn adaptest");
        wait_for(
            &format!("run {name} to start its case"),
            Duration::from_secs(120),
            Duration::from_millis(100),
            || flag(name).exists().then_some(()),
        );
        child
    };
    let first = start(&a, "a");
    let second = start(&b, "b");
    Run::from(first.wait_with_output().expect("wait for A")).expect_code(0);
    std::fs::write(flag("a-done"), "").unwrap();
    let b_run = Run::from(second.wait_with_output().expect("wait for B"));
    b_run.expect_code(0);
    assert_eq!(
        case(&results(&b.run_dir()), "la64/os/t.mounts", "scratch")["status"],
        "passed"
    );
}

/// Without binfmt (forced here), the host's shell runs the command and the root's programs run
/// through `qemu-<arch>-static -L` wrappers: the environment says so, its arch is the emulated
/// `uname`'s and its OS identity the root's, and the root's programs work.
#[test]
fn host_shell_mode_runs_the_roots_programs_and_says_so() {
    let sysroot = payload("loongarch64");
    let sb = Sandbox::new();
    sb.write(
        "suites/la.toml",
        "[suite]\nid = \"t.la64\"\ntitle = \"LoongArch programs\"\ncomponent = \"os\"\n\n\
         [[case]]\nid = \"uname\"\ntitle = \"uname -m\"\nrun = \"uname -m\"\nexpect = { stdout = \"loongarch64\" }\n\n\
         [[case]]\nid = \"sqlite\"\ntitle = \"sqlite3 through its wrapper\"\nstdin = \"select 6 * 7;\"\n\
         run = \"sqlite3\"\nexpect = { stdout = \"42\" }\n",
    );
    sb.write(
        "plan.toml",
        &format!(
            "{}\n[[matrix]]\ntargets = [\"la64\"]\ncomponents = [\"os\"]\nsuites = [\"t.la64\"]\n",
            target("la64", "loongarch64", &sysroot)
        ),
    );
    let out = sb
        .own_suites_cmd(&[])
        .env("ADAPTEST_QEMU_USER_MODE", "host-shell")
        .output()
        .unwrap();
    Run::from(out).expect_code(0);
    let dir = sb.run_dir();
    let env = env_of(&dir, "la64");
    assert_eq!(env["arch"], "loongarch64", "{env:#}");
    assert_eq!(env["extra"]["qemu_user_mode"], "host-shell");
    assert!(
        env["extra"]["userland"]
            .as_str()
            .unwrap()
            .contains("host /bin/sh"),
        "{env:#}"
    );
    assert_eq!(env["os_id"], "adaptest-sysroot");
    assert_eq!(env["libc"], "static (no shared C library)");
}

#[test]
fn qemu_user_fields_are_validated() {
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        "[[target]]\nid = \"q\"\nkind = \"qemu-user\"\nrootfs = \"/nonexistent/adaptest-rootfs\"\nhost = \"x\"\n\n\
         [[matrix]]\ntargets = [\"q\"]\ncomponents = [\"os\"]\nsuites = [\"os.basic\"]\n",
    );
    let run = sb.run(&["validate", "plan.toml"]);
    run.expect_code(2);
    for needle in [
        "target[0].arch",
        "target[0].rootfs",
        "/nonexistent/adaptest-rootfs",
        "target[0].host",
    ] {
        run.expect_in_output(needle);
    }
}

/// The SQL core suite through the `sqlite-cli` adapter, with the zig-built LoongArch sqlite3 as
/// the client: every statement is a `sqlite3` process under emulation (2000 of them for the
/// concurrency case).
#[test]
fn loongarch64_sqlite3_passes_db_sql_core_through_the_cli_adapter() {
    let sysroot = payload("loongarch64");
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        &format!(
            "{}\n[[component]]\nid = \"sqlite-la64\"\nkind = \"sqlite-cli\"\ncli = \"/usr/bin/sqlite3\"\n\n\
             [[matrix]]\ntargets = [\"la64\"]\ncomponents = [\"sqlite-la64\"]\nsuites = [\"db.sql-core\"]\n",
            target("la64", "loongarch64", &sysroot)
        ),
    );
    let run = sb.run(&["run", "--plan", "plan.toml"]);
    run.expect_code(0);
    let res = results(&sb.run_dir());
    assert_mandatory_pass(&res, "la64/sqlite-la64/db.sql-core");
    assert_eq!(
        case(&res, "la64/sqlite-la64/db.sql-core", "chinese")["status"],
        "passed"
    );
}
