//! Evidence integrity through the real binary: a fault of the infrastructure or a mistake of
//! the suite is never blamed on the product, nothing certifies from nothing, secrets stay out of
//! the evidence, a damaged bundle is rejected, a resume loses no case, and Ctrl-C does not wait
//! for a hung server.

use crate::servers::{PasswordPg, redis};
use crate::util::{Sandbox, case, local_plan, reason, results, suite_toml, toml_list, wait_for};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A plan on the local host with `components` (TOML) paired with `suites`.
fn plan_with(components: &str, ids: &[&str], suites: &[&str]) -> String {
    format!(
        "[product]\nname = \"integrity\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n\
         [[target]]\nid = \"local\"\nkind = \"local\"\n\n{components}\n\
         [[matrix]]\ntargets = [\"local\"]\ncomponents = [{}]\nsuites = [{}]\n",
        toml_list(ids),
        toml_list(suites)
    )
}

/// The first row of `sql` on the private cluster (as its superuser, with its password).
fn psql(port: u16, password: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-tAc", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_server_shut_down_during_a_query_is_an_error_not_a_product_failure() {
    let sb = Sandbox::new();
    let pg = PasswordPg::start("pw-of-the-test");
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "pg.gone",
            "server goes away",
            "sql",
            "[[case]]\nid = \"sleep\"\ntitle = \"a long query\"\ntimeout = \"5m\"\n\
             steps = [{ op = \"sql.query\", sql = \"select pg_sleep(300)\" }]\n",
        ),
    );
    sb.write(
        "plan.toml",
        &plan_with(
            &format!(
                "[[component]]\nid = \"pg\"\nkind = \"postgres\"\nport = {}\nuser = \"postgres\"\n\
                 database = \"postgres\"\npassword_env = \"ADAPTEST_E2E_PG_PW\"\n\
                 options = {{ timeout_ms = \"600000\" }}\n",
                pg.port
            ),
            &["pg"],
            &["pg.gone"],
        ),
    );
    let child = sb
        .own_suites_cmd(&[])
        .env("ADAPTEST_E2E_PG_PW", "pw-of-the-test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the run's pg_sleep to be running",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            (psql(
                pg.port,
                "pw-of-the-test",
                "select count(*) from pg_stat_activity where query = 'select pg_sleep(300)'",
            ) == "1")
                .then_some(())
        },
    );
    pg.stop_fast();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "infrastructure error\n{stderr}");
    let res = results(&sb.run_dir());
    let c = case(&res, "local/pg/pg.gone", "sleep");
    assert_eq!(c["status"], "error", "{c}");
    assert!(reason(c).contains("57P01"), "{c}");
}

#[test]
fn authoring_mistakes_are_invalid_input_and_a_suite_error_is_never_a_failure() {
    let sb = Sandbox::new();
    let bad = sb.write(
        "bad/s.toml",
        &suite_toml(
            "bad.steps",
            "mistakes",
            "kv",
            "[[case]]\nid = \"frob\"\ntitle = \"unknown op\"\n\
             steps = [{ op = \"kv.frobnicate\", key = \"k\" }]\n\n\
             [[case]]\nid = \"soon\"\ntitle = \"bad duration\"\n\
             steps = [{ op = \"sleep\", duration = \"soon\" }]\n",
        ),
    );
    let v = sb.run(&["validate", bad.to_str().unwrap(), "--no-builtin"]);
    v.expect_code(2);
    let shown = bad.display().to_string();
    v.expect_in_stderr(&format!(
        "{shown}:9:10: case[0].steps[0].op: unknown operation"
    ));
    v.expect_in_stderr("`kv.frobnicate`");
    v.expect_in_stderr(&format!("{shown}:14:10:"));
    v.expect_in_stderr("case[1].steps[0].duration");

    // A plugin whose library is not there is the plan's mistake.
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "t.any",
            "any",
            "kv",
            "[[case]]\nid = \"x\"\ntitle = \"x\"\nsteps = [{ op = \"kv.ping\" }]\n",
        ),
    );
    sb.write(
        "plugin-plan.toml",
        &plan_with(
            "[[component]]\nid = \"p\"\nkind = \"plugin\"\noptions = { plugin = \"dylib:no/such/libplugin.so\" }\n",
            &["p"],
            &["t.any"],
        ),
    );
    let v = sb.run(&[
        "validate",
        "plugin-plan.toml",
        "--suites",
        "suites",
        "--no-builtin",
    ]);
    v.expect_code(2);
    v.expect_in_stderr("component[0].options.plugin");
    v.expect_in_stderr("libplugin.so does not exist");

    // At run time, arguments the adapter refuses are the suite's fault: `error`, not `failed`.
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "t.args",
            "arguments",
            "kv",
            "[[case]]\nid = \"nokey\"\ntitle = \"kv.set without a key\"\n\
             steps = [{ op = \"kv.set\", value = \"v\" }]\n",
        ),
    );
    sb.write(
        "plan.toml",
        &plan_with(
            "[[component]]\nid = \"redis\"\nkind = \"redis\"\n",
            &["redis"],
            &["t.args"],
        ),
    );
    let r = sb.run_own_suites(&[]);
    r.expect_code(3);
    let res = results(&sb.run_dir());
    let c = case(&res, "local/redis/t.args", "nokey");
    assert_eq!(c["status"], "error", "{c}");
    assert!(reason(c).contains("invalid arguments for `kv.set`"), "{c}");
}

