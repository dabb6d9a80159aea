//! The authorization table: every route × every role, walked against the real
//! server. Roles: anonymous, the requester (alice), a reviewer of the request's
//! connection (bob, in dba), a reviewer of another connection (carol, in sales), and
//! an admin. State-changing rows get fresh objects for each role.

use crate::harness::{Client, Server};
use serde_json::{json, Value};
use std::cell::Cell;

struct Fix<'a> {
    s: &'a Server,
    n: Cell<usize>,
}

impl Fix<'_> {
    fn fresh(&self, prefix: &str) -> String {
        self.n.set(self.n.get() + 1);
        format!("{prefix}{}", self.n.get())
    }

    fn admin(&self) -> Client {
        self.s.admin()
    }

    fn alice(&self) -> Client {
        let minted = self.s.admin().post("/api/v1/users/alice/tokens", json!({"name": self.fresh("t")})).expect(201);
        self.s.client(Some(minted.body["token"].as_str().unwrap()))
    }

    /// A PENDING request of alice's on a new connection approved by dba.
    fn pending(&self) -> String {
        let conn = self.fresh("conn");
        self.s.connection(&conn, &["dba"], json!({}));
        self.alice().request(&conn, "1h").expect(201).id()
    }

    fn approved(&self) -> String {
        let id = self.pending();
        self.admin().approve(&id).expect(200);
        id
    }
}

type Make = fn(&Fix) -> (String, Option<Value>);

struct Row {
    method: &'static str,
    pattern: &'static str,
    /// anonymous, requester, reviewer, other reviewer, admin
    expect: [u16; 5],
    make: Make,
}

macro_rules! row {
    ($m:literal, $p:literal, $e:expr, $make:expr) => {
        Row { method: $m, pattern: $p, expect: $e, make: $make }
    };
}

