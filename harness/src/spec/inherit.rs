//! The center's inheritance rules file (`adaptest inherit --rules FILE`): which platforms a
//! certification covers. Errors name the file, line and field.
//!
//! ```toml
//! [[rule]]
//! id = "server"
//! title = "same board and CPU generation"
//! same = ["arch", "board", "cpu_generation", "os_lineage", "os_major"]
//!
//! [[rule]]
//! id = "nic"
//! same = ["pci"]
//! pci_classes = ["02"]
//! ```

use super::diag::{Source, SpecError, SpecErrors, from_toml_error};
use adaptest_reports::inherit::{Fact, Rule};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rule: Vec<Spanned<RuleSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: Spanned<String>,
    #[serde(default)]
    title: String,
    same: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pci_classes: Vec<Spanned<String>>,
}

/// Parse a rules file; every problem is reported.
pub fn parse_rules(source: &Source) -> Result<Vec<Rule>, SpecErrors> {
    let file: RulesFile = toml::from_str(&source.text).map_err(|e| from_toml_error(source, &e))?;
    let mut errors: Vec<SpecError> = Vec::new();
    let mut rules = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in file.rule.iter().enumerate() {
        let r = r.get_ref();
        let id = r.id.get_ref();
        if id.is_empty() || !seen.insert(id.clone()) {
            errors.push(source.error(
                r.id.span(),
                &format!("rule[{i}].id"),
                format!("rule id `{id}` is empty or used twice"),
            ));
        }
        let mut same = Vec::new();
        for f in r.same.get_ref() {
            match Fact::ALL.iter().find(|(n, _)| n == f.get_ref()) {
                Some((_, fact)) => same.push(*fact),
                None => errors.push(
                    source
                        .error(
                            f.span(),
                            &format!("rule[{i}].same"),
                            format!("unknown fact `{}`", f.get_ref()),
                        )
                        .with_help(format!("facts: {}", Fact::ALL.map(|(n, _)| n).join(", "))),
                ),
            }
        }
        if r.same.get_ref().is_empty() {
            errors.push(source.error(
                r.same.span(),
                &format!("rule[{i}].same"),
                "a rule must name at least one fact (an empty rule would cover every platform)",
            ));
        }
        for c in &r.pci_classes {
            let c = c.get_ref();
            if c.is_empty() || c.len() > 6 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
                errors.push(
                    source.error(
                        r.pci_classes
                            .iter()
                            .find(|x| x.get_ref() == c)
                            .map_or(0..0, |x| x.span()),
                        &format!("rule[{i}].pci_classes"),
                        format!("`{c}` is not a PCI class prefix (1 to 6 hex digits, e.g. `02`)"),
                    ),
                );
            }
        }
        rules.push(Rule {
            id: id.clone(),
            title: r.title.clone(),
            same,
            pci_classes: r
                .pci_classes
                .iter()
                .map(|c| c.get_ref().to_ascii_lowercase())
                .collect(),
        });
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(SpecErrors { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_names_line_and_field_of_errors() {
        let ok = Source::new(
            "rules.toml",
            "[[rule]]\nid = \"nic\"\nsame = [\"pci\"]\npci_classes = [\"02\"]\n",
        );
        let rules = parse_rules(&ok).expect("parses");
        assert_eq!(rules[0].same, vec![Fact::Pci]);
        let bad = Source::new(
            "rules.toml",
            "[[rule]]\nid = \"s\"\nsame = [\"board\",\n  \"cpu_gen\"]\n",
        );
        let e = parse_rules(&bad).unwrap_err();
        let e = &e.errors[0];
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("rules.toml", 4, "rule[0].same")
        );
        assert!(e.message.contains("cpu_gen"), "{}", e.message);
        let typo = Source::new(
            "r.toml",
            "[[rule]]\nid = \"s\"\nsame = [\"arch\"]\nsmae = 1\n",
        );
        let e = parse_rules(&typo).unwrap_err();
        assert_eq!(e.errors[0].line, 4, "{:?}", e.errors[0].message);
    }
}
