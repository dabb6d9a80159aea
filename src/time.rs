//! Wall-clock time as the rest of jitgate uses it: Unix milliseconds inside, RFC 3339
//! UTC at every interface.

use chrono::{SecondsFormat, TimeZone, Utc};

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2026-12-04T20:43:28Z` (second precision: what people and scripts compare).
pub fn rfc3339(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => String::new(),
    }
}
