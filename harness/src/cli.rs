//! The command line: argument parsing and the subcommands, each returning a named exit code.

use crate::engine::{self, ExecOptions};
use crate::events::{self, Event, Format};
use crate::exit_codes;
use crate::journal::{Journal, Record};
use crate::rundir;
use crate::spec::{self, SuiteSet};
use adaptest_adapters::Target;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "adaptest",
    version,
    about = "Software–hardware adaptation testing: compatibility suites over targets × components, with certification reports."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plan (by default: the local host and the built-in suites).
    Run(RunArgs),
    /// List the available suites and their cases.
    List(ListArgs),
    /// Check plan and suite files; every problem is reported with file, line and field.
    Validate(ValidateArgs),
    /// Work with plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Print the environment of the local host as adaptest captures it.
    Env(EnvArgs),
    /// Render a report from a run directory or a results.json.
    Report(ReportArgs),
    /// Make a signing key pair for evidence bundles (Ed25519, or SM2 with --algorithm sm2).
    Keygen(crate::certcmd::KeygenArgs),
    /// Pack a run directory into one signed evidence bundle (.tar.gz).
    Bundle(crate::certcmd::BundleArgs),
    /// Check an evidence bundle offline: signature, every file's digest, nothing added or missing.
    Verify(crate::certcmd::VerifyArgs),
    /// Compare two runs: new failures, fixed, still failing, flaky, metric changes.
    Compare(crate::certcmd::CompareArgs),
    /// Build and list guest images for `qemu-system` targets.
    #[command(subcommand)]
    Image(crate::image_cmd::ImageCommand),
    /// Merge the run directories of `run --shard I/N` (all N) into one run and its reports.
    Merge(crate::shard::MergeArgs),
}

#[derive(Debug, Args)]
struct SuiteArgs {
    /// A directory of suite files (*.toml, recursively); repeatable.
    #[arg(long = "suites", value_name = "DIR")]
    suites: Vec<PathBuf>,
    /// Do not load the built-in suites.
    #[arg(long)]
    no_builtin: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The plan file; without it, the embedded default plan.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    plan: Option<PathBuf>,
    #[command(flatten)]
    suites: SuiteArgs,
    /// Combinations at once per target (default: the target's `slots`, else its CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Where run directories are created.
    #[arg(long, value_name = "DIR", default_value = "adaptest-runs")]
    out: PathBuf,
    /// Continue an interrupted run: only cases without a finished record run.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Stop scheduling new cases after the first failed or errored case.
    #[arg(long)]
    fail_fast: bool,
    /// How long a timed-out or interrupted command gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_grace)]
    grace_period: std::time::Duration,
    /// Run only shard I of N (1-based): every Nth combination in plan order; see `merge`.
    #[arg(long, value_name = "I/N", conflicts_with = "resume")]
    shard: Option<crate::shard::Shard>,
    /// Progress output.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    #[command(flatten)]
    cover: crate::certcmd::CoverArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    suites: SuiteArgs,
    /// Print the cases too.
    #[arg(long)]
    cases: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Plan or suite files (a file with a `[suite]` table is a suite).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    suites: SuiteArgs,
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Print the combinations a plan expands to, in execution order.
    Show(PlanShowArgs),
}

#[derive(Debug, Args)]
struct PlanShowArgs {
    /// The plan file; without it, the embedded default plan.
    file: Option<PathBuf>,
    #[command(flatten)]
    suites: SuiteArgs,
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

#[derive(Debug, Args)]
struct EnvArgs {
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Json,
    Junit,
    Html,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// A run directory or a results.json file.
    input: PathBuf,
    #[arg(long, value_enum, default_value = "html")]
    format: ReportFormat,
    /// Language of the HTML report: `en` or `zh-CN`.
    #[arg(long, default_value = "en")]
    lang: String,
    /// Write here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    cover: crate::certcmd::CoverArgs,
}

/// Parse the arguments, run the subcommand, return the exit code.
pub fn main() -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ADAPTEST_LOG")
                .unwrap_or_else(|_| "warn,lapin=off".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_codes::INVALID_INPUT
            } else {
                exit_codes::OK
            };
        }
    };
    match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::List(a) => cmd_list(a),
        Command::Validate(a) => cmd_validate(a),
        Command::Plan(PlanCommand::Show(a)) => cmd_plan_show(a),
        Command::Env(a) => cmd_env(a),
        Command::Report(a) => cmd_report(a),
        Command::Keygen(a) => crate::certcmd::cmd_keygen(a),
        Command::Bundle(a) => crate::certcmd::cmd_bundle(a),
        Command::Verify(a) => crate::certcmd::cmd_verify(a),
        Command::Compare(a) => crate::certcmd::cmd_compare(a),
        Command::Image(c) => crate::image_cmd::run(c),
        Command::Merge(a) => crate::shard::cmd_merge(a),
    }
}

