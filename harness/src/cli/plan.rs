//! `adaptest plan show`: the combinations a plan expands to, in execution order.

use super::{CliError, SuiteArgs, load_suites};
use crate::events::Format;
use crate::exit_codes;
use crate::spec;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Print the combinations a plan expands to, in execution order.
    Show(PlanShowArgs),
}

#[derive(Debug, Args)]
pub struct PlanShowArgs {
    /// The plan file; without it, the embedded default plan.
    file: Option<PathBuf>,
    #[command(flatten)]
    suites: SuiteArgs,
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

pub fn cmd_plan_show(a: PlanShowArgs) -> Result<i32, CliError> {
    let plan = load_suites(&a.suites).and_then(|s| spec::load_plan(a.file.as_deref(), &s))?;
    match a.format {
        Format::Json => {
            let combos: Vec<serde_json::Value> = plan
                .combinations
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id, "target": c.target, "component": c.component,
                        "component_kind": c.component_kind, "suite": c.suite.id,
                        "cases": c.suite.cases.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "plan": plan.source.name,
                "product": plan.product,
                "combinations": combos,
            });
            println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        }
        Format::Human => {
            println!(
                "plan {} — {} {} ({})",
                plan.source.name, plan.product.name, plan.product.version, plan.product.vendor
            );
            for c in &plan.combinations {
                println!("  {:<40} {} case(s)", c.id, c.suite.cases.len());
            }
            let total: usize = plan.combinations.iter().map(|c| c.suite.cases.len()).sum();
            println!(
                "{} combination(s), {} case(s)",
                plan.combinations.len(),
                total
            );
        }
    }
    Ok(exit_codes::OK)
}
