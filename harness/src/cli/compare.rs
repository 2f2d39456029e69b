//! `adaptest compare`: two runs side by side — new failures, fixed, still failing, flaky,
//! metric changes (the work is in `adaptest_reports::compare`).

use super::{CliError, FileError};
use crate::exit_codes;
use adaptest_reports::{Lang, RenderError, RunResults};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompareFormat {
    Table,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline run: a run directory or a results.json.
    run_a: PathBuf,
    /// The run compared with it.
    run_b: PathBuf,
    /// List metric changes larger than this, relative to A (`10%`, `2.5%`).
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = parse_percent)]
    metric_threshold: f64,
    #[arg(long, value_enum, default_value = "table")]
    format: CompareFormat,
    /// Language of the HTML output: `en` or `zh-CN`.
    #[arg(long, default_value = "en")]
    lang: String,
    /// Write here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `--metric-threshold` is not a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a percentage (write e.g. `10%`)")]
pub struct PercentError(pub String);

/// `10%`, `10` or `2.5 %` → 10.0 / 2.5 (percent).
pub fn parse_percent(s: &str) -> Result<f64, PercentError> {
    let n = s.trim().trim_end_matches('%').trim();
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(PercentError(s.to_owned())),
    }
}

/// A results.json that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}: results.json is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: RenderError,
    },
}

/// `--lang` names no language the reports have.
#[derive(Debug, thiserror::Error)]
#[error("--lang")]
pub struct LangError(#[source] RenderError);

/// A run directory's results.json, or that file itself: the parsed results and the exact bytes.
pub fn load_results(input: &Path) -> Result<(RunResults, Vec<u8>), ResultsError> {
    let path = if input.is_dir() {
        input.join("results.json")
    } else {
        input.to_path_buf()
    };
    let bytes = std::fs::read(&path).map_err(|source| FileError::Read {
        path: path.clone(),
        source,
    })?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(ResultsError::NotUtf8 { path });
    };
    let results =
        adaptest_reports::from_json(text).map_err(|source| ResultsError::Parse { path, source })?;
    Ok((results, bytes))
}

pub fn cmd_compare(a: CompareArgs) -> Result<i32, CliError> {
    let lang = a
        .lang
        .parse::<Lang>()
        .map_err(|e| CliError::invalid(LangError(e)))?;
    let mut runs = Vec::new();
    for input in [&a.run_a, &a.run_b] {
        let (r, _) = load_results(input).map_err(CliError::invalid)?;
        runs.push(r);
    }
    let comparison = adaptest_reports::compare::compare(&runs[0], &runs[1], a.metric_threshold);
    let rendered = match a.format {
        CompareFormat::Table => Ok(adaptest_reports::compare::to_text(&comparison)),
        CompareFormat::Json => adaptest_reports::compare::to_json(&comparison),
        CompareFormat::Html => adaptest_reports::compare::to_html(&comparison, lang),
    }
    .map_err(CliError::infra)?;
    super::emit(a.output.as_deref(), &rendered)?;
    if comparison.has_regressions() {
        Ok(exit_codes::REGRESSED)
    } else {
        Ok(exit_codes::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse() {
        assert_eq!(parse_percent("10%"), Ok(10.0));
        assert_eq!(parse_percent("2.5 %"), Ok(2.5));
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("ten").is_err());
    }
}
