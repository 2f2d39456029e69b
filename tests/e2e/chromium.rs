//! The certification report in a real browser: both languages rendered by headless Chromium
//! (Debian `chromium`, installed by scripts/install-deps.sh) with no console error, a
//! screenshot, the key headings in the rendered DOM, and the pager of a large run working.

use crate::util::{Sandbox, cover_plan};
use std::path::{Path, PathBuf};
use std::process::Command;

const SUITE: &str = r#"[suite]
id = "ui.demo"
title = "Report demo"
title_zh = "报告演示"
component = "os"
version = "1.0.0"

[[case]]
id = "ok"
title = "passes"
title_zh = "通过"
run = "echo fine"

[[case]]
id = "known"
title = "known bug"
title_zh = "已知缺陷"
run = "echo '<b>not bold</b> & 失败' >&2; exit 3"

[[case]]
id = "legacy"
title = "legacy"
title_zh = "旧功能"
level = "optional"
run = "exit 1"
"#;

/// `known` waived: the reports say "Certified with notes" and list the waiver.
const WAIVER: &str = r#"
[[waiver]]
case = "ui.demo/known"
reason = "fixed in 8.2"
owner = "qa@foo.example"
expires = 2099-12-31
"#;

/// What Chromium made of a page.
struct Rendered {
    dom: String,
    /// Console messages and uncaught errors Chromium logged.
    console_errors: Vec<String>,
}

fn chromium() -> &'static str {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "chromium is not installed: run scripts/install-deps.sh (Debian package `chromium`)"
    );
    "chromium"
}

fn base_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Console errors in Chromium's log: uncaught exceptions and `console.error`/`warn` output of
/// the page (`CONSOLE(...)` lines other than plain logs).
fn console_errors(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("Uncaught")
                || (l.contains(":CONSOLE(") && !l.contains(":INFO:CONSOLE("))
                || l.contains("Refused to")
        })
        .map(str::to_owned)
        .collect()
}

/// Run Chromium on `page` with `args` and a fresh profile `profile`; fails the test when it
/// fails. Its stdout, and the console errors it logged.
fn chromium_on(sb: &Sandbox, page: &Path, profile: &str, args: &[String]) -> (String, Vec<String>) {
    let out = Command::new(chromium())
        .args(base_args(&sb.path().join(profile)))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        console_errors(&stderr),
    )
}

/// Load `page` and return the DOM after scripts ran.
fn render(sb: &Sandbox, page: &Path, profile: &str) -> Rendered {
    let args = ["--virtual-time-budget=5000".into(), "--dump-dom".into()];
    let (dom, console_errors) = chromium_on(sb, page, profile, &args);
    Rendered {
        dom,
        console_errors,
    }
}

/// Take a screenshot of `page` into `png`: the console errors.
fn screenshot(sb: &Sandbox, page: &Path, png: &Path, profile: &str) -> Vec<String> {
    let args = [
        format!("--screenshot={}", png.display()),
        "--window-size=1280,2000".into(),
    ];
    chromium_on(sb, page, profile, &args).1
}

fn run_reports() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    sb.write("suites/ui.toml", SUITE);
    sb.write("plan.toml", &cover_plan("ui.demo", WAIVER));
    sb.run_own_suites(&["--format", "json"]).expect_code(0);
    let dir = sb.run_dir();
    (sb, dir)
}

#[test]
fn the_console_error_check_catches_errors() {
    // The check below must be able to fail: a page with an uncaught error trips it.
    let sb = Sandbox::new();
    let page = sb.write(
        "broken.html",
        "<!DOCTYPE html><html><body><h1>x</h1><script>console.error('boom'); nosuchfunction();</script></body></html>",
    );
    let r = render(&sb, &page, "p0");
    assert!(r.dom.contains("<h1>x</h1>"));
    assert!(
        r.console_errors
            .iter()
            .any(|l| l.contains("nosuchfunction")),
        "{:?}",
        r.console_errors
    );
}

