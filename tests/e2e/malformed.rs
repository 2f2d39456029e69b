//! Malformed plans and suites: every one is refused with exit code 2, its file:line and the
//! field named, and no panic.

use crate::util::Sandbox;

const GOOD_SUITE: &str = r#"[suite]
id = "t.good"
title = "good"
component = "os"

[[case]]
id = "one"
title = "one"
run = "true"
"#;

/// (name, file name, contents, expected line, expected field text in the message)
fn cases() -> Vec<(&'static str, &'static str, String, usize, &'static str)> {
    let plan_head = "[product]\nname = \"p\"\n\n[[target]]\nid = \"local\"\nkind = \"local\"\n";
    vec![
        (
            "unknown field in a case",
            "s1.toml",
            "[suite]\nid = \"t.s1\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\ntimout = \"5s\"\n".into(),
            10,
            "timout",
        ),
        (
            "wrong type for retries",
            "s2.toml",
            "[suite]\nid = \"t.s2\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\nretries = \"two\"\n".into(),
            10,
            "retries",
        ),
        (
            "bad duration",
            "s3.toml",
            "[suite]\nid = \"t.s3\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\ntimeout = \"10 parsecs\"\n".into(),
            10,
            "case[0].timeout",
        ),
        (
            "invalid regex",
            "s4.toml",
            "[suite]\nid = \"t.s4\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\nexpect = { stdout_regex = '(unclosed' }\n".into(),
            10,
            "expect.stdout_regex",
        ),
        (
            "duplicate case id",
            "s5.toml",
            "[suite]\nid = \"t.s5\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\n\n[[case]]\nid = \"a\"\ntitle = \"again\"\nrun = \"true\"\n".into(),
            12,
            "case[1].id",
        ),
        (
            "case without an action",
            "s6.toml",
            "[suite]\nid = \"t.s6\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\n".into(),
            6,
            "case[0]",
        ),
        (
            "invalid level",
            "s7.toml",
            "[suite]\nid = \"t.s7\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nlevel = \"critical\"\nrun = \"true\"\n".into(),
            9,
            "level",
        ),
        (
            "missing suite title",
            "s8.toml",
            "[suite]\nid = \"t.s8\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\n".into(),
            1,
            "title",
        ),
        (
            "unknown component kind",
            "s9.toml",
            "[suite]\nid = \"t.s9\"\ntitle = \"t\"\ncomponent = \"mainframe\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\n".into(),
            4,
            "suite.component",
        ),
        (
            "TOML syntax error",
            "s10.toml",
            "[suite]\nid = \"t.s10\"\ntitle = \"t\ncomponent = \"os\"\n".into(),
            3,
            "title",
        ),
        (
            "invalid suite id",
            "s11.toml",
            "[suite]\nid = \"Bad Id\"\ntitle = \"t\"\ncomponent = \"os\"\n\n[[case]]\nid = \"a\"\ntitle = \"a\"\nrun = \"true\"\n".into(),
            2,
            "suite.id",
        ),
        (
            "plan: unknown target kind",
            "p1.toml",
            "[product]\nname = \"p\"\n\n[[target]]\nid = \"vm\"\nkind = \"mainframe\"\n\n[[matrix]]\ntargets = [\"vm\"]\ncomponents = [\"os\"]\nsuites = [\"t.good\"]\n".into(),
            6,
            "target[0].kind",
        ),
        (
            "plan: matrix names an unknown target",
            "p2.toml",
            format!("{plan_head}\n[[matrix]]\ntargets = [\"lcoal\"]\ncomponents = [\"os\"]\nsuites = [\"t.good\"]\n"),
            9,
            "matrix[0].targets",
        ),
        (
            "plan: suite pattern matches nothing",
            "p3.toml",
            format!("{plan_head}\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"os\"]\nsuites = [\"nosuch.*\"]\n"),
            11,
            "matrix[0].suites",
        ),
        (
            "plan: unknown top-level table",
            "p4.toml",
            format!("{plan_head}\n[[matrx]]\ntargets = [\"local\"]\n"),
            8,
            "matrx",
        ),
        (
            "plan: zero slots",
            "p5.toml",
            "[[target]]\nid = \"local\"\nkind = \"local\"\nslots = 0\n\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"os\"]\nsuites = [\"t.good\"]\n".into(),
            4,
            "target[0].slots",
        ),
        (
            "plan: duplicate target id",
            "p6.toml",
            format!("{plan_head}\n[[target]]\nid = \"local\"\nkind = \"local\"\n\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [\"os\"]\nsuites = [\"t.good\"]\n"),
            9,
            "target[1].id",
        ),
    ]
}

#[test]
fn every_malformed_input_names_file_line_and_field() {
    let sb = Sandbox::new();
    sb.write("suites/good.toml", GOOD_SUITE);
    for (what, name, text, line, field) in cases() {
        let path = sb.write(&format!("bad/{name}"), &text);
        let is_plan = name.starts_with('p');
        let r = if is_plan {
            sb.run(&["validate", "--suites", "suites", path.to_str().unwrap()])
        } else {
            sb.run(&["validate", path.to_str().unwrap()])
        };
        assert_eq!(r.code, 2, "{what}: exit code\n{}", r.stderr);
        assert!(
            !r.stderr.contains("panicked"),
            "{what}: panic\n{}",
            r.stderr
        );
        let loc = format!("{}:{line}:", path.display());
        assert!(
            r.stderr.contains(&loc),
            "{what}: expected `{loc}` in\n{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(field),
            "{what}: expected field `{field}` in\n{}",
            r.stderr
        );
    }
}

#[test]
fn run_with_a_malformed_plan_exits_2_and_creates_no_run() {
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        "[[target]]\nid = \"local\"\nkind = \"local\"\nslots = \"many\"\n",
    );
    let r = sb.run(&["run", "--plan", "plan.toml"]);
    r.expect_code(2);
    r.expect_in_stderr("plan.toml:4:");
    assert!(
        !sb.path().join("adaptest-runs").exists(),
        "a refused plan must not create a run directory"
    );
}

#[test]
fn valid_files_validate_cleanly() {
    let sb = Sandbox::new();
    let s = sb.write("suites/good.toml", GOOD_SUITE);
    let p = sb.write("plan.toml", &crate::util::local_plan(&["t.good", "os.*"]));
    let r = sb.run(&["validate", s.to_str().unwrap(), p.to_str().unwrap()]);
    r.expect_code(0);
    r.expect_in_stdout("suite t.good (1 cases)");
    r.expect_in_stdout("plan with 2 combination(s)");
}
