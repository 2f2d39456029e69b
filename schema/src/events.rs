//! The `--format json` event stream: one [`EventLine`] per line on stdout, each carrying the
//! stream's version ([`EVENT_STREAM_VERSION`]) beside the event's own fields.
//!
//! ```json
//! {"stream_version":1,"event":"case_finished","combination":"local/os/os.basic","case":"arch",…}
//! ```

use crate::results::{Level, Status, Summary, Verdict};
use serde::{Deserialize, Serialize};

/// Version of the event stream, in every line as `stream_version`.
///
/// Bump it when an event or a field changes meaning or goes away; adding an event or a field
/// does not (readers ignore what they do not know).
///
/// History: 1 — the events below; before it, lines carried no version.
pub const EVENT_STREAM_VERSION: u32 = 1;

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    RunStarted {
        run_id: String,
        run_dir: String,
        combinations: usize,
        cases: usize,
        already_done: usize,
        resumed: bool,
    },
    TargetReady {
        target: String,
        arch: String,
        os: String,
    },
    TargetFailed {
        target: String,
        error: String,
    },
    CaseFinished {
        combination: String,
        case: String,
        level: Level,
        status: Status,
        duration_ms: u64,
        attempts: u32,
        reason: Option<String>,
    },
    Interrupted {
        reason: String,
    },
    RunFinished {
        run_dir: String,
        summary: Summary,
        /// The run's certification verdict (`certified`, `certified_with_notes`,
        /// `not_certified`).
        verdict: Verdict,
        exit_code: i32,
    },
}

/// One line of the stream: the version, then the event (`"event": "<name>"` and its fields).
///
/// `flatten` is used here, against the rule for stored formats, because the event's fields have
/// always been at the top level of a line: the stream is not stored, and a reader keeps
/// working when it ignores `stream_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub stream_version: u32,
    #[serde(flatten)]
    pub event: Event,
}

impl EventLine {
    /// `event` as a line of this version of the stream.
    pub fn new(event: Event) -> EventLine {
        EventLine {
            stream_version: EVENT_STREAM_VERSION,
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_the_version_first_and_the_event_fields_beside_it() {
        let line = EventLine::new(Event::Interrupted {
            reason: "SIGINT".into(),
        });
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"stream_version":1,"event":"interrupted","reason":"SIGINT"}"#
        );
        let back: EventLine = serde_json::from_str(&text).unwrap();
        assert_eq!(back, line);
    }
}
