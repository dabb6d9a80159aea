//! `/api/v1/outbox`: what the outbox holds, for admins: deliveries of events to hooks
//! and notification channels, newest first, filtered by state (`failed` lists the
//! dead ones) and by sink kind; and `POST …/{event_id}/retry`, which puts an event's
//! dead deliveries back in the queue once the cause is fixed.

use crate::audit;
use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::store::outbox;
use crate::time::rfc3339;
use serde_json::json;

const STATES: [&str; 5] = ["pending", "running", "done", "failed", "interrupted"];
const KINDS: [&str; 6] = ["hook", "webhook", "slack", "teams", "email", "slack_dm"];

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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    /// Only this sink (`webhook:0`, `hook:1:on_end`, …); all dead ones without it.
    sink: Option<String>,
    /// Also hooks cut short by a crash: they may have run, so only on request.
    #[serde(default)]
    include_interrupted: bool,
}

/// `POST /api/v1/outbox/{event_id}/retry`: the event's dead deliveries go back in
/// the queue as new (attempts 0, due now). An `on_grant` hook comes back only while
/// its grant is live, and no hook once a later event of the request has hooks.
pub fn retry(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let body: Retry = call.req.json()?;
    let id = call.param(0);
    let seq = outbox::event_seq(id).ok_or_else(|| Error::not_found("event", id))?;
    let live = app.live.get();
    let (request, sinks) = app.store.write(|tx| {
        let (request, event, sinks) = outbox::retry(tx, seq, body.sink.as_deref(), body.include_interrupted, call.now)?
            .ok_or_else(|| Error::not_found("event", id))?;
        if sinks.is_empty() {
            return Err(Error::conflict("nothing_to_retry", format!("{id} has no dead delivery to retry")));
        }
        let r = crate::store::requests::get(tx, &request)?.request;
        for sink in sinks.iter().filter(|s| s.starts_with("hook:")) {
            // The hook must still be the one the event was meant for: after an edit
            // and a reload its place may hold another command.
            if let Err(why) = crate::gateway::hooks::HookConfig::for_sink(&live.hooks, sink, &r.connection, &event) {
                return Err(Error::conflict("hook_changed", format!("{sink}: {why}")));
            }
        }
        if sinks.iter().any(|s| s.contains(":on_grant")) && r.live_until(call.now).is_none() {
            return Err(Error::conflict(
                "grant_not_live",
                format!("{request} is {}: its on_grant hook must not run now", r.status),
            ));
        }
        let detail = json!({"event_id": id, "request": request, "sinks": sinks});
        audit::append(tx, call.now, &who.user.username, "outbox.retried", id, detail)?;
        Ok((request, sinks))
    })?;
    app.hub.notify();
    Ok(Reply::ok(&json!({"event_id": id, "request_id": request, "requeued": sinks})))
}
