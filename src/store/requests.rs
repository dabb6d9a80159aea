//! Access requests and their reviews. Every function that changes a request loads it,
//! asks the domain rule, and saves the result together with its audit event, inside
//! the caller's write transaction.

use super::{connections, found, users, CachedRow, Page};
use crate::audit;
use crate::domain::approval::Tally;
use crate::domain::policy::Connection;
use crate::domain::request::{self as rule, Action, Decision, Outcome, Request, Review};
use crate::domain::{check_text, duration, Actor, Status};
use crate::error::{Error, Result};
use crate::secret;
use crate::store::users::User;
use rusqlite::{params, Connection as Db, OptionalExtension, Row, Transaction};
use serde_json::json;

pub const MAX_COMMENT_CHARS: usize = 1_000;

/// A request with what a reader needs beside it: its reviews and, per approval
/// group, who counts for it right now.
#[derive(Clone, Debug)]
pub struct RequestView {
    pub seq: i64,
    pub request: Request,
    pub reviews: Vec<Review>,
    pub tally: Tally,
}

const SELECT: &str =
    "SELECT r.seq, r.id, u.username, c.name, r.status, r.duration, r.reason, r.created_at, r.pending_until,
    r.approved_at, r.expires_at, r.ended_at, r.ended_by, r.end_reason, r.connection_id, r.user_id, r.approved_by
    FROM requests r JOIN users u ON u.id = r.user_id JOIN connections c ON c.id = r.connection_id";

/// A loaded row: the request plus the internal ids it points at.
struct Loaded {
    seq: i64,
    request: Request,
    connection_id: i64,
    user_id: i64,
    /// Who counted for which group, frozen at approval (JSON).
    approved_by: Option<String>,
}

fn row(r: &Row<'_>) -> rusqlite::Result<Loaded> {
    let status: String = r.get(4)?;
    Ok(Loaded {
        seq: r.get(0)?,
        request: Request {
            id: r.get(1)?,
            user: r.get(2)?,
            connection: r.get(3)?,
            status: Status::parse(&status).unwrap_or(Status::Cancelled),
            duration: r.get(5)?,
            reason: r.get(6)?,
            created_at: r.get(7)?,
            pending_until: r.get(8)?,
            approved_at: r.get(9)?,
            expires_at: r.get(10)?,
            ended_at: r.get(11)?,
            ended_by: r.get(12)?,
            end_reason: r.get(13)?,
        },
        connection_id: r.get(14)?,
        user_id: r.get(15)?,
        approved_by: r.get(16)?,
    })
}

fn load(conn: &Db, id: &str) -> Result<Loaded> {
    found("request", id, conn.row(&format!("{SELECT} WHERE r.id = ?1"), [id], row))
}

