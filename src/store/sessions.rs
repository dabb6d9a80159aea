//! Sessions of `jitgate connect` (sess_…): one per run of `connect` on a grant. The
//! client starts and ends its own; when the grant ends (expiry, revoke, end) its live
//! sessions end in the same transaction. Who may see a session: whoever may see the
//! request behind it.

use super::{CachedRow, Page};
use crate::error::Result;
use crate::store::users::User;
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub request_id: String,
    pub user: String,
    pub connection: String,
    pub client_addr: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

const SELECT: &str = "SELECT s.seq, s.id, r.id, u.username, c.name, s.client_addr, s.started_at, s.ended_at, s.end_reason
    FROM sessions s JOIN requests r ON r.seq = s.request_seq JOIN users u ON u.id = s.user_id JOIN connections c ON c.id = r.connection_id";

/// Sessions on requests the viewer may see: their own, those of connections they
/// approve for, or all for admins.
const VISIBLE: &str =
    "(?1 = 1 OR s.user_id = ?2 OR r.connection_id IN (SELECT cg.connection_id FROM connection_groups cg
    JOIN group_members gm ON gm.group_id = cg.group_id WHERE gm.user_id = ?2))";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Session)> {
    Ok((
        r.get(0)?,
        Session {
            id: r.get(1)?,
            request_id: r.get(2)?,
            user: r.get(3)?,
            connection: r.get(4)?,
            client_addr: r.get(5)?,
            started_at: r.get(6)?,
            ended_at: r.get(7)?,
            end_reason: r.get(8)?,
        },
    ))
}

/// Sessions the viewer may see, newest first; only those of `request` when given.
pub fn list(
    conn: &Connection,
    viewer: &User,
    request: Option<&str>,
    page: &Page,
) -> Result<(Vec<Session>, Option<String>)> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE {VISIBLE} AND s.seq < ?3 AND (?5 IS NULL OR r.id = ?5) ORDER BY s.seq DESC LIMIT ?4"
    ))?;
    let rows =
        stmt.query_map(params![viewer.admin, viewer.id, page.before_or_max(), page.fetch_limit(), request], row)?;
    Ok(page.finish(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

/// A session the viewer may see; `None` when it does not exist or is not theirs to see.
pub fn get(conn: &Connection, viewer: &User, id: &str) -> Result<Option<Session>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE {VISIBLE} AND s.id = ?3"))?;
    let mut rows = stmt.query_map(params![viewer.admin, viewer.id, id], row)?;
    Ok(rows.next().transpose()?.map(|(_, s)| s))
}

/// Open sessions one grant may have by default (`limits.max_sessions_per_grant`):
/// each `connect` run opens one and a crashed run leaves its own open until the grant
/// ends, so the bound stops a script from filling the database and the audit trail
/// with sessions, not people at work.
pub const MAX_OPEN_PER_GRANT: usize = 16;

/// Starts a session of `jitgate connect` on a live grant of the caller's own.
pub fn start(
    tx: &rusqlite::Transaction<'_>,
    user: &User,
    request_id: &str,
    client_addr: &str,
    now: i64,
    max_open: usize,
) -> crate::error::Result<Session> {
    use crate::error::Error;
    let row: Option<(i64, i64, String, Option<i64>)> = tx
        .row("SELECT seq, user_id, status, expires_at FROM requests WHERE id = ?1", [request_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((seq, owner, status, expires_at)) = row else { return Err(Error::not_found("request", request_id)) };
    if owner != user.id {
        // A session runs only on one's own grant; anyone else's is as good as absent.
        return Err(Error::not_found("request", request_id));
    }
    if status != "APPROVED" || expires_at.is_none_or(|e| e <= now) {
        return Err(Error::WrongState { id: request_id.to_string(), status, action: "connected to" });
    }
    let open: i64 =
        tx.row("SELECT count(*) FROM sessions WHERE request_seq = ?1 AND ended_at IS NULL", [seq], |r| r.get(0))?;
    if open >= max_open as i64 {
        let message = format!(
            "{request_id} already has {open} open sessions: end one first (jitgate sessions end ID, or POST /api/v1/sessions/ID/end)"
        );
        return Err(Error::conflict("too_many_sessions", message));
    }
    let id = crate::secret::random_id("sess")?;
    tx.execute(
        "INSERT INTO sessions (id, request_seq, user_id, client_addr, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, seq, user.id, client_addr, now],
    )?;
    crate::audit::append(
        tx,
        now,
        &user.username,
        "session.started",
        &id,
        serde_json::json!({"request": request_id, "client": client_addr}),
    )?;
    get(tx, user, &id)?.ok_or_else(|| Error::Internal("session vanished".into()))
}

/// Ends one session (the client disconnected).
pub fn end(
    tx: &rusqlite::Transaction<'_>,
    user: &User,
    id: &str,
    reason: &str,
    now: i64,
) -> crate::error::Result<Session> {
    use crate::error::Error;
    let session = get(tx, user, id)?.ok_or_else(|| Error::not_found("session", id))?;
    if session.user != user.username && !user.admin {
        return Err(Error::Forbidden("only its user or an admin may end a session".into()));
    }
    if session.ended_at.is_none() {
        tx.execute("UPDATE sessions SET ended_at = ?1, end_reason = ?2 WHERE id = ?3", params![now, reason, id])?;
        crate::audit::append(tx, now, &user.username, "session.ended", id, serde_json::json!({"reason": reason}))?;
    }
    get(tx, user, id)?.ok_or_else(|| Error::Internal("session vanished".into()))
}

/// Ends every live session of a grant that ended (expired, revoked, ended), in the
/// transaction that ends the grant.
pub fn end_for_request(
    tx: &rusqlite::Transaction<'_>,
    request_seq: i64,
    reason: &str,
    now: i64,
) -> crate::error::Result<()> {
    let ids: Vec<String> = {
        let mut stmt = tx.prepare_cached("SELECT id FROM sessions WHERE request_seq = ?1 AND ended_at IS NULL")?;
        let rows = stmt.query_map([request_seq], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for id in ids {
        tx.execute("UPDATE sessions SET ended_at = ?1, end_reason = ?2 WHERE id = ?3", params![now, reason, id])?;
        crate::audit::append(
            tx,
            now,
            crate::audit::SYSTEM,
            "session.ended",
            &id,
            serde_json::json!({"reason": reason}),
        )?;
    }
    Ok(())
}

/// Whether a session has ended (unknown sessions count as ended).
pub fn is_ended(conn: &Connection, id: &str) -> crate::error::Result<bool> {
    let ended: Option<bool> =
        conn.row("SELECT ended_at IS NOT NULL FROM sessions WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    Ok(ended.unwrap_or(true))
}
