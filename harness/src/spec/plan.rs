//! Plan files: product, targets, components and the matrix; expansion into combinations.

use super::diag::{Source, SpecError, SpecErrors, from_toml_error};
use super::glob::glob_match;
use super::suite::Suite;
use adaptest_reports::Product;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    product: ProductSpec,
    #[serde(default, rename = "target")]
    targets: Vec<TargetSpecRaw>,
    #[serde(default, rename = "component")]
    components: Vec<ComponentSpecRaw>,
    #[serde(default)]
    matrix: Vec<Spanned<MatrixSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    vendor: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpecRaw {
    id: Spanned<String>,
    kind: Spanned<String>,
    /// How many combinations may run on this target at once.
    slots: Option<Spanned<u32>>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentSpecRaw {
    id: Spanned<String>,
    kind: Spanned<String>,
    /// The version the vendor declares (the adapter may also detect one).
    version: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixSpec {
    targets: Vec<Spanned<String>>,
    components: Vec<Spanned<String>>,
    suites: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<Selector>>,
    #[serde(default)]
    include: Vec<Spanned<Selector>>,
}

/// Glob patterns selecting combinations; an absent field matches everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selector {
    target: Option<String>,
    component: Option<String>,
    suite: Option<String>,
}

impl Selector {
    fn matches(&self, c: &Combination) -> bool {
        self.target
            .as_deref()
            .is_none_or(|p| glob_match(p, &c.target))
            && self
                .component
                .as_deref()
                .is_none_or(|p| glob_match(p, &c.component))
            && self
                .suite
                .as_deref()
                .is_none_or(|p| glob_match(p, &c.suite.id))
    }
}

/// A target as the plan declares it.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub id: String,
    pub kind: String,
    pub slots: Option<u32>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct ComponentSpec {
    pub id: String,
    pub kind: String,
    pub version: Option<String>,
    pub description: String,
}

/// One unit of scheduling: a suite run for a target × component pair.
#[derive(Debug, Clone)]
pub struct Combination {
    /// `target/component/suite`.
    pub id: String,
    pub target: String,
    pub component: String,
    pub component_kind: String,
    pub suite: Arc<Suite>,
}

/// A validated plan with its matrix expanded, in a deterministic order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub product: Product,
    pub targets: Vec<TargetSpec>,
    pub components: Vec<ComponentSpec>,
    pub combinations: Vec<Combination>,
}

impl Plan {
    pub fn target(&self, id: &str) -> Option<&TargetSpec> {
        self.targets.iter().find(|t| t.id == id)
    }

    pub fn component(&self, id: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.id == id)
    }
}

/// Does a suite written for `suite_component` apply to a component of kind `kind`?
pub fn suite_applies(suite_component: &str, kind: &str) -> bool {
    suite_component == kind
        || adaptest_adapters::component::component_kind(kind)
            .is_some_and(|k| k.capabilities.contains(&suite_component))
}

fn check_id(source: &Source, id: &Spanned<String>, field: &str, errors: &mut Vec<SpecError>) {
    let s = id.get_ref();
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        errors.push(source.error(
            id.span(),
            field,
            format!("`{s}` is not a valid id (letters, digits, `.`, `_`, `-`)"),
        ));
    }
}

/// Parse, validate and expand a plan against the available suites.
pub fn parse_plan(
    source: Source,
    suites: &BTreeMap<String, Arc<Suite>>,
) -> Result<Plan, SpecErrors> {
    let file: PlanFile = toml::from_str(&source.text).map_err(|e| from_toml_error(&source, &e))?;
    let mut errors = Vec::new();

    let mut targets = Vec::new();
    let mut target_ids = HashSet::new();
    for (i, t) in file.targets.iter().enumerate() {
        check_id(&source, &t.id, &format!("target[{i}].id"), &mut errors);
        if !target_ids.insert(t.id.get_ref().clone()) {
            errors.push(source.error(
                t.id.span(),
                &format!("target[{i}].id"),
                format!("duplicate target id `{}`", t.id.get_ref()),
            ));
        }
        let kind = t.kind.get_ref();
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
        targets.push(TargetSpec {
            id: t.id.get_ref().clone(),
            kind: kind.clone(),
            slots: t.slots.as_ref().map(|s| *s.get_ref()),
            description: t.description.clone(),
        });
    }

    let mut components = Vec::new();
    let mut component_ids = HashSet::new();
    for (i, c) in file.components.iter().enumerate() {
        check_id(&source, &c.id, &format!("component[{i}].id"), &mut errors);
        if !component_ids.insert(c.id.get_ref().clone()) {
            errors.push(source.error(
                c.id.span(),
                &format!("component[{i}].id"),
                format!("duplicate component id `{}`", c.id.get_ref()),
            ));
        }
        let kind = c.kind.get_ref();
        if adaptest_adapters::component::component_kind(kind).is_none() {
            errors.push(
                source
                    .error(
                        c.kind.span(),
                        &format!("component[{i}].kind"),
                        format!("unknown component kind `{kind}`"),
                    )
                    .with_help(super::known_components_help()),
            );
        }
        components.push(ComponentSpec {
            id: c.id.get_ref().clone(),
            kind: kind.clone(),
            version: c.version.clone(),
            description: c.description.clone(),
        });
    }
    // The target's operating system is always available as component `os`.
    if !component_ids.contains("os") {
        components.push(ComponentSpec {
            id: "os".into(),
            kind: "os".into(),
            version: None,
            description: "the target's operating system".into(),
        });
    }

    if file.matrix.is_empty() {
        errors.push(source.error(
            0..0,
            "matrix",
            "the plan has no [[matrix]]: nothing would run",
        ));
    }

    let mut combinations: Vec<Combination> = Vec::new();
    let mut seen = HashSet::new();
    for (mi, m) in file.matrix.iter().enumerate() {
        let m_span = m.span();
        let m = m.get_ref();
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
        let tids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        let cids: Vec<String> = components.iter().map(|c| c.id.clone()).collect();
        let sids: Vec<String> = suites.keys().cloned().collect();
        let ts = pick(&m.targets, &tids, "target", &mut errors);
        let cs = pick(&m.components, &cids, "component", &mut errors);
        let ss = pick(&m.suites, &sids, "suite", &mut errors);
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
        if added == 0 && !ts.is_empty() && !cs.is_empty() && !ss.is_empty() {
            errors.push(
                source
                    .error(range_head(&m_span), &format!("matrix[{mi}]"), "expands to no combination")
                    .with_help("a suite pairs only with components of the kind it exercises (`[suite] component`), and `exclude` removes pairs"),
            );
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors { errors });
    }
    Ok(Plan {
        source,
        product: Product {
            name: file.product.name,
            version: file.product.version,
            vendor: file.product.vendor,
        },
        targets,
        components,
        combinations,
    })
}

fn range_head(r: &Range<usize>) -> Range<usize> {
    r.start..(r.start + 1).min(r.end.max(r.start + 1))
}
