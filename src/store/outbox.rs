//! The outbox: lifecycle events recorded in the transaction of the transition, then
//! fanned out to sinks (hooks now, notifications later) and delivered by the outbox
//! worker with retries. Delivery is at most once per (event, sink): a delivery is
//! marked `running` before it runs; one found `running` after a crash is marked
//! `interrupted` and kept on record, never run twice.
//!
//! Notification sinks (every sink not named `hook:…`) differ in two ways. They take
//! their events one at a time, oldest first: only the head of a sink is ever claimed,
//! so a receiver that was down gets one retry at a time with its backoff, never a
//! flood, and its events in order. And a notification found `running` after a crash
//! is sent again (it carries the same event id, so a receiver can drop the copy):
//! losing an approval request is worse than saying it twice.

use super::CachedRow;
use crate::error::Result;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Records a lifecycle event for the outbox worker (call in the transition's tx).
pub fn enqueue(tx: &Transaction<'_>, event: &str, request_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO outbox (event, request_id, created_at) VALUES (?1, ?2, ?3)",
        params![event, request_id, now],
    )?;
    Ok(())
}

pub struct Event {
    pub seq: i64,
    pub event: String,
    pub request_id: String,
}

/// Events not fanned out yet, oldest first.
pub fn undispatched(conn: &Connection, limit: i64) -> Result<Vec<Event>> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, event, request_id FROM outbox WHERE dispatched = 0 ORDER BY seq LIMIT ?1")?;
    let rows = stmt.query_map([limit], |r| Ok(Event { seq: r.get(0)?, event: r.get(1)?, request_id: r.get(2)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Creates the deliveries of one event and marks it dispatched.
pub fn dispatch(tx: &Transaction<'_>, event_seq: i64, sinks: &[String], now: i64) -> Result<()> {
    for sink in sinks {
        tx.execute(
            "INSERT OR IGNORE INTO outbox_deliveries (event_seq, sink, state, next_at) VALUES (?1, ?2, 'pending', ?3)",
            params![event_seq, sink, now],
        )?;
    }
    tx.execute("UPDATE outbox SET dispatched = 1 WHERE seq = ?1", [event_seq])?;
    Ok(())
}

pub struct Delivery {
    pub event_seq: i64,
    pub event: String,
    pub request_id: String,
    pub sink: String,
    pub attempts: i64,
}

/// Hooks are claimed whenever due; a notification sink only at its head (its oldest
/// unfinished delivery), so it never has two in flight or a queue jumping its retry.
/// Notification sinks deliver one event at a time, oldest first. Hooks deliver in
/// the order of each request's events: an `on_grant` that is retrying must never run
/// after that request's `on_revoke` (it would give back access that was taken away).
const CLAIMABLE: &str = "d.state = 'pending' AND (
    (d.sink LIKE 'hook:%' AND NOT EXISTS (SELECT 1 FROM outbox_deliveries h JOIN outbox ho ON ho.seq = h.event_seq
        WHERE ho.request_id = o.request_id AND h.sink LIKE 'hook:%' AND h.event_seq < d.event_seq AND h.state IN ('pending', 'running')))
    OR (d.sink NOT LIKE 'hook:%' AND d.event_seq =
        (SELECT min(h.event_seq) FROM outbox_deliveries h WHERE h.sink = d.sink AND h.state IN ('pending', 'running'))))";

/// Claims the deliveries due now: they become `running` before anything runs.
pub fn claim_due(tx: &Transaction<'_>, now: i64, limit: i64) -> Result<Vec<Delivery>> {
    let due: Vec<Delivery> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT d.event_seq, o.event, o.request_id, d.sink, d.attempts FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq
             WHERE {CLAIMABLE} AND d.next_at <= ?1 ORDER BY d.next_at, d.event_seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now, limit], |r| {
            Ok(Delivery {
                event_seq: r.get(0)?,
                event: r.get(1)?,
                request_id: r.get(2)?,
                sink: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for d in &due {
        tx.execute(
            "UPDATE outbox_deliveries SET state = 'running', attempts = attempts + 1 WHERE event_seq = ?1 AND sink = ?2",
            params![d.event_seq, d.sink],
        )?;
    }
    Ok(due)
}

/// Records the result: done, retry at `retry_at`, or failed for good.
pub fn finish(tx: &Transaction<'_>, d: &Delivery, outcome: Finish<'_>) -> Result<()> {
    let (state, next_at, error) = match outcome {
        Finish::Done => ("done", None, None),
        Finish::Retry { at, error } => ("pending", Some(at), Some(error)),
        Finish::Failed { error } => ("failed", None, Some(error)),
    };
    tx.execute(
        "UPDATE outbox_deliveries SET state = ?1, next_at = coalesce(?2, next_at), last_error = ?3 WHERE event_seq = ?4 AND sink = ?5",
        params![state, next_at, error, d.event_seq, d.sink],
    )?;
    Ok(())
}

pub enum Finish<'a> {
    Done,
    Retry { at: i64, error: &'a str },
    Failed { error: &'a str },
}

/// After a crash: hooks left `running` are `interrupted` (not run again) and
/// returned; notifications left `running` are pending again (sent again, same id).
pub fn interrupt_running(tx: &Transaction<'_>, now: i64) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT o.request_id, d.sink FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq
             WHERE d.state = 'running' AND d.sink LIKE 'hook:%'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    tx.execute("UPDATE outbox_deliveries SET state = 'interrupted', last_error = 'the server stopped while it ran' WHERE state = 'running' AND sink LIKE 'hook:%'", [])?;
    tx.execute(
        "UPDATE outbox_deliveries SET state = 'pending', next_at = ?1, last_error = 'the server stopped while it was sent' WHERE state = 'running'",
        [now],
    )?;
    Ok(rows)
}

/// When the next claimable delivery is due.
pub fn next_due(conn: &Connection) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT min(d.next_at) FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq WHERE {CLAIMABLE}"
    );
    Ok(conn.row(&sql, [], |r| r.get(0))?)
}

/// One delivery as the admin API lists it.
pub struct Listed {
    pub event_id: String,
    pub event: String,
    pub request_id: String,
    pub sink: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Deliveries newest first, optionally in one state and of one sink kind
/// (`webhook`, `slack`, `teams`, `email`, `hook`).
pub fn list(
    conn: &Connection,
    state: Option<&str>,
    kind: Option<&str>,
    page: &super::Page,
) -> Result<(Vec<Listed>, Option<String>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.rowid, d.event_seq, o.event, o.request_id, d.sink, d.state, d.attempts, d.next_at, d.last_error, o.created_at
         FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq
         WHERE d.rowid < ?1 AND (?2 IS NULL OR d.state = ?2) AND (?3 IS NULL OR d.sink = ?3 OR d.sink LIKE ?3 || ':%')
         ORDER BY d.rowid DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![page.before_or_max(), state, kind, page.fetch_limit()], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Listed {
                event_id: event_id(r.get(1)?),
                event: r.get(2)?,
                request_id: r.get(3)?,
                sink: r.get(4)?,
                state: r.get(5)?,
                attempts: r.get(6)?,
                next_at: r.get(7)?,
                last_error: r.get(8)?,
                created_at: r.get(9)?,
            },
        ))
    })?;
    Ok(page.finish(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

/// Puts an event's dead deliveries back in the queue as new (no attempts, due now):
/// `failed` ones, and `interrupted` hooks only when `interrupted` is set (they may
/// have run: the operator must know they are safe to run twice). Returns the event's
/// request, its event name and the sinks re-queued, `None` when there is no such event.
///
/// A hook is never re-queued once a later event of the same request has hook
/// deliveries: an `on_grant` must not run after that request's `on_revoke`.
pub fn retry(
    tx: &Transaction<'_>,
    event_seq: i64,
    sink: Option<&str>,
    interrupted: bool,
    now: i64,
) -> Result<Option<(String, String, Vec<String>)>> {
    use crate::error::Error;
    let found: Option<(String, String)> = tx
        .row("SELECT request_id, event FROM outbox WHERE seq = ?1", [event_seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((request, event)) = found else { return Ok(None) };
    let sinks: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT sink FROM outbox_deliveries WHERE event_seq = ?1 AND (?2 IS NULL OR sink = ?2)
             AND (state = 'failed' OR (state = 'interrupted' AND ?3)) ORDER BY sink",
        )?;
        let rows = stmt.query_map(params![event_seq, sink, interrupted], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if sinks.iter().any(|s| s.starts_with("hook:")) {
        let later: i64 = tx.row(
            "SELECT count(*) FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq
             WHERE o.request_id = ?1 AND d.event_seq > ?2 AND d.sink LIKE 'hook:%'",
            params![request, event_seq],
            |r| r.get(0),
        )?;
        if later > 0 {
            return Err(Error::conflict(
                "later_hook_ran",
                format!(
                    "a later event of {request} has hook deliveries already (run or not): running this hook now could undo theirs; other sinks can be retried one by one with {{\"sink\": …}}"
                ),
            ));
        }
    }
    for s in &sinks {
        tx.execute(
            "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_at = ?3 WHERE event_seq = ?1 AND sink = ?2",
            params![event_seq, s, now],
        )?;
    }
    Ok(Some((request, event, sinks)))
}

/// The event's sequence number from its public id (`evt_12` → 12); only the form
/// [`event_id`] writes (`evt_012` or `evt_+12` would name the same event under
/// another id than the one on record).
pub fn event_seq(id: &str) -> Option<i64> {
    id.strip_prefix("evt_")?.parse().ok().filter(|n| *n > 0 && event_id(*n) == id)
}

/// The public id of an event: the same for every sink and every retry, so a
/// receiver can refuse a copy.
pub fn event_id(seq: i64) -> String {
    format!("evt_{seq}")
}

/// Dead deliveries (failed for good or interrupted) by sink kind, for /metrics.
pub fn dead_by_kind(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT CASE WHEN instr(sink, ':') > 0 THEN substr(sink, 1, instr(sink, ':') - 1) ELSE sink END AS kind, count(*)
         FROM outbox_deliveries WHERE state IN ('failed', 'interrupted') GROUP BY kind ORDER BY kind",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// (waiting, failed for good) for /metrics.
pub fn depth(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.row(
        "SELECT (SELECT count(*) FROM outbox WHERE dispatched = 0) + (SELECT count(*) FROM outbox_deliveries WHERE state IN ('pending', 'running')),
                (SELECT count(*) FROM outbox_deliveries WHERE state IN ('failed', 'interrupted'))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn next_due_sees_each_sinks_head_and_each_requests_first_hook() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        assert_eq!(store.read(next_due).unwrap(), None, "nothing queued");
        store
            .write(|tx| {
                enqueue(tx, "request.approved", "req_a", 1)?;
                enqueue(tx, "request.revoked", "req_a", 2)?;
                for e in undispatched(tx, 10)? {
                    dispatch(tx, e.seq, &["hook:0:on_grant".into(), "webhook:0".into()], 100 + e.seq)?;
                }
                Ok(())
            })
            .unwrap();
        // The first event's deliveries are the heads; the second waits behind them.
        assert_eq!(store.read(next_due).unwrap(), Some(101));
        let claimed = store.write(|tx| claim_due(tx, 1_000, 16)).unwrap();
        let seqs: Vec<i64> = claimed.iter().map(|d| d.event_seq).collect();
        assert_eq!(seqs, vec![1, 1], "one hook and one webhook delivery, both of the first event");
        assert_eq!(store.read(next_due).unwrap(), None, "the rest waits while the heads run");
    }

    #[test]
    fn dead_deliveries_come_back_but_never_a_hook_behind_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let dead = |tx: &Transaction<'_>, seq: i64, sink: &str, state: &str| {
            tx.execute(
                "UPDATE outbox_deliveries SET state = ?3, attempts = 5 WHERE event_seq = ?1 AND sink = ?2",
                params![seq, sink, state],
            )
        };
        store
            .write(|tx| {
                enqueue(tx, "request.approved", "req_a", 1)?;
                dispatch(tx, 1, &["hook:0:on_grant".into(), "webhook:0".into()], 1)?;
                dead(tx, 1, "hook:0:on_grant", "failed")?;
                dead(tx, 1, "webhook:0", "failed")?;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.write(|tx| retry(tx, 99, None, false, 5)).unwrap(), None, "no such event");
        let (request, event, sinks) = store.write(|tx| retry(tx, 1, Some("webhook:0"), false, 5)).unwrap().unwrap();
        assert_eq!(
            (request.as_str(), event.as_str(), sinks),
            ("req_a", "request.approved", vec!["webhook:0".to_string()])
        );
        let again = store.write(|tx| retry(tx, 1, Some("webhook:0"), false, 5)).unwrap().unwrap();
        assert!(again.2.is_empty(), "a pending delivery is not dead");
        // The request was revoked meanwhile and its on_revoke hook ran: on_grant stays dead.
        store
            .write(|tx| {
                enqueue(tx, "request.revoked", "req_a", 6)?;
                dispatch(tx, 2, &["hook:0:on_revoke".into()], 6)?;
                dead(tx, 2, "hook:0:on_revoke", "done")?;
                Ok(())
            })
            .unwrap();
        let refused = store.write(|tx| retry(tx, 1, None, false, 7));
        assert!(matches!(refused, Err(crate::error::Error::Conflict { .. })), "{:?}", refused.map(|_| ()));
        let state: String = store
            .read(|c| {
                Ok(c.row(
                    "SELECT state FROM outbox_deliveries WHERE event_seq = 1 AND sink = 'hook:0:on_grant'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(state, "failed");
        assert_eq!(event_seq("evt_12"), Some(12));
        assert_eq!(event_seq("evt_0"), None);
        assert_eq!(event_seq("12"), None);
        assert_eq!((event_seq("evt_012"), event_seq("evt_+12")), (None, None));
    }
}
