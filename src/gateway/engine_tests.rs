//! The relay engine with real sockets on loopback: both ends of a tunnel (as in
//! `connect` and the gateway) in one process, plain and over TLS.

use super::engine::{Done, Engine, Job};
use super::relay::{Cut, NoTap, Outcome, Relay, Tap, Tunnel};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A connected pair of loopback sockets.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

/// A TLS pair that finished its handshake: (client side, server side).
fn tls_pair() -> (Tunnel, Tunnel) {
    let dir = tempfile::tempdir().unwrap();
    let source = crate::tls::Source::SelfSigned { data_dir: dir.path().to_path_buf(), names: vec!["localhost".into()] };
    let loaded = crate::tls::load(&source).unwrap();
    let pin = crate::tls::normalize_fingerprint(&loaded.fingerprint).unwrap();
    let client_config = crate::tls::pinned_client_config(pin).unwrap();
    let (mut c_sock, mut s_sock) = pair();
    let server = thread::spawn(move || {
        let mut s = rustls::ServerConnection::new(loaded.config).unwrap();
        while s.is_handshaking() {
            s.complete_io(&mut s_sock).unwrap();
        }
        (s, s_sock)
    });
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(client_config, name).unwrap();
    while c.is_handshaking() {
        c.complete_io(&mut c_sock).unwrap();
    }
    let (s, s_sock) = server.join().unwrap();
    (Tunnel::Tls(Box::new(c.into()), c_sock), Tunnel::Tls(Box::new(s.into()), s_sock))
}

fn done_channel() -> (Done, Receiver<Outcome>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
        rx,
    )
}

fn start(
    engine: &Engine,
    tunnel: Tunnel,
    plain: TcpStream,
    tap: Box<dyn Tap>,
    deadline: Option<Instant>,
) -> (Arc<Cut>, Receiver<Outcome>) {
    let relay = Relay::new(tunnel, plain, &[], tap).unwrap();
    let cut = Arc::new(Cut::default());
    let (done, rx) = done_channel();
    engine.spawn(Job { relay, deadline, cut: Arc::clone(&cut), done });
    (cut, rx)
}

/// Echoes until EOF, then closes.
fn echo(mut s: TcpStream) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// Writes `data` (then EOF) from one thread while reading everything back.
fn round_trip(app: TcpStream, data: &[u8]) -> Vec<u8> {
    let mut w = app.try_clone().unwrap();
    let sent = data.to_vec();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let mut r = app;
    r.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    r.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    back
}

/// Records what it is shown, to check that every byte is seen once, in order.
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl Tap for Recorder {
    fn observe(&mut self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

#[test]
fn both_ends_over_tls_carry_every_byte_both_ways_and_the_tap_sees_each_once() {
    let engine = Engine::start("relay-test", 2).unwrap();
    let (client_tls, server_tls) = tls_pair();
    let (app, app_inside) = pair();
    let (target_inside, target) = pair();
    let echoed = echo(target);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_, near) = start(&engine, client_tls, app_inside, Box::new(NoTap), None);
    let (_, far) = start(&engine, server_tls, target_inside, Box::new(Recorder(Arc::clone(&seen))), None);
    let data = pattern(8 << 20);
    let back = round_trip(app, &data);
    assert_eq!(back.len(), data.len(), "bytes were lost");
    assert!(back == data, "bytes came back changed");
    echoed.join().unwrap();
    let far = far.recv_timeout(Duration::from_secs(10)).unwrap();
    let near = near.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((far.tunnel_to_plain, far.plain_to_tunnel), (data.len() as u64, data.len() as u64));
    assert_eq!((near.tunnel_to_plain, near.plain_to_tunnel), (data.len() as u64, data.len() as u64));
    assert_eq!(far.reason, "client closed");
    assert!(*seen.lock().unwrap() == data, "the tap saw every byte once, in order");
}

#[test]
fn plain_tunnels_relay_too() {
    let engine = Engine::start("relay-test", 1).unwrap();
    let (tunnel_out, tunnel_in) = pair();
    let (app, app_inside) = pair();
    let (target_inside, target) = pair();
    let echoed = echo(target);
    let (_, near) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), None);
    let (_, far) = start(&engine, Tunnel::Plain(tunnel_in), target_inside, Box::new(NoTap), None);
    let data = pattern(4 << 20);
    assert!(round_trip(app, &data) == data);
    echoed.join().unwrap();
    for rx in [near, far] {
        let o = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(o.plain_to_tunnel + o.tunnel_to_plain, 2 * data.len() as u64);
    }
}