#[test]
fn a_plan_that_runs_nothing_is_invalid_and_nothing_certifies_from_nothing() {
    let sb = Sandbox::new();
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "t.never",
            "never applies",
            "os",
            "[[case]]\nid = \"elsewhere\"\ntitle = \"on an arch that is not this one\"\n\
             requires = { arch = [\"no-such-arch\"] }\nrun = \"true\"\n",
        ),
    );
    sb.write(
        "empty.toml",
        "[product]\nname = \"x\"\nversion = \"1\"\nvendor = \"v\"\n\n[[target]]\nid = \"local\"\nkind = \"local\"\n\n\
         [[matrix]]\ntargets = []\ncomponents = []\nsuites = []\n",
    );
    let v = sb.run(&[
        "validate",
        "empty.toml",
        "--suites",
        "suites",
        "--no-builtin",
    ]);
    v.expect_code(2);
    v.expect_in_stderr("empty.toml:10:1: matrix[0]: expands to no combination");
    v.expect_in_stderr("`suites` is empty");
    let r = sb.run(&[
        "run",
        "--plan",
        "empty.toml",
        "--suites",
        "suites",
        "--no-builtin",
    ]);
    r.expect_code(2);
    assert!(!sb.path().join("adaptest-runs").exists(), "nothing ran");

    // Every mandatory case skipped: no evidence, no certificate.
    sb.write("plan.toml", &local_plan(&["t.never"]));
    let r = sb.run_own_suites(&[]);
    r.expect_code(1);
    let res = results(&sb.run_dir());
    assert_eq!(
        res["certification"]["verdict"], "not_certified",
        "{}",
        res["certification"]
    );
    assert_eq!(res["certification"]["basis"]["mandatory_executed"], 0);
    let html = std::fs::read_to_string(sb.run_dir().join("report.html")).unwrap();
    assert!(
        html.contains("No mandatory case ran"),
        "the report says why"
    );
}

/// A finished run of a one-case suite and its bundle signed with a new `algorithm` key.
fn bundled(algorithm: &str) -> (Sandbox, PathBuf, String) {
    let sb = Sandbox::new();
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "b.one",
            "one",
            "os",
            "[[case]]\nid = \"hi\"\ntitle = \"hi\"\nrun = \"echo hi\"\n",
        ),
    );
    sb.write("plan.toml", &local_plan(&["b.one"]));
    sb.run_own_suites(&[]).expect_code(0);
    let dir = sb.run_dir();
    sb.run(&["keygen", "--out", "k", "--algorithm", algorithm])
        .expect_code(0);
    sb.run(&[
        "bundle",
        dir.to_str().unwrap(),
        "--key",
        "k.key",
        "-o",
        "b.tar.gz",
    ])
    .expect_code(0);
    let run_id = dir.file_name().unwrap().to_string_lossy().into_owned();
    (sb, dir, run_id)
}

