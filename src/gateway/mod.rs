//! The gateway: access that is enforced, not advisory. `jitgate connect` opens one
//! tunnel stream per local TCP connection (`GET /api/v1/tunnel/{request_id}` with
//! `Upgrade`, over the same TLS port); the gateway checks the caller's token, that
//! the grant is theirs, APPROVED and unexpired, and that the session is live, then
//! connects to the connection's target and the listener relays bytes until the grant
//! ends. Each stream is bound to the time left on its grant, and a watcher cuts every
//! stream of a grant the moment it is revoked or ended (woken by the hub, not polled).

pub mod client;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod hooks;
pub mod pgwire;
pub mod relay;

use crate::domain::policy::Kind;
use crate::domain::Status;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::server::front::{Reject, RequestHead, TunnelClosed, TunnelOpen, Tunnels};
use crate::store::tokens::{self, Scope};
use crate::store::{requests, streams, users, Store};
use crate::time::now_ms;
use engine::Engine;
use relay::{Cut, NoTap, Outcome, Relay, Tunnel};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Live streams one grant may hold by default (`limits.max_streams_per_grant`):
/// streams count against the listener's connection caps, so one user must not be able
/// to take every slot of their address.
pub const MAX_STREAMS_PER_GRANT: usize = 32;
pub const SESSION_HEADER: &str = "X-Jitgate-Session";

#[derive(Default)]
pub struct Stats {
    pub streams_open: AtomicU64,
    pub streams_total: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// Request id → its live streams, each with its session id.
type LiveStreams = HashMap<String, Vec<(String, Arc<Cut>)>>;

pub struct Gateway {
    store: Arc<Store>,
    /// Live streams by request id, each with the session it belongs to, to cut them
    /// when the grant or the session ends.
    live: Arc<Mutex<LiveStreams>>,
    pub stats: Arc<Stats>,
    max_streams: usize,
    engine: Engine,
    recorder: Mutex<Option<(Sender<Record>, JoinHandle<()>)>>,
    stopping: std::sync::atomic::AtomicBool,
}

/// Database writes of the relays, done on a thread of their own so that a relay
/// thread never waits for a commit.
enum Record {
    Queries(i64, Vec<pgwire::Captured>),
    Closed(i64, Outcome, i64),
    /// Everything before it is written; what comes after is dropped.
    Stop,
}

impl Gateway {
    /// `relay_threads` shards relay the streams (see `engine.rs`).
    pub fn new(store: Arc<Store>, max_streams: usize, relay_threads: usize) -> std::io::Result<Arc<Gateway>> {
        let engine = Engine::start("relay", relay_threads)?;
        let (tx, rx) = mpsc::channel::<Record>();
        let writer = Arc::clone(&store);
        let thread = std::thread::Builder::new().name("tunnel-record".into()).spawn(move || {
            for record in rx {
                if matches!(record, Record::Stop) {
                    break;
                }
                record_one(&writer, record);
            }
        })?;
        Ok(Arc::new(Gateway {
            store,
            live: Arc::default(),
            stats: Arc::default(),
            max_streams,
            engine,
            recorder: Mutex::new(Some((tx, thread))),
            stopping: Default::default(),
        }))
    }

    /// Ends every stream and waits until their ends are recorded (at shutdown, after
    /// the listener stopped).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.engine.stop("server stopping");
        let recorder = self.recorder.lock().ok().and_then(|mut r| r.take());
        if let Some((tx, thread)) = recorder {
            // An explicit end rather than the channel closing: a tunnel still being
            // opened on a connection thread holds a sender too.
            let _ = tx.send(Record::Stop);
            let _ = thread.join();
        }
    }

    fn recorder(&self) -> Option<Sender<Record>> {
        self.recorder.lock().ok().and_then(|r| r.as_ref().map(|(tx, _)| tx.clone()))
    }

    /// Watches for changes and cuts the streams of grants that ended; cuts all at
    /// shutdown.
    pub fn spawn_watcher(self: &Arc<Self>, hub: Arc<Hub>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let gw = Arc::clone(self);
        std::thread::Builder::new().name("tunnel-watch".into()).spawn(move || {
            let mut seen = hub.version();
            loop {
                seen = hub.wait(seen, None);
                if hub.stopping() {
                    gw.cut_all("server stopping");
                    return;
                }
                gw.cut_ended();
            }
        })
    }

