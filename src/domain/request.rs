//! The access request and its transitions, as DESIGN.md's lifecycle table states
//! them. Each function takes the current state, the actor and `now` and returns the
//! new state or an error; the store saves the result with its audit event.
//!
//! Checks run in a fixed order: who may act (403) before what state allows (409), so
//! that a caller without rights learns nothing about a request's state.
//!
//! Membership is read at the moment of each decision: an approval counts for the
//! groups its reviewer belongs to when the request is evaluated. A reviewer removed
//! from a group while a request waits no longer counts for that group (their review
//! stays on record); a reviewer added to a group counts from then on. Once a request
//! is APPROVED it is final: a later membership change never revokes a grant by itself.

use super::approval::{tally, Tally};
use super::policy::Connection;
use super::{check_text, Actor, Status};
use crate::error::{Error, Result};

pub const MAX_REASON_CHARS: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub user: String,
    pub connection: String,
    pub status: Status,
    /// Seconds of access, counted from approval.
    pub duration: u64,
    pub reason: Option<String>,
    /// Times are Unix milliseconds.
    pub created_at: i64,
    /// PENDING past this moment becomes CANCELLED (fixed at creation).
    pub pending_until: i64,
    pub approved_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
}

impl Request {
    /// The grant's end while it gives access at `now` (APPROVED and not yet
    /// expired, whether or not the timer has recorded the expiry); `None` otherwise.
    pub fn live_until(&self, now: i64) -> Option<i64> {
        self.expires_at.filter(|e| *e > now && self.status == Status::Approved)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    pub reviewer: String,
    pub decision: Decision,
    pub comment: Option<String>,
    pub at: i64,
}

/// What creating a request yields, before it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    pub status: Status,
    pub duration: u64,
    pub reason: Option<String>,
    pub pending_until: i64,
    pub approved_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// Checks a new request against the connection's policy.
pub fn create(
    conn: &Connection,
    requester: &Actor,
    duration: Option<&str>,
    reason: Option<&str>,
    now: i64,
) -> Result<NewRequest> {
    let duration = conn.resolve_duration(duration)?;
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(str::to_string);
    if let Some(r) = &reason {
        check_text("reason", r, MAX_REASON_CHARS)?;
    }
    if conn.require_reason && reason.is_none() {
        return Err(Error::ReasonRequired(conn.name.clone()));
    }
    let pending_until = now + secs_to_ms(conn.pending_ttl);
    if conn.approves_on_creation(requester) {
        return Ok(NewRequest {
            status: Status::Approved,
            duration,
            reason,
            pending_until,
            approved_at: Some(now),
            expires_at: Some(now + secs_to_ms(duration)),
        });
    }
    Ok(NewRequest { status: Status::Pending, duration, reason, pending_until, approved_at: None, expires_at: None })
}

/// The result of one review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    StillPending,
    Approved { approved_at: i64, expires_at: i64, duration: u64 },
    Rejected,
}

/// One reviewer's approve or reject. `approvers` holds everyone who approved before,
/// with their admin flag and groups as they are now.
pub fn review(
    conn: &Connection,
    req: &Request,
    reviews: &[Review],
    approvers: &[Actor],
    actor: &Actor,
    decision: Decision,
    now: i64,
) -> Result<Outcome> {
    let action = if decision == Decision::Approve { "approved" } else { "rejected" };
    if !conn.is_eligible_reviewer(actor) {
        return Err(Error::Forbidden(format!("{} is not an approver of {}", actor.username, conn.name)));
    }
    if req.user == actor.username && !actor.admin {
        return Err(Error::Forbidden("you cannot review your own request".into()));
    }
    expect_status(req, Status::Pending, action, now)?;
    if reviews.iter().any(|r| r.reviewer == actor.username) {
        return Err(Error::conflict("already_reviewed", format!("{} has already reviewed {}", actor.username, req.id)));
    }
    if decision == Decision::Reject {
        return Ok(Outcome::Rejected);
    }
    let mut all = approvers.to_vec();
    all.push(actor.clone());
    if !progress(conn, &all).satisfied {
        return Ok(Outcome::StillPending);
    }
    // A maximum lowered while the request waited clamps the grant (see policy.rs).
    let duration = req.duration.min(conn.max_duration);
    Ok(Outcome::Approved { approved_at: now, expires_at: now + secs_to_ms(duration), duration })
}

/// Who counts for which group right now.
pub fn progress(conn: &Connection, approvers: &[Actor]) -> Tally {
    tally(&conn.approval_groups, conn.min_approvals, approvers)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The requester withdraws a PENDING request.
    Cancel,
    /// The requester gives an APPROVED grant back early.
    End,
    /// An admin or eligible reviewer cuts an APPROVED grant.
    Revoke,
}

impl Action {
    pub fn past_tense(self) -> &'static str {
        match self {
            Action::Cancel => "cancelled",
            Action::End => "ended",
            Action::Revoke => "revoked",
        }
    }
}

/// Cancel, end or revoke: returns the new status.
pub fn act(conn: &Connection, req: &Request, actor: &Actor, action: Action, now: i64) -> Result<Status> {
    let owner = req.user == actor.username;
    match action {
        Action::Cancel | Action::End if !owner => Err(Error::Forbidden(format!(
            "only {} may {} this request",
            req.user,
            if action == Action::Cancel { "cancel" } else { "end" }
        ))),
        Action::Revoke if !conn.is_eligible_reviewer(actor) => {
            Err(Error::Forbidden(format!("{} may not revoke grants on {}", actor.username, conn.name)))
        }
        Action::Cancel => expect_status(req, Status::Pending, action.past_tense(), now).map(|_| Status::Cancelled),
        Action::End => expect_status(req, Status::Approved, action.past_tense(), now).map(|_| Status::Executed),
        Action::Revoke => expect_status(req, Status::Approved, action.past_tense(), now).map(|_| Status::Revoked),
    }
}

/// What the expiry timer does to a request at `now`, if anything.
pub fn expire(req: &Request, now: i64) -> Option<Status> {
    match req.status {
        Status::Approved if req.expires_at.is_some_and(|e| e <= now) => Some(Status::Executed),
        Status::Pending if req.pending_until <= now => Some(Status::Cancelled),
        _ => None,
    }
}

/// Checks the status the request has *now*: a deadline that has passed counts even if
/// the timer has not recorded it yet, so a grant past its expiry can no longer be
/// revoked (it ended) and a request past its pending TTL can no longer be approved.
fn expect_status(req: &Request, wanted: Status, action: &'static str, now: i64) -> Result<()> {
    let status = expire(req, now).unwrap_or(req.status);
    if status == wanted {
        Ok(())
    } else {
        Err(Error::WrongState { id: req.id.clone(), status: status.to_string(), action })
    }
}

pub fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 2_000).saturating_mul(1_000)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
