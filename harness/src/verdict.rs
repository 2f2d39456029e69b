//! Verdict wiring: matches the plan's waivers against the failed cases of a run, judges their
//! expiry, and has [`adaptest_reports::verdict::judge`] (the rules) decide every verdict.
//!
//! Pure: the date is an argument, so a verdict is reproducible and testable.

use crate::spec::plan::Waiver;
use adaptest_reports::{RunResults, Status, Verdict, WaiverRecord, WaiverStatus};

/// Record the plan's `waivers` in `results`, mark which one matched each failed or errored case
/// (an active one when there is one), and judge every verdict as of `today`.
pub fn apply(results: &mut RunResults, waivers: &[Waiver], today: jiff::civil::Date) {
    let mut records: Vec<WaiverRecord> = waivers
        .iter()
        .map(|w| WaiverRecord {
            case: w.case.clone(),
            target: w.target.clone(),
            component: w.component.clone(),
            reason: w.reason.clone(),
            owner: w.owner.clone(),
            expires: w.expires.to_string(),
            status: if w.is_expired(today) {
                WaiverStatus::Expired
            } else {
                WaiverStatus::Active
            },
            matched: 0,
        })
        .collect();
    for combination in &mut results.combinations {
        for case in &mut combination.cases {
            case.waiver = None;
            if !matches!(case.status, Status::Failed | Status::Error) {
                continue;
            }
            let matches = |w: &Waiver| {
                w.matches(
                    &combination.target,
                    &combination.component,
                    &combination.suite,
                    &case.id,
                )
            };
            let active = waivers
                .iter()
                .zip(&records)
                .position(|(w, r)| r.status == WaiverStatus::Active && matches(w));
            let chosen = active.or_else(|| waivers.iter().position(matches));
            if let Some(i) = chosen {
                records[i].matched += 1;
                case.waiver = Some(i as u32);
            }
        }
    }
    results.certification.waivers = records;
    adaptest_reports::verdict::judge(results, &today.to_string());
}

/// Today's date in the machine's time zone: what waiver expiry is judged against.
pub fn today() -> jiff::civil::Date {
    jiff::ZonedDateTime::now().date()
}

