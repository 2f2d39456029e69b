//! `adaptest list`: the available suites and, with `--cases`, their cases.

use super::{CliError, SuiteArgs, load_suites};
use crate::exit_codes;
use clap::Args;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    suites: SuiteArgs,
    /// Print the cases too.
    #[arg(long)]
    cases: bool,
}

pub fn cmd_list(a: ListArgs) -> Result<i32, CliError> {
    let suites = load_suites(&a.suites)?;
    for s in suites.values() {
        println!(
            "{:<20} {:<8} {} / {} ({} cases, {})",
            s.id,
            s.component,
            s.title,
            s.title_zh,
            s.cases.len(),
            s.source.name
        );
        if a.cases {
            for c in &s.cases {
                let level = match c.level {
                    adaptest_reports::Level::Mandatory => "mandatory",
                    adaptest_reports::Level::Optional => "optional",
                };
                println!("    {:<28} {:<9} {} / {}", c.id, level, c.title, c.title_zh);
            }
        }
    }
    Ok(exit_codes::OK)
}
