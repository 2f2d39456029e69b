//! `adaptest bundle`: pack a run directory into one signed evidence bundle (the work is in
//! [`crate::bundle::create`]).

use super::CliError;
use crate::bundle::{self, Algorithm, SecretKey};
use crate::exit_codes;
use clap::Args;
use std::path::PathBuf;

/// `--algorithm` names another algorithm than the key's.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is an {} key, not {}: make one with `adaptest keygen --algorithm {}`",
    key.display(),
    actual.as_str(),
    wanted.as_str(),
    wanted.as_str()
)]
pub struct WrongAlgorithm {
    pub key: PathBuf,
    pub actual: Algorithm,
    pub wanted: Algorithm,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The run directory to bundle.
    run_dir: PathBuf,
    /// The private key to sign with (from `adaptest keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Insist on a signature algorithm (the key decides; this checks it is the one meant).
    #[arg(long, value_enum)]
    algorithm: Option<Algorithm>,
    /// Where to write the bundle (default: `<run-id>.bundle.tar.gz` in the current directory).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn cmd_bundle(a: BundleArgs) -> Result<i32, CliError> {
    let key = SecretKey::read(&a.key).map_err(CliError::invalid)?;
    if let Some(mode) = bundle::loose_permissions(&a.key) {
        eprintln!(
            "warning: {} is readable by others (mode {mode:o}); `chmod 600` it",
            a.key.display()
        );
    }
    if let Some(alg) = a.algorithm
        && alg != key.algorithm()
    {
        return Err(CliError::invalid(WrongAlgorithm {
            key: a.key.clone(),
            actual: key.algorithm(),
            wanted: alg,
        }));
    }
    let out = match &a.output {
        Some(o) => o.clone(),
        None => {
            let meta = crate::rundir::read_meta(&a.run_dir).map_err(CliError::invalid)?;
            PathBuf::from(format!("{}.bundle.tar.gz", meta.run_id))
        }
    };
    let info = bundle::create(&a.run_dir, &key, &out).map_err(|e| match e {
        e @ (bundle::BundleError::RunDir(_)
        | bundle::BundleError::Unfinished { .. }
        | bundle::BundleError::Results { .. }) => CliError::invalid(e),
        e => CliError::infra(e),
    })?;
    for name in &info.rerendered {
        eprintln!(
            "note: {name} was missing or out of date with results.json; the bundle holds a fresh one"
        );
    }
    let m = &info.manifest;
    println!("bundle {}", info.path.display());
    println!(
        "  run {} · {} {} · verdict: {}",
        m.run.id,
        m.run.product,
        m.run.product_version,
        crate::verdict::label(m.run.verdict)
    );
    println!(
        "  {} files, {} digests, signed with {} key {}",
        m.files.len(),
        m.digest.as_str(),
        m.algorithm.as_str(),
        bundle::short(&m.signer)
    );
    println!(
        "  evidence fingerprint (SHA-256 of results.json) {}",
        m.fingerprint
    );
    Ok(exit_codes::OK)
}