fn table() -> Vec<Row> {
    vec![
        row!("GET", "/healthz", [200, 200, 200, 200, 200], |_| ("/healthz".into(), None)),
        row!("GET", "/", [200, 200, 200, 200, 200], |_| ("/".into(), None)),
        row!("GET", "/ui/{file}", [200, 200, 200, 200, 200], |_| ("/ui/app.js".into(), None)),
        row!("GET", "/metrics", [401, 403, 403, 403, 200], |_| ("/metrics".into(), None)),
        row!("GET", "/api/v1/openapi.json", [200, 200, 200, 200, 200], |_| ("/api/v1/openapi.json".into(), None)),
        row!("POST", "/api/v1/login", [200, 200, 200, 200, 200], |f| (
            "/api/v1/login".into(),
            Some(json!({"username": "admin", "password": f.s.admin_password}))
        )),
        row!("POST", "/api/v1/logout", [401, 200, 200, 200, 200], |_| ("/api/v1/logout".into(), Some(json!({})))),
        row!("GET", "/api/v1/me", [401, 200, 200, 200, 200], |_| ("/api/v1/me".into(), None)),
        row!("GET", "/api/v1/users", [401, 403, 403, 403, 200], |_| ("/api/v1/users".into(), None)),
        row!("POST", "/api/v1/users", [401, 403, 403, 403, 201], |f| (
            "/api/v1/users".into(),
            Some(json!({"username": f.fresh("u")}))
        )),
        row!("GET", "/api/v1/users/{name}", [401, 200, 403, 403, 200], |_| ("/api/v1/users/alice".into(), None)),
        row!("PATCH", "/api/v1/users/{name}", [401, 200, 403, 403, 200], |_| (
            "/api/v1/users/alice".into(),
            Some(json!({"display_name": "Alice"}))
        )),
        row!("DELETE", "/api/v1/users/{name}", [401, 403, 403, 403, 200], |f| {
            let victim = f.fresh("victim");
            f.admin().post("/api/v1/users", json!({"username": victim})).expect(201);
            (format!("/api/v1/users/{victim}"), None)
        }),
        row!("GET", "/api/v1/users/{name}/tokens", [401, 200, 403, 403, 200], |_| (
            "/api/v1/users/alice/tokens".into(),
            None
        )),
        row!("POST", "/api/v1/users/{name}/tokens", [401, 201, 403, 403, 201], |f| (
            "/api/v1/users/alice/tokens".into(),
            Some(json!({"name": f.fresh("tok")}))
        )),
        row!("GET", "/api/v1/users/{name}/tokens/{id}", [401, 200, 403, 403, 200], |f| {
            let t = f.admin().post("/api/v1/users/alice/tokens", json!({"name": f.fresh("tok")})).expect(201);
            (format!("/api/v1/users/alice/tokens/{}", t.id()), None)
        }),
        row!("DELETE", "/api/v1/users/{name}/tokens/{id}", [401, 200, 403, 403, 200], |f| {
            let t = f.admin().post("/api/v1/users/alice/tokens", json!({"name": f.fresh("tok")})).expect(201);
            (format!("/api/v1/users/alice/tokens/{}", t.id()), None)
        }),
        row!("GET", "/api/v1/groups", [401, 403, 403, 403, 200], |_| ("/api/v1/groups".into(), None)),
        row!("POST", "/api/v1/groups", [401, 403, 403, 403, 201], |f| (
            "/api/v1/groups".into(),
            Some(json!({"name": f.fresh("g")}))
        )),
        row!("GET", "/api/v1/groups/{name}", [401, 403, 403, 403, 200], |_| ("/api/v1/groups/dba".into(), None)),
        row!("DELETE", "/api/v1/groups/{name}", [401, 403, 403, 403, 200], |f| {
            let g = f.fresh("g");
            f.admin().post("/api/v1/groups", json!({"name": g})).expect(201);
            (format!("/api/v1/groups/{g}"), None)
        }),
        row!("PUT", "/api/v1/groups/{name}/members/{user}", [401, 403, 403, 403, 200], |f| {
            let g = f.fresh("g");
            f.admin().post("/api/v1/groups", json!({"name": g})).expect(201);
            (format!("/api/v1/groups/{g}/members/alice"), Some(json!({})))
        }),
        row!("DELETE", "/api/v1/groups/{name}/members/{user}", [401, 403, 403, 403, 200], |f| {
            let g = f.fresh("g");
            f.admin().post("/api/v1/groups", json!({"name": g})).expect(201);
            f.admin().put(&format!("/api/v1/groups/{g}/members/alice"), json!({})).expect(200);
            (format!("/api/v1/groups/{g}/members/alice"), None)
        }),
        row!("GET", "/api/v1/connections", [401, 200, 200, 200, 200], |_| ("/api/v1/connections".into(), None)),
        row!("POST", "/api/v1/connections", [401, 403, 403, 403, 201], |f| (
            "/api/v1/connections".into(),
            Some(json!({"name": f.fresh("c")}))
        )),
        row!("GET", "/api/v1/connections/{name}", [401, 200, 200, 200, 200], |_| (
            "/api/v1/connections/prod".into(),
            None
        )),
        row!("PUT", "/api/v1/connections/{name}", [401, 403, 403, 403, 200], |_| (
            "/api/v1/connections/prod".into(),
            Some(json!({"require_reason": false}))
        )),
        row!("DELETE", "/api/v1/connections/{name}", [401, 403, 403, 403, 200], |f| {
            let c = f.fresh("c");
            f.s.connection(&c, &[], json!({}));
            (format!("/api/v1/connections/{c}"), None)
        }),
        row!("GET", "/api/v1/requests", [401, 200, 200, 200, 200], |_| ("/api/v1/requests".into(), None)),
        row!("POST", "/api/v1/requests", [401, 201, 201, 201, 201], |f| {
            let c = f.fresh("c");
            f.s.connection(&c, &["dba"], json!({}));
            ("/api/v1/requests".into(), Some(json!({"connection": c})))
        }),
        row!("GET", "/api/v1/requests/{id}", [401, 200, 200, 404, 200], |f| (
            format!("/api/v1/requests/{}", f.pending()),
            None
        )),
        row!("GET", "/api/v1/requests/{id}/wait", [401, 200, 200, 404, 200], |f| (
            format!("/api/v1/requests/{}/wait?status=APPROVED&timeout=1s", f.pending()),
            None
        )),
        row!("POST", "/api/v1/requests/{id}/approve", [401, 403, 200, 404, 200], |f| (
            format!("/api/v1/requests/{}/approve", f.pending()),
            Some(json!({}))
        )),
        row!("POST", "/api/v1/requests/{id}/reject", [401, 403, 200, 404, 200], |f| (
            format!("/api/v1/requests/{}/reject", f.pending()),
            Some(json!({}))
        )),
        row!("POST", "/api/v1/requests/{id}/revoke", [401, 403, 200, 404, 200], |f| (
            format!("/api/v1/requests/{}/revoke", f.approved()),
            Some(json!({}))
        )),
        row!("POST", "/api/v1/requests/{id}/cancel", [401, 200, 403, 404, 403], |f| (
            format!("/api/v1/requests/{}/cancel", f.pending()),
            Some(json!({}))
        )),
        row!("POST", "/api/v1/requests/{id}/end", [401, 200, 403, 404, 403], |f| (
            format!("/api/v1/requests/{}/end", f.approved()),
            Some(json!({}))
        )),
        row!("GET", "/api/v1/sessions", [401, 200, 200, 200, 200], |_| ("/api/v1/sessions".into(), None)),
        row!("GET", "/api/v1/sessions/{id}", [401, 404, 404, 404, 404], |_| (
            "/api/v1/sessions/sess_0123456789".into(),
            None
        )),
        row!("POST", "/api/v1/sessions", [401, 201, 404, 404, 404], |f| (
            "/api/v1/sessions".into(),
            Some(json!({"request_id": f.approved()}))
        )),
        row!("POST", "/api/v1/sessions/{id}/end", [401, 200, 403, 404, 200], |f| {
            let session = f.alice().post("/api/v1/sessions", json!({"request_id": f.approved()})).expect(201);
            (format!("/api/v1/sessions/{}/end", session.id()), Some(json!({})))
        }),
        row!("GET", "/api/v1/audit", [401, 403, 403, 403, 200], |_| ("/api/v1/audit".into(), None)),
        row!("GET", "/api/v1/audit/verify", [401, 403, 403, 403, 200], |_| ("/api/v1/audit/verify".into(), None)),
        row!("GET", "/api/v1/access/check", [401, 403, 403, 403, 200], |_| (
            "/api/v1/access/check?user=alice&connection=granted".into(),
            None
        )),
        row!("GET", "/api/v1/outbox", [401, 403, 403, 403, 200], |_| ("/api/v1/outbox?state=failed".into(), None)),
        // No event to retry: the admin gets past authorization to a 404.
        row!("POST", "/api/v1/outbox/{id}/retry", [401, 403, 403, 403, 404], |_| (
            "/api/v1/outbox/evt_999999/retry".into(),
            Some(json!({}))
        )),
        // Public routes that authenticate by the chat's own proof; with no [notify]
        // chat configured here they do not exist for anyone (tests/it/notify.rs has
        // the signed stories).
        row!("POST", "/api/v1/integrations/slack/actions", [404, 404, 404, 404, 404], |_| (
            "/api/v1/integrations/slack/actions".into(),
            Some(json!({}))
        )),
        row!("POST", "/api/v1/integrations/mattermost/actions", [404, 404, 404, 404, 404], |_| (
            "/api/v1/integrations/mattermost/actions".into(),
            Some(json!({}))
        )),
    ]
}

