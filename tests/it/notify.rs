//! Notifications and approving from chat, against real receivers on loopback: a
//! webhook receiver that checks signatures, one that is down and comes back, a dead
//! one; Slack and Mattermost buttons, signed and forged; and a small SMTP server.

use crate::harness::{wait_until, Client, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// One HTTP request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A plain-HTTP receiver on loopback that records what it gets and answers `status`.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    status: Arc<AtomicU16>,
    /// The body of every answer ("ok" unless a test sets it).
    reply: Arc<Mutex<String>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A loopback port nobody listens on (yet).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::on(free_port())
    }

    fn on(port: u16) -> Receiver {
        let server = Arc::new(tiny_http::Server::http(("127.0.0.1", port)).unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let (got, status) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicU16::new(200)));
        let reply = Arc::new(Mutex::new("ok".to_string()));
        let thread = {
            let (server, got, status, reply) = (server.clone(), got.clone(), status.clone(), reply.clone());
            std::thread::spawn(move || {
                while let Ok(mut rq) = server.recv() {
                    let mut body = Vec::new();
                    rq.as_reader().read_to_end(&mut body).unwrap();
                    let headers =
                        rq.headers().iter().map(|h| (h.field.to_string(), h.value.as_str().to_string())).collect();
                    got.lock().unwrap().push(Got { path: rq.url().to_string(), headers, body });
                    let code = status.load(Ordering::SeqCst);
                    let answer = reply.lock().unwrap().clone();
                    let _ = rq.respond(tiny_http::Response::from_string(answer).with_status_code(code));
                }
            })
        };
        Receiver { addr, got, status, reply, server, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// How a webhook receiver checks a delivery: the HMAC of the raw body with the
/// shared secret, compared to `X-Jitgate-Signature` (constant-time in real code).
fn verify_webhook(g: &Got, secret: &str) -> Value {
    let expected = format!("sha256={}", hmac_hex(secret.as_bytes(), &[&g.body]));
    assert_eq!(g.header("x-jitgate-signature"), Some(expected.as_str()), "bad webhook signature");
    let body = g.json();
    assert_eq!(g.header("x-jitgate-delivery"), body["id"].as_str());
    assert!(g.header("x-jitgate-timestamp").unwrap().parse::<i64>().is_ok());
    body
}

fn config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("jitgate.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn events(r: &Receiver, secret: &str) -> Vec<(String, String)> {
    r.got()
        .iter()
        .map(|g| verify_webhook(g, secret))
        .map(|b| (b["event"].as_str().unwrap().to_string(), b["request"]["id"].as_str().unwrap().to_string()))
        .collect()
}

fn outbox_idle(s: &Server) -> bool {
    s.admin().get("/metrics").text.contains("jitgate_outbox_depth 0")
}

const SECRET: &str = "webhook-secret-0123456789";

#[test]
fn each_event_reaches_a_webhook_once_signed_and_only_for_its_connections() {
    let hook = Receiver::start();
    let other = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        &format!(
            "[[notify.webhook]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n[[notify.webhook]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nconnections = [\"crm\"]\n",
            hook.url("/hook"),
            other.url("/other")
        ),
    );
    let mut s = Server::start_with(&["--config", &cfg]);
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &[]);
    let bob = s.user("bob", &["dba"]);
    let id = alice.request("db", "1h").expect(201).id();
    bob.approve(&id).expect(200);
    alice.act(&id, "end").expect(200);
    wait_until("three events", LONG, || hook.count() >= 3);
    let want: Vec<(String, String)> = ["request.created", "request.approved", "request.executed"]
        .iter()
        .map(|e| (e.to_string(), id.clone()))
        .collect();
    assert_eq!(events(&hook, SECRET), want);
    let bodies: Vec<Value> = hook.got().iter().map(Got::json).collect();
    let ids: std::collections::BTreeSet<&str> = bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "every event has its own id");
    assert_eq!(bodies[0]["request"]["user"], "alice");
    assert!(bodies[0]["sent_at"].is_string());
    assert_eq!(other.count(), 0, "a sink limited to crm hears nothing of db");
    // A restart sends nothing again.
    s.restart();
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    assert_eq!(hook.count(), 3);
}

