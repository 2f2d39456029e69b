//! The certification rules, table-driven: every level × outcome × waiver state, then how
//! verdicts combine (combination → target × component pair → overall) and incomplete runs.

mod common;

use Level::{Mandatory as M, Optional as O};
use Status::{Error, Failed, Flaky, NotRun, Passed, Skipped};
use Verdict::{Certified as C, CertifiedWithNotes as N, NotCertified as X};
use adaptest_reports::*;

/// How a case stands with the waivers.
#[derive(Debug, Clone, Copy)]
enum W {
    /// No waiver matched.
    None,
    /// An active waiver matched.
    Active,
    /// Only an expired waiver matched.
    Expired,
}

/// (level, outcome, waiver, verdict of a combination holding only this case).
const TABLE: &[(Level, Status, W, Verdict)] = &[
    (M, Passed, W::None, C),
    (M, Passed, W::Active, C),
    (M, Passed, W::Expired, C),
    (M, Flaky, W::None, C),
    (M, Flaky, W::Active, C),
    (M, Flaky, W::Expired, C),
    (M, Skipped, W::None, C),
    (M, Skipped, W::Active, C),
    (M, Skipped, W::Expired, C),
    (M, NotRun, W::None, N),
    (M, NotRun, W::Active, N),
    (M, NotRun, W::Expired, N),
    (M, Failed, W::None, X),
    (M, Failed, W::Active, N),
    (M, Failed, W::Expired, X),
    (M, Error, W::None, X),
    (M, Error, W::Active, N),
    (M, Error, W::Expired, X),
    (O, Passed, W::None, C),
    (O, Passed, W::Active, C),
    (O, Passed, W::Expired, C),
    (O, Flaky, W::None, C),
    (O, Flaky, W::Active, C),
    (O, Flaky, W::Expired, C),
    (O, Skipped, W::None, C),
    (O, Skipped, W::Active, C),
    (O, Skipped, W::Expired, C),
    (O, NotRun, W::None, N),
    (O, NotRun, W::Active, N),
    (O, NotRun, W::Expired, N),
    (O, Failed, W::None, N),
    (O, Failed, W::Active, N),
    (O, Failed, W::Expired, N),
    (O, Error, W::None, N),
    (O, Error, W::Active, N),
    (O, Error, W::Expired, N),
];

fn waiver(status: WaiverStatus) -> WaiverRecord {
    WaiverRecord {
        case: "s/*".to_owned(),
        target: None,
        component: None,
        reason: "known".to_owned(),
        owner: "qa".to_owned(),
        expires: "2027-03-31".to_owned(),
        status,
        matched: 1,
    }
}

/// A complete run of one combination `t/c/s` holding `cases`.
fn run(cases: Vec<CaseResult>) -> RunResults {
    let mut results = common::sample();
    results.run.completion = Completion::Complete;
    results.combinations.truncate(1);
    let combination = &mut results.combinations[0];
    combination.id = "t/c/s".to_owned();
    combination.target = "t".to_owned();
    combination.component = "c".to_owned();
    combination.suite = "s".to_owned();
    combination.cases = cases;
    results.certification.waivers =
        vec![waiver(WaiverStatus::Active), waiver(WaiverStatus::Expired)];
    results.recount();
    results
}

fn case_with(level: Level, status: Status, w: W) -> CaseResult {
    let mut case = common::case("k", status, level);
    case.waiver = match w {
        W::None => None,
        W::Active => Some(0),
        W::Expired => Some(1),
    };
    case
}

