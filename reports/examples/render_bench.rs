//! Renders a generated run of 100,000 cases over 10 combinations as JSON, JUnit and the HTML
//! certification report (English and Chinese, with verdicts, waivers and the fingerprint) and
//! prints how long each took and how big each output is.
//!
//! ```text
//! cargo run --release -p adaptest-reports --example render_bench [-- OUT_DIR]
//! /usr/bin/time -v target/release/examples/render_bench      # peak RSS
//! ```
//!
//! With `OUT_DIR`, the outputs are written there (`results.json`, `junit.xml`, `report.html`,
//! `report.zh-CN.html`, as in a run directory) so they can be opened. A counting allocator reports the peak heap each
//! renderer needs on top of the results it renders.

use adaptest_reports::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const COMBINATIONS: usize = 10;
const CASES_PER_COMBINATION: usize = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir)?;
    }
    let write = |name: &str, content: &str| -> std::io::Result<()> {
        match &out_dir {
            Some(dir) => std::fs::write(dir.join(name), content),
            None => Ok(()),
        }
    };

    let start = Instant::now();
    let results = generate();
    println!(
        "generated {} cases in {} combinations in {:.0?}; results hold {:.1} MiB of heap",
        results.summary.total,
        results.combinations.len(),
        start.elapsed(),
        mib(heap::current())
    );

    // Like a run's end (`rundir::write_reports`): render each output, write it, drop it; the
    // HTML reports (both languages) show the fingerprint of results.json.
    let (json, json_time, json_peak) = measure(|| to_json(&results))?;
    println!(
        "to_json   {json_time:>9.1?}  {:>6.1} MiB  peak heap +{:.1} MiB",
        mib(json.len()),
        mib(json_peak)
    );
    let (fingerprint, fp_time, _) =
        measure(|| Ok(adaptest_reports::fingerprint::fingerprint(json.as_bytes())))?;
    println!("sha256    {fp_time:>9.1?}  {fingerprint}");
    write("results.json", &json)?;
    let (parsed, parse_time, parse_peak) = measure(|| from_json(&json))?;
    println!(
        "from_json {parse_time:>9.1?}  {:>10}  peak heap +{:.1} MiB (not in the total)",
        "-",
        mib(parse_peak)
    );
    assert_eq!(parsed.summary, results.summary);
    drop((json, parsed));

    let (junit, junit_time, junit_peak) = measure(|| to_junit(&results))?;
    println!(
        "to_junit  {junit_time:>9.1?}  {:>6.1} MiB  peak heap +{:.1} MiB",
        mib(junit.len()),
        mib(junit_peak)
    );
    write("junit.xml", &junit)?;
    drop(junit);

    let mut html_total = Duration::ZERO;
    for (lang, name) in [(Lang::En, "report.html"), (Lang::ZhCn, "report.zh-CN.html")] {
        let (html, html_time, html_peak) = measure(|| render_html(&results, lang, &fingerprint))?;
        println!(
            "html {:<5}{html_time:>9.1?}  {:>6.1} MiB  peak heap +{:.1} MiB",
            lang.code(),
            mib(html.len()),
            mib(html_peak)
        );
        html_total += html_time;
        write(name, &html)?;
    }

    println!(
        "total     {:>9.1?}  (json + sha256 + junit + html en + html zh-CN)",
        json_time + fp_time + junit_time + html_total
    );
    println!(
        "peak heap {:>9.1} MiB over the whole process",
        mib(heap::peak_ever())
    );
    Ok(())
}

