//! Verdict inheritance: which other platforms a certification covers. A [`Rule`] names the facts
//! ([`Fact`]) a platform must share with a certified one; a platform is covered when every fact
//! of some rule matches. Pure: the rules come parsed (the harness reads the center file), the
//! environments come from results.json and `env/<target>.json`.

use adaptest_schema::Environment;
use serde::Serialize;
use std::collections::BTreeSet;

/// A fact two platforms are compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    /// `uname -m`.
    Arch,
    /// DMI board vendor + board name.
    Board,
    /// CPU vendor + microarchitecture (or family/model when the name is unknown).
    CpuGeneration,
    /// os-release `ID` and `ID_LIKE` share a name.
    OsLineage,
    /// The first component of `VERSION_ID`.
    OsMajor,
    /// The PCI four-tuples (of the rule's classes) of the certified platform are all present.
    Pci,
}

impl Fact {
    pub const ALL: [(&'static str, Fact); 6] = [
        ("arch", Fact::Arch),
        ("board", Fact::Board),
        ("cpu_generation", Fact::CpuGeneration),
        ("os_lineage", Fact::OsLineage),
        ("os_major", Fact::OsMajor),
        ("pci", Fact::Pci),
    ];

    pub fn name(self) -> &'static str {
        Fact::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }
}

/// One inheritance rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub same: Vec<Fact>,
    /// For [`Fact::Pci`]: class-code prefixes (`02` network, `0108` NVMe); empty: every class
    /// except bridges (`06`).
    pub pci_classes: Vec<String>,
}

/// The rules used when no center file is given: a server keeps its verdict on the same board,
/// CPU generation, architecture, OS lineage and major version.
pub fn default_rules() -> Vec<Rule> {
    vec![Rule {
        id: "server".into(),
        title: "same board, CPU generation, architecture, OS lineage and major version".into(),
        same: vec![
            Fact::Arch,
            Fact::Board,
            Fact::CpuGeneration,
            Fact::OsLineage,
            Fact::OsMajor,
        ],
        pci_classes: Vec::new(),
    }]
}

/// A fact's value on one platform: `Err(why)` when it is not known.
fn value(env: &Environment, fact: Fact, rule: &Rule) -> Result<String, String> {
    let hw = env.hardware.as_ref();
    let known = |v: String, what: &str| {
        if v.trim().is_empty() {
            Err(format!("{what} not known"))
        } else {
            Ok(v)
        }
    };
    match fact {
        Fact::Arch => known(env.arch.clone(), "architecture"),
        Fact::Board => {
            let Some(hw) = hw else {
                return Err("no hardware identity (older probe)".into());
            };
            let get = |k: &str| hw.dmi.get(k).cloned().unwrap_or_default();
            let (v, n) = (get("board_vendor"), get("board_name"));
            if n.is_empty() {
                let why = hw
                    .missing
                    .get("dmi.board_name")
                    .or_else(|| hw.missing.get("dmi"))
                    .map_or("not known".to_owned(), Clone::clone);
                return Err(format!("board {why}"));
            }
            Ok(format!("{v} {n}").trim().to_owned())
        }
        Fact::CpuGeneration => {
            let Some(hw) = hw else {
                return Err("no hardware identity (older probe)".into());
            };
            let c = &hw.cpu;
            if c.microarch.is_empty() || c.microarch.starts_with("emulated") {
                return Err(format!("CPU generation not known ({})", c.microarch));
            }
            if c.microarch.starts_with("unknown") {
                Ok(format!(
                    "{} family {} model {}",
                    c.vendor, c.family, c.model
                ))
            } else {
                Ok(format!("{} {}", c.vendor, c.microarch))
            }
        }
        Fact::OsLineage => {
            let l = lineage(env);
            if l.is_empty() {
                Err("OS ID not known".into())
            } else {
                Ok(l.into_iter().collect::<Vec<_>>().join(" "))
            }
        }
        Fact::OsMajor => known(
            env.os_version
                .split(['.', '-', ' '])
                .next()
                .unwrap_or("")
                .to_owned(),
            "OS version",
        ),
        Fact::Pci => {
            let Some(hw) = hw else {
                return Err("no hardware identity (older probe)".into());
            };
            let set = pci_set(env, rule);
            if set.is_empty() {
                return Err(hw
                    .missing
                    .get("pci")
                    .map_or("no PCI device of the rule's classes".to_owned(), |r| {
                        format!("PCI {r}")
                    }));
            }
            Ok(set.into_iter().collect::<Vec<_>>().join(" "))
        }
    }
}

