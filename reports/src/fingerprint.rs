//! The evidence fingerprint: the SHA-256 of the exact `results.json` bytes a report was rendered
//! from. It is printed on the report's cover and in its conclusion, so a printed certificate can
//! be tied to the stored evidence with nothing more than `sha256sum results.json`.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `results_json` (the bytes of `results.json`).
pub fn fingerprint(results_json: &[u8]) -> String {
    hex(&Sha256::digest(results_json))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