#[test]
fn a_receiver_that_was_down_gets_its_events_in_order_after_a_restart_once() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        &format!("[notify]\nretry_after = \"1s\"\n\n[[notify.webhook]]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\n"),
    );
    let mut s = Server::start_with(&["--config", &cfg]);
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &[]);
    let bob = s.user("bob", &["dba"]);
    let id = alice.request("db", "1h").expect(201).id();
    let admin = s.admin();
    let deliveries = || admin.get("/api/v1/outbox?sink=webhook").expect(200).body["items"].as_array().unwrap().clone();
    wait_until("a failed first attempt", LONG, || {
        deliveries().first().is_some_and(|d| d["attempts"].as_i64().unwrap() >= 1 && d["state"] == "pending")
    });
    bob.approve(&id).expect(200);
    wait_until("the second event queued", LONG, || deliveries().len() == 2);
    // Never a flood: the second waits behind the first, untried, while it is down.
    let queued = deliveries();
    assert_eq!(queued[0]["event"], "request.approved");
    assert_eq!(queued[0]["attempts"], 0);
    assert!(queued[1]["last_error"].as_str().is_some());
    s.stop();
    let hook = Receiver::on(port);
    s.restart();
    wait_until("both events after the restart", LONG, || hook.count() >= 2);
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    let want = vec![("request.created".to_string(), id.clone()), ("request.approved".to_string(), id.clone())];
    assert_eq!(events(&hook, SECRET), want);
}

#[test]
fn a_dead_notification_is_listed_and_counted() {
    let hook = Receiver::start();
    hook.status.store(500, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        &format!("[notify]\nmax_attempts = 2\nretry_after = \"1s\"\n\n[[notify.webhook]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n", hook.url("/")),
    );
    let s = Server::start_with(&["--config", &cfg]);
    s.connection("db", &["dba"], json!({}));
    let id = s.user("alice", &[]).request("db", "1h").expect(201).id();
    let admin = s.admin();
    wait_until("the delivery to die", LONG, || {
        admin.get("/api/v1/outbox?state=failed").body["items"].as_array().is_some_and(|a| a.len() == 1)
    });
    let dead = &admin.get("/api/v1/outbox?state=failed").body["items"][0];
    assert_eq!((dead["request_id"].as_str(), dead["sink"].as_str()), (Some(id.as_str()), Some("webhook:0")));
    assert_eq!(dead["attempts"], 2);
    assert!(dead["last_error"].as_str().unwrap().contains("500"), "{dead}");
    assert_eq!(hook.count(), 2);
    let metrics = admin.get("/metrics").text;
    assert!(metrics.contains("jitgate_outbox_dead 1"), "{metrics}");
    assert!(metrics.contains("jitgate_outbox_dead_by_sink{kind=\"webhook\"} 1"), "{metrics}");
    let failed = admin.get(&format!("/api/v1/audit?action=notify.failed&target={id}")).expect(200);
    assert_eq!(failed.body["items"].as_array().unwrap().len(), 1);
    admin.get("/api/v1/outbox?state=dead").expect(400);
    let carol = s.user("carol", &[]);
    carol.get("/api/v1/outbox").expect(403);

    // The receiver is fixed: the admin puts the dead delivery back in the queue.
    hook.status.store(200, Ordering::SeqCst);
    let event = dead["event_id"].as_str().unwrap().to_string();
    let retry = format!("/api/v1/outbox/{event}/retry");
    carol.post(&retry, json!({})).expect(403);
    admin.post("/api/v1/outbox/evt_999999/retry", json!({})).expect(404);
    admin.post(&retry, json!({"sink": "webhook:0", "colour": "red"})).expect(400);
    let back = admin.post(&retry, json!({})).expect(200);
    assert_eq!(back.body["requeued"], json!(["webhook:0"]));
    wait_until("the retried delivery", LONG, || hook.count() == 3);
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    assert_eq!(events(&hook, SECRET).last().map(|(e, _)| e.as_str()), Some("request.created"));
    assert!(admin.get("/metrics").text.contains("jitgate_outbox_dead 0"));
    let again = admin.post(&retry, json!({}));
    assert_eq!((again.status, again.code()), (409, "nothing_to_retry"));
    let audited = admin.get(&format!("/api/v1/audit?action=outbox.retried&target={event}")).expect(200);
    assert_eq!(audited.body["items"][0]["actor"], "admin");
}

