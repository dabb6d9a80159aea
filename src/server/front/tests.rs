//! In-process tests of the front: a real tiny_http behind it, raw HTTP over TCP (and TLS)
//! in front, each test the story of one rule.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::test_harness::{start, start_with, test_limits, Options};
use super::Limits;

fn code_of(resp: &super::test_harness::Resp) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

#[test]
fn a_request_reaches_tiny_http_with_peer_and_scheme() {
    let h = start();
    let mut c = h.connect();
    let local = c.r.get_ref().local_addr().unwrap();
    c.send(b"POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("method"), ["POST"]);
    assert_eq!(r.echoed("path"), ["/echo?x=1"]);
    assert_eq!(r.echoed("body"), ["5"]);
    assert_eq!(r.echoed("x-jitgate-peer"), [local.to_string()]);
    assert_eq!(r.echoed("x-jitgate-scheme"), ["http"]);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(h.stats.requests.load(Ordering::Relaxed), 1);
}

#[test]
fn keep_alive_serves_three_requests_on_one_connection() {
    let h = start();
    let mut c = h.connect();
    for i in 0..3 {
        let r = c.get(&format!("/n{i}"));
        assert_eq!(r.echoed("path"), [format!("/n{i}")]);
    }
    assert_eq!(h.stats.connections_total.load(Ordering::Relaxed), 1);
}

#[test]
fn pipelined_requests_in_one_write_are_both_answered_in_order() {
    let h = start();
    let mut c = h.connect();
    c.send(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    let a = c.response().unwrap();
    let b = c.response().unwrap();
    assert_eq!((a.echoed("path"), a.echoed("body")), (vec!["/a".into()], vec!["3".into()]));
    assert_eq!(b.echoed("path"), ["/b"]);
}

#[test]
fn a_chunked_upstream_body_is_reframed_with_content_length() {
    let h = start();
    let mut c = h.connect();
    let r = c.get("/big");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("102400"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert!(r.body.iter().all(|b| *b == b'x'));
    assert_eq!(c.get("/after").echoed("path"), ["/after"], "still in step after the big body");
}

#[test]
fn a_head_request_gets_no_body_and_the_connection_stays_in_step() {
    let h = start();
    let mut c = h.connect();
    c.send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut line = String::new();
    let mut head = String::new();
    while line != "\r\n" {
        line.clear();
        std::io::BufRead::read_line(&mut c.r, &mut line).unwrap();
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(c.get("/next").echoed("path"), ["/next"]);
}

#[test]
fn a_head_over_the_limit_is_431() {
    let h = start();
    let mut c = h.connect();
    let filler = "a".repeat(17 * 1024);
    c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Filler: {filler}\r\n\r\n").as_bytes());
    let r = c.response().unwrap();
    assert_eq!((r.status, code_of(&r)), (431, "head_too_large".into()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.rest().unwrap().is_empty());
    assert_eq!(h.stats.bad_requests.load(Ordering::Relaxed), 1);
}

#[test]
fn a_body_over_the_limit_is_413_and_the_reply_lands_without_reset() {
    let h = start();
    let mut c = h.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 20000000\r\n\r\n");
    // The client keeps sending: that unread data must not turn the close into an RST.
    c.send(&vec![b'z'; 64 * 1024]);
    let r = c.response().unwrap();
    assert_eq!((r.status, code_of(&r)), (413, "body_too_large".into()));
    assert_eq!(c.rest().expect("clean close, no RST").len(), 0);
    assert_eq!(h.stats.requests.load(Ordering::Relaxed), 0, "never reached tiny_http");
}

fn refused(raw: &str) -> (u16, String) {
    let h = start();
    let mut c = h.connect();
    c.send(raw.as_bytes());
    let r = c.response().unwrap();
    assert!(c.rest().is_ok());
    (r.status, code_of(&r))
}

#[test]
fn a_chunked_request_body_is_411() {
    let raw = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(refused(raw), (411, "length_required".into()));
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let raw = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello";
    assert_eq!(refused(raw), (400, "bad_request".into()));
}

#[test]
fn two_content_lengths_are_400_even_when_equal() {
    let raw = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(refused(raw), (400, "bad_request".into()));
}

#[test]
fn an_unknown_expectation_is_417() {
    let raw = "POST / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(refused(raw), (417, "expectation_failed".into()));
}

#[test]
fn an_absolute_form_target_is_400() {
    let raw = "GET http://evil/ HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(refused(raw), (400, "bad_request".into()));
}

#[test]
fn forged_jitgate_headers_and_hop_by_hop_ones_never_reach_tiny_http() {
    let h = start();
    let mut c = h.connect();
    let local = c.r.get_ref().local_addr().unwrap();
    c.send(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Jitgate-Peer: 10.0.0.1:1\r\nx-jitgate-scheme: https\r\n\
          X-JITGATE-User: admin\r\nTE: trailers\r\n\r\n",
    );
    let r = c.response().unwrap();
    assert_eq!(r.echoed("x-jitgate-peer"), [local.to_string()]);
    assert_eq!(r.echoed("x-jitgate-scheme"), ["http"]);
    assert!(r.echoed("x-jitgate-user").is_empty());
    assert!(r.echoed("te").is_empty());
}

#[test]
fn expect_100_continue_gets_continue_then_the_answer() {
    let h = start();
    let mut c = h.connect();
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = c.response().unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let r = c.response().unwrap();
    assert_eq!((r.status, r.echoed("body")), (200, vec!["5".to_string()]));
    assert!(r.echoed("expect").is_empty(), "Expect is answered by the front, not forwarded");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_deadline() {
    let h = start();
    let mut c = h.connect();
    c.get("/");
    let t0 = Instant::now();
    assert!(c.rest().unwrap().is_empty());
    let waited = t0.elapsed();
    assert!(waited > Duration::from_millis(700) && waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(h.stats.timeouts.load(Ordering::Relaxed), 0, "idle expiry is not a fault");
}

#[test]
fn a_head_trickled_a_byte_at_a_time_is_cut_at_the_head_deadline() {
    let h = start();
    let mut c = h.connect();
    let mut writer = c.r.get_ref().try_clone().unwrap();
    let t0 = Instant::now();
    let dripper = thread::spawn(move || {
        for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    // A clean close or a reset (the dripper writes after the close): either way, cut.
    let _ = c.rest();
    let cut_after = t0.elapsed();
    assert!(cut_after < Duration::from_millis(2500), "head deadline extended: {cut_after:?}");
    dripper.join().unwrap();
    h.wait_for("the timeout counted", |s| s.timeouts.load(Ordering::Relaxed) == 1);
}

#[test]
fn connections_over_the_per_address_cap_get_503() {
    let limits = Limits { max_connections_per_ip: 2, ..test_limits() };
    let h = start_with(Options { limits, ..Options::default() });
    let _a = h.connect();
    let _b = h.connect();
    h.wait_for("two live connections", |s| s.connections_open.load(Ordering::Relaxed) == 2);
    let mut third = h.connect();
    let r = third.response().unwrap();
    assert_eq!((r.status, code_of(&r)), (503, "too_many_connections".into()));
    assert_eq!(h.stats.refused_over_cap.load(Ordering::Relaxed), 1);
    drop(_a);
    h.wait_for("a freed slot", |s| s.connections_open.load(Ordering::Relaxed) == 1);
    assert_eq!(h.connect().get("/").status, 200);
}

#[test]
fn tiny_http_down_is_502() {
    let h = start_with(Options { upstream_up: false, ..Options::default() });
    let mut c = h.connect();
    let r = c.get("/");
    assert_eq!((r.status, code_of(&r)), (502, "bad_gateway".into()));
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn tiny_http_too_slow_is_504() {
    let h = start();
    let r = h.connect().get("/hang");
    assert_eq!((r.status, code_of(&r)), (504, "gateway_timeout".into()));
}

#[test]
fn tls_with_a_self_signed_certificate_serves_keep_alive_requests() {
    let h = start_with(Options { tls: true, ..Options::default() });
    let mut c = h.connect_tls();
    let r = c.get("/one");
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("x-jitgate-scheme"), ["https"]);
    assert_eq!(c.r.get_ref().conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(c.get("/big").body.len(), 100 * 1024);
    assert_eq!(c.get("/two").echoed("path"), ["/two"]);
}

#[test]
fn plain_http_on_a_tls_port_is_closed() {
    let h = start_with(Options { tls: true, ..Options::default() });
    let mut s = TcpStream::connect(h.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/"));
}

#[test]
fn shutdown_cuts_idle_connections_and_lets_a_busy_request_finish() {
    let h = start();
    let mut idle = h.connect();
    idle.get("/");
    let mut busy = h.connect();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    h.wait_for("the slow request upstream", |s| s.requests.load(Ordering::Relaxed) == 2);
    let took = h.stop();
    let r = busy.response().unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(took < Duration::from_secs(3), "run took {took:?}");
    let t0 = Instant::now();
    let closed = idle.rest();
    assert!(closed.is_err() || closed.unwrap().is_empty());
    assert!(t0.elapsed() < Duration::from_millis(500), "idle connection was left open");
    assert!(TcpStream::connect(h.addr).is_err(), "still accepting after shutdown");
    assert_eq!(h.stats.connections_open.load(Ordering::Relaxed), 0);
}

#[test]
fn shutdown_is_idempotent_and_prompt_with_nothing_connected() {
    let h = start();
    h.handle.shutdown();
    assert!(h.stop() < Duration::from_secs(2));
}

#[test]
fn an_http_1_0_request_closes_unless_asked_to_keep_alive() {
    let h = start();
    let mut c = h.connect();
    c.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().unwrap().header("connection"), Some("keep-alive"));
    c.send(b"GET /b HTTP/1.0\r\n\r\n");
    assert_eq!(c.response().unwrap().header("connection"), Some("close"));
    assert!(c.rest().unwrap().is_empty());
}

#[test]
fn a_body_sent_too_slowly_is_cut_at_the_body_deadline() {
    let limits = Limits { body_timeout: Duration::from_millis(500), ..test_limits() };
    let h = start_with(Options { limits, ..Options::default() });
    let mut c = h.connect();
    let t0 = Instant::now();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let _ = c.rest();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    h.wait_for("the timeout counted", |s| s.timeouts.load(Ordering::Relaxed) == 1);
    assert_eq!(h.stats.requests.load(Ordering::Relaxed), 0);
}

#[test]
fn a_silent_client_on_the_tls_port_is_cut_at_the_handshake_deadline() {
    let limits = Limits { handshake_timeout: Duration::from_millis(500), ..test_limits() };
    let h = start_with(Options { limits, tls: true, ..Options::default() });
    let mut c = h.connect();
    let t0 = Instant::now();
    let _ = c.rest();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    h.wait_for("the timeout counted", |s| s.timeouts.load(Ordering::Relaxed) == 1);
}