/// The verdict in both languages, for terminals: `certified with notes (基本兼容)`.
pub fn label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Certified => "certified (兼容)",
        Verdict::CertifiedWithNotes => "certified with notes (基本兼容)",
        Verdict::NotCertified => "not certified (不兼容)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adaptest_reports::{
        CaseResult, Certification, CombinationResult, Completion, HarnessInfo, Level, Product,
        RunInfo, RunResults, Summary, Verdict, WaiverStatus,
    };

    fn date(s: &str) -> jiff::civil::Date {
        s.parse().unwrap()
    }

    fn waiver(case: &str, target: Option<&str>, component: Option<&str>, expires: &str) -> Waiver {
        Waiver {
            case: case.into(),
            target: target.map(Into::into),
            component: component.map(Into::into),
            reason: "known".into(),
            owner: "qa@example.org".into(),
            expires: date(expires),
        }
    }

    fn case(id: &str, level: Level, status: Status) -> CaseResult {
        CaseResult {
            id: id.into(),
            title: id.into(),
            title_zh: String::new(),
            level,
            status,
            reason: None,
            attempts: 1,
            duration_ms: 1,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            log: None,
            tags: Vec::new(),
            metrics: Vec::new(),
            waiver: None,
            sql_records: None,
            leaked: Vec::new(),
        }
    }

    /// Targets `x86` and `arm`, component `db`, suite `db.sql` with cases `window` (mandatory,
    /// failed), `json` (mandatory, error), `ok` (passed) and `opt` (optional, failed).
    fn results() -> RunResults {
        let combination = |target: &str| CombinationResult {
            id: format!("{target}/db/db.sql"),
            target: target.into(),
            component: "db".into(),
            component_kind: "postgres".into(),
            suite: "db.sql".into(),
            suite_title: String::new(),
            suite_title_zh: String::new(),
            suite_version: String::new(),
            cases: vec![
                case("window", Level::Mandatory, Status::Failed),
                case("json", Level::Mandatory, Status::Error),
                case("ok", Level::Mandatory, Status::Passed),
                case("opt", Level::Optional, Status::Failed),
            ],
            duration_ms: 0,
            verdict: Verdict::fail_closed(),
        };
        let mut r = RunResults {
            schema_version: adaptest_reports::SCHEMA_VERSION,
            harness: HarnessInfo {
                name: "adaptest".into(),
                version: "0".into(),
            },
            run: RunInfo {
                id: "r".into(),
                started_at: String::new(),
                finished_at: String::new(),
                duration_ms: 0,
                completion: Completion::Complete,
                plan: String::new(),
            },
            product: Product::default(),
            environments: Default::default(),
            combinations: vec![combination("x86"), combination("arm")],
            summary: Summary::default(),
            certification: Certification::default(),
        };
        r.recount();
        r
    }

    fn marks(r: &RunResults) -> Vec<Option<u32>> {
        r.combinations
            .iter()
            .flat_map(|c| c.cases.iter().map(|k| k.waiver))
            .collect()
    }

    #[test]
    fn no_waiver_leaves_mandatory_failures_not_certified() {
        let mut r = results();
        apply(&mut r, &[], date("2026-06-01"));
        assert_eq!(r.certification.verdict, Verdict::NotCertified);
        assert_eq!(r.certification.basis.mandatory_failed, 4);
        assert_eq!(r.certification.judged_on, "2026-06-01");
    }

    #[test]
    fn waivers_cover_the_failures_they_name_until_their_last_day() {
        let waivers = [
            waiver("db.sql/window", None, None, "2026-06-01"),
            waiver("db.sql/j*", Some("x86"), Some("d?"), "2027-03-31"),
            waiver("db.sql/json", Some("arm"), None, "2026-05-31"),
        ];
        let mut r = results();
        apply(&mut r, &waivers, date("2026-06-01"));
        // window: waived everywhere (expires today: still valid); json: waived on x86, only
        // an expired waiver on arm; ok: passed, never marked; opt: no waiver names it.
        assert_eq!(
            marks(&r),
            [Some(0), Some(1), None, None, Some(0), Some(2), None, None]
        );
        let status: Vec<WaiverStatus> = r.certification.waivers.iter().map(|w| w.status).collect();
        assert_eq!(
            status,
            [
                WaiverStatus::Active,
                WaiverStatus::Active,
                WaiverStatus::Expired
            ]
        );
        let matched: Vec<u64> = r.certification.waivers.iter().map(|w| w.matched).collect();
        assert_eq!(matched, [2, 1, 1]);
        assert_eq!(r.combinations[0].verdict, Verdict::CertifiedWithNotes);
        assert_eq!(r.combinations[1].verdict, Verdict::NotCertified);
        assert_eq!(r.certification.verdict, Verdict::NotCertified);
        assert_eq!(r.certification.basis.expired_waiver, 1);

        // The next day the first waiver has expired too.
        let mut r = results();
        apply(&mut r, &waivers, date("2026-06-02"));
        assert_eq!(r.certification.waivers[0].status, WaiverStatus::Expired);
        assert_eq!(r.combinations[0].verdict, Verdict::NotCertified);
    }

    #[test]
    fn an_active_waiver_wins_over_an_expired_one_whatever_the_order() {
        let waivers = [
            waiver("db.sql/*", None, None, "2020-01-01"),
            waiver("*/json", Some("arm"), None, "2030-01-01"),
        ];
        let mut r = results();
        apply(&mut r, &waivers, date("2026-06-01"));
        // arm/json: both match, the active one (index 1) is recorded.
        assert_eq!(r.combinations[1].cases[1].waiver, Some(1));
        // Everything else failing matches only the expired one.
        assert_eq!(r.combinations[0].cases[0].waiver, Some(0));
        assert_eq!(
            r.combinations[1].verdict,
            Verdict::NotCertified,
            "arm/window"
        );
    }

    #[test]
    fn fully_waived_mandatory_failures_give_certified_with_notes() {
        let waivers = [waiver("db.sql/*", None, Some("db"), "2030-01-01")];
        let mut r = results();
        apply(&mut r, &waivers, date("2026-06-01"));
        assert_eq!(r.certification.verdict, Verdict::CertifiedWithNotes);
        assert_eq!(r.certification.basis.mandatory_waived, 4);
        assert_eq!(r.certification.basis.optional_failed, 2);
        // Applying again (a resume) starts from scratch rather than accumulating.
        apply(&mut r, &waivers, date("2026-06-01"));
        assert_eq!(r.certification.waivers[0].matched, 6);
    }
}
