//! The stored results format. Bump [`SCHEMA_VERSION`] whenever a stored field changes meaning.
//!
//! Serde discipline: explicit tags, no `flatten`/`untagged`, unknown fields are tolerated on read
//! (newer harnesses may add fields) but every field written here is documented.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `results.json` schema written by this crate.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one run produced: the document every report is rendered from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResults {
    pub schema_version: u32,
    pub harness: HarnessInfo,
    pub run: RunInfo,
    pub product: Product,
    /// Environment of each target, keyed by target id.
    pub environments: BTreeMap<String, Environment>,
    pub combinations: Vec<CombinationResult>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HarnessInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    /// RFC 3339 timestamps (UTC).
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// `complete`, `interrupted` or `fail_fast`: whether every planned case ran.
    pub completion: Completion,
    /// The plan file the run came from, or `(embedded default)`.
    pub plan: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    Complete,
    Interrupted,
    FailFast,
}

/// The product under test.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Product {
    pub name: String,
    pub version: String,
    pub vendor: String,
}

/// What a target is: hardware, OS and runtime, captured the same way on every target kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub target: String,
    /// `local`, `ssh`, `qemu-system`, `qemu-user`.
    pub target_kind: String,
    /// `uname -m`: `x86_64`, `aarch64`, `loongarch64`, …
    pub arch: String,
    pub cpu_model: String,
    pub cpu_vendor: String,
    pub cores: u32,
    pub memory_bytes: u64,
    pub page_size: u64,
    /// `/etc/os-release` `ID`, `VERSION_ID` and `PRETTY_NAME`.
    pub os_id: String,
    pub os_version: String,
    pub os_name: String,
    pub kernel: String,
    /// `glibc 2.36`, `musl`, or empty when neither is detected.
    pub libc: String,
    pub hostname: String,
    /// Component versions seen on this target, keyed by component id.
    pub components: BTreeMap<String, String>,
    /// Anything else the probe reported, kept verbatim for the evidence.
    pub extra: BTreeMap<String, String>,
}

/// One suite run for one target × component pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CombinationResult {
    /// `target/component/suite`, stable across runs of the same plan.
    pub id: String,
    pub target: String,
    pub component: String,
    pub component_kind: String,
    pub suite: String,
    pub suite_title: String,
    pub suite_title_zh: String,
    pub suite_version: String,
    pub cases: Vec<CaseResult>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseResult {
    pub id: String,
    pub title: String,
    pub title_zh: String,
    pub level: Level,
    pub status: Status,
    /// Why the case did not pass (or was skipped), in one line.
    pub reason: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    /// Bounded excerpts of the output of the last attempt (the full output is in `log`).
    pub stdout: String,
    pub stderr: String,
    /// Path of the full log, relative to the run directory.
    pub log: Option<String>,
    pub tags: Vec<String>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Mandatory,
    Optional,
}

/// The outcome of one case.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Passed on the first attempt.
    Passed,
    /// Failed at first, then passed on a retry.
    Flaky,
    /// Ran and did not meet its expectations (including a timeout).
    Failed,
    /// Could not be run because of the infrastructure (spawn failed, target unreachable).
    Error,
    /// Not applicable: a requirement (arch, OS, command, capability) is not met.
    Skipped,
    /// Planned but never run (fail-fast or an interrupted run).
    NotRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Flaky => "flaky",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::NotRun => "not_run",
        }
    }

    /// Passed or flaky: the case's expectations were met.
    pub fn is_pass(self) -> bool {
        matches!(self, Status::Passed | Status::Flaky)
    }
}

/// A measured value (from `bench` cases, or any case that reports one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// A threshold the value had to meet, as written in the suite (`>= 1000`).
    pub threshold: Option<String>,
}

/// Counts over every case of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub passed: u64,
    pub flaky: u64,
    pub failed: u64,
    pub error: u64,
    pub skipped: u64,
    pub not_run: u64,
    /// Failed or errored cases at `mandatory` level.
    pub mandatory_failed: u64,
}

impl Summary {
    pub fn add(&mut self, status: Status, level: Level) {
        self.total += 1;
        match status {
            Status::Passed => self.passed += 1,
            Status::Flaky => self.flaky += 1,
            Status::Failed => self.failed += 1,
            Status::Error => self.error += 1,
            Status::Skipped => self.skipped += 1,
            Status::NotRun => self.not_run += 1,
        }
        if level == Level::Mandatory && matches!(status, Status::Failed | Status::Error) {
            self.mandatory_failed += 1;
        }
    }

    pub fn of<'a>(cases: impl IntoIterator<Item = &'a CaseResult>) -> Summary {
        let mut s = Summary::default();
        for c in cases {
            s.add(c.status, c.level);
        }
        s
    }
}

impl RunResults {
    /// Recompute [`RunResults::summary`] from the cases.
    pub fn recount(&mut self) {
        self.summary = Summary::of(self.combinations.iter().flat_map(|c| &c.cases));
    }
}
