//! Property tests over the parsers that read what a user or a crash left behind: plans, suites,
//! the journal and results.json. Bounded (a few hundred cases each) so they run in the normal
//! test suite; the property is the same as a fuzzer's: any input gives a result or an error
//! naming a place in the file, never a panic.

use crate::journal::{self, CaseRecord, Record};
use crate::spec::{self, Source};
use adaptest_reports::{Level, Status};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A built-in suite and the default plan: realistic inputs to mutate.
fn seeds() -> (String, String) {
    let suite = adaptest_suites::file("os/basic.toml")
        .expect("embedded os/basic.toml")
        .to_string();
    let plan = adaptest_suites::file(adaptest_suites::DEFAULT_PLAN)
        .expect("embedded default plan")
        .to_string();
    (suite, plan)
}

/// The built-in suites, loaded once.
fn builtin() -> &'static spec::SuiteSet {
    static SUITES: std::sync::OnceLock<spec::SuiteSet> = std::sync::OnceLock::new();
    SUITES.get_or_init(|| spec::load_suites(true, &[], &[]).expect("built-in suites load"))
}

/// `text` with up to a few byte edits (delete, insert, replace), as a fuzzer makes them.
fn mutated(text: String) -> impl Strategy<Value = Vec<u8>> {
    let len = text.len().max(1);
    proptest::collection::vec((0..len, 0u8..3, any::<u8>()), 1..6).prop_map(move |edits| {
        let mut b = text.clone().into_bytes();
        for (at, kind, byte) in edits {
            let at = at.min(b.len());
            match kind {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 => b.insert(at, byte),
                _ if at < b.len() => b[at] = byte,
                _ => b.push(byte),
            }
        }
        b
    })
}

/// Every error of a failed parse names a line of the file.
fn check_errors(text: &str, errors: &spec::SpecErrors) {
    let lines = text.lines().count().max(1) + 1;
    for e in &errors.errors {
        assert!(
            e.line >= 1 && e.line <= lines,
            "line {} of {lines}: {e}",
            e.line
        );
        assert!(e.column >= 1, "{e}");
    }
}

fn parse_suite_bytes(bytes: &[u8]) {
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => {
            if let Err(e) = spec::parse_suite(Source::new("builtin:os/fuzz.toml", text.clone())) {
                check_errors(&text, &e);
            }
        }
        Err(_) => {
            let e = spec::diag::invalid_utf8("fuzz.toml".into(), bytes);
            let valid = std::str::from_utf8(
                &bytes[..bytes.utf8_chunks().next().map_or(0, |c| c.valid().len())],
            )
            .expect("valid prefix");
            assert_eq!(e.line, valid.matches('\n').count() + 1, "{e}");
        }
    }
}

fn record(case: String, stdout: String) -> Record {
    Record::Case(CaseRecord {
        combination: "local/os/s".into(),
        case,
        level: Level::Mandatory,
        status: Status::Passed,
        reason: None,
        attempts: 1,
        duration_ms: 1,
        exit_code: Some(0),
        stdout,
        stderr: String::new(),
        log: None,
        metrics: vec![],
        finished_at: "2026-12-03T00:00:00Z".into(),
        imported: vec![],
        sql_records: None,
        leaked: vec![],
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn suites_never_panic(bytes in mutated(seeds().0)) {
        parse_suite_bytes(&bytes);
    }

    #[test]
    fn arbitrary_text_as_a_suite_never_panics(text in "\\PC{0,200}") {
        parse_suite_bytes(format!("[suite]\n{text}").as_bytes());
    }

    #[test]
    fn plans_never_panic(bytes in mutated(seeds().1)) {
        if let Ok(text) = String::from_utf8(bytes)
            && let Err(e) = spec::parse_plan(Source::new("fuzz-plan.toml", text.clone()), builtin())
        {
            check_errors(&text, &e);
        }
    }

    /// Whole lines are the records; whatever follows the last `\n` is never counted, and a
    /// corrupt line in the middle is an error, not a panic.
    #[test]
    fn journal_counts_whole_lines_only(
        cases in proptest::collection::vec(("[a-z]{1,8}", "\\PC{0,20}"), 0..6),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
        junk in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..30)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let records: Vec<Record> = cases.into_iter().map(|(c, o)| record(c, o)).collect();
        let mut bytes = Vec::new();
        for r in &records {
            bytes.extend(serde_json::to_vec(r).unwrap());
            bytes.push(b'\n');
        }
        let tail: Vec<u8> = tail.into_iter().filter(|&b| b != b'\n').collect();
        match junk {
            None => {
                bytes.extend(&tail);
                std::fs::write(&p, &bytes).unwrap();
                prop_assert_eq!(journal::read(&p).unwrap(), records);
            }
            Some(junk) => {
                // A line in the middle that is not a record: an error, or (if it happens to be
                // blank or a record) a result; never a panic.
                let mut b = junk;
                b.push(b'\n');
                b.extend(&bytes);
                std::fs::write(&p, &b).unwrap();
                let _ = journal::read(&p);
            }
        }
    }

    #[test]
    fn results_never_panic(bytes in mutated(results_seed())) {
        if let Ok(text) = String::from_utf8(bytes) {
            let _ = adaptest_reports::from_json(&text);
        }
    }
}

/// A small results.json as a run writes it.
fn results_seed() -> String {
    let mut r = adaptest_reports::RunResults {
        schema_version: adaptest_reports::SCHEMA_VERSION,
        harness: adaptest_reports::HarnessInfo {
            name: "adaptest".into(),
            version: "0".into(),
        },
        run: adaptest_reports::RunInfo {
            id: "r".into(),
            started_at: "2026-12-03T00:00:00Z".into(),
            finished_at: "2026-12-03T00:00:01Z".into(),
            duration_ms: 1000,
            completion: adaptest_reports::Completion::Complete,
            plan: "plan.toml".into(),
        },
        product: Default::default(),
        environments: Default::default(),
        combinations: vec![],
        summary: Default::default(),
        certification: Default::default(),
    };
    r.recount();
    adaptest_reports::to_json(&r).expect("serializes")
}
