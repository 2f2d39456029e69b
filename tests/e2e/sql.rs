//! SQL certification through the real binary: the built-in `db.sql-core` suite passes on this
//! machine's PostgreSQL 15, MariaDB 10.11 and SQLite, through the drivers and through the
//! `psql`, `mysql` and `sqlite3` clients on the target; a wrong password and a server that is
//! not listening give clear failures naming the cause, never a hang; and a password given to a
//! component appears in no file of the run directory.

use crate::servers::{MariaUser, PasswordPg, mariadb};
use crate::util::{Run, Sandbox, case_rows, case_statuses, free_port, results};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A plan with these `[[component]]` blocks (TOML bodies, `id` first) and the given suites.
pub fn plan(components: &[&str], suites: &[&str]) -> String {
    let mut s = String::from(
        "[product]\nname = \"SQL e2e\"\nversion = \"1\"\nvendor = \"adaptest\"\n\n[[target]]\nid = \"local\"\nkind = \"local\"\n",
    );
    let mut ids = Vec::new();
    for c in components {
        s.push_str(&format!("\n[[component]]\n{c}\n"));
        let id = c
            .lines()
            .find_map(|l| l.strip_prefix("id = "))
            .expect("component id first")
            .trim_matches('"');
        ids.push(format!("{id:?}"));
    }
    let suites: Vec<String> = suites.iter().map(|s| format!("{s:?}")).collect();
    s.push_str(&format!(
        "\n[[matrix]]\ntargets = [\"local\"]\ncomponents = [{}]\nsuites = [{}]\n",
        ids.join(", "),
        suites.join(", ")
    ));
    s
}

/// A component block: `id`, `kind`, and the user and database of this machine's servers.
pub fn component(id: &str, kind: &str, database: &str) -> String {
    let user = if kind.contains("mysql") || kind == "mariadb" {
        "root"
    } else {
        "postgres"
    };
    format!("id = \"{id}\"\nkind = \"{kind}\"\nuser = \"{user}\"\ndatabase = \"{database}\"")
}

const LITE: &str = "id = \"lite\"\nkind = \"sqlite\"";
const LITECLI: &str = "id = \"litecli\"\nkind = \"sqlite-cli\"";

/// A database of its own on this machine's PostgreSQL and MariaDB (created if missing), so the
/// suite's fixed table names meet no other test running `db.sql-core` at the same time (the
/// loopback plan uses `test`).
pub fn own_databases(name: &str) {
    let exists = psql(
        &["-A", "-t"],
        &format!("select 1 from pg_database where datname = '{name}'"),
    );
    assert!(
        exists.status.success(),
        "{}",
        String::from_utf8_lossy(&exists.stderr)
    );
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        let out = psql(
            &["-q"],
            &format!("create database {name} encoding 'UTF8' template template0"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        // (another test may have just created it)
        assert!(
            out.status.success() || err.contains("already exists"),
            "{err}"
        );
    }
    mariadb(&format!(
        "create database if not exists {name} character set utf8mb4"
    ));
}

/// `psql -X <flags>` running `sql` on this machine's PostgreSQL (database `test`, as `postgres`).
fn psql(flags: &[&str], sql: &str) -> Output {
    Command::new("psql")
        .arg("-X")
        .args(flags)
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql])
        .output()
        .unwrap()
}

/// Cases not in `want` status, for a readable assertion.
fn not_status<'a>(
    all: &'a [(String, String, String, String)],
    want: &str,
) -> Vec<&'a (String, String, String, String)> {
    all.iter().filter(|c| c.2 != want).collect()
}

