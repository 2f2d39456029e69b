//! `qemu-system` targets through the real binary: guests from `adaptest image build` (aarch64
//! and x86_64, built once per machine by scripts/test.sh) pass `os.basic`, serve Redis to the
//! `mw.kv` suite through a forwarded port, restore from a saved state on later runs, boot a 9p
//! root without touching the image, fail a boot with the console's last words, and a guest
//! killed mid-suite errors its own cases while the rest of the plan finishes.
//!
//! A missing image fails these tests with the command that builds it (they never build one:
//! that takes minutes). At most two guests run at once (two file-lock slots), 512 MiB each.

use crate::util::{
    Sandbox, alive, assert_mandatory_pass, case_statuses, env_of, results, suite_toml, wait_for,
};
use serde_json::Value;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The aarch64 image the tests boot (with Redis), as `scripts/test.sh` builds it.
const ARM_IMAGE: &[&str] = &["--arch", "aarch64", "--packages", "redis-server"];
/// The x86_64 image.
const X86_IMAGE: &[&str] = &["--arch", "x86_64"];

/// The directory of a built image; fails the test (with the command to build it) when missing.
fn image(recipe: &[&str]) -> PathBuf {
    let out = Command::new(crate::util::bin())
        .args(["image", "path"])
        .args(recipe)
        .stdin(Stdio::null())
        .output()
        .expect("run adaptest image path");
    assert!(
        out.status.success(),
        "a test image is missing — build it first with `cargo run -p adaptest -- image build {}` \
         (scripts/test.sh does):\n{}",
        recipe.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// One of two machine-wide guest slots (2 cores: at most two guests at once), held until dropped.
struct GuestSlot(#[expect(dead_code, reason = "held for its lock")] File);

impl GuestSlot {
    fn take() -> GuestSlot {
        let path = |i: u32| std::env::temp_dir().join(format!("adaptest-e2e-guest-slot-{i}.lock"));
        let open = |i: u32| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path(i))
                .expect("open slot lock")
        };
        loop {
            for i in 0..2 {
                let f = open(i);
                // SAFETY: flock(2) on a descriptor we own.
                if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                    return GuestSlot(f);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A `[[matrix]]` of `suite` for the OS of the target `vm`.
fn os_matrix(suite: &str) -> String {
    format!("[[matrix]]\ntargets = [\"vm\"]\ncomponents = [\"os\"]\nsuites = [\"{suite}\"]\n")
}

/// A plan with one `qemu-system` target `vm` (plus `extra` TOML appended).
fn vm_plan(arch: &str, image: &Path, target_extra: &str, extra: &str) -> String {
    format!(
        "[product]\nname = \"guest\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n\
         [[target]]\nid = \"vm\"\nkind = \"qemu-system\"\narch = \"{arch}\"\nimage = \"{}\"\n\
         memory_mb = 512\n{target_extra}\n{extra}",
        image.display()
    )
}

/// Wait until the run `child` (of `sb`) has started its guest's QEMU and `also(run_dir)` holds:
/// QEMU's pid (from its pid file) and the run directory. Fails with `what` after `within`, and
/// at once if adaptest exits first.
fn wait_for_qemu(
    what: &str,
    sb: &Sandbox,
    child: &mut std::process::Child,
    within: Duration,
    also: impl Fn(&Path) -> bool,
) -> (i32, PathBuf) {
    wait_for(what, within, Duration::from_millis(100), || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("adaptest exited while waiting: {what}: {st}");
        }
        let dir = sb.run_in_progress()?;
        let pid = std::fs::read_to_string(dir.join("targets/vm/qemu.pid")).ok()?;
        let pid = pid.trim().parse::<i32>().ok()?;
        also(&dir).then_some((pid, dir))
    })
}

/// The throughput a bench case measured, for the log.
fn bench_line(res: &Value, combination: &str, case: &str) -> String {
    res["combinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == combination)
        .flat_map(|c| c["cases"].as_array().unwrap())
        .find(|k| k["id"] == case)
        .map(|k| format!("{case}: {} {}", k["status"], k["reason"]))
        .unwrap_or_default()
}

/// A file's size and modification time (a base image must not change).
fn stamp(p: &Path) -> (u64, std::time::SystemTime) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.len(), m.modified().unwrap())
}

#[test]
fn an_aarch64_guest_passes_os_basic_and_serves_redis_to_mw_kv() {
    let img = image(ARM_IMAGE);
    let base = stamp(&img.join("disk.ext4"));
    let _slot = GuestSlot::take();
    let sb = Sandbox::new();
    // Two Redis servers in the guest, started by lifecycle commands on the target: one on all
    // addresses (reached through a QEMU forward added at run time), one on the guest's loopback
    // only (reached through SSH).
    let redis = |id: &str, port: u16, bind: &str| {
        format!(
            "[[component]]\nid = \"{id}\"\nkind = \"redis\"\nport = {port}\n\
             lifecycle = {{ start = \"redis-server --bind {bind} --protected-mode no --port {port} --daemonize yes --save '' --appendonly no --dir /tmp --logfile /tmp/{id}.log\", \
             ready = \"redis-cli -p {port} ping | grep -q PONG\", stop = \"redis-cli -p {port} shutdown nosave || true\" }}\n\n"
        )
    };
    sb.write(
        "suites/kv-smoke.toml",
        "[suite]\nid = \"t.kv-smoke\"\ntitle = \"kv smoke\"\ncomponent = \"kv\"\n\n\
         [[case]]\nid = \"roundtrip\"\ntitle = \"set/get\"\nsteps = [\n\
           { op = \"kv.set\", key = \"adaptest:smoke\", value = \"适配\" },\n\
           { op = \"kv.get\", key = \"adaptest:smoke\", expect = \"适配\" },\n\
           { op = \"kv.del\", key = \"adaptest:smoke\", expect = 1 },\n]\n",
    );
    sb.write(
        "plan.toml",
        &vm_plan(
            "aarch64",
            &img,
            "",
            &format!(
                "{}{}[[matrix]]\ntargets = [\"vm\"]\ncomponents = [\"os\", \"redis\", \"redis-lo\"]\n\
                 suites = [\"os.basic\", \"mw.kv\", \"t.kv-smoke\"]\n\
                 exclude = [{{ component = \"redis-lo\", suite = \"mw.kv\" }}, {{ component = \"redis\", suite = \"t.kv-smoke\" }}]\n",
                redis("redis", 6379, "0.0.0.0"),
                redis("redis-lo", 6380, "127.0.0.1"),
            ),
        ),
    );
    let started = Instant::now();
    let r = sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"]);
    let run_dir = sb.run_dir();
    let res = results(&run_dir);
    r.expect_code(0);
    eprintln!(
        "aarch64 guest: os.basic + mw.kv in {:.1}s; {}; {}",
        started.elapsed().as_secs_f64(),
        bench_line(&res, "vm/redis/mw.kv", "set-throughput"),
        bench_line(&res, "vm/redis/mw.kv", "get-throughput"),
    );
    assert_mandatory_pass(&res, "");
    let statuses = case_statuses(&res);
    let passed = |combo: &str| {
        statuses
            .iter()
            .filter(|(c, _, s)| c == combo && s == "passed")
            .count()
    };
    assert!(passed("vm/os/os.basic") >= 25, "{statuses:?}");
    assert!(passed("vm/redis/mw.kv") >= 9, "{statuses:?}");
    assert_eq!(passed("vm/redis-lo/t.kv-smoke"), 1, "{statuses:?}");
    let env = env_of(&run_dir, "vm");
    assert_eq!(env["arch"], "aarch64", "{env}");
    assert_eq!(env["target_kind"], "qemu-system");
    assert_eq!(env["os_id"], "debian");
    assert_eq!(env["extra"]["qemu_accel"], "tcg");
    // The run's overlay is gone; the image is untouched.
    assert!(!run_dir.join("targets/vm/overlay.qcow2").exists());
    assert!(run_dir.join("targets/vm/console.log").exists());
    assert_eq!(
        stamp(&img.join("disk.ext4")),
        base,
        "the base image changed"
    );
}

#[test]
fn an_x86_64_guest_passes_os_basic() {
    let img = image(X86_IMAGE);
    let _slot = GuestSlot::take();
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        &vm_plan("x86_64", &img, "", &os_matrix("os.basic")),
    );
    let r = sb.run(&["run", "--plan", "plan.toml"]);
    let run_dir = sb.run_dir();
    let res = results(&run_dir);
    r.expect_code(0);
    assert_mandatory_pass(&res, "");
    let env = env_of(&run_dir, "vm");
    assert_eq!(env["arch"], "x86_64", "{env}");
    // This host's /dev/kvm cannot boot Linux (nested): the probe falls back to TCG, and says so.
    let accel = env["extra"]["qemu_accel"].as_str().unwrap();
    let detail = env["extra"]["qemu_accel_detail"].as_str().unwrap();
    assert!(detail.starts_with(accel), "{accel}: {detail}");
}

#[test]
fn a_second_run_restores_the_saved_guest_instead_of_booting() {
    let img = image(X86_IMAGE);
    let _slot = GuestSlot::take();
    let suite = suite_toml(
        "t.tiny",
        "tiny",
        "os",
        "[[case]]\nid = \"uname\"\ntitle = \"uname\"\nrun = \"uname -m; date +%s\"\n",
    );
    let mut envs = Vec::new();
    for _ in 0..2 {
        let sb = Sandbox::new();
        sb.write("suites/t.toml", &suite);
        sb.write(
            "plan.toml",
            &vm_plan("x86_64", &img, "", &os_matrix("t.tiny")),
        );
        sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"])
            .expect_code(0);
        let run_dir = sb.run_dir();
        let res = results(&run_dir);
        let out = res["combinations"][0]["cases"][0]["stdout"]
            .as_str()
            .unwrap_or("")
            .to_string();
        envs.push((env_of(&run_dir, "vm"), out));
    }
    let (second, out) = &envs[1];
    assert_eq!(second["extra"]["qemu_start"], "warm", "{second}");
    assert!(
        second["extra"]["qemu_snapshot_bytes"].as_str().is_some(),
        "{second}"
    );
    // The restored guest's clock was set to now, not left at the snapshot's time.
    let guest_now: u64 = out
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("date +%s");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(guest_now) < 120,
        "guest clock {guest_now}, host {now}"
    );
}

