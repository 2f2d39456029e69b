//! `bench` cases: one operation driven for N operations or T seconds at a concurrency, with
//! throughput and latency percentiles recorded as metrics and optional thresholds.

use super::CaseOutcome;
use crate::spec::kinds::BenchAction;
use adaptest_adapters::component::{Component, ComponentError, Endpoint};
use adaptest_reports::Metric;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Replace `{i}` (operation index) and `{w}` (worker) in every string of `args`.
fn substitute(args: &Map<String, Value>, i: u64, w: u32) -> Map<String, Value> {
    fn go(v: &Value, i: &str, w: &str) -> Value {
        match v {
            Value::String(s) if s.contains('{') => {
                Value::String(s.replace("{i}", i).replace("{w}", w))
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| go(x, i, w)).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| (k.clone(), go(x, i, w))).collect())
            }
            other => other.clone(),
        }
    }
    let (i, w) = (i.to_string(), w.to_string());
    args.iter()
        .map(|(k, v)| (k.clone(), go(v, &i, &w)))
        .collect()
}

fn has_placeholder(args: &Map<String, Value>) -> bool {
    Value::Object(args.clone()).to_string().contains("{i}")
        || Value::Object(args.clone()).to_string().contains("{w}")
}

/// Percentile (0–100) of sorted latencies in microseconds, in milliseconds.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

struct Worker {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<ComponentError>,
}

/// Drive the benchmark and judge the thresholds.
pub async fn run(
    component: Arc<dyn Component>,
    endpoint: &Endpoint,
    bench: &BenchAction,
    cancel: &CancellationToken,
) -> CaseOutcome {
    // Open every session first: connection set-up is not part of the measurement.
    let mut sessions = Vec::new();
    for _ in 0..bench.concurrency {
        match component.open(endpoint).await {
            Ok(s) => sessions.push(s),
            Err(e) => return CaseOutcome::from_error(&e, "opening bench sessions: "),
        }
    }
    let templated = has_placeholder(&bench.args);
    // Warm-up, on the first session, not measured.
    for i in 0..bench.warmup {
        let args = if templated {
            substitute(&bench.args, u64::MAX - i, 0)
        } else {
            bench.args.clone()
        };
        if let Err(e) = sessions[0].execute(&bench.op, &args).await {
            return CaseOutcome::from_error(&e, "warm-up: ");
        }
    }
    let next = Arc::new(AtomicU64::new(0));
    let limit = bench.ops.unwrap_or(u64::MAX);
    let started = Instant::now();
    let deadline = bench.duration.map(|d| started + d);
    let mut tasks = tokio::task::JoinSet::new();
    for (w, mut session) in sessions.into_iter().enumerate() {
        let next = next.clone();
        let op = bench.op.clone();
        let args = Arc::new(bench.args.clone());
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut me = Worker {
                latencies_us: Vec::new(),
                errors: 0,
                first_error: None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit
                    || deadline.is_some_and(|d| Instant::now() >= d)
                    || cancel.is_cancelled()
                {
                    break;
                }
                let owned;
                let a: &Map<String, Value> = if templated {
                    owned = substitute(&args, i, w as u32);
                    &owned
                } else {
                    &args
                };
                let t = Instant::now();
                let r = session.execute(&op, a).await;
                me.latencies_us
                    .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if let Err(e) = r {
                    me.errors += 1;
                    let lost = matches!(
                        e,
                        ComponentError::Lost { .. } | ComponentError::Connect { .. }
                    );
                    me.first_error.get_or_insert(e);
                    if lost {
                        break;
                    }
                }
            }
            let _ = session.close().await;
            me
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let w = r.expect("bench worker panicked");
        all.extend(w.latencies_us);
        errors += w.errors;
        if first_error.is_none() {
            first_error = w.first_error;
        }
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    if cancel.is_cancelled() {
        return CaseOutcome::cancelled();
    }
    all.sort_unstable();
    let done = all.len() as u64;
    let ops_per_sec = done as f64 / elapsed.as_secs_f64();
    let p50 = percentile_ms(&all, 50.0);
    let p99 = percentile_ms(&all, 99.0);
    let metric = |name: &str, value: f64, unit: &str, threshold: Option<String>| Metric {
        name: name.into(),
        value: if value.is_finite() { value } else { 0.0 },
        unit: unit.into(),
        threshold,
    };
    let metrics = vec![
        metric(
            "ops_per_sec",
            ops_per_sec,
            "ops/s",
            bench.min_ops_per_sec.map(|t| format!(">= {t}")),
        ),
        metric(
            "p50_ms",
            p50,
            "ms",
            bench.max_p50_ms.map(|t| format!("<= {t}")),
        ),
        metric(
            "p99_ms",
            p99,
            "ms",
            bench.max_p99_ms.map(|t| format!("<= {t}")),
        ),
        metric("ops", done as f64, "ops", None),
        metric("errors", errors as f64, "ops", None),
        metric(
            "concurrency",
            f64::from(bench.concurrency),
            "sessions",
            None,
        ),
    ];
    let summary = format!(
        "{done} {} ops in {:.3} s at concurrency {}: {ops_per_sec:.0} ops/s, p50 {p50:.3} ms, p99 {p99:.3} ms, {errors} error(s)",
        bench.op,
        elapsed.as_secs_f64(),
        bench.concurrency
    );
    let mut outcome = if let Some(e) = first_error {
        let mut o = CaseOutcome::from_error(
            &e,
            &format!("{errors} of {done} operations failed; first: "),
        );
        o.metrics = metrics;
        o.log = summary;
        return o;
    } else {
        CaseOutcome::passed()
    };
    let mut misses = Vec::new();
    if let Some(t) = bench.min_ops_per_sec
        && ops_per_sec < t
    {
        misses.push(format!("{ops_per_sec:.0} ops/s < {t}"));
    }
    if let Some(t) = bench.max_p50_ms
        && p50 > t
    {
        misses.push(format!("p50 {p50:.3} ms > {t} ms"));
    }
    if let Some(t) = bench.max_p99_ms
        && p99 > t
    {
        misses.push(format!("p99 {p99:.3} ms > {t} ms"));
    }
    if !misses.is_empty() {
        outcome = CaseOutcome::failed(format!("threshold missed: {}", misses.join(", ")));
    }
    outcome.stdout = summary.clone();
    outcome.log = summary;
    outcome.metrics = metrics;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_percentiles() {
        let mut a = Map::new();
        a.insert("key".into(), Value::String("bench:{i}:{w}".into()));
        a.insert("n".into(), Value::from(3));
        assert!(has_placeholder(&a));
        let s = substitute(&a, 42, 7);
        assert_eq!(s["key"], "bench:42:7");
        assert_eq!(s["n"], 3);
        let lat: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&lat, 50.0), 51.0);
        assert_eq!(percentile_ms(&lat, 99.0), 99.0);
        assert_eq!(percentile_ms(&[], 99.0), 0.0);
    }
}
