//! The relay: one thread moves bytes both ways between the tunnel side (TLS, or
//! plain on loopback) and a plain TCP socket, until either side closes, the grant's
//! deadline passes, or the stream is cut (revoke, end, shutdown). Both sockets are
//! non-blocking and watched by one `polling::Poller`; a cut wakes it at once.
//!
//! The same loop serves both ends of a tunnel: the server (client's TLS ↔ target)
//! and `jitgate connect` (server's TLS ↔ the local application).

use polling::{Event, Events, PollMode, Poller};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const CHUNK: usize = 64 * 1024;
/// Backlog toward one side before we stop reading from the other.
const MAX_BACKLOG: usize = 512 * 1024;
/// TLS records read per wake-up at most (fairness between the two directions).
const TLS_READS_PER_WAKE: usize = 8;
const TUNNEL: usize = 0;
const PLAIN: usize = 1;

/// A stop signal for one relay: the reason, and the poller to wake.
#[derive(Default)]
pub struct Cut {
    state: Mutex<(Option<String>, Option<Arc<Poller>>)>,
}

impl Cut {
    /// Ends the relay as soon as its thread wakes (at once).
    pub fn cut(&self, reason: &str) {
        if let Ok(mut s) = self.state.lock() {
            if s.0.is_none() {
                s.0 = Some(reason.to_string());
            }
            if let Some(p) = &s.1 {
                let _ = p.notify();
            }
        }
    }

    fn reason(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.0.clone())
    }

    fn attach(&self, poller: Arc<Poller>) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = Some(poller);
        }
    }
}

/// What a side of the tunnel speaks.
pub enum Tunnel {
    Tls(Box<rustls::Connection>, TcpStream),
    Plain(TcpStream),
}

impl Tunnel {
    fn sock(&self) -> &TcpStream {
        match self {
            Tunnel::Tls(_, s) | Tunnel::Plain(s) => s,
        }
    }
}

/// Looks at (and may rewrite) the bytes going from the tunnel to the plain side:
/// `forward` gets what goes on, `reply` what is answered to the tunnel instead.
pub trait Tap {
    fn tunnel_to_plain(&mut self, bytes: &[u8], forward: &mut Vec<u8>, reply: &mut Vec<u8>);
    /// Called now and then and at the end, to flush what it collected.
    fn flush(&mut self, _final: bool) {}
    /// When the relay should wake to call `flush` even if no byte moves.
    fn flush_due_in(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Forwards everything untouched.
pub struct NoTap;

impl Tap for NoTap {
    fn tunnel_to_plain(&mut self, bytes: &[u8], forward: &mut Vec<u8>, _: &mut Vec<u8>) {
        forward.extend_from_slice(bytes);
    }
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Plaintext bytes from the tunnel side to the plain side.
    pub tunnel_to_plain: u64,
    pub plain_to_tunnel: u64,
    pub reason: String,
}

struct Relay<'a> {
    tunnel: Tunnel,
    plain: TcpStream,
    to_plain: Vec<u8>,
    /// Plaintext waiting for the tunnel side (plain tunnels only; rustls buffers its own).
    to_tunnel: Vec<u8>,
    tunnel_eof: bool,
    plain_eof: bool,
    plain_write_shut: bool,
    tunnel_write_shut: bool,
    out: Outcome,
    tap: &'a mut dyn Tap,
    /// One read buffer for the life of the stream (taken out while in use).
    scratch: Vec<u8>,
}

/// Runs until the stream ends; `early` is plaintext already read from the tunnel side.
pub fn run(
    tunnel: Tunnel,
    plain: TcpStream,
    early: Vec<u8>,
    deadline: Option<Instant>,
    cut: &Cut,
    tap: &mut dyn Tap,
) -> Outcome {
    let mut r = Relay {
        tunnel,
        plain,
        to_plain: Vec::new(),
        to_tunnel: Vec::new(),
        tunnel_eof: false,
        plain_eof: false,
        plain_write_shut: false,
        tunnel_write_shut: false,
        out: Outcome::default(),
        tap,
        scratch: vec![0u8; CHUNK],
    };
    let result = r.run(early, deadline, cut);
    let failed = result.is_err();
    r.out.reason = match result {
        Ok(reason) => reason,
        Err(e) => format!("error: {e}"),
    };
    r.close(failed);
    r.tap.flush(true);
    r.out
}

impl Relay<'_> {
    fn run(&mut self, early: Vec<u8>, deadline: Option<Instant>, cut: &Cut) -> io::Result<String> {
        for s in [self.tunnel.sock(), &self.plain] {
            s.set_nonblocking(true)?;
            let _ = s.set_nodelay(true);
        }
        // rustls holds what we hand it until the socket takes it; our own backlog rule
        // (read the plain side only when the tunnel has nothing pending) bounds it, so
        // its 64 KiB default cap must not turn a full buffer into a short write.
        if let Tunnel::Tls(c, _) = &mut self.tunnel {
            c.set_buffer_limit(None);
        }
        let poller = Arc::new(Poller::new()?);
        // Level-triggered: interest is changed only when it changes, not every pass.
        // SAFETY: both sockets outlive their registration: they are deleted from the
        // poller below, before this function returns and before they are dropped.
        unsafe {
            poller.add_with_mode(self.tunnel.sock(), Event::none(TUNNEL), PollMode::Level)?;
            poller.add_with_mode(&self.plain, Event::none(PLAIN), PollMode::Level)?;
        }
        cut.attach(poller.clone());
        let result = self.pump(&poller, early, deadline, cut);
        let _ = poller.delete(self.tunnel.sock());
        let _ = poller.delete(&self.plain);
        result
    }

