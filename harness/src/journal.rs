//! The run journal: append-only JSON lines, one per finished case, made durable before the
//! case counts as finished. Resume reads it back.
//!
//! Architecture invariant: a record is written with a single `write` of one whole line, so a
//! SIGKILL never loses a finished case (the kernel has the line) and a torn last line (a crash
//! inside `write`) is cut off on reopen. A case *counts* (its event, the progress, the results)
//! only after an `fdatasync` covering its line has completed: [`Journal::append_then`] writes the
//! line at once and leaves the sync to a thread of the journal's own, which syncs whatever has
//! been written meanwhile in one go (group commit) and then runs the callbacks in order — so the
//! next case runs while the disk flushes (a sync costs ~0.35 ms here, as much as a short
//! command), and a power loss loses at most cases that were never reported finished.

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
#[expect(
    clippy::large_enum_variant,
    reason = "records are built one at a time and written at once; boxing would buy nothing"
)]
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
    /// For an `sql` case: what its script did with its records. Absent for every other case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_records: Option<adaptest_reports::SqlRecords>,
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
    syncer: Syncer,
}

/// Work for the sync thread: run once the lines written before it was queued are durable.
type AfterSync = Box<dyn FnOnce() + Send>;

/// The journal's sync thread and how to reach it.
#[derive(Debug)]
struct Syncer {
    tx: Mutex<Option<std::sync::mpsc::Sender<AfterSync>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The first failed background sync: every later append reports it.
    failed: std::sync::Arc<Mutex<Option<std::io::Error>>>,
}

impl Syncer {
    fn start(file: File) -> Syncer {
        let (tx, rx) = std::sync::mpsc::channel::<AfterSync>();
        let failed = std::sync::Arc::new(Mutex::new(None::<std::io::Error>));
        let failed_in = failed.clone();
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    match file.sync_data() {
                        Ok(()) => batch.into_iter().for_each(|after| after()),
                        Err(e) => {
                            let mut f = failed_in.lock().unwrap_or_else(|p| p.into_inner());
                            f.get_or_insert(e);
                        }
                    }
                }
            })
            .expect("spawn the journal's sync thread");
        Syncer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            failed,
        }
    }

    fn failed(&self) -> Option<std::io::Error> {
        let f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref()
            .map(|e| std::io::Error::new(e.kind(), e.to_string()))
    }

    /// Queue `after`; false when the thread is gone (the journal is closing).
    fn queue(&self, after: AfterSync) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|tx| tx.send(after).is_ok())
    }

    /// Wait until everything queued so far is durable and its callbacks have run.
    fn flush(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        if self.queue(Box::new(move || {
            let _ = done_tx.send(());
        })) {
            // Err: the sync failed (the callback was dropped): `failed` says so.
            let _ = done_rx.recv();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has synced what is queued.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
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
        let sync_handle = file.try_clone().map_err(open_err)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            syncer: Syncer::start(sync_handle),
        })
    }

    /// Append one record durably (synced before this returns).
    pub fn append(&self, record: &Record) -> Result<(), JournalError> {
        self.write_line(record)?;
        let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.sync_data().map_err(|source| self.append_err(source))
    }

    /// Append one record now and run `after` once it is durable (on the journal's sync thread,
    /// in append order; never if the sync fails, which the next append then reports).
    pub fn append_then(
        &self,
        record: &Record,
        after: impl FnOnce() + Send + 'static,
    ) -> Result<(), JournalError> {
        self.write_line(record)?;
        if !self.syncer.queue(Box::new(after)) {
            let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.sync_data().map_err(|source| self.append_err(source))?;
        }
        Ok(())
    }

    /// Wait until every record appended so far is durable and its `after` has run.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.syncer.flush();
        match self.syncer.failed() {
            Some(e) => Err(self.append_err(e)),
            None => Ok(()),
        }
    }

    fn write_line(&self, record: &Record) -> Result<(), JournalError> {
        if let Some(e) = self.syncer.failed() {
            return Err(self.append_err(e));
        }
        let mut line = serde_json::to_vec(record).expect("journal records serialize");
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line).map_err(|source| self.append_err(source))
    }

    fn append_err(&self, source: std::io::Error) -> JournalError {
        JournalError::Append {
            path: self.path.clone(),
            source,
        }
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
            sql_records: None,
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
    fn append_then_runs_callbacks_in_order_after_the_line_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let j = Journal::open(&p).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for id in ["a", "b", "c"] {
            let tx = tx.clone();
            let path = p.clone();
            j.append_then(&rec(id), move || {
                // When a case counts, its record is in the file (and synced).
                let ids: Vec<Record> = read(&path).unwrap();
                tx.send((id, ids.contains(&rec(id)))).unwrap();
            })
            .unwrap();
        }
        j.flush().unwrap();
        let seen: Vec<(&str, bool)> = rx.try_iter().collect();
        assert_eq!(seen, [("a", true), ("b", true), ("c", true)]);
        // Dropping the journal runs what is still queued.
        let tx2 = tx.clone();
        j.append_then(&rec("d"), move || tx2.send(("d", true)).unwrap())
            .unwrap();
        drop(j);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [("d", true)]);
        assert_eq!(read(&p).unwrap().len(), 4);
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
