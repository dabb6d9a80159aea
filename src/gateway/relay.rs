//! One tunnel stream as a non-blocking state machine: bytes both ways between the
//! tunnel side (TLS, or plain on loopback) and a plain TCP socket. It does no waiting
//! of its own: the relay engine (`engine.rs`) tells it which sockets became ready and
//! calls [`Relay::advance`], which moves what it can and says whether to come back.
//!
//! Readiness is edge-triggered: a flag stays set until a call on that socket says
//! `WouldBlock`, or a read comes back shorter than the buffer (the socket was drained;
//! any byte that arrives later raises a new edge). So a full backlog never needs its
//! interest re-armed: the flag simply waits until the other side drains.
//!
//! Backlog is bounded by construction: the tunnel socket is read only when rustls has
//! no plaintext left to deliver, and the plain socket only when rustls has no TLS left
//! to send. Plaintext from rustls goes to the plain socket straight from rustls' own
//! buffer (`BufRead`), not through a copy of ours.
//!
//! The same machine serves both ends of a tunnel: the server (client's TLS ↔ target)
//! and `jitgate connect` (server's TLS ↔ the local application).

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;

/// Bytes moved per direction in one turn before other streams get theirs.
const TURN_BUDGET: usize = 1024 * 1024;

/// What a side of the tunnel speaks.
pub enum Tunnel {
    Tls(Box<rustls::Connection>, TcpStream),
    Plain(TcpStream),
}

impl Tunnel {
    pub fn sock(&self) -> &TcpStream {
        match self {
            Tunnel::Tls(_, s) | Tunnel::Plain(s) => s,
        }
    }
}

/// A stop signal for one stream: the first reason wins; the engine that runs the
/// stream is told at once.
#[derive(Default)]
pub struct Cut {
    state: Mutex<CutState>,
}

#[derive(Default)]
struct CutState {
    reason: Option<String>,
    notify: Option<Box<dyn Fn() + Send>>,
}

impl Cut {
    /// Ends the stream as soon as its engine thread wakes (at once).
    pub fn cut(&self, reason: &str) {
        if let Ok(mut s) = self.state.lock() {
            if s.reason.is_some() {
                return; // the engine was told the first time
            }
            s.reason = Some(reason.to_string());
            if let Some(notify) = &s.notify {
                notify();
            }
        }
    }

    pub fn reason(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.reason.clone())
    }

    /// Who to tell on a cut (the engine); told at once if the cut came first.
    pub(super) fn on_cut(&self, notify: Box<dyn Fn() + Send>) {
        if let Ok(mut s) = self.state.lock() {
            if s.reason.is_some() {
                notify();
            }
            s.notify = Some(notify);
        }
    }
}

/// Looks at (and may rewrite) the bytes going from the tunnel to the plain side.
pub trait Tap: Send {
    /// True while bytes go on unchanged: the relay then writes them straight through
    /// and shows them to [`Tap::observe`]. While false, [`Tap::tunnel_to_plain`] decides.
    fn passthrough(&self) -> bool {
        true
    }
    /// Sees bytes that went on unchanged, in order, each once.
    fn observe(&mut self, _bytes: &[u8]) {}
    /// `forward` gets what goes on, `reply` what is answered to the tunnel instead.
    fn tunnel_to_plain(&mut self, bytes: &[u8], forward: &mut Vec<u8>, _reply: &mut Vec<u8>) {
        forward.extend_from_slice(bytes);
        self.observe(bytes);
    }
    /// Called now and then and at the end (`last`), to hand over what it collected.
    fn flush(&mut self, _last: bool) {}
    /// Whether it holds something that `flush` would hand over.
    fn pending(&self) -> bool {
        false
    }
}

/// Forwards everything untouched.
pub struct NoTap;

impl Tap for NoTap {}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Plaintext bytes from the tunnel side to the plain side.
    pub tunnel_to_plain: u64,
    pub plain_to_tunnel: u64,
    pub reason: String,
}

