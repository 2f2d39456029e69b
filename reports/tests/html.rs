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

/// The text of every `<h2>` (section number left out).
fn h2s(html: &str) -> Vec<String> {
    html.split("<h2>")
        .skip(1)
        .map(|rest| {
            let inner = &rest[..rest.find("</h2>").unwrap()];
            let inner = match inner.rfind("</span>") {
                Some(i) => &inner[i + "</span>".len()..],
                None => inner,
            };
            inner.to_owned()
        })
        .collect()
}

#[test]
fn html_headings_follow_the_language() {
    let en = to_html(&common::sample(), Lang::En).unwrap();
    let zh = to_html(&common::sample(), Lang::ZhCn).unwrap();

    assert!(en.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(zh.starts_with("<!DOCTYPE html>\n<html lang=\"zh-CN\">"));
    assert_eq!(
        h2s(&en),
        [
            "Scope",
            "Test environment",
            "Compatibility matrix",
            "Summary",
            "Test items",
            "Failures",
            "Waivers",
            "Metrics",
            "Conclusion"
        ]
    );
    assert_eq!(
        h2s(&zh),
        [
            "测试范围",
            "测试环境",
            "兼容性矩阵",
            "测试概要",
            "测试项",
            "失败项",
            "豁免项",
            "性能指标",
            "测试结论"
        ]
    );
    assert!(en.contains("<h1>Compatibility Certification Test Report</h1>"));
    assert!(zh.contains("<h1>兼容性认证测试报告</h1>"));
    for heading in h2s(&zh) {
        assert!(!en.contains(&heading), "en contains {heading}");
    }

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
fn html_shows_verdict_failures_environment_and_metrics() {
    let html = to_html(&common::sample(), Lang::En).unwrap();
    // Mandatory cases failed and nothing waives them.
    assert!(
        html.contains("<div class=\"big\">Not certified</div><div class=\"other\">不兼容</div>")
    );
    assert!(html.contains("<meta name=\"adaptest-verdict\" content=\"not\">"));
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
    // Print styles: A4 pages with numbers, the cover on a page of its own.
    assert!(html.contains("@media print"));
    assert!(html.contains("@page{size:A4"));
    assert!(html.contains("counter(page)"));
    assert!(html.contains(".cover{display:block;min-height:0;break-after:page}"));
    // The evidence fingerprint is the SHA-256 of results.json, on the cover and in the
    // conclusion.
    let fp = fingerprint::fingerprint(to_json(&common::sample()).unwrap().as_bytes());
    assert!(html.matches(&fp).count() >= 3, "fingerprint {fp} shown");

    let zh = to_html(&common::sample(), Lang::ZhCn).unwrap();
    assert!(zh.contains("<div class=\"big\">不兼容</div><div class=\"other\">Not certified</div>"));
}

#[test]
fn html_cover_shows_center_report_number_tester_and_reviewer() {
    let mut results = common::sample();
    results.product.center = "华东适配中心".to_owned();
    results.product.report_number = "ECAC-2026-0042".to_owned();
    results.product.tester = "张三".to_owned();
    results.product.reviewer = "李四".to_owned();
    let html = render_html(&results, Lang::ZhCn, "f00d").unwrap();
    assert!(html.contains("<tr><th>测试机构</th><td>华东适配中心</td></tr>"));
    assert!(html.contains("<tr><th>报告编号</th><td>ECAC-2026-0042</td></tr>"));
    assert!(html.contains("<tr><th>测试人员</th><td>张三</td></tr>"));
    assert!(html.contains("<tr><th>审核人员</th><td>李四</td></tr>"));
    assert!(
        html.contains("<tr><th>测试时间</th><td>2026-01-27 08:30:00 UTC – 08:31:10 UTC</td></tr>")
    );
    assert!(html.contains("<span class=\"fp\" id=\"fingerprint\">f00d</span>"));
    // Without them the cover says so rather than leaving holes.
    let html = render_html(&common::sample(), Lang::En, "f00d").unwrap();
    assert!(html.contains("<tr><th>Report number</th><td>—</td></tr>"));
}

#[test]
fn html_matrix_colours_each_target_component_pair_by_its_verdict() {
    let html = to_html(&common::sample(), Lang::En).unwrap();
    let matrix = &html[html.find("<table class=\"matrix\">").unwrap()..];
    let matrix = &matrix[..matrix.find("</table>").unwrap()];
    // Columns: os, postgres; rows: local (os only), la64 (both).
    assert!(matrix.contains("<th>os</th><th>postgres</th>"));
    assert!(matrix.contains("<th class=\"row\">local<div class=\"sub small\">x86_64 · Debian GNU/Linux 12 (bookworm)</div></th>"));
    assert!(
        matrix.contains("<td class=\"cell not\"><a href=\"#c0\">"),
        "local × os failed"
    );
    assert!(
        matrix.contains("<td class=\"none\">not tested</td>"),
        "local × postgres"
    );
    assert!(
        matrix.contains("<td class=\"cell not\"><a href=\"#c1\">"),
        "la64 × postgres errored"
    );
    assert!(
        matrix.contains("<td class=\"cell certified\"><a href=\"#c2\">"),
        "la64 × os passed"
    );
}

#[test]
fn html_marks_waived_and_expired_waivers() {
    let mut results = common::sample();
    results.certification.waivers = vec![
        WaiverRecord {
            case: "os-basic/os.kernel-*".to_owned(),
            target: Some("local".to_owned()),
            component: None,
            reason: "tuned by the installer <later>".to_owned(),
            owner: "qa@acme.example".to_owned(),
            expires: "2027-03-31".to_owned(),
            status: WaiverStatus::Active,
            matched: 1,
        },
        WaiverRecord {
            case: "pg-compat/*".to_owned(),
            target: None,
            component: None,
            reason: "old".to_owned(),
            owner: "qa@acme.example".to_owned(),
            expires: "2025-01-31".to_owned(),
            status: WaiverStatus::Expired,
            matched: 1,
        },
    ];
    results.combinations[0].cases[3].waiver = Some(0);
    results.combinations[1].cases[2].waiver = Some(1);
    verdict::judge(&mut results, "2026-01-27");
    let html = to_html(&results, Lang::En).unwrap();
    assert!(html.contains("<span class=\"tag waived\">waived W1</span>"));
    assert!(html.contains("<span class=\"tag expired\">W2 expired (not applied)</span>"));
    assert!(html.contains("tuned by the installer &lt;later&gt;"));
    assert!(html.contains("<td class=\"c-failed\">expired (not applied)</td>"));
    assert!(
        html.contains(
            "<li>1 failure(s) matched a waiver that had expired; it was not applied.</li>"
        )
    );
    let zh = to_html(&results, Lang::ZhCn).unwrap();
    assert!(zh.contains("<span class=\"tag waived\">已豁免 W1</span>"));
    assert!(zh.contains("已过期（未适用）"));
}

#[test]
fn html_verdict_follows_the_results() {
    let mut results = common::sample();
    for combination in &mut results.combinations {
        for case in &mut combination.cases {
            if case.level == Level::Mandatory {
                case.status = Status::Passed;
            }
        }
    }
    results.recount();
    verdict::judge(&mut results, "2026-01-27");
    // Optional cases did not run and the run stopped early: with notes.
    let html = to_html(&results, Lang::En).unwrap();
    assert!(html.contains("<div class=\"big\">Certified with notes</div>"));
    assert!(html.contains("The run is incomplete"));
    let zh = to_html(&results, Lang::ZhCn).unwrap();
    assert!(zh.contains("<div class=\"big\">基本兼容</div>"));
    assert!(zh.contains("本次测试未完整执行"));

    results.run.completion = Completion::Complete;
    results.combinations[1].cases[3].status = Status::Passed;
    results.recount();
    verdict::judge(&mut results, "2026-01-27");
    let html = to_html(&results, Lang::En).unwrap();
    assert!(html.contains("<div class=\"big\">Certified</div>"));
    assert!(html.contains("Verdict: Certified."));
    assert!(!html.contains("class=\"notes\""), "no notes list");
    let zh = to_html(&results, Lang::ZhCn).unwrap();
    assert!(zh.contains("结论：兼容。"));
}

#[test]
fn html_pages_passed_cases_of_a_large_run_as_script_safe_json() {
    let mut results = common::sample();
    let template = results.combinations[2].cases[0].clone();
    results.combinations[2].cases = (0..html::INLINE_PASSED_MAX + 1)
        .map(|i| {
            let mut c = template.clone();
            c.id = format!("case-{i}");
            c.title = format!("</script><b>{i}</b>");
            c
        })
        .collect();
    results.recount();
    verdict::judge(&mut results, "2026-01-27");
    let html = to_html(&results, Lang::En).unwrap();
    assert!(html.contains("<body data-passed-paged=\"1\">"));
    assert!(html.contains("<details class=\"cases paged\" data-src=\"pc2\" data-pages=\"11\">"));
    let start = html
        .find("<script type=\"application/json\" id=\"pc2\">")
        .unwrap();
    let data = &html[start..];
    let data = &data[data.find('>').unwrap() + 1..data.find("</script>").unwrap()];
    // The titles' `</script>` cannot close the element, and the JSON reads back intact.
    let rows: Vec<[String; 4]> = serde_json::from_str(data).unwrap();
    assert_eq!(rows.len(), html::INLINE_PASSED_MAX + 1);
    assert_eq!(rows[7][0], "case-7");
    assert_eq!(rows[7][1], "</script><b>7</b>");
    // Only the page's own two scripts besides the data.
    assert_eq!(html.matches("<script>").count(), 1);
    assert!(!html.contains("<b>7</b>"));
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
