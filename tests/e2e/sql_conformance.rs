//! A conformance check in the way the classic sqllogictest corpus is built: a generator writes a
//! few thousand random `SELECT`s over small tables (rowsort, valuesort and nosort; results over
//! eight values hashed; multi-column results listed one value per line), the expected results
//! come from SQLite, and the file then runs on PostgreSQL and MariaDB. The test prints how many
//! records pass on each engine and sorts the rest into classes by what the query does (integer
//! division, NULL ordering, string comparison, …), so a change in rendering or comparison that
//! breaks records shows as a change in those counts.
//!
//! Nothing here is copied from a corpus: the generator is this file's own.

use crate::sql::own_databases;
use crate::util::{Sandbox, case, results};
use adaptest::kinds::sql::{SltOptions, run_slt_with, values};
use adaptest_adapters::component::{self, ComponentConfig, Endpoint, Session};
use adaptest_adapters::target::LocalTarget;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Records the generator writes (queries; the set-up statements come on top).
const QUERIES: usize = 3000;
const DB: &str = "adaptest_e2e_conformance";
/// The generator's seed: every run writes the same file.
const SEED: u64 = 0x5eed_0fad_a97e_5700;

/// A small deterministic generator (xorshift64*), so every run writes the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const WORDS: [&str; 6] = ["apple", "Apple", "pear", "plum", "Plum", "fig"];