/// Print a diagnostic (with source snippets) to stderr.
fn eprint_diag(d: impl miette::Diagnostic + Send + Sync + 'static) {
    eprintln!("{:?}", miette::Report::new(d));
}

/// Print every problem of a failed load on its own, then a one-line count.
fn eprint_load_error(e: spec::LoadError) {
    match e {
        spec::LoadError::Spec(errs) => {
            let n = errs.errors.len();
            for err in errs.errors {
                eprint_diag(err);
            }
            eprintln!("error: {n} problem(s) in the input; nothing was run");
        }
        other => eprint_diag(other),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn load_suites(a: &SuiteArgs) -> Result<SuiteSet, spec::LoadError> {
    spec::load_suites(!a.no_builtin, &a.suites, &[])
}

fn cmd_run(a: RunArgs) -> i32 {
    let (meta, plan, dir, resumed) = if let Some(dir) = &a.resume {
        match rundir::load_inputs(dir) {
            Ok((meta, plan)) => (meta, plan, dir.clone(), true),
            Err(rundir::RunDirError::Load(e)) => {
                eprint_load_error(e);
                return exit_codes::INVALID_INPUT;
            }
            Err(e) => {
                eprint_diag(e);
                return exit_codes::INVALID_INPUT;
            }
        }
    } else {
        let plan = match load_suites(&a.suites).and_then(|s| spec::load_plan(a.plan.as_deref(), &s))
        {
            Ok(p) => p,
            Err(e) => {
                eprint_load_error(e);
                return exit_codes::INVALID_INPUT;
            }
        };
        let run_id = rundir::new_run_id();
        match rundir::create(&a.out, &run_id, &plan) {
            Ok(dir) => (
                rundir::read_meta(&dir).expect("just written"),
                plan,
                dir,
                false,
            ),
            Err(e) => {
                eprint_diag(e);
                return exit_codes::INFRA_ERROR;
            }
        }
    };
    // `--shard I/N`, or the shard a resumed directory recorded: only its combinations run.
    let plan = match crate::shard::apply(&dir, a.shard, plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}", engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    let rt = runtime();
    rt.block_on(run_plan(a, meta, plan, dir, resumed))
}

async fn run_plan(
    a: RunArgs,
    meta: rundir::RunMeta,
    plan: spec::Plan,
    dir: PathBuf,
    resumed: bool,
) -> i32 {
    let journal_path = dir.join("journal.jsonl");
    let prior = match rundir::journal_records(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    let journal = match Journal::open(&journal_path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {}", engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    let session = Record::Session {
        started_at: jiff::Timestamp::now().to_string(),
        resumed,
        harness_version: env!("CARGO_PKG_VERSION").into(),
    };
    if let Err(e) = journal.append(&session) {
        eprintln!("error: {}", engine::error_chain(&e));
        return exit_codes::INFRA_ERROR;
    }
    let done: HashSet<(String, String)> = prior
        .iter()
        .filter(|(_, r)| r.is_final())
        .map(|(k, _)| k.clone())
        .collect();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(events::report(rx, a.format));
    let total: usize = plan.combinations.iter().map(|c| c.suite.cases.len()).sum();
    let _ = tx.send(Event::RunStarted {
        run_id: meta.run_id.clone(),
        run_dir: dir.display().to_string(),
        combinations: plan.combinations.len(),
        cases: total,
        already_done: done.len(),
        resumed,
    });
    let cancel = CancellationToken::new();
    let signals = {
        let cancel = cancel.clone();
        let tx = tx.clone();
        // Registered here, before any target starts, not on the task's first poll: a Ctrl-C
        // that came before that poll would have killed the process the default way.
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            let _ = tx.send(Event::Interrupted {
                reason: format!("{which} received"),
            });
            cancel.cancel();
        })
    };
    let opts = ExecOptions {
        jobs: a.jobs.map(|j| j as usize),
        fail_fast: a.fail_fast,
        grace: a.grace_period,
    };
    let exec = engine::execute(
        &plan,
        engine::Session {
            run_id: meta.run_id.clone(),
            run_dir: dir.clone(),
            journal,
            done,
        },
        &opts,
        tx.clone(),
        cancel.clone(),
    )
    .await;
    signals.abort();
    let exec = match exec {
        Ok(e) => e,
        Err(e) => {
            drop(tx);
            let _ = reporter.await;
            eprintln!("error: {}", engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    let records = match rundir::journal_records(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    let mut envs = rundir::read_environments(&dir);
    envs.extend(exec.environments);
    let mut results =
        rundir::assemble(&meta, &plan, &records, envs, exec.stopped, &meta.created_at);
    a.cover.apply_to_run(&dir, resumed, &mut results.product);
    if let Err(e) = rundir::write_reports(&dir, &results) {
        eprintln!(
            "error: failed to write the reports: {}",
            engine::error_chain(e.as_ref())
        );
        return exit_codes::INFRA_ERROR;
    }
    let mut code = exit_codes::for_results(
        &results,
        exec.stopped == Some(engine::StopReason::Interrupted),
    );
    if !exec.target_errors.is_empty() && code == exit_codes::OK {
        code = exit_codes::INFRA_ERROR;
    }
    let _ = tx.send(Event::RunFinished {
        run_dir: dir.display().to_string(),
        summary: results.summary.clone(),
        verdict: results.certification.verdict,
        exit_code: code,
    });
    drop(tx);
    let _ = reporter.await;
    if a.format == Format::Human {
        println!(
            "verdict: {}",
            crate::verdict::label(results.certification.verdict)
        );
    }
    code
}

fn cmd_list(a: ListArgs) -> i32 {
    let suites = match load_suites(&a.suites) {
        Ok(s) => s,
        Err(e) => {
            eprint_load_error(e);
            return exit_codes::INVALID_INPUT;
        }
    };
    for s in suites.values() {
        println!(
            "{:<20} {:<8} {} / {} ({} cases, {})",
            s.id,
            s.component,
            s.title,
            s.title_zh,
            s.cases.len(),
            s.source.name
        );
        if a.cases {
            for c in &s.cases {
                let level = match c.level {
                    adaptest_reports::Level::Mandatory => "mandatory",
                    adaptest_reports::Level::Optional => "optional",
                };
                println!("    {:<28} {:<9} {} / {}", c.id, level, c.title, c.title_zh);
            }
        }
    }
    exit_codes::OK
}

fn cmd_validate(a: ValidateArgs) -> i32 {
    let mut suite_files = Vec::new();
    let mut plan_files = Vec::new();
    let mut failed = false;
    for f in &a.files {
        match spec::read_source(f) {
            Ok(src) if spec::looks_like_suite(&src.text) => suite_files.push(f.clone()),
            Ok(_) => plan_files.push(f.clone()),
            Err(e) => {
                eprint_load_error(e);
                failed = true;
            }
        }
    }
    // Suites first: plans refer to them.
    let suites = match spec::load_suites(!a.suites.no_builtin, &a.suites.suites, &suite_files) {
        Ok(s) => {
            for f in &suite_files {
                let name = f.display().to_string();
                if let Some(s) = s.values().find(|s| s.source.name == name) {
                    println!("ok: {name}: suite {} ({} cases)", s.id, s.cases.len());
                }
            }
            s
        }
        Err(e) => {
            eprint_load_error(e);
            failed = true;
            // Plans can still be checked against the suites that did load.
            spec::load_suites(!a.suites.no_builtin, &a.suites.suites, &[]).unwrap_or_default()
        }
    };
    for f in &plan_files {
        match spec::load_plan(Some(f), &suites) {
            Ok(p) => println!(
                "ok: {}: plan with {} combination(s)",
                f.display(),
                p.combinations.len()
            ),
            Err(e) => {
                eprint_load_error(e);
                failed = true;
            }
        }
    }
    if failed {
        exit_codes::INVALID_INPUT
    } else {
        exit_codes::OK
    }
}

fn cmd_plan_show(a: PlanShowArgs) -> i32 {
    let plan = match load_suites(&a.suites).and_then(|s| spec::load_plan(a.file.as_deref(), &s)) {
        Ok(p) => p,
        Err(e) => {
            eprint_load_error(e);
            return exit_codes::INVALID_INPUT;
        }
    };
    match a.format {
        Format::Json => {
            let combos: Vec<serde_json::Value> = plan
                .combinations
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id, "target": c.target, "component": c.component,
                        "component_kind": c.component_kind, "suite": c.suite.id,
                        "cases": c.suite.cases.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "plan": plan.source.name,
                "product": plan.product,
                "combinations": combos,
            });
            println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        }
        Format::Human => {
            println!(
                "plan {} — {} {} ({})",
                plan.source.name, plan.product.name, plan.product.version, plan.product.vendor
            );
            for c in &plan.combinations {
                println!("  {:<40} {} case(s)", c.id, c.suite.cases.len());
            }
            let total: usize = plan.combinations.iter().map(|c| c.suite.cases.len()).sum();
            println!(
                "{} combination(s), {} case(s)",
                plan.combinations.len(),
                total
            );
        }
    }
    exit_codes::OK
}

fn cmd_env(a: EnvArgs) -> i32 {
    let rt = runtime();
    let target = adaptest_adapters::target::LocalTarget::new("local");
    match rt.block_on(target.environment()) {
        Ok(env) => {
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&env).expect("json")),
                Format::Human => {
                    let gib = env.memory_bytes as f64 / (1u64 << 30) as f64;
                    println!("arch        {}", env.arch);
                    println!(
                        "cpu         {} ({}), {} cores",
                        env.cpu_model, env.cpu_vendor, env.cores
                    );
                    println!("memory      {gib:.1} GiB, page size {}", env.page_size);
                    println!(
                        "os          {} ({} {})",
                        env.os_name, env.os_id, env.os_version
                    );
                    println!("kernel      {}", env.kernel);
                    println!("libc        {}", env.libc);
                    println!("hostname    {}", env.hostname);
                    for (k, v) in &env.extra {
                        println!("{k:<11} {v}");
                    }
                }
            }
            exit_codes::OK
        }
        Err(e) => {
            eprintln!("error: {}", engine::error_chain(&e));
            exit_codes::INFRA_ERROR
        }
    }
}

