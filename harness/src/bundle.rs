//! Evidence bundles: one `.tar.gz` holding a whole run directory (results.json, junit.xml, both
//! reports, logs, environments, the plan and suites used, run.json with the harness version) and
//! a `manifest.json` listing every file with its digest, signed with Ed25519 (SHA-256 digests)
//! or SM2 (SM3 digests, the 国密 algorithms).
//!
//! ```text
//! <run-id>/manifest.json   format, algorithm, signer key id, run, fingerprint, files + digests
//! <run-id>/manifest.sig    the signature of manifest.json's exact bytes (Ed25519: 64 raw bytes;
//!                          SM2: DER, distinguishing id 1234567812345678) — `openssl pkeyutl
//!                          -verify -rawin` checks it too
//! <run-id>/results.json …  every file of the run directory
//! ```
//!
//! Verification needs only the bundle and the public key (offline): the signature must verify,
//! every listed file must be present with its digest and size, and nothing else may be in the
//! archive (no extra, duplicate, non-regular or escaping entries). The reports must show the
//! fingerprint (SHA-256) of the results.json beside them.
//!
//! Keys are PEM files: a PKCS#8 private key (created mode 0600) and an SPKI public key, readable
//! by OpenSSL.

use adaptest_reports::fingerprint::{fingerprint, hex};
use adaptest_reports::{Lang, RunResults, Verdict};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The signed list of files, first in the archive.
pub const MANIFEST: &str = "manifest.json";
/// The signature of [`MANIFEST`], second in the archive.
pub const SIGNATURE: &str = "manifest.sig";
/// [`Manifest::format`].
pub const FORMAT: &str = "adaptest-evidence-bundle";
/// [`Manifest::format_version`].
pub const FORMAT_VERSION: u32 = 1;
/// The SM2 distinguishing identifier (the GM/T 0009 default, which OpenSSL also uses).
pub const SM2_DISTID: &str = "1234567812345678";
/// The files a run directory gets its reports from (re-rendered into the bundle when missing or
/// out of date with results.json).
const DERIVED: [&str; 3] = ["junit.xml", "report.html", "report.zh-CN.html"];

/// A signature algorithm, with the digest its manifests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Ed25519 signatures, SHA-256 file digests.
    Ed25519,
    /// SM2 signatures (GB/T 32918), SM3 file digests (GB/T 32905).
    Sm2,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Sm2 => "sm2",
        }
    }

    pub fn digest(self) -> DigestAlgorithm {
        match self {
            Algorithm::Ed25519 => DigestAlgorithm::Sha256,
            Algorithm::Sm2 => DigestAlgorithm::Sm3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    Sha256,
    Sm3,
}

impl DigestAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sm3 => "sm3",
        }
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    pub algorithm: Algorithm,
    pub digest: DigestAlgorithm,
    /// Key id of the signer: SHA-256 (hex) of its raw public key.
    pub signer: String,
    /// When the bundle was made (RFC 3339).
    pub created_at: String,
    /// The harness that made the bundle.
    pub bundled_by: String,
    pub run: ManifestRun,
    /// SHA-256 (hex) of results.json: the evidence fingerprint on the reports' cover.
    pub fingerprint: String,
    /// Every file of the bundle besides the manifest and its signature, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// What run the bundle holds (from run.json and results.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRun {
    pub id: String,
    /// The harness that ran it.
    pub harness_version: String,
    pub product: String,
    pub product_version: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative to the run directory, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Hex digest with [`Manifest::digest`].
    pub digest: String,
}

// ---------------------------------------------------------------- digests

enum Hasher {
    Sha256(sha2::Sha256),
    Sm3(sm3::Sm3),
}

