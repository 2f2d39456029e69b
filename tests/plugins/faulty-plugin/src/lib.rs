//! A plugin that misbehaves on request, for the containment tests: `fault.echo` answers,
//! `fault.panic` panics, `fault.abort` aborts the process, `fault.exit` exits it and
//! `fault.hang` never answers. `open` panics when the plan sets option `panic_on_open`.

use adaptest_plugin_sdk::serde_json::{Map, Value};
use adaptest_plugin_sdk::{Adapter, Description, Error, OpenConfig, Session};

/// The misbehaving adapter.
pub struct Faulty;

impl Adapter for Faulty {
    fn describe(&self) -> Description {
        Description {
            name: "faulty".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["faults".into()],
            operations: [
                "fault.echo",
                "fault.panic",
                "fault.abort",
                "fault.exit",
                "fault.hang",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }

    fn open(&self, config: &OpenConfig) -> Result<Box<dyn Session>, Error> {
        if config.option("panic_on_open").is_some() {
            panic!("asked to panic on open");
        }
        Ok(Box::new(FaultySession))
    }
}

struct FaultySession;

impl Session for FaultySession {
    fn server_version(&mut self) -> Option<String> {
        Some(format!(
            "faulty {} (pid {})",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        ))
    }

    fn execute(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, Error> {
        let msg = args
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        match op {
            "fault.echo" => Ok(Value::Object(args.clone())),
            "fault.panic" => panic!("deliberate panic: {msg}"),
            "fault.abort" => {
                eprintln!("faulty-plugin: aborting: {msg}");
                std::process::abort()
            }
            "fault.exit" => {
                eprintln!("faulty-plugin: exiting with 3: {msg}");
                std::process::exit(3)
            }
            "fault.hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            other => Err(Error::unsupported(other)),
        }
    }
}

adaptest_plugin_sdk::export_adapter!(Faulty);
