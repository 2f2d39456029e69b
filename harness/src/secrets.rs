//! The secrets of a run (component passwords): which environment variables hold them, so that
//! case processes do not inherit them, and their values, so that every piece of evidence a
//! case produces (its reason, output excerpts, log, hence the journal, results, JUnit, reports
//! and bundle) shows `***` where a secret appeared.
//!
//! Architecture invariant: a case's outcome is redacted before it is written anywhere
//! (`engine::record`), so nothing downstream ever holds a resolved secret.

use crate::kinds::CaseOutcome;
use crate::spec::Plan;
use crate::spec::plan::SecretRef;

/// What a case must not see or show.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    /// `password_env` variables of the plan's components, removed from what case processes
    /// inherit (a case passes one on only by naming it in `pass_env`).
    env_names: Vec<String>,
    /// Resolved values, longest first (so a secret containing another is replaced whole).
    values: Vec<String>,
}

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

impl Secrets {
    /// The secrets `plan` refers to, resolved now (one that cannot be resolved is left out: the
    /// component using it fails to open, with the reason, and there is no value to leak).
    pub fn of_plan(plan: &Plan) -> Secrets {
        let mut s = Secrets::default();
        for c in &plan.components {
            let Some(r) = &c.password else { continue };
            if let SecretRef::Env { var, .. } = r
                && !s.env_names.contains(var)
            {
                s.env_names.push(var.clone());
            }
            if let Ok(v) = r.resolve() {
                s.add_value(v.expose());
            }
        }
        s
    }

    fn add_value(&mut self, v: &str) {
        if !v.is_empty() && !self.values.iter().any(|x| x == v) {
            self.values.push(v.to_string());
            self.values.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// The environment variables holding secrets, minus those a case asks for by name.
    pub fn scrubbed_vars(&self, pass: &[String]) -> Vec<String> {
        self.env_names
            .iter()
            .filter(|n| !pass.contains(n))
            .cloned()
            .collect()
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redact everything of an outcome that becomes evidence.
    pub fn redact_outcome(&self, o: &mut CaseOutcome) {
        if self.values.is_empty() {
            return;
        }
        o.reason = o.reason.as_deref().map(|r| self.redact(r));
        o.stdout = self.redact(&o.stdout);
        o.stderr = self.redact(&o.stderr);
        o.log = self.redact(&o.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_replaced_longest_first() {
        let mut s = Secrets::default();
        s.add_value("pw");
        s.add_value("pw-long");
        s.add_value("");
        assert_eq!(s.redact("a pw-long b pw c"), "a *** b *** c");
        let mut o = CaseOutcome::failed("wrong pw");
        o.stdout = "PG_PASSWORD=pw-long\n".into();
        s.redact_outcome(&mut o);
        assert_eq!(o.reason.as_deref(), Some("wrong ***"));
        assert_eq!(o.stdout, "PG_PASSWORD=***\n");
    }

    #[test]
    fn asked_for_variables_are_not_scrubbed() {
        let s = Secrets {
            env_names: vec!["A".into(), "B".into()],
            values: vec![],
        };
        assert_eq!(s.scrubbed_vars(&["B".into()]), vec!["A".to_string()]);
    }
}