#[test]
fn every_level_outcome_and_waiver_gives_its_verdict() {
    for &(level, status, w, expected) in TABLE {
        // Beside a passed mandatory case: a run where no mandatory case ran is never certified
        // (see `nothing_certifies_from_nothing`).
        let mut results = run(vec![
            case_with(level, status, w),
            common::case("m", Passed, M),
        ]);
        verdict::judge(&mut results, "2026-06-01");
        let row = format!("{level:?} {status:?} waiver {w:?}");
        assert_eq!(
            results.combinations[0].verdict, expected,
            "combination: {row}"
        );
        assert_eq!(results.certification.pairs.len(), 1, "{row}");
        assert_eq!(
            results.certification.pairs[0].verdict, expected,
            "pair: {row}"
        );
        assert_eq!(results.certification.verdict, expected, "overall: {row}");
        assert_eq!(results.certification.judged_on, "2026-06-01");

        let basis = &results.certification.basis;
        let failing = matches!(status, Failed | Error);
        let waived = failing && matches!(w, W::Active);
        assert_eq!(
            basis.mandatory_failed,
            u64::from(failing && level == M && !waived),
            "{row}"
        );
        assert_eq!(
            basis.mandatory_waived,
            u64::from(level == M && waived),
            "{row}"
        );
        assert_eq!(
            basis.optional_failed,
            u64::from(failing && level == O),
            "{row}"
        );
        assert_eq!(
            basis.expired_waiver,
            u64::from(failing && matches!(w, W::Expired)),
            "{row}"
        );
        assert_eq!(basis.not_run, u64::from(status == NotRun), "{row}");
        assert!(basis.complete);
    }
}

#[test]
fn the_table_covers_every_combination_once() {
    assert_eq!(TABLE.len(), 2 * 6 * 3);
    for (i, a) in TABLE.iter().enumerate() {
        for b in &TABLE[i + 1..] {
            assert!(
                !(a.0 == b.0 && a.1 == b.1 && format!("{:?}", a.2) == format!("{:?}", b.2)),
                "duplicate row {a:?}"
            );
        }
    }
}

#[test]
fn a_combination_takes_its_worst_case() {
    let mut results = run(vec![
        case_with(M, Passed, W::None),
        case_with(O, Failed, W::None),
        case_with(M, Skipped, W::None),
    ]);
    verdict::judge(&mut results, "2026-06-01");
    assert_eq!(results.combinations[0].verdict, N);

    results.combinations[0]
        .cases
        .push(case_with(M, Failed, W::Expired));
    results.recount();
    verdict::judge(&mut results, "2026-06-01");
    assert_eq!(results.combinations[0].verdict, X);

    // A combination with no case at all has nothing against it.
    results.combinations[0].cases.clear();
    verdict::judge(&mut results, "2026-06-01");
    assert_eq!(results.combinations[0].verdict, C);
}

#[test]
fn pairs_take_their_worst_suite_and_overall_the_worst_pair() {
    // la64/os/os-basic passes; la64/postgres/pg-compat and local/os/os-basic fail mandatory.
    let mut results = common::sample();
    results.run.completion = Completion::Complete;
    verdict::judge(&mut results, "2026-06-01");
    let pairs: Vec<(&str, &str, Verdict)> = results
        .certification
        .pairs
        .iter()
        .map(|p| (p.target.as_str(), p.component.as_str(), p.verdict))
        .collect();
    assert_eq!(
        pairs,
        [
            ("local", "os", X),
            ("la64", "postgres", X),
            ("la64", "os", C)
        ]
    );
    assert_eq!(results.certification.verdict, X);

    // A second suite on la64 × os that fails an optional case makes that pair "with notes".
    let mut extra = results.combinations[2].clone();
    extra.id = "la64/os/os-extra".to_owned();
    extra.suite = "os-extra".to_owned();
    extra.cases = vec![common::case("x", Failed, O)];
    results.combinations.push(extra);
    verdict::judge(&mut results, "2026-06-01");
    assert_eq!(results.certification.pairs[2].verdict, N);
    assert_eq!(
        results.certification.pairs.len(),
        3,
        "one pair per target × component"
    );
}

