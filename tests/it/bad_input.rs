//! Junk at every write route: each answer is a 4xx with a JSON error, and the
//! database is exactly as it was.

use crate::harness::{raw_exchange, Server};
use serde_json::{json, Value};
use std::time::Duration;

/// Row counts of every table, and the audit events other than failed logins (a
/// failed login is recorded on purpose).
fn snapshot(s: &Server) -> Vec<(String, i64)> {
    let db = s.db();
    let tables = [
        "users",
        "groups",
        "group_members",
        "api_tokens",
        "web_sessions",
        "connections",
        "connection_groups",
        "requests",
        "reviews",
        "sessions",
    ];
    let mut out: Vec<(String, i64)> = tables
        .iter()
        .map(|t| (t.to_string(), db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap()))
        .collect();
    let statuses: i64 =
        db.query_row("SELECT count(*) FROM requests WHERE status = 'PENDING'", [], |r| r.get(0)).unwrap();
    out.push(("pending".into(), statuses));
    let audit: i64 =
        db.query_row("SELECT count(*) FROM audit_events WHERE action != 'login.failed'", [], |r| r.get(0)).unwrap();
    out.push(("audit".into(), audit));
    out
}

/// A write route, a body that would be valid, and which string fields are names
/// (where SQL-ish text must be refused too).
struct Target {
    method: &'static str,
    path: String,
    base: Value,
    names: &'static [&'static str],
}

fn junk_bodies(t: &Target) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"text\"".to_vec(),
        b"42".to_vec(),
        b"{\"a\":\xff\xfe}".to_vec(),
        b"\xef\xbb\xbf{}garbage".to_vec(),
        "[".repeat(100_000).into_bytes(),
        format!("{{\"x\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
    ];
    let Value::Object(base) = &t.base else { return out };
    let mut unknown = base.clone();
    unknown.insert("is_admin_override".into(), json!(true));
    out.push(Value::Object(unknown).to_string().into_bytes());
    for key in base.keys() {
        for wrong in [json!(12345), json!([1, 2]), json!({"a": 1}), json!(true), json!(-1.5)] {
            if base[key].is_boolean() && wrong.is_boolean() || base[key].is_array() && wrong.is_array() {
                continue;
            }
            let mut m = base.clone();
            m.insert(key.clone(), wrong);
            out.push(Value::Object(m).to_string().into_bytes());
        }
        let text = Value::Object(base.clone()).to_string();
        let dup = text.replacen('{', &format!("{{\"{key}\":{},", base[key]), 1);
        out.push(dup.into_bytes());
        if base[key].is_string() {
            let mut m = base.clone();
            m.insert(key.clone(), json!("x".repeat(100_000)));
            out.push(Value::Object(m).to_string().into_bytes());
            let mut m = base.clone();
            m.insert(key.clone(), json!("bad\u{0}nul"));
            out.push(Value::Object(m).to_string().into_bytes());
            if t.names.contains(&key.as_str()) {
                for sql in ["'; DROP TABLE users; --", "admin' OR '1'='1", "../../etc/passwd", "a b", ""] {
                    let mut m = base.clone();
                    m.insert(key.clone(), json!(sql));
                    out.push(Value::Object(m).to_string().into_bytes());
                }
            }
        }
    }
    out
}