#[test]
fn a_grant_is_warned_once_ten_minutes_before_it_expires() {
    let hook = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, &format!("[[notify.webhook]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n", hook.url("/")));
    let mut s = Server::start_with(&["--config", &cfg]);
    s.connection("open", &[], json!({}));
    let alice = s.user("alice", &[]);
    // 10m2s: the warning is due two seconds after approval.
    let id = alice.request("open", "10m2s").expect(201).id();
    let short = alice.request("open", "10m").expect(200).id();
    assert_eq!(short, id, "the live grant is reused");
    wait_until("the warning", LONG, || events(&hook, SECRET).iter().any(|(e, _)| e == "request.expiring"));
    let body = hook.got().iter().map(Got::json).find(|b| b["event"] == "request.expiring").unwrap();
    assert_eq!(body["request"]["id"], id.as_str());
    s.restart();
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    let names: Vec<String> = events(&hook, SECRET).into_iter().map(|(e, _)| e).collect();
    assert_eq!(names, vec!["request.created", "request.approved", "request.expiring"]);
}

// --- Slack -------------------------------------------------------------------

const SIGNING: &str = "slack-signing-secret-xyz";

fn slack_action(user: &str, action: &str, id: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user},
        "actions": [{"action_id": action, "value": id, "type": "button"}],
        "response_url": response_url,
        "nonce": jitgate::secret::random_id("n").unwrap(),
    });
    let mut body = String::from("payload=");
    for b in payload.to_string().bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            body.push(b as char);
        } else {
            body.push_str(&format!("%{b:02X}"));
        }
    }
    body
}

/// Posts a Slack action body with the given timestamp, signed with `secret`.
fn post_slack(s: &Server, body: &str, ts: i64, secret: &str) -> crate::harness::Resp {
    let sig = format!("v0={}", hmac_hex(secret.as_bytes(), &[format!("v0:{ts}:").as_bytes(), body.as_bytes()]));
    post_slack_signed(s, body, ts, &sig)
}

