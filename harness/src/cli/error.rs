//! The one error type of the subcommands: each kind carries its exit code, and
//! [`super::main`] is the only place that prints one.

use crate::exit_codes;
use crate::spec;
use std::path::PathBuf;

/// An error boxed as it came, so its own message and `#[source]` chain are printed unchanged.
pub type Boxed = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a subcommand failed, by kind; [`CliError::exit_code`] maps the kind to the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Plan or suite files that did not load: every problem is printed with its snippet.
    #[error("{} input(s) did not load", .0.len())]
    Load(Vec<spec::LoadError>),
    /// Bad input reported as a diagnostic (file, line, snippet).
    #[error("{0}")]
    InvalidDiagnostic(Box<dyn miette::Diagnostic + Send + Sync + 'static>),
    /// Bad input: arguments, key files, results files, recipes.
    #[error(transparent)]
    Invalid(Boxed),
    /// The host, the filesystem or a target failed, reported as a diagnostic.
    #[error("{0}")]
    InfraDiagnostic(Box<dyn miette::Diagnostic + Send + Sync + 'static>),
    /// The host, the filesystem or a target failed.
    #[error(transparent)]
    Infra(Boxed),
    /// `verify` found problems in a bundle: it must not be trusted.
    #[error("the bundle must not be trusted ({} problem(s))", problems.len())]
    Rejected {
        bundle: PathBuf,
        problems: Vec<String>,
    },
}

impl CliError {
    /// Bad input, printed as `error: ` and its message chain.
    pub fn invalid(e: impl Into<Boxed>) -> CliError {
        CliError::Invalid(e.into())
    }

    /// An infrastructure failure, printed as `error: ` and its message chain.
    pub fn infra(e: impl Into<Boxed>) -> CliError {
        CliError::Infra(e.into())
    }

    /// The exit code this kind of error ends the process with (README.md lists them).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Load(_) | CliError::InvalidDiagnostic(_) | CliError::Invalid(_) => {
                exit_codes::INVALID_INPUT
            }
            CliError::InfraDiagnostic(_) | CliError::Infra(_) => exit_codes::INFRA_ERROR,
            CliError::Rejected { .. } => exit_codes::VERIFY_FAILED,
        }
    }
}

impl From<spec::LoadError> for CliError {
    fn from(e: spec::LoadError) -> CliError {
        CliError::Load(vec![e])
    }
}

/// Files a subcommand reads or writes itself.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