/// Ctrl-C while a guest is still booting ends the run at once (exit 130, nothing recorded,
/// QEMU gone) instead of waiting for the boot or its timeout. The guest here never comes up: its
/// kernel has no root and waits forever after the panic (`panic=0`), and the boot timeout is
/// ten minutes.
#[test]
fn ctrl_c_during_a_boot_ends_the_run_and_its_qemu() {
    let img = image(ARM_IMAGE);
    let _slot = GuestSlot::take();
    let sb = Sandbox::new();
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "t.never",
            "never runs",
            "os",
            "[[case]]\nid = \"one\"\ntitle = \"one\"\nrun = \"true\"\n",
        ),
    );
    sb.write(
        "plan.toml",
        &format!(
            "[product]\nname = \"boot\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n\
             [[target]]\nid = \"vm\"\nkind = \"qemu-system\"\narch = \"aarch64\"\n\
             kernel = \"{}\"\nidentity_file = \"{}\"\nappend = \"console=ttyAMA0 panic=0\"\n\
             boot_timeout = \"10m\"\n\n\
             [[matrix]]\ntargets = [\"vm\"]\ncomponents = [\"os\"]\nsuites = [\"t.never\"]\n",
            img.join("vmlinuz").display(),
            img.join("ssh/id_ed25519").display()
        ),
    );
    let mut child = sb
        .own_suites_cmd(&[])
        .env("ADAPTEST_QEMU_WARM", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn adaptest");
    let (pid, run_dir) = wait_for_qemu(
        "QEMU never started",
        &sb,
        &mut child,
        Duration::from_secs(120),
        |_| true,
    );
    assert!(alive(pid));
    // SAFETY: kill(2) on the adaptest process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    // A hang detector, not a speed target: without the fix this waits for the 10 min timeout.
    let code = wait_for(
        "adaptest kept waiting for the boot after Ctrl-C",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || child.try_wait().expect("wait adaptest").map(|s| s.code()),
    );
    assert_eq!(code, Some(130));
    wait_for(
        "QEMU outlived the interrupted run",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (!alive(pid)).then_some(()),
    );
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap_or_default();
    assert!(
        !journal.contains("\"type\":\"case\""),
        "an interrupted boot recorded cases: {journal}"
    );
}

