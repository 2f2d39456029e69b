//! `steps` cases: protocol-neutral operations on a component, each checked against its
//! expectation, in order, over one or more named sessions.

use super::{CaseOutcome, ComponentControl, is_infra, is_suite_error};
use crate::spec::duration::parse_duration;
use crate::spec::kinds::Step;
use adaptest_adapters::component::{Component, ComponentError, Endpoint, Session, value_text};
use adaptest_adapters::{ExecRequest, Target};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Is `expect` a subset of `actual`? Objects match key by key (recursively), arrays element by
/// element, scalars by their text (`"1"` matches `1`: SQL rows come back as text).
/// `Err` names the first path that differs.
pub fn subset(expect: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expect, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => subset(ev, av, &p)?,
                    None => return Err(format!("{p} is missing")),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path} has {} element(s), expected {}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Null, Value::Null) => Ok(()),
        (e, a)
            if !e.is_object()
                && !e.is_array()
                && !a.is_object()
                && !a.is_array()
                && !a.is_null() =>
        {
            if value_text(e) == value_text(a) {
                Ok(())
            } else {
                Err(format!("{path} is {}, expected {}", short(a), short(e)))
            }
        }
        (e, a) => Err(format!("{path} is {}, expected {}", short(a), short(e))),
    }
}

/// The text of a result for `expect_contains`: a string itself, an object's `body` or
/// `payload`, else its JSON.
pub fn result_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("body")
            .or_else(|| o.get("payload"))
            .map_or_else(|| v.to_string(), value_text),
        other => other.to_string(),
    }
}

fn short(v: &Value) -> String {
    adaptest_adapters::text::clip(&v.to_string(), 120)
}

/// Run every step; the first unmet expectation ends the case.
pub async fn run(
    component: &dyn Component,
    endpoint: &Endpoint,
    control: &dyn ComponentControl,
    steps: &[Step],
    cancel: &CancellationToken,
) -> CaseOutcome {
    let mut sessions: BTreeMap<String, Box<dyn Session>> = BTreeMap::new();
    let mut log = String::new();
    let mut outcome = CaseOutcome::passed();
    for (i, step) in steps.iter().enumerate() {
        if cancel.is_cancelled() {
            outcome = CaseOutcome::cancelled();
            break;
        }
        let _ = write!(
            log,
            "step {} [{}] {} {}",
            i + 1,
            step.session,
            step.op,
            Value::Object(step.args.clone())
        );
        let res = match step.op.as_str() {
            "sleep" => sleep(&step.args).await,
            "shell" => {
                let pass: Vec<String> = step
                    .args
                    .get("pass_env")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let r = shell(
                    endpoint.target.as_ref(),
                    (&endpoint.workdir, control.scrubbed_vars(&pass)),
                    control.command_env(),
                    control.grace(),
                    &step.args,
                    &mut log,
                    cancel,
                )
                .await;
                if cancel.is_cancelled() {
                    outcome = CaseOutcome::cancelled();
                    break;
                }
                r
            }
            "component.restart" => {
                // Sessions do not survive a restart.
                for (_, s) in std::mem::take(&mut sessions) {
                    let _ = s.close().await;
                }
                control
                    .restart(&mut log)
                    .await
                    .map(|()| Value::Null)
                    .map_err(ComponentError::Operation)
            }
            op => {
                if !sessions.contains_key(&step.session) {
                    match component.open(endpoint).await {
                        Ok(s) => {
                            sessions.insert(step.session.clone(), s);
                        }
                        Err(e) => {
                            let _ = writeln!(log, "\n  → cannot open session: {e}");
                            outcome =
                                CaseOutcome::from_error(&e, &format!("step {} ({op}): ", i + 1));
                            break;
                        }
                    }
                }
                let session = sessions.get_mut(&step.session).expect("opened above");
                tokio::select! {
                    r = session.execute(op, &step.args) => r,
                    () = cancel.cancelled() => { outcome = CaseOutcome::cancelled(); break; }
                }
            }
        };
        let verdict = match (&res, &step.expect_error) {
            (Ok(v), Some(want)) => Some(format!(
                "expected an error containing {want:?}, got {}",
                short(v)
            )),
            (Err(e), Some(want)) => {
                let msg = e.to_string();
                if msg.contains(want.as_str()) && !is_infra(e) && !is_suite_error(e) {
                    None
                } else {
                    Some(format!("error {msg:?} does not contain {want:?}"))
                }
            }
            (Err(_), None) => None, // handled below
            (Ok(v), None) => {
                let mut why = None;
                if let Some(e) = &step.expect {
                    why = subset(e, v, "result").err();
                }
                if why.is_none()
                    && let Some(want) = &step.expect_contains
                    && !result_text(v).contains(want.as_str())
                {
                    why = Some(format!("result {} does not contain {want:?}", short(v)));
                }
                why
            }
        };
        match &res {
            Ok(v) => {
                let _ = writeln!(log, "\n  → {}", short(v));
            }
            Err(e) => {
                let _ = writeln!(log, "\n  → error: {e}");
            }
        }
        if let (Err(e), None) = (&res, &step.expect_error) {
            outcome = CaseOutcome::from_error(e, &format!("step {} ({}): ", i + 1, step.op));
            break;
        }
        if let Some(why) = verdict {
            outcome = CaseOutcome::failed(format!("step {} ({}): {why}", i + 1, step.op));
            break;
        }
    }
    for (_, s) in sessions {
        let _ = s.close().await;
    }
    outcome.log = log;
    outcome
}