fn post_slack_signed(s: &Server, body: &str, ts: i64, sig: &str) -> crate::harness::Resp {
    let client: Client = s
        .anonymous()
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_header("X-Slack-Request-Timestamp", &ts.to_string())
        .with_header("X-Slack-Signature", sig);
    client.send("POST", "/api/v1/integrations/slack/actions", Some(body.as_bytes()))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn map(s: &Server, user: &str, field: &str, chat_id: &str) {
    s.admin().patch(&format!("/api/v1/users/{user}"), json!({ field: chat_id })).expect(200);
}

fn unchanged(s: &Server, id: &str) {
    let r = s.admin().show(id);
    assert_eq!(r["status"], "PENDING");
    assert!(r["reviews"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn a_signed_slack_click_approves_and_forgeries_change_nothing() {
    let chat = Receiver::start();
    let replies = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(&dir, &format!("[[notify.slack]]\nurl = \"{}\"\nsigning_secret = \"{SIGNING}\"\n", chat.url("/slack")));
    let s = Server::start_with(&["--config", &cfg]);
    s.connection("db", &["dba"], json!({}));
    s.connection("crm", &["sales"], json!({}));
    // alice is in dba too: what refuses her click is the self-review rule.
    let alice = s.user("alice", &["dba"]);
    s.user("bob", &["dba"]);
    s.user("carol", &["sales"]);
    s.user("dave", &["dba"]);
    map(&s, "alice", "slack_user_id", "UALICE");
    map(&s, "bob", "slack_user_id", "UBOB");
    map(&s, "carol", "slack_user_id", "UCAROL");
    // Only an admin maps chat identities; one identity, one user.
    alice.patch("/api/v1/users/alice", json!({"slack_user_id": "UBOB"})).expect(403);
    assert_eq!(
        s.admin().patch("/api/v1/users/dave", json!({"slack_user_id": "UBOB"})).expect(409).code(),
        "already_mapped"
    );
    let id = alice.request("db", "2h").expect(201).id();
    wait_until("the Slack message", LONG, || chat.count() >= 1);
    assert_eq!(chat.got()[0].path, "/slack");
    let msg = chat.got()[0].json();
    let text = msg.to_string();
    assert!(text.contains("alice asks for 2h on db") && text.contains("dba 0/1"), "{text}");
    assert!(text.contains("\"action_id\":\"approve\"") && text.contains(&format!("\"value\":\"{id}\"")), "{text}");
    let reply_url = replies.url("/response");
    let now = now_secs();

    let good = slack_action("UBOB", "approve", &id, &reply_url);
    assert_eq!(post_slack(&s, &good, now, "not-the-secret").expect(401).code(), "unauthenticated");
    post_slack_signed(&s, &good, now, "v0=00").expect(401);
    post_slack(&s, &slack_action("UBOB", "approve", &id, &reply_url), now - 600, SIGNING).expect(401);
    post_slack(&s, &slack_action("UNOBODY", "approve", &id, &reply_url), now, SIGNING).expect(403);
    post_slack(&s, &slack_action("UALICE", "approve", &id, &reply_url), now, SIGNING).expect(403);
    post_slack(&s, &slack_action("UCAROL", "approve", &id, &reply_url), now, SIGNING).expect(404);
    unchanged(&s, &id);

    let ok = post_slack(&s, &good, now, SIGNING).expect(200);
    assert_eq!(ok.body["request"]["status"], "APPROVED");
    let r = s.admin().show(&id);
    assert_eq!(r["reviews"][0]["reviewer"], "bob");
    // The same signed click again is a replay, refused before anything is read.
    assert!(post_slack(&s, &good, now, SIGNING).expect(401).text.contains("replay"));
    let via = s.admin().get(&format!("/api/v1/audit?action=chat.action&target={id}")).expect(200);
    assert_eq!(via.body["items"][0]["actor"], "bob");
    // The message is updated through response_url with the decision and who made it.
    wait_until("the message update", LONG, || replies.got().iter().any(|g| g.json()["replace_original"] == true));
    let update = replies.got().into_iter().find(|g| g.json()["replace_original"] == true).unwrap().json();
    assert!(update["text"].as_str().unwrap().contains("approve by bob"), "{update}");
    // The requester is told: the approval is posted with a mention of them.
    wait_until("the approval message", LONG, || chat.count() >= 2);
    let told = chat.got()[1].json().to_string();
    assert!(told.contains("<@UALICE>") && told.contains("approved by bob"), "{told}");
}

// --- Mattermost ----------------------------------------------------------------

const ACTION_SECRET: &str = "mattermost-action-secret";

fn mattermost_config(dir: &tempfile::TempDir, chat: &Receiver, allowed: &str) -> String {
    config(
        dir,
        &format!(
            "[[notify.slack]]\nurl = \"{}\"\nstyle = \"mattermost\"\n\n[notify.mattermost]\naction_secret = \"{ACTION_SECRET}\"\nallowed_sources = [\"{allowed}\"]\n",
            chat.url("/mm")
        ),
    )
}

/// The path and context of the first button of the first message.
fn button(chat: &Receiver, action: &str) -> (String, Value) {
    let msg = chat.got()[0].json();
    let b = msg["attachments"][0]["actions"].as_array().unwrap().iter().find(|b| b["id"] == action).unwrap().clone();
    let url = b["integration"]["url"].as_str().unwrap();
    let path = format!("/{}", url.splitn(4, '/').nth(3).unwrap());
    (path, b["integration"]["context"].clone())
}

fn click(s: &Server, path: &str, user: &str, context: &Value) -> crate::harness::Resp {
    s.anonymous().post(path, json!({"user_id": user, "channel_id": "c1", "post_id": "p1", "context": context}))
}

#[test]
fn a_mattermost_click_approves_and_forgeries_change_nothing() {
    let chat = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(&["--config", &mattermost_config(&dir, &chat, "127.0.0.1")]);
    s.connection("db", &["dba"], json!({}));
    s.connection("crm", &["sales"], json!({}));
    let alice = s.user("alice", &["dba"]);
    s.user("bob", &["dba"]);
    s.user("carol", &["sales"]);
    for (u, mm) in [("alice", "mmalice"), ("bob", "mmbob"), ("carol", "mmcarol")] {
        map(&s, u, "mattermost_user_id", mm);
    }
    let id = alice.request("db", "1h").expect(201).id();
    wait_until("the Mattermost message", LONG, || chat.count() >= 1);
    let (path, approve) = button(&chat, "approve");
    assert_eq!(path, "/api/v1/integrations/mattermost/actions");
    let (_, reject) = button(&chat, "reject");

    let mut forged = approve.clone();
    forged["action"] = json!("reject");
    assert!(click(&s, &path, "mmbob", &forged).expect(401).body["ephemeral_text"].is_string());
    let mut other = approve.clone();
    other["mac"] = reject["mac"].clone();
    click(&s, &path, "mmbob", &other).expect(401);
    click(&s, &path, "mmnobody", &approve).expect(403);
    click(&s, &path, "mmalice", &approve).expect(403);
    click(&s, &path, "mmcarol", &approve).expect(404);
    unchanged(&s, &id);

    let ok = click(&s, &path, "mmbob", &approve).expect(200);
    assert!(ok.body["update"]["message"].as_str().unwrap().contains("approve by bob"), "{}", ok.text);
    assert_eq!(s.admin().show(&id)["status"], "APPROVED");
    // Mattermost does not sign: a replayed click is refused by the review rules.
    assert_eq!(click(&s, &path, "mmbob", &approve).expect(409).code(), "wrong_state");
    assert_eq!(s.admin().show(&id)["reviews"].as_array().unwrap().len(), 1);
}

#[test]
fn mattermost_actions_come_only_from_allowed_addresses() {
    let chat = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(&["--config", &mattermost_config(&dir, &chat, "10.9.9.0/24")]);
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &[]);
    s.user("bob", &["dba"]);
    map(&s, "bob", "mattermost_user_id", "mmbob");
    let id = alice.request("db", "1h").expect(201).id();
    wait_until("the Mattermost message", LONG, || chat.count() >= 1);
    let (path, approve) = button(&chat, "approve");
    click(&s, &path, "mmbob", &approve).expect(403);
    unchanged(&s, &id);
}

// --- Email ---------------------------------------------------------------------

/// (recipients, message) of each mail the SMTP receiver got.
type Mails = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// A small SMTP server: records (recipients, message) per DATA.
fn smtp_receiver() -> (SocketAddr, Mails) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mails = kept.clone();
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut lines = BufReader::new(stream);
                let mut rcpt = Vec::new();
                out.write_all(b"220 test ESMTP\r\n").unwrap();
                let mut line = String::new();
                while lines.read_line(&mut line).unwrap_or(0) > 0 {
                    let cmd = line.trim_end().to_string();
                    line.clear();
                    let upper = cmd.to_ascii_uppercase();
                    if upper.starts_with("EHLO") {
                        out.write_all(b"250-test\r\n250 8BITMIME\r\n").unwrap();
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt.push(cmd[8..].trim_matches(|c| c == '<' || c == '>').to_string());
                        out.write_all(b"250 OK\r\n").unwrap();
                    } else if upper == "DATA" {
                        out.write_all(b"354 go\r\n").unwrap();
                        let mut msg = String::new();
                        loop {
                            let mut l = String::new();
                            lines.read_line(&mut l).unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            msg.push_str(&l);
                        }
                        mails.lock().unwrap().push((std::mem::take(&mut rcpt), msg));
                        out.write_all(b"250 queued\r\n").unwrap();
                    } else if upper == "QUIT" {
                        out.write_all(b"221 bye\r\n").unwrap();
                        break;
                    } else {
                        out.write_all(b"250 OK\r\n").unwrap();
                    }
                }
            });
        }
    });
    (addr, mails)
}

