//! The HTML report: escaping, both languages, self-containment and content.

mod common;

use adaptest_reports::*;

#[test]
fn html_escapes_every_value() {
    let html = to_html(&common::sample(), Lang::En).unwrap();
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Acme &lt;DB&gt; &amp; Co"));
    assert!(html.contains("sysctl: permission denied &amp; more"));
    assert!(html.contains("vm.swappiness is 60, expected &lt;= 10"));
    // The only <script> element is the report's own.
    assert_eq!(html.matches("<script").count(), 1);
}

#[test]
fn html_headings_follow_the_language() {
    let en = to_html(&common::sample(), Lang::En).unwrap();
    let zh = to_html(&common::sample(), Lang::ZhCn).unwrap();

    assert!(en.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(zh.starts_with("<!DOCTYPE html>\n<html lang=\"zh-CN\">"));
    for heading in ["Summary", "Environment", "Failures", "Results", "Metrics"] {
        assert!(
            en.contains(&format!("<h2>{heading}</h2>")),
            "en lacks {heading}"
        );
    }
    for heading in ["概要", "测试环境", "失败项", "测试结果", "性能指标"] {
        assert!(
            zh.contains(&format!("<h2>{heading}</h2>")),
            "zh-CN lacks {heading}"
        );
        assert!(!en.contains(heading), "en contains {heading}");
    }
    assert!(!zh.contains("<h2>Summary</h2>"));

    // Titles in the chosen language, falling back to the other one when empty.
    assert!(en.contains("Title of os.boot"));
    assert!(zh.contains("os.boot 的名称"));
    assert!(zh.contains("Title of os.users"));
    assert!(zh.contains("操作系统基础"));
    assert!(en.contains("OS basics"));
}

#[test]
fn html_is_self_contained() {
    for lang in [Lang::En, Lang::ZhCn] {
        let html = to_html(&common::sample(), lang).unwrap();
        assert!(!html.contains("http://"), "{lang}: http:// reference");
        assert!(!html.contains("https://"), "{lang}: https:// reference");
        assert!(!html.contains("src="), "{lang}: src= attribute");
        assert!(!html.contains("url("), "{lang}: CSS url()");
        assert!(!html.contains("@import"), "{lang}: CSS @import");
        for (at, _) in html.match_indices("href=\"") {
            let target = &html[at + 6..];
            assert!(
                target.starts_with('#'),
                "{lang}: non-local link {}",
                &target[..40]
            );
        }
    }
}

#[test]
fn html_shows_outcome_failures_environment_and_metrics() {
    let html = to_html(&common::sample(), Lang::En).unwrap();
    assert!(html.contains("Mandatory cases failed"));
    assert!(!html.contains("All mandatory cases passed"));
    // Failed case and its reason, in the table and the Failures section with output.
    assert!(html.contains("os.kernel-params"));
    assert!(html.contains("id=\"f0\""));
    assert!(html.contains("ssh: connection refused"));
    assert!(html.contains("<pre>&lt;script&gt;"));
    // Passed cases are collapsed.
    assert!(html.contains("<details class=\"cases\"><summary>Passed cases (2)</summary>"));
    // Environment: memory in GiB, component versions.
    assert!(html.contains("<td>16.0</td>"));
    assert!(html.contains("postgres 16.4"));
    assert!(html.contains("loongarch64"));
    // Metrics.
    assert!(html.contains("<td class=\"n\">1234.5<td>tx/s<td>&gt;= 1000"));
    // Print styles.
    assert!(html.contains("@media print"));

    let zh = to_html(&common::sample(), Lang::ZhCn).unwrap();
    assert!(zh.contains("存在未通过的必测用例"));
}

#[test]
fn html_outcome_passes_when_no_mandatory_case_failed() {
    let mut results = common::sample();
    for combination in &mut results.combinations {
        for case in &mut combination.cases {
            if case.level == Level::Mandatory {
                case.status = Status::Passed;
            }
        }
    }
    results.recount();
    let html = to_html(&results, Lang::En).unwrap();
    assert!(html.contains("All mandatory cases passed"));
    let zh = to_html(&results, Lang::ZhCn).unwrap();
    assert!(zh.contains("所有必测用例均已通过"));

    results.combinations[0].cases[0].status = Status::NotRun;
    results.recount();
    let html = to_html(&results, Lang::En).unwrap();
    assert!(html.contains("Incomplete: some mandatory cases did not run"));
}

#[test]
fn lang_parses_from_tags() {
    assert_eq!("en".parse::<Lang>().unwrap(), Lang::En);
    assert_eq!("zh-CN".parse::<Lang>().unwrap(), Lang::ZhCn);
    assert_eq!("zh_cn".parse::<Lang>().unwrap(), Lang::ZhCn);
    let err = "fr".parse::<Lang>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "parse report language `fr`: expected `en` or `zh-CN`"
    );
    assert_eq!(Lang::ZhCn.to_string(), "zh-CN");
}

#[test]
fn empty_run_renders() {
    let mut results = common::sample();
    results.combinations.clear();
    results.environments.clear();
    results.recount();
    for lang in [Lang::En, Lang::ZhCn] {
        let html = to_html(&results, lang).unwrap();
        assert!(html.ends_with("</html>\n"));
    }
    let xml = to_junit(&results).unwrap();
    assert!(quick_junit::Report::deserialize_from_str(&xml).is_ok());
}
