//! `/api/v1/audit`: the hash-chained audit trail and its verification; admins only.

use crate::audit::{self, Filter};
use crate::error::Result;
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    let q = &call.req;
    q.allow_query(&["actor", "action", "target", "limit", "cursor"])?;
    let filter = Filter {
        actor: q.query_str("actor").map(str::to_string),
        action: q.query_str("action").map(str::to_string),
        target: q.query_str("target").map(str::to_string),
    };
    let (items, next) = app.store.read(|c| audit::list(c, &filter, &page_of(q)?))?;
    let items = items.iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect();
    Ok(page(items, next))
}

pub fn verify(app: &App, _: &Call) -> Result<Reply> {
    let v = app.store.read(audit::verify)?;
    Ok(Reply::ok(&v))
}
