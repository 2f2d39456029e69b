//! `[[component]]` tables: ids, kinds, secrets by reference, lifecycle, options (plugins
//! checked on this host), labels; and the implicit `os` component.

use super::raw::ComponentSpecRaw;
use super::{ComponentSpec, SecretRef, check_id, resolve_path};
use crate::spec::diag::{Source, SpecError};
use crate::spec::duration::parse_duration;
use adaptest_adapters::component::{ComponentConfig, Lifecycle};
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Validate the declared components and add `os` unless the plan declares its own.
pub(super) fn parse_components(
    source: &Source,
    base: &Path,
    raw: &[ComponentSpecRaw],
    errors: &mut Vec<SpecError>,
) -> Vec<ComponentSpec> {
    let mut components = Vec::new();
    let mut component_ids = HashSet::new();
    for (i, c) in raw.iter().enumerate() {
        check_id(source, &c.id, &format!("component[{i}].id"), errors);
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
                    .with_help(crate::spec::known_components_help()),
            );
        }
        let at = |sp: Range<usize>| {
            let (line, _) = source.line_col(sp.start);
            format!("{}:{line}", source.name)
        };
        let password = match (&c.password_env, &c.password_file) {
            (Some(e), None) => Some(SecretRef::Env {
                var: e.get_ref().clone(),
                at: at(e.span()),
            }),
            (None, Some(f)) => Some(SecretRef::File {
                path: resolve_path(base, f.get_ref()),
                at: at(f.span()),
            }),
            (Some(e), Some(_)) => {
                errors.push(source.error(
                    e.span(),
                    &format!("component[{i}].password_env"),
                    "give `password_env` or `password_file`, not both",
                ));
                None
            }
            (None, None) => None,
        };
        let lc = c.lifecycle.as_ref();
        let ready_timeout = lc.and_then(|l| l.ready_timeout.as_ref()).and_then(|t| {
            match parse_duration(t.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(source.error(
                        t.span(),
                        &format!("component[{i}].lifecycle.ready_timeout"),
                        e.to_string(),
                    ));
                    None
                }
            }
        });
        let mut options: BTreeMap<String, String> = c
            .options
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        // A plugin names its library or program, relative to the plan's directory; it must
        // be there (a typo is the plan's mistake, not the product's failure at run time). A
        // plan re-read from a run directory (`source.base` set: resume, merge) is not checked
        // again: merging shards must work on a machine without the plugin.
        if kind == "plugin"
            && let Err((field, message)) =
                adaptest_adapters::plugin::resolve_options(&mut options, base).and_then(|()| {
                    if source.base.is_none() {
                        plugin_file_exists(&options)
                    } else {
                        Ok(())
                    }
                })
        {
            errors.push(source.error(
                c.kind.span(),
                &format!("component[{i}].options.{field}"),
                message,
            ));
        }
        let config = ComponentConfig {
            id: c.id.get_ref().clone(),
            kind: kind.clone(),
            version: c.version.clone(),
            host: c.host.clone(),
            port: c.port.as_ref().map(|p| *p.get_ref()),
            user: c.user.clone(),
            password: None,
            database: c.database.clone(),
            // Embedded SQLite opens `path` on the harness machine: relative to the plan. Every
            // other kind hands it to a program on the target, where it means what it says there
            // (a relative path: the combination's scratch directory, the client's working
            // directory), so it is kept as written.
            path: c.path.as_ref().map(|p| {
                if kind == "sqlite" {
                    resolve_path(base, p)
                } else {
                    PathBuf::from(p)
                }
            }),
            cli: c.cli.clone(),
            options,
            lifecycle: Lifecycle {
                install: lc.and_then(|l| l.install.clone()),
                start: lc.and_then(|l| l.start.clone()),
                ready: lc.and_then(|l| l.ready.clone()),
                ready_timeout,
                stop: lc.and_then(|l| l.stop.clone()),
                uninstall: lc.and_then(|l| l.uninstall.clone()),
                residue: lc.and_then(|l| {
                    let wanted = l.residue.unwrap_or(
                        l.residue_roots.is_some()
                            || l.residue_passwd.is_some()
                            || l.residue_group.is_some()
                            || !l.residue_allow.is_empty(),
                    );
                    wanted.then(|| adaptest_adapters::component::Residue {
                        roots: l.residue_roots.clone().unwrap_or_else(|| {
                            ["/etc", "/usr", "/opt", "/var/lib", "/var/log"]
                                .map(String::from)
                                .to_vec()
                        }),
                        passwd: l
                            .residue_passwd
                            .clone()
                            .unwrap_or_else(|| "/etc/passwd".into()),
                        group: l
                            .residue_group
                            .clone()
                            .unwrap_or_else(|| "/etc/group".into()),
                        allow: l.residue_allow.clone(),
                    })
                }),
            },
        };
        for (li, l) in c.labels.iter().enumerate() {
            let v = l.get_ref();
            if v.is_empty() || v.contains(|ch: char| ch.is_whitespace() || ch == '#') {
                errors.push(source.error(
                    l.span(),
                    &format!("component[{i}].labels[{li}]"),
                    format!("`{v}` is not a label (one word, no `#`)"),
                ));
            }
        }
        components.push(ComponentSpec {
            id: c.id.get_ref().clone(),
            kind: kind.clone(),
            version: c.version.clone(),
            description: c.description.clone(),
            config,
            password,
            labels: c.labels.iter().map(|l| l.get_ref().clone()).collect(),
            resources: c
                .resources
                .as_ref()
                .and_then(|r| parse_resources(source, i, c.id.span(), r, errors)),
            recovery: c
                .recovery
                .as_ref()
                .and_then(|r| parse_recovery(source, i, r, errors)),
        });
    }
    // The target's operating system is always available as component `os`.
    if !component_ids.contains("os") {
        components.push(ComponentSpec {
            id: "os".into(),
            kind: "os".into(),
            version: None,
            description: "the target's operating system".into(),
            config: ComponentConfig {
                id: "os".into(),
                kind: "os".into(),
                ..ComponentConfig::default()
            },
            password: None,
            labels: Vec::new(),
            resources: None,
            recovery: None,
        });
    }

    components
}

