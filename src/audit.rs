//! The audit trail: append-only, hash-chained events, written in the same SQLite
//! transaction as the change they record. Each event's hash is SHA-256 over its own
//! fields and the previous event's hash; `audit_head` anchors the newest one, so
//! changing, deleting or inserting any row, the last included, breaks verification.
//!
//! Limits, said plainly: someone who can rewrite the whole database can rebuild a
//! consistent chain. Ship `audit export` or the head hash off the box to hold them.

use crate::error::Result;
use crate::store::{CachedRow, Page};
use crate::time::rfc3339;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The system itself as an actor (expiry timer, first start).
pub const SYSTEM: &str = "system";

/// An unauthenticated caller (a failed login); the name they claimed is in `detail`.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Appends one event. Call inside the transaction that makes the change.
pub fn append(tx: &Transaction<'_>, at: i64, actor: &str, action: &str, target: &str, detail: Value) -> Result<()> {
    let head: Option<(i64, String)> =
        tx.row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let (seq, prev) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let detail = detail.to_string();
    let hash = event_hash(seq, at, actor, action, target, &detail, &prev);
    tx.prepare_cached(
        "INSERT INTO audit_events (seq, at, actor, action, target, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![seq, at, actor, action, target, detail, prev, hash])?;
    tx.prepare_cached(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![seq, hash])?;
    Ok(())
}

/// The canonical hash input is a JSON array, so no field can bleed into another.
fn event_hash(seq: i64, at: i64, actor: &str, action: &str, target: &str, detail: &str, prev: &str) -> String {
    let canonical = json!([seq, at, actor, action, target, detail, prev]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    pub events: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Walks the whole chain; reports the first broken link.
pub fn verify(conn: &Connection) -> Result<Verification> {
    let mut stmt =
        conn.prepare("SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_events ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_string();
    let mut count = 0;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let bad = |problem: String| Verification {
            ok: false,
            events: count,
            first_bad: Some(seq.min(expected_seq)),
            problem: Some(problem),
        };
        if seq != expected_seq {
            return Ok(bad(format!("event {expected_seq} is missing")));
        }
        let (prev_hash, hash): (String, String) = (r.get(6)?, r.get(7)?);
        if prev_hash != prev {
            return Ok(bad(format!("event {seq} does not link to the event before it")));
        }
        let computed = event_hash(
            seq,
            r.get(1)?,
            &r.get::<_, String>(2)?,
            &r.get::<_, String>(3)?,
            &r.get::<_, String>(4)?,
            &r.get::<_, String>(5)?,
            &prev_hash,
        );
        if computed != hash {
            return Ok(bad(format!("event {seq} was changed after it was written")));
        }
        prev = hash;
        expected_seq += 1;
        count += 1;
    }
    let head: Option<(i64, String)> =
        conn.row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let last = if count == 0 { None } else { Some((expected_seq - 1, prev)) };
    if head != last {
        return Ok(Verification {
            ok: false,
            events: count,
            first_bad: Some(expected_seq),
            problem: Some("the newest events are missing (the chain is shorter than its anchored head)".into()),
        });
    }
    Ok(Verification { ok: true, events: count, first_bad: None, problem: None })
}

/// Filters for the audit list; all optional.
#[derive(Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
}

/// Newest first.
pub fn list(conn: &Connection, filter: &Filter, page: &Page) -> Result<(Vec<Event>, Option<String>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_events
         WHERE seq < ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR target = ?4)
         ORDER BY seq DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![page.before_or_max(), filter.actor, filter.action, filter.target, page.fetch_limit()],
        |r| {
            let detail: String = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                Event {
                    seq: r.get(0)?,
                    at: rfc3339(r.get(1)?),
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                    prev_hash: r.get(6)?,
                    hash: r.get(7)?,
                },
            ))
        },
    )?;
    let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(page.finish(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn db_with(n: i64) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..n {
            append(&tx, 1_000 + i, "alice", "request.created", &format!("req_{i}"), json!({"i": i})).unwrap();
        }
        tx.commit().unwrap();
        conn
    }

    fn tamper(conn: &Connection, sql: &str) {
        conn.execute_batch(
            "DROP TRIGGER audit_events_append_only_update; DROP TRIGGER audit_events_append_only_delete;",
        )
        .unwrap();
        conn.execute_batch(sql).unwrap();
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&db_with(0)).unwrap(), Verification { ok: true, events: 0, first_bad: None, problem: None });
        assert!(verify(&db_with(5)).unwrap().ok);
    }

    #[test]
    fn a_changed_row_is_detected() {
        let conn = db_with(5);
        tamper(&conn, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3");
        let v = verify(&conn).unwrap();
        assert_eq!((v.ok, v.first_bad), (false, Some(3)));
    }

    #[test]
    fn a_deleted_row_is_detected() {
        let conn = db_with(5);
        tamper(&conn, "DELETE FROM audit_events WHERE seq = 2");
        assert_eq!(verify(&conn).unwrap().first_bad, Some(2));
    }

    #[test]
    fn a_deleted_tail_is_detected() {
        let conn = db_with(5);
        tamper(&conn, "DELETE FROM audit_events WHERE seq = 5");
        let v = verify(&conn).unwrap();
        assert_eq!((v.ok, v.first_bad), (false, Some(5)));
    }

    #[test]
    fn a_rehashed_row_still_breaks_the_next_link() {
        let conn = db_with(5);
        let forged = event_hash(2, 1_001, "mallory", "request.created", "req_1", "{\"i\":1}", &verify_prev(&conn, 2));
        tamper(&conn, &format!("UPDATE audit_events SET actor = 'mallory', hash = '{forged}' WHERE seq = 2"));
        assert_eq!(verify(&conn).unwrap().first_bad, Some(3));
    }

    fn verify_prev(conn: &Connection, seq: i64) -> String {
        conn.row("SELECT prev_hash FROM audit_events WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_table_refuses_updates_without_tampering() {
        let conn = db_with(2);
        assert!(conn.execute("UPDATE audit_events SET actor = 'x'", []).is_err());
        assert!(conn.execute("DELETE FROM audit_events", []).is_err());
    }
}
