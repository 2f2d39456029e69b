//! Human durations in plan and suite files: `500ms`, `30s`, `5m`, `1h30m`. The grammar is the
//! project's one (`adaptest_adapters::duration`, shared with plugin options); this module is
//! where the spec code finds it.

pub use adaptest_adapters::duration::{DurationError, format_duration, parse_duration};
