//! What the command line prints: readable tables and lines for people, one JSON
//! document with `--json` for scripts. Colour only on a terminal and never with
//! `NO_COLOR` set. Errors go to stderr (see `main`).

use crate::domain::duration::humanize;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::IsTerminal;

/// Writes one line to stdout. A closed pipe (`jitgate … | head`) ends the process
/// quietly, as the shell expects, instead of a panic.
pub fn say(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(line.as_bytes()).and_then(|_| stdout.write_all(b"\n")).and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub json: bool,
    pub color: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        let color =
            !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Out { json, color }
    }

    /// Prints `value` as JSON with `--json`, else the human text `human()` makes.
    pub fn show(&self, value: &Value, human: impl FnOnce() -> String) {
        if self.json {
            say(&serde_json::to_string_pretty(value).unwrap_or_default());
        } else {
            let text = human();
            if !text.is_empty() {
                say(&text);
            }
        }
    }

    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn status(&self, status: &str) -> String {
        let code = match status {
            "APPROVED" => "32",
            "PENDING" => "33",
            "REJECTED" | "REVOKED" => "31",
            _ => "2",
        };
        self.paint(code, status)
    }
}

/// A plain table: columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible_len(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - visible_len(c)))).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Length without ANSI colour codes.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// A value for people to read, made safe by [`crate::log::printable`].
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => crate::log::printable(s),
        other => other.to_string(),
    }
}

/// [`text`] on one line: for a field in a list, where a newline would start a line
/// that looks like the next entry.
pub fn line(v: &Value) -> String {
    text(v).replace(['\n', '\r', '\t'], " ")
}

/// Cuts free text to one short table cell.
pub fn cell(v: &Value, max: usize) -> String {
    let t = text(v).replace(['\n', '\t'], " ");
    if t.chars().count() > max {
        format!("{}…", t.chars().take(max - 1).collect::<String>())
    } else {
        t
    }
}

pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// "3 minutes ago" style age of an RFC 3339 time.
pub fn age(v: &Value) -> String {
    match parse_time(v).map(|t| (Utc::now() - t).num_seconds().max(0) as u64) {
        Some(s) if s < 5 => "just now".into(),
        Some(s) => format!("{} ago", humanize(s)),
        None => "-".into(),
    }
}

/// Seconds from now until an RFC 3339 time, rounded to the minute past one minute,
/// so "Access expires in 2 hours" reads as it was granted.
pub fn remaining_secs(v: &Value) -> Option<u64> {
    let secs = ((parse_time(v)? - Utc::now()).num_milliseconds().max(0) as u64 + 500) / 1_000;
    Some(if secs >= 60 { (secs + 30) / 60 * 60 } else { secs })
}

/// Approval progress per group: `dba-team 1/1, security 0/1`.
pub fn progress(request: &Value) -> String {
    if request["auto_approved"] == true {
        return "auto".into();
    }
    let groups = request["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        return "-".into();
    }
    groups
        .iter()
        .map(|g| {
            format!("{} {}/{}", text(&g["group"]), g["approvals"].as_array().map_or(0, Vec::len), text(&g["required"]))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_pad_and_ignore_colour_codes() {
        let t = table(
            &["ID", "STATUS"],
            &[vec!["req_1".into(), "\x1b[32mAPPROVED\x1b[0m".into()], vec!["req_22".into(), "x".into()]],
        );
        assert_eq!(t, "ID      STATUS\nreq_1   \x1b[32mAPPROVED\x1b[0m\nreq_22  x");
    }

    #[test]
    fn progress_reads_per_group() {
        let r = json!({"groups": [{"group": "dba", "required": 1, "approvals": ["bob"]}, {"group": "sec", "required": 1, "approvals": []}]});
        assert_eq!(progress(&r), "dba 1/1, sec 0/1");
        assert_eq!(cell(&json!("a very long reason indeed"), 10), "a very lo…");
    }

    #[test]
    fn text_from_others_cannot_drive_the_terminal() {
        let sql = json!("SELECT 1; -- \u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\nnext\tline");
        assert_eq!(text(&sql), "SELECT 1; -- \u{fffd}]0;pwned\u{fffd}\u{fffd}[2J\u{fffd}31m\nnext\tline");
        let reordered = json!("DROP TABLE x; -- \u{202e}olleh\u{2066}");
        assert_eq!(text(&reordered), "DROP TABLE x; -- \u{fffd}olleh\u{fffd}");
        assert_eq!(line(&json!("a\n    2026 Q select 1")), "a     2026 Q select 1");
    }
}
