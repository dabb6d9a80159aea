//! The listener under abuse, through the real binary over TLS: slowloris, a burst of
//! keep-alive clients, and oversized heads and bodies.

use crate::harness::{wait_until, Server};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A TCP connection from 127.0.0.`source` (so attackers and good clients differ).
fn connect_from(source: u8, to: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, source], 0)))).unwrap();
    sock.connect(&SockAddr::from(to)).unwrap();
    sock.into()
}

/// Whether the server has closed this connection (EOF or reset), without blocking.
fn closed(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error reply before the close: keep reading
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

fn healthz_latency(s: &Server) -> Duration {
    let c = s.client_with_timeout(None, Duration::from_secs(10));
    let t = Instant::now();
    c.get("/healthz").expect(200);
    t.elapsed()
}

enum Loris {
    /// Dribbles a TLS handshake that never completes.
    Handshake(TcpStream),
    /// Completed the handshake, dribbles a request head that never ends.
    Head(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

#[test]
fn slowloris_neither_delays_good_requests_nor_outlives_the_deadlines() {
    let s = Server::start_with(&["--handshake-timeout", "3s", "--head-timeout", "3s"]);
    let baseline = (0..3).map(|_| healthz_latency(&s)).min().unwrap();
    let rss_before = s.rss_kib();
    let started = Instant::now();
    let mut lorises = Vec::new();
    for i in 0..600 {
        let tcp = connect_from(2 + (i % 10) as u8, s.addr);
        tcp.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        if i % 2 == 0 {
            let mut tcp = tcp;
            tcp.write_all(&[0x16, 0x03]).unwrap(); // the first bytes of a TLS record
            lorises.push(Loris::Handshake(tcp));
        } else {
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(s.tls_config(), name).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            stream.flush().unwrap();
            stream.sock.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            lorises.push(Loris::Head(Box::new(stream)));
        }
    }
    // With all 600 holding on, a good client is still answered promptly.
    let during = healthz_latency(&s);
    assert!(
        during < baseline + Duration::from_millis(500),
        "good request took {during:?} during slowloris (baseline {baseline:?})"
    );
    // Keep dribbling a byte every 300 ms: it must not extend any deadline.
    let mut open = lorises.len();
    while open > 0 && started.elapsed() < Duration::from_secs(15) {
        open = 0;
        for l in lorises.iter_mut() {
            let alive = match l {
                Loris::Handshake(t) => !closed(t) && t.write_all(&[0x03]).is_ok(),
                Loris::Head(t) => !closed(t) && t.write_all(b"a").and_then(|_| t.flush()).is_ok(),
            };
            open += usize::from(alive);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let elapsed = started.elapsed();
    assert_eq!(open, 0, "{open} slow connections still open after {elapsed:?}");
    // Deadlines are 3 s; building 600 connections takes a moment too.
    assert!(elapsed < Duration::from_secs(12), "slow connections lasted {elapsed:?}");
    healthz_latency(&s);
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn sixty_four_keep_alive_clients_arriving_at_once_are_all_answered() {
    let s = Server::start();
    let barrier = Arc::new(Barrier::new(64));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let c = s.client_with_timeout(Some(&s.admin_token), Duration::from_secs(10));
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let t = Instant::now();
                for _ in 0..3 {
                    let r = c.try_send("GET", "/api/v1/me", None).expect("answered");
                    assert_eq!(r.status, 200);
                }
                t.elapsed()
            })
        })
        .collect();
    let slowest = clients.into_iter().map(|h| h.join().expect("a client was left waiting")).max().unwrap();
    assert!(slowest < Duration::from_secs(10), "slowest client took {slowest:?}");
}

#[test]
fn huge_heads_and_bodies_are_refused_without_growing_the_process() {
    let s = Server::start();
    let rss_before = s.rss_kib();
    let attack = |payload: Vec<u8>| {
        let mut t = s.tls_stream();
        t.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server answers and closes before we finish: write errors are expected.
        let _ = t.write_all(&payload).and_then(|_| t.flush());
        let mut answer = Vec::new();
        let _ = t.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).to_string()
    };
    for _ in 0..3 {
        let mut big_head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        big_head.extend(std::iter::repeat_n(b'a', 1 << 20));
        big_head.extend_from_slice(b"\r\n\r\n");
        let answer = attack(big_head);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
        let mut big_body = format!(
            "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 20000000\r\n\r\n",
            s.admin_token
        )
        .into_bytes();
        big_body.extend(std::iter::repeat_n(b'{', 20_000_000));
        let answer = attack(big_body);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    wait_until("the server to settle", Duration::from_secs(10), || s.client(None).get("/healthz").status == 200);
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB after 1 MiB heads and 20 MB bodies");
}

#[test]
fn a_forged_client_address_header_is_replaced() {
    let s = Server::start_with(&["--login-attempts-per-minute", "2"]);
    let forged = s.anonymous().with_header("X-Jitgate-Peer", "10.9.9.9:1");
    for _ in 0..2 {
        forged
            .post("/api/v1/login", serde_json::json!({"username": "admin", "password": "wrong-password-1"}))
            .expect(401);
    }
    // The limiter keyed on the real address, not the forged one.
    s.anonymous()
        .post("/api/v1/login", serde_json::json!({"username": "admin", "password": "wrong-password-1"}))
        .expect(429);
    let audit = s.admin().get("/api/v1/audit?action=login.failed").expect(200);
    assert!(audit.text.contains("127.0.0.1") && !audit.text.contains("10.9.9.9"), "{}", audit.text);
}

#[test]
fn parked_long_polls_are_bounded_and_never_starve_ordinary_requests() {
    let s = Server::start_with(&["--workers", "2", "--max-waiters", "4"]);
    s.connection("db", &["dba"], serde_json::json!({}));
    let alice = s.user("alice", &[]);
    let id = alice.request("db", "1h").expect(201).id();
    let token = s.admin_token.clone();
    let polls: Vec<_> = (0..4)
        .map(|_| {
            let c = s.client_with_timeout(Some(&token), Duration::from_secs(60));
            let path = format!("/api/v1/requests/{id}/wait?status=PENDING&timeout=30s");
            std::thread::spawn(move || c.get(&path).status)
        })
        .collect();
    wait_until("four parked polls", Duration::from_secs(20), || {
        s.admin().get("/metrics").text.contains("jitgate_long_polls 4")
    });
    // A fifth is refused at once rather than queued behind the others…
    let fifth = s.admin().get(&format!("/api/v1/requests/{id}/wait?status=PENDING&timeout=30s")).expect(503);
    assert_eq!(fifth.header("retry-after"), Some("1"));
    // …and the two workers still answer ordinary requests while four polls wait.
    for _ in 0..20 {
        s.admin().get("/api/v1/me").expect(200);
    }
    s.admin().approve(&id).expect(200);
    for p in polls {
        assert_eq!(p.join().unwrap(), 200);
    }
}

#[test]
fn an_operator_certificate_is_served_instead_of_the_self_signed_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["jitgate.test".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    jitgate::datadir::write_private(&key_path, key.serialize_pem().as_bytes()).unwrap();
    let s = Server::start_with(&["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()]);
    let expected = jitgate::tls::fingerprint(cert.der());
    assert!(s.log().contains(&expected), "the log should name the operator certificate's fingerprint");
    assert!(!s.data_dir().join("tls-key.pem").exists(), "no self-signed key is made when a certificate is given");
    let pinned = jitgate::tls::pinned_client_config(jitgate::tls::normalize_fingerprint(&expected).unwrap()).unwrap();
    let agent = ureq::AgentBuilder::new().tls_config(pinned).build();
    assert_eq!(agent.get(&s.url("/healthz")).call().unwrap().status(), 200);
}