/// What [`Relay::advance`] asks of the engine.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing more to do until a socket becomes ready.
    Wait,
    /// The turn's budget ran out with work left: come back after the others.
    More,
    /// The stream is over (both sides closed and everything delivered).
    Done(&'static str),
}

/// Which socket an edge came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Tunnel,
    Plain,
}

pub struct Relay {
    tunnel: Tunnel,
    plain: TcpStream,
    tap: Box<dyn Tap>,
    /// Edge-triggered readiness: set by the engine, cleared by `WouldBlock` or a
    /// short read.
    tunnel_readable: bool,
    tunnel_writable: bool,
    plain_readable: bool,
    plain_writable: bool,
    /// A short read no longer means drained, so read until `WouldBlock` or 0: the
    /// peer hung up (its FIN may wait behind the data and raises no new edge), the
    /// socket failed, or urgent data came (`recv` stops short at its mark, and the
    /// bytes after it raise no new edge either).
    tunnel_exhaust: bool,
    plain_exhaust: bool,
    /// TLS bytes read from the tunnel that rustls could not take yet (only while the
    /// plain side is slow), from `tls_pending_at` on.
    tls_pending: Vec<u8>,
    tls_pending_at: usize,
    /// Which side ended first, for the end reason.
    first_eof: Option<Side>,
    /// Plaintext for the plain side that could not be written straight through.
    to_plain: Vec<u8>,
    /// Plaintext for the tunnel side (plain tunnels only; rustls buffers its own).
    to_tunnel: Vec<u8>,
    /// The tunnel's TCP stream ended (rustls may still hold plaintext to deliver).
    tunnel_sock_eof: bool,
    tunnel_eof: bool,
    plain_eof: bool,
    plain_write_shut: bool,
    tunnel_write_shut: bool,
    out: Outcome,
}

impl Relay {
    /// A stream ready to run; `early` is plaintext already read from the tunnel side
    /// (it goes through the tap like the rest).
    pub fn new(tunnel: Tunnel, plain: TcpStream, early: &[u8], tap: Box<dyn Tap>) -> io::Result<Relay> {
        for s in [tunnel.sock(), &plain] {
            s.set_nonblocking(true)?;
            let _ = s.set_nodelay(true);
        }
        let mut r = Relay {
            tunnel,
            plain,
            tap,
            tunnel_readable: true,
            tunnel_writable: true,
            plain_readable: true,
            plain_writable: true,
            tunnel_exhaust: false,
            plain_exhaust: false,
            tls_pending: Vec::new(),
            tls_pending_at: 0,
            first_eof: None,
            to_plain: Vec::new(),
            to_tunnel: Vec::new(),
            tunnel_sock_eof: false,
            tunnel_eof: false,
            plain_eof: false,
            plain_write_shut: false,
            tunnel_write_shut: false,
            out: Outcome::default(),
        };
        if let Tunnel::Tls(c, _) = &mut r.tunnel {
            // rustls holds what we hand it until the socket takes it; reading the
            // plain side only when it has nothing pending bounds that, so its 64 KiB
            // default cap must not turn a full buffer into a short write.
            c.set_buffer_limit(None);
            c.process_new_packets().map_err(io::Error::other)?;
        }
        if !early.is_empty() {
            r.filter_into_queue(early)?;
        }
        Ok(r)
    }

    pub fn sockets(&self) -> (&TcpStream, &TcpStream) {
        (self.tunnel.sock(), &self.plain)
    }

    /// Notes an edge: `readable` for input, `writable` for room, `exhaust` when the
    /// peer hung up, the socket failed or urgent data came (then reads go on until
    /// `WouldBlock` or 0, and both flags are set: the next call tells which).
    pub fn ready(&mut self, side: Side, readable: bool, writable: bool, exhaust: bool) {
        let (r, w, x) = match side {
            Side::Tunnel => (&mut self.tunnel_readable, &mut self.tunnel_writable, &mut self.tunnel_exhaust),
            Side::Plain => (&mut self.plain_readable, &mut self.plain_writable, &mut self.plain_exhaust),
        };
        *r |= readable || exhaust;
        *w |= writable || exhaust;
        *x |= exhaust;
    }

