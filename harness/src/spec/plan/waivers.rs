//! `[[waiver]]` tables: known failures accepted until a date, each naming a case of the plan.

use super::raw::WaiverSpecRaw;
use super::{Combination, Waiver, range_head};
use crate::spec::diag::{Source, SpecError};
use crate::spec::glob::glob_match;
use toml::Spanned;

/// Validate the `[[waiver]]` tables: every field present and well-formed, and each waiver
/// naming at least one case of the expanded plan (a typo would silently waive nothing).
pub(super) fn parse_waivers(
    source: &Source,
    raw: &[Spanned<WaiverSpecRaw>],
    combinations: &[Combination],
    errors: &mut Vec<SpecError>,
) -> Vec<Waiver> {
    let mut waivers = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let head = range_head(&w.span());
        let w = w.get_ref();
        let before = errors.len();
        let mut text = |value: &Option<Spanned<String>>, name: &str, help: &str| -> String {
            match value {
                None => {
                    errors.push(
                        source
                            .error(
                                head.clone(),
                                &format!("waiver[{i}].{name}"),
                                format!("missing field `{name}`"),
                            )
                            .with_help(help.to_owned()),
                    );
                    String::new()
                }
                Some(v) if v.get_ref().trim().is_empty() => {
                    errors.push(
                        source
                            .error(
                                v.span(),
                                &format!("waiver[{i}].{name}"),
                                format!("`{name}` is empty"),
                            )
                            .with_help(help.to_owned()),
                    );
                    String::new()
                }
                Some(v) => v.get_ref().trim().to_owned(),
            }
        };
        let case = text(
            &w.case,
            "case",
            "the cases waived, as `suite-id/case-id` (glob patterns allowed): `db.sql-core/window-*`",
        );
        let reason = text(
            &w.reason,
            "reason",
            "why the failure is accepted, for the report",
        );
        let owner = text(
            &w.owner,
            "owner",
            "who answers for the waiver (a person or a mailbox)",
        );
        if let Some(c) = &w.case
            && !case.is_empty()
            && !case.contains('/')
        {
            errors.push(
                source
                    .error(
                        c.span(),
                        &format!("waiver[{i}].case"),
                        format!("`{case}` does not name a suite and a case"),
                    )
                    .with_help(format!(
                        "write `suite-id/case-id`, e.g. `{case}/*` for every case of a suite"
                    )),
            );
        }
        let expires = match &w.expires {
            None => {
                errors.push(
                    source
                        .error(
                            head.clone(),
                            &format!("waiver[{i}].expires"),
                            "missing field `expires`",
                        )
                        .with_help("the last day the waiver applies: `expires = 2027-03-31`"),
                );
                None
            }
            Some(v) => match parse_expiry(v.get_ref()) {
                Ok(d) => Some(d),
                Err(message) => {
                    errors.push(
                        source
                            .error(v.span(), &format!("waiver[{i}].expires"), message)
                            .with_help("a calendar date: `expires = 2027-03-31` or `expires = \"2027-03-31\"`"),
                    );
                    None
                }
            },
        };
        let target = w.target.as_ref().map(|t| t.get_ref().clone());
        let component = w.component.as_ref().map(|c| c.get_ref().clone());
        let mut scope_ok = true;
        for (value, what) in [(&w.target, "target"), (&w.component, "component")] {
            let Some(v) = value else { continue };
            let known = combinations.iter().any(|c| {
                let id = if what == "target" {
                    &c.target
                } else {
                    &c.component
                };
                glob_match(v.get_ref(), id)
            });
            if !known {
                scope_ok = false;
                errors.push(source.error(
                    v.span(),
                    &format!("waiver[{i}].{what}"),
                    format!(
                        "`{}` matches no {what} of the plan's combinations",
                        v.get_ref()
                    ),
                ));
            }
        }
        // Whether it names a case at all (worth saying only when its scope is right).
        let case_ok = w.case.is_some() && case.contains('/') && scope_ok;
        let matches_a_case = |expires| {
            let waiver = Waiver {
                case: case.clone(),
                target: target.clone(),
                component: component.clone(),
                reason: reason.clone(),
                owner: owner.clone(),
                expires,
            };
            let hit = combinations.iter().any(|c| {
                c.suite
                    .cases
                    .iter()
                    .any(|k| waiver.matches(&c.target, &c.component, &c.suite.id, &k.id))
            });
            (hit, waiver)
        };
        if case_ok {
            let (hit, _) = matches_a_case(jiff::civil::Date::MAX);
            if !hit {
                let span = w.case.as_ref().map_or(head.clone(), |c| c.span());
                errors.push(
                    source
                        .error(span, &format!("waiver[{i}].case"), format!("`{case}` matches no case of the plan"))
                        .with_help("`adaptest plan show` lists the combinations and `adaptest list --cases` the case ids"),
                );
            }
        }
        let (Some(expires), true) = (expires, errors.len() == before) else {
            continue;
        };
        let (_, waiver) = matches_a_case(expires);
        waivers.push(waiver);
    }
    waivers
}

/// The last day of a waiver from a TOML date or a string holding one.
fn parse_expiry(value: &toml::Value) -> Result<jiff::civil::Date, String> {
    let text = match value {
        toml::Value::Datetime(dt) if dt.date.is_some() && dt.time.is_none() => dt.to_string(),
        toml::Value::Datetime(dt) => {
            return Err(format!(
                "`{dt}` is not a date: a waiver expires at the end of a day"
            ));
        }
        toml::Value::String(s) => s.trim().to_owned(),
        other => return Err(format!("expected a date, found a {}", other.type_str())),
    };
    text.parse::<jiff::civil::Date>()
        .map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}