fn lineage(env: &Environment) -> BTreeSet<String> {
    std::iter::once(env.os_id.as_str())
        .chain(
            env.extra
                .get("os_id_like")
                .map_or("", String::as_str)
                .split_whitespace(),
        )
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn pci_set(env: &Environment, rule: &Rule) -> BTreeSet<String> {
    env.hardware.as_ref().map_or_else(BTreeSet::new, |hw| {
        hw.pci
            .iter()
            .filter(|d| {
                if rule.pci_classes.is_empty() {
                    !d.class.starts_with("06")
                } else {
                    rule.pci_classes
                        .iter()
                        .any(|c| d.class.starts_with(c.as_str()))
                }
            })
            .map(|d| d.four_tuple())
            .collect()
    })
}

/// Why `candidate` does not meet `rule` against `certified`; `None` when it does.
pub fn check_rule(rule: &Rule, certified: &Environment, candidate: &Environment) -> Option<String> {
    for &fact in &rule.same {
        let a = match value(certified, fact, rule) {
            Ok(v) => v,
            Err(why) => return Some(format!("{}: on the certified platform, {why}", fact.name())),
        };
        let b = match value(candidate, fact, rule) {
            Ok(v) => v,
            Err(why) => return Some(format!("{}: on the new platform, {why}", fact.name())),
        };
        let same = match fact {
            Fact::OsLineage => !lineage(certified).is_disjoint(&lineage(candidate)),
            Fact::Pci => pci_set(certified, rule).is_subset(&pci_set(candidate, rule)),
            _ => a == b,
        };
        if !same {
            return Some(format!(
                "{} differs: certified `{a}`, new `{b}`",
                fact.name()
            ));
        }
    }
    None
}

/// The decision on one candidate platform.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// `(certified target, rule id)` that admits the platform.
    pub covered_by: Option<(String, String)>,
    /// Every `(certified target, rule id, why not)` tried, when none admits it.
    pub failures: Vec<(String, String, String)>,
}

/// Whether `candidate` inherits the verdict of any of `certified`.
pub fn decide(rules: &[Rule], certified: &[&Environment], candidate: &Environment) -> Decision {
    let mut failures = Vec::new();
    for env in certified {
        for rule in rules {
            match check_rule(rule, env, candidate) {
                None => {
                    return Decision {
                        covered_by: Some((env.target.clone(), rule.id.clone())),
                        failures: Vec::new(),
                    };
                }
                Some(why) => failures.push((env.target.clone(), rule.id.clone(), why)),
            }
        }
    }
    Decision {
        covered_by: None,
        failures,
    }
}

/// The platform class a rule admits around a certified platform, in words
/// (`board "Huawei BC82AMDDA", cpu_generation "HiSilicon TaiShan v110"`), or why it admits none.
pub fn covered_class(rule: &Rule, certified: &Environment) -> Result<String, String> {
    rule.same
        .iter()
        .map(|&f| value(certified, f, rule).map(|v| format!("{} `{v}`", f.name())))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use adaptest_schema::{CpuIdentity, Hardware, PciDevice};

    fn server() -> Environment {
        let mut hw = Hardware {
            cpu: CpuIdentity {
                vendor: "HiSilicon".into(),
                family: "0x48".into(),
                model: "0xd01".into(),
                stepping: "0x1/0".into(),
                microarch: "TaiShan v110 (Kunpeng 920)".into(),
            },
            ..Hardware::default()
        };
        hw.dmi.insert("board_vendor".into(), "Huawei".into());
        hw.dmi.insert("board_name".into(), "BC82AMDDA".into());
        hw.pci.push(PciDevice {
            address: "0000:7d:00.0".into(),
            vendor: "19e5".into(),
            device: "a222".into(),
            subvendor: "19e5".into(),
            subdevice: "00a1".into(),
            class: "020000".into(),
            driver: "hns3".into(),
        });
        Environment {
            target: "kp".into(),
            arch: "aarch64".into(),
            os_id: "openEuler".into(),
            os_version: "22.03".into(),
            hostname: "a".into(),
            hardware: Some(hw),
            ..Environment::default()
        }
    }

    #[test]
    fn same_platform_other_host_is_covered_other_cpu_is_not() {
        let a = server();
        let mut b = server();
        b.hostname = "b".into();
        b.os_version = "22.09".into();
        let d = decide(&default_rules(), &[&a], &b);
        assert_eq!(d.covered_by, Some(("kp".into(), "server".into())));
        let mut c = server();
        c.hardware.as_mut().unwrap().cpu.microarch = "unknown (implementer 0x48 part 0xd02)".into();
        c.hardware.as_mut().unwrap().cpu.model = "0xd02".into();
        let d = decide(&default_rules(), &[&a], &c);
        assert!(d.covered_by.is_none());
        assert_eq!(d.failures.len(), 1);
        assert!(
            d.failures[0].2.starts_with("cpu_generation differs"),
            "{:?}",
            d.failures
        );
        // Lineage: ID_LIKE shares a name.
        let mut e = server();
        e.os_id = "kylin".into();
        e.extra.insert("os_id_like".into(), "openeuler".into());
        assert!(decide(&default_rules(), &[&a], &e).covered_by.is_some());
        e.extra.clear();
        let why = check_rule(&default_rules()[0], &a, &e).unwrap();
        assert!(why.starts_with("os_lineage differs"), "{why}");
    }

    #[test]
    fn card_rule_compares_four_tuples_and_missing_facts_fail() {
        let card = Rule {
            id: "nic".into(),
            title: String::new(),
            same: vec![Fact::Pci],
            pci_classes: vec!["02".into()],
        };
        let a = server();
        let mut b = server();
        b.hardware.as_mut().unwrap().dmi.clear();
        assert_eq!(check_rule(&card, &a, &b), None);
        b.hardware.as_mut().unwrap().pci[0].subdevice = "00a2".into();
        assert!(
            check_rule(&card, &a, &b)
                .unwrap()
                .starts_with("pci differs")
        );
        let mut old = server();
        old.hardware = None;
        let why = check_rule(&default_rules()[0], &a, &old).unwrap();
        assert!(why.contains("on the new platform"), "{why}");
    }
}