fn reviews_of(conn: &Db, seq: i64) -> Result<Vec<(Review, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.username, v.decision, v.comment, v.created_at, v.reviewer_id FROM reviews v JOIN users u ON u.id = v.reviewer_id
         WHERE v.request_seq = ?1 ORDER BY v.created_at, u.username",
    )?;
    let rows = stmt.query_map([seq], |r| {
        let decision: String = r.get(1)?;
        Ok((
            Review {
                reviewer: r.get(0)?,
                decision: if decision == "approve" { Decision::Approve } else { Decision::Reject },
                comment: r.get(2)?,
                at: r.get(3)?,
            },
            r.get(4)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Frozen {
    required: u32,
    counted: std::collections::BTreeMap<String, Vec<String>>,
}

fn freeze(t: &Tally) -> String {
    serde_json::to_string(&Frozen { required: t.required, counted: t.counted.clone() }).unwrap_or_default()
}

/// Approvers as they are now (live and enabled users only, with current groups).
fn approvers(conn: &Db, reviews: &[(Review, i64)]) -> Result<Vec<Actor>> {
    let mut out = Vec::new();
    for (review, user_id) in reviews {
        if review.decision != Decision::Approve {
            continue;
        }
        match users::get_by_id(conn, *user_id) {
            Ok(u) if !u.disabled => out.push(users::actor(&u)),
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// An approved request shows who counted when it was approved; a pending one shows
/// who counts now (membership and policy are read at each decision).
fn view(conn: &Db, loaded: Loaded) -> Result<RequestView> {
    let reviews = reviews_of(conn, loaded.seq)?;
    let frozen = loaded.approved_by.as_deref().and_then(|j| serde_json::from_str::<Frozen>(j).ok());
    let tally = match frozen {
        Some(f) => Tally { counted: f.counted, required: f.required, satisfied: true },
        None => rule::progress(&connections::get_by_id(conn, loaded.connection_id)?, &approvers(conn, &reviews)?),
    };
    Ok(RequestView {
        seq: loaded.seq,
        request: loaded.request,
        reviews: reviews.into_iter().map(|(r, _)| r).collect(),
        tally,
    })
}

pub fn get(conn: &Db, id: &str) -> Result<RequestView> {
    view(conn, load(conn, id)?)
}

/// Whether `viewer` may see the request: their own, one they may review, or admin.
pub fn visible_to(conn: &Db, viewer: &User, id: &str) -> Result<bool> {
    if viewer.admin {
        return Ok(true);
    }
    let loaded = load(conn, id)?;
    if loaded.user_id == viewer.id {
        return Ok(true);
    }
    let policy = connections::get_by_id(conn, loaded.connection_id)?;
    Ok(policy.is_eligible_reviewer(&users::actor(viewer)))
}

/// Creates a request, or returns the requester's PENDING or live APPROVED one for the
/// same connection (`true` = reused), so `connect` reconnects without a new approval.
pub fn create(
    tx: &Transaction<'_>,
    requester: &User,
    connection: &str,
    duration_text: Option<&str>,
    reason: Option<&str>,
    now: i64,
) -> Result<(RequestView, bool)> {
    let (connection_id, policy) = connections::get_with_id(tx, connection)?;
    // Validate first: junk never reaches the reuse shortcut.
    let new = rule::create(&policy, &users::actor(requester), duration_text, reason, now)?;
    let live: Option<String> = tx
        .row(
            "SELECT id FROM requests WHERE user_id = ?1 AND connection_id = ?2
             AND ((status = 'PENDING' AND pending_until > ?3) OR (status = 'APPROVED' AND expires_at > ?3)) ORDER BY seq DESC LIMIT 1",
            params![requester.id, connection_id, now],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = live {
        return Ok((get(tx, &id)?, true));
    }
    let id = secret::random_id("req")?;
    tx.execute(
        "INSERT INTO requests (id, user_id, connection_id, status, duration, reason, created_at, pending_until, approved_at, expires_at, approved_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            requester.id,
            connection_id,
            new.status.as_str(),
            new.duration,
            new.reason,
            now,
            new.pending_until,
            new.approved_at,
            new.expires_at,
            (new.status == Status::Approved).then(|| freeze(&rule::progress(&policy, &[]))),
        ],
    )?;
    let detail = json!({"connection": connection, "duration": duration::format(new.duration), "reason": new.reason});
    record(tx, now, &requester.username, "request.created", &id, detail)?;
    if new.status == Status::Approved {
        record(tx, now, audit::SYSTEM, "request.approved", &id, json!({"auto": true, "expires_at": new.expires_at}))?;
    }
    Ok((get(tx, &id)?, false))
}

/// One approve or reject.
pub fn review(
    tx: &Transaction<'_>,
    reviewer: &User,
    id: &str,
    decision: Decision,
    comment: Option<&str>,
    now: i64,
) -> Result<RequestView> {
    let comment = clean_text("comment", comment)?;
    let loaded = load(tx, id)?;
    let policy = connections::get_by_id(tx, loaded.connection_id)?;
    let reviews = reviews_of(tx, loaded.seq)?;
    let plain: Vec<Review> = reviews.iter().map(|(r, _)| r.clone()).collect();
    let actor = users::actor(reviewer);
    let mut counted = approvers(tx, &reviews)?;
    let outcome = rule::review(&policy, &loaded.request, &plain, &counted, &actor, decision, now)?;
    counted.push(actor);
    tx.execute(
        "INSERT INTO reviews (request_seq, reviewer_id, decision, comment, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![loaded.seq, reviewer.id, decision.as_str(), comment, now],
    )?;
    let action = if decision == Decision::Approve { "review.approved" } else { "review.rejected" };
    audit::append(tx, now, &reviewer.username, action, id, json!({"comment": comment}))?;
    match outcome {
        Outcome::StillPending => {}
        Outcome::Approved { approved_at, expires_at, duration } => {
            tx.execute(
                "UPDATE requests SET status = 'APPROVED', approved_at = ?1, expires_at = ?2, duration = ?3, approved_by = ?4 WHERE seq = ?5",
                params![approved_at, expires_at, duration, freeze(&rule::progress(&policy, &counted)), loaded.seq],
            )?;
            let clamped = duration != loaded.request.duration;
            record(
                tx,
                now,
                audit::SYSTEM,
                "request.approved",
                id,
                json!({"expires_at": expires_at, "clamped": clamped}),
            )?;
        }
        Outcome::Rejected => {
            end(tx, loaded.seq, Status::Rejected, &reviewer.username, comment.as_deref(), now)?;
            record(tx, now, &reviewer.username, "request.rejected", id, json!({"reason": comment}))?;
        }
    }
    get(tx, id)
}

/// Cancel, end or revoke.
pub fn act(
    tx: &Transaction<'_>,
    user: &User,
    id: &str,
    action: Action,
    reason: Option<&str>,
    now: i64,
) -> Result<RequestView> {
    let reason = clean_text("reason", reason)?;
    let loaded = load(tx, id)?;
    let policy = connections::get_by_id(tx, loaded.connection_id)?;
    let status = rule::act(&policy, &loaded.request, &users::actor(user), action, now)?;
    end(tx, loaded.seq, status, &user.username, reason.as_deref(), now)?;
    record(tx, now, &user.username, &format!("request.{}", action.past_tense()), id, json!({"reason": reason}))?;
    get(tx, id)
}

/// A request's transition: its audit event and its outbox event (for hooks and
/// notifications), both in the caller's transaction.
fn record(
    tx: &Transaction<'_>,
    now: i64,
    actor: &str,
    action: &str,
    id: &str,
    detail: serde_json::Value,
) -> Result<()> {
    audit::append(tx, now, actor, action, id, detail)?;
    // Ending a grant early is, for the sinks, the same event as its expiry.
    let event = if action == "request.ended" { "request.executed" } else { action };
    super::outbox::enqueue(tx, event, id, now)
}

fn end(tx: &Transaction<'_>, seq: i64, status: Status, by: &str, reason: Option<&str>, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE requests SET status = ?1, ended_at = ?2, ended_by = ?3, end_reason = ?4 WHERE seq = ?5",
        params![status.as_str(), now, by, reason, seq],
    )?;
    let why = match status {
        Status::Executed if by == audit::SYSTEM => "grant expired",
        Status::Executed => "grant ended",
        Status::Revoked => "grant revoked",
        _ => return Ok(()),
    };
    super::sessions::end_for_request(tx, seq, why, now)
}

fn clean_text(what: &'static str, text: Option<&str>) -> Result<Option<String>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if let Some(t) = text {
        check_text(what, t, MAX_COMMENT_CHARS)?;
    }
    Ok(text.map(str::to_string))
}

/// How long before expiry the requester is warned ("expiring in 10 minutes"). Grants
/// no longer than this get no warning: the approval already said how long they last.
pub const EXPIRY_WARNING_MS: i64 = 10 * 60 * 1000;

/// The moment the expiry timer must next wake: the nearest grant expiry, pending
/// deadline or expiry warning.
pub fn next_deadline(conn: &Db) -> Result<Option<i64>> {
    Ok(conn.row(
        "SELECT min(t) FROM (
            SELECT min(expires_at) AS t FROM requests WHERE status = 'APPROVED'
            UNION ALL SELECT min(pending_until) FROM requests WHERE status = 'PENDING'
            UNION ALL SELECT min(expires_at - ?1) FROM requests
                WHERE status = 'APPROVED' AND warned_at IS NULL AND expires_at - approved_at > ?1)",
        [EXPIRY_WARNING_MS],
        |r| r.get(0),
    )?)
}

/// Records `request.expiring` once for every live grant within `EXPIRY_WARNING_MS` of
/// its end (the outbox tells the requester). Returns the ids warned.
pub fn warn_due(tx: &Transaction<'_>, now: i64) -> Result<Vec<String>> {
    let due: Vec<(String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, expires_at FROM requests WHERE status = 'APPROVED' AND warned_at IS NULL
             AND expires_at - approved_at > ?1 AND expires_at - ?1 <= ?2 AND expires_at > ?2",
        )?;
        let rows = stmt.query_map(params![EXPIRY_WARNING_MS, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, expires_at) in &due {
        tx.execute("UPDATE requests SET warned_at = ?1 WHERE id = ?2", params![now, id])?;
        record(tx, now, audit::SYSTEM, "request.expiring", id, json!({"expires_at": expires_at}))?;
    }
    Ok(due.into_iter().map(|(id, _)| id).collect())
}

/// One request moved by the expiry timer, with the moment it was due.
pub struct Expired {
    pub id: String,
    pub status: Status,
    pub due: i64,
}

/// Moves every due request (APPROVED past expiry → EXECUTED, PENDING past its TTL →
/// CANCELLED) in the caller's transaction.
pub fn expire_due(tx: &Transaction<'_>, now: i64) -> Result<Vec<Expired>> {
    let due: Vec<Loaded> = {
        let mut stmt = tx.prepare_cached(&format!(
            "{SELECT} WHERE (r.status = 'APPROVED' AND r.expires_at <= ?1) OR (r.status = 'PENDING' AND r.pending_until <= ?1)"
        ))?;
        let rows = stmt.query_map([now], row)?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(due.len());
    for loaded in due {
        let Some(status) = rule::expire(&loaded.request, now) else { continue };
        let (reason, at) = match status {
            Status::Executed => ("expired", loaded.request.expires_at.unwrap_or(now)),
            _ => ("pending TTL reached", loaded.request.pending_until),
        };
        end(tx, loaded.seq, status, audit::SYSTEM, Some(reason), now)?;
        let action = if status == Status::Executed { "request.executed" } else { "request.cancelled" };
        record(tx, now, audit::SYSTEM, action, &loaded.request.id, json!({"reason": reason, "due": at}))?;
        out.push(Expired { id: loaded.request.id, status, due: at });
    }
    Ok(out)
}

/// Ends every open request of a user (disabled or deleted): pending ones are
/// cancelled, live grants revoked.
pub fn close_all_for_user(tx: &Transaction<'_>, user_id: i64, by: &str, reason: &str, now: i64) -> Result<()> {
    close_all(tx, "r.user_id = ?1", user_id, by, reason, now)
}

/// Ends every open request on a connection that is being deleted.
pub fn close_all_for_connection(
    tx: &Transaction<'_>,
    connection_id: i64,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    close_all(tx, "r.connection_id = ?1", connection_id, by, reason, now)
}

fn close_all(tx: &Transaction<'_>, condition: &str, key: i64, by: &str, reason: &str, now: i64) -> Result<()> {
    let open: Vec<Loaded> = {
        let mut stmt = tx.prepare(&format!("{SELECT} WHERE {condition} AND r.status IN ('PENDING', 'APPROVED')"))?;
        let rows = stmt.query_map([key], row)?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for loaded in open {
        let (status, action) = match loaded.request.status {
            Status::Pending => (Status::Cancelled, "request.cancelled"),
            _ => (Status::Revoked, "request.revoked"),
        };
        end(tx, loaded.seq, status, by, Some(reason), now)?;
        record(tx, now, by, action, &loaded.request.id, json!({"reason": reason}))?;
    }
    Ok(())
}

/// Filters of the request list; all narrow what the viewer may see anyway.
#[derive(Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub connection: Option<String>,
    pub user: Option<String>,
    pub reviewable: bool,
}

/// Newest first, limited to what `viewer` may see.
pub fn list(conn: &Db, viewer: &User, filter: &Filter, page: &Page) -> Result<(Vec<RequestView>, Option<String>)> {
    let sql = format!(
        "{SELECT} WHERE r.seq < ?1
         AND (?2 IS NULL OR r.status = ?2) AND (?3 IS NULL OR c.name = ?3) AND (?4 IS NULL OR u.username = ?4)
         AND (?5 = 1 OR r.user_id = ?6 OR r.connection_id IN ({ELIGIBLE}))
         AND (?7 = 0 OR (r.status = 'PENDING' AND (?5 = 1 OR (r.user_id != ?6 AND r.connection_id IN ({ELIGIBLE})))
                        AND NOT EXISTS (SELECT 1 FROM reviews v WHERE v.request_seq = r.seq AND v.reviewer_id = ?6)))
         ORDER BY r.seq DESC LIMIT ?8"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            page.before_or_max(),
            filter.status.map(Status::as_str),
            filter.connection,
            filter.user,
            viewer.admin,
            viewer.id,
            filter.reviewable,
            page.fetch_limit()
        ],
        row,
    )?;
    let loaded = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let views = loaded.into_iter().map(|l| Ok((l.seq, view(conn, l)?))).collect::<Result<Vec<_>>>()?;
    Ok(page.finish(views))
}

/// Connections whose requests user ?6 may review (as a member of an approval group).
const ELIGIBLE: &str = "SELECT cg.connection_id FROM connection_groups cg JOIN group_members gm ON gm.group_id = cg.group_id WHERE gm.user_id = ?6";

/// The live grant of `username` on `connection`, if any (for enforcement points).
pub fn live_grant(conn: &Db, username: &str, connection: &str, now: i64) -> Result<Option<RequestView>> {
    let id: Option<String> = conn
        .row(
            "SELECT r.id FROM requests r JOIN users u ON u.id = r.user_id JOIN connections c ON c.id = r.connection_id
             WHERE u.username = ?1 AND u.deleted_at IS NULL AND u.disabled = 0 AND c.name = ?2 AND c.deleted_at IS NULL
             AND r.status = 'APPROVED' AND r.expires_at > ?3 ORDER BY r.seq DESC LIMIT 1",
            params![username, connection, now],
            |r| r.get(0),
        )
        .optional()?;
    id.map(|id| get(conn, &id)).transpose()
}

/// Request counts by status, for /metrics.
pub fn count_by_status(conn: &Db) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT status, count(*) FROM requests GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Grants in force at `now` (APPROVED and not yet expired), for /metrics.
pub fn active_grants(conn: &Db, now: i64) -> Result<i64> {
    let sql = "SELECT count(*) FROM requests WHERE status = 'APPROVED' AND expires_at > ?1";
    Ok(conn.row(sql, [now], |r| r.get(0))?)
}

/// The creation time of the oldest PENDING request, for /metrics.
pub fn oldest_pending(conn: &Db) -> Result<Option<i64>> {
    Ok(conn.row("SELECT min(created_at) FROM requests WHERE status = 'PENDING'", [], |r| r.get(0))?)
}

/// The policy a request is judged by now (its connection's, deleted ones included).
pub fn policy_of(conn: &Db, id: &str) -> Result<Connection> {
    let loaded = load(conn, id)?;
    connections::get_by_id(conn, loaded.connection_id)
}