#[test]
fn both_report_languages_render_in_chromium_without_console_errors() {
    let (sb, dir) = run_reports();
    let shots = std::env::temp_dir().join(format!("adaptest-screenshots-{}", std::process::id()));
    std::fs::create_dir_all(&shots).unwrap();
    let cases = [
        (
            "report.html",
            "Compatibility Certification Test Report",
            [
                "Scope",
                "Test environment",
                "Compatibility matrix",
                "Summary",
                "Test items",
                "Failures",
                "Waivers",
                "Metrics",
                "Conclusion",
            ],
            "Certified with notes",
        ),
        (
            "report.zh-CN.html",
            "兼容性认证测试报告",
            [
                "测试范围",
                "测试环境",
                "兼容性矩阵",
                "测试概要",
                "测试项",
                "失败项",
                "豁免项",
                "性能指标",
                "测试结论",
            ],
            "基本兼容",
        ),
    ];
    for (i, (file, title, headings, verdict)) in cases.iter().enumerate() {
        let page = dir.join(file);
        let r = render(&sb, &page, &format!("d{i}"));
        assert!(
            r.console_errors.is_empty(),
            "{file}: {:?}",
            r.console_errors
        );
        assert!(r.dom.contains(&format!("<h1>{title}</h1>")), "{file}");
        for h in headings {
            assert!(
                r.dom.contains(&format!("</span>{h}</h2>")),
                "{file}: heading {h} not rendered"
            );
        }
        assert!(
            r.dom
                .contains(&format!("<div class=\"big\">{verdict}</div>")),
            "{file}"
        );
        // Output is text, never markup.
        assert!(
            r.dom.contains("&lt;b&gt;not bold&lt;/b&gt; &amp; 失败"),
            "{file}"
        );
        assert!(!r.dom.contains("<b>not bold</b>"), "{file}");

        let png = shots.join(file.replace(".html", ".png"));
        let errors = screenshot(&sb, &page, &png, &format!("s{i}"));
        assert!(errors.is_empty(), "{file}: {errors:?}");
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{file}: not a PNG");
        // A blank 1280×2000 page compresses to a few KB; a rendered report is far larger.
        assert!(
            bytes.len() > 40_000,
            "{file}: screenshot of {} bytes",
            bytes.len()
        );
        eprintln!("screenshot: {}", png.display());
    }
}

#[test]
fn passed_cases_of_a_large_run_page_in_the_browser() {
    let (sb, dir) = run_reports();
    // Grow the run to 6,000 passed cases (beyond what is inlined) and render it again.
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let mut results = adaptest_reports::from_json(&text).unwrap();
    let template = results.combinations[0].cases[0].clone();
    for i in 0..6_000 {
        let mut c = template.clone();
        c.id = format!("gen-{i:05}");
        c.title = format!("generated case {i}");
        results.combinations[0].cases.push(c);
    }
    results.recount();
    adaptest_reports::verdict::judge(&mut results, "2026-06-01");
    sb.write("big.json", &adaptest_reports::to_json(&results).unwrap());
    sb.run(&["report", "big.json", "-o", "big.html"])
        .expect_code(0);

    // Open the list, go to page 2, as a reader would (a script appended to a copy).
    let html = std::fs::read_to_string(sb.path().join("big.html")).unwrap();
    assert!(html.contains("<details class=\"cases paged\""));
    let driver = r#"<script>
window.addEventListener("load", function () {
  var d = document.querySelector("details.paged");
  d.open = true;
  setTimeout(function () {
    var first = d.querySelector("tbody tr td").textContent;
    d.querySelector(".next").click();
    var rows = d.querySelectorAll("tbody tr");
    document.body.setAttribute("data-probe",
      first + "|" + rows.length + "|" + rows[0].firstChild.textContent + "|" + d.querySelector(".where").textContent);
  }, 100);
});
</script></body>"#;
    let page = sb.write("big-driven.html", &html.replace("</body>", driver));
    let r = render(&sb, &page, "big");
    assert!(r.console_errors.is_empty(), "{:?}", r.console_errors);
    let probe = r
        .dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the driver ran");
    // Page 1 starts with the first passed case; page 2 holds 500 rows from the 501st.
    assert_eq!(probe, "ok|500|gen-00499|2 / 13", "{probe}");
}
