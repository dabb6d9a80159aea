//! One client connection, in its own thread: handshake, then request after request
//! (keep-alive, pipelining) until the client, a deadline, a refusal or shutdown ends it.
//!
//! Owns: the order of phases and which deadline is running in each. Must never read a
//! body before its head passed every rule, never let a client trickle past a deadline,
//! and never keep a connection alive after a refusal or a gateway error.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadline::Transport;
use super::head::{self, RequestHead, Scanner};
use super::registry::Admission;
use super::reply::{Reject, CONTINUE};
use super::upstream::{self, Origin, UpstreamError};
use super::{Inner, Stats};

/// After a refusal, how much of the client's unread data is swallowed, and for how
/// long, so that the refusal lands instead of an RST.
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);
/// Front-made replies are small; they never get the whole write budget.
const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 8 * 1024;

/// Why a request went no further.
enum Stop {
    /// The front answers instead of tiny_http, then closes.
    Refuse(Reject),
    /// A deadline passed; `counted` is false for the keep-alive idle wait.
    TimedOut { phase: &'static str, counted: bool },
    /// The client went away, or the connection broke.
    Gone,
}

/// How the connection goes on after a response.
enum Next {
    KeepAlive,
    Close,
    /// The gateway allowed a tunnel: the connection becomes a relay.
    Tunnel(Box<super::TunnelOpen>),
}

const TUNNEL_PATH: &str = "/api/v1/tunnel/";

struct Conn<'a> {
    inner: &'a Inner,
    admission: Admission,
    t: Transport,
    /// Bytes read but not used yet: the start of the next (pipelined) request.
    buf: Vec<u8>,
    peer: SocketAddr,
}

pub(super) fn serve(inner: &Arc<Inner>, admission: Admission, tcp: TcpStream, peer: SocketAddr) {
    let deadline = Instant::now() + inner.limits.handshake_timeout;
    let t = match Transport::open(tcp, inner.tls.as_ref(), deadline) {
        Ok(t) => t,
        Err(e) => {
            if e.kind() == io::ErrorKind::TimedOut {
                Stats::bump(&inner.stats.timeouts);
            }
            debug!("{peer}: TLS handshake failed: {e}");
            return;
        }
    };
    let conn = Conn { inner, admission, t, buf: Vec::new(), peer };
    conn.run();
}