#[test]
fn every_route_for_every_role() {
    let s = Server::start();
    s.connection("prod", &["dba"], json!({}));
    s.connection("crm", &["sales"], json!({}));
    s.connection("granted", &[], json!({}));
    let alice = s.user("alice", &[]);
    let bob = s.user("bob", &["dba"]);
    let carol = s.user("carol", &["sales"]);
    alice.request("granted", "8h").expect(201);
    let roles: [(&str, Client); 5] = [
        ("anonymous", s.anonymous()),
        ("requester", alice),
        ("reviewer", bob),
        ("other reviewer", carol),
        ("admin", s.admin()),
    ];
    let fix = Fix { s: &s, n: Cell::new(0) };
    let rows = table();
    for route in jitgate::server::routes::ROUTES {
        assert!(
            rows.iter().any(|r| r.method == route.method && r.pattern == route.pattern),
            "no authorization row for {} {}",
            route.method,
            route.pattern
        );
    }
    let mut failures = Vec::new();
    for row in &rows {
        for (i, (role, client)) in roles.iter().enumerate() {
            let (path, body) = (row.make)(&fix);
            let bytes = body.map(|b| b.to_string());
            let got = client.send(row.method, &path, bytes.as_deref().map(str::as_bytes));
            if got.status != row.expect[i] {
                failures.push(format!(
                    "{} {} as {role}: expected {}, got {} {}",
                    row.method, row.pattern, row.expect[i], got.status, got.text
                ));
            }
            if got.status >= 400 {
                assert!(
                    got.body["error"]["code"].is_string() || got.body["allowed"] == false,
                    "{} {}: error without a JSON body: {}",
                    row.method,
                    path,
                    got.text
                );
            }
        }
    }
    assert!(failures.is_empty(), "authorization table mismatches:\n{}", failures.join("\n"));
}

