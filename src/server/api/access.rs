//! `GET /api/v1/access/check?user=&connection=`: the question any enforcement point
//! can ask ("may this user use this connection right now?"). 200 with the live grant,
//! or 403 `{allowed: false}`: unknown users and connections are denials too, so a
//! typo in a proxy's configuration fails closed.

use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::Reply;
use crate::server::views;
use crate::store::requests;
use serde_json::json;

pub fn check(app: &App, call: &Call) -> Result<Reply> {
    let q = &call.req;
    q.allow_query(&["user", "connection"])?;
    let user = q.query_str("user").ok_or_else(|| Error::bad("missing_parameter", "user is required"))?;
    let connection =
        q.query_str("connection").ok_or_else(|| Error::bad("missing_parameter", "connection is required"))?;
    let grant = app.store.read(|c| requests::live_grant(c, user, connection, call.now))?;
    Ok(match grant {
        Some(v) => Reply::ok(&json!({"allowed": true, "request": views::request(&v, app.request_url(&v.request.id))})),
        None => Reply::json(403, &json!({"allowed": false, "user": user, "connection": connection})),
    })
}