/// What a query uses that engines are known to treat differently: the classes of failures.
#[derive(Debug, Default, Clone)]
struct Tags(Vec<&'static str>);

impl Tags {
    fn add(&mut self, t: &'static str) {
        if !self.0.contains(&t) {
            self.0.push(t);
        }
    }
}

/// One generated query: SQL, declared types, sort mode, tags.
struct Query {
    sql: String,
    types: String,
    sort: &'static str,
    tags: Tags,
}

struct Gen {
    rng: Rng,
}

impl Gen {
    /// An integer expression over `t1` (`a`, `b` nullable integers).
    fn int_expr(&mut self, depth: u32, tags: &mut Tags) -> String {
        let r = if depth == 0 { 0 } else { self.rng.below(8) };
        match r {
            0..=2 => match self.rng.below(3) {
                0 => "a".into(),
                1 => "b".into(),
                _ => self.rng.int(-9, 9).to_string(),
            },
            3 | 4 => {
                let op = self.rng.pick(&["+", "-", "*"]);
                format!(
                    "({} {op} {})",
                    self.int_expr(depth - 1, tags),
                    self.int_expr(depth - 1, tags)
                )
            }
            5 => {
                tags.add("division");
                format!(
                    "({} / {})",
                    self.int_expr(depth - 1, tags),
                    self.int_expr(depth - 1, tags)
                )
            }
            6 => format!(
                "coalesce({}, {})",
                self.int_expr(depth - 1, tags),
                self.rng.int(-5, 5)
            ),
            _ => format!("abs({})", self.int_expr(depth - 1, tags)),
        }
    }

    fn pred(&mut self, depth: u32, tags: &mut Tags) -> String {
        let r = if depth == 0 {
            self.rng.below(5)
        } else {
            self.rng.below(8)
        };
        match r {
            0 | 1 => {
                let cmp = self.rng.pick(&["=", "<>", "<", "<=", ">", ">="]);
                format!(
                    "{} {cmp} {}",
                    self.int_expr(1, tags),
                    self.int_expr(1, tags)
                )
            }
            2 => format!(
                "{} is {}null",
                self.rng.pick(&["a", "b", "c"]),
                if self.rng.chance(50) { "not " } else { "" }
            ),
            3 => {
                let lo = self.rng.int(-10, 5);
                format!(
                    "{} between {lo} and {}",
                    self.rng.pick(&["a", "b"]),
                    lo + self.rng.int(0, 10)
                )
            }
            4 => {
                tags.add("string comparison");
                let w = self.rng.pick(&WORDS);
                if self.rng.chance(50) {
                    format!("c = '{w}'")
                } else {
                    format!("c like '{}%'", &w[..2])
                }
            }
            5 => format!("not ({})", self.pred(depth - 1, tags)),
            6 => format!(
                "({} and {})",
                self.pred(depth - 1, tags),
                self.pred(depth - 1, tags)
            ),
            _ => format!(
                "({} or {})",
                self.pred(depth - 1, tags),
                self.pred(depth - 1, tags)
            ),
        }
    }

    fn query(&mut self) -> Query {
        let mut tags = Tags::default();
        let where_ = |g: &mut Gen, tags: &mut Tags| {
            if g.rng.chance(70) {
                format!(" where {}", g.pred(2, tags))
            } else {
                String::new()
            }
        };
        match self.rng.below(9) {
            // expressions, rows sorted
            0..=2 => {
                let n = self.rng.int(1, 3) as usize;
                let cols: Vec<String> = (0..n).map(|_| self.int_expr(2, &mut tags)).collect();
                let w = where_(self, &mut tags);
                Query {
                    sql: format!("select {} from conf_t1{w}", cols.join(", ")),
                    types: "I".repeat(n),
                    sort: "rowsort",
                    tags,
                }
            }
            // aggregates
            3 => {
                let x = self.int_expr(1, &mut tags);
                let agg = self
                    .rng
                    .pick(&["count(*)", "count", "sum", "min", "max", "avg"]);
                let (e, ty) = match agg {
                    "count(*)" => ("count(*)".to_string(), "I"),
                    "avg" => {
                        tags.add("avg");
                        (format!("avg({x})"), "R")
                    }
                    f => (format!("{f}({x})"), "I"),
                };
                let w = where_(self, &mut tags);
                Query {
                    sql: format!("select {e} from conf_t1{w}"),
                    types: ty.into(),
                    sort: "nosort",
                    tags,
                }
            }
            // groups
            4 => {
                let g = self.rng.pick(&["a", "b", "c"]);
                let ty = if g == "c" { "TI" } else { "II" };
                if g == "c" {
                    tags.add("string comparison");
                }
                let w = where_(self, &mut tags);
                Query {
                    sql: format!("select {g}, count(*) from conf_t1{w} group by {g}"),
                    types: ty.into(),
                    sort: "rowsort",
                    tags,
                }
            }
            // distinct values
            5 => {
                let x = self.int_expr(1, &mut tags);
                let w = where_(self, &mut tags);
                Query {
                    sql: format!("select distinct {x} from conf_t1{w}"),
                    types: "I".into(),
                    sort: "valuesort",
                    tags,
                }
            }
            // a join
            6 => {
                let cmp = self.rng.pick(&["=", "<"]);
                Query {
                    sql: format!(
                        "select conf_t1.a, conf_t2.e from conf_t1, conf_t2 where conf_t1.b {cmp} conf_t2.d"
                    ),
                    types: "II".into(),
                    sort: "rowsort",
                    tags,
                }
            }
            // ordered by the query itself: NULLs sort first or last depending on the engine
            7 => {
                tags.add("null ordering");
                let x = self.int_expr(1, &mut tags);
                let w = where_(self, &mut tags);
                Query {
                    sql: format!("select {x}, c from conf_t1{w} order by 1, 2"),
                    types: "IT".into(),
                    sort: "nosort",
                    tags,
                }
            }
            // case and a scalar subquery
            _ => {
                let p = self.pred(1, &mut tags);
                let x = self.int_expr(1, &mut tags);
                tags.add("avg");
                Query {
                    sql: format!(
                        "select case when {p} then {x} else -1 end from conf_t1 where b > (select avg(d) from conf_t2)"
                    ),
                    types: "I".into(),
                    sort: "rowsort",
                    tags,
                }
            }
        }
    }
}

/// Set-up statements: two small tables with NULLs and mixed-case words.
fn setup(rng: &mut Rng) -> Vec<String> {
    let mut s = vec![
        "drop table if exists conf_t1".to_string(),
        "drop table if exists conf_t2".to_string(),
        "create table conf_t1 (a integer, b integer, c varchar(8))".to_string(),
        "create table conf_t2 (d integer, e integer)".to_string(),
    ];
    let int = |rng: &mut Rng| {
        let v = rng.int(-20, 20);
        if rng.chance(15) {
            "null".to_string()
        } else {
            v.to_string()
        }
    };
    for _ in 0..12 {
        let (a, b) = (int(rng), int(rng));
        let w = rng.pick(&WORDS);
        let c = if rng.chance(15) {
            "null".to_string()
        } else {
            format!("'{w}'")
        };
        s.push(format!("insert into conf_t1 values ({a}, {b}, {c})"));
    }
    for _ in 0..8 {
        let (d, e) = (int(rng), int(rng));
        s.push(format!("insert into conf_t2 values ({d}, {e})"));
    }
    s
}

fn sql_args(sql: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sql".into(), json!(sql));
    m
}

async fn open(kind: &str) -> (Arc<dyn component::Component>, Box<dyn Session>) {
    let mut cfg = ComponentConfig {
        id: "db".into(),
        kind: kind.into(),
        ..Default::default()
    };
    match kind {
        "postgres" => {
            cfg.user = Some("postgres".into());
            cfg.database = Some(DB.into());
        }
        "mariadb" => {
            cfg.user = Some("root".into());
            cfg.database = Some(DB.into());
        }
        _ => {}
    }
    let adapter = component::create(&cfg).unwrap().expect("an adapter");
    let port = component::component_kind(kind).and_then(|k| k.default_port);
    let endpoint = Endpoint {
        addr: port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        target: Arc::new(LocalTarget::new("local")),
        workdir: std::env::temp_dir().display().to_string(),
    };
    let session = adapter.open(&endpoint).await.unwrap();
    (adapter, session)
}

/// The file, with SQLite's results as the expectations; and the tags of the query at each line.
async fn generate() -> (String, BTreeMap<u32, Tags>) {
    let (_adapter, mut lite) = open("sqlite").await;
    let mut rng = Rng(SEED);
    let mut out = String::new();
    let mut line = 1u32;
    let push = |out: &mut String, text: &str, line: &mut u32| {
        out.push_str(text);
        *line += text.matches('\n').count() as u32;
    };
    for st in setup(&mut rng) {
        lite.execute("sql.exec", &sql_args(&st)).await.unwrap();
        push(&mut out, &format!("statement ok\n{st}\n\n"), &mut line);
    }
    let mut g = Gen { rng };
    let mut tags = BTreeMap::new();
    let mut written = 0;
    while written < QUERIES {
        let q = g.query();
        // SQLite refuses none of these in practice; a query it refuses is not written
        let Ok(res) = lite.execute("sql.query", &sql_args(&q.sql)).await else {
            continue;
        };
        let types: Vec<char> = q.types.chars().collect();
        let mut rows: Vec<Vec<String>> = res["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| values::render(v.clone(), types.get(i).copied()))
                    .collect()
            })
            .collect();
        match q.sort {
            "rowsort" => rows.sort(),
            "valuesort" => {
                let mut v: Vec<String> = rows.into_iter().flatten().collect();
                v.sort();
                rows = v.into_iter().map(|x| vec![x]).collect();
            }
            _ => {}
        }
        let flat: Vec<String> = rows.into_iter().flatten().collect();
        let expected = if flat.len() as u64 > values::DEFAULT_HASH_THRESHOLD {
            values::hash_line(&flat)
        } else {
            flat.join("\n")
        };
        tags.insert(line, q.tags);
        let block = if expected.is_empty() {
            format!("query {} {}\n{}\n----\n\n", q.types, q.sort, q.sql)
        } else {
            format!(
                "query {} {}\n{}\n----\n{expected}\n\n",
                q.types, q.sort, q.sql
            )
        };
        push(&mut out, &block, &mut line);
        written += 1;
    }
    (out, tags)
}

