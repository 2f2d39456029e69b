//! The certification rules: from case levels, outcomes and waivers to a verdict per combination,
//! per target × component pair and overall.
//!
//! | a case that is …                                   | makes its combination at best … |
//! | -------------------------------------------------- | ------------------------------- |
//! | passed, flaky (passed on a retry), skipped (n/a)   | certified                       |
//! | optional and failed or errored (waived or not)     | certified with notes            |
//! | mandatory, failed or errored, an active waiver     | certified with notes            |
//! | not run (fail-fast, interrupted), any level        | certified with notes            |
//! | mandatory, failed or errored, no active waiver     | not certified                   |
//!
//! A group's verdict is the worst of its members' (a combination with no case is certified); the
//! overall verdict is also never better than certified with notes when the run is incomplete,
//! and it is not certified when no mandatory case ran at all (every one skipped, not run, or
//! none planned): nothing certifies from nothing.
//! Which waiver matches which case is decided by the harness, which knows the plan; this module
//! only reads [`CaseResult::waiver`] and the waivers' [`WaiverStatus`].

use crate::schema::{
    CaseResult, Completion, Level, PairVerdict, RunResults, Status, Verdict, VerdictBasis,
    WaiverRecord, WaiverStatus,
};

/// Is `case` covered by an active waiver?
pub fn is_waived(case: &CaseResult, waivers: &[WaiverRecord]) -> bool {
    waiver_of(case, waivers).is_some_and(|w| w.status == WaiverStatus::Active)
}

/// The waiver that matched `case`, if any (active or expired).
pub fn waiver_of<'w>(case: &CaseResult, waivers: &'w [WaiverRecord]) -> Option<&'w WaiverRecord> {
    case.waiver.and_then(|i| waivers.get(i as usize))
}

/// The best verdict a combination holding this case can get.
pub fn case_verdict(level: Level, status: Status, waived: bool) -> Verdict {
    match status {
        Status::Passed | Status::Flaky | Status::Skipped => Verdict::Certified,
        Status::NotRun => Verdict::CertifiedWithNotes,
        Status::Failed | Status::Error => match (level, waived) {
            (Level::Mandatory, false) => Verdict::NotCertified,
            _ => Verdict::CertifiedWithNotes,
        },
    }
}

/// Compute every verdict of `results` from its cases and `results.certification.waivers` (which
/// the caller has filled, with each failed case's [`CaseResult::waiver`]), as of `judged_on`
/// (`YYYY-MM-DD`, recorded). Replaces any verdict already there.
pub fn judge(results: &mut RunResults, judged_on: &str) {
    let waivers = std::mem::take(&mut results.certification.waivers);
    let mut basis = VerdictBasis {
        complete: results.run.completion == Completion::Complete,
        ..VerdictBasis::default()
    };
    let mut pairs: Vec<PairVerdict> = Vec::new();
    for combination in &mut results.combinations {
        let mut verdict = Verdict::Certified;
        for case in &combination.cases {
            let waived = is_waived(case, &waivers);
            verdict = verdict.max(case_verdict(case.level, case.status, waived));
            if case.level == Level::Mandatory
                && matches!(
                    case.status,
                    Status::Passed | Status::Flaky | Status::Failed | Status::Error
                )
            {
                basis.mandatory_executed += 1;
            }
            match case.status {
                Status::Failed | Status::Error => {
                    match (case.level, waived) {
                        (Level::Mandatory, false) => basis.mandatory_failed += 1,
                        (Level::Mandatory, true) => basis.mandatory_waived += 1,
                        (Level::Optional, _) => basis.optional_failed += 1,
                    }
                    if waiver_of(case, &waivers).is_some() && !waived {
                        basis.expired_waiver += 1;
                    }
                }
                Status::NotRun => basis.not_run += 1,
                _ => {}
            }
        }
        combination.verdict = verdict;
        match pairs
            .iter_mut()
            .find(|p| p.target == combination.target && p.component == combination.component)
        {
            Some(pair) => pair.verdict = pair.verdict.max(verdict),
            None => pairs.push(PairVerdict {
                target: combination.target.clone(),
                component: combination.component.clone(),
                verdict,
            }),
        }
    }
    let mut overall = pairs
        .iter()
        .map(|p| p.verdict)
        .max()
        .unwrap_or(Verdict::Certified);
    if !basis.complete {
        overall = overall.max(Verdict::CertifiedWithNotes);
    }
    if basis.mandatory_executed == 0 {
        overall = Verdict::NotCertified;
    }
    let certification = &mut results.certification;
    certification.verdict = overall;
    certification.judged_on = judged_on.to_owned();
    certification.basis = basis;
    certification.pairs = pairs;
    certification.waivers = waivers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_order_from_best_to_worst() {
        assert!(Verdict::Certified < Verdict::CertifiedWithNotes);
        assert!(Verdict::CertifiedWithNotes < Verdict::NotCertified);
        assert_eq!(Verdict::fail_closed(), Verdict::NotCertified);
    }
}
