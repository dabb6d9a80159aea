//! `/api/v1/connections`: every user may read connections (to know what to ask
//! for and who approves); only admins create, change or delete them. PUT changes the
//! fields it is given and keeps the rest.

use crate::domain::duration;
use crate::domain::policy::{Connection, Kind};
use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::store::connections;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    name: Option<String>,
    kind: Option<Kind>,
    target: Option<String>,
    approval_groups: Option<Vec<String>>,
    min_approvals: Option<u32>,
    default_duration: Option<String>,
    max_duration: Option<String>,
    pending_ttl: Option<String>,
    auto_approve_admins: Option<bool>,
    require_reason: Option<bool>,
}

impl Body {
    /// Lays the given fields over `base`.
    fn apply(self, mut c: Connection) -> Result<Connection> {
        let parse = |key: &str, text: Option<String>| -> Result<Option<u64>> {
            text.map(|t| duration::parse(&t).map_err(|e| Error::bad("bad_duration", format!("{key}: {e}")))).transpose()
        };
        if let Some(k) = self.kind {
            c.kind = k;
        }
        if self.target.is_some() {
            c.target = self.target.filter(|t| !t.is_empty());
        }
        if let Some(g) = self.approval_groups {
            c.approval_groups = g;
        }
        if let Some(n) = self.min_approvals {
            c.min_approvals = n;
        }
        let max_given = self.max_duration.is_some();
        if let Some(s) = parse("max_duration", self.max_duration)? {
            c.max_duration = s;
        }
        match parse("default_duration", self.default_duration)? {
            Some(s) => c.default_duration = s,
            // A max set below the old default pulls the default down with it.
            None if max_given => c.default_duration = c.default_duration.min(c.max_duration),
            None => {}
        }
        if let Some(s) = parse("pending_ttl", self.pending_ttl)? {
            c.pending_ttl = s;
        }
        if let Some(b) = self.auto_approve_admins {
            c.auto_approve_admins = b;
        }
        if let Some(b) = self.require_reason {
            c.require_reason = b;
        }
        Ok(c)
    }
}

pub fn create(app: &App, call: &Call) -> Result<Reply> {
    let mut body: Body = call.req.json()?;
    let name = body.name.take().ok_or_else(|| Error::bad("missing_field", "name is required"))?;
    crate::domain::check_name("connection", &name)?;
    let c = body.apply(Connection::with_defaults(&name))?;
    let c = app.store.write(|tx| connections::create(tx, call.who()?.name(), &c, call.now))?;
    Ok(Reply::created(&views::connection(&c)))
}

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    call.req.allow_query(&["limit", "cursor"])?;
    let (items, next) = app.store.read(|c| connections::list(c, &page_of(&call.req)?))?;
    Ok(page(items.iter().map(views::connection).collect(), next))
}

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let c = app.store.read(|c| connections::get(c, call.param(0)))?;
    Ok(Reply::ok(&views::connection(&c)))
}

pub fn update(app: &App, call: &Call) -> Result<Reply> {
    let name = call.param(0);
    let body: Body = call.req.json()?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(Error::bad("bad_request", "a connection cannot be renamed: create a new one"));
    }
    let c = app.store.write(|tx| {
        let current = connections::get(tx, name)?;
        let next = body.apply(current)?;
        connections::update(tx, call.who()?.name(), name, &next, call.now)
    })?;
    app.hub.notify();
    Ok(Reply::ok(&views::connection(&c)))
}

pub fn delete(app: &App, call: &Call) -> Result<Reply> {
    app.store.write(|tx| connections::delete(tx, call.who()?.name(), call.param(0), call.now))?;
    app.hub.notify();
    Ok(Reply::ok(&serde_json::json!({"deleted": call.param(0)})))
}
