//! `/api/v1/groups`: named sets of users; admins only.

use crate::error::Result;
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::store::users;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: String,
}

pub fn create(app: &App, call: &Call) -> Result<Reply> {
    let body: CreateGroup = call.req.json()?;
    let group = app.store.write(|tx| users::create_group(tx, call.who()?.name(), &body.name, call.now))?;
    Ok(Reply::created(&views::group(&group)))
}

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    call.req.allow_query(&["limit", "cursor"])?;
    let (items, next) = app.store.read(|c| users::list_groups(c, &page_of(&call.req)?))?;
    Ok(page(items.iter().map(views::group).collect(), next))
}

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let group = app.store.read(|c| users::get_group(c, call.param(0)))?;
    Ok(Reply::ok(&views::group(&group)))
}

pub fn delete(app: &App, call: &Call) -> Result<Reply> {
    app.store.write(|tx| users::delete_group(tx, call.who()?.name(), call.param(0), call.now))?;
    Ok(Reply::ok(&serde_json::json!({"deleted": call.param(0)})))
}

pub fn add_member(app: &App, call: &Call) -> Result<Reply> {
    call.req.no_body()?;
    let group =
        app.store.write(|tx| users::add_member(tx, call.who()?.name(), call.param(0), call.param(1), call.now))?;
    app.hub.notify();
    Ok(Reply::ok(&views::group(&group)))
}

pub fn remove_member(app: &App, call: &Call) -> Result<Reply> {
    let group =
        app.store.write(|tx| users::remove_member(tx, call.who()?.name(), call.param(0), call.param(1), call.now))?;
    app.hub.notify();
    Ok(Reply::ok(&views::group(&group)))
}
