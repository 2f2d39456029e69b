//! Whether a case applies on a target: its required arch, OS, commands (probed once per target)
//! and component capabilities.

use super::slots::Ctx;
use crate::spec::suite::{Case, Requirements};
use adaptest_adapters::ExecRequest;
pub use adaptest_adapters::target::canonical_arch;
use adaptest_adapters::text::error_chain;
use adaptest_reports::Environment;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// Which commands that pending cases require exist on the target (one probe per target, cached).
pub(super) async fn available_commands(
    ctx: &Ctx,
    target_id: &str,
    cases: &[&Case],
) -> HashMap<String, bool> {
    let slot = &ctx.targets[target_id];
    let wanted: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.requires.commands.iter().map(String::as_str))
        .collect();
    let mut cache = slot.commands.lock().await;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| !cache.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        let mut script = String::from("for c in");
        for c in &missing {
            script.push_str(&format!(" '{}'", c.replace('\'', "'\\''")));
        }
        script.push_str("; do if command -v \"$c\" >/dev/null 2>&1; then echo \"$c\"; fi; done");
        let found: HashSet<String> = match slot
            .target
            .exec(
                ExecRequest::new(script, Duration::from_secs(30)),
                &ctx.cancel,
            )
            .await
        {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect(),
            Err(e) => {
                tracing::warn!("command probe on {target_id} failed: {}", error_chain(&e));
                HashSet::new()
            }
        };
        for c in missing {
            cache.insert(c.to_string(), found.contains(c));
        }
    }
    cache.clone()
}

/// Why a case does not apply here, or `None` when every requirement holds.
pub(super) fn unmet(
    req: &Requirements,
    env: &Environment,
    commands: &HashMap<String, bool>,
    capabilities: &[String],
) -> Option<String> {
    if !req.arch.is_empty()
        && !req
            .arch
            .iter()
            .any(|a| canonical_arch(a) == canonical_arch(&env.arch))
    {
        return Some(format!(
            "requires arch {} (target is {})",
            req.arch.join("|"),
            env.arch
        ));
    }
    if !req.os.is_empty() && !req.os.iter().any(|o| o.eq_ignore_ascii_case(&env.os_id)) {
        return Some(format!(
            "requires OS {} (target is {})",
            req.os.join("|"),
            env.os_id
        ));
    }
    let missing: Vec<&str> = req
        .commands
        .iter()
        .filter(|c| !commands.get(*c).copied().unwrap_or(false))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "requires command(s) not found on the target: {}",
            missing.join(", ")
        ));
    }
    let missing: Vec<&str> = req
        .capabilities
        .iter()
        .filter(|c| !capabilities.contains(c))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "requires capability {} that the component lacks",
            missing.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(arch: &str, os_id: &str) -> Environment {
        Environment {
            arch: arch.into(),
            os_id: os_id.into(),
            ..Environment::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arch_aliases_meet_and_other_arches_do_not() {
        let req = Requirements {
            arch: strings(&["arm64"]),
            ..Requirements::default()
        };
        let none = HashMap::new();
        assert_eq!(unmet(&req, &env("aarch64", "debian"), &none, &[]), None);
        assert_eq!(
            unmet(&req, &env("x86_64", "debian"), &none, &[]).as_deref(),
            Some("requires arch arm64 (target is x86_64)")
        );
    }

    #[test]
    fn os_is_matched_without_case() {
        let req = Requirements {
            os: strings(&["Debian", "ubuntu"]),
            ..Requirements::default()
        };
        let none = HashMap::new();
        assert_eq!(unmet(&req, &env("x86_64", "debian"), &none, &[]), None);
        assert_eq!(
            unmet(&req, &env("x86_64", "alpine"), &none, &[]).as_deref(),
            Some("requires OS Debian|ubuntu (target is alpine)")
        );
    }

    #[test]
    fn missing_commands_and_capabilities_are_named() {
        let req = Requirements {
            commands: strings(&["sh", "gcc", "make"]),
            ..Requirements::default()
        };
        // `make` was never probed: not known to exist is missing.
        let commands = HashMap::from([("sh".to_string(), true), ("gcc".to_string(), false)]);
        let e = env("x86_64", "debian");
        assert_eq!(
            unmet(&req, &e, &commands, &[]).as_deref(),
            Some("requires command(s) not found on the target: gcc, make")
        );
        let req = Requirements {
            capabilities: strings(&["sql", "kv"]),
            ..Requirements::default()
        };
        assert_eq!(
            unmet(&req, &e, &commands, &strings(&["sql"])).as_deref(),
            Some("requires capability kv that the component lacks")
        );
        assert_eq!(unmet(&req, &e, &commands, &strings(&["kv", "sql"])), None);
    }
}
