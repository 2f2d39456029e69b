//! Evidence bundles through the real binary: keygen, bundle, verify — an untouched bundle
//! verifies; a flipped byte in any kind of file, a removed or added file (or directory entry),
//! another key or a damaged archive are all rejected. OpenSSL and sha256sum check the same bundle independently.

use crate::util::{Run, Sandbox, local_plan};
use std::path::{Path, PathBuf};
use std::process::Command;

const SUITE: &str = r#"[suite]
id = "b.demo"
title = "bundle demo"
component = "os"

[[case]]
id = "hello"
title = "says hello"
run = "echo hello; echo 'to stderr' >&2"

[[case]]
id = "chinese"
title = "Chinese output"
title_zh = "中文输出"
run = "echo 兼容性"
"#;

/// A finished run, a key pair (`k.key`, `k.pub`) and its bundle `run.tar.gz`.
struct Fixture {
    sb: Sandbox,
    run_dir: PathBuf,
    bundle: PathBuf,
}

fn fixture(algorithm: &str) -> Fixture {
    let sb = Sandbox::new();
    sb.write("suites/b.toml", SUITE);
    sb.write("plan.toml", &local_plan(&["b.demo"]));
    sb.run_own_suites(&["--format", "json"]).expect_code(0);
    let run_dir = sb.run_dir();
    sb.run(&["keygen", "--out", "k", "--algorithm", algorithm])
        .expect_code(0);
    let out = bundle(&sb, &run_dir, "k.key", &["-o", "run.tar.gz"]);
    out.expect_code(0);
    out.expect_in_stdout("bundle run.tar.gz");
    let bundle = sb.path().join("run.tar.gz");
    Fixture {
        sb,
        run_dir,
        bundle,
    }
}

impl Fixture {
    fn verify(&self, bundle: &Path, pubkey: &str) -> Run {
        self.sb
            .run(&["verify", bundle.to_str().unwrap(), "--pubkey", pubkey])
    }

    /// Extract the bundle into a fresh directory; returns the run's directory inside it.
    fn extract(&self, name: &str) -> PathBuf {
        let dir = self.sb.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        sh(Command::new("tar")
            .arg("-xzf")
            .arg(&self.bundle)
            .arg("-C")
            .arg(&dir));
        let run_id = self.run_dir.file_name().unwrap();
        dir.join(run_id)
    }

    /// Pack only the files of an extracted run directory (in reverse order, no directory
    /// entries) into `<name>.tar.gz`.
    fn repack_files_only(&self, extracted: &Path, name: &str) -> PathBuf {
        let out = self.sb.path().join(format!("{name}.tar.gz"));
        let parent = extracted.parent().unwrap();
        let mut files: Vec<PathBuf> = walk(extracted)
            .into_iter()
            .map(|p| p.strip_prefix(parent).unwrap().to_path_buf())
            .collect();
        files.sort();
        files.reverse();
        sh(Command::new("tar")
            .arg("--no-recursion")
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(parent)
            .args(&files));
        out
    }

    /// Pack an extracted run directory back into `<name>.tar.gz`.
    fn repack(&self, extracted: &Path, name: &str) -> PathBuf {
        let out = self.sb.path().join(format!("{name}.tar.gz"));
        sh(Command::new("tar")
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(extracted.parent().unwrap())
            .arg(extracted.file_name().unwrap()));
        out
    }
}

