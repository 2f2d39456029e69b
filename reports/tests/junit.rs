//! `junit.xml`: parsed back with quick-junit's own reader.

mod common;

use adaptest_reports::*;
use quick_junit::{NonSuccessKind, Report, TestCaseStatus, TestSuite};

fn props(props: &[quick_junit::Property]) -> Vec<(&str, &str)> {
    props
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect()
}

fn prop<'a>(suite: &'a TestSuite, name: &str) -> Option<&'a str> {
    suite
        .properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str())
}

#[test]
fn junit_has_one_suite_per_combination_with_counts_and_properties() {
    let results = common::sample();
    let xml = to_junit(&results).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap();

    assert_eq!(report.name.as_ref().unwrap().as_str(), "adaptest");
    assert_eq!(
        (report.tests, report.failures, report.errors, report.skipped),
        (10, 1, 1, 2)
    );
    assert!(report.timestamp.is_some());

    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "local/os/os-basic",
            "la64/postgres/pg-compat",
            "la64/os/os-basic"
        ]
    );

    let os = &report.test_suites[0];
    assert_eq!((os.tests, os.failures, os.errors, os.skipped), (5, 1, 0, 1));
    let pg = &report.test_suites[1];
    assert_eq!((pg.tests, pg.failures, pg.errors, pg.skipped), (4, 0, 1, 1));
    let la_os = &report.test_suites[2];
    assert_eq!(
        (la_os.tests, la_os.failures, la_os.errors, la_os.skipped),
        (1, 0, 0, 0)
    );

    assert_eq!(prop(os, "run_id"), Some("20260127-083000-ab12"));
    assert_eq!(prop(os, "target"), Some("local"));
    assert_eq!(prop(os, "target_kind"), Some("local"));
    assert_eq!(prop(os, "arch"), Some("x86_64"));
    assert_eq!(prop(os, "cpu_model"), Some("x86_64 test CPU"));
    assert_eq!(prop(os, "os"), Some("Debian GNU/Linux 12 (bookworm)"));
    assert_eq!(prop(os, "os_id"), Some("debian"));
    assert_eq!(prop(os, "os_version"), Some("12"));
    assert_eq!(prop(os, "kernel"), Some("6.1.0-28"));
    assert_eq!(prop(os, "libc"), Some("glibc 2.36"));
    assert_eq!(prop(os, "component"), Some("os"));
    assert_eq!(prop(os, "component_kind"), Some("os"));
    assert_eq!(
        prop(os, "component_version"),
        None,
        "no version recorded for `os`"
    );
    assert_eq!(prop(os, "suite_version"), Some("1.2.0"));
    assert_eq!(prop(pg, "arch"), Some("loongarch64"));
    assert_eq!(prop(pg, "component_version"), Some("16.4"));
    assert_eq!(prop(pg, "component_kind"), Some("database"));

    // Cases: name, classname and status mapping.
    let case_names: Vec<&str> = os.test_cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        case_names,
        [
            "os.boot",
            "os.users",
            "os.flaky-net",
            "os.kernel-params",
            "os.gpu"
        ]
    );
    assert!(
        os.test_cases
            .iter()
            .all(|c| c.classname.as_ref().unwrap().as_str() == "os-basic")
    );

    match &os.test_cases[2].status {
        TestCaseStatus::Success { flaky_runs } => assert_eq!(flaky_runs.len(), 2),
        other => panic!("flaky should be a success with flaky runs, got {other:?}"),
    }
    assert!(props(&os.test_cases[2].properties).contains(&("attempts", "3")));

    let failed = &os.test_cases[3];
    match &failed.status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Failure);
            assert_eq!(
                message.as_ref().unwrap().as_str(),
                "vm.swappiness is 60, expected <= 10"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        failed.system_out.as_ref().unwrap().as_str(),
        "<script>alert(1)</script>"
    );
    assert_eq!(
        failed.system_err.as_ref().unwrap().as_str(),
        "sysctl: permission denied & more"
    );
    assert!(props(&failed.properties).contains(&("exit_code", "1")));
    assert!(props(&failed.properties).contains(&("level", "mandatory")));

    match &os.test_cases[4].status {
        TestCaseStatus::Skipped { message, ty, .. } => {
            assert_eq!(message.as_ref().unwrap().as_str(), "requires a GPU");
            assert_eq!(ty.as_ref().unwrap().as_str(), "skipped");
        }
        other => panic!("expected skipped, got {other:?}"),
    }
    match &pg.test_cases[2].status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            assert_eq!(
                message.as_ref().unwrap().as_str(),
                "ssh: connection refused"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    match &pg.test_cases[3].status {
        TestCaseStatus::Skipped { message, ty, .. } => {
            assert_eq!(
                message.as_ref().unwrap().as_str(),
                "fail-fast after pg.replication"
            );
            assert_eq!(ty.as_ref().unwrap().as_str(), "not_run");
        }
        other => panic!("expected not_run as skipped, got {other:?}"),
    }

    let tps = props(&pg.test_cases[1].properties);
    assert!(tps.contains(&("metric.tps", "1234.5 tx/s")), "{tps:?}");
    assert!(
        tps.contains(&("metric.tps.threshold", ">= 1000")),
        "{tps:?}"
    );
}

#[test]
fn junit_output_is_capped_per_case() {
    let mut results = common::sample();
    let huge = format!("first line\n{}last line\n", "x".repeat(4 * 1024 * 1024));
    results.combinations[0].cases[3].stdout = huge.clone();
    results.combinations[0].cases[3].stderr = huge;
    let xml = to_junit(&results).unwrap();
    assert!(xml.len() < 200 * 1024, "{} bytes", xml.len());

    let report = Report::deserialize_from_str(&xml).unwrap();
    let case = &report.test_suites[0].test_cases[3];
    let out = case.system_out.as_ref().unwrap().as_str();
    let err = case.system_err.as_ref().unwrap().as_str();
    assert!(out.len() + err.len() <= junit::CASE_OUTPUT_CAP);
    assert!(out.starts_with("first line"), "{}", &out[..40]);
    // The reader trims the text node, so the trailing newline is gone.
    assert!(
        out.trim_end().ends_with("last line"),
        "{:?}",
        &out[out.len() - 40..]
    );
    assert!(out.contains("bytes omitted"));
}