/// Does the (resolved) plugin option name a library or program that exists on this host? A
/// program without a `/` is looked up on `PATH`.
fn plugin_file_exists(options: &BTreeMap<String, String>) -> Result<(), (&'static str, String)> {
    use adaptest_adapters::plugin::PluginSpec;
    let Some(Ok(spec)) = options.get("plugin").map(|t| PluginSpec::parse(t)) else {
        return Ok(());
    };
    let (what, path) = match spec {
        PluginSpec::Dylib(p) => ("plugin library", p),
        PluginSpec::Exec { program, .. } if program.contains('/') => {
            ("plugin program", PathBuf::from(program))
        }
        PluginSpec::Exec { program, .. } => {
            let on_path = std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&program).is_file()));
            return if on_path {
                Ok(())
            } else {
                Err((
                    "plugin",
                    format!("plugin program `{program}` is not on PATH"),
                ))
            };
        }
    };
    if path.is_file() {
        Ok(())
    } else {
        Err((
            "plugin",
            format!("{what} {} does not exist", path.display()),
        ))
    }
}

/// `[component.resources]`: exactly one way to find the processes, durations and thresholds
/// parsed, each error naming its field.
fn parse_resources(
    source: &Source,
    i: usize,
    at: Range<usize>,
    r: &super::raw::ResourcesRaw,
    errors: &mut Vec<SpecError>,
) -> Option<super::ResourceSpec> {
    use super::ProcessSelector as P;
    let field = |f: &str| format!("component[{i}].resources.{f}");
    let given: Vec<P> = [
        r.pid_file.clone().map(P::PidFile),
        r.process.clone().map(P::Process),
        r.systemd_unit.clone().map(P::SystemdUnit),
    ]
    .into_iter()
    .flatten()
    .collect();
    let select = match <[P; 1]>::try_from(given) {
        Ok([s]) => Some(s),
        Err(_) => {
            errors.push(source.error(
                at,
                &field("pid_file"),
                "give exactly one of `pid_file`, `process` or `systemd_unit` to find the component's processes (the `start` command's process tree is not supported yet)",
            ));
            None
        }
    };
    let mut ok = true;
    let mut dur = |v: &Option<toml::Spanned<String>>, name: &str, default: u64| match v {
        None => std::time::Duration::from_millis(default),
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                ok = false;
                errors.push(source.error(t.span(), &field(name), "must be longer than 0"));
                std::time::Duration::ZERO
            }
            Err(e) => {
                ok = false;
                errors.push(source.error(t.span(), &field(name), e.to_string()));
                std::time::Duration::ZERO
            }
        },
    };
    let sample_interval = dur(&r.sample_interval, "sample_interval", 1000);
    let idle_window = dur(&r.idle_window, "idle_window", 10_000);
    let mut pct = |v: &Option<toml::Spanned<String>>, name: &str| {
        let t = v.as_ref()?;
        match parse_percent(t.get_ref()) {
            Some(p) => Some(p),
            None => {
                ok = false;
                errors.push(source.error(
                    t.span(),
                    &field(name),
                    format!("`{}` is no percentage (write e.g. \"5%\")", t.get_ref()),
                ));
                None
            }
        }
    };
    let cpu_idle_max = pct(&r.cpu_idle_max, "cpu_idle_max");
    let cpu_max = pct(&r.cpu_max, "cpu_max");
    let rss_max = r
        .rss_max
        .as_ref()
        .and_then(|t| match parse_bytes(t.get_ref()) {
            Some(b) => Some(b),
            None => {
                ok = false;
                errors.push(source.error(
                    t.span(),
                    &field("rss_max"),
                    format!(
                        "`{}` is no size (write e.g. \"2GiB\", \"512MiB\")",
                        t.get_ref()
                    ),
                ));
                None
            }
        });
    Some(super::ResourceSpec {
        select: select?,
        sample_interval,
        idle_window,
        cpu_idle_max,
        cpu_max,
        rss_max,
    })
    .filter(|_| ok)
}