#[test]
fn an_incomplete_run_is_never_certified() {
    for completion in [Completion::Interrupted, Completion::FailFast] {
        let mut results = run(vec![case_with(M, Passed, W::None)]);
        results.run.completion = completion;
        verdict::judge(&mut results, "2026-06-01");
        // Every case that ran passed, so the combination itself is certified …
        assert_eq!(results.combinations[0].verdict, C);
        // … but the run as a whole is not evidence enough.
        assert_eq!(results.certification.verdict, N, "{completion:?}");
        assert!(!results.certification.basis.complete);
    }
}

#[test]
fn a_version_1_document_is_judged_on_reading() {
    let mut results = common::sample();
    results.run.completion = Completion::Complete;
    let mut value: serde_json::Value = serde_json::from_str(&to_json(&results).unwrap()).unwrap();
    value["schema_version"] = 1.into();
    value.as_object_mut().unwrap().remove("certification");
    for c in value["combinations"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("verdict");
    }
    for f in ["center", "report_number", "tester", "reviewer"] {
        value["product"].as_object_mut().unwrap().remove(f);
    }
    let read = from_json(&value.to_string()).unwrap();
    assert_eq!(read.certification.verdict, X);
    assert_eq!(read.combinations[2].verdict, C);
    assert_eq!(read.certification.judged_on, "2026-01-27");
    assert!(read.certification.waivers.is_empty());

    // A version 2 document keeps the verdicts it stores (they were judged with its waivers).
    let mut stored: serde_json::Value = serde_json::from_str(&to_json(&results).unwrap()).unwrap();
    stored["certification"]["verdict"] = "certified_with_notes".into();
    let read = from_json(&stored.to_string()).unwrap();
    assert_eq!(read.certification.verdict, N);
}

#[test]
fn a_verdict_missing_from_a_document_fails_closed() {
    let mut value: serde_json::Value =
        serde_json::from_str(&to_json(&common::sample()).unwrap()).unwrap();
    value["combinations"][2]
        .as_object_mut()
        .unwrap()
        .remove("verdict");
    let read = from_json(&value.to_string()).unwrap();
    assert_eq!(read.combinations[2].verdict, X);
}

#[test]
fn junit_carries_verdicts_and_waivers() {
    let mut results = run(vec![
        case_with(M, Failed, W::Active),
        case_with(M, Failed, W::Expired),
        case_with(M, Passed, W::None),
    ]);
    verdict::judge(&mut results, "2026-06-01");
    let report = quick_junit::Report::deserialize_from_str(&to_junit(&results).unwrap()).unwrap();
    let suite = &report.test_suites[0];
    let prop = |props: &[quick_junit::Property], name: &str| {
        props
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.value.to_string())
    };
    assert_eq!(
        prop(&suite.properties, "verdict").as_deref(),
        Some("not_certified")
    );
    let cases = &suite.test_cases;
    assert_eq!(
        prop(&cases[0].properties, "waiver").as_deref(),
        Some("active: known")
    );
    assert_eq!(
        prop(&cases[1].properties, "waiver").as_deref(),
        Some("expired: known")
    );
    assert_eq!(prop(&cases[2].properties, "waiver"), None);
}

#[test]
fn nothing_certifies_from_nothing() {
    // Only optional cases, or every mandatory case skipped or not run: no certificate.
    for cases in [
        vec![],
        vec![common::case("o", Passed, O)],
        vec![common::case("k", Skipped, M)],
        vec![common::case("k", NotRun, M), common::case("o", Passed, O)],
    ] {
        let mut results = run(cases.clone());
        verdict::judge(&mut results, "2026-06-01");
        assert_eq!(
            results.certification.basis.mandatory_executed, 0,
            "{cases:?}"
        );
        assert_eq!(
            results.certification.verdict,
            Verdict::NotCertified,
            "{cases:?}"
        );
    }
    let mut results = run(vec![common::case("k", Passed, M)]);
    verdict::judge(&mut results, "2026-06-01");
    assert_eq!(results.certification.basis.mandatory_executed, 1);
    assert_eq!(results.certification.verdict, Verdict::Certified);
}