#[test]
fn a_guest_killed_mid_suite_errors_its_cases_and_the_local_target_finishes() {
    let img = image(X86_IMAGE);
    let _slot = GuestSlot::take();
    let sb = Sandbox::new();
    let mut suite = suite_toml("t.slow", "slow", "os", "");
    for i in 0..12 {
        suite.push_str(&format!(
            "\n[[case]]\nid = \"step-{i:02}\"\ntitle = \"step {i}\"\nrun = \"sleep 1; echo ok\"\n"
        ));
    }
    sb.write("suites/slow.toml", &suite);
    sb.write(
        "plan.toml",
        &vm_plan(
            "x86_64",
            &img,
            "",
            "[[target]]\nid = \"local\"\nkind = \"local\"\n\n\
             [[matrix]]\ntargets = [\"vm\", \"local\"]\ncomponents = [\"os\"]\nsuites = [\"t.slow\"]\n",
        ),
    );
    let mut child = sb
        .own_suites_cmd(&["--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn adaptest");
    // Wait for the guest to have finished two cases, then kill its QEMU by PID.
    let (pid, run_dir) = wait_for_qemu(
        "the guest never got going",
        &sb,
        &mut child,
        Duration::from_secs(600),
        |dir| {
            let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
            journal
                .lines()
                .filter(|l| l.contains("vm/os/t.slow"))
                .count()
                >= 2
        },
    );
    assert!(alive(pid));
    // SAFETY: kill(2) on the QEMU process the run under test started (its pidfile).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = child.wait().expect("wait adaptest");
    assert_eq!(
        status.code(),
        Some(3),
        "an errored case is an infrastructure error"
    );
    let res = results(&run_dir);
    let vm: Vec<&Value> = res["combinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "vm/os/t.slow")
        .flat_map(|c| c["cases"].as_array().unwrap())
        .collect();
    let passed = vm.iter().filter(|c| c["status"] == "passed").count();
    let errored: Vec<&&Value> = vm.iter().filter(|c| c["status"] == "error").collect();
    assert!(passed >= 2, "{vm:?}");
    assert!(!errored.is_empty(), "{vm:?}");
    assert_eq!(passed + errored.len(), 12, "{vm:?}");
    for c in &errored {
        let reason = c["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains(&format!("QEMU process (pid {pid})")) && reason.contains("signal 9"),
            "{reason}"
        );
    }
    let local: Vec<(String, String, String)> = case_statuses(&res)
        .into_iter()
        .filter(|(c, _, _)| c == "local/os/t.slow")
        .collect();
    assert_eq!(local.len(), 12);
    assert!(local.iter().all(|(_, _, s)| s == "passed"), "{local:?}");
}

#[test]
fn a_boot_that_fails_reports_the_console_tail() {
    let img = image(X86_IMAGE);
    let _slot = GuestSlot::take();
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        &vm_plan(
            "x86_64",
            &img,
            "append = \"adaptest.root=/dev/adaptest-no-such-disk\"\nboot_timeout = \"120s\"\n",
            &os_matrix("os.basic"),
        ),
    );
    sb.run(&["run", "--plan", "plan.toml"]).expect_code(3);
    let res = results(&sb.run_dir());
    let case = &res["combinations"][0]["cases"][0];
    assert_eq!(case["status"], "error");
    let reason = case["reason"].as_str().unwrap();
    assert!(
        reason.contains("last lines of the serial console"),
        "{reason}"
    );
    assert!(
        reason.contains("adaptest-initramfs: FATAL: cannot mount /dev/adaptest-no-such-disk"),
        "{reason}"
    );
}

#[test]
fn qemu_system_targets_are_validated_field_by_field() {
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        "[[target]]\nid = \"a\"\nkind = \"qemu-system\"\narch = \"riscv64\"\nimage = \"x\"\n\n\
         [[target]]\nid = \"b\"\nkind = \"qemu-system\"\narch = \"aarch64\"\naccel = \"kvm\"\n\n\
         [[target]]\nid = \"c\"\nkind = \"qemu-system\"\narch = \"x86_64\"\nimage = \"x\"\nkernel = \"/vmlinuz\"\naccel = \"hvf\"\n\n\
         [[matrix]]\ntargets = [\"*\"]\ncomponents = [\"os\"]\nsuites = [\"os.basic\"]\n",
    );
    let r = sb.run(&["validate", "plan.toml"]);
    r.expect_code(2);
    for needle in [
        "target[0].arch",
        "unknown arch `riscv64`",
        "target[1].image",
        "target[1].identity_file",
        "target[1].accel",
        "target[2].kernel",
        "comes from the image",
        "target[2].accel",
        "unknown accel `hvf`",
    ] {
        r.expect_in_stderr(needle);
    }
}