/// `"5%"`, `"150%"` (percent of one core), `"0.5%"`.
pub(crate) fn parse_percent(t: &str) -> Option<f64> {
    let v: f64 = t.trim().strip_suffix('%')?.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// `"2GiB"`, `"512MiB"`, `"100KiB"`, `"4096"` (bytes); `KB/MB/GB` are powers of 1000.
pub(crate) fn parse_bytes(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().ok()?;
    let mul: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    Some((n * mul) as u64)
}

/// `[component.recovery]`: `restart` is `"start"` (default) or `"service"`; a timeout.
fn parse_recovery(
    source: &Source,
    i: usize,
    r: &super::raw::RecoveryRaw,
    errors: &mut Vec<SpecError>,
) -> Option<super::RecoverySpec> {
    let field = |f: &str| format!("component[{i}].recovery.{f}");
    let by_start = match r.restart.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
        None | Some(("start", _)) => true,
        Some(("service", _)) => false,
        Some((other, span)) => {
            errors.push(source.error(
                span,
                &field("restart"),
                format!("`{other}` is no restart mode (`start` or `service`)"),
            ));
            return None;
        }
    };
    let timeout = match &r.timeout {
        None => std::time::Duration::from_secs(60),
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                errors.push(source.error(t.span(), &field("timeout"), e.to_string()));
                return None;
            }
        },
    };
    Some(super::RecoverySpec {
        pid_file: r.pid_file.get_ref().clone(),
        by_start,
        timeout,
        prepare: r.prepare.clone(),
        check: r.check.clone(),
    })
}
