//! `/api/v1/outbox`: what the outbox holds, for admins: deliveries of events to hooks
//! and notification channels, newest first, filtered by state (`failed` lists the
//! dead ones) and by sink kind.

use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::store::outbox;
use crate::time::rfc3339;
use serde_json::json;

const STATES: [&str; 5] = ["pending", "running", "done", "failed", "interrupted"];
const KINDS: [&str; 5] = ["hook", "webhook", "slack", "teams", "email"];

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    let q = &call.req;
    q.allow_query(&["state", "sink", "limit", "cursor"])?;
    let state = q.query_str("state");
    if let Some(s) = state.filter(|s| !STATES.contains(s)) {
        return Err(Error::bad("bad_query", format!("state {s:?}: one of {}", STATES.join(", "))));
    }
    let kind = q.query_str("sink");
    if let Some(k) = kind.filter(|k| !KINDS.contains(k)) {
        return Err(Error::bad("bad_query", format!("sink {k:?}: one of {}", KINDS.join(", "))));
    }
    let (items, next) = app.store.read(|c| outbox::list(c, state, kind, &page_of(q)?))?;
    let items = items
        .into_iter()
        .map(|d| {
            json!({
                "event_id": d.event_id,
                "event": d.event,
                "request_id": d.request_id,
                "sink": d.sink,
                "state": d.state,
                "attempts": d.attempts,
                "next_attempt_at": (d.state == "pending").then(|| rfc3339(d.next_at)),
                "last_error": d.last_error,
                "created_at": rfc3339(d.created_at),
            })
        })
        .collect();
    Ok(page(items, next))
}