/// Passed records and the failures by class, on one engine.
struct Tally {
    ran: u64,
    failed: u64,
    classes: BTreeMap<String, u64>,
}

async fn tally(kind: &str, script: &str, tags: &BTreeMap<u32, Tags>) -> Tally {
    let (_adapter, mut session) = open(kind).await;
    let opts = SltOptions {
        keep_going: true,
        ..SltOptions::default()
    };
    let report = run_slt_with(session.as_mut(), kind, "conformance.slt", script, &opts).await;
    assert!(
        report.failures.iter().all(|f| !f.infra),
        "{kind}: {:?}",
        report.failures.iter().find(|f| f.infra)
    );
    let mut classes = BTreeMap::new();
    for f in &report.failures {
        let line: u32 = f
            .message
            .strip_prefix("conformance.slt:")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no line in {f}"));
        let how = if f.message.contains("query result mismatch") {
            "different result"
        } else {
            "refused"
        };
        // a refusal names its cause; a different result is classed by what the query uses
        let what = if how == "refused" && f.message.contains("division by zero") {
            "division"
        } else {
            tags.get(&line)
                .and_then(|t| t.0.first().copied())
                .unwrap_or("unclassified")
        };
        *classes.entry(format!("{how}: {what}")).or_insert(0) += 1;
    }
    Tally {
        ran: report.records.ran,
        failed: report.failures.len() as u64,
        classes,
    }
}