impl Hasher {
    fn new(alg: DigestAlgorithm) -> Self {
        match alg {
            DigestAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sm3 => Hasher::Sm3(sm3::Sm3::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sm3(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sm3(h) => hex(&h.finalize()),
        }
    }
}

/// Passes reads through, hashing and counting them.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn digest_of(mut reader: impl Read, alg: DigestAlgorithm) -> io::Result<(String, u64)> {
    let mut r = HashingReader {
        inner: &mut reader,
        hasher: Hasher::new(alg),
        count: 0,
    };
    io::copy(&mut r, &mut io::sink())?;
    Ok((r.hasher.finish(), r.count))
}

// ---------------------------------------------------------------- keys

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to read the key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a key adaptest can use: expected a PEM {what} (Ed25519 or SM2), as written by `adaptest keygen`"
    )]
    Parse { path: PathBuf, what: &'static str },
    #[error("{path} holds a private key: give the public key (the .pub file) to verify")]
    PrivateNotPublic { path: PathBuf },
    #[error("{path} already exists; keygen does not overwrite keys (use --force to replace it)")]
    Exists { path: PathBuf },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to get random bytes from the operating system for a new key")]
    Random,
}

/// A private signing key.
pub enum SecretKey {
    Ed25519(ed25519_dalek::SigningKey),
    Sm2(sm2::dsa::SigningKey),
}

/// A public verifying key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Sm2(sm2::dsa::VerifyingKey),
}

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        let key = loop {
            getrandom::fill(&mut bytes).map_err(|_| KeyError::Random)?;
            match alg {
                Algorithm::Ed25519 => {
                    break SecretKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes));
                }
                // Not every 32-byte string is a valid SM2 scalar (zero, or ≥ the group order).
                Algorithm::Sm2 => {
                    if let Ok(k) = sm2::dsa::SigningKey::from_slice(SM2_DISTID, &bytes) {
                        break SecretKey::Sm2(k);
                    }
                }
            }
        };
        bytes.fill(0);
        Ok(key)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SecretKey::Ed25519(_) => Algorithm::Ed25519,
            SecretKey::Sm2(_) => Algorithm::Sm2,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            SecretKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            SecretKey::Sm2(k) => PublicKey::Sm2(k.verifying_key().clone()),
        }
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), version 1 so that OpenSSL 3.0 reads it.
    pub fn to_pem(&self) -> String {
        let pem = match self {
            SecretKey::Ed25519(k) => {
                let mut pair = ed25519_dalek::pkcs8::KeypairBytes::from(k);
                pair.public_key = None;
                pair.to_pkcs8_pem(LineEnding::LF)
            }
            SecretKey::Sm2(k) => {
                let secret = sm2::SecretKey::from(k.as_nonzero_scalar());
                secret.to_pkcs8_pem(LineEnding::LF)
            }
        };
        pem.expect("a valid key encodes").to_string()
    }

    pub fn from_pem(text: &str) -> Option<Self> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            return Some(SecretKey::Ed25519(k));
        }
        let secret = sm2::SecretKey::from_pkcs8_pem(text).ok()?;
        sm2::dsa::SigningKey::new(SM2_DISTID, &secret)
            .ok()
            .map(SecretKey::Sm2)
    }

    /// Read a private key file written by [`write_keypair`] (or OpenSSL).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        SecretKey::from_pem(&text).ok_or_else(|| KeyError::Parse {
            path: path.to_path_buf(),
            what: "PKCS#8 private key",
        })
    }

    /// The signature of `message`: 64 raw bytes (Ed25519) or DER (SM2).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match self {
            SecretKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            SecretKey::Sm2(k) => {
                let sig: sm2::dsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl PublicKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Ed25519(_) => Algorithm::Ed25519,
            PublicKey::Sm2(_) => Algorithm::Sm2,
        }
    }

    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        match self {
            PublicKey::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::Sm2(k) => sm2::PublicKey::from_affine(*k.as_affine())
                .expect("a verifying key is a valid point")
                .to_public_key_pem(LineEnding::LF),
        }
        .expect("a valid key encodes")
    }

    pub fn from_pem(text: &str) -> Option<Self> {
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Some(PublicKey::Ed25519(k));
        }
        let key = sm2::PublicKey::from_public_key_pem(text).ok()?;
        sm2::dsa::VerifyingKey::new(SM2_DISTID, key)
            .ok()
            .map(PublicKey::Sm2)
    }

    /// Read a public key file (refusing a private key with a clear message).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        if let Some(k) = PublicKey::from_pem(&text) {
            return Ok(k);
        }
        if SecretKey::from_pem(&text).is_some() {
            return Err(KeyError::PrivateNotPublic {
                path: path.to_path_buf(),
            });
        }
        Err(KeyError::Parse {
            path: path.to_path_buf(),
            what: "public key",
        })
    }

    /// The key id: SHA-256 (hex) of the raw public key (32 bytes Ed25519, 65 bytes SEC1 SM2).
    pub fn key_id(&self) -> String {
        match self {
            PublicKey::Ed25519(k) => fingerprint(k.as_bytes()),
            PublicKey::Sm2(k) => fingerprint(&k.to_sec1_bytes()),
        }
    }

    /// Does `signature` sign `message` with this key?
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ed25519_dalek::Verifier as _;
        match self {
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
            PublicKey::Sm2(k) => sm2::dsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

fn read_key_text(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The two files of a new key pair.
#[derive(Debug)]
pub struct KeyPairFiles {
    pub private: PathBuf,
    pub public: PathBuf,
    pub key_id: String,
}

/// Generate a key pair and write `<base>.key` (private, mode 0600, never group/other-readable
/// even for a moment) and `<base>.pub`. Existing files are replaced only with `force`.
pub fn write_keypair(base: &Path, alg: Algorithm, force: bool) -> Result<KeyPairFiles, KeyError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let with_ext = |ext: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let (private, public) = (with_ext(".key"), with_ext(".pub"));
    if !force {
        for p in [&private, &public] {
            if p.exists() {
                return Err(KeyError::Exists { path: p.clone() });
            }
        }
    }
    let key = SecretKey::generate(alg)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Write { path, source }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&private)
        .map_err(write_err(&private))?;
    // An existing file keeps its mode on open: make it private before the key is in it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(write_err(&private))?;
    file.write_all(key.to_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err(&private))?;
    let public_key = key.public_key();
    std::fs::write(&public, public_key.to_pem()).map_err(write_err(&public))?;
    Ok(KeyPairFiles {
        private,
        public,
        key_id: public_key.key_id(),
    })
}

