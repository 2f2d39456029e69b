//! The classic sqllogictest dialect (files written for SQLite's original program) through the
//! real binary, on SQLite, PostgreSQL and MariaDB by driver and by client: a conditional `halt`
//! stops only where its condition holds, `postgresql`/`mysql` labels and a plan's own `labels`
//! apply, trailing comments parse, hashed results match without a `hash-threshold` line, values
//! listed one per line match multi-column rows, values render by the declared type alike
//! everywhere; every case says how many records ran, were skipped and were left after a halt
//! (results.json, log, both reports), and a case in which nothing ran is skipped, not passed.
//! `adaptest validate` parses the `.slt` files a suite names.

use crate::sql::{component, own_databases, plan};
use crate::util::{Sandbox, results, workspace};

const CASES: [&str; 7] = [
    "halt",
    "labels",
    "comments",
    "hash",
    "valuewise",
    "types",
    "nothing",
];

fn suite() -> String {
    let mut s = String::from(
        "[suite]\nid = \"e2e.classic\"\ntitle = \"classic dialect\"\ncomponent = \"sql\"\n\n[defaults]\ntimeout = \"60s\"\n",
    );
    for c in CASES {
        s.push_str(&format!(
            "\n[[case]]\nid = \"{c}\"\ntitle = \"{c}\"\nsql = \"{c}.slt\"\n"
        ));
    }
    s
}

/// A sandbox with the suite and its `.slt` files (from `tests/fixtures/classic/`).
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.write("suites/classic.toml", &suite());
    for c in CASES {
        let p = workspace().join(format!("tests/fixtures/classic/{c}.slt"));
        sb.write(
            &format!("suites/{c}.slt"),
            &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        );
    }
    sb
}

/// (ran, skipped, halted) of each case on a component of these labels.
fn expected(component: &str, case: &str) -> (u64, u64, u64) {
    let sqlite = component.starts_with("lite");
    match case {
        "halt" if sqlite => (4, 1, 1),
        "halt" => (5, 1, 0),
        "labels" => match component {
            "pg" => (2, 3, 0),       // postgresql, and the plan's `vendor-x`
            "pgcli" => (1, 4, 0),    // postgresql
            "maria" => (3, 2, 0),    // skipif postgresql, mysql, mariadb
            "mariacli" => (2, 3, 0), // skipif postgresql, mysql (the client knows no more)
            _ => (1, 4, 0),          // skipif postgresql
        },
        "comments" => (2, 1, 1),
        "hash" => (6, 0, 0),
        "valuewise" => (7, 0, 0),
        "types" => (12, 0, 0),
        "nothing" => (0, 1, 1),
        _ => unreachable!("{case}"),
    }
}

#[test]
fn classic_files_run_alike_on_sqlite_postgres_and_mariadb_by_driver_and_client() {
    own_databases("adaptest_e2e_classic");
    let pg = format!(
        "{}\nlabels = [\"vendor-x\"]",
        component("pg", "postgres", "adaptest_e2e_classic")
    );
    let pgcli = component("pgcli", "psql", "adaptest_e2e_classic");
    let maria = component("maria", "mariadb", "adaptest_e2e_classic");
    let mariacli = component("mariacli", "mysql-cli", "adaptest_e2e_classic");
    let lite = "id = \"lite\"\nkind = \"sqlite\"";
    let litecli = "id = \"litecli\"\nkind = \"sqlite-cli\"";
    let sb = sandbox();
    sb.write(
        "plan.toml",
        &plan(
            &[&pg, &pgcli, &maria, &mariacli, lite, litecli],
            &["e2e.classic"],
        ),
    );
    let run = sb.run_own_suites(&[]);
    let dir = sb.run_dir();
    let r = results(&dir);
    let mut wrong = Vec::new();
    for c in r["combinations"].as_array().unwrap() {
        let comp = c["component"].as_str().unwrap();
        for k in c["cases"].as_array().unwrap() {
            let id = k["id"].as_str().unwrap();
            let want_status = if id == "nothing" { "skipped" } else { "passed" };
            let rec = &k["sql_records"];
            let got = (
                rec["ran"].as_u64().unwrap_or(99),
                rec["skipped"].as_u64().unwrap_or(99),
                rec["halted"].as_u64().unwrap_or(99),
            );
            if k["status"] != want_status || got != expected(comp, id) {
                wrong.push(format!(
                    "{comp}/{id}: {} {got:?} (want {want_status} {:?}): {}",
                    k["status"],
                    expected(comp, id),
                    k["reason"]
                ));
            }
            if id == "nothing" {
                assert_eq!(
                    k["reason"].as_str().unwrap(),
                    format!(
                        "no record ran on {}: 1 skipped by condition, 1 left after a halt at nothing.slt:6",
                        c["component_kind"].as_str().unwrap()
                    )
                );
            }
            // the case's log says it too
            let log = std::fs::read_to_string(dir.join(k["log"].as_str().unwrap())).unwrap();
            assert!(
                log.contains(&format!(
                    "records: {} ran, {} skipped by condition, {} left after a halt",
                    got.0, got.1, got.2
                )),
                "{comp}/{id}: {log}"
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        r["combinations"].as_array().unwrap().len(),
        6,
        "{}",
        run.stderr
    );
    run.expect_code(0);
    // both reports show the counts, each in its language
    let en = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        en.contains("SQL records: 5 ran · 1 skipped by condition · 0 left after a halt"),
        "English report lacks the counts"
    );
    let zh = std::fs::read_to_string(dir.join("report.zh-CN.html")).unwrap();
    assert!(
        zh.contains("执行 5 条 · 按条件跳过 1 条 · halt 后未执行 0 条"),
        "Chinese report lacks the counts"
    );
}

#[test]
fn validate_parses_the_slt_files_a_suite_names() {
    let sb = sandbox();
    sb.run(&["validate", "suites/classic.toml"]).expect_code(0);
    // a broken record at line 4 of one file, and a variant broken at line 1
    sb.write(
        "suites/hash.slt",
        "statement ok\nselect 1\n\nstatement bogus\nselect 2\n",
    );
    sb.write("suites/types.mariadb.slt", "system ok\nrm -rf /\n");
    let r = sb.run(&["validate", "suites/classic.toml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("hash.slt:4:1: case[3].sql: cannot parse"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("types.mariadb.slt:1:1: case[5].sql: `system` records are not run"),
        "{}",
        r.stderr
    );
}