/// `adaptest bundle DIR --key KEY` and `extra`.
fn bundle(sb: &Sandbox, dir: &Path, key: &str, extra: &[&str]) -> Run {
    let mut args = vec!["bundle", dir.to_str().unwrap(), "--key", key];
    args.extend_from_slice(extra);
    sb.run(&args)
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(!bytes.is_empty(), "{} is empty", path.display());
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let out = sb.run(&["keygen", "--out", "center"]);
    out.expect_code(0);
    out.expect_in_stdout("ed25519 key id ");
    let mode = |p: &str| {
        std::fs::metadata(sb.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("center.key"), 0o600);
    let private = std::fs::read_to_string(sb.path().join("center.key")).unwrap();
    let public = std::fs::read_to_string(sb.path().join("center.pub")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    // Never overwritten by accident.
    let again = sb.run(&["keygen", "--out", "center"]);
    again.expect_code(2);
    again.expect_in_stderr("already exists");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("center.key")).unwrap(),
        private
    );
    // --force replaces the pair and keeps the private file private.
    std::fs::set_permissions(
        sb.path().join("center.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    sb.run(&["keygen", "--out", "center", "--force"])
        .expect_code(0);
    assert_eq!(mode("center.key"), 0o600);
    assert_ne!(
        std::fs::read_to_string(sb.path().join("center.key")).unwrap(),
        private
    );
}

#[test]
fn an_untouched_bundle_verifies_and_holds_the_whole_run() {
    let f = fixture("ed25519");
    let ok = f.verify(&f.bundle, "k.pub");
    ok.expect_code(0);
    assert!(ok.stdout.starts_with("verified: "), "{}", ok.stdout);
    ok.expect_in_stdout("verdict: certified (兼容)");

    let listing = sh(Command::new("tar").arg("-tzf").arg(&f.bundle));
    let run_id = f.run_dir.file_name().unwrap().to_str().unwrap();
    let names: Vec<&str> = listing
        .lines()
        .map(|l| {
            l.strip_prefix(&format!("{run_id}/"))
                .expect("one top directory")
        })
        .collect();
    assert_eq!(
        &names[..2],
        ["manifest.json", "manifest.sig"],
        "manifest first"
    );
    for expected in [
        "results.json",
        "junit.xml",
        "report.html",
        "report.zh-CN.html",
        "run.json",
        "journal.jsonl",
        "inputs/plan.toml",
        "env/local.json",
        "logs/local/os/b.demo/hello.log",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("inputs/suites/")),
        "the suites used: {names:?}"
    );

    // The manifest lists every other file with its SHA-256 and names the harness.
    let dir = f.extract("x");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "adaptest-evidence-bundle");
    assert_eq!(manifest["algorithm"], "ed25519");
    assert_eq!(manifest["digest"], "sha256");
    assert_eq!(manifest["run"]["id"], run_id);
    assert!(
        manifest["bundled_by"]
            .as_str()
            .unwrap()
            .starts_with("adaptest ")
    );
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), names.len() - 2);
    let sha256sum = sh(Command::new("sha256sum")
        .arg("results.json")
        .current_dir(&dir));
    let results_sha = sha256sum.split_whitespace().next().unwrap();
    let entry = files.iter().find(|f| f["path"] == "results.json").unwrap();
    assert_eq!(entry["digest"], results_sha);
    // The evidence fingerprint on the report covers is sha256sum of results.json.
    assert_eq!(manifest["fingerprint"], results_sha);
    for report in ["report.html", "report.zh-CN.html"] {
        let html = std::fs::read_to_string(dir.join(report)).unwrap();
        assert!(
            html.contains(&format!(
                "<span class=\"fp\" id=\"fingerprint\">{results_sha}</span>"
            )),
            "{report} shows the fingerprint"
        );
    }

    // Repacking the same files with another tar (other order, owners, times) still verifies:
    // only content is signed. Directory entries are not files of the manifest: rejected.
    let repacked = f.repack_files_only(&dir, "repacked");
    f.verify(&repacked, "k.pub").expect_code(0);
    let with_dirs = f.repack(&dir, "with-dirs");
    let out = f.verify(&with_dirs, "k.pub");
    out.expect_code(1);
    out.expect_in_stderr("/logs/: a directory entry");
}