/// Is a private key file readable by others than its owner? (Returns its mode if so.)
pub fn loose_permissions(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

// ---------------------------------------------------------------- bundle

/// Why a bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),
    #[error("{dir} has no results.json: the run has not finished (resume it, then bundle it)")]
    Unfinished { dir: PathBuf },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: results.json is not readable")]
    Results {
        path: PathBuf,
        #[source]
        source: adaptest_reports::RenderError,
    },
    #[error("failed to render {name} for the bundle")]
    Render {
        name: &'static str,
        #[source]
        source: adaptest_reports::RenderError,
    },
    #[error("{path} changed while the bundle was being written; bundle a finished run")]
    Changed { path: PathBuf },
    #[error("failed to write the bundle {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`create`] made.
#[derive(Debug)]
pub struct BundleInfo {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Derived reports rendered afresh because the run directory's were missing or stale.
    pub rerendered: Vec<&'static str>,
}

/// Where a file's bytes come from.
enum Content {
    Disk(PathBuf),
    Memory(Vec<u8>),
}

/// Make a signed bundle of `run_dir` at `out` (written to a temporary name, then renamed).
pub fn create(run_dir: &Path, key: &SecretKey, out: &Path) -> Result<BundleInfo, BundleError> {
    let meta = crate::rundir::read_meta(run_dir)?;
    let results_path = run_dir.join("results.json");
    let results_bytes = match std::fs::read(&results_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::Unfinished {
                dir: run_dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(BundleError::Read {
                path: results_path,
                source,
            });
        }
    };
    let fingerprint = fingerprint(&results_bytes);
    let text = String::from_utf8_lossy(&results_bytes);
    let results: RunResults =
        adaptest_reports::from_json(&text).map_err(|source| BundleError::Results {
            path: results_path.clone(),
            source,
        })?;
    drop(text);

    // Every regular file of the run directory, by relative path.
    let out_abs = std::path::absolute(out).ok();
    let mut files: BTreeMap<String, Content> = BTreeMap::new();
    for path in walk(run_dir)? {
        if out_abs.is_some() && std::path::absolute(&path).ok() == out_abs {
            continue;
        }
        let rel = relative(run_dir, &path);
        if rel == MANIFEST || rel == SIGNATURE {
            continue; // reserved: a bundle's own files, e.g. from an extracted bundle
        }
        files.insert(rel, Content::Disk(path));
    }
    // The reports must be those of this results.json.
    let mut rerendered = Vec::new();
    for name in DERIVED {
        let current = match files.get(name) {
            Some(Content::Disk(p)) => derived_is_current(name, p, &fingerprint),
            _ => false,
        };
        if !current {
            let rendered = match name {
                "junit.xml" => adaptest_reports::to_junit(&results),
                "report.html" => adaptest_reports::render_html(&results, Lang::En, &fingerprint),
                _ => adaptest_reports::render_html(&results, Lang::ZhCn, &fingerprint),
            }
            .map_err(|source| BundleError::Render { name, source })?;
            files.insert(name.to_owned(), Content::Memory(rendered.into_bytes()));
            rerendered.push(name);
        }
    }

    // Pass 1: digests, then the signed manifest.
    let alg = key.algorithm();
    let mut entries = Vec::with_capacity(files.len());
    for (rel, content) in &files {
        let (digest, size) = match content {
            Content::Disk(p) => {
                let f = File::open(p).map_err(|source| BundleError::Read {
                    path: p.clone(),
                    source,
                })?;
                digest_of(f, alg.digest()).map_err(|source| BundleError::Read {
                    path: p.clone(),
                    source,
                })?
            }
            Content::Memory(b) => digest_of(&b[..], alg.digest()).expect("reading memory"),
        };
        entries.push(ManifestFile {
            path: rel.clone(),
            size,
            digest,
        });
    }
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        algorithm: alg,
        digest: alg.digest(),
        signer: key.public_key().key_id(),
        created_at: jiff::Timestamp::now().to_string(),
        bundled_by: format!("adaptest {}", env!("CARGO_PKG_VERSION")),
        run: ManifestRun {
            id: meta.run_id.clone(),
            harness_version: meta.harness_version.clone(),
            product: results.product.name.clone(),
            product_version: results.product.version.clone(),
            verdict: results.certification.verdict,
        },
        fingerprint,
        files: entries,
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    manifest_bytes.push(b'\n');
    let signature = key.sign(&manifest_bytes);

    // Pass 2: the archive, manifest first, each file hashed again as it is written.
    let tmp = {
        let mut name = out.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    };
    let write_err = |source| BundleError::Write {
        path: out.to_path_buf(),
        source,
    };
    let file = File::create(&tmp).map_err(write_err)?;
    let gz =
        flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = jiff::Timestamp::now().as_second().max(0) as u64;
    let prefix = &meta.run_id;
    let append = |tar: &mut tar::Builder<_>, rel: &str, size: u64, data: &mut dyn Read| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, format!("{prefix}/{rel}"), data)
    };
    let result = (|| -> Result<(), BundleError> {
        append(
            &mut tar,
            MANIFEST,
            manifest_bytes.len() as u64,
            &mut &manifest_bytes[..],
        )
        .map_err(write_err)?;
        append(
            &mut tar,
            SIGNATURE,
            signature.len() as u64,
            &mut &signature[..],
        )
        .map_err(write_err)?;
        for (entry, (rel, content)) in manifest.files.iter().zip(&files) {
            let (source, path): (Box<dyn Read>, PathBuf) = match content {
                Content::Disk(p) => (
                    Box::new(File::open(p).map_err(|source| BundleError::Read {
                        path: p.clone(),
                        source,
                    })?),
                    p.clone(),
                ),
                Content::Memory(b) => (Box::new(&b[..]), PathBuf::from(rel)),
            };
            let mut reader = HashingReader {
                inner: source.take(entry.size),
                hasher: Hasher::new(alg.digest()),
                count: 0,
            };
            append(&mut tar, rel, entry.size, &mut reader).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => BundleError::Changed { path: path.clone() },
                _ => write_err(e),
            })?;
            if reader.count != entry.size || reader.hasher.finish() != entry.digest {
                return Err(BundleError::Changed { path });
            }
        }
        let gz = tar.into_inner().map_err(write_err)?;
        let buffered = gz.finish().map_err(write_err)?;
        let file = buffered
            .into_inner()
            .map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, out).map_err(write_err)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(BundleInfo {
        path: out.to_path_buf(),
        manifest,
        rerendered,
    })
}

