//! `/api/v1/users`: admins manage accounts; a user may read themselves and change
//! their own display name and password (with the current password).

use crate::error::{Error, Result};
use crate::secret;
use crate::server::app::{App, Call};
use crate::server::http::{page, page_of, Reply};
use crate::server::views;
use crate::store::users::{self, NewUser, Patch};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: Option<String>,
    #[serde(default)]
    admin: bool,
    display_name: Option<String>,
    email: Option<String>,
}

pub fn create(app: &App, call: &Call) -> Result<Reply> {
    let body: CreateUser = call.req.json()?;
    crate::domain::check_name("user", &body.username)?;
    let password_hash = body.password.as_deref().map(secret::hash_password).transpose()?;
    if let Some(e) = &body.email {
        users::check_email(e)?;
    }
    let new = NewUser { username: body.username, display_name: body.display_name, password_hash, admin: body.admin };
    let user = app.store.write(|tx| {
        let user = users::create(tx, call.who()?.name(), &new, call.now)?;
        match body.email {
            Some(email) => {
                let patch = Patch { email: Some(Some(email)), ..Patch::default() };
                users::update(tx, call.who()?.name(), &user.username, &patch, call.now)
            }
            None => Ok(user),
        }
    })?;
    Ok(Reply::created(&views::user(&user)))
}

pub fn list(app: &App, call: &Call) -> Result<Reply> {
    call.req.allow_query(&["limit", "cursor"])?;
    let (items, next) = app.store.read(|c| users::list(c, &page_of(&call.req)?))?;
    Ok(page(items.iter().map(views::user).collect(), next))
}

pub fn show(app: &App, call: &Call) -> Result<Reply> {
    let user = app.store.read(|c| users::get(c, call.param(0)))?;
    Ok(Reply::ok(&views::user(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    /// `null` clears the display name; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    password: Option<String>,
    current_password: Option<String>,
    admin: Option<bool>,
    disabled: Option<bool>,
    /// `null` clears; a user may set their own.
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    /// Chat identities acting as this user: an admin's to set (see README,
    /// "Notifications and approving from chat").
    #[serde(default, deserialize_with = "present")]
    slack_user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    mattermost_user_id: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub fn update(app: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let name = call.param(0);
    let body: UpdateUser = call.req.json()?;
    if !who.user.admin {
        if body.admin.is_some() || body.disabled.is_some() {
            return Err(Error::Forbidden("only an admin may change admin or disabled".into()));
        }
        // Whoever holds a mapped chat identity acts as this user: an admin vouches.
        if body.slack_user_id.is_some() || body.mattermost_user_id.is_some() {
            return Err(Error::Forbidden("only an admin may map chat identities".into()));
        }
        // A token-only account sets its first password with its token alone.
        let stored = app.store.read(|c| users::credentials(c, name))?.and_then(|(_, h, _)| h);
        if body.password.is_some() && stored.is_some() {
            let current = body.current_password.as_deref().unwrap_or("");
            // A password check is a password guess: it spends the login budget.
            app.login_limiter.take_address(&call.req.peer)?;
            app.login_limiter.take_user(name)?;
            if !secret::verify_password(current, stored.as_deref())? {
                return Err(Error::Forbidden("current_password is missing or wrong".into()));
            }
        }
    }
    let patch = Patch {
        display_name: body.display_name,
        password_hash: body.password.as_deref().map(secret::hash_password).transpose()?,
        admin: body.admin,
        disabled: body.disabled,
        email: body.email,
        slack_user_id: body.slack_user_id,
        mattermost_user_id: body.mattermost_user_id,
    };
    let user = app.store.write(|tx| {
        let before = users::get(tx, name)?;
        let loses_admin =
            before.admin && !before.disabled && (patch.admin == Some(false) || patch.disabled == Some(true));
        if loses_admin && users::count_admins(tx)? <= 1 {
            return Err(Error::conflict("last_admin", format!("{name} is the last admin: make another admin first")));
        }
        users::update(tx, who.name(), name, &patch, call.now)
    })?;
    app.hub.notify();
    Ok(Reply::ok(&views::user(&user)))
}

pub fn delete(app: &App, call: &Call) -> Result<Reply> {
    let name = call.param(0);
    app.store.write(|tx| {
        let user = users::get(tx, name)?;
        if user.admin && !user.disabled && users::count_admins(tx)? <= 1 {
            return Err(Error::conflict("last_admin", format!("{name} is the last admin: make another admin first")));
        }
        users::delete(tx, call.who()?.name(), name, call.now)
    })?;
    app.hub.notify();
    Ok(Reply::ok(&serde_json::json!({"deleted": name})))
}