    pub fn tap_mut(&mut self) -> &mut dyn Tap {
        self.tap.as_mut()
    }

    /// Moves what the sockets allow, up to a budget; `scratch` is the engine's shared
    /// read buffer (nothing is left in it between turns).
    pub fn advance(&mut self, scratch: &mut [u8]) -> io::Result<Turn> {
        let down = self.tunnel_to_plain(scratch)?;
        let up = self.plain_to_tunnel(scratch)?;
        if self.first_eof.is_none() {
            self.first_eof = match (self.tunnel_eof, self.plain_eof) {
                (true, _) => Some(Side::Tunnel),
                (_, true) => Some(Side::Plain),
                _ => None,
            };
        }
        self.half_close()?;
        // An idle stream keeps no large buffers.
        for v in [&mut self.to_plain, &mut self.to_tunnel, &mut self.tls_pending] {
            if v.is_empty() && v.capacity() > 64 * 1024 {
                *v = Vec::new();
            }
        }
        if self.finished() {
            let reason = match self.first_eof {
                Some(Side::Plain) => "target closed",
                _ => "client closed",
            };
            return Ok(Turn::Done(reason));
        }
        Ok(if down || up { Turn::More } else { Turn::Wait })
    }

    /// Ends both sides without waiting: a TLS close_notify if the socket takes it at
    /// once (not after a failure: the peer must not take that for a clean end), then
    /// the sockets.
    pub fn finish(mut self, reason: String, failed: bool) -> Outcome {
        if let Tunnel::Tls(c, s) = &mut self.tunnel {
            if !self.tunnel_write_shut && !failed {
                c.send_close_notify();
            }
            for _ in 0..4 {
                if !c.wants_write() || !c.write_tls(s).is_ok_and(|n| n > 0) {
                    break;
                }
            }
        }
        let _ = self.tunnel.sock().shutdown(Shutdown::Both);
        let _ = self.plain.shutdown(Shutdown::Both);
        self.tap.flush(true);
        self.out.reason = reason;
        self.out
    }

    fn finished(&self) -> bool {
        self.tunnel_eof && self.plain_eof && self.to_plain.is_empty() && !self.tunnel_output_pending()
    }

    fn tunnel_output_pending(&self) -> bool {
        match &self.tunnel {
            Tunnel::Tls(c, _) => c.wants_write(),
            Tunnel::Plain(_) => !self.to_tunnel.is_empty(),
        }
    }

    // ---- tunnel → plain -------------------------------------------------------------

    /// Returns true if the turn's budget ran out with more to do.
    fn tunnel_to_plain(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        let mut moved = 0usize;
        loop {
            if moved >= TURN_BUDGET {
                return Ok(true);
            }
            // 1. What is queued for the plain side goes first.
            if !self.to_plain.is_empty() {
                if !self.plain_writable {
                    return Ok(false);
                }
                let n = write_some(&self.plain, &self.to_plain, &mut self.plain_writable)?;
                self.out.tunnel_to_plain += n as u64;
                self.to_plain.drain(..n);
                moved += n;
                continue;
            }
            match &mut self.tunnel {
                Tunnel::Tls(..) => {
                    // 2. Plaintext rustls holds, 3. TLS it has not taken yet, 4. the socket.
                    match self.deliver_tls_plaintext()? {
                        Delivered::Bytes(n) => {
                            moved += n;
                            continue;
                        }
                        Delivered::Blocked => return Ok(false),
                        Delivered::Empty => {}
                    }
                    if self.tls_pending_at < self.tls_pending.len() {
                        // Fed from where it stopped: no copy of what is left.
                        let pending = std::mem::take(&mut self.tls_pending);
                        let taken = self.feed_tls(&pending[self.tls_pending_at..]);
                        self.tls_pending = pending;
                        self.tls_pending_at += taken?;
                        if self.tls_pending_at == self.tls_pending.len() {
                            self.tls_pending.clear();
                            self.tls_pending_at = 0;
                        }
                        continue;
                    }
                    if !self.tunnel_readable || self.tunnel_sock_eof {
                        return Ok(false);
                    }
                    let Tunnel::Tls(_, sock) = &self.tunnel else { return Ok(false) };
                    match read_some(sock, scratch, &mut self.tunnel_readable, self.tunnel_exhaust)? {
                        None => {}
                        Some(0) => self.tls_socket_ended()?,
                        Some(n) => {
                            // Counted too: TLS that yields no plaintext still takes time.
                            moved += n;
                            let taken = self.feed_tls(&scratch[..n])?;
                            self.tls_pending.extend_from_slice(&scratch[taken..n]);
                        }
                    }
                }
                Tunnel::Plain(sock) => {
                    if !self.tunnel_readable || self.tunnel_eof {
                        return Ok(false);
                    }
                    match read_some(sock, scratch, &mut self.tunnel_readable, self.tunnel_exhaust)? {
                        None => {}
                        Some(0) => self.tunnel_eof = true,
                        Some(n) => moved += self.deliver(&scratch[..n])?,
                    }
                }
            }
        }
    }

