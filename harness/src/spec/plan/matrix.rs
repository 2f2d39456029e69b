//! `[[matrix]]` tables: glob patterns over targets × components × suites, `exclude` and
//! `include`, expanded into combinations in a deterministic order.

use super::raw::{MatrixSpec, TargetSpecRaw};
use super::{Combination, ComponentSpec, range_head, suite_applies};
use crate::spec::diag::{Source, SpecError};
use crate::spec::glob::glob_match;
use crate::spec::suite::Suite;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use toml::Spanned;

/// Expand every matrix, reporting patterns that match nothing and matrices that expand to no
/// combination. `targets` are all declared ones, also those whose fields are wrong.
pub(super) fn expand_matrix(
    source: &Source,
    targets: &[TargetSpecRaw],
    matrix: &[Spanned<MatrixSpec>],
    components: &[ComponentSpec],
    suites: &BTreeMap<String, Arc<Suite>>,
    errors: &mut Vec<SpecError>,
) -> Vec<Combination> {
    if matrix.is_empty() {
        errors.push(source.error(
            0..0,
            "matrix",
            "the plan has no [[matrix]]: nothing would run",
        ));
    }

    let mut combinations: Vec<Combination> = Vec::new();
    let mut seen = HashSet::new();
    for (mi, m) in matrix.iter().enumerate() {
        let m_span = m.span();
        let m = m.get_ref();
        let errors_before = errors.len();
        let pick =
            |pats: &[Spanned<String>], ids: &[String], what: &str, errors: &mut Vec<SpecError>| {
                let mut out = Vec::new();
                for p in pats {
                    let hits: Vec<&String> = ids
                        .iter()
                        .filter(|id| glob_match(p.get_ref(), id))
                        .collect();
                    if hits.is_empty() {
                        errors.push(
                            source
                                .error(
                                    p.span(),
                                    &format!("matrix[{mi}].{what}s"),
                                    format!("`{}` matches no {what}", p.get_ref()),
                                )
                                .with_help(format!("known {what}s: {}", ids.join(", "))),
                        );
                    }
                    for h in hits {
                        if !out.contains(h) {
                            out.push(h.clone());
                        }
                    }
                }
                out
            };
        // Every declared target, also one whose fields are wrong (its errors are reported).
        let tids: Vec<String> = targets.iter().map(|t| t.id.get_ref().clone()).collect();
        let cids: Vec<String> = components.iter().map(|c| c.id.clone()).collect();
        let sids: Vec<String> = suites.keys().cloned().collect();
        let ts = pick(&m.targets, &tids, "target", errors);
        let cs = pick(&m.components, &cids, "component", errors);
        let ss = pick(&m.suites, &sids, "suite", errors);
        let make = |t: &str, c: &str, s: &str| -> Option<Combination> {
            let comp = components.iter().find(|x| x.id == c)?;
            let suite = suites.get(s)?;
            Some(Combination {
                id: format!("{t}/{c}/{s}"),
                target: t.to_string(),
                component: c.to_string(),
                component_kind: comp.kind.clone(),
                suite: suite.clone(),
            })
        };
        let mut added = 0usize;
        for t in &ts {
            for c in &cs {
                for s in &ss {
                    let Some(combo) = make(t, c, s) else { continue };
                    if !suite_applies(&combo.suite.component, &combo.component_kind) {
                        continue;
                    }
                    if m.exclude.iter().any(|x| x.get_ref().matches(&combo)) {
                        continue;
                    }
                    added += 1;
                    if seen.insert(combo.id.clone()) {
                        combinations.push(combo);
                    }
                }
            }
        }
        for (ii, inc) in m.include.iter().enumerate() {
            let sel = inc.get_ref();
            let before = added;
            for t in &tids {
                for c in &cids {
                    for s in &sids {
                        let Some(combo) = make(t, c, s) else { continue };
                        let explicit =
                            sel.target.is_some() && sel.component.is_some() && sel.suite.is_some();
                        if !explicit || !sel.matches(&combo) {
                            continue;
                        }
                        added += 1;
                        if seen.insert(combo.id.clone()) {
                            combinations.push(combo);
                        }
                    }
                }
            }
            if added == before {
                errors.push(
                    source
                        .error(inc.span(), &format!("matrix[{mi}].include[{ii}]"), "matches no target × component × suite")
                        .with_help("an include names `target`, `component` and `suite` (glob patterns allowed)"),
                );
            }
        }
        // Also when a list is empty (`targets = []`): nothing from this matrix would run.
        if added == 0 && errors.len() == errors_before {
            let empty: Vec<&str> = [
                ("targets", m.targets.is_empty()),
                ("components", m.components.is_empty()),
                ("suites", m.suites.is_empty()),
            ]
            .into_iter()
            .filter_map(|(f, e)| e.then_some(f))
            .collect();
            let message = if empty.is_empty() {
                "expands to no combination".to_string()
            } else {
                format!(
                    "expands to no combination: `{}` is empty",
                    empty.join("`, `")
                )
            };
            errors.push(
                source
                    .error(range_head(&m_span), &format!("matrix[{mi}]"), message)
                    .with_help("a suite pairs only with components of the kind it exercises (`[suite] component`), and `exclude` removes pairs"),
            );
        }
    }
    combinations
}