#[test]
fn a_cut_ends_every_stream_at_once_and_says_why() {
    let engine = Engine::start("relay-test", 2).unwrap();
    let mut held = Vec::new();
    for _ in 0..200 {
        let (tunnel_out, tunnel_peer) = pair();
        let (app, app_inside) = pair();
        let (cut, rx) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), None);
        held.push((cut, rx, app, tunnel_peer));
    }
    let started = Instant::now();
    for (cut, ..) in &held {
        cut.cut("grant revoked by test");
    }
    for (_, rx, mut app, _) in held {
        let o = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(o.reason, "grant revoked by test");
        let mut b = [0u8; 1];
        app.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(app.read(&mut b).unwrap(), 0, "the application sees the end");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(engine.streams(), 0);
}

#[test]
fn a_stream_ends_at_its_deadline_and_a_cut_before_the_start_still_counts() {
    let engine = Engine::start("relay-test", 1).unwrap();
    let (tunnel_out, _peer) = pair();
    let (_app, app_inside) = pair();
    let deadline = Instant::now() + Duration::from_millis(200);
    let (_, rx) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), Some(deadline));
    let o = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(o.reason, "grant expired");
    assert!(Instant::now() >= deadline);

    let (tunnel_out, _peer) = pair();
    let (_app, app_inside) = pair();
    let relay = Relay::new(Tunnel::Plain(tunnel_out), app_inside, &[], Box::new(NoTap)).unwrap();
    let cut = Arc::new(Cut::default());
    cut.cut("grant ended");
    let (done, rx) = done_channel();
    engine.spawn(Job { relay, deadline: None, cut, done });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().reason, "grant ended");
}

#[test]
fn stopping_the_engine_ends_what_is_left() {
    let engine = Engine::start("relay-test", 2).unwrap();
    let (tunnel_out, _peer) = pair();
    let (_app, app_inside) = pair();
    let (_, rx) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), None);
    engine.stop("server stopping");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().reason, "server stopping");
}

#[test]
fn bytes_behind_urgent_data_are_not_stranded() {
    let engine = Engine::start("relay-test", 1).unwrap();
    let (tunnel_out, mut tunnel_peer) = pair();
    let (mut app, app_inside) = pair();
    let (_, rx) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), None);
    // `recv` stops short at the urgent mark; what follows raises no new edge.
    tunnel_peer.write_all(b"abc").unwrap();
    socket2::SockRef::from(&tunnel_peer).send_out_of_band(b"!").unwrap();
    tunnel_peer.write_all(b"def").unwrap();
    let mut got = Vec::new();
    app.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"def") {
        let n = app.read(&mut buf).expect("the bytes after the urgent byte arrive");
        assert!(n > 0, "closed early; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"abcdef", "the urgent byte itself is not part of the stream");
    drop(tunnel_peer);
    drop(app);
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
}

#[test]
fn a_stream_given_after_the_engine_stopped_ends_at_once() {
    let engine = Engine::start("relay-test", 2).unwrap();
    engine.stop("server stopping");
    let (tunnel_out, _peer) = pair();
    let (mut app, app_inside) = pair();
    let (_, rx) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), None);
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap().reason, "relay engine stopped");
    app.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(app.read(&mut [0u8; 1]).unwrap(), 0);
    assert_eq!(engine.streams(), 0);
}

#[test]
fn the_end_reason_names_the_side_that_closed_first() {
    let engine = Engine::start("relay-test", 1).unwrap();
    let (tunnel_out, mut tunnel_peer) = pair();
    let (app, app_inside) = pair();
    let (_, rx) = start(&engine, Tunnel::Plain(tunnel_out), app_inside, Box::new(NoTap), None);
    app.shutdown(Shutdown::Write).unwrap(); // the target (plain side here) ends first
                                            // Its end is passed on before the other side ends.
    tunnel_peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(tunnel_peer.read(&mut [0u8; 1]).unwrap(), 0);
    tunnel_peer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().reason, "target closed");
    drop((app, tunnel_peer));
}
