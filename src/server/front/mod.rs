//! jitgate's own listener: the buffering front that sits before tiny_http the way nginx
//! sits before an app server (see DESIGN.md, "Decided on purpose").
//!
//! Owns: the TCP socket, TLS (rustls 0.23), the connection caps, every client-facing
//! deadline, request-head parsing with its size limits and smuggling rules, client
//! keep-alive, and the hand-off of each complete, bounded request to tiny_http over a
//! Unix socket, with the client's address in [`PEER_HEADER`]. Must never let a client
//! set an `X-Jitgate-*` header, never hand tiny_http a partial or unbounded request,
//! and never log a header value (Authorization and Cookie carry secrets).
//!
//! Threads: [`Front::run`] accepts in the calling thread; each connection gets one
//! `conn` thread, bounded by [`Limits::max_connections`] and
//! [`Limits::max_connections_per_ip`].

mod conn;
mod deadline;
pub mod head;
mod registry;
pub mod reply;
mod upstream;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use head::RequestHead;
pub use reply::Reject;

use registry::{Admission, Registry};

/// `ip:port` of the TCP client (`[v6]:port` for IPv6); set only by the front.
pub const PEER_HEADER: &str = "X-Jitgate-Peer";
/// `https` or `http`: how the client reached the front.
pub const SCHEME_HEADER: &str = "X-Jitgate-Scheme";

/// How long `run` waits for busy connections once stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const CONN_STACK: usize = 256 * 1024;

/// Caps and deadlines. Every deadline is absolute for its phase: a client trickling
/// bytes never extends it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Live client connections; over it, plain HTTP gets a 503, TLS is closed.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// The whole TLS handshake.
    pub handshake_timeout: Duration,
    /// From the first byte of a request head to its end (and, on a new connection,
    /// the wait for that first byte).
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    /// Keep-alive: the wait for the next request's first byte.
    pub idle_timeout: Duration,
    /// tiny_http's whole answer; long polls last up to 60 s.
    pub upstream_timeout: Duration,
    /// Writing one response.
    pub write_timeout: Duration,
    /// Over it: 431.
    pub max_head_bytes: usize,
    /// Over it: 413, before the body is read.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_ip: 128,
            handshake_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Counters for `/metrics`. Read them with `load(Ordering::Relaxed)`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Gauge: client connections alive now.
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections refused at accept for a global or per-address cap.
    pub refused_over_cap: AtomicU64,
    /// Handshake, head, body, write and upstream deadlines that passed (an idle
    /// keep-alive connection timing out is normal and not counted).
    pub timeouts: AtomicU64,
    /// Requests handed to tiny_http.
    pub requests: AtomicU64,
    /// Requests the front refused itself with a 4xx.
    pub bad_requests: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection thread shares.
/// Serves tunnel upgrades (`GET /api/v1/tunnel/{id}` with `Upgrade`): decides
/// whether one may open, and hears how it ended. The gateway implements it.
pub trait Tunnels: Send + Sync {
    fn open(&self, head: &RequestHead, peer: SocketAddr) -> Result<TunnelOpen, Reject>;
    /// Relays the upgraded connection until the stream ends, without blocking the
    /// caller; `ended` runs once it has (it must not block).
    fn relay(
        &self,
        open: TunnelOpen,
        tunnel: crate::gateway::relay::Tunnel,
        early: Vec<u8>,
        ended: Box<dyn FnOnce() + Send>,
    );
}

/// A tunnel the gateway allowed: the target already connected, the grant's deadline,
/// the cut-off signal, and a tap on client-to-target bytes.
pub struct TunnelOpen {
    pub target: TcpStream,
    pub deadline: Instant,
    pub cut: Arc<crate::gateway::relay::Cut>,
    pub tap: Box<dyn crate::gateway::relay::Tap>,
    /// Extra response headers of the `101` (stream id, expiry).
    pub headers: Vec<(String, String)>,
    pub closed: TunnelClosed,
}

/// What the gateway needs back when a stream ends.
pub struct TunnelClosed {
    pub request_id: String,
    pub stream_seq: i64,
    pub cut: Arc<crate::gateway::relay::Cut>,
}

struct Inner {
    tunnels: Option<Arc<dyn Tunnels>>,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    upstream: PathBuf,
    stats: Arc<Stats>,
    registry: Arc<Registry>,
    local_addr: SocketAddr,
}