#[test]
fn email_goes_to_the_approvers_then_to_the_requester() {
    let (addr, mails) = smtp_receiver();
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(&dir, &format!("[notify.email]\nserver = \"{addr}\"\ntls = \"none\"\nfrom = \"jitgate@example.com\"\n"));
    let s = Server::start_with(&["--config", &cfg]);
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &["dba"]);
    let bob = s.user("bob", &["dba"]);
    s.user("carol", &["dba"]);
    alice.patch("/api/v1/users/alice", json!({"email": "alice@example.com"})).expect(200);
    bob.patch("/api/v1/users/bob", json!({"email": "bob@example.com"})).expect(200);
    assert_eq!(bob.patch("/api/v1/users/bob", json!({"email": "bob@x\r\nBcc: e@x"})).expect(400).code(), "bad_email");
    let id = alice.request("db", "2h").expect(201).id();
    wait_until("the approvers' email", LONG, || mails.lock().unwrap().len() == 1);
    bob.approve(&id).expect(200);
    wait_until("the requester's email", LONG, || mails.lock().unwrap().len() == 2);
    let mails = mails.lock().unwrap().clone();
    // The requester is in dba but never asked to approve their own request.
    assert_eq!(mails[0].0, vec!["bob@example.com"]);
    assert!(mails[0].1.contains("Subject: [jitgate] alice asks for 2h on db"), "{}", mails[0].1);
    assert!(mails[0].1.contains(&format!("/#/requests/{id}")));
    assert_eq!(mails[1].0, vec!["alice@example.com"]);
    assert!(mails[1].1.contains("was approved by bob"), "{}", mails[1].1);
}