fn cmd_report(a: ReportArgs) -> i32 {
    let path = if a.input.is_dir() {
        a.input.join("results.json")
    } else {
        a.input.clone()
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: failed to read {}: {e}", path.display());
            return exit_codes::INVALID_INPUT;
        }
    };
    let mut results = match adaptest_reports::from_json(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {}", path.display(), engine::error_chain(&e));
            return exit_codes::INVALID_INPUT;
        }
    };
    a.cover.apply(&mut results.product);
    let lang = match a.lang.parse::<adaptest_reports::Lang>() {
        Ok(l) => l,
        Err(_) => {
            eprintln!(
                "error: --lang: unknown language `{}` (use en or zh-CN)",
                a.lang
            );
            return exit_codes::INVALID_INPUT;
        }
    };
    let rendered = match a.format {
        ReportFormat::Json => adaptest_reports::to_json(&results),
        ReportFormat::Junit => adaptest_reports::to_junit(&results),
        // The fingerprint is that of the file as stored, whatever the cover flags change.
        ReportFormat::Html => adaptest_reports::render_html(
            &results,
            lang,
            &adaptest_reports::fingerprint::fingerprint(text.as_bytes()),
        ),
    };
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", engine::error_chain(&e));
            return exit_codes::INFRA_ERROR;
        }
    };
    match &a.output {
        Some(p) => {
            if let Err(e) = write_file(p, &rendered) {
                eprintln!("error: failed to write {}: {e}", p.display());
                return exit_codes::INFRA_ERROR;
            }
        }
        None => print!("{rendered}"),
    }
    exit_codes::OK
}

fn write_file(p: &Path, s: &str) -> std::io::Result<()> {
    std::fs::write(p, s)
}

/// `--grace-period`, in the project's one duration grammar.
fn parse_grace(
    text: &str,
) -> Result<std::time::Duration, adaptest_adapters::duration::DurationError> {
    adaptest_adapters::duration::parse_duration(text)
}
