//! `jitgate sessions`: the sessions of `jitgate connect` (one per run), their
//! streams, and for PostgreSQL the SQL each stream sent. Who sees what is the
//! server's rule: your own sessions, or every session for an admin.

use super::api::Api;
use super::output::{line, table, text, Out};
use super::requests::enc;
use crate::error::Result;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// The newest sessions you may see, newest first.
    List {
        /// Only the sessions of this request (`req_…`).
        #[arg(long)]
        request: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One session: its streams, their bytes and end, and the SQL they sent.
    Show {
        id: String,
        /// Statements shown per stream (the newest; the server keeps up to 10,000).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=200))]
        queries: u32,
    },
    /// End a session: its live streams are cut at once (the grant stays live).
    End {
        id: String,
        #[arg(long, default_value = "ended from the terminal")]
        reason: String,
    },
}

pub fn run(api: &Api, out: Out, cmd: SessionsCommand) -> Result<i32> {
    match cmd {
        SessionsCommand::List { request, limit } => {
            let only = request.map(|r| format!("&request={}", enc(&r))).unwrap_or_default();
            let page = api.get(&format!("/api/v1/sessions?limit={limit}{only}"))?;
            out.show(&page, || {
                let rows: Vec<Vec<String>> = page["items"].as_array().into_iter().flatten().map(session_row).collect();
                table(&["ID", "USER", "CONNECTION", "REQUEST", "STARTED", "ENDED", "CLIENT"], &rows)
            });
        }
        SessionsCommand::Show { id, queries } => {
            let mut s = api.get(&format!("/api/v1/sessions/{}", enc(&id)))?;
            keep_newest_queries(&mut s, queries as usize);
            out.show(&s, || session_text(&s));
        }
        SessionsCommand::End { id, reason } => {
            let s = api.post(&format!("/api/v1/sessions/{}/end", enc(&id)), &json!({"reason": reason}))?;
            out.show(&s, || format!("Session {} ended: {}", line(&s["id"]), line(&s["end_reason"])));
        }
    }
    Ok(0)
}

fn session_row(s: &Value) -> Vec<String> {
    ["id", "user", "connection", "request_id", "started_at", "ended_at", "client_addr"]
        .iter()
        .map(|k| line(&s[*k]))
        .collect()
}

fn keep_newest_queries(session: &mut Value, n: usize) {
    for stream in session["streams"].as_array_mut().into_iter().flatten() {
        if let Some(q) = stream["queries"].as_array_mut() {
            let drop = q.len().saturating_sub(n);
            q.drain(..drop);
        }
    }
}

fn session_text(s: &Value) -> String {
    let ended = match s["ended_at"].as_str() {
        Some(at) => format!("ended {}: {}", line(&json!(at)), line(&s["end_reason"])),
        None => "not ended".to_string(),
    };
    let mut lines = vec![
        format!(
            "Session {} by {} on {} ({})",
            text(&s["id"]),
            text(&s["user"]),
            text(&s["connection"]),
            text(&s["request_id"])
        ),
        format!("  from {}, started {}, {ended}", text(&s["client_addr"]), text(&s["started_at"])),
    ];
    let streams = s["streams"].as_array().cloned().unwrap_or_default();
    if streams.is_empty() {
        lines.push("  no streams".into());
    }
    let total = s["streams_total"].as_u64().unwrap_or(streams.len() as u64);
    if total > streams.len() as u64 {
        lines.push(format!("  (the newest {} of {total} streams)", streams.len()));
    }
    for st in &streams {
        let end = match st["ended_at"].as_str() {
            Some(at) => format!("ended {} ({})", line(&json!(at)), line(&st["end_reason"])),
            None => "live".to_string(),
        };
        lines.push(format!(
            "  stream {} from {} to {}: started {}, {end}; {} B up, {} B down",
            line(&st["id"]),
            line(&st["client_addr"]),
            line(&st["target"]),
            line(&st["started_at"]),
            line(&st["bytes_up"]),
            line(&st["bytes_down"])
        ));
        let shown = st["queries"].as_array().map_or(0, Vec::len);
        let total = st["queries_total"].as_u64().unwrap_or(shown as u64);
        if total > shown as u64 {
            lines.push(format!("    (the newest {shown} of {total} statements)"));
        }
        for q in st["queries"].as_array().into_iter().flatten() {
            let sql: String = text(&q["sql"]).split_whitespace().collect::<Vec<_>>().join(" ");
            let cut = if q["truncated"] == true { " [truncated]" } else { "" };
            lines.push(format!("    {} {:<5} {sql}{cut}", line(&q["at"]), line(&q["kind"])));
        }
    }
    lines.join("\n")
}
