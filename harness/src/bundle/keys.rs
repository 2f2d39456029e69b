//! Signing keys: Ed25519 or SM2, generated from the OS, written and read as PEM files.

use super::*;

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

pub(super) fn read_key_text(path: &Path) -> Result<String, KeyError> {
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