#[test]
fn a_missing_image_errors_the_cases_with_the_build_command() {
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        &vm_plan(
            "aarch64",
            Path::new("adaptest-no-such-image"),
            "",
            &os_matrix("os.basic"),
        ),
    );
    sb.run(&["run", "--plan", "plan.toml"]).expect_code(3);
    let res = results(&sb.run_dir());
    let reason = res["combinations"][0]["cases"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("no image `adaptest-no-such-image`")
            && reason.contains("adaptest image build"),
        "{reason}"
    );
}

#[test]
fn image_build_of_a_built_recipe_is_a_cache_hit() {
    let img = image(ARM_IMAGE);
    let started = Instant::now();
    let out = Command::new(crate::util::bin())
        .args(["image", "build"])
        .args(ARM_IMAGE)
        .stdin(Stdio::null())
        .output()
        .expect("run adaptest image build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        img
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(" cached in "));
    eprintln!("cache hit in {:.3}s", started.elapsed().as_secs_f64());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(img.join("image.json")).unwrap()).unwrap();
    assert_eq!(manifest["arch"], "aarch64");
    assert_eq!(manifest["packages"], serde_json::json!(["redis-server"]));
}

#[test]
fn a_9p_root_boots_cold_and_keeps_the_image_unchanged() {
    let img = image(X86_IMAGE);
    let _slot = GuestSlot::take();
    let sb = Sandbox::new();
    sb.write(
        "suites/t.toml",
        "[suite]\nid = \"t.ninep\"\ntitle = \"9p\"\ncomponent = \"os\"\n\n\
         [[case]]\nid = \"root\"\ntitle = \"the root is the 9p export under an overlay\"\n\
         run = \"awk '$2 == \\\"/\\\" { print $3 }' /proc/mounts; echo written > /adaptest-9p-probe && cat /adaptest-9p-probe\"\n\
         expect = { stdout = \"overlay\\nwritten\" }\n",
    );
    sb.write(
        "plan.toml",
        &vm_plan(
            "x86_64",
            &img,
            "append = \"adaptest.root=9p\"\n",
            &os_matrix("t.ninep"),
        ),
    );
    sb.run(&["run", "--plan", "plan.toml", "--suites", "suites"])
        .expect_code(0);
    let env = env_of(&sb.run_dir(), "vm");
    assert_eq!(env["extra"]["qemu_start"], "cold", "{env}");
    assert!(
        env["extra"]["qemu_start_note"]
            .as_str()
            .unwrap_or("")
            .contains("9p"),
        "{env}"
    );
    assert!(
        !img.join("rootfs/adaptest-9p-probe").exists(),
        "the guest wrote into the image"
    );
}
