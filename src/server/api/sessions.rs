//! `/api/v1/sessions`: sessions of `jitgate connect`, visible to whoever may see the
//! request behind them. Empty until the gateway records sessions.

use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::store::sessions;

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    call.req.allow_query(&["request", "limit", "cursor"])?;
    let who = call.who()?;
    let request = call.req.query_str("request");
    if let Some(r) = request {
        crate::domain::check_name("request", r)?;
    }
    let (items, next) = app.store.read(|c| sessions::list(c, &who.user, request, &page_of(&call.req)?))?;
    Ok(page(items.iter().map(views::session).collect(), next))
}

/// Streams one `GET /api/v1/sessions/{id}` shows at most (the newest).
const MAX_STREAMS_SHOWN: i64 = 100;

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let id = call.param(0);
    let (session, (total, streams)) = app.store.read(|c| {
        let s = sessions::get(c, &who.user, id)?.ok_or_else(|| Error::not_found("session", id))?;
        let total = crate::store::streams::count_of_session(c, id)?;
        Ok((s, (total, crate::store::streams::of_session(c, id, MAX_STREAMS_SHOWN, 200)?)))
    })?;
    let mut body = views::session(&session);
    body["streams"] = serde_json::to_value(streams).unwrap_or_default();
    body["streams_total"] = total.into();
    Ok(Reply::ok(&body))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    request_id: String,
}

/// `POST /api/v1/sessions {request_id}`: `jitgate connect` starts a session on the
/// caller's own live grant.
pub fn start(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let body: Start = call.req.json()?;
    let cap = app.config.max_sessions_per_grant;
    let session =
        app.store.write(|tx| sessions::start(tx, &who.user, &body.request_id, &call.req.peer, call.now, cap))?;
    Ok(Reply::created(&views::session(&session)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    reason: Option<String>,
}

/// `POST /api/v1/sessions/{id}/end`: the client is done with this session.
pub fn end(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let body: End = call.req.json()?;
    let reason = body.reason.unwrap_or_else(|| "client disconnected".into());
    crate::domain::check_text("reason", &reason, 200)?;
    let session = app.store.write(|tx| sessions::end(tx, &who.user, call.param(0), &reason, call.now))?;
    // Wakes the gateway's watcher: the session's streams are cut at once.
    app.hub.notify();
    Ok(Reply::ok(&views::session(&session)))
}
