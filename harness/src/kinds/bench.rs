//! `bench` cases: one operation driven for N operations or T seconds at a concurrency, with
//! throughput and latency percentiles recorded as metrics and optional thresholds. Latencies go
//! into an HDR histogram per worker (fixed size, 3 significant digits), never one entry per
//! operation: a long `duration` bench uses the same memory as a short one.

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

/// Latencies in microseconds, from 1 µs to an hour (longer ones are recorded as an hour).
type Latencies = hdrhistogram::Histogram<u64>;

/// The longest latency told apart: an hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

fn latencies() -> Latencies {
    Latencies::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Percentile (0–100) of the recorded latencies, in milliseconds.
fn percentile_ms(h: &Latencies, p: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(p / 100.0) as f64 / 1000.0
}

struct Worker {
    latencies_us: Latencies,
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
                latencies_us: latencies(),
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
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                me.latencies_us.saturating_record(us.max(1));
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
    let mut all = latencies();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let w = r.expect("bench worker panicked");
        all.add(&w.latencies_us)
            .expect("histograms of the same bounds add");
        errors += w.errors;
        if first_error.is_none() {
            first_error = w.first_error;
        }
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    if cancel.is_cancelled() {
        return CaseOutcome::cancelled();
    }
    let done = all.len();
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
        let mut lat = latencies();
        for x in 1..=100u64 {
            lat.record(x * 1000).unwrap();
        }
        // Three significant digits: within 0.1% of the exact percentile.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
        assert!(
            near(percentile_ms(&lat, 50.0), 50.0),
            "{}",
            percentile_ms(&lat, 50.0)
        );
        assert!(
            near(percentile_ms(&lat, 99.0), 99.0),
            "{}",
            percentile_ms(&lat, 99.0)
        );
        assert_eq!(percentile_ms(&latencies(), 99.0), 0.0);
    }

    /// Latencies used to be kept one `u32` per operation (a `duration` bench grew without
    /// bound); the histogram's memory does not grow with the operations recorded.
    #[test]
    fn latency_memory_does_not_grow_with_operations() {
        let mut h = latencies();
        let before = h.distinct_values();
        for i in 0..1_000_000u64 {
            h.saturating_record(1 + i % 5_000);
        }
        h.saturating_record(u64::MAX);
        assert_eq!(h.distinct_values(), before);
        assert_eq!(h.len(), 1_000_001);
        assert!(h.max() >= MAX_LATENCY_US);
    }
}
