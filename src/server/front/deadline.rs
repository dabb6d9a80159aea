//! Absolute deadlines on blocking sockets, and the client transport (plain or TLS).
//!
//! Owns: turning "this phase ends at instant T" into per-call socket timeouts, so that a
//! peer sending a byte now and then never extends a phase. Must never retry a timed-out
//! call or reset a deadline by itself: only the connection loop moves deadlines.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The two socket kinds the front talks over: clients (TCP) and tiny_http (Unix).
pub(super) trait Timeouts {
    fn read_timeout_to(&self, left: Duration) -> io::Result<()>;
    fn write_timeout_to(&self, left: Duration) -> io::Result<()>;
}

impl Timeouts for TcpStream {
    fn read_timeout_to(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))
    }
    fn write_timeout_to(&self, left: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(left))
    }
}

impl Timeouts for UnixStream {
    fn read_timeout_to(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))
    }
    fn write_timeout_to(&self, left: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(left))
    }
}

/// A blocking socket whose every read and write ends by `deadline`.
pub(super) struct Deadlined<S> {
    inner: S,
    deadline: Instant,
}

impl<S: Timeouts> Deadlined<S> {
    pub(super) fn new(inner: S, deadline: Instant) -> Self {
        Deadlined { inner, deadline }
    }

    pub(super) fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(super) fn into_inner(self) -> S {
        self.inner
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "block for ever" to the OS: refuse it instead.
        if left < Duration::from_millis(1) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

/// A socket timeout surfaces as `WouldBlock` on Linux; callers (rustls included) would
/// take that for a non-blocking socket and spin, so it becomes `TimedOut` here.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
        _ => e,
    }
}

impl<S: Timeouts + Read> Read for Deadlined<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_timeout_to(self.left()?)?;
        self.inner.read(buf).map_err(timed_out)
    }
}

impl<S: Timeouts + Write> Write for Deadlined<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_timeout_to(self.left()?)?;
        self.inner.write(buf).map_err(timed_out)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a client connection speaks over once accepted (and, for TLS, handshaken).
pub(super) enum Transport {
    Plain(Deadlined<TcpStream>),
    Tls(Box<StreamOwned<ServerConnection, Deadlined<TcpStream>>>),
}

impl Transport {
    /// Completes the TLS handshake within `deadline`; plain connections pass through.
    pub(super) fn open(tcp: TcpStream, tls: Option<&Arc<ServerConfig>>, deadline: Instant) -> io::Result<Transport> {
        let mut sock = Deadlined::new(tcp, deadline);
        let Some(config) = tls else {
            return Ok(Transport::Plain(sock));
        };
        let mut conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(Transport::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    pub(super) fn set_deadline(&mut self, deadline: Instant) {
        self.sock_mut().set_deadline(deadline);
    }

    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s.get_ref(),
            Transport::Tls(s) => s.sock.get_ref(),
        }
    }

    pub(super) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// The socket (and TLS state) for a relay that takes the connection over.
    pub(super) fn into_tunnel(self) -> crate::gateway::relay::Tunnel {
        use crate::gateway::relay::Tunnel;
        match self {
            Transport::Plain(s) => Tunnel::Plain(s.into_inner()),
            Transport::Tls(b) => {
                let StreamOwned { conn, sock } = *b;
                Tunnel::Tls(Box::new(conn.into()), sock.into_inner())
            }
        }
    }

    fn sock_mut(&mut self) -> &mut Deadlined<TcpStream> {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &mut s.sock,
        }
    }

    /// Ends our side politely (TLS close_notify, then FIN) and reads what the client
    /// still sends, bounded in bytes and time, so that our last reply is not destroyed
    /// by an RST that unread data would trigger on close.
    pub(super) fn linger(mut self, max_bytes: usize, max_wait: Duration) {
        self.set_deadline(Instant::now() + max_wait);
        if let Transport::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
        let sock = self.sock_mut();
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < max_bytes {
            match sock.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}
