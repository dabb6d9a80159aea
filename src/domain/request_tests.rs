//! Unit tests of the lifecycle rules: one line of setup each.

use super::*;
use crate::domain::policy::Connection;

const NOW: i64 = 1_800_000_000_000;

fn actor(name: &str, admin: bool, groups: &[&str]) -> Actor {
    Actor { username: name.into(), admin, groups: groups.iter().map(|g| g.to_string()).collect() }
}

fn conn(groups: &[&str]) -> Connection {
    Connection {
        approval_groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Connection::with_defaults("prod-db")
    }
}

fn pending(user: &str) -> Request {
    Request {
        id: "req_1".into(),
        user: user.into(),
        connection: "prod-db".into(),
        status: Status::Pending,
        duration: 7_200,
        reason: None,
        created_at: NOW,
        pending_until: NOW + 86_400_000,
        approved_at: None,
        expires_at: None,
        ended_at: None,
        ended_by: None,
        end_reason: None,
    }
}

fn approved(user: &str) -> Request {
    Request { status: Status::Approved, approved_at: Some(NOW), expires_at: Some(NOW + 7_200_000), ..pending(user) }
}

fn approval(name: &str) -> Review {
    Review { reviewer: name.into(), decision: Decision::Approve, comment: None, at: NOW }
}

#[test]
fn new_request_waits_when_the_connection_has_groups() {
    let r = create(&conn(&["dba"]), &actor("alice", false, &[]), Some("2h"), None, NOW).unwrap();
    assert_eq!(r.status, Status::Pending);
    assert_eq!(r.pending_until, NOW + 86_400_000);
    assert_eq!(r.expires_at, None);
}

#[test]
fn new_request_is_approved_without_groups_or_for_an_auto_approved_admin() {
    let r = create(&conn(&[]), &actor("alice", false, &[]), Some("2h"), None, NOW).unwrap();
    assert_eq!((r.status, r.expires_at), (Status::Approved, Some(NOW + 7_200_000)));
    let r = create(&conn(&["dba"]), &actor("root", true, &[]), None, None, NOW).unwrap();
    assert_eq!((r.status, r.expires_at), (Status::Approved, Some(NOW + 3_600_000)));
}

#[test]
fn reason_is_required_when_the_policy_says_so() {
    let c = Connection { require_reason: true, ..conn(&["dba"]) };
    assert_eq!(create(&c, &actor("alice", false, &[]), None, Some("   "), NOW).unwrap_err().code(), "reason_required");
    assert!(create(&c, &actor("alice", false, &[]), None, Some("INC-42"), NOW).is_ok());
}

#[test]
fn duration_starts_at_approval() {
    let later = NOW + 600_000;
    let out =
        review(&conn(&["dba"]), &pending("alice"), &[], &[], &actor("bob", false, &["dba"]), Decision::Approve, later)
            .unwrap();
    assert_eq!(out, Outcome::Approved { approved_at: later, expires_at: later + 7_200_000, duration: 7_200 });
}

#[test]
fn a_requester_never_approves_their_own_request_unless_admin() {
    let c = conn(&["dba"]);
    let err =
        review(&c, &pending("alice"), &[], &[], &actor("alice", false, &["dba"]), Decision::Approve, NOW).unwrap_err();
    assert_eq!(err.status(), 403);
    assert!(review(&c, &pending("root"), &[], &[], &actor("root", true, &[]), Decision::Approve, NOW).is_ok());
}

#[test]
fn one_review_per_person() {
    let c = conn(&["dba", "security"]);
    let bob = actor("bob", false, &["dba"]);
    let err =
        review(&c, &pending("alice"), &[approval("bob")], std::slice::from_ref(&bob), &bob, Decision::Reject, NOW)
            .unwrap_err();
    assert_eq!((err.status(), err.code()), (409, "already_reviewed"));
}

#[test]
fn a_reviewer_in_two_groups_satisfies_only_one() {
    let c = conn(&["dba", "security"]);
    let carol = actor("carol", false, &["dba", "security"]);
    let out = review(&c, &pending("alice"), &[], &[], &carol, Decision::Approve, NOW).unwrap();
    assert_eq!(out, Outcome::StillPending);
    let dave = actor("dave", false, &["dba"]);
    let out = review(&c, &pending("alice"), &[approval("carol")], &[carol], &dave, Decision::Approve, NOW).unwrap();
    assert!(matches!(out, Outcome::Approved { .. }));
}

#[test]
fn any_eligible_rejection_rejects() {
    let c = conn(&["dba", "security"]);
    let bob = actor("bob", false, &["dba"]);
    let out = review(
        &c,
        &pending("alice"),
        &[approval("bob")],
        &[bob],
        &actor("sam", false, &["security"]),
        Decision::Reject,
        NOW,
    )
    .unwrap();
    assert_eq!(out, Outcome::Rejected);
}

#[test]
fn outsiders_may_not_review() {
    let err =
        review(&conn(&["dba"]), &pending("alice"), &[], &[], &actor("eve", false, &["sales"]), Decision::Approve, NOW)
            .unwrap_err();
    assert_eq!(err.status(), 403);
}