impl Conn<'_> {
    fn run(mut self) {
        let mut first = true;
        loop {
            match self.one_request(first) {
                Ok(Next::KeepAlive) => {
                    // Once stopping, an idle connection is closed rather than kept.
                    if !self.admission.idle() {
                        return;
                    }
                    first = false;
                }
                Ok(Next::Close) => return self.t.linger(LINGER_BYTES, LINGER_TIME),
                Ok(Next::Tunnel(open)) => return self.relay(*open),
                Err(Stop::Refuse(reject)) => return self.refuse(&reject),
                Err(Stop::TimedOut { phase, counted }) => {
                    if counted {
                        Stats::bump(&self.inner.stats.timeouts);
                    }
                    debug!("{}: {phase} deadline passed, closing", self.peer);
                    return;
                }
                Err(Stop::Gone) => return,
            }
        }
    }

    fn one_request(&mut self, first: bool) -> Result<Next, Stop> {
        let head = self.read_head(first)?;
        if head.wants_upgrade() && head.method == "GET" && head.target.starts_with(TUNNEL_PATH) {
            if let Some(tunnels) = self.inner.tunnels.clone() {
                if head.content_length > 0 {
                    return Err(Stop::Refuse(Reject::bad_request("a tunnel request has no body")));
                }
                return tunnels.open(&head, self.peer).map(|o| Next::Tunnel(Box::new(o))).map_err(Stop::Refuse);
            }
        }
        let body = self.read_body(&head)?;
        Stats::bump(&self.inner.stats.requests);
        let origin = Origin { peer: self.peer, scheme: if self.t.is_tls() { "https" } else { "http" } };
        let limits = &self.inner.limits;
        let response = upstream::forward(&self.inner.upstream, limits.upstream_timeout, &head, &body, &origin)
            .map_err(|e| self.gateway_error(e))?;
        let keep = head.keep_alive && !self.admission.stopping();
        debug!("{}: {} -> {}", self.peer, head.method, response.status);
        self.t.set_deadline(Instant::now() + limits.write_timeout);
        let (framed, rest) = response.to_client(head.is_head(), keep);
        self.write(&framed)?;
        self.write(rest)?;
        self.t.flush().map_err(|e| stop_on(e, "write"))?;
        Ok(if keep { Next::KeepAlive } else { Next::Close })
    }

    /// Waits for a request's first byte, then reads the whole head. On a kept-alive
    /// connection the first byte has the idle deadline and the head `head_timeout`
    /// from that byte on; on a new connection one `head_timeout` covers both, so a
    /// late first byte never buys a second deadline.
    fn read_head(&mut self, first: bool) -> Result<RequestHead, Stop> {
        let limits = &self.inner.limits;
        let head_deadline_new = Instant::now() + limits.head_timeout;
        if self.buf.is_empty() {
            let (wait, phase) = match first {
                true => (limits.head_timeout, "head"),
                false => (limits.idle_timeout, "idle"),
            };
            self.t.set_deadline(Instant::now() + wait);
            match self.fill() {
                Ok(0) => return Err(Stop::Gone),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(Stop::TimedOut { phase, counted: first });
                }
                Err(_) => return Err(Stop::Gone),
            }
        }
        self.admission.busy();
        self.t.set_deadline(if first { head_deadline_new } else { Instant::now() + limits.head_timeout });
        let mut scanner = Scanner::new();
        loop {
            let found = scanner.advance(&self.buf, limits.max_head_bytes);
            if let Some(end) = found.map_err(Stop::Refuse)? {
                let head = head::parse(&self.buf[..end], limits).map_err(Stop::Refuse)?;
                self.buf.drain(..end);
                return Ok(head);
            }
            match self.fill() {
                Ok(0) => return Err(Stop::Gone),
                Ok(_) => {}
                Err(e) => return Err(stop_on(e, "head")),
            }
        }
    }

    /// Reads exactly `Content-Length` bytes, the pipelined leftovers first.
    fn read_body(&mut self, head: &RequestHead) -> Result<Vec<u8>, Stop> {
        // Bounded by max_body_bytes (a usize) in head::parse.
        let len = usize::try_from(head.content_length).map_err(|_| Stop::Gone)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.t.set_deadline(Instant::now() + self.inner.limits.body_timeout);
        // HTTP/1.0 clients do not know 100 Continue (RFC 9110 §10.1.1).
        if head.expect_continue && head.minor_version == 1 {
            self.write(CONTINUE)?;
            self.t.flush().map_err(|e| stop_on(e, "body"))?;
        }
        let from_buf = len.min(self.buf.len());
        let mut body: Vec<u8> = self.buf.drain(..from_buf).collect();
        // Grow with the bytes that arrive: a head that only promises 1 MiB must not
        // make us hold 1 MiB.
        while body.len() < len {
            let want = (len - body.len()).min(READ_CHUNK);
            let mut chunk = [0u8; READ_CHUNK];
            let n = self.t.read(&mut chunk[..want]).map_err(|e| stop_on(e, "body"))?;
            if n == 0 {
                return Err(Stop::Gone);
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok(body)
    }

    /// Answers `101` and hands the connection to the gateway's relay; the
    /// connection's slot is held until the stream ends.
    fn relay(self, open: super::TunnelOpen) {
        let mut reply =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: jitgate-tunnel/1\r\n".to_vec();
        for (k, v) in &open.headers {
            reply.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        reply.extend_from_slice(b"\r\n");
        let Conn { inner, admission, mut t, buf: early, peer } = self;
        t.set_deadline(Instant::now() + REPLY_WRITE_TIMEOUT);
        if t.write_all(&reply).and_then(|()| t.flush()).is_err() {
            open.cut.cut("client gone before the tunnel opened");
        }
        let Some(tunnels) = inner.tunnels.clone() else { return };
        let ended = Box::new(move || {
            debug!("{peer}: tunnel stream ended");
            drop(admission);
        });
        tunnels.relay(open, t.into_tunnel(), early, ended);
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.t.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.t.write_all(bytes).map_err(|e| stop_on(e, "write"))
    }

    fn gateway_error(&self, e: UpstreamError) -> Stop {
        match e {
            UpstreamError::Timeout => {
                Stats::bump(&self.inner.stats.timeouts);
                warn!("{}: tiny_http did not answer in time", self.peer);
                Stop::Refuse(Reject::gateway_timeout())
            }
            UpstreamError::Unreachable(e) => {
                warn!("{}: tiny_http unreachable: {e}", self.peer);
                Stop::Refuse(Reject::bad_gateway())
            }
            UpstreamError::Bad(why) => {
                warn!("{}: tiny_http answer not relayed: {why}", self.peer);
                Stop::Refuse(Reject::bad_gateway())
            }
        }
    }

    /// Writes a front-made reply, then closes gracefully.
    fn refuse(mut self, reject: &Reject) {
        if reject.status < 500 {
            Stats::bump(&self.inner.stats.bad_requests);
        }
        debug!("{}: {} {}", self.peer, reject.status, reject.code);
        self.admission.busy();
        let timeout = self.inner.limits.write_timeout.min(REPLY_WRITE_TIMEOUT);
        self.t.set_deadline(Instant::now() + timeout);
        let sent = self.t.write_all(&reject.to_bytes()).and_then(|()| self.t.flush());
        if sent.is_ok() {
            self.t.linger(LINGER_BYTES, LINGER_TIME);
        }
    }
}

fn stop_on(e: io::Error, phase: &'static str) -> Stop {
    match e.kind() {
        io::ErrorKind::TimedOut => Stop::TimedOut { phase, counted: true },
        _ => Stop::Gone,
    }
}
