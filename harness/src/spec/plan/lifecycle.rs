//! The synthetic `lifecycle` suite: a component's install/start/ready/stop/uninstall commands
//! as certification cases, placed before the pair's first suite.

use super::{Combination, ComponentSpec};
use crate::spec::diag::Source;
use crate::spec::suite::Suite;
use adaptest_adapters::component::Lifecycle;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Suite id of the synthetic lifecycle combinations.
pub const LIFECYCLE_SUITE: &str = "lifecycle";
/// Case id of the resource-profile item in a pair's lifecycle combination.
pub const RESOURCES_CASE: &str = "resources";
/// Case id of the recovery item in a pair's lifecycle combination.
pub const RECOVERY_CASE: &str = "recovery";

/// Case id of the uninstall residue item (when the component asks for it).
pub const RESIDUE_CASE: &str = "residue";

/// Give every target × component pair whose component declares lifecycle commands a
/// `target/component/lifecycle` combination (install, start, ready, stop, uninstall as cases),
/// placed before the pair's first suite: installation and start-up are certification items.
pub(super) fn with_lifecycle(
    combos: Vec<Combination>,
    components: &[ComponentSpec],
) -> Vec<Combination> {
    let mut out = Vec::with_capacity(combos.len());
    let mut done = HashSet::new();
    for c in combos {
        let spec = components.iter().find(|x| x.id == c.component);
        if let Some(spec) = spec
            && (lifecycle_cases(&spec.config.lifecycle).next().is_some()
                || spec.resources.is_some()
                || spec.recovery.is_some())
            && done.insert((c.target.clone(), c.component.clone()))
        {
            out.push(Combination {
                id: format!("{}/{}/{LIFECYCLE_SUITE}", c.target, c.component),
                target: c.target.clone(),
                component: c.component.clone(),
                component_kind: c.component_kind.clone(),
                suite: Arc::new(lifecycle_suite(spec)),
            });
        }
        out.push(c);
    }
    out
}

/// (id, title, title_zh, command) of each declared lifecycle step, in order.
pub fn lifecycle_cases(
    l: &Lifecycle,
) -> impl Iterator<Item = (&'static str, &'static str, &'static str, &String)> {
    [
        ("install", "Installation", "安装", l.install.as_ref()),
        ("start", "Start-up", "启动", l.start.as_ref()),
        ("ready", "Ready for service", "服务就绪", l.ready.as_ref()),
        ("stop", "Shutdown", "停止", l.stop.as_ref()),
        ("uninstall", "Uninstallation", "卸载", l.uninstall.as_ref()),
    ]
    .into_iter()
    .filter_map(|(id, t, tz, cmd)| cmd.map(|c| (id, t, tz, c)))
}

fn lifecycle_suite(spec: &ComponentSpec) -> Suite {
    use crate::spec::suite::{Case, Expectations, Requirements, RunAction, Stream};
    let timeout = spec
        .config
        .lifecycle
        .ready_timeout
        .unwrap_or(std::time::Duration::from_secs(300));
    let l = &spec.config.lifecycle;
    let residue =
        (l.residue.is_some() && l.install.is_some() && l.uninstall.is_some()).then(|| {
            (
                RESIDUE_CASE,
                "Nothing left after uninstallation",
                "卸载无残留",
                l.uninstall.as_ref().expect("checked"),
            )
        });
    // The resource profile is an item of the lifecycle combination, judged at teardown (it is
    // never run as a command: its "command" says what it is, for the log).
    let profile = spec.resources.as_ref().map(|_| {
        (
            RESOURCES_CASE,
            "Resource profile (idle and under load)",
            "资源占用（空闲与负载）",
            &spec.id,
        )
    });
    let recovery = spec.recovery.as_ref().map(|_| {
        (
            RECOVERY_CASE,
            "Recovery after the main process is killed",
            "主进程被杀后恢复",
            &spec.id,
        )
    });
    let cases: Vec<Case> = lifecycle_cases(&spec.config.lifecycle)
        .chain(residue)
        .chain(profile)
        .chain(recovery)
        .map(|(id, title, title_zh, cmd)| Case {
            id: id.to_string(),
            title: title.to_string(),
            title_zh: title_zh.to_string(),
            level: adaptest_reports::Level::Mandatory,
            tags: vec!["lifecycle".into()],
            timeout,
            retries: 0,
            requires: Requirements::default(),
            action: crate::spec::suite::Action::Run(RunAction {
                command: cmd.clone(),
                stdin: None,
                env: BTreeMap::new(),
                pass_env: Vec::new(),
                cwd: None,
                expect: Expectations {
                    exit: 0,
                    stdout: Stream::default(),
                    stderr: Stream::default(),
                },
            }),
        })
        .collect();
    Suite {
        id: LIFECYCLE_SUITE.into(),
        title: format!("Lifecycle of {}", spec.id),
        title_zh: format!("{} 生命周期", spec.id),
        component: spec.kind.clone(),
        version: String::new(),
        description: String::new(),
        description_zh: String::new(),
        cases,
        source: Source::new(format!("(lifecycle of component {})", spec.id), ""),
    }
}
