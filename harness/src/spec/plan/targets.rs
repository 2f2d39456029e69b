//! `[[target]]` tables: ids, kinds, the adapter's own field checks, slots and timeout factors.

use super::raw::TargetSpecRaw;
use super::{TargetSpec, check_id};
use crate::spec::diag::{Source, SpecError};
use adaptest_adapters::target::TargetConfig;
use std::collections::HashSet;
use std::path::Path;

/// Validate the declared targets; a target whose fields are wrong gets its errors and is left
/// out of the result.
pub(super) fn parse_targets(
    source: &Source,
    base: &Path,
    raw: &[TargetSpecRaw],
    errors: &mut Vec<SpecError>,
) -> Vec<TargetSpec> {
    let mut targets = Vec::new();
    let mut target_ids = HashSet::new();
    for (i, t) in raw.iter().enumerate() {
        check_id(source, &t.id, &format!("target[{i}].id"), errors);
        if !target_ids.insert(t.id.get_ref().clone()) {
            errors.push(source.error(
                t.id.span(),
                &format!("target[{i}].id"),
                format!("duplicate target id `{}`", t.id.get_ref()),
            ));
        }
        let kind = t.kind.get_ref();
        let fields = t.to_fields(base, errors, source, i);
        let mut config: Option<TargetConfig> = None;
        if !adaptest_adapters::target::KNOWN_TARGET_KINDS.contains(&kind.as_str()) {
            errors.push(
                source
                    .error(
                        t.kind.span(),
                        &format!("target[{i}].kind"),
                        format!("unknown or unsupported target kind `{kind}`"),
                    )
                    .with_help(format!(
                        "this build supports: {}",
                        adaptest_adapters::target::KNOWN_TARGET_KINDS.join(", ")
                    )),
            );
        } else {
            match adaptest_adapters::target::parse(&fields) {
                Ok(c) => config = Some(c),
                Err(problems) => {
                    for (field, message) in problems {
                        errors.push(source.error(
                            t.span_of(field),
                            &format!("target[{i}].{field}"),
                            message,
                        ));
                    }
                }
            }
        }
        if let Some(s) = &t.slots
            && *s.get_ref() == 0
        {
            errors.push(source.error(
                s.span(),
                &format!("target[{i}].slots"),
                "slots must be at least 1",
            ));
        }
        if let Some(f) = &t.timeout_factor
            && !(f.get_ref().is_finite() && *f.get_ref() > 0.0 && *f.get_ref() <= 100.0)
        {
            errors.push(source.error(
                f.span(),
                &format!("target[{i}].timeout_factor"),
                "timeout_factor must be a number above 0 and at most 100",
            ));
        }
        // A target whose fields are wrong has its errors above; the plan is not returned then.
        if let Some(config) = config {
            targets.push(TargetSpec {
                id: t.id.get_ref().clone(),
                kind: kind.clone(),
                slots: t.slots.as_ref().map(|s| *s.get_ref()),
                timeout_factor: t.timeout_factor.as_ref().map(|f| *f.get_ref()),
                description: t.description.clone(),
                config,
            });
        }
    }
    targets
}