/// The bundle rebuilt with the same entries plus a directory entry `<run-id>/extra/`.
fn with_directory_entry(bundle: &Path, run_id: &str, out: &Path) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(bundle).unwrap(),
    ));
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    let mut builder = tar::Builder::new(gz);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        builder.append_data(&mut header, path, &mut entry).unwrap();
    }
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    builder
        .append_data(&mut dir, format!("{run_id}/extra/"), std::io::empty())
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn verify_rejects_a_cut_padded_or_extended_archive_for_both_algorithms() {
    for algorithm in ["ed25519", "sm2"] {
        let (sb, _dir, run_id) = bundled(algorithm);
        let verify = |name: &str| sb.run(&["verify", name, "--pubkey", "k.pub"]);
        verify("b.tar.gz").expect_code(0);
        let bytes = std::fs::read(sb.path().join("b.tar.gz")).unwrap();

        // Cut by a few bytes: the gzip trailer (CRC-32, length) is gone.
        std::fs::write(sb.path().join("cut.tar.gz"), &bytes[..bytes.len() - 4]).unwrap();
        let r = verify("cut.tar.gz");
        r.expect_code(1);
        r.expect_in_stderr("the archive is damaged");

        // Junk after the gzip stream.
        let mut padded = bytes.clone();
        padded.extend_from_slice(b"appended junk");
        std::fs::write(sb.path().join("padded.tar.gz"), &padded).unwrap();
        let r = verify("padded.tar.gz");
        r.expect_code(1);
        r.expect_in_stderr("13 byte(s) of trailing data after the gzip stream");

        // A directory entry the manifest does not list.
        with_directory_entry(
            &sb.path().join("b.tar.gz"),
            &run_id,
            &sb.path().join("dir.tar.gz"),
        );
        let r = verify("dir.tar.gz");
        r.expect_code(1);
        r.expect_in_stderr(&format!("{run_id}/extra/: a directory entry"));
    }
}

#[test]
fn resume_reruns_a_case_whose_record_lost_its_newline_and_refuses_bad_run_json() {
    let sb = Sandbox::new();
    sb.write(
        "suites/s.toml",
        &suite_toml(
            "r.two",
            "two",
            "os",
            "[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"echo a\"\n\n[[case]]\nid = \"b\"\ntitle = \"b\"\nrun = \"echo b >> ../b-runs; echo b\"\n",
        ),
    );
    sb.write("plan.toml", &local_plan(&["r.two"]));
    sb.run_own_suites(&[]).expect_code(0);
    let dir = sb.run_dir();
    let journal = dir.join("journal.jsonl");
    let mut text = std::fs::read(&journal).unwrap();
    assert_eq!(text.pop(), Some(b'\n'));
    std::fs::write(&journal, &text).unwrap();
    let r = sb.run(&["run", "--resume", dir.to_str().unwrap()]);
    r.expect_code(0);
    let res = results(&dir);
    assert_eq!(
        case(&res, "local/os/r.two", "b")["status"],
        "passed",
        "re-run, not lost"
    );
    assert_eq!(case(&res, "local/os/r.two", "a")["status"], "passed");

    // A run.json a kill left empty says what to do; a run id that is a path is refused.
    let meta = dir.join("run.json");
    let good = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, "").unwrap();
    let r = sb.run(&["run", "--resume", dir.to_str().unwrap()]);
    r.expect_code(2);
    r.expect_in_stderr("nothing can be resumed");
    let mut doc: serde_json::Value = serde_json::from_str(&good).unwrap();
    doc["run_id"] = "../escape".into();
    std::fs::write(&meta, doc.to_string()).unwrap();
    let r = sb.run(&["run", "--resume", dir.to_str().unwrap()]);
    r.expect_code(2);
    r.expect_in_stderr("is not a run id");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_components_password_reaches_no_case_and_no_evidence() {
    const SECRET: &str = "s3cret-Of-The-Test";
    let sb = Sandbox::new();
    let server = redis(sb.path(), Some(SECRET));
    sb.write(
        "suites/os.toml",
        &suite_toml(
            "t.env",
            "environment",
            "os",
            "[[case]]\nid = \"env\"\ntitle = \"prints its environment\"\nrun = \"env\"\n\n\
             [[case]]\nid = \"asks\"\ntitle = \"asks for the secret by name\"\n\
             pass_env = [\"ADAPTEST_E2E_SECRET\"]\nrun = \"echo got:$ADAPTEST_E2E_SECRET\"\n\
             expect = { stdout_regex = \"^got:.+$\" }\n",
        ),
    );
    sb.write(
        "suites/kv.toml",
        &suite_toml(
            "t.kv",
            "kv with a password",
            "kv",
            "[[case]]\nid = \"roundtrip\"\ntitle = \"set and get\"\n\
             steps = [{ op = \"kv.set\", key = \"k\", value = \"v\" }, { op = \"kv.get\", key = \"k\", expect = \"v\" },\n\
             { op = \"shell\", run = \"env | grep -c ADAPTEST_E2E_SECRET || true\", expect = { stdout = \"0\\n\" } }]\n",
        ),
    );
    sb.write(
        "plan.toml",
        &plan_with(
            &format!(
                "[[component]]\nid = \"redis\"\nkind = \"redis\"\nport = {}\npassword_env = \"ADAPTEST_E2E_SECRET\"\n",
                server.port
            ),
            &["os", "redis"],
            &["t.env", "t.kv"],
        ),
    );
    let r = Run::from(
        sb.own_suites_cmd(&[])
            .env("ADAPTEST_E2E_SECRET", SECRET)
            .output()
            .unwrap(),
    );
    r.expect_code(0);
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET));
    let dir = sb.run_dir();
    let res = results(&dir);
    let env = case(&res, "local/os/t.env", "env");
    assert!(
        !env["stdout"]
            .as_str()
            .unwrap()
            .contains("ADAPTEST_E2E_SECRET"),
        "scrubbed: {env}"
    );
    assert_eq!(case(&res, "local/os/t.env", "asks")["stdout"], "got:***\n");
    sb.run(&["keygen", "--out", "k"]).expect_code(0);
    sb.run(&[
        "bundle",
        dir.to_str().unwrap(),
        "--key",
        "k.key",
        "-o",
        "b.tar.gz",
    ])
    .expect_code(0);
    for f in files(&dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "{} holds the secret",
            f.display()
        );
    }
}

