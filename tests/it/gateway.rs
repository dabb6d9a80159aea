//! The tunnel gateway through the real binaries: `jitgate connect` on one side, a
//! real target (a TCP echo server, a real PostgreSQL) on the other, cut-offs timed.

use crate::harness::{wait_until, Server, BIN};
use jitgate::gateway::client::Dialer;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A TCP echo server on a free loopback port.
fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 65536];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn fingerprint(s: &Server) -> String {
    let pem = std::fs::read(s.data_dir().join("tls-cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
    jitgate::tls::fingerprint(der.as_ref())
}

fn mint(s: &Server, user: &str) -> String {
    let name = format!("t{}", jitgate::secret::random_id("x").unwrap());
    s.admin().post(&format!("/api/v1/users/{user}/tokens"), json!({"name": name})).expect(201).body["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `jitgate connect` running as a child, its stdout lines on a channel.
struct Connect {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Connect {
    fn start(s: &Server, token: &str, args: &[&str]) -> Connect {
        let cfg = s.dir.path().join("no-profile.toml");
        let mut child = Command::new(BIN)
            .arg("connect")
            .args(args)
            .env("JITGATE_SERVER", s.url(""))
            .env("JITGATE_TOKEN", token)
            .env("JITGATE_FINGERPRINT", fingerprint(s))
            .env("JITGATE_CONFIG", cfg)
            .env_remove("JITGATE_CA_CERT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        for pipe in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Connect { child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing `needle`; returns it.
    fn line(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while let Ok(l) = self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
            self.seen.push(l.clone());
            if l.contains(needle) {
                return l;
            }
        }
        panic!("no line with {needle:?}; got {:?}", self.seen);
    }

    /// The local port from "Listening on 127.0.0.1:PORT for …".
    fn port(&mut self) -> u16 {
        let l = self.line("Listening on 127.0.0.1:");
        l.split("127.0.0.1:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    }

    fn exit_code(&mut self) -> i32 {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < end, "connect did not exit; lines {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long until the server closes this (idle) stream.
fn time_to_close(stream: &mut TcpStream) -> Duration {
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => continue,
        }
    }
}

fn echo_once(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

#[test]
fn tcp_streams_relay_and_are_cut_within_a_second_of_revoke() {
    let s = Server::start();
    s.connection("echo", &["dba"], json!({"kind": "tcp", "target": echo_server()}));
    s.user("alice", &[]);
    let bob = s.user("bob", &["dba"]);
    let mut c = Connect::start(&s, &mint(&s, "alice"), &["echo", "--duration", "1h", "--port", "0"]);
    c.line("waiting for access request to be approved");
    let id = s.admin().get("/api/v1/requests?status=PENDING").body["items"][0]["id"].as_str().unwrap().to_string();
    bob.approve(&id).expect(200);
    let port = c.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo_once(&mut stream, b"hello through the tunnel\n");
    let big = vec![7u8; 3 << 20];
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let writer = {
        let mut w = second.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || w.write_all(&big).unwrap())
    };
    let mut back = vec![0u8; big.len()];
    second.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == big, "3 MiB came back changed");
    bob.post(&format!("/api/v1/requests/{id}/revoke"), json!({"reason": "incident closed"})).expect(200);
    let took = time_to_close(&mut stream);
    assert!(took < Duration::from_secs(1), "the stream outlived the revoke by {took:?}");
    assert_eq!(c.exit_code(), 5);
    assert!(c.line("revoked by bob").contains("incident closed"));
    // No new stream on a revoked grant.
    if let Ok(mut late) = TcpStream::connect(("127.0.0.1", port)) {
        assert!(time_to_close(&mut late) < Duration::from_secs(5));
    }
    let sessions = s.admin().get("/api/v1/sessions").expect(200);
    let sid = sessions.body["items"][0]["id"].as_str().unwrap().to_string();
    let session = s.admin().get(&format!("/api/v1/sessions/{sid}")).expect(200).body;
    let streams = session["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    assert!(streams.iter().any(|st| st["end_reason"].as_str().unwrap().starts_with("grant revoked by bob")));
    assert!(streams.iter().any(|st| st["bytes_up"].as_i64().unwrap() >= 3 << 20));
}

#[test]
fn a_stream_opened_near_expiry_lives_only_the_time_left() {
    let s = Server::start();
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    s.user("alice", &[]);
    let mut c = Connect::start(&s, &mint(&s, "alice"), &["echo", "--duration", "3s", "--port", "0"]);
    let port = c.port();
    let grant = s.admin().get("/api/v1/requests?status=APPROVED").body["items"][0].clone();
    let expires = chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap()).unwrap();
    let left = || (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    wait_until("one second left", Duration::from_secs(5), || left() <= 1_200);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo_once(&mut stream, b"ping");
    let lived = time_to_close(&mut stream);
    assert!(lived < Duration::from_millis(2_200), "a stream opened with ~1 s left lived {lived:?}");
    assert_eq!(c.exit_code(), 0);
    c.line("Access expired.");
}

#[test]
fn tunnels_are_refused_for_grants_that_are_not_yours_or_not_live() {
    let s = Server::start();
    s.connection("echo", &["dba"], json!({"kind": "tcp", "target": echo_server()}));
    s.connection("wiki", &[], json!({}));
    let alice = s.user("alice", &[]);
    s.user("bob", &["dba"]);
    let id = alice.request("echo", "1h").expect(201).id();
    let pem = std::fs::read(s.data_dir().join("tls-cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
    let tls = jitgate::tls::pinned_client_config(
        jitgate::tls::normalize_fingerprint(&jitgate::tls::fingerprint(der.as_ref())).unwrap(),
    )
    .unwrap();
    let dial = |token: String| Dialer { server: s.url(""), tls: Some(tls.clone()), token };
    let code = |r: Result<_, jitgate::Error>| match r {
        Err(jitgate::Error::Remote { status, .. }) => status,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    // Pending: not a live grant.
    assert_eq!(code(dial(mint(&s, "alice")).open(&id, "sess_x")), 409);
    s.admin().approve(&id).expect(200);
    // Someone else's grant is as good as absent.
    assert_eq!(code(dial(mint(&s, "bob")).open(&id, "sess_x")), 404);
    // The owner still needs a live session of that grant.
    assert_eq!(code(dial(mint(&s, "alice")).open(&id, "sess_nope")), 409);
    let session = alice.post("/api/v1/sessions", json!({"request_id": id})).expect(201).id();
    assert_eq!(code(dial(mint(&s, "alice")).open(&id, &session)), 101);
    assert_eq!(code(dial("jg_wrong".into()).open(&id, &session)), 401);
    // A generic connection has nothing to tunnel to.
    let wiki = alice.request("wiki", "1h").expect(201).id();
    let wiki_session = alice.post("/api/v1/sessions", json!({"request_id": wiki})).expect(201).id();
    assert_eq!(code(dial(mint(&s, "alice")).open(&wiki, &wiki_session)), 400);
}

#[test]
fn a_server_restart_closes_streams_and_they_need_a_live_grant_to_return() {
    let mut s = Server::start();
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    s.user("alice", &[]);
    let mut c = Connect::start(&s, &mint(&s, "alice"), &["echo", "--duration", "1h", "--port", "0"]);
    let port = c.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo_once(&mut stream, b"before");
    let status = s.stop();
    assert!(status.success());
    assert!(time_to_close(&mut stream) < Duration::from_secs(5));
    s.restart();
    let grant = s.admin().get("/api/v1/requests?status=APPROVED").body["items"][0]["id"].as_str().unwrap().to_string();
    s.admin().post(&format!("/api/v1/requests/{grant}/revoke"), json!({})).expect(200);
    // The old connect process points at the old port; a fresh tunnel must be refused.
    let alice_session = s.admin().get("/api/v1/sessions").body["items"][0]["id"].as_str().unwrap().to_string();
    let pem = std::fs::read(s.data_dir().join("tls-cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
    let tls = jitgate::tls::pinned_client_config(
        jitgate::tls::normalize_fingerprint(&jitgate::tls::fingerprint(der.as_ref())).unwrap(),
    )
    .unwrap();
    let refused = Dialer { server: s.url(""), tls: Some(tls), token: mint(&s, "alice") }.open(&grant, &alice_session);
    assert!(matches!(refused, Err(jitgate::Error::Remote { status: 409, .. })), "{:?}", refused.err());
    drop(c);
}

/// The PostgreSQL from scripts/test.sh (`JITGATE_TEST_PG=host:port`, user postgres,
/// trust auth), or `None` (skipped) when run without it.
pub fn postgres() -> Option<String> {
    match std::env::var("JITGATE_TEST_PG") {
        Ok(v) => Some(v),
        Err(_) if std::env::var("JITGATE_REQUIRE_PG").as_deref() == Ok("1") => panic!("JITGATE_TEST_PG is not set"),
        Err(_) => {
            eprintln!("skipped: no PostgreSQL (scripts/test.sh starts one)");
            None
        }
    }
}

fn psql(port: u16, sql: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.arg(format!("host=127.0.0.1 port={port} sslmode=prefer user=postgres dbname=postgres connect_timeout=10"))
        .args(["-X", "-A", "-t", "-c", sql])
        .env_remove("PGPASSWORD");
    cmd
}

#[test]
fn psql_through_connect_is_recorded_and_cut_by_revoke() {
    let Some(pg) = postgres() else { return };
    let s = Server::start();
    s.connection("prod-pg", &["dba"], json!({"kind": "postgres", "target": pg}));
    s.user("alice", &[]);
    let bob = s.user("bob", &["dba"]);
    let mut c =
        Connect::start(&s, &mint(&s, "alice"), &["prod-pg", "--duration", "1h", "--port", "0", "--reason", "INC-7"]);
    c.line("waiting for access request");
    let id = s.admin().get("/api/v1/requests?status=PENDING").body["items"][0]["id"].as_str().unwrap().to_string();
    bob.approve(&id).expect(200);
    let port = c.port();
    c.line("psql");
    // sslmode=prefer: the gateway answers SSLRequest with N, so the SQL is visible.
    let out = psql(port, "select 40 + 2 as answer").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let out = psql(port, "select 'hidden\u{1b}[2J' as clear_screen").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = psql(port, "select 'first of two'").args(["-c", "select 'second of two'"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut long = psql(port, "select pg_sleep(60)").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until("pg_sleep to be running", Duration::from_secs(20), || {
        let sid = s.admin().get("/api/v1/sessions").body["items"][0]["id"].as_str().unwrap_or("").to_string();
        s.admin().get(&format!("/api/v1/sessions/{sid}")).text.contains("pg_sleep(60)")
    });
    let revoked = Instant::now();
    bob.post(&format!("/api/v1/requests/{id}/revoke"), json!({"reason": "enough"})).expect(200);
    wait_until("psql to die", Duration::from_secs(5), || long.try_wait().unwrap().is_some());
    assert!(revoked.elapsed() < Duration::from_secs(1), "psql outlived the revoke by {:?}", revoked.elapsed());
    let sid = s.admin().get("/api/v1/sessions").body["items"][0]["id"].as_str().unwrap().to_string();
    let session = s.admin().get(&format!("/api/v1/sessions/{sid}")).expect(200).body;
    let queries: Vec<String> = session["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| st["queries"].as_array().unwrap().iter().map(|q| q["sql"].as_str().unwrap().to_string()))
        .collect();
    assert!(queries.iter().any(|q| q == "select 40 + 2 as answer"), "{queries:?}");
    assert!(queries.iter().any(|q| q == "select pg_sleep(60)"), "{queries:?}");
    assert_eq!(c.exit_code(), 5);
    // The same, for people: the CLI shows the streams and their SQL, and a statement
    // carrying terminal escapes reaches the reader's terminal defanged.
    let (code, shown) = cli(&s, &mint(&s, "alice"), &["sessions", "show", &sid]);
    assert_eq!(code, 0, "{shown}");
    for needle in ["select 40 + 2 as answer", "select pg_sleep(60)", "grant revoked by bob: enough", "B up"] {
        assert!(shown.contains(needle), "{needle:?} not in:\n{shown}");
    }
    assert!(shown.contains("select 'hidden\u{fffd}[2J'"), "the statement, defanged:\n{shown}");
    assert!(!shown.contains('\u{1b}'), "an escape in the output:\n{shown}");
    let (_, newest) = cli(&s, &mint(&s, "alice"), &["sessions", "show", &sid, "--queries", "1"]);
    assert!(newest.contains("(the newest 1 of 2 statements)"), "{newest}");
    assert!(newest.contains("second of two") && !newest.contains("first of two"), "{newest}");
    let streams = session["streams"].as_array().unwrap();
    assert!(streams.iter().any(|st| st["queries_total"] == 2), "{session}");
    let (_, listed) = cli(&s, &mint(&s, "admin"), &["sessions", "list"]);
    assert!(listed.contains(&sid) && listed.contains("prod-pg"), "{listed}");
}

/// Runs a `jitgate` command against `s` with `token`; returns the exit code and
/// stdout + stderr.
fn cli(s: &Server, token: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("JITGATE_SERVER", s.url(""))
        .env("JITGATE_TOKEN", token)
        .env("JITGATE_FINGERPRINT", fingerprint(s))
        .env("JITGATE_CONFIG", s.dir.path().join("no-profile.toml"))
        .env_remove("JITGATE_CA_CERT")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn open_sessions_are_bounded_per_grant_and_ending_one_frees_a_place() {
    assert_eq!(jitgate::store::sessions::MAX_OPEN_PER_GRANT, 16, "the default the docs give");
    let s = Server::start_with(&["--max-sessions-per-grant", "3"]);
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    let alice = s.user("alice", &[]);
    let id = alice.request("echo", "1h").expect(201).id();
    let sessions: Vec<String> =
        (0..3).map(|_| alice.post("/api/v1/sessions", json!({"request_id": id})).expect(201).id()).collect();
    let over = alice.post("/api/v1/sessions", json!({"request_id": id}));
    assert_eq!((over.status, over.code()), (409, "too_many_sessions"), "{}", over.text);
    let (code, said) = cli(&s, &mint(&s, "alice"), &["sessions", "end", &sessions[0], "--reason", "tidying up"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("ended: tidying up"), "{said}");
    alice.post("/api/v1/sessions", json!({"request_id": id})).expect(201);
}

#[test]
fn bulk_both_ways_arrives_whole_and_in_order() {
    let s = Server::start();
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    s.user("alice", &[]);
    let mut c = Connect::start(&s, &mint(&s, "alice"), &["echo", "--duration", "1h", "--port", "0"]);
    let port = c.port();
    // A pattern that a lost or reordered chunk cannot imitate.
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let writer = {
        let mut w = stream.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::with_capacity(data.len());
    stream.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), data.len(), "bytes were lost");
    assert!(back == data, "bytes came back changed");
}

#[test]
fn one_grant_holds_a_bounded_number_of_streams() {
    let s = Server::start();
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    let alice = s.user("alice", &[]);
    let id = alice.request("echo", "1h").expect(201).id();
    let session = alice.post("/api/v1/sessions", json!({"request_id": id})).expect(201).id();
    let pem = std::fs::read(s.data_dir().join("tls-cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
    let tls = jitgate::tls::pinned_client_config(
        jitgate::tls::normalize_fingerprint(&jitgate::tls::fingerprint(der.as_ref())).unwrap(),
    )
    .unwrap();
    let dialer = Dialer { server: s.url(""), tls: Some(tls), token: mint(&s, "alice") };
    let held: Vec<_> = (0..jitgate::gateway::MAX_STREAMS_PER_GRANT)
        .map(|_| dialer.open(&id, &session).expect("within the cap"))
        .collect();
    match dialer.open(&id, &session) {
        Err(jitgate::Error::Remote { status: 409, code, .. }) => assert_eq!(code, "too_many_streams"),
        other => panic!("expected too_many_streams, got {:?}", other.map(|_| ())),
    }
    // The API stays reachable from the same address.
    s.admin().get("/api/v1/me").expect(200);
    drop(held);
}

#[test]
fn ending_a_session_cuts_its_streams() {
    let s = Server::start();
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    s.user("alice", &[]);
    let mut c = Connect::start(&s, &mint(&s, "alice"), &["echo", "--duration", "1h", "--port", "0"]);
    let port = c.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo_once(&mut stream, b"hi");
    let sid = s.admin().get("/api/v1/sessions").body["items"][0]["id"].as_str().unwrap().to_string();
    s.admin().post(&format!("/api/v1/sessions/{sid}/end"), json!({"reason": "done here"})).expect(200);
    let took = time_to_close(&mut stream);
    assert!(took < Duration::from_secs(1), "the stream outlived its session by {took:?}");
    let session = s.admin().get(&format!("/api/v1/sessions/{sid}")).expect(200).body;
    assert_eq!(session["streams"][0]["end_reason"], "session ended");
}

#[test]
fn a_session_with_many_streams_shows_the_newest_and_says_how_many() {
    let s = Server::start();
    s.connection("echo", &[], json!({"kind": "tcp", "target": echo_server()}));
    s.user("alice", &[]);
    let token = mint(&s, "alice");
    let mut c = Connect::start(&s, &token, &["echo", "--duration", "1h", "--port", "0"]);
    let port = c.port();
    // Each stream ends before the next: the per-grant cap counts live streams only.
    for _ in 0..101 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        echo_once(&mut stream, b"x");
    }
    let sid = s.admin().get("/api/v1/sessions").body["items"][0]["id"].as_str().unwrap().to_string();
    wait_until("101 streams on record", Duration::from_secs(20), || {
        s.admin().get(&format!("/api/v1/sessions/{sid}")).body["streams_total"] == 101
    });
    let session = s.admin().get(&format!("/api/v1/sessions/{sid}")).body;
    assert_eq!(session["streams"].as_array().unwrap().len(), 100, "one answer stays small");
    let (code, shown) = cli(&s, &token, &["sessions", "show", &sid]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("(the newest 100 of 101 streams)"), "{shown}");
    let (_, listed) = cli(&s, &token, &["sessions", "list", "--request", session["request_id"].as_str().unwrap()]);
    assert!(listed.contains(&sid), "{listed}");
}