/// Is the derived file at `path` there and (for a report) showing `fingerprint`?
fn derived_is_current(name: &str, path: &Path, fingerprint: &str) -> bool {
    if !name.ends_with(".html") {
        return path.is_file();
    }
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(8192).read_to_end(&mut head))
        .is_ok()
        && report_fingerprint(&head).as_deref() == Some(fingerprint)
}

/// The evidence fingerprint a report shows (its `<meta name="adaptest-fingerprint">`).
fn report_fingerprint(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let marker = "<meta name=\"adaptest-fingerprint\" content=\"";
    let start = text.find(marker)? + marker.len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_owned())
}

/// Every regular file under `dir`, recursively (symbolic links are not followed or included).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| BundleError::Read {
            path: d.clone(),
            source,
        })?;
        for e in rd {
            let e = e.map_err(|source| BundleError::Read {
                path: d.clone(),
                source,
            })?;
            let kind = e.file_type().map_err(|source| BundleError::Read {
                path: e.path(),
                source,
            })?;
            if kind.is_dir() {
                stack.push(e.path());
            } else if kind.is_file() {
                out.push(e.path());
            } else {
                tracing::warn!(
                    "{}: not a regular file, left out of the bundle",
                    e.path().display()
                );
            }
        }
    }
    Ok(out)
}