/// The bound listener; [`Front::run`] serves until [`ShutdownHandle::shutdown`].
pub struct Front {
    listener: TcpListener,
    inner: Arc<Inner>,
}

/// Stops a running [`Front`] from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    inner: Arc<Inner>,
}

impl ShutdownHandle {
    /// Idempotent. Stops admitting, cuts idle connections, and wakes the blocked
    /// `accept` by connecting to it.
    pub fn shutdown(&self) {
        if !self.inner.registry.stop() {
            return;
        }
        let wake = wake_address(self.inner.local_addr);
        if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            warn!("could not wake the accept loop at {wake}: {e}");
        }
    }
}

/// `accept` on a wildcard address is woken through loopback.
fn wake_address(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, local.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, local.port()).into(),
        _ => local,
    }
}

impl Front {
    /// Binds `addr`. With `tls`, every connection must complete a TLS handshake; the
    /// config's ALPN is set to `http/1.1`, the only protocol spoken. `upstream` is
    /// tiny_http's Unix socket (keep it in a 0700 directory).
    pub fn bind(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        upstream: PathBuf,
        limits: Limits,
    ) -> io::Result<Front> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let tls = tls.map(|config| {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        });
        let stats = Arc::new(Stats::default());
        let registry = Arc::new(Registry::new(Arc::clone(&stats)));
        let inner = Inner { tunnels: None, limits, tls, upstream, stats, registry, local_addr };
        Ok(Front { listener, inner: Arc::new(inner) })
    }

    /// Serves tunnel upgrades through `tunnels` (before `run`).
    pub fn with_tunnels(mut self, tunnels: Arc<dyn Tunnels>) -> Front {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tunnels = Some(tunnels);
        }
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.inner.stats)
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { inner: Arc::clone(&self.inner) }
    }

    /// Blocks: accepts until shutdown, then stops accepting, closes idle keep-alive
    /// connections at once, lets busy ones finish their current response (sent with
    /// `Connection: close`), waits for them (at most ~10 s), and returns.
    pub fn run(self) -> io::Result<()> {
        let scheme = if self.inner.tls.is_some() { "https" } else { "http" };
        info!("listening on {scheme}://{}", self.inner.local_addr);
        while !self.inner.registry.stopping() {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) => accept_failed(&e),
            }
        }
        drop(self.listener);
        let open = self.inner.registry.live();
        info!("stopping: waiting for {open} connection(s) to end");
        let cut = self.inner.registry.drain(SHUTDOWN_GRACE);
        if cut > 0 {
            warn!("stopped with {cut} connection(s) cut after {SHUTDOWN_GRACE:?}");
        }
        Ok(())
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let inner = &self.inner;
        // The wake-up connection of shutdown, or a client racing it: dropped.
        if inner.registry.stopping() {
            return;
        }
        // An IPv4 client on a dual-stack socket counts (and is named) by its IPv4 address.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let _ = stream.set_nodelay(true);
        let Some(id) = inner.registry.admit(&stream, peer.ip(), &inner.limits) else {
            Stats::bump(&inner.stats.refused_over_cap);
            debug!("{peer}: refused, over the connection cap");
            refuse(stream, inner.tls.is_none());
            return;
        };
        let admission = Admission::new(Arc::clone(&inner.registry), id);
        let shared = Arc::clone(inner);
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || conn::serve(&shared, admission, stream, peer));
        // On failure the closure, and with it the admission, is dropped: the slot frees.
        if let Err(e) = spawned {
            warn!("{peer}: no thread for the connection: {e}");
        }
    }
}

/// Over a cap. Plain HTTP gets a short 503 (written without blocking: the accept loop
/// must never wait on one client); TLS is just closed, as a reply would need a handshake.
fn refuse(mut stream: TcpStream, plain: bool) {
    if !plain || stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = stream.write_all(&reply::Reject::too_many_connections().to_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    // What already arrived is read so that closing does not turn into an RST; bounded,
    // as a client streaming into the socket could otherwise hold the accept loop.
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut scratch), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Out of descriptors or memory, accept fails at once until something frees: back off
/// briefly rather than spin.
fn accept_failed(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => {}
        _ => {
            warn!("accept failed: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
