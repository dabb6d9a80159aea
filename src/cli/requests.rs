//! `jitgate requests …`: list, show and move access requests.

use super::api::Api;
use super::output::{age, cell, progress, table, text, Out};
use crate::error::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum RequestsCommand {
    /// List requests: yours and those you may review (admins: all), newest first.
    #[command(
        after_help = "Examples:\n  jitgate requests list --reviewable\n  jitgate requests list --status PENDING --connection prod-postgres"
    )]
    List(ListArgs),
    /// Show one request: who, what, how long, why, and which groups still need an approval.
    Show { id: String },
    /// Approve a request you may review.
    #[command(after_help = "Example:\n  jitgate requests approve req_5f2c… --comment 'ok for INC-1234'")]
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request you may review.
    #[command(after_help = "Example:\n  jitgate requests reject req_5f2c… --reason 'use the read replica'")]
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke a live grant (admins and the connection's approvers).
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw your own pending request.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give your access back before it expires.
    End {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only requests with this status (PENDING, APPROVED, REJECTED, CANCELLED, EXECUTED, REVOKED).
    #[arg(long)]
    status: Option<String>,
    /// Only requests for this connection.
    #[arg(long)]
    connection: Option<String>,
    /// Only requests by this user.
    #[arg(long)]
    user: Option<String>,
    /// Only requests waiting for your review.
    #[arg(long)]
    reviewable: bool,
    /// Only your own requests.
    #[arg(long, conflicts_with = "user")]
    mine: bool,
    /// At most this many (1-200).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub fn run(api: &Api, out: Out, cmd: RequestsCommand) -> Result<i32> {
    let (id, action, body) = match cmd {
        RequestsCommand::List(args) => return list(api, out, args),
        RequestsCommand::Show { id } => {
            let r = api.get(&format!("/api/v1/requests/{}", enc(&id)))?;
            out.show(&r, || describe(&r, out));
            return Ok(0);
        }
        RequestsCommand::Approve { id, comment } => (id, "approve", json!({"comment": comment})),
        RequestsCommand::Reject { id, reason } => (id, "reject", json!({"reason": reason})),
        RequestsCommand::Revoke { id, reason } => (id, "revoke", json!({"reason": reason})),
        RequestsCommand::Cancel { id, reason } => (id, "cancel", json!({"reason": reason})),
        RequestsCommand::End { id, reason } => (id, "end", json!({"reason": reason})),
    };
    let r = api.post(&format!("/api/v1/requests/{}/{action}", enc(&id)), &body)?;
    out.show(&r, || format!("{} is {} ({})", text(&r["id"]), out.status(&text(&r["status"])), progress(&r)));
    Ok(0)
}

/// Percent-encodes a path segment typed by a person.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn list(api: &Api, out: Out, a: ListArgs) -> Result<i32> {
    let mut q = vec![format!("limit={}", a.limit)];
    let me;
    let user = if a.mine {
        me = api.get("/api/v1/me")?;
        Some(text(&me["username"]))
    } else {
        a.user
    };
    for (k, v) in [("status", a.status), ("connection", a.connection), ("user", user)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(&v)));
        }
    }
    if a.reviewable {
        q.push("reviewable=true".into());
    }
    let page = api.get(&format!("/api/v1/requests?{}", q.join("&")))?;
    out.show(&page, || {
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return "No requests.".into();
        }
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|r| {
                vec![
                    text(&r["id"]),
                    text(&r["user"]),
                    text(&r["connection"]),
                    out.status(&text(&r["status"])),
                    text(&r["duration"]),
                    age(&r["created_at"]),
                    progress(r),
                    cell(&r["reason"], 40),
                ]
            })
            .collect();
        table(&["ID", "USER", "CONNECTION", "STATUS", "DURATION", "ASKED", "APPROVALS", "REASON"], &rows)
    });
    Ok(0)
}

/// A request in lines a person reads top to bottom.
pub fn describe(r: &Value, out: Out) -> String {
    let mut lines = vec![
        format!("Request     {}", text(&r["id"])),
        format!("Status      {}", out.status(&text(&r["status"]))),
        format!("User        {}", text(&r["user"])),
        format!("Connection  {}", text(&r["connection"])),
        format!("Duration    {}", text(&r["duration"])),
        format!("Reason      {}", text(&r["reason"])),
        format!("Asked       {} ({})", text(&r["created_at"]), age(&r["created_at"])),
    ];
    if !r["approved_at"].is_null() {
        lines.push(format!("Approved    {}", text(&r["approved_at"])));
        lines.push(format!("Expires     {}", text(&r["expires_at"])));
    }
    if !r["ended_at"].is_null() {
        lines.push(format!(
            "Ended       {} by {} ({})",
            text(&r["ended_at"]),
            text(&r["ended_by"]),
            text(&r["end_reason"])
        ));
    }
    for g in r["groups"].as_array().into_iter().flatten() {
        let approvals: Vec<String> = g["approvals"].as_array().into_iter().flatten().map(text).collect();
        let have = approvals.len() as u64;
        let need = g["required"].as_u64().unwrap_or(1);
        let state = if have >= need { "done".to_string() } else { format!("needs {} more", need - have) };
        lines.push(format!(
            "Group       {}: {have}/{need} {state} {}",
            text(&g["group"]),
            if approvals.is_empty() { String::new() } else { format!("({})", approvals.join(", ")) }
        ));
    }
    for rv in r["reviews"].as_array().into_iter().flatten() {
        lines.push(format!(
            "Review      {} {} at {}{}",
            text(&rv["reviewer"]),
            if rv["decision"] == "approve" { "approved" } else { "rejected" },
            text(&rv["at"]),
            rv["comment"].as_str().map(|c| format!(": {c}")).unwrap_or_default()
        ));
    }
    lines.push(format!("Link        {}", text(&r["url"])));
    lines.join("\n")
}
