//! Comparing two runs: the categories, platform- and target-specific failures, metric changes
//! and the three renderings.

mod common;

use adaptest_reports::compare::{self, Direction, SpreadKind};
use adaptest_reports::*;

/// A run over three targets (x86_64 Debian, aarch64 openEuler, a second x86_64 Debian) of one
/// suite with the given statuses for cases `a`, `b`, `c`, per target.
fn run(id: &str, statuses: [[Status; 3]; 3]) -> RunResults {
    let mut results = common::sample();
    results.run.id = id.to_owned();
    results.run.completion = Completion::Complete;
    let template = results.combinations[0].clone();
    let targets = [
        ("x86", "x86_64", "debian", "12"),
        ("arm", "aarch64", "openEuler", "24.03"),
        ("x86b", "x86_64", "debian", "12"),
    ];
    results.environments.clear();
    results.combinations.clear();
    for (t, (target, arch, os, version)) in targets.iter().enumerate() {
        let mut env = results_env(target, arch, os, version);
        env.components.insert("db".to_owned(), "8.1".to_owned());
        results.environments.insert((*target).to_owned(), env);
        let mut c = template.clone();
        c.id = format!("{target}/db/db.sql");
        c.target = (*target).to_owned();
        c.component = "db".to_owned();
        c.suite = "db.sql".to_owned();
        c.cases = ["a", "b", "c"]
            .iter()
            .zip(statuses)
            .map(|(k, per_target)| common::case(k, per_target[t], Level::Mandatory))
            .collect();
        results.combinations.push(c);
    }
    results.recount();
    verdict::judge(&mut results, "2026-06-01");
    results
}

fn results_env(target: &str, arch: &str, os: &str, version: &str) -> Environment {
    Environment {
        target: target.to_owned(),
        arch: arch.to_owned(),
        os_id: os.to_lowercase(),
        os_version: version.to_owned(),
        os_name: format!("{os} {version}"),
        ..Environment::default()
    }
}

use Status::{Error, Failed, Flaky, Passed, Skipped};

fn keys(v: &[compare::CaseChange]) -> Vec<String> {
    v.iter()
        .map(|c| format!("{}:{}", c.combination, c.case))
        .collect()
}

#[test]
fn cases_are_sorted_into_new_fixed_still_failing_and_flaky() {
    let a = run(
        "A",
        [
            [Passed, Passed, Passed],
            [Failed, Failed, Failed],
            [Failed, Passed, Skipped],
        ],
    );
    let b = run(
        "B",
        [
            [Passed, Failed, Passed],
            [Error, Failed, Passed],
            [Passed, Flaky, Failed],
        ],
    );
    let c = compare::compare(&a, &b, 10.0);
    assert_eq!(c.a.run_id, "A");
    assert_eq!(c.b.run_id, "B");
    assert_eq!(
        keys(&c.new_failures),
        ["arm/db/db.sql:a", "x86b/db/db.sql:c"]
    );
    assert_eq!(keys(&c.fixed), ["x86/db/db.sql:c", "x86b/db/db.sql:b"]);
    assert_eq!(
        keys(&c.still_failing),
        ["x86/db/db.sql:b", "arm/db/db.sql:b"]
    );
    assert_eq!(keys(&c.flaky), ["arm/db/db.sql:c"]);
    assert!(c.only_in_a.is_empty() && c.only_in_b.is_empty());
    assert!(c.has_regressions());
    let fixed = &c.fixed[0];
    assert_eq!((fixed.before, fixed.after), (Some(Failed), Some(Passed)));
}

#[test]
fn a_case_failing_only_on_one_platform_is_platform_specific() {
    let a = run("A", [[Passed; 3], [Passed; 3], [Passed; 3]]);
    // `a` fails on aarch64 only (passes on both x86_64 targets); `b` fails on one of the two
    // x86_64 Debian machines (the other passes): a machine, not a platform, problem.
    let b = run(
        "B",
        [
            [Passed, Failed, Passed],
            [Failed, Passed, Passed],
            [Failed, Failed, Failed],
        ],
    );
    let c = compare::compare(&a, &b, 10.0);
    let find = |combination: &str, case: &str| {
        c.new_failures
            .iter()
            .find(|x| x.combination == combination && x.case == case)
            .unwrap_or_else(|| panic!("{combination} {case} is a new failure"))
    };
    let arm_a = find("arm/db/db.sql", "a").spread.as_ref().unwrap();
    assert_eq!(arm_a.kind, SpreadKind::PlatformSpecific);
    assert_eq!(arm_a.failing_on, ["aarch64 · openEuler 24.03"]);
    assert_eq!(arm_a.passing_on, ["x86_64 · debian 12"]);

    let x86_b = find("x86/db/db.sql", "b").spread.as_ref().unwrap();
    assert_eq!(x86_b.kind, SpreadKind::TargetSpecific);
    assert_eq!(x86_b.failing_on, ["x86"]);
    assert_eq!(x86_b.passing_on, ["arm", "x86b"]);

    // Failing everywhere it ran is neither.
    assert!(find("x86/db/db.sql", "c").spread.is_none());

    let text = compare::to_text(&c);
    assert!(
        text.contains(
            "platform-specific: fails on aarch64 · openEuler 24.03; passes on x86_64 · debian 12"
        ),
        "{text}"
    );
}

