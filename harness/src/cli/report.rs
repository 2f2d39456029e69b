//! `adaptest report`: render a report from a run directory or a results.json.

use super::{CliError, CoverArgs, FileError};
use crate::exit_codes;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// What is wrong with `report`'s input.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}", path.display())]
    Results {
        path: PathBuf,
        #[source]
        source: adaptest_reports::RenderError,
    },
    #[error("--lang: unknown language `{0}` (use en or zh-CN)")]
    Lang(String),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Json,
    Junit,
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run directory or a results.json file.
    input: PathBuf,
    #[arg(long, value_enum, default_value = "html")]
    format: ReportFormat,
    /// Language of the HTML report: `en` or `zh-CN`.
    #[arg(long, default_value = "en")]
    lang: String,
    /// Write here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    cover: CoverArgs,
}

pub fn cmd_report(a: ReportArgs) -> Result<i32, CliError> {
    let path = if a.input.is_dir() {
        a.input.join("results.json")
    } else {
        a.input.clone()
    };
    let text = std::fs::read_to_string(&path).map_err(|source| {
        CliError::invalid(FileError::Read {
            path: path.clone(),
            source,
        })
    })?;
    let mut results = adaptest_reports::from_json(&text)
        .map_err(|source| CliError::invalid(ReportError::Results { path, source }))?;
    a.cover.apply(&mut results.product);
    let lang = a
        .lang
        .parse::<adaptest_reports::Lang>()
        .map_err(|_| CliError::invalid(ReportError::Lang(a.lang.clone())))?;
    let rendered = match a.format {
        ReportFormat::Json => adaptest_reports::to_json(&results),
        ReportFormat::Junit => adaptest_reports::to_junit(&results),
        // The fingerprint is that of the file as stored, whatever the cover flags change.
        ReportFormat::Html => adaptest_reports::render_html(
            &results,
            lang,
            &adaptest_reports::fingerprint::fingerprint(text.as_bytes()),
        ),
    }
    .map_err(CliError::infra)?;
    super::emit(a.output.as_deref(), &rendered)?;
    Ok(exit_codes::OK)
}
