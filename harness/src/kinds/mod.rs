//! Case kinds beyond `run`: how `sql`, `steps` and `bench` cases execute through a component's
//! protocol-neutral operations.

/// Bytes of stdout/stderr kept in results and the journal (the log keeps up to the capture limit).
pub const EXCERPT_BYTES: usize = 4096;
pub mod bench;
pub mod command_log;
pub mod import;
pub mod sql;
pub mod steps;

use adaptest_adapters::component::ComponentError;
use adaptest_reports::{Metric, Status};

/// What one attempt of a case produced.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub status: Status,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The full account for the case's log file.
    pub log: String,
    pub metrics: Vec<Metric>,
    /// The run was cancelled mid-case: nothing is recorded.
    pub cancelled: bool,
    /// Cases this one produced (an `import`'s tests), recorded before it.
    pub children: Vec<import::ImportedCase>,
    /// An `sql` case's record counts (ran, skipped by condition, left after a halt).
    pub sql_records: Option<adaptest_reports::SqlRecords>,
    /// Processes its commands left running, which the target killed.
    pub leaked: Vec<adaptest_reports::LeakedProcess>,
}

impl CaseOutcome {
    pub fn passed() -> Self {
        CaseOutcome {
            status: Status::Passed,
            reason: None,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            log: String::new(),
            metrics: Vec::new(),
            cancelled: false,
            children: Vec::new(),
            sql_records: None,
            leaked: Vec::new(),
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        CaseOutcome {
            status: Status::Failed,
            reason: Some(reason.into()),
            ..Self::passed()
        }
    }

    pub fn error(reason: impl Into<String>) -> Self {
        CaseOutcome {
            status: Status::Error,
            reason: Some(reason.into()),
            ..Self::passed()
        }
    }

    pub fn cancelled() -> Self {
        CaseOutcome {
            cancelled: true,
            ..Self::passed()
        }
    }

    /// A component error: infrastructure (cannot connect, connection lost) and a suite's own
    /// mistake (arguments the adapter refuses) are `error`; what the component answered
    /// (including that it lacks an operation of its capability) is `failed`.
    pub fn from_error(e: &ComponentError, prefix: &str) -> Self {
        let reason = format!("{prefix}{}", adaptest_adapters::text::error_chain(e));
        if is_infra(e) || is_suite_error(e) {
            Self::error(reason)
        } else {
            Self::failed(reason)
        }
    }
}

/// Is this a failure of the infrastructure rather than of the product's behaviour?
pub fn is_infra(e: &ComponentError) -> bool {
    matches!(
        e,
        ComponentError::Connect { .. } | ComponentError::Lost { .. } | ComponentError::Target(_)
    )
}

/// Is this a mistake of the suite (arguments the adapter refuses) rather than anything the
/// product did? Never the product's failure, and never what `expect_error` wants. (An
/// operation the component lacks is not: validation refuses operations that exist nowhere, so
/// a known one missing is the product's gap.)
pub fn is_suite_error(e: &ComponentError) -> bool {
    matches!(e, ComponentError::Arguments { .. })
}

/// What steps may ask of the engine about the component itself.
#[async_trait::async_trait]
pub trait ComponentControl: Send + Sync {
    /// Stop and start the component with its lifecycle commands, then wait until it is ready;
    /// the commands and their output are appended to `log` (the case's log).
    async fn restart(&self, log: &mut String) -> Result<(), String>;

    /// Between SIGTERM and SIGKILL when a command of a step times out or is cancelled.
    fn grace(&self) -> std::time::Duration;

    /// Variables every command a case runs on the target carries (`shell` steps included): the
    /// combination's [`SCOPE_VAR`](crate::engine::SCOPE_VAR), by which what the commands leave
    /// running is found and ended when the combination finishes.
    fn command_env(&self) -> Vec<(String, String)>;

    /// The secret variables a `shell` step's command must not inherit, given those it asks
    /// for by name (`pass_env`).
    fn scrubbed_vars(&self, pass: &[String]) -> Vec<String>;
}