#[test]
fn scoped_tokens_reach_only_their_route() {
    let s = Server::start();
    s.connection("db", &[], json!({}));
    let alice = s.user("alice", &[]);
    alice.request("db", "1h").expect(201);
    let admin = s.admin();
    let check = admin.post("/api/v1/users/admin/tokens", json!({"name": "proxy", "scope": "check"})).expect(201).body
        ["token"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics =
        admin.post("/api/v1/users/admin/tokens", json!({"name": "prom", "scope": "metrics"})).expect(201).body["token"]
            .as_str()
            .unwrap()
            .to_string();
    let check = s.client(Some(&check));
    let allowed = check.get("/api/v1/access/check?user=alice&connection=db").expect(200);
    assert_eq!(allowed.body["allowed"], true);
    assert_eq!(check.get("/api/v1/access/check?user=bob&connection=db").expect(403).body["allowed"], false);
    check.get("/api/v1/me").expect(403);
    check.get("/metrics").expect(403);
    let metrics = s.client(Some(&metrics));
    assert!(metrics.get("/metrics").expect(200).text.contains("jitgate_requests{status=\"APPROVED\"} 1"));
    metrics.get("/api/v1/requests").expect(403);
    // A user may not mint scoped tokens for themselves.
    alice.post("/api/v1/users/alice/tokens", json!({"name": "x", "scope": "check"})).expect(403);
}

#[test]
fn cookie_sessions_need_the_csrf_token_to_change_anything() {
    let s = Server::start();
    s.connection("db", &[], json!({}));
    let login =
        s.anonymous().post("/api/v1/login", json!({"username": "admin", "password": s.admin_password})).expect(200);
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let csrf = login.body["csrf_token"].as_str().unwrap().to_string();
    let browser = s.anonymous().with_header("Cookie", &cookie);
    assert_eq!(browser.get("/api/v1/me").expect(200).body["username"], "admin");
    assert_eq!(browser.request("db", "1h").expect(403).code(), "forbidden");
    let wrong = s.anonymous().with_header("Cookie", &cookie).with_header("X-CSRF-Token", "0000");
    wrong.request("db", "1h").expect(403);
    let good = s.anonymous().with_header("Cookie", &cookie).with_header("X-CSRF-Token", &csrf);
    good.request("db", "1h").expect(201);
    good.post("/api/v1/logout", json!({})).expect(200);
    let after = browser.get("/api/v1/me").expect(401);
    assert!(after.header("www-authenticate").unwrap().starts_with("Bearer"));
}

#[test]
fn login_is_rate_limited_per_address_and_failures_are_audited() {
    let s = Server::start_with(&["--login-attempts-per-minute", "3"]);
    let anon = s.anonymous();
    for _ in 0..3 {
        anon.post("/api/v1/login", json!({"username": "admin", "password": "wrong-password-xyz"})).expect(401);
    }
    let limited = anon.post("/api/v1/login", json!({"username": "admin", "password": s.admin_password})).expect(429);
    assert!(limited.header("retry-after").is_some());
    let failed = s.admin().get("/api/v1/audit?action=login.failed").expect(200);
    assert_eq!(failed.body["items"].as_array().unwrap().len(), 3);
}