    fn cut_ended(&self) {
        let ids: Vec<String> = match self.live.lock() {
            Ok(l) => l.keys().cloned().collect(),
            Err(_) => return,
        };
        let now = now_ms();
        for id in ids {
            let Ok(view) = self.store.read(|c| requests::get(c, &id)) else { continue };
            let r = &view.request;
            if r.live_until(now).is_none() {
                self.cut_request(&id, &end_reason(r));
                continue;
            }
            // A session ended on its own (the client, or an admin) takes its streams along.
            let sessions: Vec<(String, Arc<Cut>)> =
                self.live.lock().map(|l| l.get(&id).cloned().unwrap_or_default()).unwrap_or_default();
            for (session, cut) in sessions {
                if self.store.read(|c| crate::store::sessions::is_ended(c, &session)).unwrap_or(false) {
                    cut.cut("session ended");
                }
            }
        }
    }

    pub fn cut_request(&self, request_id: &str, reason: &str) {
        if let Ok(live) = self.live.lock() {
            for (_, cut) in live.get(request_id).into_iter().flatten() {
                cut.cut(reason);
            }
        }
    }

    pub fn cut_all(&self, reason: &str) {
        if let Ok(live) = self.live.lock() {
            for (_, cut) in live.values().flatten() {
                cut.cut(reason);
            }
        }
    }

    fn authorize(&self, head: &RequestHead, peer: SocketAddr) -> Result<TunnelOpen> {
        let now = now_ms();
        let request_id = head.target.trim_start_matches("/api/v1/tunnel/").split('?').next().unwrap_or("").to_string();
        crate::domain::check_name("request", &request_id).map_err(|_| Error::not_found("request", &request_id))?;
        let token =
            header(head, "authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::trim).map(str::to_string));
        let token = token.ok_or_else(|| Error::Unauthenticated("send Authorization: Bearer <token>".into()))?;
        let found = self
            .store
            .read(|c| tokens::authenticate(c, &token, now))?
            .ok_or_else(|| Error::Unauthenticated("unknown, expired or revoked token".into()))?;
        if found.scope != Scope::Api {
            return Err(Error::Forbidden(format!("a {} token cannot open tunnels", found.scope.as_str())));
        }
        let user = self.store.read(|c| users::get_by_id(c, found.user_id))?;
        let (view, conn) =
            self.store.read(|c| Ok((requests::get(c, &request_id)?, requests::policy_of(c, &request_id)?)))?;
        let r = &view.request;
        if r.user != user.username {
            // Someone else's grant is as good as absent.
            return Err(Error::not_found("request", &request_id));
        }
        let expires_at = r.live_until(now).ok_or_else(|| Error::WrongState {
            id: request_id.clone(),
            status: r.status.to_string(),
            action: "tunnelled to",
        })?;
        let target = match (conn.kind, &conn.target) {
            (Kind::Postgres | Kind::Tcp, Some(t)) => t.clone(),
            _ => {
                return Err(Error::bad(
                    "not_proxied",
                    format!("{} is not a proxied connection (kind {})", conn.name, conn.kind.as_str()),
                ))
            }
        };
        let open_now = self.live.lock().map(|l| l.get(&request_id).map_or(0, Vec::len)).unwrap_or(0);
        if open_now >= self.max_streams {
            let message = format!("{request_id} already has {} live streams: close some first", self.max_streams);
            return Err(Error::conflict("too_many_streams", message));
        }
        let session = header(head, SESSION_HEADER).ok_or_else(|| {
            Error::bad("no_session", format!("send {SESSION_HEADER}: the id from POST /api/v1/sessions"))
        })?;
        let target_sock = connect(&target)?;
        let (stream_id, stream_seq) =
            self.store.write(|tx| streams::open(tx, &user, &request_id, &session, &peer.to_string(), &target, now))?;
        let cut = Arc::new(Cut::default());
        if let Ok(mut live) = self.live.lock() {
            live.entry(request_id.clone()).or_default().push((session.clone(), Arc::clone(&cut)));
        }
        // The grant may have ended between the check and the registration.
        if self
            .store
            .read(|c| requests::get(c, &request_id))
            .map(|v| v.request.status != Status::Approved)
            .unwrap_or(true)
        {
            cut.cut("grant ended");
        }
        self.stats.streams_open.fetch_add(1, Ordering::Relaxed);
        self.stats.streams_total.fetch_add(1, Ordering::Relaxed);
        // From now, not from when the checks began: connecting and writing took time.
        let deadline = Instant::now() + Duration::from_millis((expires_at - now_ms()).max(0) as u64);
        let tap: Box<dyn relay::Tap> = match (conn.kind, self.recorder()) {
            (Kind::Postgres, Some(recorder)) => Box::new(pgwire::PgTap::new(move |batch: Vec<pgwire::Captured>| {
                let _ = recorder.send(Record::Queries(stream_seq, batch));
            })),
            _ => Box::new(NoTap),
        };
        let headers = vec![
            ("X-Jitgate-Stream".to_string(), stream_id),
            ("X-Jitgate-Expires-At".to_string(), crate::time::rfc3339(expires_at)),
        ];
        let closed = TunnelClosed { request_id, stream_seq, cut: Arc::clone(&cut) };
        Ok(TunnelOpen { target: target_sock, deadline, cut, tap, headers, closed })
    }
}

fn header(head: &RequestHead, name: &str) -> Option<String> {
    head.header(name).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_string)
}