#[test]
fn openssl_verifies_the_manifest_signature_independently() {
    for (algorithm, extra) in [
        ("ed25519", vec![]),
        (
            "sm2",
            vec!["-digest", "sm3", "-pkeyopt", "distid:1234567812345678"],
        ),
    ] {
        let f = fixture(algorithm);
        let dir = f.extract("x");
        let out = Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(f.sb.path().join("k.pub"))
            .arg("-rawin")
            .arg("-in")
            .arg(dir.join("manifest.json"))
            .arg("-sigfile")
            .arg(dir.join("manifest.sig"))
            .args(&extra)
            .output()
            .expect("openssl");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"),
            "{algorithm}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And OpenSSL reads the private key (PKCS#8) and derives the same public key.
        let public = sh(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(f.sb.path().join("k.key")));
        assert_eq!(
            public,
            std::fs::read_to_string(f.sb.path().join("k.pub")).unwrap(),
            "{algorithm}"
        );
    }
}

#[test]
fn a_flipped_byte_in_any_kind_of_file_is_rejected() {
    let f = fixture("ed25519");
    let kinds = [
        ("results.json", "results.json: content changed"),
        ("junit.xml", "junit.xml: content changed"),
        ("report.html", "report.html: content changed"),
        ("report.zh-CN.html", "report.zh-CN.html: content changed"),
        ("run.json", "run.json: content changed"),
        ("journal.jsonl", "journal.jsonl: content changed"),
        ("env/local.json", "env/local.json: content changed"),
        ("inputs/plan.toml", "inputs/plan.toml: content changed"),
        (
            "logs/local/os/b.demo/hello.log",
            "hello.log: content changed",
        ),
        ("manifest.json", "the signature does not verify"),
        ("manifest.sig", "the signature does not verify"),
    ];
    for (i, (file, expected)) in kinds.iter().enumerate() {
        let dir = f.extract(&format!("flip{i}"));
        flip_a_byte(&dir.join(file));
        let bundle = f.repack(&dir, &format!("flip{i}"));
        let out = f.verify(&bundle, "k.pub");
        out.expect_code(1);
        assert!(
            out.stderr.starts_with("REJECTED: "),
            "{file}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(expected), "{file}: {}", out.stderr);
        assert!(!out.stdout.contains("verified"), "{file}");
    }
    // A suite file as used by the run.
    let dir = f.extract("flip-suite");
    let suite = walk(&dir.join("inputs/suites"))
        .into_iter()
        .next()
        .expect("a suite file");
    flip_a_byte(&suite);
    let out = f.verify(&f.repack(&dir, "flip-suite"), "k.pub");
    out.expect_code(1);
    out.expect_in_stderr("content changed");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_removed_or_added_file_is_rejected() {
    let f = fixture("ed25519");
    let dir = f.extract("removed");
    std::fs::remove_file(dir.join("logs/local/os/b.demo/chinese.log")).unwrap();
    let out = f.verify(&f.repack(&dir, "removed"), "k.pub");
    out.expect_code(1);
    out.expect_in_stderr(
        "logs/local/os/b.demo/chinese.log: listed in the manifest but missing from the bundle",
    );

    let dir = f.extract("added");
    std::fs::write(dir.join("logs/local/os/b.demo/extra.log"), "planted\n").unwrap();
    let out = f.verify(&f.repack(&dir, "added"), "k.pub");
    out.expect_code(1);
    out.expect_in_stderr("logs/local/os/b.demo/extra.log: in the bundle but not in the manifest");

    // Without the manifest or its signature there is nothing to trust.
    for (i, name) in ["manifest.json", "manifest.sig"].iter().enumerate() {
        let dir = f.extract(&format!("nomanifest{i}"));
        std::fs::remove_file(dir.join(name)).unwrap();
        let out = f.verify(&f.repack(&dir, &format!("nomanifest{i}")), "k.pub");
        out.expect_code(1);
        out.expect_in_stderr(&format!("{name} is missing"));
    }
}

#[test]
fn another_key_or_a_damaged_archive_is_rejected() {
    let f = fixture("ed25519");
    f.sb.run(&["keygen", "--out", "other"]).expect_code(0);
    let out = f.verify(&f.bundle, "other.pub");
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("the signature does not verify with the given public key")
    );
    out.expect_in_stderr("not the given public key");

    f.sb.run(&["keygen", "--out", "gm", "--algorithm", "sm2"])
        .expect_code(0);
    let out = f.verify(&f.bundle, "gm.pub");
    out.expect_code(1);
    out.expect_in_stderr("the bundle is signed with ed25519 but the public key is an sm2 key");

    // Re-signed by an attacker with their own key: their manifest is valid, but not ours.
    let dir = f.extract("resigned");
    std::fs::write(dir.join("logs/local/os/b.demo/hello.log"), "forged\n").unwrap();
    let forged_run = dir.clone();
    std::fs::remove_file(forged_run.join("manifest.json")).unwrap();
    std::fs::remove_file(forged_run.join("manifest.sig")).unwrap();
    let out = bundle(&f.sb, &forged_run, "other.key", &["-o", "forged.tar.gz"]);
    out.expect_code(0);
    let forged = f.sb.path().join("forged.tar.gz");
    f.verify(&forged, "other.pub").expect_code(0);
    f.verify(&forged, "k.pub").expect_code(1);

    // A byte flipped in the compressed archive itself.
    let damaged = f.sb.path().join("damaged.tar.gz");
    std::fs::copy(&f.bundle, &damaged).unwrap();
    flip_a_byte(&damaged);
    let out = f.verify(&damaged, "k.pub");
    out.expect_code(1);
    assert!(out.stderr.starts_with("REJECTED: "), "{}", out.stderr);

    // The private key is not a public key; a missing bundle is not a rejection.
    let out = f.verify(&f.bundle, "k.key");
    out.expect_code(2);
    out.expect_in_stderr("holds a private key");
    f.verify(&f.sb.path().join("nope.tar.gz"), "k.pub")
        .expect_code(2);
}

#[test]
fn sm2_bundles_use_sm3_digests_and_verify() {
    let f = fixture("sm2");
    let ok = f.verify(&f.bundle, "k.pub");
    ok.expect_code(0);
    ok.expect_in_stdout("signed with sm2 key");
    let dir = f.extract("x");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["algorithm"], "sm2");
    assert_eq!(manifest["digest"], "sm3");
    // SM3 of results.json is not its SHA-256 (the fingerprint).
    let entry = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "results.json")
        .unwrap();
    assert_ne!(entry["digest"], manifest["fingerprint"]);

    flip_a_byte(&dir.join("results.json"));
    let out = f.verify(&f.repack(&dir, "flipped"), "k.pub");
    out.expect_code(1);
    out.expect_in_stderr("results.json: content changed");

    // --algorithm insists on the key's kind.
    let out = bundle(&f.sb, &f.run_dir, "k.key", &["--algorithm", "ed25519"]);
    out.expect_code(2);
    out.expect_in_stderr("is an sm2 key, not ed25519");
}

#[test]
fn bundle_renders_reports_that_are_missing_or_stale() {
    let f = fixture("ed25519");
    std::fs::remove_file(f.run_dir.join("report.zh-CN.html")).unwrap();
    std::fs::write(f.run_dir.join("report.html"), "<html>edited by hand</html>").unwrap();
    let out = bundle(&f.sb, &f.run_dir, "k.key", &["-o", "fresh.tar.gz"]);
    out.expect_code(0);
    out.expect_in_stderr("note: report.html was missing or out of date");
    out.expect_in_stderr("note: report.zh-CN.html");
    let fresh = f.sb.path().join("fresh.tar.gz");
    f.verify(&fresh, "k.pub").expect_code(0);

    // Unfinished runs and non-runs are refused.
    let out = bundle(&f.sb, f.sb.path(), "k.key", &[]);
    out.expect_code(2);
    std::fs::remove_file(f.run_dir.join("results.json")).unwrap();
    let out = bundle(&f.sb, &f.run_dir, "k.key", &[]);
    out.expect_code(2);
    out.expect_in_stderr("has no results.json");
}
