//! The certification subcommands — `keygen`, `bundle`, `verify`, `compare` — and the report
//! cover flags shared by `run` and `report`. `cli.rs` parses and dispatches; the work is in
//! [`crate::bundle`], [`crate::verdict`] and `adaptest_reports::compare`.

use crate::bundle::{self, Algorithm, PublicKey, SecretKey};
use crate::exit_codes;
use adaptest_reports::{Lang, Product, RunResults};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// Report cover fields; each overrides the plan's `[product]` field of the same name.
#[derive(Debug, Clone, Default, Args)]
pub struct CoverArgs {
    /// The adaptation center issuing the report (cover).
    #[arg(long, value_name = "NAME")]
    pub center: Option<String>,
    /// The center's report number (cover).
    #[arg(long, value_name = "NUMBER")]
    pub report_number: Option<String>,
    /// Who ran the tests (cover).
    #[arg(long, value_name = "NAME")]
    pub tester: Option<String>,
    /// Who reviewed the report (cover).
    #[arg(long, value_name = "NAME")]
    pub reviewer: Option<String>,
}

impl CoverArgs {
    /// Set the fields given on the command line.
    pub fn apply(&self, product: &mut Product) {
        let set = |field: &mut String, value: &Option<String>| {
            if let Some(v) = value {
                *field = v.clone();
            }
        };
        set(&mut product.center, &self.center);
        set(&mut product.report_number, &self.report_number);
        set(&mut product.tester, &self.tester);
        set(&mut product.reviewer, &self.reviewer);
    }

    /// The cover of a run's results: a resumed run keeps what its earlier sessions were given
    /// (from its results.json), then the flags of this session apply.
    pub fn apply_to_run(&self, run_dir: &Path, resumed: bool, product: &mut Product) {
        if resumed
            && let Ok(text) = std::fs::read_to_string(run_dir.join("results.json"))
            && let Ok(previous) = adaptest_reports::from_json(&text)
        {
            let keep = |field: &mut String, earlier: String| {
                if !earlier.is_empty() {
                    *field = earlier;
                }
            };
            keep(&mut product.center, previous.product.center);
            keep(&mut product.report_number, previous.product.report_number);
            keep(&mut product.tester, previous.product.tester);
            keep(&mut product.reviewer, previous.product.reviewer);
        }
        self.apply(product);
    }
}

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

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle (`.tar.gz`) to check.
    bundle: PathBuf,
    /// The signer's public key (the `.pub` file from `adaptest keygen`).
    #[arg(long, value_name = "FILE")]
    pubkey: PathBuf,
}

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

/// `10%`, `10` or `2.5 %` → 10.0 / 2.5 (percent).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches('%').trim();
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a percentage (write e.g. `10%`)")),
    }
}

/// A run directory's results.json, or that file itself: the parsed results and the exact bytes.
pub fn load_results(input: &Path) -> Result<(RunResults, Vec<u8>), String> {
    let path = if input.is_dir() {
        input.join("results.json")
    } else {
        input.to_path_buf()
    };
    let bytes =
        std::fs::read(&path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: results.json is not UTF-8", path.display()))?;
    let results = adaptest_reports::from_json(text)
        .map_err(|e| format!("{}: {}", path.display(), crate::engine::error_chain(&e)))?;
    Ok((results, bytes))
}

pub fn cmd_keygen(a: KeygenArgs) -> i32 {
    match bundle::write_keypair(&a.out, a.algorithm, a.force) {
        Ok(files) => {
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
            exit_codes::OK
        }
        Err(e @ bundle::KeyError::Exists { .. }) => {
            eprintln!("error: {e}");
            exit_codes::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            exit_codes::INFRA_ERROR
        }
    }
}

pub fn cmd_bundle(a: BundleArgs) -> i32 {
    let key = match SecretKey::read(&a.key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            return exit_codes::INVALID_INPUT;
        }
    };
    if let Some(mode) = bundle::loose_permissions(&a.key) {
        eprintln!(
            "warning: {} is readable by others (mode {mode:o}); `chmod 600` it",
            a.key.display()
        );
    }
    if let Some(alg) = a.algorithm
        && alg != key.algorithm()
    {
        eprintln!(
            "error: {} is an {} key, not {}: make one with `adaptest keygen --algorithm {}`",
            a.key.display(),
            key.algorithm().as_str(),
            alg.as_str(),
            alg.as_str()
        );
        return exit_codes::INVALID_INPUT;
    }
    let out = match &a.output {
        Some(o) => o.clone(),
        None => match crate::rundir::read_meta(&a.run_dir) {
            Ok(meta) => PathBuf::from(format!("{}.bundle.tar.gz", meta.run_id)),
            Err(e) => {
                eprintln!("error: {}", crate::engine::error_chain(&e));
                return exit_codes::INVALID_INPUT;
            }
        },
    };
    match bundle::create(&a.run_dir, &key, &out) {
        Ok(info) => {
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
            exit_codes::OK
        }
        Err(
            e @ (bundle::BundleError::RunDir(_)
            | bundle::BundleError::Unfinished { .. }
            | bundle::BundleError::Results { .. }),
        ) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            exit_codes::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            exit_codes::INFRA_ERROR
        }
    }
}

pub fn cmd_verify(a: VerifyArgs) -> i32 {
    let key = match PublicKey::read(&a.pubkey) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            return exit_codes::INVALID_INPUT;
        }
    };
    match bundle::verify(&a.bundle, &key) {
        Ok(v) => {
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
            exit_codes::OK
        }
        Err(bundle::VerifyError::Rejected { problems }) => {
            eprintln!("REJECTED: {}", a.bundle.display());
            for p in &problems {
                eprintln!("  - {p}");
            }
            eprintln!(
                "error: the bundle must not be trusted ({} problem(s))",
                problems.len()
            );
            exit_codes::VERIFY_FAILED
        }
        Err(e) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            exit_codes::INVALID_INPUT
        }
    }
}

pub fn cmd_compare(a: CompareArgs) -> i32 {
    let lang = match a.lang.parse::<Lang>() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --lang: {e}");
            return exit_codes::INVALID_INPUT;
        }
    };
    let mut runs = Vec::new();
    for input in [&a.run_a, &a.run_b] {
        match load_results(input) {
            Ok((r, _)) => runs.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return exit_codes::INVALID_INPUT;
            }
        }
    }
    let comparison = adaptest_reports::compare::compare(&runs[0], &runs[1], a.metric_threshold);
    let rendered = match a.format {
        CompareFormat::Table => Ok(adaptest_reports::compare::to_text(&comparison)),
        CompareFormat::Json => adaptest_reports::compare::to_json(&comparison),
        CompareFormat::Html => adaptest_reports::compare::to_html(&comparison, lang),
    };
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", crate::engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    match &a.output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, &rendered) {
                eprintln!("error: failed to write {}: {e}", p.display());
                return exit_codes::INFRA_ERROR;
            }
        }
        None => print!("{rendered}"),
    }
    if comparison.has_regressions() {
        exit_codes::REGRESSED
    } else {
        exit_codes::OK
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

    #[test]
    fn cover_flags_override_only_what_is_given() {
        let mut p = Product {
            center: "Plan center".into(),
            tester: "Plan tester".into(),
            ..Product::default()
        };
        CoverArgs {
            report_number: Some("R-1".into()),
            tester: Some("Zhang San".into()),
            ..CoverArgs::default()
        }
        .apply(&mut p);
        assert_eq!(p.center, "Plan center");
        assert_eq!(p.report_number, "R-1");
        assert_eq!(p.tester, "Zhang San");
        assert_eq!(p.reviewer, "");
    }
}
