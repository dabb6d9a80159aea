//! Users, groups and group membership. A deleted user keeps its row (requests and
//! reviews point at it) and frees its name; its tokens, sessions and memberships go.

use super::{found, requests, CachedRow, Page};
use crate::audit;
use crate::domain::{check_name, check_text, Actor};
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::json;

pub const MAX_DISPLAY_NAME_CHARS: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub has_password: bool,
    pub created_at: i64,
    pub groups: Vec<String>,
    /// Where email notifications to this user go.
    pub email: Option<String>,
    /// The chat identities whose button clicks act as this user (set by an admin).
    pub slack_user_id: Option<String>,
    pub mattermost_user_id: Option<String>,
}

const USER_COLUMNS: &str =
    "id, username, display_name, admin, disabled, password_hash IS NOT NULL, created_at, email, slack_user_id, mattermost_user_id";

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        admin: r.get(3)?,
        disabled: r.get(4)?,
        has_password: r.get(5)?,
        created_at: r.get(6)?,
        groups: Vec::new(),
        email: r.get(7)?,
        slack_user_id: r.get(8)?,
        mattermost_user_id: r.get(9)?,
    })
}

/// A plain address for SMTP: one `@`, no spaces or control characters (so no header
/// or command can be smuggled through it), at most 254 bytes.
pub fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && email.split('@').count() == 2
        && email.split('@').all(|p| !p.is_empty())
        && !email.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad("bad_email", format!("{email:?} is not a plain email address")))
    }
}

/// A Slack (`U0123ABC`) or Mattermost (26 lowercase letters and digits) user id.
fn check_chat_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::bad("bad_chat_id", format!("{what} is letters and digits only (at most 64)")));
    }
    Ok(())
}

/// The live user a chat identity maps to (`column`: `slack_user_id` or
/// `mattermost_user_id`); `None` when nobody is mapped.
pub fn by_chat_id(conn: &Connection, column: ChatId, id: &str) -> Result<Option<User>> {
    let column = match column {
        ChatId::Slack => "slack_user_id",
        ChatId::Mattermost => "mattermost_user_id",
    };
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1 AND deleted_at IS NULL");
    let user = conn.row(&sql, [id], user_row).optional()?;
    user.map(|mut u| {
        u.groups = groups_of(conn, u.id)?;
        Ok(u)
    })
    .transpose()
}

#[derive(Clone, Copy, Debug)]
pub enum ChatId {
    Slack,
    Mattermost,
}

/// Live, enabled members of `groups` who have an email address: (username, email).
pub fn emails_of_groups(conn: &Connection, groups: &[String]) -> Result<Vec<(String, String)>> {
    contacts_of_groups(conn, groups, "email")
}

/// (username, Slack id) of the live members of `groups` who have one.
pub fn slack_ids_of_groups(conn: &Connection, groups: &[String]) -> Result<Vec<(String, String)>> {
    contacts_of_groups(conn, groups, "slack_user_id")
}

/// `column` is one of ours (`email`, `slack_user_id`), never a caller's text.
fn contacts_of_groups(conn: &Connection, groups: &[String], column: &'static str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT u.username, u.{column} FROM users u JOIN group_members m ON m.user_id = u.id JOIN groups g ON g.id = m.group_id
         WHERE g.name = ?1 AND u.deleted_at IS NULL AND u.disabled = 0 AND u.{column} IS NOT NULL"
    ))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for g in groups {
        for row in stmt.query_map([g], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let row = row?;
            if !out.contains(&row) {
                out.push(row);
            }
        }
    }
    Ok(out)
}

pub struct NewUser {
    pub username: String,
    pub display_name: Option<String>,
    pub password_hash: Option<String>,
    pub admin: bool,
}

/// Names the audit trail uses for actors that are not people.
pub const RESERVED_NAMES: [&str; 3] = [crate::audit::SYSTEM, crate::audit::ANONYMOUS, "offline-admin"];

pub fn create(tx: &Transaction<'_>, actor: &str, new: &NewUser, now: i64) -> Result<User> {
    check_name("user", &new.username)?;
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(&new.username)) {
        return Err(Error::bad("reserved_name", format!("{} is reserved for the audit trail", new.username)));
    }
    if let Some(d) = &new.display_name {
        check_text("display_name", d, MAX_DISPLAY_NAME_CHARS)?;
    }
    if find_id(tx, &new.username)?.is_some() {
        return Err(Error::conflict("already_exists", format!("user {} already exists", new.username)));
    }
    tx.execute(
        "INSERT INTO users (username, display_name, password_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![new.username, new.display_name, new.password_hash, new.admin, now],
    )?;
    audit::append(tx, now, actor, "user.created", &new.username, json!({"admin": new.admin}))?;
    get(tx, &new.username)
}

