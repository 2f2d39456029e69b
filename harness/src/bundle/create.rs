//! `create`: a run directory into a signed `.tar.gz` (stale reports re-rendered first).

use super::*;

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
pub(super) enum Content {
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
pub(super) fn derived_is_current(name: &str, path: &Path, fingerprint: &str) -> bool {
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
pub(super) fn report_fingerprint(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let marker = "<meta name=\"adaptest-fingerprint\" content=\"";
    let start = text.find(marker)? + marker.len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_owned())
}

/// Every regular file under `dir`, recursively (symbolic links are not followed or included).
pub(super) fn walk(dir: &Path) -> Result<Vec<PathBuf>, BundleError> {
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

pub(super) fn relative(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