fn relative(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------- verify

/// Why a bundle was not verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bundle file could not be opened at all (nothing was checked).
    #[error("failed to open the bundle {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bundle was checked and must not be trusted.
    #[error("the bundle is not authentic or not intact: {}", problems.join("; "))]
    Rejected { problems: Vec<String> },
}

/// A verified bundle.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
}

/// One regular file found in the archive.
struct Found {
    size: u64,
    sha256: String,
    /// SM3 digest, when the manifest asks for it (or is not known yet).
    sm3: Option<String>,
}

/// Check `bundle` against `key`, offline. Every problem found is reported, not just the first.
pub fn verify(bundle: &Path, key: &PublicKey) -> Result<Verified, VerifyError> {
    let file = File::open(bundle).map_err(|source| VerifyError::Open {
        path: bundle.to_path_buf(),
        source,
    })?;
    let mut problems = Vec::new();
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut signature: Option<Vec<u8>> = None;
    let mut report_heads: Vec<(String, Vec<u8>)> = Vec::new();
    let mut prefix: Option<String> = None;
    let mut known_digest: Option<DigestAlgorithm> = None;
    let mut seen = HashSet::new();

    // `bufread`: the decoder reads only the gzip member, so what follows it stays in our buffer.
    let mut archive = tar::Archive::new(flate2::bufread::GzDecoder::new(io::BufReader::new(file)));
    let scan = (|| -> io::Result<()> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.into_owned();
            let shown = raw.display().to_string();
            let mut parts = Vec::new();
            let mut safe = true;
            for c in raw.components() {
                match c {
                    Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                    Component::CurDir => {}
                    _ => safe = false,
                }
            }
            if !safe || parts.is_empty() {
                problems.push(format!("{shown}: unsafe path (absolute or with `..`)"));
                continue;
            }
            let top = parts.remove(0);
            match &prefix {
                None => prefix = Some(top),
                Some(p) if *p != top => {
                    problems.push(format!("{shown}: outside the bundle's directory `{p}/`"));
                    continue;
                }
                Some(_) => {}
            }
            let kind = entry.header().entry_type();
            let rel = parts.join("/");
            if kind.is_dir() {
                // `create` writes none: every entry must be a file the manifest lists.
                problems.push(format!(
                    "{shown}: a directory entry; a bundle holds only the files its manifest lists"
                ));
                continue;
            }
            if !kind.is_file() {
                problems.push(format!(
                    "{rel}: a {kind:?} entry; a bundle holds only regular files"
                ));
                continue;
            }
            if rel.is_empty() {
                problems.push(format!(
                    "{shown}: a file in place of the bundle's directory"
                ));
                continue;
            }
            if !seen.insert(rel.clone()) {
                problems.push(format!("{rel}: appears more than once in the archive"));
                continue;
            }
            if rel == MANIFEST || rel == SIGNATURE {
                let mut bytes = Vec::new();
                (&mut entry).take(256 << 20).read_to_end(&mut bytes)?;
                if rel == MANIFEST {
                    known_digest = serde_json::from_slice::<Manifest>(&bytes)
                        .ok()
                        .map(|m| m.digest);
                    manifest_bytes = Some(bytes);
                } else {
                    signature = Some(bytes);
                }
                continue;
            }
            let mut sha = sha2::Sha256::new();
            let mut sm3 = (known_digest != Some(DigestAlgorithm::Sha256)).then(sm3::Sm3::new);
            let keep_head = rel.ends_with(".html") && !rel.contains('/');
            let mut head = Vec::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                sha.update(&buf[..n]);
                if let Some(h) = &mut sm3 {
                    h.update(&buf[..n]);
                }
                if keep_head && head.len() < 8192 {
                    head.extend_from_slice(&buf[..n.min(8192 - head.len())]);
                }
                size += n as u64;
            }
            if keep_head {
                report_heads.push((rel.clone(), head));
            }
            found.insert(
                rel,
                Found {
                    size,
                    sha256: hex(&sha.finalize()),
                    sm3: sm3.map(|h| hex(&h.finalize())),
                },
            );
        }
        archive_end(archive.into_inner(), &mut problems)
    })();
    if let Err(e) = scan {
        problems.push(format!("the archive is damaged or not a .tar.gz: {e}"));
    }

    let Some(manifest_bytes) = manifest_bytes else {
        problems.push(format!("{MANIFEST} is missing: this is not an adaptest evidence bundle, or the manifest was removed"));
        return Err(VerifyError::Rejected { problems });
    };
    match &signature {
        None => problems.push(format!("{SIGNATURE} is missing: the bundle is not signed")),
        Some(sig) if !key.verify(&manifest_bytes, sig) => problems.push(format!(
            "the signature does not verify with the given public key (key id {}): {MANIFEST} was changed, or the bundle was signed with another key",
            short(&key.key_id())
        )),
        Some(_) => {}
    }
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("{MANIFEST} is not a valid manifest: {e}"));
            return Err(VerifyError::Rejected { problems });
        }
    };
    if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
        problems.push(format!(
            "{MANIFEST}: format `{}` version {} is not one this adaptest reads ({FORMAT} {FORMAT_VERSION})",
            manifest.format, manifest.format_version
        ));
    }
    if manifest.algorithm != key.algorithm() {
        problems.push(format!(
            "the bundle is signed with {} but the public key is an {} key",
            manifest.algorithm.as_str(),
            key.algorithm().as_str()
        ));
    } else if manifest.signer != key.key_id() {
        problems.push(format!(
            "the manifest names signer key {}, not the given public key {}",
            short(&manifest.signer),
            short(&key.key_id())
        ));
    }
    if manifest.digest != manifest.algorithm.digest() {
        problems.push(format!(
            "{MANIFEST}: digest {} does not go with algorithm {}",
            manifest.digest.as_str(),
            manifest.algorithm.as_str()
        ));
    }
    if prefix.as_deref() != Some(manifest.run.id.as_str()) {
        problems.push(format!(
            "the bundle's directory `{}/` is not the run's id `{}`",
            prefix.as_deref().unwrap_or(""),
            manifest.run.id
        ));
    }
    let mut listed = HashSet::new();
    for f in &manifest.files {
        if !listed.insert(f.path.as_str()) {
            problems.push(format!("{}: listed twice in the manifest", f.path));
            continue;
        }
        let Some(got) = found.get(&f.path) else {
            problems.push(format!(
                "{}: listed in the manifest but missing from the bundle",
                f.path
            ));
            continue;
        };
        let digest = match manifest.digest {
            DigestAlgorithm::Sha256 => Some(&got.sha256),
            DigestAlgorithm::Sm3 => got.sm3.as_ref(),
        };
        if got.size != f.size || digest != Some(&f.digest) {
            problems.push(format!(
                "{}: content changed ({} bytes, {} {}; the manifest says {} bytes, {})",
                f.path,
                got.size,
                manifest.digest.as_str(),
                digest.map_or("?", |d| short(d)),
                f.size,
                short(&f.digest)
            ));
        }
    }
    for rel in found.keys() {
        if !listed.contains(rel.as_str()) {
            problems.push(format!(
                "{rel}: in the bundle but not in the manifest (added)"
            ));
        }
    }
    match found.get("results.json") {
        None => problems.push("results.json is missing".to_owned()),
        Some(r) if r.sha256 != manifest.fingerprint => problems.push(format!(
            "results.json hashes to {}, not to the manifest's evidence fingerprint {}",
            short(&r.sha256),
            short(&manifest.fingerprint)
        )),
        Some(_) => {}
    }
    for (rel, head) in &report_heads {
        if let Some(shown) = report_fingerprint(head)
            && shown != manifest.fingerprint
        {
            problems.push(format!(
                "{rel} shows evidence fingerprint {}, not that of the bundle's results.json ({})",
                short(&shown),
                short(&manifest.fingerprint)
            ));
        }
    }
    if problems.is_empty() {
        Ok(Verified { manifest })
    } else {
        Err(VerifyError::Rejected { problems })
    }
}

