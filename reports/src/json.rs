//! `results.json`: the stored form of [`RunResults`], the document every other report is
//! rendered from.

use crate::error::RenderError;
use crate::schema::{RunResults, SCHEMA_VERSION};
use serde::Deserialize;

/// Serialize `results` as pretty-printed JSON (the content of `results.json`).
///
/// Note: JSON has no NaN or infinity; serde_json writes a non-finite [`crate::Metric::value`]
/// as `null`, which [`from_json`] then refuses.
pub fn to_json(results: &RunResults) -> Result<String, RenderError> {
    serde_json::to_string_pretty(results).map_err(RenderError::SerializeJson)
}

/// Parse a `results.json` document.
///
/// The `schema_version` is checked before anything else, so a document from a newer harness is
/// refused with [`RenderError::NewerSchema`] (naming both versions) rather than with whatever
/// field happens not to parse. Unknown fields are ignored, as the schema promises. A version 1
/// document (before verdicts) is judged on reading, with no waivers.
pub fn from_json(text: &str) -> Result<RunResults, RenderError> {
    /// Only the version: every other field is skipped, whatever its shape.
    #[derive(Deserialize)]
    struct VersionProbe {
        schema_version: u32,
    }

    let probe: VersionProbe = serde_json::from_str(text).map_err(RenderError::ParseJson)?;
    if probe.schema_version > SCHEMA_VERSION {
        return Err(RenderError::NewerSchema {
            found: probe.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    let mut results: RunResults = serde_json::from_str(text).map_err(RenderError::ParseJson)?;
    if probe.schema_version < 2 {
        // Version 1 had no verdicts (and no waivers): judge it now, as of the day it finished.
        let finished_on = results.run.finished_at.get(..10).unwrap_or("").to_owned();
        crate::verdict::judge(&mut results, &finished_on);
    }
    Ok(results)
}
