//! `adaptest validate`: check plan and suite files, reporting every problem of every file.

use super::{CliError, SuiteArgs};
use crate::exit_codes;
use crate::spec;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Plan or suite files (a file with a `[suite]` table is a suite).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    suites: SuiteArgs,
}

pub fn cmd_validate(a: ValidateArgs) -> Result<i32, CliError> {
    let mut suite_files = Vec::new();
    let mut plan_files = Vec::new();
    // Every file's problems, in the order met; all are reported, then the exit code.
    let mut failed = Vec::new();
    for f in &a.files {
        match spec::read_source(f) {
            Ok(src) if spec::looks_like_suite(&src.text) => suite_files.push(f.clone()),
            Ok(_) => plan_files.push(f.clone()),
            Err(e) => failed.push(e),
        }
    }
    // Suites first: plans refer to them.
    let suites = match spec::load_suites(!a.suites.no_builtin, &a.suites.suites, &suite_files) {
        Ok(s) => {
            for f in &suite_files {
                let name = f.display().to_string();
                if let Some(s) = s.values().find(|s| s.source.name == name) {
                    println!("ok: {name}: suite {} ({} cases)", s.id, s.cases.len());
                }
            }
            s
        }
        Err(e) => {
            failed.push(e);
            // Plans can still be checked against the suites that did load.
            spec::load_suites(!a.suites.no_builtin, &a.suites.suites, &[]).unwrap_or_default()
        }
    };
    for f in &plan_files {
        match spec::load_plan(Some(f), &suites) {
            Ok(p) => println!(
                "ok: {}: plan with {} combination(s)",
                f.display(),
                p.combinations.len()
            ),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        Ok(exit_codes::OK)
    } else {
        Err(CliError::Load(failed))
    }
}
