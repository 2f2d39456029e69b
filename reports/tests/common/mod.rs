//! A small but complete `RunResults` used by the renderer tests.

use adaptest_reports::*;
use std::collections::BTreeMap;

pub(crate) fn case(id: &str, status: Status, level: Level) -> CaseResult {
    CaseResult {
        id: id.to_owned(),
        title: format!("Title of {id}"),
        title_zh: format!("{id} 的名称"),
        level,
        status,
        reason: None,
        attempts: 1,
        duration_ms: 120,
        exit_code: Some(0),
        stdout: String::new(),
        stderr: String::new(),
        log: Some(format!("logs/{id}.log")),
        tags: vec!["smoke".to_owned()],
        metrics: Vec::new(),
        waiver: None,
        sql_records: None,
        leaked: Vec::new(),
    }
}

fn environment(target: &str, kind: &str, arch: &str) -> Environment {
    Environment {
        target: target.to_owned(),
        target_kind: kind.to_owned(),
        arch: arch.to_owned(),
        cpu_model: format!("{arch} test CPU"),
        cpu_vendor: "TestVendor".to_owned(),
        cores: 8,
        memory_bytes: 16 * (1 << 30),
        page_size: 4096,
        os_id: "debian".to_owned(),
        os_version: "12".to_owned(),
        os_name: "Debian GNU/Linux 12 (bookworm)".to_owned(),
        kernel: "6.1.0-28".to_owned(),
        libc: "glibc 2.36".to_owned(),
        hostname: format!("{target}-host"),
        components: BTreeMap::from([("postgres".to_owned(), "16.4".to_owned())]),
        extra: BTreeMap::new(),
        hardware: None,
    }
}

/// Two targets, three combinations, every status, a metric and hostile output.
pub(crate) fn sample() -> RunResults {
    let mut os_cases = vec![
        case("os.boot", Status::Passed, Level::Mandatory),
        case("os.users", Status::Passed, Level::Optional),
        case("os.flaky-net", Status::Flaky, Level::Mandatory),
        case("os.kernel-params", Status::Failed, Level::Mandatory),
        case("os.gpu", Status::Skipped, Level::Optional),
    ];
    os_cases[2].attempts = 3;
    os_cases[2].reason = Some("connection reset on attempt 1".to_owned());
    os_cases[3].reason = Some("vm.swappiness is 60, expected <= 10".to_owned());
    os_cases[3].exit_code = Some(1);
    os_cases[3].stdout = "<script>alert(1)</script>".to_owned();
    os_cases[3].stderr = "sysctl: permission denied & more".to_owned();
    os_cases[4].reason = Some("requires a GPU".to_owned());
    // An empty Chinese title: the zh-CN report falls back to the English one.
    os_cases[1].title_zh = String::new();

    let mut db_cases = vec![
        case("pg.connect", Status::Passed, Level::Mandatory),
        case("pg.tps", Status::Passed, Level::Optional),
        case("pg.replication", Status::Error, Level::Mandatory),
        case("pg.backup", Status::NotRun, Level::Optional),
    ];
    db_cases[1].metrics = vec![Metric {
        name: "tps".to_owned(),
        value: 1234.5,
        unit: "tx/s".to_owned(),
        threshold: Some(">= 1000".to_owned()),
    }];
    db_cases[2].reason = Some("ssh: connection refused".to_owned());
    db_cases[2].exit_code = None;
    db_cases[3].reason = Some("fail-fast after pg.replication".to_owned());

    let combinations = vec![
        CombinationResult {
            id: "local/os/os-basic".to_owned(),
            target: "local".to_owned(),
            component: "os".to_owned(),
            component_kind: "os".to_owned(),
            suite: "os-basic".to_owned(),
            suite_title: "OS basics".to_owned(),
            suite_title_zh: "操作系统基础".to_owned(),
            suite_version: "1.2.0".to_owned(),
            cases: os_cases,
            duration_ms: 4_000,
            verdict: Verdict::fail_closed(),
        },
        CombinationResult {
            id: "la64/postgres/pg-compat".to_owned(),
            target: "la64".to_owned(),
            component: "postgres".to_owned(),
            component_kind: "database".to_owned(),
            suite: "pg-compat".to_owned(),
            suite_title: "PostgreSQL compatibility".to_owned(),
            suite_title_zh: "PostgreSQL 兼容性".to_owned(),
            suite_version: "0.3.1".to_owned(),
            cases: db_cases,
            duration_ms: 65_000,
            verdict: Verdict::fail_closed(),
        },
        CombinationResult {
            id: "la64/os/os-basic".to_owned(),
            target: "la64".to_owned(),
            component: "os".to_owned(),
            component_kind: "os".to_owned(),
            suite: "os-basic".to_owned(),
            suite_title: "OS basics".to_owned(),
            suite_title_zh: "操作系统基础".to_owned(),
            suite_version: "1.2.0".to_owned(),
            cases: vec![case("os.boot", Status::Passed, Level::Mandatory)],
            duration_ms: 900,
            verdict: Verdict::fail_closed(),
        },
    ];

    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        harness: HarnessInfo {
            name: "adaptest".to_owned(),
            version: "0.1.0".to_owned(),
        },
        run: RunInfo {
            id: "20260127-083000-ab12".to_owned(),
            started_at: "2026-01-27T08:30:00Z".to_owned(),
            finished_at: "2026-01-27T08:31:10Z".to_owned(),
            duration_ms: 70_000,
            completion: Completion::FailFast,
            plan: "plans/center.toml".to_owned(),
        },
        product: Product {
            name: "Acme <DB> & Co".to_owned(),
            version: "5.0".to_owned(),
            vendor: "Acme 软件".to_owned(),
            ..Product::default()
        },
        environments: BTreeMap::from([
            ("local".to_owned(), environment("local", "local", "x86_64")),
            (
                "la64".to_owned(),
                environment("la64", "qemu-system", "loongarch64"),
            ),
        ]),
        combinations,
        summary: Summary::default(),
        certification: Certification::default(),
    };
    results.recount();
    adaptest_reports::verdict::judge(&mut results, "2026-01-27");
    results
}
