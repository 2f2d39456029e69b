//! The run journal: append-only JSON lines, one per finished case, made durable before the
//! case counts as finished. Resume reads it back.
//!
//! Architecture invariant: a record is written with a single `write` of one whole line and
//! `fdatasync`ed before the scheduler moves on, so a SIGKILL (or power loss) never loses a
//! finished case, and a torn last line (a crash inside `write`) is cut off on reopen.

use adaptest_reports::{Level, Metric, Status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of `journal.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A run (or a resumption of it) started.
    Session {
        started_at: String,
        resumed: bool,
        harness_version: String,
    },
    /// A case finished (or was skipped).
    Case(CaseRecord),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseRecord {
    pub combination: String,
    pub case: String,
    pub level: Level,
    pub status: Status,
    pub reason: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub log: Option<String>,
    pub metrics: Vec<Metric>,
    pub finished_at: String,
    /// For an `import` case: the ids of the tests it recorded, in order, just before this
    /// record (the results show them in its place). Absent for every other case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<String>,
}

impl CaseRecord {
    /// Finished for resume purposes: anything but an infrastructure error, which a resume retries.
    pub fn is_final(&self) -> bool {
        self.status != Status::Error
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to open the journal {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to append to the journal {path}")]
    Append {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: the journal has a corrupt record: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// An open journal, shared by every executor.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Open (creating) the journal for appending, cutting off a torn last line if any.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let open_err = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        if len > 0 {
            // Find the last newline; anything after it is a torn write.
            let data = std::fs::read(path).map_err(open_err)?;
            let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
            if keep < len {
                tracing::warn!(
                    "journal {}: dropping a torn last record of {} bytes",
                    path.display(),
                    len - keep
                );
                file.set_len(keep).map_err(open_err)?;
                file.seek(SeekFrom::End(0)).map_err(open_err)?;
                file.sync_data().map_err(open_err)?;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Append one record durably.
    pub fn append(&self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records serialize");
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|source| JournalError::Append {
                path: self.path.clone(),
                source,
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Read every record; a torn last line is ignored, a corrupt line in the middle is an error.
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Open {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let data = {
        let mut v = Vec::new();
        let mut r = BufReader::new(file);
        loop {
            let mut line = Vec::new();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|source| JournalError::Open {
                    path: path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            v.push(line);
        }
        v
    };
    let mut out = Vec::with_capacity(data.len());
    let last = data.len();
    for (i, line) in data.into_iter().enumerate() {
        let complete = line.last() == Some(&b'\n');
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) => out.push(r),
            Err(_) if !complete && i + 1 == last => break, // torn tail
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// The latest record of each case, keyed by (combination, case).
pub fn latest_cases(records: &[Record]) -> HashMap<(String, String), CaseRecord> {
    let mut map = HashMap::new();
    for r in records {
        if let Record::Case(c) = r {
            map.insert((c.combination.clone(), c.case.clone()), c.clone());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(case: &str) -> Record {
        Record::Case(CaseRecord {
            combination: "local/os/os.basic".into(),
            case: case.into(),
            level: Level::Mandatory,
            status: Status::Passed,
            reason: None,
            attempts: 1,
            duration_ms: 3,
            exit_code: Some(0),
            stdout: "ok\n".into(),
            stderr: String::new(),
            log: None,
            metrics: vec![],
            finished_at: "2026-11-27T00:00:00Z".into(),
            imported: vec![],
        })
    }

    #[test]
    fn torn_tail_is_dropped_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let j = Journal::open(&p).unwrap();
        j.append(&rec("a")).unwrap();
        j.append(&rec("b")).unwrap();
        drop(j);
        // Simulate a crash inside write(): half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"type":"case","combination":"x"#).unwrap();
        drop(f);
        assert_eq!(read(&p).unwrap().len(), 2, "a torn tail is ignored on read");
        let j = Journal::open(&p).unwrap();
        j.append(&rec("c")).unwrap();
        let all = read(&p).unwrap();
        assert_eq!(all, vec![rec("a"), rec("b"), rec("c")]);
    }

    #[test]
    fn corrupt_middle_line_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        std::fs::write(&p, "{\"type\":\"case\"}\nnot json\n").unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }
}
