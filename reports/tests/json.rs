//! `results.json`: round trip and schema-version checks.

mod common;

use adaptest_reports::*;

#[test]
fn json_round_trips_exactly() {
    let results = common::sample();
    let text = to_json(&results).unwrap();
    assert!(
        text.contains("\n  \"schema_version\": 3,"),
        "pretty-printed:\n{text}"
    );
    assert_eq!(from_json(&text).unwrap(), results);
}

#[test]
fn unknown_fields_are_tolerated() {
    let results = common::sample();
    let mut value: serde_json::Value = serde_json::from_str(&to_json(&results).unwrap()).unwrap();
    value["added_by_a_newer_minor"] = serde_json::json!({"anything": [1, 2]});
    value["run"]["extra_field"] = serde_json::json!("x");
    assert_eq!(from_json(&value.to_string()).unwrap(), results);
}

#[test]
fn newer_schema_version_is_refused_naming_both_versions() {
    let results = common::sample();
    let mut value: serde_json::Value = serde_json::from_str(&to_json(&results).unwrap()).unwrap();
    let newer = SCHEMA_VERSION + 1;
    value["schema_version"] = newer.into();
    // A newer schema may well have changed other fields: the version must be reported, not those.
    value["summary"] = serde_json::json!("now a string");

    let err = from_json(&value.to_string()).unwrap_err();
    match &err {
        RenderError::NewerSchema { found, supported } => {
            assert_eq!((*found, *supported), (newer, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("schema version {SCHEMA_VERSION}")),
        "{message}"
    );
}

#[test]
fn current_version_is_accepted_and_garbage_is_a_parse_error() {
    let err = from_json("{\"schema_version\": 1, \"harness\": 3}").unwrap_err();
    assert!(matches!(err, RenderError::ParseJson(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());

    let err = from_json("not json").unwrap_err();
    assert!(matches!(err, RenderError::ParseJson(_)), "{err:?}");
    assert_eq!(err.to_string(), "parse results JSON");
}
