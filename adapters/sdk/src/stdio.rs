//! The exec hosting: JSON lines on stdin/stdout. One request per line in, one response per
//! line out, matched by `id`; requests are served concurrently (one thread each), so sessions
//! of a bench run in parallel. stdout carries protocol lines only: log to stderr.

use crate::{Adapter, Plugin};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

/// Serve `adapter` on stdin/stdout until stdin closes (the host went away or is done), then
/// close every session and return. A plugin's `main` is usually just this call.
pub fn serve_stdio(adapter: impl Adapter) {
    let plugin = Arc::new(Plugin::new(adapter));
    serve(
        &plugin,
        std::io::stdin().lock(),
        Arc::new(Mutex::new(std::io::stdout())),
    );
    plugin.close_all();
}

/// The loop behind [`serve_stdio`], over any reader and writer (tests use pipes).
fn serve<R: BufRead, W: Write + Send + 'static>(
    plugin: &Arc<Plugin>,
    input: R,
    out: Arc<Mutex<W>>,
) {
    let mut workers = Vec::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let plugin = plugin.clone();
        let out = out.clone();
        workers.push(std::thread::spawn(move || {
            let mut answer = plugin.handle(&line);
            answer.push('\n');
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            // One write of the whole line, so concurrent answers never interleave.
            let _ = w.write_all(answer.as_bytes()).and_then(|()| w.flush());
        }));
        workers.retain(|w| !w.is_finished());
    }
    for w in workers {
        let _ = w.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Description, Error, OpenConfig, Session};
    use serde_json::{Map, Value, json};

    struct Slow;
    struct SlowSession;
    impl Adapter for Slow {
        fn describe(&self) -> Description {
            Description {
                name: "slow".into(),
                ..Description::default()
            }
        }
        fn open(&self, _: &OpenConfig) -> Result<Box<dyn Session>, Error> {
            Ok(Box::new(SlowSession))
        }
    }
    impl Session for SlowSession {
        fn execute(&mut self, _: &str, args: &Map<String, Value>) -> Result<Value, Error> {
            let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(json!(ms))
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn answers_every_line_by_id_and_in_parallel() {
        let plugin = Arc::new(Plugin::new(Slow));
        let o: Value =
            serde_json::from_str(&plugin.handle(r#"{"protocol":1,"op":"open"}"#)).unwrap();
        let a = o["result"]["session"].as_u64().unwrap();
        let o: Value =
            serde_json::from_str(&plugin.handle(r#"{"protocol":1,"op":"open"}"#)).unwrap();
        let b = o["result"]["session"].as_u64().unwrap();
        let input = format!(
            "{}\n\n{}\n{}\n",
            json!({"protocol": 1, "id": 1, "op": "execute", "session": a, "name": "x", "args": {"ms": 300}}),
            json!({"protocol": 1, "id": 2, "op": "execute", "session": b, "name": "x", "args": {"ms": 1}}),
            json!({"protocol": 1, "id": 3, "op": "describe"}),
        );
        let out = Shared::default();
        serve(&plugin, input.as_bytes(), Arc::new(Mutex::new(out.clone())));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let answers: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 3, "{text}");
        let ids: Vec<u64> = answers.iter().map(|a| a["id"].as_u64().unwrap()).collect();
        // The slow call (id 1) finishes last: requests are not served one after another.
        assert_eq!(ids.last(), Some(&1), "{text}");
        assert!(answers.iter().all(|a| a["ok"] == true), "{text}");
    }
}
