//! kill -9 in the middle of a burst of approvals: nothing acknowledged is lost and
//! nothing is half-written.

use crate::harness::Server;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn a_crash_mid_burst_loses_no_acknowledged_approval() {
    let mut s = Server::start();
    let alice = s.user("alice", &[]);
    s.admin().post("/api/v1/groups", json!({"name": "dba"})).expect(201);
    let bob = s.user("bob", &["dba"]);
    let mut ids = Vec::new();
    for i in 0..160 {
        s.connection(&format!("db{i}"), &["dba"], json!({}));
        ids.push(alice.request(&format!("db{i}"), "8h").expect(201).id());
    }
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(Mutex::new(ids.clone()));
    let token = s.admin().post("/api/v1/users/bob/tokens", json!({"name": "burst"})).expect(201).body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = bob;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (acked, count, queue) = (acked.clone(), count.clone(), queue.clone());
            let client = s.client(Some(&token));
            std::thread::spawn(move || loop {
                let Some(id) = queue.lock().unwrap().pop() else { return };
                match client.try_send("POST", &format!("/api/v1/requests/{id}/approve"), Some(b"{}")) {
                    Ok(r) if r.status == 200 && r.body["status"] == "APPROVED" => {
                        acked.lock().unwrap().push(id);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("approval refused: {} {}", r.status, r.text),
                    Err(_) => return, // the server is gone
                }
            })
        })
        .collect();
    crate::harness::wait_until("some approvals", std::time::Duration::from_secs(60), || {
        count.load(Ordering::SeqCst) >= 40
    });
    s.kill9();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 40 && acked.len() < ids.len(),
        "the crash must land mid-burst ({} acknowledged)",
        acked.len()
    );
    s.restart();
    for id in &acked {
        assert_eq!(s.admin().show(id)["status"], "APPROVED", "{id} was acknowledged, then lost");
    }
    let db = s.db();
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    // Every approval has exactly its review and its two audit events; no request is
    // approved without them, none has a review without its status change.
    let approved: i64 =
        db.query_row("SELECT count(*) FROM requests WHERE status = 'APPROVED'", [], |r| r.get(0)).unwrap();
    let reviews: i64 = db.query_row("SELECT count(*) FROM reviews", [], |r| r.get(0)).unwrap();
    let review_events: i64 =
        db.query_row("SELECT count(*) FROM audit_events WHERE action = 'review.approved'", [], |r| r.get(0)).unwrap();
    let approve_events: i64 =
        db.query_row("SELECT count(*) FROM audit_events WHERE action = 'request.approved'", [], |r| r.get(0)).unwrap();
    assert!(approved >= acked.len() as i64);
    assert_eq!((reviews, review_events, approve_events), (approved, approved, approved));
    assert_eq!(s.admin().get("/api/v1/audit/verify").expect(200).body["ok"], true);
}
