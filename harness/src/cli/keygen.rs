//! `adaptest keygen`: a signing key pair for evidence bundles (the work is in
//! [`crate::bundle::write_keypair`]).

use super::CliError;
use crate::bundle::{self, Algorithm};
use crate::exit_codes;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Base name of the key files: writes BASE.key (private, mode 0600) and BASE.pub.
    #[arg(
        long,
        short = 'o',
        value_name = "BASE",
        default_value = "adaptest-signing"
    )]
    out: PathBuf,
    /// Signature algorithm: Ed25519 (SHA-256 digests) or SM2 (SM3 digests, 国密).
    #[arg(long, value_enum, default_value = "ed25519")]
    algorithm: Algorithm,
    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

pub fn cmd_keygen(a: KeygenArgs) -> Result<i32, CliError> {
    let files = bundle::write_keypair(&a.out, a.algorithm, a.force).map_err(|e| match e {
        e @ bundle::KeyError::Exists { .. } => CliError::invalid(e),
        e => CliError::infra(e),
    })?;
    println!(
        "private key {} (mode 0600; keep it secret)",
        files.private.display()
    );
    println!("public key  {}", files.public.display());
    println!(
        "{} key id {}",
        a.algorithm.as_str(),
        bundle::short(&files.key_id)
    );
    Ok(exit_codes::OK)
}
