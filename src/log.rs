//! One-line log records on stderr, in a form journald and `grep` both read well:
//! `LEVEL target: message`; or, with `--log-format json`, one JSON object a line
//! (`ts`, `level`, `target`, `msg`) for log shippers. Either way a record is exactly
//! one line: text that came from a client (a name, a path, an error from a peer) cannot
//! forge a record of its own, as newlines and other control characters in a text
//! record are escaped (`\n`, `\u{1b}`). Never pass a secret (password, token,
//! cookie) to these macros: the log is read by more people than the database.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);

/// Records as JSON lines (`--log-format json`) instead of text.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Turns debug records on or off (`--log-level debug`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn write(level: &str, target: &str, args: std::fmt::Arguments<'_>) {
    let line = record(level, target, &args.to_string(), JSON.load(Ordering::Relaxed));
    // One write per record so concurrent threads never interleave within a line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The last word of a failed command: a JSON record when the server logs JSON,
/// otherwise `jitgate: message` for a person (a parse error keeps its lines; other
/// control characters, which could drive the terminal, become U+FFFD).
pub fn fatal(msg: &str) {
    let line = if JSON.load(Ordering::Relaxed) {
        record("ERROR", "jitgate", msg, true)
    } else {
        format!("jitgate: {}\n", printable(msg))
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A character that could drive a terminal or hide what a line says: control
/// characters, bidirectional overrides, Unicode line and paragraph separators.
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Text from others (reasons, recorded SQL, error messages) as it may reach a
/// terminal: what [`unsafe_char`] names becomes U+FFFD, but newline and tab stay,
/// so a multi-line message keeps its lines.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if unsafe_char(c) && c != '\n' && c != '\t' { '\u{fffd}' } else { c }).collect()
}

fn record(level: &str, target: &str, msg: &str, json: bool) -> String {
    if json {
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let value = serde_json::json!({"ts": ts, "level": level.to_ascii_lowercase(), "target": target, "msg": msg});
        return format!("{value}\n");
    }
    format!("{level} {target}: {}\n", one_line(msg))
}

/// Escapes what would break a text record's line: newlines and other control
/// characters (tab stays).
fn one_line(msg: &str) -> std::borrow::Cow<'_, str> {
    // Line separators and bidirectional overrides too: a viewer may break or reorder
    // the line on them.
    let escaped = |c: char| unsafe_char(c) && c != '\t';
    if !msg.chars().any(|c| escaped(c) || c == '\\') {
        return msg.into();
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        match c {
            // So that an escaped newline and a typed `\n` never read the same.
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if escaped(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write("INFO", module_path!(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write("WARN", module_path!(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write("ERROR", module_path!(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write("DEBUG", module_path!(), format_args!($($arg)*))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_line_whatever_the_message_holds() {
        let forged = "user \"bob\nINFO jitgate::server: admin logged in\u{1b}[2J\"";
        let text = record("WARN", "jitgate::x", forged, false);
        assert_eq!(text, "WARN jitgate::x: user \"bob\\nINFO jitgate::server: admin logged in\\u{1b}[2J\"\n");
        let json = record("WARN", "jitgate::x", forged, true);
        assert_eq!(json.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (v["level"].as_str(), v["target"].as_str(), v["msg"].as_str()),
            (Some("warn"), Some("jitgate::x"), Some(forged))
        );
        assert!(chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).is_ok());
        assert_eq!(record("INFO", "t", "plain\ttext", false), "INFO t: plain\ttext\n");
        assert_eq!(record("INFO", "t", "a\\nb \u{2028}\u{202e}", false), "INFO t: a\\\\nb \\u{2028}\\u{202e}\n");
    }
}