fn find_id(conn: &Connection, username: &str) -> Result<Option<i64>> {
    Ok(conn
        .row("SELECT id FROM users WHERE username = ?1 AND deleted_at IS NULL", [username], |r| r.get(0))
        .optional()?)
}

pub fn get(conn: &Connection, username: &str) -> Result<User> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1 AND deleted_at IS NULL");
    let mut user = found("user", username, conn.row(&sql, [username], user_row))?;
    user.groups = groups_of(conn, user.id)?;
    Ok(user)
}

pub fn get_by_id(conn: &Connection, id: i64) -> Result<User> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND deleted_at IS NULL");
    let mut user = found("user", &id.to_string(), conn.row(&sql, [id], user_row))?;
    user.groups = groups_of(conn, user.id)?;
    Ok(user)
}

/// The user as the lifecycle rules see them.
pub fn actor(user: &User) -> Actor {
    Actor { username: user.username.clone(), admin: user.admin, groups: user.groups.iter().cloned().collect() }
}

fn groups_of(conn: &Connection, user_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = ?1 ORDER BY g.name",
    )?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Newest first; `seq` for users is their id.
pub fn list(conn: &Connection, page: &Page) -> Result<(Vec<User>, Option<String>)> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL AND id < ?1 ORDER BY id DESC LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![page.before_or_max(), page.fetch_limit()], user_row)?;
    let mut users = Vec::new();
    for r in rows {
        let mut u = r?;
        u.groups = groups_of(conn, u.id)?;
        users.push((u.id, u));
    }
    Ok(page.finish(users))
}