#[test]
fn sql_core_passes_on_postgres_mariadb_and_sqlite_through_their_drivers() {
    own_databases("adaptest_e2e_drivers");
    let pg = component("pg", "postgres", "adaptest_e2e_drivers");
    let maria = component("maria", "mariadb", "adaptest_e2e_drivers");
    let sb = Sandbox::new();
    sb.write("plan.toml", &plan(&[&pg, &maria, LITE], &["db.sql-core"]));
    sb.run(&["run", "--plan", "plan.toml"]).expect_code(0);
    let r = results(&sb.run_dir());
    let all = case_rows(&r);
    assert_eq!(all.len(), 3 * 16, "{all:?}");
    assert!(
        not_status(&all, "passed").is_empty(),
        "{:#?}",
        not_status(&all, "passed")
    );
    // the two-session case ran (drivers keep transactions across operations)
    assert!(
        all.iter()
            .any(|c| c.0 == "local/maria/db.sql-core" && c.1 == "isolation" && c.2 == "passed")
    );
}

#[test]
fn sql_core_passes_through_psql_mysql_and_sqlite3_on_the_target() {
    own_databases("adaptest_e2e_clients");
    let pg = component("pgcli", "psql", "adaptest_e2e_clients");
    let maria = component("mariacli", "mysql-cli", "adaptest_e2e_clients");
    let sb = Sandbox::new();
    sb.write(
        "plan.toml",
        &plan(&[&pg, &maria, LITECLI], &["db.sql-core"]),
    );
    sb.run(&["run", "--plan", "plan.toml"]).expect_code(0);
    let r = results(&sb.run_dir());
    let all = case_rows(&r);
    assert_eq!(all.len(), 3 * 16, "{all:?}");
    for c in &all {
        if c.1 == "isolation" {
            // one client run per operation cannot hold a transaction open between steps
            assert_eq!(c.2, "skipped", "{c:?}");
            assert!(c.3.contains("sql.tx"), "{c:?}");
        } else {
            assert_eq!(c.2, "passed", "{c:?}");
        }
    }
}

/// Two components reaching the same database (PostgreSQL through the driver and through `psql`)
/// in one run: `db.sql-core` creates fixed table names, so their combinations take turns (the
/// run has slots for both at once) and both pass instead of tripping over each other's tables.
#[test]
fn components_sharing_a_database_take_turns() {
    own_databases("adaptest_e2e_shared");
    let driver = component("pgdrv", "postgres", "adaptest_e2e_shared");
    let client = component("pgcli", "psql", "adaptest_e2e_shared");
    let sb = Sandbox::new();
    sb.write("plan.toml", &plan(&[&driver, &client], &["db.sql-core"]));
    let run = sb.run(&[
        "run",
        "--plan",
        "plan.toml",
        "--jobs",
        "2",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    // The order cases finished in: all of one combination, then all of the other.
    let order: Vec<String> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON event per line"))
        .filter(|e| e["event"] == "case_finished")
        .map(|e| e["combination"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order.len(), 2 * 16, "{order:?}");
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "the two combinations interleaved: {order:?}");
    let r = results(&sb.run_dir());
    for c in case_rows(&r) {
        assert!(c.2 == "passed" || c.1 == "isolation", "{c:?}");
    }
}

/// A user suite: one `sql` case and one `steps` case that touch the database.
const AUTH_SUITE: &str = r#"
[suite]
id = "e2e.sql-auth"
title = "SQL with a password"
component = "sql"

[defaults]
timeout = "60s"

[[case]]
id = "slt"
title = "a script"
sql = "auth.slt"

[[case]]
id = "steps"
title = "steps"
steps = [ { op = "sql.query", sql = "select 1 as one", expect = { rows = [["1"]] } } ]
"#;

const AUTH_SLT: &str = "query I\nselect 40 + 2\n----\n42\n";

/// A sandbox whose plan runs the `e2e.sql-auth` suite on these components.
fn auth_sandbox(components: &[String]) -> Sandbox {
    let components: Vec<&str> = components.iter().map(String::as_str).collect();
    let sb = Sandbox::new();
    sb.write("plan.toml", &plan(&components, &["e2e.sql-auth"]));
    sb.write("suites/auth.toml", AUTH_SUITE);
    sb.write("suites/auth.slt", AUTH_SLT);
    sb
}

/// Run an [`auth_sandbox`] with `password` where its components read it (`password_env`).
fn run_with_password(sb: &Sandbox, password: &str, extra: &[&str]) -> Run {
    Run::from(
        sb.own_suites_cmd(extra)
            .env("ADAPTEST_E2E_SQL_PW", password)
            .output()
            .unwrap(),
    )
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(p);
            }
        }
    }
    found
}