    fn pump(&mut self, poller: &Poller, early: Vec<u8>, deadline: Option<Instant>, cut: &Cut) -> io::Result<String> {
        self.accept_from_tunnel(&early)?;
        self.drain_tls_plaintext()?;
        let mut events = Events::new();
        let mut armed = [(false, false); 2];
        loop {
            if let Some(reason) = cut.reason() {
                return Ok(reason);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok("grant expired".into());
            }
            self.write_plain()?;
            self.write_tunnel()?;
            self.half_close()?;
            if self.finished() {
                return Ok(if self.tunnel_eof { "client closed" } else { "target closed" }.into());
            }
            let want = [
                (self.want_tunnel_read(), self.want_tunnel_write()),
                (self.want_plain_read(), !self.to_plain.is_empty()),
            ];
            if want[TUNNEL] != armed[TUNNEL] {
                poller.modify_with_mode(
                    self.tunnel.sock(),
                    Event::new(TUNNEL, want[TUNNEL].0, want[TUNNEL].1),
                    PollMode::Level,
                )?;
            }
            if want[PLAIN] != armed[PLAIN] {
                poller.modify_with_mode(
                    &self.plain,
                    Event::new(PLAIN, want[PLAIN].0, want[PLAIN].1),
                    PollMode::Level,
                )?;
            }
            armed = want;
            events.clear();
            let until_deadline = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let timeout = match (until_deadline, self.tap.flush_due_in()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            poller.wait(&mut events, timeout)?;
            // A hung-up socket reports readable whatever we asked for: read only what
            // we want, so a full backlog is never overrun.
            for ev in events.iter() {
                match (ev.key, ev.readable) {
                    (TUNNEL, true) if self.want_tunnel_read() => self.read_tunnel()?,
                    (PLAIN, true) if self.want_plain_read() => self.read_plain()?,
                    _ => {}
                }
            }
            self.tap.flush(false);
        }
    }

    fn want_tunnel_read(&self) -> bool {
        !self.tunnel_eof && self.to_plain.len() < MAX_BACKLOG
    }

    fn want_tunnel_write(&self) -> bool {
        match &self.tunnel {
            Tunnel::Tls(c, _) => c.wants_write(),
            Tunnel::Plain(_) => !self.to_tunnel.is_empty(),
        }
    }

    fn want_plain_read(&self) -> bool {
        !self.plain_eof && !self.want_tunnel_write() && self.to_tunnel.len() < MAX_BACKLOG
    }

    fn finished(&self) -> bool {
        let flushed = self.to_plain.is_empty() && !self.want_tunnel_write();
        flushed && self.tunnel_eof && self.plain_eof
    }

    /// Hands tunnel plaintext to the tap, which decides what goes on.
    fn accept_from_tunnel(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut forward = Vec::with_capacity(bytes.len());
        let mut reply = Vec::new();
        self.tap.tunnel_to_plain(bytes, &mut forward, &mut reply);
        self.to_plain.extend_from_slice(&forward);
        if !reply.is_empty() {
            self.send_to_tunnel(&reply)?;
        }
        Ok(())
    }

    /// Queues plaintext for the tunnel side. With rustls' buffer limit lifted this
    /// cannot fall short; if it ever did, the stream fails rather than lose bytes.
    fn send_to_tunnel(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tunnel {
            Tunnel::Tls(c, _) => c.writer().write_all(bytes),
            Tunnel::Plain(_) => {
                self.to_tunnel.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn read_tunnel(&mut self) -> io::Result<()> {
        match &mut self.tunnel {
            Tunnel::Plain(s) => {
                let mut buf = std::mem::take(&mut self.scratch);
                let read = s.read(&mut buf);
                let result = match read {
                    Ok(0) => {
                        self.tunnel_eof = true;
                        Ok(())
                    }
                    Ok(n) => self.accept_from_tunnel(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        self.tunnel_eof = true;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.scratch = buf;
                result
            }
            Tunnel::Tls(..) => {
                // Several records per wake-up: one epoll round per 16 KiB record costs
                // more than the record.
                for _ in 0..TLS_READS_PER_WAKE {
                    let Tunnel::Tls(c, s) = &mut self.tunnel else { break };
                    match c.read_tls(s) {
                        Ok(0) => self.tunnel_eof = true,
                        Ok(_) => {
                            c.process_new_packets().map_err(io::Error::other)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.tunnel_eof = true,
                        Err(e) => return Err(e),
                    }
                    self.drain_tls_plaintext()?;
                    if self.tunnel_eof || !self.want_tunnel_read() {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Moves what rustls has decrypted to the plain side's queue.
    fn drain_tls_plaintext(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        let result = self.drain_into(&mut buf);
        self.scratch = buf;
        result
    }

    fn drain_into(&mut self, buf: &mut [u8]) -> io::Result<()> {
        loop {
            let n = match &mut self.tunnel {
                Tunnel::Tls(c, _) => match c.reader().read(buf) {
                    Ok(0) => {
                        self.tunnel_eof = true; // close_notify
                        return Ok(());
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.tunnel_eof = true;
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                },
                Tunnel::Plain(_) => return Ok(()),
            };
            self.accept_from_tunnel(&buf[..n])?;
        }
    }

    fn read_plain(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.scratch);
        let result = match self.plain.read(&mut buf) {
            Ok(0) => {
                self.plain_eof = true;
                Ok(())
            }
            Ok(n) => {
                self.out.plain_to_tunnel += n as u64;
                self.send_to_tunnel(&buf[..n])
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.plain_eof = true;
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.scratch = buf;
        result
    }

    fn write_plain(&mut self) -> io::Result<()> {
        while !self.to_plain.is_empty() {
            match self.plain.write(&self.to_plain) {
                Ok(n) => {
                    self.out.tunnel_to_plain += n as u64;
                    self.to_plain.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_tunnel(&mut self) -> io::Result<()> {
        match &mut self.tunnel {
            Tunnel::Tls(c, s) => {
                while c.wants_write() {
                    match c.write_tls(s) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Tunnel::Plain(s) => {
                while !self.to_tunnel.is_empty() {
                    match s.write(&self.to_tunnel) {
                        Ok(n) => {
                            self.to_tunnel.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
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
        if self.plain_eof && !self.want_tunnel_write() && !self.tunnel_write_shut {
            self.tunnel_write_shut = true;
            match &mut self.tunnel {
                Tunnel::Tls(c, _) => c.send_close_notify(),
                Tunnel::Plain(s) => {
                    let _ = s.shutdown(Shutdown::Write);
                }
            }
            self.write_tunnel()?;
        }
        Ok(())
    }

    /// Ends both sides: a TLS close_notify where possible, then the sockets. A
    /// failed stream gets no close_notify: the peer must not take it for a clean end.
    fn close(&mut self, failed: bool) {
        if let Tunnel::Tls(c, s) = &mut self.tunnel {
            if !self.tunnel_write_shut && !failed {
                c.send_close_notify();
            }
            let _ = s.set_nonblocking(false);
            let _ = s.set_write_timeout(Some(std::time::Duration::from_millis(200)));
            while c.wants_write() && c.write_tls(s).is_ok_and(|n| n > 0) {}
        }
        let _ = self.tunnel.sock().shutdown(Shutdown::Both);
        let _ = self.plain.shutdown(Shutdown::Both);
    }
}
