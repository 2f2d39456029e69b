//! The manifest (format, algorithms, run, files with digests) and the SHA-256/SM3 digests.

use super::*;

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

pub(super) enum Hasher {
    Sha256(sha2::Sha256),
    Sm3(sm3::Sm3),
}

impl Hasher {
    pub(super) fn new(alg: DigestAlgorithm) -> Self {
        match alg {
            DigestAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sm3 => Hasher::Sm3(sm3::Sm3::new()),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sm3(h) => h.update(bytes),
        }
    }

    pub(super) fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sm3(h) => hex(&h.finalize()),
        }
    }
}

/// Passes reads through, hashing and counting them.
pub(super) struct HashingReader<R> {
    pub(super) inner: R,
    pub(super) hasher: Hasher,
    pub(super) count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

pub(super) fn digest_of(mut reader: impl Read, alg: DigestAlgorithm) -> io::Result<(String, u64)> {
    let mut r = HashingReader {
        inner: &mut reader,
        hasher: Hasher::new(alg),
        count: 0,
    };
    io::copy(&mut r, &mut io::sink())?;
    Ok((r.hasher.finish(), r.count))
}
