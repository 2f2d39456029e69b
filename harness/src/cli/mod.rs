//! The command line: clap arguments, one module per subcommand, and [`main`] — the one place
//! that prints a subcommand's error ([`CliError`]) and turns it into the exit code.
//!
//! Every subcommand is `fn(Args) -> Result<i32, CliError>`: the `Ok` code is the success side
//! (verdict-based for `run` and `merge`, `REGRESSED` for `compare`), the error carries its own.

pub mod bundle;
pub mod compare;
pub mod cover;
pub mod env;
pub mod error;
pub mod image;
pub mod inherit;
pub mod keygen;
pub mod list;
pub mod merge;
pub mod plan;
pub mod report;
pub mod run;
pub mod validate;
pub mod verify;

pub use cover::CoverArgs;
pub use error::{CliError, FileError};

use crate::exit_codes;
use crate::spec::{self, SuiteSet};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "adaptest",
    version,
    about = "Software–hardware adaptation testing: compatibility suites over targets × components, with certification reports."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plan (by default: the local host and the built-in suites).
    Run(run::RunArgs),
    /// List the available suites and their cases.
    List(list::ListArgs),
    /// Check plan and suite files; every problem is reported with file, line and field.
    Validate(validate::ValidateArgs),
    /// Work with plans.
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Print the environment of the local host as adaptest captures it.
    Env(env::EnvArgs),
    /// Render a report from a run directory or a results.json.
    Report(report::ReportArgs),
    /// Make a signing key pair for evidence bundles (Ed25519, or SM2 with --algorithm sm2).
    Keygen(keygen::KeygenArgs),
    /// Pack a run directory into one signed evidence bundle (.tar.gz).
    Bundle(bundle::BundleArgs),
    /// Check an evidence bundle offline: signature, every file's digest, nothing added or missing.
    Verify(verify::VerifyArgs),
    /// Compare two runs: new failures, fixed, still failing, flaky, metric changes.
    Compare(compare::CompareArgs),
    /// Build and list guest images for `qemu-system` targets.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Does a new platform inherit a run's certification? (0 covered, 1 not, 2 bad input)
    Inherit(inherit::InheritArgs),
    /// Merge the run directories of `run --shard I/N` (all N) into one run and its reports.
    Merge(merge::MergeArgs),
}

#[derive(Debug, Args)]
struct SuiteArgs {
    /// A directory of suite files (*.toml, recursively); repeatable.
    #[arg(long = "suites", value_name = "DIR")]
    suites: Vec<PathBuf>,
    /// Do not load the built-in suites.
    #[arg(long)]
    no_builtin: bool,
}

/// Parse the arguments, run the subcommand, return the exit code.
pub fn main() -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ADAPTEST_LOG")
                .unwrap_or_else(|_| "warn,lapin=off".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_codes::INVALID_INPUT
            } else {
                exit_codes::OK
            };
        }
    };
    let outcome = match cli.command {
        Command::Run(a) => run::cmd_run(a),
        Command::List(a) => list::cmd_list(a),
        Command::Validate(a) => validate::cmd_validate(a),
        Command::Plan(plan::PlanCommand::Show(a)) => plan::cmd_plan_show(a),
        Command::Env(a) => env::cmd_env(a),
        Command::Report(a) => report::cmd_report(a),
        Command::Keygen(a) => keygen::cmd_keygen(a),
        Command::Bundle(a) => bundle::cmd_bundle(a),
        Command::Verify(a) => verify::cmd_verify(a),
        Command::Compare(a) => compare::cmd_compare(a),
        Command::Image(c) => image::run(c),
        Command::Merge(a) => merge::cmd_merge(a),
        Command::Inherit(a) => inherit::cmd_inherit(a),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            eprint_error(e);
            code
        }
    }
}

/// Print a subcommand's error to stderr: diagnostics with their snippets, anything else as
/// `error: ` and its message chain.
fn eprint_error(e: CliError) {
    match e {
        CliError::Load(errors) => {
            for e in errors {
                eprint_load_error(e);
            }
        }
        CliError::InvalidDiagnostic(d) | CliError::InfraDiagnostic(d) => {
            eprintln!("{:?}", miette::Report::new_boxed(d));
        }
        CliError::Invalid(e) | CliError::Infra(e) => {
            eprintln!("error: {}", adaptest_adapters::text::error_chain(&*e));
        }
        e @ CliError::Rejected { .. } => {
            if let CliError::Rejected { bundle, problems } = &e {
                eprintln!("REJECTED: {}", bundle.display());
                for p in problems {
                    eprintln!("  - {p}");
                }
            }
            eprintln!("error: {e}");
        }
    }
}

/// Print a diagnostic (with source snippets) to stderr.
fn eprint_diag(d: impl miette::Diagnostic + Send + Sync + 'static) {
    eprintln!("{:?}", miette::Report::new(d));
}

/// Print every problem of a failed load on its own, then a one-line count.
fn eprint_load_error(e: spec::LoadError) {
    match e {
        spec::LoadError::Spec(errs) => {
            let n = errs.errors.len();
            for err in errs.errors {
                eprint_diag(err);
            }
            eprintln!("error: {n} problem(s) in the input; nothing was run");
        }
        other => eprint_diag(other),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Write a rendered document to `output`, or to standard output without one.
fn emit(output: Option<&std::path::Path>, rendered: &str) -> Result<(), CliError> {
    match output {
        Some(p) => std::fs::write(p, rendered).map_err(|source| {
            CliError::infra(FileError::Write {
                path: p.to_path_buf(),
                source,
            })
        }),
        None => {
            print!("{rendered}");
            Ok(())
        }
    }
}

fn load_suites(a: &SuiteArgs) -> Result<SuiteSet, spec::LoadError> {
    spec::load_suites(!a.no_builtin, &a.suites, &[])
}
