//! `adaptest inherit RUN [--platform env.json] [--rules FILE]`: whether a new platform inherits
//! a run's certification, and by which rule (the work is in `adaptest_reports::inherit`).
//! Without `--platform`: the platform classes the run's certified targets cover, per rule.

use super::{CliError, FileError};
use crate::exit_codes;
use crate::spec::{self, LoadError};
use adaptest_reports::inherit::{self, Rule};
use adaptest_schema::{Environment, Verdict};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct InheritArgs {
    /// The certified run: a run directory or a results.json.
    run: PathBuf,
    /// The new platform's environment (`env/<target>.json` of another run, or `adaptest env`).
    #[arg(long, value_name = "ENV_JSON")]
    platform: Option<PathBuf>,
    /// The center's rules file (`[[rule]] id, same = [...]`); default: one `server` rule.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

/// `--platform` is not an environment document.
#[derive(Debug, thiserror::Error)]
#[error("{}: not an environment JSON document: {message}", path.display())]
pub struct PlatformError {
    path: PathBuf,
    message: String,
}

fn load_rules(path: Option<&PathBuf>) -> Result<Vec<Rule>, CliError> {
    let Some(path) = path else {
        return Ok(inherit::default_rules());
    };
    let source = spec::read_source(path).map_err(|e| CliError::Load(vec![e]))?;
    spec::inherit::parse_rules(&source).map_err(|e| CliError::Load(vec![LoadError::Spec(e)]))
}

pub fn cmd_inherit(a: InheritArgs) -> Result<i32, CliError> {
    let rules = load_rules(a.rules.as_ref())?;
    let (results, _) = super::compare::load_results(&a.run).map_err(CliError::invalid)?;
    let pairs = &results.certification.pairs;
    let certified: Vec<&Environment> = results
        .environments
        .values()
        .filter(|e| {
            let mine: Vec<_> = pairs.iter().filter(|p| p.target == e.target).collect();
            !mine.is_empty() && mine.iter().all(|p| p.verdict != Verdict::NotCertified)
        })
        .collect();
    let mut out = String::new();
    let Some(platform) = a.platform else {
        if certified.is_empty() {
            out.push_str("no target of this run is certified: it covers no platform\n");
        }
        for env in &certified {
            for rule in &rules {
                match inherit::covered_class(rule, env) {
                    Ok(class) => {
                        let _ = writeln!(out, "{} · rule {}: covers {class}", env.target, rule.id);
                    }
                    Err(why) => {
                        let _ = writeln!(
                            out,
                            "{} · rule {}: covers nothing ({why})",
                            env.target, rule.id
                        );
                    }
                }
            }
        }
        super::emit(None, &out)?;
        return Ok(exit_codes::OK);
    };
    let text = std::fs::read_to_string(&platform).map_err(|source| {
        CliError::invalid(FileError::Read {
            path: platform.clone(),
            source,
        })
    })?;
    let candidate: Environment = serde_json::from_str(&text).map_err(|e| {
        CliError::invalid(PlatformError {
            path: platform.clone(),
            message: e.to_string(),
        })
    })?;
    let name = if candidate.hostname.is_empty() {
        platform.display().to_string()
    } else {
        candidate.hostname.clone()
    };
    let decision = inherit::decide(&rules, &certified, &candidate);
    if let Some((target, rule)) = &decision.covered_by {
        let title = rules
            .iter()
            .find(|r| &r.id == rule)
            .map_or("", |r| r.title.as_str());
        let _ = writeln!(
            out,
            "covered: `{name}` inherits the verdict of target `{target}` by rule `{rule}` ({title})"
        );
        super::emit(None, &out)?;
        return Ok(exit_codes::OK);
    }
    let _ = writeln!(out, "not covered: `{name}`");
    if certified.is_empty() {
        out.push_str("  no target of this run is certified\n");
    }
    for (target, rule, why) in &decision.failures {
        let _ = writeln!(out, "  target `{target}`, rule `{rule}`: {why}");
    }
    super::emit(None, &out)?;
    Ok(exit_codes::CASE_FAILED)
}
