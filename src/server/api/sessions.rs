//! `/api/v1/sessions`: sessions of `jitgate connect`, visible to whoever may see the
//! request behind them. Empty until the gateway records sessions.

use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::store::sessions;

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    call.req.allow_query(&["limit", "cursor"])?;
    let who = call.who()?;
    let (items, next) = app.store.read(|c| sessions::list(c, &who.user, &page_of(&call.req)?))?;
    Ok(page(items.iter().map(views::session).collect(), next))
}

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let id = call.param(0);
    let session =
        app.store.read(|c| sessions::get(c, &who.user, id))?.ok_or_else(|| Error::not_found("session", id))?;
    Ok(Reply::ok(&views::session(&session)))
}