#[test]
fn a_generated_classic_file_with_sqlite_expectations_runs_on_postgres_and_mariadb() {
    own_databases(DB);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (script, tags) = rt.block_on(generate());
    let total = (QUERIES + setup(&mut Rng(SEED)).len()) as u64;

    // The file is SQLite's own: through the binary, as one case, every record runs and passes.
    let sb = Sandbox::new();
    sb.write(
        "suites/conf.toml",
        "[suite]\nid = \"e2e.conformance\"\ntitle = \"generated\"\ncomponent = \"sql\"\n\n[[case]]\nid = \"generated\"\ntitle = \"generated\"\ntimeout = \"10m\"\nsql = \"conformance.slt\"\n",
    );
    sb.write("suites/conformance.slt", &script);
    sb.write(
        "plan.toml",
        &crate::sql::plan(&["id = \"lite\"\nkind = \"sqlite\""], &["e2e.conformance"]),
    );
    sb.run_own_suites(&[]).expect_code(0);
    let r = results(&sb.run_dir());
    let k = case(&r, "local/lite/e2e.conformance", "generated");
    assert_eq!(k["status"], "passed", "{}", k["reason"]);
    assert_eq!(k["sql_records"]["ran"], total);

    let mut report =
        format!("conformance: {QUERIES} generated queries (+ set-up), expectations from SQLite\n");
    for kind in ["sqlite", "postgres", "mariadb"] {
        let t = rt.block_on(tally(kind, &script, &tags));
        assert_eq!(t.ran, total, "{kind}: every record ran");
        report.push_str(&format!(
            "  {kind}: {} of {} records passed\n",
            t.ran - t.failed,
            t.ran
        ));
        for (class, n) in &t.classes {
            report.push_str(&format!("    {n:5}  {class}\n"));
        }
        if kind == "sqlite" {
            assert_eq!(t.failed, 0, "{report}");
        } else {
            // Rendering by declared type and value-wise comparison make most records portable;
            // a regression in either shows as a drop far below this.
            assert!(
                (t.ran - t.failed) * 10 >= t.ran * 6,
                "{kind}: fewer than 60% passed\n{report}"
            );
        }
    }
    eprintln!("{report}");
}
