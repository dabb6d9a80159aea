//! `/api/v1/users/{name}/tokens`: API tokens, shown once at creation. Users mint
//! `api` tokens for themselves; `check` and `metrics` tokens (for enforcement points
//! and scrapers) need an admin.

use crate::domain::duration;
use crate::domain::request::secs_to_ms;
use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::auth::Via;
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::store::tokens::{self, Scope};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    expires_in: Option<String>,
    scope: Option<Scope>,
}

pub fn create(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let body: CreateToken = call.req.json()?;
    let scope = body.scope.unwrap_or(Scope::Api);
    if scope != Scope::Api && !who.user.admin {
        return Err(Error::Forbidden(format!("only an admin may mint a {} token", scope.as_str())));
    }
    let target = call.param(0);
    if scope == Scope::Api && who.user.admin && target != who.name() {
        // Minting an api token for a person would let one admin act as them (and
        // approve as several people, beating the two-person rule): only for
        // accounts without a password (service accounts).
        let person = app.store.read(|c| crate::store::users::get(c, target))?.has_password;
        if person {
            return Err(Error::Forbidden(format!("{target} logs in with a password: they mint their own api tokens")));
        }
    }
    let asked = body.expires_in.as_deref().map(duration::parse).transpose()?.map(|s| call.now + secs_to_ms(s));
    // A token never outlives the token that made it.
    let expires_at = match (&who.via, asked) {
        (Via::Token { expires_at: Some(limit), .. }, Some(a)) => Some(a.min(*limit)),
        (Via::Token { expires_at: Some(limit), .. }, None) => Some(*limit),
        (_, asked) => asked,
    };
    let (token, secret) =
        app.store.write(|tx| tokens::create(tx, who.name(), call.param(0), &body.name, scope, expires_at, call.now))?;
    let mut out = views::token(&token);
    out["token"] = serde_json::Value::String(secret);
    Ok(Reply::created(&out))
}

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    call.req.allow_query(&["limit", "cursor"])?;
    let (items, next) = app.store.read(|c| tokens::list(c, call.param(0), &page_of(&call.req)?))?;
    Ok(page(items.iter().map(views::token).collect(), next))
}

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let token = app.store.read(|c| tokens::get(c, call.param(0), call.param(1)))?;
    Ok(Reply::ok(&views::token(&token)))
}

pub fn delete(app: &App, call: &Call) -> Result<Reply> {
    app.store.write(|tx| tokens::delete(tx, call.who()?.name(), call.param(0), call.param(1), call.now))?;
    Ok(Reply::ok(&serde_json::json!({"deleted": call.param(1)})))
}
