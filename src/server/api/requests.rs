//! `/api/v1/requests`: create, list, read, wait for, and move requests through the
//! lifecycle. A request the caller may not see is a 404 (its existence is not
//! revealed); one they may see but not act on is a 403; a wrong state is a 409.

use crate::domain::duration;
use crate::domain::request::{Action, Decision};
use crate::domain::Status;
use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::server::wait::WaitSpec;
use crate::store::requests::{self, Filter, RequestView};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    connection: String,
    duration: Option<String>,
    reason: Option<String>,
}

pub fn create(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let body: CreateRequest = call.req.json()?;
    crate::domain::check_name("connection", &body.connection)?;
    let (view, reused) = app.store.write(|tx| {
        requests::create(tx, &who.user, &body.connection, body.duration.as_deref(), body.reason.as_deref(), call.now)
    })?;
    if !reused {
        app.hub.notify();
    }
    let mut out = views::request(&view, app.request_url(&view.request.id));
    out["reused"] = serde_json::Value::Bool(reused);
    Ok(if reused { Reply::ok(&out) } else { Reply::created(&out) })
}

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let q = &call.req;
    q.allow_query(&["status", "connection", "user", "reviewable", "limit", "cursor"])?;
    let reviewable = match q.query_str("reviewable") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::bad("bad_query", "reviewable is true or false")),
    };
    let filter = Filter {
        status: q.query_str("status").map(Status::parse).transpose()?,
        connection: q.query_str("connection").map(str::to_string),
        user: q.query_str("user").map(str::to_string),
        reviewable,
    };
    let (items, next) = app.store.read(|c| requests::list(c, &who.user, &filter, &page_of(q)?))?;
    Ok(page(items.iter().map(|v| views::request(v, app.request_url(&v.request.id))).collect(), next))
}

/// Loads a request the caller may see, or 404.
fn visible(app: &App, call: &Call) -> Result<RequestView> {
    let who = call.who()?;
    let id = call.param(0);
    app.store.read(|c| {
        if !requests::visible_to(c, &who.user, id)? {
            return Err(Error::not_found("request", id));
        }
        requests::get(c, id)
    })
}

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let view = visible(app, call)?;
    Ok(Reply::ok(&views::request(&view, app.request_url(&view.request.id))))
}

/// The longest and the default long-poll wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

pub fn wait(app: &App, call: &Call) -> Result<WaitSpec> {
    call.req.allow_query(&["status", "timeout"])?;
    let view = visible(app, call)?;
    let status = call.req.query_str("status").map(Status::parse).transpose()?.unwrap_or(view.request.status);
    let timeout = match call.req.query_str("timeout") {
        None => DEFAULT_WAIT,
        Some(t) => Duration::from_secs(duration::parse(t)?),
    };
    if timeout > MAX_WAIT {
        return Err(Error::bad("bad_timeout", "timeout is at most 60s"));
    }
    Ok(WaitSpec { user_id: call.who()?.user.id, id: view.request.id, unless: status, timeout })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    comment: Option<String>,
    reason: Option<String>,
}

impl Note {
    /// `comment` and `reason` are two names for one note; give at most one.
    fn text(self) -> Result<Option<String>> {
        match (self.comment, self.reason) {
            (Some(_), Some(_)) => Err(Error::bad("bad_request", "give comment or reason, not both")),
            (c, r) => Ok(c.or(r)),
        }
    }
}

fn decide(app: &App, call: &Call, decision: Decision) -> Result<Reply> {
    visible(app, call)?;
    let note = call.req.json::<Note>()?.text()?;
    let who = call.who()?;
    let view =
        app.store.write(|tx| requests::review(tx, &who.user, call.param(0), decision, note.as_deref(), call.now))?;
    app.hub.notify();
    Ok(Reply::ok(&views::request(&view, app.request_url(&view.request.id))))
}

fn act(app: &App, call: &Call, action: Action) -> Result<Reply> {
    visible(app, call)?;
    let note = call.req.json::<Note>()?.text()?;
    let who = call.who()?;
    let view = app.store.write(|tx| requests::act(tx, &who.user, call.param(0), action, note.as_deref(), call.now))?;
    app.hub.notify();
    Ok(Reply::ok(&views::request(&view, app.request_url(&view.request.id))))
}

pub fn approve(app: &App, call: &Call) -> Result<Reply> {
    decide(app, call, Decision::Approve)
}

pub fn reject(app: &App, call: &Call) -> Result<Reply> {
    decide(app, call, Decision::Reject)
}

pub fn revoke(app: &App, call: &Call) -> Result<Reply> {
    act(app, call, Action::Revoke)
}

pub fn cancel(app: &App, call: &Call) -> Result<Reply> {
    act(app, call, Action::Cancel)
}

pub fn end(app: &App, call: &Call) -> Result<Reply> {
    act(app, call, Action::End)
}