use crate::util::Run;

#[test]
fn ctrl_c_does_not_wait_for_a_hung_server() {
    let sb = Sandbox::new();
    let server = redis(sb.path(), Some("pw"));
    sb.write(
        "suites/kv.toml",
        &suite_toml(
            "t.hang",
            "a server that stops answering",
            "kv",
            "[[case]]\nid = \"set\"\ntitle = \"set\"\ntimeout = \"10m\"\n\
             steps = [{ op = \"kv.set\", key = \"k\", value = \"v\" }]\n",
        ),
    );
    sb.write(
        "plan.toml",
        &plan_with(
            &format!(
                "[[component]]\nid = \"redis\"\nkind = \"redis\"\nport = {}\npassword_env = \"ADAPTEST_E2E_PW\"\n\
                 options = {{ connect_timeout_ms = \"600000\", timeout_ms = \"600000\" }}\n",
                server.port
            ),
            &["redis"],
            &["t.hang"],
        ),
    );
    // The server stops answering (the kernel still accepts connections for it).
    let pid = server.pid() as i32;
    // SAFETY: a signal to the redis-server this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut child = sb
        .own_suites_cmd(&["--format", "json"])
        .env("ADAPTEST_E2E_PW", "pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let port = server.port;
    // adaptest has connected and waits for the stopped server's answer.
    wait_for(
        "adaptest's connection to the stopped redis",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let out = Command::new("ss")
                .args([
                    "-Htn",
                    "state",
                    "established",
                    &format!("( dport = :{port} )"),
                ])
                .output()
                .unwrap();
            (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
        },
    );
    // SAFETY: SIGINT to the adaptest process this test started, by its PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let events: Vec<serde_json::Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let status = child.wait().unwrap();
    // SAFETY: as above, to the redis-server this test started.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(status.code(), Some(130), "{events:?}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let interrupted = kinds
        .iter()
        .position(|k| *k == "interrupted")
        .expect("interrupted event");
    let finished = kinds
        .iter()
        .position(|k| *k == "run_finished")
        .expect("run_finished event");
    assert!(interrupted < finished, "{kinds:?}");
    assert!(
        !kinds.contains(&"case_finished"),
        "the cut case is not recorded: {kinds:?}"
    );
    assert_eq!(events[finished]["exit_code"], 130);
}

#[test]
fn a_file_that_is_not_utf8_is_reported_at_its_first_bad_byte() {
    let sb = Sandbox::new();
    // Line 3, column 9: the GB18030 bytes of 中文 where UTF-8 is expected.
    let mut bytes = b"[suite]\nid = \"t.gb\"\ntitle = \"".to_vec();
    bytes.extend([0xd6, 0xd0, 0xce, 0xc4]);
    bytes.extend(b"\"\ncomponent = \"os\"\n");
    std::fs::create_dir_all(sb.path().join("suites")).unwrap();
    std::fs::write(sb.path().join("suites/gb.toml"), &bytes).unwrap();
    let v = sb.run(&["validate", "suites/gb.toml", "--no-builtin"]);
    v.expect_code(2);
    v.expect_in_stderr("suites/gb.toml:3:10: suite.title: invalid UTF-8 (byte 0xd6)");
    // A plan too, and `run` refuses it before anything runs.
    let mut plan = local_plan(&["x"]).into_bytes();
    plan.splice(0..0, *b"# \xff\n");
    std::fs::write(sb.path().join("plan.toml"), &plan).unwrap();
    let r = sb.run(&["run", "--plan", "plan.toml", "--no-builtin"]);
    r.expect_code(2);
    r.expect_in_stderr("plan.toml:1:3: (document): invalid UTF-8 (byte 0xff)");
}