#[test]
fn metric_changes_beyond_the_threshold_are_listed_with_their_direction() {
    let metric = |name: &str, value: f64, unit: &str, threshold: Option<&str>| Metric {
        name: name.to_owned(),
        value,
        unit: unit.to_owned(),
        threshold: threshold.map(str::to_owned),
    };
    let mut a = run("A", [[Passed; 3], [Passed; 3], [Passed; 3]]);
    let mut b = a.clone();
    b.run.id = "B".to_owned();
    a.combinations[0].cases[0].metrics = vec![
        metric("tps", 1000.0, "tx/s", Some(">= 500")),
        metric("p99", 10.0, "ms", None),
        metric("steady", 100.0, "ops/s", None),
        metric("size", 50.0, "MiB", None),
        metric("zero", 0.0, "", None),
    ];
    b.combinations[0].cases[0].metrics = vec![
        metric("tps", 850.0, "tx/s", Some(">= 500")), // -15%: worse (higher is better)
        metric("p99", 8.0, "ms", None),               // -20%: better (lower is better)
        metric("steady", 105.0, "ops/s", None),       // +5%: within 10%
        metric("size", 60.0, "MiB", None),            // +20%: no known direction
        metric("zero", 3.0, "", None),                // from 0: listed, no percentage
    ];
    let c = compare::compare(&a, &b, 10.0);
    let got: Vec<(&str, Option<i64>, Direction)> = c
        .metric_changes
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.change_pct.map(|p| p.round() as i64),
                m.direction,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("tps", Some(-15), Direction::Regression),
            ("p99", Some(-20), Direction::Improvement),
            ("size", Some(20), Direction::Changed),
            ("zero", None, Direction::Changed),
        ]
    );
    assert!(c.new_failures.is_empty());
    assert!(c.has_regressions(), "a metric regression is a regression");
    // A wider threshold hides the 15% and 20% moves.
    let c = compare::compare(&a, &b, 25.0);
    assert_eq!(c.metric_changes.len(), 1);
    assert!(!c.has_regressions());
}

#[test]
fn cases_only_in_one_run_are_listed_and_a_new_failing_case_is_a_new_failure() {
    let a = run("A", [[Passed; 3], [Passed; 3], [Passed; 3]]);
    let mut b = a.clone();
    b.combinations[0].cases.remove(0);
    b.combinations[1]
        .cases
        .push(common::case("d", Failed, Level::Optional));
    b.recount();
    let c = compare::compare(&a, &b, 10.0);
    assert_eq!(keys(&c.only_in_a), ["x86/db/db.sql:a"]);
    assert_eq!(keys(&c.only_in_b), ["arm/db/db.sql:d"]);
    assert_eq!(keys(&c.new_failures), ["arm/db/db.sql:d"]);
    assert_eq!(c.new_failures[0].before, None);
}

#[test]
fn comparison_renders_as_json_text_and_html_in_both_languages() {
    let a = run("A", [[Passed; 3], [Passed; 3], [Passed; 3]]);
    let mut b = run("B", [[Passed, Failed, Passed], [Passed; 3], [Passed; 3]]);
    b.combinations[1].cases[0].reason = Some("<oops> & more".to_owned());
    let c = compare::compare(&a, &b, 10.0);

    let json = compare::to_json(&c).unwrap();
    let back: compare::Comparison = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    assert!(json.contains("\"kind\": \"platform_specific\""));

    let text = compare::to_text(&c);
    assert!(text.starts_with(
        "A A (certified, 9 cases: 9 passed, 0 failed, 0 error)  →  B B (not_certified"
    ));
    assert!(text.contains("\nnew failures (1)\n  arm/db/db.sql  a  mandatory  passed → failed  <oops> & more — platform-specific"));
    assert!(text.contains("\nfixed (0)\n"));

    let en = compare::to_html(&c, Lang::En).unwrap();
    assert!(en.contains("<h2>New failures <span class=\"count\">(1)</span></h2>"));
    assert!(en.contains("&lt;oops&gt; &amp; more"));
    assert!(!en.contains("<oops>"));
    assert!(en.contains("<span class=\"tag\">platform-specific</span>"));
    let zh = compare::to_html(&c, Lang::ZhCn).unwrap();
    assert!(zh.contains("<h2>新增失败 <span class=\"count\">(1)</span></h2>"));
    assert!(zh.contains("<span class=\"tag\">平台相关</span>"));
    assert!(zh.contains("<html lang=\"zh-CN\">"));
}
