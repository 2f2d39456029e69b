//! `adaptest verify`: check an evidence bundle offline (the work is in
//! [`crate::bundle::verify`]).

use super::CliError;
use crate::bundle::{self, PublicKey};
use crate::exit_codes;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle (`.tar.gz`) to check.
    bundle: PathBuf,
    /// The signer's public key (the `.pub` file from `adaptest keygen`).
    #[arg(long, value_name = "FILE")]
    pubkey: PathBuf,
}

pub fn cmd_verify(a: VerifyArgs) -> Result<i32, CliError> {
    let key = PublicKey::read(&a.pubkey).map_err(CliError::invalid)?;
    let v = bundle::verify(&a.bundle, &key).map_err(|e| match e {
        bundle::VerifyError::Rejected { problems } => CliError::Rejected {
            bundle: a.bundle.clone(),
            problems,
        },
        e => CliError::invalid(e),
    })?;
    let m = &v.manifest;
    println!("verified: {}", a.bundle.display());
    println!(
        "  signed with {} key {} on {} ({})",
        m.algorithm.as_str(),
        bundle::short(&m.signer),
        m.created_at,
        m.bundled_by
    );
    println!(
        "  run {} (adaptest {}) · {} {} · verdict: {}",
        m.run.id,
        m.run.harness_version,
        m.run.product,
        m.run.product_version,
        crate::verdict::label(m.run.verdict)
    );
    println!(
        "  {} files intact ({}); evidence fingerprint {}",
        m.files.len(),
        m.digest.as_str(),
        m.fingerprint
    );
    Ok(exit_codes::OK)
}
