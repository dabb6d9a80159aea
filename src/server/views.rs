//! Domain and store types as the API shows them (DESIGN.md, "Interfaces"): durations
//! as strings like "2h", times as RFC 3339 UTC, never a secret or a hash.

use crate::domain::duration;
use crate::domain::policy::Connection;
use crate::store::requests::RequestView;
use crate::store::sessions::Session;
use crate::store::tokens::Token;
use crate::store::users::{Group, User};
use crate::time::rfc3339;
use serde_json::{json, Value};

fn time(ms: Option<i64>) -> Value {
    ms.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

pub fn request(v: &RequestView, url: String) -> Value {
    let r = &v.request;
    let reviews: Vec<Value> = v
        .reviews
        .iter()
        .map(|rv| json!({"reviewer": rv.reviewer, "decision": rv.decision.as_str(), "comment": rv.comment, "at": rfc3339(rv.at)}))
        .collect();
    let groups: Vec<Value> = v
        .tally
        .counted
        .iter()
        .map(|(group, approvals)| json!({"group": group, "required": v.tally.required, "approvals": approvals}))
        .collect();
    json!({
        "id": r.id,
        "user": r.user,
        "connection": r.connection,
        "status": r.status,
        "duration": duration::format(r.duration),
        "duration_seconds": r.duration,
        "reason": r.reason,
        "created_at": rfc3339(r.created_at),
        "pending_until": rfc3339(r.pending_until),
        "approved_at": time(r.approved_at),
        "expires_at": time(r.expires_at),
        "ended_at": time(r.ended_at),
        "ended_by": r.ended_by,
        "end_reason": r.end_reason,
        "reviews": reviews,
        "groups": groups,
        // Approved on creation (no approval groups, or an auto-approved admin).
        "auto_approved": r.approved_at.is_some() && !v.reviews.iter().any(|rv| rv.decision == crate::domain::request::Decision::Approve),
        "url": url,
    })
}

pub fn user(u: &User) -> Value {
    json!({
        "username": u.username,
        "display_name": u.display_name,
        "admin": u.admin,
        "disabled": u.disabled,
        "has_password": u.has_password,
        "groups": u.groups,
        "created_at": rfc3339(u.created_at),
        "email": u.email,
        "slack_user_id": u.slack_user_id,
        "mattermost_user_id": u.mattermost_user_id,
    })
}

pub fn group(g: &Group) -> Value {
    json!({"name": g.name, "members": g.members, "created_at": rfc3339(g.created_at)})
}

/// A connection: its name and its policy, in the same shape the audit trail records.
pub fn connection(c: &Connection) -> Value {
    let mut v = crate::store::connections::policy_json(c);
    v["name"] = json!(c.name);
    v
}

pub fn token(t: &Token) -> Value {
    json!({
        "id": t.id,
        "user": t.user,
        "name": t.name,
        "scope": t.scope.as_str(),
        "created_at": rfc3339(t.created_at),
        "expires_at": time(t.expires_at),
        "last_used_at": time(t.last_used_at),
    })
}

pub fn session(s: &Session) -> Value {
    json!({
        "id": s.id,
        "request_id": s.request_id,
        "user": s.user,
        "connection": s.connection,
        "client_addr": s.client_addr,
        "started_at": rfc3339(s.started_at),
        "ended_at": time(s.ended_at),
        "end_reason": s.end_reason,
    })
}
