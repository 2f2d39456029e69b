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

mod create;
mod keys;
mod manifest;
mod verify;

pub use create::*;
pub use keys::*;
pub use manifest::*;
pub use verify::*;

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