/// After the tar's end marker: the rest of the gzip stream must be zero padding, the stream
/// must end with a valid trailer (CRC-32 and length, checked by the decoder when it reaches the
/// end) and nothing may follow it.
fn archive_end(
    mut gz: flate2::bufread::GzDecoder<io::BufReader<File>>,
    problems: &mut Vec<String>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut padding_ok = true;
    loop {
        let n = gz.read(&mut buf)?;
        if n == 0 {
            break;
        }
        padding_ok &= buf[..n].iter().all(|&b| b == 0);
    }
    if !padding_ok {
        problems.push("data after the archive's end marker (inside the gzip stream)".to_owned());
    }
    let mut rest = gz.into_inner();
    let mut extra = 0u64;
    loop {
        let n = io::BufRead::fill_buf(&mut rest)?.len();
        if n == 0 {
            break;
        }
        extra += n as u64;
        io::BufRead::consume(&mut rest, n);
    }
    if extra > 0 {
        problems.push(format!(
            "{extra} byte(s) of trailing data after the gzip stream"
        ));
    }
    Ok(())
}

/// The first 16 hex digits of a digest or key id, for messages.
pub fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_sign() {
        for alg in [Algorithm::Ed25519, Algorithm::Sm2] {
            let key = SecretKey::generate(alg).unwrap();
            let again = SecretKey::from_pem(&key.to_pem()).expect("private PEM reads back");
            assert_eq!(again.algorithm(), alg);
            let public = PublicKey::from_pem(&key.public_key().to_pem()).expect("public PEM");
            assert_eq!(public.key_id(), key.public_key().key_id());
            let sig = again.sign(b"manifest");
            assert!(public.verify(b"manifest", &sig), "{alg:?}");
            assert!(!public.verify(b"manifesT", &sig), "{alg:?}");
            let other = SecretKey::generate(alg).unwrap().public_key();
            assert!(!other.verify(b"manifest", &sig), "{alg:?}");
        }
    }

    #[test]
    fn sm3_digest_matches_the_standard_vector() {
        // GB/T 32905-2016, example 1: "abc".
        let (d, n) = digest_of(&b"abc"[..], DigestAlgorithm::Sm3).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            d,
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn report_fingerprint_is_read_from_the_head() {
        let head = b"<head><meta name=\"adaptest-fingerprint\" content=\"abc123\">";
        assert_eq!(report_fingerprint(head).as_deref(), Some("abc123"));
        assert_eq!(report_fingerprint(b"<head>"), None);
    }
}
