//! Abuse cases found in review, each pinned by a test.

use crate::harness::{raw_exchange, wait_until, Server};
use serde_json::json;
use std::io::Write;
use std::time::Duration;

#[test]
fn a_cross_site_form_cannot_post_json_as_text() {
    let s = Server::start();
    let body = json!({"username": "admin", "password": s.admin_password}).to_string();
    let r =
        s.anonymous().with_header("Content-Type", "text/plain").send("POST", "/api/v1/login", Some(body.as_bytes()));
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"), "{}", r.text);
}

#[test]
fn one_admin_cannot_mint_tokens_to_act_as_people() {
    let s = Server::start();
    let admin = s.admin();
    admin.post("/api/v1/users", json!({"username": "bob", "password": "bob-long-password-1"})).expect(201);
    let refused = admin.post("/api/v1/users/bob/tokens", json!({"name": "imp"})).expect(403);
    assert!(refused.text.contains("mint their own"), "{}", refused.text);
    // Service accounts (no password) and scoped tokens stay possible.
    admin.post("/api/v1/users", json!({"username": "svc-ci"})).expect(201);
    admin.post("/api/v1/users/svc-ci/tokens", json!({"name": "ci"})).expect(201);
    admin.post("/api/v1/users/bob/tokens", json!({"name": "probe", "scope": "check"})).expect(201);
}

#[test]
fn a_token_never_outlives_the_token_that_made_it() {
    let s = Server::start();
    let alice = s.user("alice", &[]);
    let short = s.admin().post("/api/v1/users/alice/tokens", json!({"name": "short", "expires_in": "1h"})).expect(201);
    let limit = short.body["expires_at"].as_str().unwrap().to_string();
    let short = s.client(Some(short.body["token"].as_str().unwrap()));
    let child = short.post("/api/v1/users/alice/tokens", json!({"name": "forever"})).expect(201);
    assert_eq!(child.body["expires_at"], limit.as_str());
    let _ = alice;
}

#[test]
fn an_admin_password_reset_revokes_the_users_tokens() {
    let s = Server::start();
    let admin = s.admin();
    admin.post("/api/v1/users", json!({"username": "carol"})).expect(201);
    let token = admin.post("/api/v1/users/carol/tokens", json!({"name": "laptop"})).expect(201).body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let carol = s.client(Some(&token));
    carol.get("/api/v1/me").expect(200);
    admin.patch("/api/v1/users/carol", json!({"password": "a-fresh-password-2"})).expect(200);
    carol.get("/api/v1/me").expect(401);
}

#[test]
fn audit_actor_names_cannot_be_taken_by_users() {
    let s = Server::start();
    for name in ["system", "anonymous", "System"] {
        assert_eq!(s.admin().post("/api/v1/users", json!({"username": name})).expect(400).code(), "reserved_name");
    }
    s.anonymous().post("/api/v1/login", json!({"username": "admin", "password": "wrong-password-9"})).expect(401);
    let failed = s.admin().get("/api/v1/audit?action=login.failed").expect(200);
    assert_eq!(failed.body["items"][0]["actor"], "anonymous");
    assert_eq!(failed.body["items"][0]["detail"]["username"], "admin");
}

#[test]
fn behind_a_proxy_the_forwarded_client_is_rate_limited_not_the_proxy() {
    let s = Server::start_with(&["--plain-http", "--behind-proxy", "--login-attempts-per-minute", "2"]);
    let attacker = s.anonymous().with_header("X-Forwarded-For", "198.51.100.7");
    for _ in 0..2 {
        attacker.post("/api/v1/login", json!({"username": "nobody-1", "password": "wrong-password-1"})).expect(401);
    }
    attacker.post("/api/v1/login", json!({"username": "nobody-2", "password": "wrong-password-1"})).expect(429);
    let admin = s.anonymous().with_header("X-Forwarded-For", "198.51.100.8");
    admin.post("/api/v1/login", json!({"username": "admin", "password": s.admin_password})).expect(200);
}

#[test]
fn promised_bodies_that_never_come_do_not_cost_memory() {
    let s = Server::start_with(&["--plain-http", "--body-timeout", "5s"]);
    let before = s.rss_kib();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut t = s.tcp();
        t.write_all(b"POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{").unwrap();
        held.push(t);
    }
    wait_until("the heads to be read", Duration::from_secs(10), || {
        s.admin().get("/metrics").text.contains("jitgate_connections_open 10")
    });
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 24 * 1024, "100 promised 1 MiB bodies grew RSS by {grown} KiB");
    drop(held);
}

#[test]
fn non_ascii_header_values_are_a_clean_400() {
    let s = Server::start_with(&["--plain-http"]);
    let mut t = s.tcp();
    let answer =
        raw_exchange(&mut t, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\r\n\r\n", Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