#[test]
fn a_reviewer_removed_from_the_group_no_longer_counts() {
    // bob approved while in dba, then left it: his approval counts for nothing now.
    let c = conn(&["dba"]);
    let c2 = Connection { min_approvals: 2, ..c };
    let bob_now = actor("bob", false, &[]);
    let out = review(
        &c2,
        &pending("alice"),
        &[approval("bob")],
        &[bob_now],
        &actor("dan", false, &["dba"]),
        Decision::Approve,
        NOW,
    )
    .unwrap();
    assert_eq!(out, Outcome::StillPending);
}

#[test]
fn a_reviewer_added_to_the_group_counts_from_then_on() {
    let c = Connection { min_approvals: 2, ..conn(&["dba"]) };
    // bob approved as a member of dba; erin joined dba after the request was made.
    let bob = actor("bob", false, &["dba"]);
    let erin = actor("erin", false, &["dba"]);
    let out = review(&c, &pending("alice"), &[approval("bob")], &[bob], &erin, Decision::Approve, NOW).unwrap();
    assert!(matches!(out, Outcome::Approved { .. }));
}

#[test]
fn a_tightened_policy_applies_to_waiting_requests() {
    // Made when dba alone approved; security was added before bob's approval.
    let tightened = conn(&["dba", "security"]);
    let out = review(&tightened, &pending("alice"), &[], &[], &actor("bob", false, &["dba"]), Decision::Approve, NOW)
        .unwrap();
    assert_eq!(out, Outcome::StillPending);
}

#[test]
fn a_lowered_maximum_clamps_the_grant() {
    let c = Connection { max_duration: 3_600, default_duration: 3_600, ..conn(&["dba"]) };
    let out = review(&c, &pending("alice"), &[], &[], &actor("bob", false, &["dba"]), Decision::Approve, NOW).unwrap();
    assert_eq!(out, Outcome::Approved { approved_at: NOW, expires_at: NOW + 3_600_000, duration: 3_600 });
}

#[test]
fn wrong_state_is_a_conflict() {
    let err =
        review(&conn(&["dba"]), &approved("alice"), &[], &[], &actor("bob", false, &["dba"]), Decision::Approve, NOW)
            .unwrap_err();
    assert_eq!((err.status(), err.code()), (409, "wrong_state"));
    assert_eq!(
        act(&conn(&["dba"]), &approved("alice"), &actor("alice", false, &[]), Action::Cancel, NOW)
            .unwrap_err()
            .status(),
        409
    );
    assert_eq!(
        act(&conn(&["dba"]), &pending("alice"), &actor("alice", false, &[]), Action::End, NOW).unwrap_err().status(),
        409
    );
    assert_eq!(
        act(&conn(&["dba"]), &pending("alice"), &actor("root", true, &[]), Action::Revoke, NOW).unwrap_err().status(),
        409
    );
}

#[test]
fn who_may_cancel_end_and_revoke() {
    let c = conn(&["dba"]);
    assert_eq!(
        act(&c, &pending("alice"), &actor("alice", false, &[]), Action::Cancel, NOW).unwrap(),
        Status::Cancelled
    );
    assert_eq!(
        act(&c, &pending("alice"), &actor("bob", false, &["dba"]), Action::Cancel, NOW).unwrap_err().status(),
        403
    );
    assert_eq!(act(&c, &approved("alice"), &actor("alice", false, &[]), Action::End, NOW).unwrap(), Status::Executed);
    assert_eq!(act(&c, &approved("alice"), &actor("root", true, &[]), Action::End, NOW).unwrap_err().status(), 403);
    assert_eq!(
        act(&c, &approved("alice"), &actor("bob", false, &["dba"]), Action::Revoke, NOW).unwrap(),
        Status::Revoked
    );
    assert_eq!(act(&c, &approved("alice"), &actor("root", true, &[]), Action::Revoke, NOW).unwrap(), Status::Revoked);
    assert_eq!(
        act(&c, &approved("alice"), &actor("alice", false, &[]), Action::Revoke, NOW).unwrap_err().status(),
        403
    );
}

#[test]
fn expiry_ends_grants_and_stale_requests() {
    let grant = approved("alice");
    assert_eq!(expire(&grant, NOW + 7_199_999), None);
    assert_eq!(expire(&grant, NOW + 7_200_000), Some(Status::Executed));
    let waiting = pending("alice");
    assert_eq!(expire(&waiting, NOW + 86_400_000), Some(Status::Cancelled));
    assert_eq!(expire(&Request { status: Status::Rejected, ..waiting }, NOW * 2), None);
}

#[test]
fn a_grant_gives_access_until_its_expiry_and_only_while_approved() {
    let grant = approved("alice");
    assert_eq!(grant.live_until(NOW + 7_199_999), Some(NOW + 7_200_000));
    assert_eq!(grant.live_until(NOW + 7_200_000), None, "expired, recorded or not");
    assert_eq!(Request { status: Status::Revoked, ..grant }.live_until(NOW), None);
    assert_eq!(pending("alice").live_until(NOW), None);
}

#[test]
fn a_deadline_that_passed_counts_before_the_timer_records_it() {
    let c = conn(&["dba"]);
    let grant = approved("alice");
    let after = NOW + 7_200_000;
    let err = act(&c, &grant, &actor("root", true, &[]), Action::Revoke, after).unwrap_err();
    assert_eq!(err.to_string(), "request req_1 is EXECUTED: it cannot be revoked");
    let stale = pending("alice");
    let err =
        review(&c, &stale, &[], &[], &actor("bob", false, &["dba"]), Decision::Approve, NOW + 86_400_000).unwrap_err();
    assert_eq!(err.code(), "wrong_state");
}