#[test]
fn junk_at_every_write_route_is_a_4xx_and_changes_nothing() {
    let s = Server::start_with(&["--login-attempts-per-minute", "100000"]);
    s.connection("db", &["dba"], json!({"auto_approve_admins": false}));
    s.connection("open", &[], json!({}));
    s.user("alice", &["dba"]);
    let admin = s.admin();
    let pending = admin.request("db", "1h").expect(201).id();
    let approved = admin.request("open", "1h").expect(201).id();
    let targets = vec![
        Target {
            method: "POST",
            path: "/api/v1/login".into(),
            base: json!({"username": "admin", "password": "x"}),
            names: &[],
        },
        Target {
            method: "POST",
            path: "/api/v1/users".into(),
            base: json!({"username": "newbie", "admin": false, "display_name": "N"}),
            names: &["username"],
        },
        Target { method: "PATCH", path: "/api/v1/users/alice".into(), base: json!({"admin": false}), names: &[] },
        Target {
            method: "POST",
            path: "/api/v1/users/alice/tokens".into(),
            base: json!({"name": "ci", "expires_in": "1d"}),
            names: &["name", "expires_in"],
        },
        Target { method: "POST", path: "/api/v1/groups".into(), base: json!({"name": "ops"}), names: &["name"] },
        Target { method: "PUT", path: "/api/v1/groups/dba/members/admin".into(), base: json!({}), names: &[] },
        Target {
            method: "POST",
            path: "/api/v1/connections".into(),
            base: json!({"name": "new-db", "kind": "generic", "approval_groups": ["dba"], "min_approvals": 1, "max_duration": "8h", "require_reason": false}),
            names: &["name", "kind", "max_duration"],
        },
        Target {
            method: "PUT",
            path: "/api/v1/connections/db".into(),
            base: json!({"min_approvals": 1, "max_duration": "4h", "kind": "generic"}),
            names: &["max_duration", "kind"],
        },
        Target {
            method: "POST",
            path: "/api/v1/requests".into(),
            base: json!({"connection": "db", "duration": "1h", "reason": "x"}),
            names: &["connection", "duration"],
        },
        Target {
            method: "POST",
            path: format!("/api/v1/requests/{pending}/approve"),
            base: json!({"comment": "ok"}),
            names: &[],
        },
        Target {
            method: "POST",
            path: format!("/api/v1/requests/{pending}/reject"),
            base: json!({"reason": "no"}),
            names: &[],
        },
        Target {
            method: "POST",
            path: format!("/api/v1/requests/{pending}/cancel"),
            base: json!({"reason": "no"}),
            names: &[],
        },
        Target {
            method: "POST",
            path: format!("/api/v1/requests/{approved}/revoke"),
            base: json!({"reason": "no"}),
            names: &[],
        },
        Target {
            method: "POST",
            path: format!("/api/v1/requests/{approved}/end"),
            base: json!({"reason": "no"}),
            names: &[],
        },
        Target { method: "POST", path: "/api/v1/logout".into(), base: json!({}), names: &[] },
    ];
    let before = snapshot(&s);
    let mut sent = 0;
    for t in &targets {
        for body in junk_bodies(t) {
            let r = admin.send(t.method, &t.path, Some(&body));
            sent += 1;
            assert!(
                (400..500).contains(&r.status),
                "{} {} with {:?}: got {} {}",
                t.method,
                t.path,
                String::from_utf8_lossy(&body[..body.len().min(120)]),
                r.status,
                r.text
            );
            assert!(r.body["error"]["code"].is_string(), "{} {}: no JSON error: {}", t.method, t.path, r.text);
        }
    }
    assert!(sent > 200, "the corpus shrank to {sent}");
    assert_eq!(snapshot(&s), before, "junk changed the database");
    assert_eq!(admin.show(&pending)["status"], "PENDING");
    assert_eq!(admin.show(&approved)["status"], "APPROVED");
    assert_eq!(admin.get("/api/v1/audit/verify").expect(200).body["ok"], true);
}

#[test]
fn bad_paths_and_queries_are_4xx() {
    let s = Server::start();
    let admin = s.admin();
    for path in [
        "/api/v1/users/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/users/a%00b",
        "/api/v1/connections/%ff",
        "/api/v1/requests/req_nope",
        "/api/v1/requests?status=DONE",
        "/api/v1/requests?limit=0",
        "/api/v1/requests?limit=100000",
        "/api/v1/requests?cursor=abc",
        "/api/v1/requests?stauts=PENDING",
        "/api/v1/requests?status=PENDING&status=APPROVED",
        "/api/v1/nothing",
        "/api/v1/requests/x/wait?timeout=10m",
    ] {
        let r = admin.get(path);
        assert!((400..500).contains(&r.status), "{path}: {} {}", r.status, r.text);
        assert!(r.body["error"]["code"].is_string(), "{path}: {}", r.text);
    }
    let r = admin.send("DELETE", "/api/v1/requests", None).expect(405);
    assert!(r.header("allow").unwrap().contains("GET"));
}

#[test]
fn wrong_state_transitions_are_409() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &[]);
    let id = alice.request("db", "1h").expect(201).id();
    assert_eq!(s.admin().act(&id, "revoke").expect(409).code(), "wrong_state");
    assert_eq!(alice.act(&id, "end").expect(409).code(), "wrong_state");
}

#[test]
fn oversized_and_chunked_bodies_are_refused_by_the_listener() {
    let s = Server::start_with(&["--plain-http"]);
    let mut tcp = s.tcp();
    let head = format!(
        "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 2000000\r\n\r\n",
        s.admin_token
    );
    let answer = raw_exchange(&mut tcp, head.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"));
    let mut tcp = s.tcp();
    let chunked =
        "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert!(raw_exchange(&mut tcp, chunked.as_bytes(), Duration::from_secs(5)).starts_with("HTTP/1.1 411"));
    let mut tcp = s.tcp();
    let smuggle =
        "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(raw_exchange(&mut tcp, smuggle.as_bytes(), Duration::from_secs(5)).starts_with("HTTP/1.1 400"));
}