async fn sleep(args: &Map<String, Value>) -> Result<Value, ComponentError> {
    let d = args
        .get("duration")
        .and_then(Value::as_str)
        .unwrap_or("0ms");
    let d = parse_duration(d).map_err(|e| ComponentError::Arguments {
        op: "sleep".into(),
        reason: e.to_string(),
    })?;
    tokio::time::sleep(d).await;
    Ok(Value::Null)
}

/// Bytes of each stream of a `shell` step kept in the case log.
const SHELL_LOG_BYTES: usize = 16 * 1024;
/// How long a `shell` step may run.
const SHELL_TIMEOUT: Duration = Duration::from_secs(120);

/// `{ op = "shell", run = "…" }`: a command on the target; fails unless it exits 0. The result
/// is `{exit, stdout, stderr}`; the command and its output (bounded) go into the case log.
async fn shell(
    target: &dyn Target,
    (workdir, scrub): (&str, Vec<String>),
    env: Vec<(String, String)>,
    grace: Duration,
    args: &Map<String, Value>,
    log: &mut String,
    cancel: &CancellationToken,
) -> Result<Value, ComponentError> {
    let cmd = adaptest_adapters::component::arg_str("shell", args, "run")?;
    let mut req = ExecRequest::new(cmd, SHELL_TIMEOUT);
    req.cwd = Some(workdir.to_string());
    req.env = env;
    req.env_remove = scrub;
    req.grace = grace;
    let o = target.exec(req, cancel).await?;
    log.push('\n');
    super::command_log::append(log, cmd, &o, SHELL_LOG_BYTES);
    let out = serde_json::json!({
        "exit": o.exit_code,
        "stdout": String::from_utf8_lossy(&o.stdout),
        "stderr": String::from_utf8_lossy(&o.stderr),
    });
    if o.exit_code == Some(0) {
        return Ok(out);
    }
    let how = if o.timed_out {
        format!(
            "timed out after {}; the process tree was terminated",
            crate::spec::duration::format_duration(SHELL_TIMEOUT)
        )
    } else {
        adaptest_adapters::exit_status::describe(o.exit_code, o.signal)
    };
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stderr = stderr.trim();
    Err(ComponentError::Operation(if stderr.is_empty() {
        format!("command {how}")
    } else {
        format!(
            "command {how}: {}",
            adaptest_adapters::text::excerpt(stderr.as_bytes(), 300)
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matching() {
        let actual = json!({"status": 200, "headers": {"content-type": "text/html", "server": "nginx"}, "rows": [["1", null]]});
        assert!(subset(&json!({"status": 200}), &actual, "r").is_ok());
        assert!(subset(&json!({"status": "200"}), &actual, "r").is_ok());
        assert!(
            subset(
                &json!({"headers": {"content-type": "text/html"}}),
                &actual,
                "r"
            )
            .is_ok()
        );
        assert!(subset(&json!({"rows": [[1, null]]}), &actual, "r").is_ok());
        let e = subset(&json!({"status": 404}), &actual, "r").unwrap_err();
        assert_eq!(e, "r.status is 200, expected 404");
        assert!(
            subset(&json!({"rows": [["1"]]}), &actual, "r")
                .unwrap_err()
                .contains("element")
        );
        assert!(
            subset(&json!({"nope": 1}), &actual, "r")
                .unwrap_err()
                .contains("missing")
        );
        assert!(subset(&json!("x"), &Value::Null, "r").is_err());
        assert_eq!(result_text(&json!({"body": "hello"})), "hello");
    }
}