/// Run `render`, returning its output, how long it took and how much heap it used at most on
/// top of what was allocated before.
fn measure<T>(
    render: impl FnOnce() -> Result<T, RenderError>,
) -> Result<(T, Duration, usize), RenderError> {
    let before = heap::current();
    heap::reset_peak();
    let start = Instant::now();
    let output = render()?;
    let elapsed = start.elapsed();
    Ok((output, elapsed, heap::peak() - before))
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A counting allocator: current and peak heap use.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static CURRENT: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static PEAK_EVER: AtomicUsize = AtomicUsize::new(0);

    struct Counting;

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    fn grew(by: usize) {
        let now = CURRENT.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(now, Relaxed);
        PEAK_EVER.fetch_max(now, Relaxed);
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                grew(layout.size());
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`/`realloc`).
            unsafe { System.dealloc(ptr, layout) };
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded contract, as above.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                CURRENT.fetch_sub(layout.size(), Relaxed);
                grew(new_size);
            }
            new
        }
    }

    pub(crate) fn current() -> usize {
        CURRENT.load(Relaxed)
    }

    pub(crate) fn peak() -> usize {
        PEAK.load(Relaxed)
    }

    pub(crate) fn reset_peak() {
        PEAK.store(current(), Relaxed);
    }

    /// The highest heap use since the start, whatever `reset_peak` did.
    pub(crate) fn peak_ever() -> usize {
        PEAK_EVER.load(Relaxed)
    }
}

/// 100,000 cases: mostly passed, with about 1% flaky, 1% failed, 0.3% errors, 0.5% skipped and
/// 0.2% not run; every case has a short stdout, failures a longer one plus stderr.
fn generate() -> RunResults {
    let targets = [
        ("local", "local", "x86_64"),
        ("lab-arm", "ssh", "aarch64"),
        ("qemu-la64", "qemu-system", "loongarch64"),
    ];
    let components = [
        ("os", "os"),
        ("postgres", "database"),
        ("redis", "database"),
        ("nginx", "middleware"),
    ];

    let environments = targets
        .iter()
        .map(|&(target, kind, arch)| {
            let env = Environment {
                target: target.to_owned(),
                target_kind: kind.to_owned(),
                arch: arch.to_owned(),
                cpu_model: format!("{arch} reference CPU"),
                cpu_vendor: "Vendor".to_owned(),
                cores: 16,
                memory_bytes: 64 << 30,
                page_size: 4096,
                os_id: "openeuler".to_owned(),
                os_version: "24.03".to_owned(),
                os_name: "openEuler 24.03 (LTS)".to_owned(),
                kernel: "6.6.0".to_owned(),
                libc: "glibc 2.38".to_owned(),
                hostname: format!("{target}.lab"),
                components: components
                    .iter()
                    .map(|&(c, _)| (c.to_owned(), "1.0.0".to_owned()))
                    .collect(),
                extra: BTreeMap::new(),
                hardware: None,
            };
            (target.to_owned(), env)
        })
        .collect();

    let combinations = (0..COMBINATIONS)
        .map(|n| {
            let (target, _, _) = targets[n % targets.len()];
            let (component, component_kind) = components[n % components.len()];
            let suite = format!("{component}-compat");
            let cases = (0..CASES_PER_COMBINATION)
                .map(|i| generate_case(&suite, n * CASES_PER_COMBINATION + i))
                .collect();
            CombinationResult {
                id: format!("{target}/{component}/{suite}"),
                target: target.to_owned(),
                component: component.to_owned(),
                component_kind: component_kind.to_owned(),
                suite_title: format!("{component} compatibility"),
                suite_title_zh: format!("{component} 兼容性"),
                suite,
                suite_version: "1.0.0".to_owned(),
                cases,
                duration_ms: 3_600_000,
                verdict: Verdict::fail_closed(),
            }
        })
        .collect();

    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        harness: HarnessInfo {
            name: "adaptest".to_owned(),
            version: "0.1.0".to_owned(),
        },
        run: RunInfo {
            id: "bench-run".to_owned(),
            started_at: "2026-01-27T08:00:00Z".to_owned(),
            finished_at: "2026-01-27T18:00:00Z".to_owned(),
            duration_ms: 36_000_000,
            completion: Completion::Complete,
            plan: "plans/bench.toml".to_owned(),
        },
        product: Product {
            name: "Bench product".to_owned(),
            version: "1.0".to_owned(),
            vendor: "Bench vendor".to_owned(),
            ..Product::default()
        },
        environments,
        combinations,
        summary: Summary::default(),
        certification: Certification::default(),
    };
    results.recount();
    // Two waivers, as the harness would record them: an active one covering the failures of the
    // first combination, an expired one matching those of the second.
    let waiver = |n: usize, expires: &str, status| WaiverRecord {
        case: format!("{}/*", results.combinations[n].suite),
        target: Some(results.combinations[n].target.clone()),
        component: None,
        reason: "known issue, fixed in the next release".to_owned(),
        owner: "qa@bench.example".to_owned(),
        expires: expires.to_owned(),
        status,
        matched: 0,
    };
    results.certification.waivers = vec![
        waiver(0, "2027-03-31", WaiverStatus::Active),
        waiver(1, "2025-12-31", WaiverStatus::Expired),
    ];
    for n in 0..2 {
        for case in &mut results.combinations[n].cases {
            if matches!(case.status, Status::Failed | Status::Error) {
                case.waiver = Some(n as u32);
                results.certification.waivers[n].matched += 1;
            }
        }
    }
    adaptest_reports::verdict::judge(&mut results, "2026-01-27");
    results
}

fn generate_case(suite: &str, n: usize) -> CaseResult {
    let (status, reason) = match n % 1000 {
        0..=9 => (Status::Flaky, Some("timed out on the first attempt")),
        10..=19 => (Status::Failed, Some("expected exit code 0, got 1")),
        20..=22 => (Status::Error, Some("ssh: connection reset by peer")),
        23..=27 => (Status::Skipped, Some("requires aarch64")),
        28..=29 => (Status::NotRun, Some("run interrupted")),
        _ => (Status::Passed, None),
    };
    let failing = matches!(status, Status::Failed | Status::Error);
    let stdout = if failing {
        format!("case {n}: checking <things> & stuff\n").repeat(100)
    } else {
        format!("case {n}: ok\n").repeat(16)
    };
    CaseResult {
        id: format!("{suite}.case-{n:06}"),
        title: format!("Check feature number {n}"),
        title_zh: format!("检查第 {n} 项功能"),
        level: if n.is_multiple_of(3) {
            Level::Optional
        } else {
            Level::Mandatory
        },
        status,
        reason: reason.map(str::to_owned),
        attempts: if status == Status::Flaky { 2 } else { 1 },
        duration_ms: (n % 5_000) as u64,
        exit_code: Some(i32::from(status == Status::Failed)),
        stdout,
        stderr: if failing {
            "error: something went wrong\n".repeat(40)
        } else {
            String::new()
        },
        log: Some(format!("logs/{suite}/case-{n:06}.log")),
        tags: vec!["generated".to_owned()],
        metrics: if n % 100 == 50 {
            vec![Metric {
                name: "throughput".to_owned(),
                value: n as f64 / 7.0,
                unit: "ops/s".to_owned(),
                threshold: Some(">= 100".to_owned()),
            }]
        } else {
            Vec::new()
        },
        waiver: None,
        sql_records: None,
        leaked: Vec::new(),
    }
}