/// The stored password hash and state, for login. `None`: no such live user.
pub fn credentials(conn: &Connection, username: &str) -> Result<Option<(i64, Option<String>, bool)>> {
    Ok(conn
        .row(
            "SELECT id, password_hash, disabled FROM users WHERE username = ?1 AND deleted_at IS NULL",
            [username],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Fields a PATCH may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct Patch {
    pub display_name: Option<Option<String>>,
    pub password_hash: Option<String>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
    /// `Some(None)` clears; checked as a plain address.
    pub email: Option<Option<String>>,
    pub slack_user_id: Option<Option<String>>,
    pub mattermost_user_id: Option<Option<String>>,
}

pub fn update(tx: &Transaction<'_>, actor: &str, username: &str, patch: &Patch, now: i64) -> Result<User> {
    let user = get(tx, username)?;
    if let Some(Some(d)) = &patch.display_name {
        check_text("display_name", d, MAX_DISPLAY_NAME_CHARS)?;
    }
    if let Some(d) = &patch.display_name {
        tx.execute("UPDATE users SET display_name = ?1 WHERE id = ?2", params![d, user.id])?;
    }
    if let Some(e) = &patch.email {
        if let Some(e) = e {
            check_email(e)?;
        }
        tx.execute("UPDATE users SET email = ?1 WHERE id = ?2", params![e, user.id])?;
    }
    for (column, value) in [("slack_user_id", &patch.slack_user_id), ("mattermost_user_id", &patch.mattermost_user_id)]
    {
        let Some(value) = value else { continue };
        if let Some(id) = value {
            check_chat_id(column, id)?;
            let taken: Option<String> = tx
                .row(
                    &format!("SELECT username FROM users WHERE {column} = ?1 AND deleted_at IS NULL AND id != ?2"),
                    params![id, user.id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = taken {
                return Err(Error::conflict("already_mapped", format!("{column} {id} already belongs to {other}")));
            }
        }
        tx.execute(&format!("UPDATE users SET {column} = ?1 WHERE id = ?2"), params![value, user.id])?;
    }
    if let Some(h) = &patch.password_hash {
        tx.execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", params![h, user.id])?;
        // A new password ends every browser session of that user; set by someone
        // else (an admin's reset, the offline reset), it also revokes their tokens:
        // a reset is what one does after a compromise.
        tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [user.id])?;
        if actor != username {
            tx.execute("DELETE FROM api_tokens WHERE user_id = ?1", [user.id])?;
        }
    }
    if let Some(a) = patch.admin {
        tx.execute("UPDATE users SET admin = ?1 WHERE id = ?2", params![a, user.id])?;
    }
    if let Some(d) = patch.disabled {
        tx.execute("UPDATE users SET disabled = ?1 WHERE id = ?2", params![d, user.id])?;
        if d {
            tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [user.id])?;
            requests::close_all_for_user(tx, user.id, actor, "user disabled", now)?;
        }
    }
    let detail = json!({
        "display_name": patch.display_name.is_some(),
        "password": patch.password_hash.is_some(),
        "admin": patch.admin,
        "disabled": patch.disabled,
        "email": patch.email.is_some(),
        "slack_user_id": patch.slack_user_id.as_ref().map(|v| v.clone().unwrap_or_default()),
        "mattermost_user_id": patch.mattermost_user_id.as_ref().map(|v| v.clone().unwrap_or_default()),
    });
    audit::append(tx, now, actor, "user.updated", username, detail)?;
    get(tx, username)
}

/// Deletes a user: frees the name, ends their access, keeps their history.
pub fn delete(tx: &Transaction<'_>, actor: &str, username: &str, now: i64) -> Result<()> {
    let user = get(tx, username)?;
    requests::close_all_for_user(tx, user.id, actor, "user deleted", now)?;
    tx.execute("DELETE FROM api_tokens WHERE user_id = ?1", [user.id])?;
    tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [user.id])?;
    tx.execute("DELETE FROM group_members WHERE user_id = ?1", [user.id])?;
    tx.execute(
        "UPDATE users SET deleted_at = ?1, disabled = 1, password_hash = NULL WHERE id = ?2",
        params![now, user.id],
    )?;
    audit::append(tx, now, actor, "user.deleted", username, json!({}))?;
    Ok(())
}

pub fn count_admins(conn: &Connection) -> Result<i64> {
    Ok(conn
        .row("SELECT count(*) FROM users WHERE admin = 1 AND disabled = 0 AND deleted_at IS NULL", [], |r| r.get(0))?)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
    pub created_at: i64,
}

pub fn create_group(tx: &Transaction<'_>, actor: &str, name: &str, now: i64) -> Result<Group> {
    check_name("group", name)?;
    if group_id(tx, name).is_ok() {
        return Err(Error::conflict("already_exists", format!("group {name} already exists")));
    }
    tx.execute("INSERT INTO groups (name, created_at) VALUES (?1, ?2)", params![name, now])?;
    audit::append(tx, now, actor, "group.created", name, json!({}))?;
    get_group(tx, name)
}

pub fn group_id(conn: &Connection, name: &str) -> Result<i64> {
    found("group", name, conn.row("SELECT id FROM groups WHERE name = ?1", [name], |r| r.get(0)))
}

pub fn get_group(conn: &Connection, name: &str) -> Result<Group> {
    let (id, created_at): (i64, i64) = found(
        "group",
        name,
        conn.row("SELECT id, created_at FROM groups WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?))),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT u.username FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ?1 ORDER BY u.username",
    )?;
    let members = stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Group { name: name.to_string(), members, created_at })
}

pub fn list_groups(conn: &Connection, page: &Page) -> Result<(Vec<Group>, Option<String>)> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM groups WHERE id < ?1 ORDER BY id DESC LIMIT ?2")?;
    let rows = stmt
        .query_map(params![page.before_or_max(), page.fetch_limit()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let groups = rows.into_iter().map(|(id, name)| Ok((id, get_group(conn, &name)?))).collect::<Result<Vec<_>>>()?;
    Ok(page.finish(groups))
}

pub fn delete_group(tx: &Transaction<'_>, actor: &str, name: &str, now: i64) -> Result<()> {
    let id = group_id(tx, name)?;
    let users: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT c.name FROM connection_groups cg JOIN connections c ON c.id = cg.connection_id WHERE cg.group_id = ?1 AND c.deleted_at IS NULL ORDER BY c.name",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if !users.is_empty() {
        return Err(Error::conflict(
            "group_in_use",
            format!("group {name} approves access to {}: change those connections first", users.join(", ")),
        ));
    }
    tx.execute("DELETE FROM groups WHERE id = ?1", [id])?;
    audit::append(tx, now, actor, "group.deleted", name, json!({}))?;
    Ok(())
}

/// Adds `username` to `group`; adding a member twice changes nothing.
pub fn add_member(tx: &Transaction<'_>, actor: &str, group: &str, username: &str, now: i64) -> Result<Group> {
    let gid = group_id(tx, group)?;
    let user = get(tx, username)?;
    let added = tx.execute(
        "INSERT INTO group_members (group_id, user_id, added_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![gid, user.id, now],
    )?;
    if added > 0 {
        audit::append(tx, now, actor, "group.member_added", group, json!({"user": username}))?;
    }
    get_group(tx, group)
}

/// Removes `username` from `group`; a user who is not a member is a 404.
pub fn remove_member(tx: &Transaction<'_>, actor: &str, group: &str, username: &str, now: i64) -> Result<Group> {
    let gid = group_id(tx, group)?;
    let user = get(tx, username)?;
    let removed =
        tx.execute("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2", params![gid, user.id])?;
    if removed == 0 {
        return Err(Error::not_found("member", format!("{username} in {group}")));
    }
    audit::append(tx, now, actor, "group.member_removed", group, json!({"user": username}))?;
    get_group(tx, group)
}
