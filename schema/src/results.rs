//! The stored results format. Bump [`SCHEMA_VERSION`] whenever a stored field changes meaning.
//!
//! Serde discipline: explicit tags, no `flatten`/`untagged`, unknown fields are tolerated on read
//! (newer harnesses may add fields) but every field written here is documented.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `results.json` schema written by this crate.
///
/// History: 1 — cases, environments, summary. 2 — certification: a verdict per combination,
/// per target × component pair and overall, the plan's waivers and which failed case each one
/// matched, and the report cover fields of [`Product`]. Version 1 documents are still read: their
/// verdicts are computed on reading (they had no waivers). 3 — [`CaseResult::leaked`]: the
/// processes a case left running that the harness killed. Versions 1 and 2 are still read (they
/// recorded none).
pub const SCHEMA_VERSION: u32 = 3;

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
    /// Verdicts and waivers (schema 2; computed on reading a version 1 document).
    #[serde(default)]
    pub certification: Certification,
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

/// The product under test, and who certifies it (the report cover).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Product {
    pub name: String,
    pub version: String,
    pub vendor: String,
    /// The adaptation center issuing the report (schema 2; empty when not given).
    #[serde(default)]
    pub center: String,
    /// The center's report number (schema 2).
    #[serde(default)]
    pub report_number: String,
    /// Who ran the tests (schema 2).
    #[serde(default)]
    pub tester: String,
    /// Who reviewed the report (schema 2).
    #[serde(default)]
    pub reviewer: String,
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
    /// DMI, PCI, CPU ids, NUMA, disks and NICs (optional: older probes reported none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<crate::hardware::Hardware>,
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
    /// The verdict on this combination (schema 2; the rules are `adaptest_reports::verdict`).
    #[serde(default = "Verdict::fail_closed")]
    pub verdict: Verdict,
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
    /// For a failed or errored case: the waiver of the plan that matched it, as an index into
    /// [`Certification::waivers`] (an active one if any matched, else an expired one). Whether
    /// it applied is that waiver's [`WaiverRecord::status`]. Absent otherwise (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<u32>,
    /// For an `sql` case: how many of its script's records ran, were skipped by a condition and
    /// were left after a halt. Absent for other kinds (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_records: Option<SqlRecords>,
    /// Processes the case's commands left running after they ended (in their process group),
    /// which the harness then killed: evidence that the case was not clean, shown in the report.
    /// Empty (and absent) for a clean case (schema 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaked: Vec<LeakedProcess>,
}

/// What an `sql` case's sqllogictest script did with its records (`statement`, `query`, `let`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SqlRecords {
    /// Sent to the database (including the one that failed, if any).
    pub ran: u64,
    /// Not run on this component: an `onlyif`/`skipif` condition said so.
    pub skipped: u64,
    /// Never reached: after a `halt` that applied to this component.
    pub halted: u64,
}

/// A process a case left behind, killed by the harness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeakedProcess {
    /// Its pid on the target.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub command: String,
}

impl std::fmt::Display for LeakedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
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

/// A certification verdict. Ordered from best to worst, so the verdict of a group is the
/// maximum of its members'.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// 兼容: every mandatory case passed, nothing to note.
    Certified,
    /// 基本兼容: no unwaived mandatory failure, but optional failures, waived mandatory
    /// failures or cases that did not run (an incomplete run is never better than this).
    CertifiedWithNotes,
    /// 不兼容: a mandatory case failed (or errored) and no valid waiver covers it.
    NotCertified,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Certified => "certified",
            Verdict::CertifiedWithNotes => "certified_with_notes",
            Verdict::NotCertified => "not_certified",
        }
    }

    /// The default of a verdict missing from a document: never better than the evidence.
    pub fn fail_closed() -> Verdict {
        Verdict::NotCertified
    }
}

/// The certification part of a run: verdicts, the facts they rest on, and the waivers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Certification {
    /// The overall verdict: the worst of every pair's, and at best `certified_with_notes` when
    /// the run is incomplete.
    pub verdict: Verdict,
    /// The local calendar date (`YYYY-MM-DD`) the verdict was reached on; waiver expiry is
    /// judged against it.
    pub judged_on: String,
    /// The counts behind [`Certification::verdict`].
    pub basis: VerdictBasis,
    /// One verdict per target × component pair (the worst of its combinations), in plan order.
    pub pairs: Vec<PairVerdict>,
    /// The plan's waivers, in plan order, each with its status on `judged_on`.
    pub waivers: Vec<WaiverRecord>,
}

impl Default for Certification {
    /// Not judged yet: fails closed.
    fn default() -> Self {
        Certification {
            verdict: Verdict::fail_closed(),
            judged_on: String::new(),
            basis: VerdictBasis::default(),
            pairs: Vec::new(),
            waivers: Vec::new(),
        }
    }
}

/// Why a verdict is what it is, counted over every case of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerdictBasis {
    /// Mandatory cases failed or errored with no active waiver: each makes `not_certified`.
    pub mandatory_failed: u64,
    /// Mandatory cases failed or errored, covered by an active waiver.
    pub mandatory_waived: u64,
    /// Optional cases failed or errored (waived or not).
    pub optional_failed: u64,
    /// Cases planned but not run, of any level.
    pub not_run: u64,
    /// Failed or errored cases whose only matching waiver had expired (counted above too).
    pub expired_waiver: u64,
    /// Every planned case ran (the run was neither interrupted nor stopped by fail-fast).
    pub complete: bool,
    /// Mandatory cases that ran to a result (passed, flaky, failed or errored; not skipped or
    /// not run). With none, nothing was certified and the verdict is `not_certified`.
    #[serde(default)]
    pub mandatory_executed: u64,
}

/// The verdict on one target × component pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PairVerdict {
    pub target: String,
    pub component: String,
    pub verdict: Verdict,
}

/// A waiver from the plan: a known failure accepted until a date.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WaiverRecord {
    /// `suite-id/case-id` glob pattern.
    pub case: String,
    /// Target id glob; absent: every target.
    pub target: Option<String>,
    /// Component id glob; absent: every component.
    pub component: Option<String>,
    pub reason: String,
    pub owner: String,
    /// The last day (`YYYY-MM-DD`) on which the waiver applies.
    pub expires: String,
    pub status: WaiverStatus,
    /// Failed or errored cases this waiver matched (and so covers, when active).
    pub matched: u64,
}

/// Whether a waiver applies on [`Certification::judged_on`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WaiverStatus {
    Active,
    /// Past its `expires` date: listed in the report, never applied.
    Expired,
}
