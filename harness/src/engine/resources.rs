//! Resource profile of a component: one plain-shell loop per phase on the target reads
//! `/proc` (the component's processes, the machine's CPU and memory) every `sample_interval`
//! and prints one line per sample; the harness streams the samples to
//! `resources/<target>/<component>.samples` in the run directory, keeps per-phase aggregates
//! (min/avg/max/p95/fluctuation) and judges the plan's thresholds as the `resources` item.

use crate::spec::plan::{ProcessSelector, ResourceSpec};
use adaptest_adapters::target::{ExecOutput, ExecRequest, Target, TargetError, shell_quote};
use adaptest_schema::results::Metric;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The sampler: builtins only inside the loop (`read`, globbing, `$(( ))`, `[`), plus the one
/// `sleep` per sample. Prints `h HZ PAGESIZE`, then one `s …` line per sample.
const SAMPLER: &str = r#"hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
pg=$(getconf PAGESIZE 2>/dev/null || echo 4096)
echo "h $hz $pg"
while [ ! -e "$STOP" ]; do
  pids=
  case $SEL in
    pid_file) [ -r "$ARG" ] && read -r pids < "$ARG" ;;
    process) for d in /proc/[0-9]*; do
        [ -r "$d/comm" ] || continue
        read -r c < "$d/comm" || continue
        case $c in $ARG) pids="$pids ${d#/proc/}";; esac
      done ;;
    systemd_unit) for f in /sys/fs/cgroup/system.slice/$ARG/cgroup.procs /sys/fs/cgroup/systemd/system.slice/$ARG/cgroup.procs; do
        [ -r "$f" ] && while read -r p; do pids="$pids $p"; done < "$f"
      done ;;
  esac
  read -r up _ < /proc/uptime
  n=0 cpu=0 rss=0 thr=0 fds=0 rb=0 wb=0
  for p in $pids; do
    [ -r "/proc/$p/stat" ] || continue
    read -r st < "/proc/$p/stat" || continue
    set -- ${st##*)}
    [ $# -ge 22 ] || continue
    n=$((n+1)) cpu=$((cpu+${12}+${13})) thr=$((thr+${18})) rss=$((rss+${22}))
    set -- /proc/$p/fd/*
    [ -e "$1" ] && fds=$((fds+$#))
    [ -r "/proc/$p/io" ] && while read -r k v; do
      case $k in read_bytes:) rb=$((rb+v));; write_bytes:) wb=$((wb+v));; esac
    done < "/proc/$p/io"
  done
  read -r _ u ni sy id io ir so st2 _ < /proc/stat
  mt=0 ma=0
  while read -r k v _; do
    case $k in MemTotal:) mt=$v;; MemAvailable:) ma=$v; break;; esac
  done < /proc/meminfo
  echo "s $up $n $cpu $rss $thr $fds $rb $wb $((u+ni+sy+id+io+ir+so+st2)) $((id+io)) $mt $ma"
  sleep $IV
done
"#;

/// The sampler command for `spec`, stopping when the file `stop` exists.
pub(super) fn sampler_command(spec: &ResourceSpec, stop: &str) -> String {
    let (sel, arg) = match &spec.select {
        ProcessSelector::PidFile(p) => ("pid_file", p),
        ProcessSelector::Process(p) => ("process", p),
        ProcessSelector::SystemdUnit(u) => ("systemd_unit", u),
    };
    let iv = spec.sample_interval.as_secs_f64();
    format!(
        "STOP={} SEL={sel} ARG={} IV={iv:.3}\n{SAMPLER}",
        shell_quote(stop),
        shell_quote(arg)
    )
}

/// One derived sample (the rates are over the interval since the previous sample).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    pub(super) at_s: f64,
    pub(super) processes: u32,
    pub(super) cpu_pct: f64,
    pub(super) rss_bytes: f64,
    pub(super) threads: f64,
    pub(super) fds: f64,
    pub(super) read_bps: f64,
    pub(super) write_bps: f64,
    pub(super) machine_cpu_pct: f64,
    pub(super) machine_mem_pct: f64,
}

/// The measured quantities, in the order of [`Sample::values`]: (name, unit).
pub(super) const QUANTITIES: [(&str, &str); 8] = [
    ("cpu_pct", "%"),
    ("rss_bytes", "B"),
    ("threads", ""),
    ("fds", ""),
    ("read_bps", "B/s"),
    ("write_bps", "B/s"),
    ("machine_cpu_pct", "%"),
    ("machine_mem_pct", "%"),
];

impl Sample {
    fn values(&self) -> [f64; 8] {
        [
            self.cpu_pct,
            self.rss_bytes,
            self.threads,
            self.fds,
            self.read_bps,
            self.write_bps,
            self.machine_cpu_pct,
            self.machine_mem_pct,
        ]
    }
}

/// Parse the sampler's output into samples: the first `s` line only primes the deltas.
/// Samples in which no process was found are kept with `processes == 0` and zero values.
pub(super) fn parse_samples(out: &str) -> Vec<Sample> {
    let mut hz = 100.0;
    let mut page = 4096.0;
    let mut prev: Option<[f64; 12]> = None;
    let mut samples = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"h") if f.len() == 3 => {
                hz = f[1].parse().unwrap_or(100.0);
                page = f[2].parse().unwrap_or(4096.0);
            }
            Some(&"s") if f.len() == 13 => {
                let mut v = [0f64; 12];
                if f[1..]
                    .iter()
                    .zip(v.iter_mut())
                    .any(|(t, x)| t.parse().map(|p| *x = p).is_err())
                {
                    continue;
                }
                if let Some(p) = prev {
                    let dt = (v[0] - p[0]).max(1e-3);
                    let found = v[1] as u32;
                    let dtotal = (v[8] - p[8]).max(1.0);
                    // A process that restarted between samples has smaller counters: no rate.
                    let rate = |a: f64, b: f64| if a >= b { (a - b) / dt } else { 0.0 };
                    samples.push(Sample {
                        at_s: v[0],
                        processes: found,
                        cpu_pct: rate(v[2], p[2]) / hz * 100.0,
                        rss_bytes: v[3] * page,
                        threads: v[4],
                        fds: v[5],
                        read_bps: rate(v[6], p[6]),
                        write_bps: rate(v[7], p[7]),
                        machine_cpu_pct: (100.0 * (1.0 - (v[9] - p[9]) / dtotal)).clamp(0.0, 100.0),
                        machine_mem_pct: if v[10] > 0.0 {
                            100.0 * (1.0 - v[11] / v[10])
                        } else {
                            0.0
                        },
                    });
                }
                prev = Some(v);
            }
            _ => {}
        }
    }
    samples
}

/// min/avg/max/p95 of one quantity over one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stats {
    pub(super) min: f64,
    pub(super) avg: f64,
    pub(super) max: f64,
    pub(super) p95: f64,
}

impl Stats {
    fn of(values: &mut [f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(|a, b| a.total_cmp(b));
        let n = values.len();
        let p95 = values[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
        Some(Stats {
            min: values[0],
            avg: values.iter().sum::<f64>() / n as f64,
            max: values[n - 1],
            p95,
        })
    }
}

/// The aggregates of one phase (idle, a suite).
#[derive(Debug, Clone)]
pub(super) struct Phase {
    pub(super) name: String,
    /// Samples in which the component's processes were found.
    pub(super) samples: usize,
    /// Samples in which none was.
    pub(super) missing: usize,
    /// Per quantity of [`QUANTITIES`]; `None` without samples.
    pub(super) stats: [Option<Stats>; 8],
}

impl Phase {
    pub(super) fn of(name: &str, samples: &[Sample]) -> Phase {
        let found: Vec<&Sample> = samples.iter().filter(|s| s.processes > 0).collect();
        let stats = std::array::from_fn(|q| {
            let mut v: Vec<f64> = found.iter().map(|s| s.values()[q]).collect();
            Stats::of(&mut v)
        });
        Phase {
            name: name.to_string(),
            samples: found.len(),
            missing: samples.len() - found.len(),
            stats,
        }
    }
}

/// A running sampler: stopped (its stop file created) by [`Sampler::finish`].
pub(super) struct Sampler {
    target: Arc<dyn Target>,
    stop: String,
    task: tokio::task::JoinHandle<Result<ExecOutput, TargetError>>,
}

static SAMPLERS: AtomicU64 = AtomicU64::new(0);

impl Sampler {
    pub(super) fn start(
        target: Arc<dyn Target>,
        spec: &ResourceSpec,
        workdir: &str,
        cancel: &CancellationToken,
    ) -> Sampler {
        let n = SAMPLERS.fetch_add(1, Ordering::Relaxed);
        let stop = format!(
            "{workdir}/.adaptest-sampler-{}-{n}.stop",
            std::process::id()
        );
        let mut req = ExecRequest::new(
            sampler_command(spec, &stop),
            Duration::from_secs(30 * 24 * 3600),
        );
        req.capture_limit = 64 << 20;
        let t = target.clone();
        let cancel = cancel.clone();
        let task = tokio::spawn(async move { t.exec(req, &cancel).await });
        Sampler { target, stop, task }
    }

    /// Stop the loop (at its next sample) and parse what it printed.
    pub(super) async fn finish(self) -> Result<Vec<Sample>, String> {
        let touch = ExecRequest::new(
            format!(": > {}", shell_quote(&self.stop)),
            Duration::from_secs(60),
        );
        let never = CancellationToken::new();
        if let Err(e) = self.target.exec(touch, &never).await {
            self.task.abort();
            return Err(format!("cannot stop the resource sampler: {e}"));
        }
        let out = match self.task.await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(format!("resource sampler: {e}")),
            Err(e) => return Err(format!("resource sampler: {e}")),
        };
        let rm = ExecRequest::new(
            format!("rm -f {}", shell_quote(&self.stop)),
            Duration::from_secs(60),
        );
        let _ = self.target.exec(rm, &never).await;
        Ok(parse_samples(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Append a phase's samples to the pair's samples file (one line each: phase, time on the
/// target's clock, then [`QUANTITIES`]).
pub(super) fn stream_samples(
    run_dir: &Path,
    target: &str,
    component: &str,
    phase: &str,
    samples: &[Sample],
) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = run_dir.join("resources").join(target);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{component}.samples"));
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = String::new();
    if new {
        text.push_str("# phase\tat_s\tprocesses");
        for (q, _) in QUANTITIES {
            let _ = write!(text, "\t{q}");
        }
        text.push('\n');
    }
    for s in samples {
        let _ = write!(text, "{phase}\t{:.2}\t{}", s.at_s, s.processes);
        for v in s.values() {
            let _ = write!(text, "\t{v:.2}");
        }
        text.push('\n');
    }
    f.write_all(text.as_bytes())
}

/// The `resources` item: metrics per phase and quantity, and the thresholds judged.
/// `Err(reasons)`: the thresholds missed, or nothing could be measured.
pub(super) fn judge(spec: &ResourceSpec, phases: &[Phase]) -> (Vec<Metric>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut misses = Vec::new();
    for p in phases {
        metrics.push(Metric {
            name: format!("{}/samples", p.name),
            value: p.samples as f64,
            unit: String::new(),
            threshold: None,
        });
        for (q, (name, unit)) in QUANTITIES.iter().enumerate() {
            let Some(s) = p.stats[q] else { continue };
            for (stat, v) in [
                ("min", s.min),
                ("avg", s.avg),
                ("max", s.max),
                ("p95", s.p95),
                ("fluctuation", s.max - s.min),
            ] {
                let threshold = match (*name, stat) {
                    ("cpu_pct", "avg") if p.name == IDLE => {
                        spec.cpu_idle_max.map(|m| format!("<= {m}"))
                    }
                    ("cpu_pct", "p95") => spec.cpu_max.map(|m| format!("<= {m}")),
                    ("rss_bytes", "max") => spec.rss_max.map(|m| format!("<= {m}")),
                    _ => None,
                };
                metrics.push(Metric {
                    name: format!("{}/{name}.{stat}", p.name),
                    value: (v * 100.0).round() / 100.0,
                    unit: unit.to_string(),
                    threshold,
                });
            }
        }
    }
    let idle = phases.iter().find(|p| p.name == IDLE);
    match idle.and_then(|p| p.stats[0]) {
        None => misses.push(format!(
            "no sample of the component's processes in the idle window ({})",
            describe(&spec.select)
        )),
        Some(s) => {
            if let Some(max) = spec.cpu_idle_max
                && s.avg > max
            {
                misses.push(format!(
                    "idle CPU {:.2}% exceeds cpu_idle_max {max}%",
                    s.avg
                ));
            }
        }
    }
    for p in phases {
        if p.samples == 0 {
            if p.name != IDLE {
                misses.push(format!(
                    "phase `{}`: no sample of the component's processes ({})",
                    p.name,
                    describe(&spec.select)
                ));
            }
            continue;
        }
        if let (Some(max), Some(s)) = (spec.cpu_max, p.stats[0])
            && s.p95 > max
        {
            misses.push(format!(
                "phase `{}`: CPU p95 {:.2}% exceeds cpu_max {max}%",
                p.name, s.p95
            ));
        }
        if let (Some(max), Some(s)) = (spec.rss_max, p.stats[1])
            && s.max > max as f64
        {
            misses.push(format!(
                "phase `{}`: RSS {} bytes exceeds rss_max {max} bytes",
                p.name, s.max as u64
            ));
        }
    }
    (metrics, misses)
}

/// Name of the idle phase.
pub(super) const IDLE: &str = "idle";

fn describe(s: &ProcessSelector) -> String {
    match s {
        ProcessSelector::PidFile(p) => format!("pid_file {p}"),
        ProcessSelector::Process(p) => format!("process `{p}`"),
        ProcessSelector::SystemdUnit(u) => format!("systemd_unit {u}"),
    }
}

/// Run `work` while the pair's processes are sampled as phase `phase` (nothing is sampled for
/// a pair without `[component.resources]`); the samples go to the run directory and the
/// phase's aggregates to the pair.
pub(super) async fn sampled<F: std::future::Future>(
    ctx: &super::slots::Ctx,
    pair: Option<&super::slots::PairSlot>,
    workdir: &str,
    phase: &str,
    work: F,
) -> F::Output {
    let Some((pair, spec)) = pair.and_then(|p| p.spec.resources.as_ref().map(|s| (p, s))) else {
        return work.await;
    };
    let target = ctx.targets[&pair.target].target.clone();
    let sampler = Sampler::start(target, spec, workdir, &ctx.cancel);
    let out = work.await;
    let phase = match sampler.finish().await {
        Ok(samples) => {
            if let Err(e) =
                stream_samples(&ctx.run_dir, &pair.target, &pair.spec.id, phase, &samples)
            {
                tracing::warn!("cannot write the resource samples: {e}");
            }
            Ok(Phase::of(phase, &samples))
        }
        Err(why) => Err(format!("phase `{phase}`: {why}")),
    };
    pair.profile.lock().expect("not poisoned").push(phase);
    out
}

/// The idle window before a pair's suites: nothing but the sampler runs.
pub(super) async fn idle_window(
    ctx: &super::slots::Ctx,
    pair: &super::slots::PairSlot,
    workdir: &str,
) {
    let Some(spec) = &pair.spec.resources else {
        return;
    };
    let wait = async {
        tokio::select! {
            () = tokio::time::sleep(spec.idle_window) => {}
            () = ctx.cancel.cancelled() => {}
        }
    };
    sampled(ctx, Some(pair), workdir, IDLE, wait).await;
}

/// Judge and journal the pair's `resources` item (at teardown, before `stop`).
pub(super) async fn record_profile(
    ctx: &super::slots::Ctx,
    pair: &super::slots::PairSlot,
) -> Result<(), super::EngineError> {
    use crate::kinds::CaseOutcome;
    use crate::spec::plan::RESOURCES_CASE;
    let (Some(spec), Some(combo)) = (&pair.spec.resources, &pair.lifecycle) else {
        return Ok(());
    };
    let Some(case) = combo.suite.cases.iter().find(|c| c.id == RESOURCES_CASE) else {
        return Ok(());
    };
    let results = std::mem::take(&mut *pair.profile.lock().expect("not poisoned"));
    let mut errors = Vec::new();
    let mut phases = Vec::new();
    for r in results {
        match r {
            Ok(p) => phases.push(p),
            Err(e) => errors.push(e),
        }
    }
    let (metrics, mut misses) = judge(spec, &phases);
    let mut log = String::new();
    for p in &phases {
        let _ = writeln!(
            log,
            "phase {}: {} samples ({} without the component's processes)",
            p.name, p.samples, p.missing
        );
    }
    let _ = writeln!(
        log,
        "samples: resources/{}/{}.samples",
        pair.target, pair.spec.id
    );
    let mut o = if !errors.is_empty() {
        CaseOutcome::error(errors.join("; "))
    } else if misses.is_empty() {
        CaseOutcome::passed()
    } else {
        for m in &misses {
            let _ = writeln!(log, "MISS: {m}");
        }
        CaseOutcome::failed(std::mem::take(&mut misses).join("; "))
    };
    o.metrics = metrics;
    o.log = log;
    super::record::record(ctx, combo, case, 1, 0, o).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_give_rates_over_the_interval_and_the_first_line_only_primes() {
        let out = "h 100 4096\n\
                   s 10.00 1 100 1000 4 10 0 0 1000 800 2000 1000\n\
                   s 11.00 1 150 1000 4 11 4096 0 1100 850 2000 500\n\
                   s 12.00 0 0 0 0 0 0 0 1200 950 2000 500\n";
        let s = parse_samples(out);
        assert_eq!(s.len(), 2);
        assert!((s[0].cpu_pct - 50.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s[0].rss_bytes, 1000.0 * 4096.0);
        assert_eq!(s[0].read_bps, 4096.0);
        assert!((s[0].machine_cpu_pct - 50.0).abs() < 1e-9);
        assert!((s[0].machine_mem_pct - 75.0).abs() < 1e-9);
        // The process vanished: no negative rates.
        assert_eq!(s[1].processes, 0);
        assert_eq!(s[1].cpu_pct, 0.0);
        let p = Phase::of("idle", &s);
        assert_eq!((p.samples, p.missing), (1, 1));
    }

    #[test]
    fn p95_and_thresholds() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of(&mut v).unwrap();
        assert_eq!((s.min, s.max, s.p95), (1.0, 100.0, 95.0));
        let spec = ResourceSpec {
            select: ProcessSelector::Process("x".into()),
            sample_interval: Duration::from_secs(1),
            idle_window: Duration::from_secs(1),
            cpu_idle_max: Some(1.0),
            cpu_max: None,
            rss_max: Some(100),
        };
        let sample = |cpu, rss| Sample {
            processes: 1,
            cpu_pct: cpu,
            rss_bytes: rss,
            ..Sample::default()
        };
        let phases = [
            Phase::of(IDLE, &[sample(0.5, 50.0)]),
            Phase::of("mw.kv", &[sample(2.0, 200.0)]),
        ];
        let (metrics, misses) = judge(&spec, &phases);
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert!(misses[0].contains("mw.kv") && misses[0].contains("rss_max"));
        assert!(
            metrics
                .iter()
                .any(|m| m.name == "idle/cpu_pct.avg" && m.threshold.as_deref() == Some("<= 1"))
        );
    }
}
