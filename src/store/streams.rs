//! Streams through the gateway and the SQL captured on them. The gateway opens a
//! stream row when a tunnel is authorised and closes it with its byte counts; queries
//! are written in batches so a busy client costs a commit per batch, not per query.

use super::users::User;
use super::CachedRow;
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

/// At most this much of one statement is kept.
pub const MAX_SQL_BYTES: usize = 4_096;
/// At most this many statements are kept per stream; the rest are counted only.
pub const MAX_QUERIES_PER_STREAM: i64 = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct Stream {
    pub id: String,
    pub client_addr: Option<String>,
    pub target: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    pub bytes_up: i64,
    pub bytes_down: i64,
    /// Statements recorded on this stream (`queries` holds the newest of them).
    pub queries_total: i64,
    pub queries: Vec<Query>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Query {
    pub at: String,
    pub kind: String,
    pub sql: String,
    pub truncated: bool,
}

/// A live session of `user` on request `request_id`, by its id: where a new stream may attach.
pub fn open(
    tx: &Transaction<'_>,
    user: &User,
    request_id: &str,
    session_id: &str,
    client_addr: &str,
    target: &str,
    now: i64,
) -> Result<(String, i64)> {
    let session: Option<i64> = tx
        .row(
            "SELECT s.seq FROM sessions s JOIN requests r ON r.seq = s.request_seq
             WHERE s.id = ?1 AND r.id = ?2 AND s.user_id = ?3 AND s.ended_at IS NULL",
            params![session_id, request_id, user.id],
            |r| r.get(0),
        )
        .optional()?;
    let session = session.ok_or_else(|| {
        Error::conflict("no_session", format!("session {session_id} is not a live session of {request_id}"))
    })?;
    let id = crate::secret::random_id("strm")?;
    tx.execute(
        "INSERT INTO streams (id, session_seq, client_addr, target, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, session, client_addr, target, now],
    )?;
    Ok((id, tx.last_insert_rowid()))
}

/// Records how a stream ended.
pub fn close(tx: &Transaction<'_>, seq: i64, reason: &str, bytes_up: u64, bytes_down: u64, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE streams SET ended_at = ?1, end_reason = ?2, bytes_up = ?3, bytes_down = ?4 WHERE seq = ?5 AND ended_at IS NULL",
        params![now, reason, bytes_up as i64, bytes_down as i64, seq],
    )?;
    Ok(())
}

/// Stores a batch of captured statements (the tap keeps within the per-stream bound).
pub fn record_queries(tx: &Transaction<'_>, seq: i64, batch: &[(i64, &'static str, String, bool)]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO stream_queries (stream_seq, at, kind, sql, truncated) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (at, kind, sql, truncated) in batch {
        stmt.execute(params![seq, at, kind, sql, truncated])?;
    }
    Ok(())
}

/// How many streams a session has.
pub fn count_of_session(conn: &Connection, session_id: &str) -> Result<i64> {
    Ok(conn.row(
        "SELECT count(*) FROM streams st JOIN sessions s ON s.seq = st.session_seq WHERE s.id = ?1",
        [session_id],
        |r| r.get(0),
    )?)
}

/// The newest `max_streams` streams of a session, oldest first, with their queries
/// (the newest `per_stream` of each): a session behind a connection pool can open
/// thousands, and one answer must stay small.
pub fn of_session(conn: &Connection, session_id: &str, max_streams: i64, per_stream: i64) -> Result<Vec<Stream>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM (SELECT st.seq, st.id, st.client_addr, st.target, st.started_at, st.ended_at, st.end_reason, st.bytes_up, st.bytes_down
         FROM streams st JOIN sessions s ON s.seq = st.session_seq WHERE s.id = ?1 ORDER BY st.seq DESC LIMIT ?2) ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![session_id, max_streams], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Stream {
                id: r.get(1)?,
                client_addr: r.get(2)?,
                target: r.get(3)?,
                started_at: crate::time::rfc3339(r.get(4)?),
                ended_at: r.get::<_, Option<i64>>(5)?.map(crate::time::rfc3339),
                end_reason: r.get(6)?,
                bytes_up: r.get(7)?,
                bytes_down: r.get(8)?,
                queries_total: 0,
                queries: Vec::new(),
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, mut stream) = row?;
        let mut q = conn.prepare_cached(
            "SELECT at, kind, sql, truncated FROM (SELECT rowid, at, kind, sql, truncated FROM stream_queries WHERE stream_seq = ?1 ORDER BY rowid DESC LIMIT ?2) ORDER BY rowid",
        )?;
        let queries = q.query_map(params![seq, per_stream], |r| {
            Ok(Query { at: crate::time::rfc3339(r.get(0)?), kind: r.get(1)?, sql: r.get(2)?, truncated: r.get(3)? })
        })?;
        stream.queries = queries.collect::<rusqlite::Result<_>>()?;
        stream.queries_total =
            conn.row("SELECT count(*) FROM stream_queries WHERE stream_seq = ?1", [seq], |r| r.get(0))?;
        out.push(stream);
    }
    Ok(out)
}