    /// Hands rustls TLS bytes; returns how many it took (the rest waits: its
    /// plaintext buffer is full until delivered).
    fn feed_tls(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Tunnel::Tls(c, _) = &mut self.tunnel else { return Ok(bytes.len()) };
        let mut rest = bytes;
        while !rest.is_empty() {
            match c.read_tls(&mut rest) {
                // After a close_notify rustls takes nothing more: the rest is dropped.
                Ok(0) => return Ok(bytes.len()),
                Ok(_) => {
                    c.process_new_packets().map_err(io::Error::other)?;
                }
                // "received plaintext buffer full": deliver first, feed the rest later.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                Err(e) => return Err(e),
            }
        }
        Ok(bytes.len() - rest.len())
    }

    /// The tunnel's TCP stream ended: rustls learns it (an end without close_notify
    /// then reads as `UnexpectedEof` once its plaintext is delivered).
    fn tls_socket_ended(&mut self) -> io::Result<()> {
        self.tunnel_sock_eof = true;
        if let Tunnel::Tls(c, _) = &mut self.tunnel {
            c.read_tls(&mut &[][..])?;
            c.process_new_packets().map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn deliver_tls_plaintext(&mut self) -> io::Result<Delivered> {
        let Tunnel::Tls(c, _) = &mut self.tunnel else { return Ok(Delivered::Empty) };
        let mut reader = c.reader();
        let chunk = match reader.fill_buf() {
            Ok([]) => {
                self.tunnel_eof = true; // close_notify, after all plaintext
                return Ok(Delivered::Empty);
            }
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.tunnel_sock_eof && self.tls_pending_at >= self.tls_pending.len() {
                    self.tunnel_eof = true;
                }
                return Ok(Delivered::Empty);
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.tunnel_eof = true;
                return Ok(Delivered::Empty);
            }
            Err(e) => return Err(e),
        };
        if self.tap.passthrough() {
            if !self.plain_writable {
                return Ok(Delivered::Blocked);
            }
            let n = write_some(&self.plain, chunk, &mut self.plain_writable)?;
            self.tap.observe(&chunk[..n]);
            reader.consume(n);
            self.out.tunnel_to_plain += n as u64;
            return Ok(if n == 0 { Delivered::Blocked } else { Delivered::Bytes(n) });
        }
        let (mut forward, mut reply) = (Vec::new(), Vec::new());
        self.tap.tunnel_to_plain(chunk, &mut forward, &mut reply);
        let n = chunk.len();
        reader.consume(n);
        self.to_plain.extend_from_slice(&forward);
        self.send_to_tunnel(&reply)?;
        Ok(Delivered::Bytes(n))
    }

    /// Plaintext from a plain tunnel: written straight through when the tap allows,
    /// the rest queued.
    fn deliver(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.tap.passthrough() {
            self.filter_into_queue(bytes)?;
            return Ok(bytes.len());
        }
        let n = if self.plain_writable { write_some(&self.plain, bytes, &mut self.plain_writable)? } else { 0 };
        self.tap.observe(bytes);
        self.out.tunnel_to_plain += n as u64;
        self.to_plain.extend_from_slice(&bytes[n..]);
        Ok(bytes.len())
    }

    fn filter_into_queue(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (mut forward, mut reply) = (Vec::new(), Vec::new());
        self.tap.tunnel_to_plain(bytes, &mut forward, &mut reply);
        self.to_plain.extend_from_slice(&forward);
        self.send_to_tunnel(&reply)
    }

    // ---- plain → tunnel -------------------------------------------------------------

    fn plain_to_tunnel(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        let mut moved = 0usize;
        loop {
            self.flush_tunnel()?;
            if self.tunnel_output_pending() || self.plain_eof || !self.plain_readable {
                return Ok(false);
            }
            if moved >= TURN_BUDGET {
                return Ok(true);
            }
            match read_some(&self.plain, scratch, &mut self.plain_readable, self.plain_exhaust)? {
                None => {}
                Some(0) => self.plain_eof = true,
                Some(n) => {
                    self.out.plain_to_tunnel += n as u64;
                    moved += n;
                    self.send_to_tunnel(&scratch[..n])?;
                }
            }
        }
    }

    /// Queues plaintext for the tunnel side. With rustls' buffer limit lifted this
    /// cannot fall short; if it ever did, the stream fails rather than lose bytes.
    fn send_to_tunnel(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.tunnel {
            Tunnel::Tls(c, _) => c.writer().write_all(bytes),
            Tunnel::Plain(_) => {
                self.to_tunnel.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn flush_tunnel(&mut self) -> io::Result<()> {
        match &mut self.tunnel {
            Tunnel::Tls(c, s) => {
                while c.wants_write() && self.tunnel_writable {
                    match c.write_tls(s) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tunnel_writable = false,
                        Err(e) => return Err(e),
                    }
                }
            }
            Tunnel::Plain(s) => {
                while !self.to_tunnel.is_empty() && self.tunnel_writable {
                    let n = write_some(s, &self.to_tunnel, &mut self.tunnel_writable)?;
                    self.to_tunnel.drain(..n);
                }
            }
        }
        Ok(())
    }

    /// Passes an end of stream on once everything before it was delivered.
    fn half_close(&mut self) -> io::Result<()> {
        if self.tunnel_eof && self.to_plain.is_empty() && !self.plain_write_shut {
            let _ = self.plain.shutdown(Shutdown::Write);
            self.plain_write_shut = true;
        }
        if self.plain_eof && !self.tunnel_output_pending() && !self.tunnel_write_shut {
            self.tunnel_write_shut = true;
            match &mut self.tunnel {
                Tunnel::Tls(c, _) => c.send_close_notify(),
                Tunnel::Plain(s) => {
                    let _ = s.shutdown(Shutdown::Write);
                }
            }
            self.flush_tunnel()?;
        }
        Ok(())
    }
}

enum Delivered {
    Bytes(usize),
    /// Plaintext waits for the plain side to take it.
    Blocked,
    /// rustls has no plaintext.
    Empty,
}

/// One `read`: `Some(0)` at the end of the stream (a reset reads as one), `None`
/// when there is nothing now. Clears `readable` on `WouldBlock`, or on a short read
/// (the socket was drained: a byte that comes later raises a new edge) unless
/// `exhaust` (a FIN, or bytes behind an urgent mark, raise no new edge).
fn read_some(mut sock: &TcpStream, buf: &mut [u8], readable: &mut bool, exhaust: bool) -> io::Result<Option<usize>> {
    loop {
        return match sock.read(buf) {
            Ok(n) => {
                if n < buf.len() && !exhaust {
                    *readable = false;
                }
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Some(0)),
            Err(e) => Err(e),
        };
    }
}

/// One `write`; clears `writable` on `WouldBlock` or a short write (the socket is full).
fn write_some(mut sock: &TcpStream, bytes: &[u8], writable: &mut bool) -> io::Result<usize> {
    loop {
        return match sock.write(bytes) {
            Ok(n) => {
                if n < bytes.len() {
                    *writable = false;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *writable = false;
                Ok(0)
            }
            Err(e) => Err(e),
        };
    }
}
