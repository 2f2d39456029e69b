//! `verify`: the signature, every listed file's digest and size, and nothing else in the archive.

use super::*;

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
pub(super) struct Found {
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
pub(super) fn archive_end(
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