const PASSWORD: &str = "S3cr3t-adaptest-e2e-7c41d";

#[test]
fn a_wrong_password_says_authentication_failed_and_no_password_reaches_the_run_directory() {
    let pg = PasswordPg::start(PASSWORD);
    let _user = MariaUser::create("adaptest_e2e_auth", PASSWORD);
    let components = [
        format!(
            "id = \"pg\"\nkind = \"postgres\"\nport = {}\nuser = \"postgres\"\ndatabase = \"postgres\"\npassword_env = \"ADAPTEST_E2E_SQL_PW\"",
            pg.port
        ),
        format!(
            "id = \"pgcli\"\nkind = \"psql\"\nport = {}\nuser = \"postgres\"\ndatabase = \"postgres\"\npassword_env = \"ADAPTEST_E2E_SQL_PW\"",
            pg.port
        ),
        "id = \"maria\"\nkind = \"mariadb\"\nuser = \"adaptest_e2e_auth\"\ndatabase = \"test\"\npassword_env = \"ADAPTEST_E2E_SQL_PW\"".to_string(),
        "id = \"mariacli\"\nkind = \"mysql-cli\"\nuser = \"adaptest_e2e_auth\"\ndatabase = \"test\"\npassword_env = \"ADAPTEST_E2E_SQL_PW\"".to_string(),
    ];

    // the right password: everything passes
    let good = auth_sandbox(&components);
    run_with_password(&good, PASSWORD, &[]).expect_code(0);
    let statuses = case_statuses(&results(&good.run_dir()));
    assert_eq!(statuses.len(), 8, "{statuses:?}");
    assert!(statuses.iter().all(|s| s.2 == "passed"), "{statuses:?}");
    assert!(files_containing(&good.run_dir(), PASSWORD).is_empty());

    // a wrong one: every case fails fast, saying why, and shows neither password
    let wrong = format!("{PASSWORD}-wrong");
    let bad = auth_sandbox(&components);
    let started = Instant::now();
    let run = run_with_password(&bad, &wrong, &["--format", "json"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(run.code, 0);
    let all = case_rows(&results(&bad.run_dir()));
    assert_eq!(all.len(), 8, "{all:?}");
    for c in &all {
        assert!(matches!(c.2.as_str(), "error" | "failed"), "{c:?}");
        assert!(c.3.contains("authentication failed"), "{c:?}");
    }
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(!out.contains(PASSWORD), "the password is in the output");
    let leaks = files_containing(&bad.run_dir(), PASSWORD);
    assert!(leaks.is_empty(), "the password is in {leaks:?}");
    for f in ["results.json", "junit.xml", "report.html"] {
        assert!(bad.run_dir().join(f).exists(), "{f} missing");
    }
}

#[test]
fn a_server_that_is_not_listening_is_connection_refused_not_a_hang() {
    let port = free_port();
    let components = [
        format!("id = \"pg\"\nkind = \"postgres\"\nport = {port}\nuser = \"postgres\""),
        format!("id = \"maria\"\nkind = \"mariadb\"\nport = {port}\nuser = \"root\""),
        format!("id = \"pgcli\"\nkind = \"psql\"\nport = {port}\nuser = \"postgres\""),
        format!("id = \"mariacli\"\nkind = \"mysql-cli\"\nport = {port}\nuser = \"root\""),
    ];
    let sb = auth_sandbox(&components);
    let started = Instant::now();
    let run = sb.run_own_suites(&[]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    let all = case_rows(&results(&sb.run_dir()));
    assert_eq!(all.len(), 8, "{all:?}");
    for c in &all {
        assert!(matches!(c.2.as_str(), "error" | "failed"), "{c:?}");
        assert!(c.3.contains("connection refused"), "{c:?}");
    }
}
