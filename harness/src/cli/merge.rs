//! `adaptest merge`: join the run directories of `run --shard I/N` into one run (the work is in
//! [`crate::shard::merge`]).

use super::CliError;
use crate::shard::{self, ShardError};
use std::path::PathBuf;

/// `adaptest merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The run directories of shards 1..N of one plan (any order).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged run directory is created.
    #[arg(long, value_name = "DIR", default_value = "adaptest-runs")]
    pub out: PathBuf,
}

/// Merge, print where the merged run is, and exit like the unsharded run would have.
pub fn cmd_merge(a: MergeArgs) -> Result<i32, CliError> {
    let m = shard::merge(&a.dirs, &a.out).map_err(|e| match e {
        e @ (ShardError::Mismatch(_) | ShardError::Invalid { .. } | ShardError::RunDir(_)) => {
            CliError::invalid(e)
        }
        e => CliError::infra(e),
    })?;
    let s = &m.results.summary;
    println!(
        "merged {} shard(s) into {}: {} case(s), {} passed, {} failed, {} error, {} skipped, {} not run — {}",
        a.dirs.len(),
        m.dir.display(),
        s.total,
        s.passed + s.flaky,
        s.failed,
        s.error,
        s.skipped,
        s.not_run,
        crate::verdict::label(m.results.certification.verdict)
    );
    Ok(crate::exit_codes::for_results(&m.results, m.interrupted))
}
