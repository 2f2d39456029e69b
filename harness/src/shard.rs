//! CI fan-out: `adaptest run --shard I/N` runs one deterministic share of a plan's
//! combinations; `adaptest merge DIR…` joins the shards' run directories into one run with the
//! results, JUnit and report that one unsharded run would have produced.
//!
//! The rule: the plan's combinations (lifecycle ones aside) in their expanded order — the
//! order `adaptest plan show` prints — are dealt round-robin: combination k (0-based) belongs to
//! shard `k mod N + 1`. A component's lifecycle (install, start, ready, stop, uninstall) runs in
//! every shard that has one of its suites, since each shard's machine needs it; merge keeps the
//! worst outcome of each lifecycle case.
//!
//! A shard's run directory holds the whole plan's inputs (so every shard's are identical and a
//! resume re-reads them) and `shard.json`: its index, the count, a hash of the inputs and the
//! combinations it owns. Merge checks that the directories are shards 1..N of one set of inputs,
//! each given once, owning disjoint combinations.

use crate::engine::StopReason;
use crate::journal::{self, CaseRecord, Record};
use crate::rundir::{self, RunMeta};
use crate::spec::{Plan, plan::LIFECYCLE_SUITE};
use adaptest_reports::{Completion, Environment, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `I/N`: shard I (1-based) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A `--shard` argument that is not `I/N` with 1 <= I <= N.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a shard: write I/N with 1 <= I <= N, e.g. 2/3")]
pub struct ShardParseError(pub String);

impl FromStr for Shard {
    type Err = ShardParseError;

    fn from_str(s: &str) -> Result<Shard, ShardParseError> {
        let bad = || ShardParseError(s.to_owned());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `shard.json` in a shard's run directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: Shard,
    /// FNV-1a 64 of the run's `inputs/` (plan and suites): equal for shards of one plan.
    pub inputs_hash: String,
    /// The combinations this shard owns (lifecycle ones excluded), in plan order.
    pub combinations: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directories given to merge are not the shards of one run.
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    RunDir(#[from] rundir::RunDirError),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

fn is_lifecycle(id: &str) -> bool {
    id.rsplit('/').next() == Some(LIFECYCLE_SUITE)
}

/// The combinations of `plan` shard `shard` owns, by the round-robin rule.
pub fn owned(plan: &Plan, shard: Shard) -> Vec<String> {
    plan.combinations
        .iter()
        .filter(|c| c.suite.id != LIFECYCLE_SUITE)
        .enumerate()
        .filter(|(k, _)| *k as u32 % shard.count == shard.index - 1)
        .map(|(_, c)| c.id.clone())
        .collect()
}

/// Keep the combinations in `owned`, and the lifecycle of every pair that has one of them.
pub fn restrict(mut plan: Plan, owned: &[String]) -> Plan {
    let keep: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
    let pairs: BTreeSet<(String, String)> = plan
        .combinations
        .iter()
        .filter(|c| keep.contains(c.id.as_str()))
        .map(|c| (c.target.clone(), c.component.clone()))
        .collect();
    plan.combinations.retain(|c| {
        if c.suite.id == LIFECYCLE_SUITE {
            pairs.contains(&(c.target.clone(), c.component.clone()))
        } else {
            keep.contains(c.id.as_str())
        }
    });
    plan
}

/// FNV-1a 64 over every file under `dir/inputs` (relative path and contents, sorted).
pub fn inputs_hash(dir: &Path) -> Result<String, ShardError> {
    let root = dir.join("inputs");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| ShardError::Read {
            path: d.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&f).map_err(|source| ShardError::Read {
            path: f.clone(),
            source,
        })?;
        eat(rel.as_bytes());
        eat(&[0]);
        eat(&(bytes.len() as u64).to_le_bytes());
        eat(&bytes);
    }
    Ok(format!("{h:016x}"))
}

fn read_info(dir: &Path) -> Result<Option<ShardInfo>, ShardError> {
    let path = dir.join("shard.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ShardError::Invalid {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ShardError::Read { path, source }),
    }
}

/// For `run`: with `--shard`, record the shard in the new run directory and keep only its
/// combinations; on a resume, the shard recorded in the directory applies again.
pub fn apply(dir: &Path, shard: Option<Shard>, plan: Plan) -> Result<Plan, ShardError> {
    let info = match shard {
        Some(shard) => {
            let info = ShardInfo {
                shard,
                inputs_hash: inputs_hash(dir)?,
                combinations: owned(&plan, shard),
            };
            let path = dir.join("shard.json");
            let text = serde_json::to_string_pretty(&info).expect("shard info serializes");
            std::fs::write(&path, text).map_err(|source| ShardError::Write { path, source })?;
            info
        }
        None => match read_info(dir)? {
            Some(info) => info,
            None => return Ok(plan),
        },
    };
    Ok(restrict(plan, &info.combinations))
}

/// One shard's run directory, read for merging.
struct ShardRun {
    dir: PathBuf,
    info: ShardInfo,
    results: adaptest_reports::RunResults,
    records: Vec<Record>,
}

fn load_shard(dir: &Path) -> Result<ShardRun, ShardError> {
    rundir::read_meta(dir)?; // a run directory at all
    let info = read_info(dir)?.ok_or_else(|| {
        ShardError::Mismatch(format!(
            "{} is not a shard's run directory (no shard.json): run it with --shard I/N",
            dir.display()
        ))
    })?;
    let rpath = dir.join("results.json");
    let text = std::fs::read_to_string(&rpath).map_err(|source| ShardError::Read {
        path: rpath.clone(),
        source,
    })?;
    let results = adaptest_reports::from_json(&text).map_err(|e| ShardError::Invalid {
        path: rpath,
        message: adaptest_adapters::text::error_chain(&e),
    })?;
    let records = journal::read(&dir.join("journal.jsonl"))?;
    Ok(ShardRun {
        dir: dir.to_path_buf(),
        info,
        results,
        records,
    })
}

/// How bad an outcome is, for picking the one lifecycle record a merge keeps.
fn severity(s: Status) -> u8 {
    match s {
        Status::Error => 5,
        Status::Failed => 4,
        Status::NotRun => 3,
        Status::Flaky => 2,
        Status::Skipped => 1,
        Status::Passed => 0,
    }
}

/// What a merge produced.
#[derive(Debug)]
pub struct Merged {
    pub dir: PathBuf,
    pub results: adaptest_reports::RunResults,
    /// Some shard was interrupted (its missing cases are `not_run`).
    pub interrupted: bool,
}

/// Merge shard run directories into a new run directory under `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, ShardError> {
    let mut shards = Vec::new();
    for d in dirs {
        shards.push(load_shard(d)?);
    }
    let Some(first) = shards.first() else {
        return Err(ShardError::Mismatch(
            "nothing to merge: name the shards' run directories".into(),
        ));
    };
    let count = first.info.shard.count;
    let mut by_index: BTreeMap<u32, &ShardRun> = BTreeMap::new();
    for s in &shards {
        if s.info.inputs_hash != first.info.inputs_hash || s.info.shard.count != count {
            return Err(ShardError::Mismatch(format!(
                "{} (shard {}, inputs {}) and {} (shard {}, inputs {}) are not shards of one plan",
                first.dir.display(),
                first.info.shard,
                first.info.inputs_hash,
                s.dir.display(),
                s.info.shard,
                s.info.inputs_hash
            )));
        }
        if let Some(prev) = by_index.insert(s.info.shard.index, s) {
            return Err(ShardError::Mismatch(format!(
                "shard {} is given twice: {} and {}",
                s.info.shard,
                prev.dir.display(),
                s.dir.display()
            )));
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Mismatch(format!(
            "shard(s) {} missing: merge needs all {count}",
            missing.join(", ")
        )));
    }
    let mut owner: HashMap<&str, &Path> = HashMap::new();
    for s in by_index.values() {
        for c in &s.info.combinations {
            if let Some(other) = owner.insert(c, &s.dir) {
                return Err(ShardError::Mismatch(format!(
                    "combination {c} is in two shards: {} and {}",
                    other.display(),
                    s.dir.display()
                )));
            }
        }
    }
    let (meta0, plan) = rundir::load_inputs(&first.dir)?;

    // The merged run directory: the inputs, the journals, the logs.
    let run_id = rundir::new_run_id();
    let dir = out.join(&run_id);
    copy_tree(&first.dir.join("inputs"), &dir.join("inputs"))?;
    std::fs::create_dir_all(dir.join("env")).map_err(|source| ShardError::Write {
        path: dir.join("env"),
        source,
    })?;
    let started_at = by_index
        .values()
        .map(|s| s.results.run.started_at.clone())
        .min()
        .unwrap_or_default();
    let meta = RunMeta {
        run_id: run_id.clone(),
        created_at: jiff::Timestamp::now().to_string(),
        ..meta0
    };
    rundir::write(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&meta)
            .expect("meta serializes")
            .as_bytes(),
    )?;
    let mut lines = String::new();
    let mut lifecycle: BTreeMap<(String, String), (&CaseRecord, &Path)> = BTreeMap::new();
    for s in by_index.values() {
        copy_tree(&s.dir.join("logs"), &dir.join("logs"))?;
        let latest = journal::latest_cases(&s.records);
        for r in &s.records {
            match r {
                Record::Case(c) if is_lifecycle(&c.combination) => {
                    // The shard's latest record of it competes with the other shards'.
                    let key = (c.combination.clone(), c.case.clone());
                    if latest.get(&key) != Some(c) {
                        continue;
                    }
                    let worse = lifecycle
                        .get(&key)
                        .is_none_or(|(prev, _)| severity(c.status) > severity(prev.status));
                    if worse {
                        lifecycle.insert(key, (c, &s.dir));
                    }
                }
                other => {
                    lines.push_str(&serde_json::to_string(other).expect("records serialize"));
                    lines.push('\n');
                }
            }
        }
    }
    for (c, from) in lifecycle.values() {
        lines.push_str(
            &serde_json::to_string(&Record::Case((*c).clone())).expect("records serialize"),
        );
        lines.push('\n');
        if let Some(log) = &c.log {
            let _ = std::fs::copy(from.join(log), dir.join(log));
        }
    }
    rundir::write(&dir.join("journal.jsonl"), lines.as_bytes())?;

    // Environments: each target's from the first shard that has it, component versions from all.
    let mut envs: BTreeMap<String, Environment> = BTreeMap::new();
    for s in by_index.values() {
        for (t, e) in &s.results.environments {
            let merged = envs.entry(t.clone()).or_insert_with(|| e.clone());
            for (c, v) in &e.components {
                merged
                    .components
                    .entry(c.clone())
                    .or_insert_with(|| v.clone());
            }
        }
    }
    for (t, e) in &envs {
        let text = serde_json::to_string_pretty(e).expect("environment serializes");
        rundir::write(&dir.join("env").join(format!("{t}.json")), text.as_bytes())?;
    }
    let interrupted = by_index
        .values()
        .any(|s| s.results.run.completion == Completion::Interrupted);
    let fail_fast = by_index
        .values()
        .any(|s| s.results.run.completion == Completion::FailFast);
    let stopped = if interrupted {
        Some(StopReason::Interrupted)
    } else if fail_fast {
        Some(StopReason::FailFast)
    } else {
        None
    };
    let records = rundir::journal_records(&dir)?;
    let results = rundir::assemble(&meta, &plan, &records, envs, stopped, &started_at);
    rundir::write_reports(&dir, &results).map_err(|e| ShardError::Write {
        path: dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Merged {
        dir,
        results,
        interrupted,
    })
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ShardError> {
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| ShardError::Write {
            path: p.to_path_buf(),
            source,
        })
    };
    mkdir(to)?;
    let rd = match std::fs::read_dir(from) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ShardError::Read {
                path: from.to_path_buf(),
                source,
            });
        }
    };
    for e in rd.flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest)?;
        } else {
            std::fs::copy(&p, &dest).map_err(|source| ShardError::Write {
                path: dest.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Source, parse_plan, parse_suite};
    use std::sync::Arc;

    #[test]
    fn shard_arguments() {
        assert_eq!(
            "2/3".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 3 }
        );
        assert_eq!(Shard { index: 1, count: 4 }.to_string(), "1/4");
        for bad in ["0/3", "4/3", "1/0", "x/2", "3", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    fn plan() -> Plan {
        let mut suites = BTreeMap::new();
        for id in ["a", "b", "c", "d", "e"] {
            let s = parse_suite(Source::new(
                format!("{id}.toml"),
                format!("[suite]\nid = \"s.{id}\"\ntitle = \"t\"\ncomponent = \"os\"\n[[case]]\nid = \"x\"\ntitle = \"x\"\nrun = \"true\"\n"),
            ))
            .unwrap();
            suites.insert(s.id.clone(), Arc::new(s));
        }
        let text = "[[target]]\nid = \"t1\"\nkind = \"local\"\n[[target]]\nid = \"t2\"\nkind = \"local\"\n[[matrix]]\ntargets = [\"*\"]\ncomponents = [\"os\"]\nsuites = [\"s.*\"]\n";
        parse_plan(Source::new("plan.toml", text), &suites).unwrap()
    }

    #[test]
    fn round_robin_is_a_partition_in_plan_order() {
        let p = plan();
        let all: Vec<String> = p.combinations.iter().map(|c| c.id.clone()).collect();
        assert_eq!(all.len(), 10);
        let shards: Vec<Vec<String>> = (1..=3)
            .map(|i| owned(&p, Shard { index: i, count: 3 }))
            .collect();
        assert_eq!(
            shards.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 3, 3],
            "balanced to within one"
        );
        assert_eq!(shards[0][0], all[0]);
        assert_eq!(shards[1][0], all[1]);
        assert_eq!(shards[0][1], all[3]);
        let mut union: Vec<String> = shards.concat();
        union.sort();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(union, sorted, "every combination in exactly one shard");
        assert_eq!(
            owned(&p, Shard { index: 2, count: 3 }),
            shards[1],
            "deterministic"
        );
        let kept = restrict(plan(), &shards[2]);
        assert_eq!(
            kept.combinations
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>(),
            shards[2]
        );
        assert!(
            owned(
                &p,
                Shard {
                    index: 11,
                    count: 11
                }
            )
            .is_empty(),
            "more shards than combinations: some are empty"
        );
    }
}