#[test]
fn approvers_are_asked_and_the_requester_told_in_slack_dms() {
    let slack = Receiver::start();
    *slack.reply.lock().unwrap() = r#"{"ok": true, "channel": "D1", "ts": "1.2"}"#.into();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        &format!(
            "[notify]\nretry_after = \"1s\"\n\n[notify.slack_dm]\nbot_token = \"xoxb-test-token\"\nsigning_secret = \"{SIGNING}\"\napi_url = \"{}\"\n",
            slack.url("/api")
        ),
    );
    let s = Server::start_with(&["--config", &cfg]);
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &["dba"]);
    s.user("bob", &["dba"]);
    s.user("carol", &[]);
    s.user("dave", &["dba"]); // an approver without a Slack id: not messaged in Slack
    let erin = s.user("erin", &[]);
    map(&s, "alice", "slack_user_id", "UALICE");
    map(&s, "bob", "slack_user_id", "UBOB");
    map(&s, "carol", "slack_user_id", "UCAROL");
    // The receiver also takes the click's reply (Slack's response_url): count DMs only.
    let dms = || slack.got().into_iter().filter(|g| g.path == "/api/chat.postMessage").collect::<Vec<_>>();
    let dms_to = |who: &str| dms().iter().filter(|g| g.json()["channel"] == who).count();

    // A new request: its one approver with a Slack id is asked, with buttons; not the
    // requester (in dba too), not carol (no approver).
    let id = alice.request("db", "1h").expect(201).id();
    wait_until("the approver's DM", LONG, || slack.count() == 1);
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    assert_eq!(slack.count(), 1);
    let ask = &slack.got()[0];
    assert_eq!(ask.path, "/api/chat.postMessage");
    assert_eq!(ask.header("authorization"), Some("Bearer xoxb-test-token"));
    assert_eq!(ask.json()["channel"], "UBOB");
    let text = ask.json().to_string();
    assert!(text.contains("\"action_id\":\"approve\"") && text.contains(&format!("\"value\":\"{id}\"")), "{text}");

    // bob clicks Approve in his DM: the same signed endpoint decides; alice is told.
    let click = slack_action("UBOB", "approve", &id, &slack.url("/response"));
    assert_eq!(post_slack(&s, &click, now_secs(), SIGNING).expect(200).body["request"]["status"], "APPROVED");
    wait_until("the DM to the requester", LONG, || dms_to("UALICE") == 1);
    let told = slack.got().into_iter().find(|g| g.json()["channel"] == "UALICE").unwrap().json();
    let told = told["text"].as_str().unwrap().to_string();
    assert!(told.contains("approved by bob") && !told.contains("<@UALICE>"), "{told}");

    // erin has no Slack id: her approvers are asked, she is not told in Slack.
    let other = erin.request("db", "1h").expect(201).id();
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    assert_eq!((dms_to("UALICE"), dms_to("UBOB")), (2, 2), "alice and bob are asked about erin's request");
    s.admin().post(&format!("/api/v1/requests/{other}/approve"), json!({})).expect(200);
    wait_until("an idle outbox", LONG, || outbox_idle(&s));
    assert_eq!(dms().len(), 4);
    assert_eq!(dms_to("UCAROL"), 0);

    // A refusal from Slack (`ok: false` in a 200) is a failure, retried.
    *slack.reply.lock().unwrap() = r#"{"ok": false, "error": "channel_not_found"}"#.into();
    alice.post(&format!("/api/v1/requests/{id}/end"), json!({})).expect(200);
    wait_until("Slack's refusal on record", LONG, || {
        s.admin().get("/api/v1/outbox?sink=slack_dm&state=pending").body["items"][0]["last_error"]
            == "Slack refused: channel_not_found"
    });
}
