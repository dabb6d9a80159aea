//! API tokens and browser sessions. Only SHA-256 hashes of secrets are stored; the
//! secret is returned once, at creation. Lookups are by hash, so the database never
//! compares a secret it holds in the clear.

use super::{found, users, CachedRow, Page};
use crate::audit;
use crate::domain::check_name;
use crate::error::{Error, Result};
use crate::secret;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Acts as its user on every route that user may use.
    Api,
    /// May only ask `GET /api/v1/access/check` (for enforcement points).
    Check,
    /// May only read `GET /metrics`.
    Metrics,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Api => "api",
            Scope::Check => "check",
            Scope::Metrics => "metrics",
        }
    }

    fn parse(text: &str) -> Scope {
        match text {
            "check" => Scope::Check,
            "metrics" => Scope::Metrics,
            _ => Scope::Api,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub user: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// Mints a token; returns it with its secret, which is never shown again.
pub fn create(
    tx: &Transaction<'_>,
    actor: &str,
    username: &str,
    name: &str,
    scope: Scope,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(Token, String)> {
    check_name("token", name)?;
    let user = users::get(tx, username)?;
    let taken: Option<i64> = tx
        .row("SELECT 1 FROM api_tokens WHERE user_id = ?1 AND name = ?2", params![user.id, name], |r| r.get(0))
        .optional()?;
    if taken.is_some() {
        return Err(Error::conflict("already_exists", format!("{username} already has a token named {name}")));
    }
    let id = secret::random_id("tok")?;
    let (token, hash) = secret::new_token()?;
    tx.execute(
        "INSERT INTO api_tokens (id, user_id, name, scope, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, user.id, name, scope.as_str(), hash.as_slice(), now, expires_at],
    )?;
    audit::append(tx, now, actor, "token.created", username, json!({"id": id, "name": name, "scope": scope.as_str()}))?;
    Ok((get(tx, username, &id)?, token))
}

/// Stores a token whose secret was chosen outside (JITGATE_ADMIN_TOKEN at first start).
pub fn create_with_secret(tx: &Transaction<'_>, username: &str, name: &str, token: &str, now: i64) -> Result<Token> {
    let user = users::get(tx, username)?;
    let id = secret::random_id("tok")?;
    tx.execute(
        "INSERT INTO api_tokens (id, user_id, name, scope, token_hash, created_at) VALUES (?1, ?2, ?3, 'api', ?4, ?5)",
        params![id, user.id, name, secret::hash_token(token).as_slice(), now],
    )?;
    audit::append(tx, now, audit::SYSTEM, "token.created", username, json!({"id": id, "name": name, "scope": "api"}))?;
    get(tx, username, &id)
}

const TOKEN_SELECT: &str =
    "SELECT t.rowid, t.id, u.username, t.name, t.scope, t.created_at, t.expires_at, t.last_used_at
    FROM api_tokens t JOIN users u ON u.id = t.user_id";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(1)?,
        user: r.get(2)?,
        name: r.get(3)?,
        scope: Scope::parse(&r.get::<_, String>(4)?),
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

pub fn get(conn: &Connection, username: &str, id: &str) -> Result<Token> {
    let sql = format!("{TOKEN_SELECT} WHERE u.username = ?1 AND u.deleted_at IS NULL AND t.id = ?2");
    found("token", id, conn.row(&sql, params![username, id], token_row))
}

pub fn list(conn: &Connection, username: &str, page: &Page) -> Result<(Vec<Token>, Option<String>)> {
    let user = users::get(conn, username)?;
    let sql = format!("{TOKEN_SELECT} WHERE t.user_id = ?1 AND t.rowid < ?2 ORDER BY t.rowid DESC LIMIT ?3");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user.id, page.before_or_max(), page.fetch_limit()], |r| {
        Ok((r.get::<_, i64>(0)?, token_row(r)?))
    })?;
    Ok(page.finish(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

pub fn delete(tx: &Transaction<'_>, actor: &str, username: &str, id: &str, now: i64) -> Result<()> {
    let token = get(tx, username, id)?;
    tx.execute("DELETE FROM api_tokens WHERE id = ?1", [&token.id])?;
    audit::append(tx, now, actor, "token.deleted", username, json!({"id": token.id, "name": token.name}))?;
    Ok(())
}

/// The user behind a bearer token, if the token is known, unexpired and its user is
/// live and enabled.
/// A bearer token that authenticated.
pub struct Authenticated {
    pub user_id: i64,
    pub scope: Scope,
    pub token_id: String,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

pub fn authenticate(conn: &Connection, token: &str, now: i64) -> Result<Option<Authenticated>> {
    let hash = secret::hash_token(token);
    Ok(conn
        .row(
            "SELECT t.user_id, t.scope, t.id, t.last_used_at, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = ?1 AND (t.expires_at IS NULL OR t.expires_at > ?2) AND u.disabled = 0 AND u.deleted_at IS NULL",
            params![hash.as_slice(), now],
            |r| {
                Ok(Authenticated {
                    user_id: r.get(0)?,
                    scope: Scope::parse(&r.get::<_, String>(1)?),
                    token_id: r.get(2)?,
                    last_used_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// How stale `last_used_at` may get before it is written again: reads must not
/// become writes on every call.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Records when a token was last used.
pub fn touch(tx: &Transaction<'_>, id: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - ?3)",
        params![now, id, TOUCH_INTERVAL_MS],
    )?;
    Ok(())
}

/// A browser session: the cookie secret (returned once) and its CSRF token.
pub fn create_web_session(tx: &Transaction<'_>, user_id: i64, lifetime_ms: i64, now: i64) -> Result<(String, String)> {
    let (cookie, hash) = secret::new_token()?;
    let csrf = hex::encode(secret::random_bytes::<32>()?);
    tx.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [now])?;
    tx.execute(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash.as_slice(), user_id, csrf, now, now + lifetime_ms],
    )?;
    Ok((cookie, csrf))
}

/// The user and CSRF token behind a session cookie, if live.
pub fn web_session(conn: &Connection, cookie: &str, now: i64) -> Result<Option<(i64, String)>> {
    let hash = secret::hash_token(cookie);
    Ok(conn
        .row(
            "SELECT s.user_id, s.csrf_token FROM web_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND u.disabled = 0 AND u.deleted_at IS NULL",
            params![hash.as_slice(), now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn delete_web_session(tx: &Transaction<'_>, cookie: &str) -> Result<()> {
    tx.execute("DELETE FROM web_sessions WHERE id_hash = ?1", [secret::hash_token(cookie).as_slice()])?;
    Ok(())
}