fn connect(target: &str) -> Result<TcpStream> {
    let unreachable = |e: String| Error::Unavailable(format!("cannot reach the target {target}: {e}"));
    let addrs: Vec<SocketAddr> = target.to_socket_addrs().map_err(|e| unreachable(e.to_string()))?.collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(last))
}

/// Relay threads of the server: one per core, at most 8. More would only add
/// threads; fewer would leave a core idle under many bulk streams.
pub fn relay_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8)
}

/// Why a grant's streams are cut, in the words the CLI prints.
fn end_reason(r: &crate::domain::request::Request) -> String {
    let why = r.end_reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
    match r.status {
        Status::Revoked => format!("grant revoked by {}{why}", r.ended_by.as_deref().unwrap_or("?")),
        Status::Executed if r.ended_by.as_deref() == Some(crate::audit::SYSTEM) => "grant expired".into(),
        Status::Executed => format!("grant ended by {}", r.ended_by.as_deref().unwrap_or("?")),
        Status::Approved => "grant expired".into(),
        other => format!("grant is {other}"),
    }
}

impl Tunnels for Gateway {
    fn open(&self, head: &RequestHead, peer: SocketAddr) -> std::result::Result<TunnelOpen, Reject> {
        if self.stopping.load(Ordering::Relaxed) {
            let message = "the server is stopping".to_string();
            return Err(Reject { status: 503, code: "unavailable", message });
        }
        self.authorize(head, peer).map_err(|e| {
            if e.status() >= 500 && !matches!(e, Error::Unavailable(_)) {
                crate::error!("tunnel from {peer}: {}", e.log_detail());
            }
            let status = if matches!(e, Error::Unavailable(_)) { 502 } else { e.status() };
            Reject { status, code: e.code(), message: e.user_message() }
        })
    }

    fn relay(&self, open: TunnelOpen, tunnel: Tunnel, early: Vec<u8>, ended: Box<dyn FnOnce() + Send>) {
        let TunnelOpen { target, deadline, cut, tap, closed, .. } = open;
        let (live, stats, recorder) = (Arc::clone(&self.live), Arc::clone(&self.stats), self.recorder());
        let done: engine::Done = Box::new(move |outcome: Outcome| {
            stream_ended(&live, &stats, &closed, &outcome);
            if let Some(r) = recorder {
                let _ = r.send(Record::Closed(closed.stream_seq, outcome, now_ms()));
            }
            ended();
        });
        match Relay::new(tunnel, target, &early, tap) {
            Ok(relay) => self.engine.spawn(engine::Job { relay, deadline: Some(deadline), cut, done }),
            Err(e) => done(Outcome { reason: format!("error: {e}"), ..Outcome::default() }),
        }
    }
}

/// The in-memory side of a stream's end (the database side goes to the recorder).
fn stream_ended(live: &Mutex<LiveStreams>, stats: &Stats, closed: &TunnelClosed, outcome: &Outcome) {
    stats.streams_open.fetch_sub(1, Ordering::Relaxed);
    stats.bytes_up.fetch_add(outcome.tunnel_to_plain, Ordering::Relaxed);
    stats.bytes_down.fetch_add(outcome.plain_to_tunnel, Ordering::Relaxed);
    if let Ok(mut live) = live.lock() {
        if let Some(list) = live.get_mut(&closed.request_id) {
            list.retain(|(_, c)| !Arc::ptr_eq(c, &closed.cut));
            if list.is_empty() {
                live.remove(&closed.request_id);
            }
        }
    }
}

fn record_one(store: &Store, record: Record) {
    let written = match &record {
        Record::Queries(seq, batch) => store.write(|tx| streams::record_queries(tx, *seq, batch)),
        Record::Closed(seq, o, at) => {
            store.write(|tx| streams::close(tx, *seq, &o.reason, o.tunnel_to_plain, o.plain_to_tunnel, *at))
        }
        Record::Stop => return,
    };
    if let Err(e) = written {
        let what = if matches!(record, Record::Queries(..)) { "queries of" } else { "the end of" };
        crate::error!("cannot record {what} a stream: {}", e.log_detail());
    }
}
