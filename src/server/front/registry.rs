//! The live client connections: admission under the global and per-address caps,
//! idle/busy state for shutdown, and the wait until none is left.
//!
//! Owns: the connection counts (and the `connections_open` gauge). Must never block
//! while holding its lock (socket `shutdown` is the only I/O done under it, and it
//! never blocks), and never let a connection in once stopping has begun.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Limits, Stats};

struct Live {
    /// A clone of the client socket, so that shutdown can end a blocked read.
    stream: TcpStream,
    ip: IpAddr,
    busy: bool,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    live: HashMap<u64, Live>,
    per_ip: HashMap<IpAddr, usize>,
    stopping: bool,
}

pub(super) struct Registry {
    table: Mutex<Table>,
    emptied: Condvar,
    stats: Arc<Stats>,
}

impl Registry {
    pub(super) fn new(stats: Arc<Stats>) -> Registry {
        Registry { table: Mutex::new(Table::default()), emptied: Condvar::new(), stats }
    }

    /// A poisoned lock only means a connection thread panicked; the table is still
    /// consistent (every change to it is a single step), so keep going.
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new, idle connection, or refuses it (`None`) when a cap is reached
    /// or the front is stopping.
    pub(super) fn admit(&self, stream: &TcpStream, ip: IpAddr, limits: &Limits) -> Option<u64> {
        let mut t = self.lock();
        let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
        if t.stopping || t.live.len() >= limits.max_connections || from_ip >= limits.max_connections_per_ip {
            return None;
        }
        let stream = stream.try_clone().ok()?;
        t.next_id += 1;
        let id = t.next_id;
        t.live.insert(id, Live { stream, ip, busy: false });
        t.per_ip.insert(ip, from_ip + 1);
        self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    fn leave(&self, id: u64) {
        let mut t = self.lock();
        let Some(live) = t.live.remove(&id) else {
            return;
        };
        if let Some(n) = t.per_ip.get_mut(&live.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&live.ip);
            }
        }
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if t.live.is_empty() {
            self.emptied.notify_all();
        }
    }

    fn set_busy(&self, id: u64, busy: bool) -> bool {
        let mut t = self.lock();
        let stopping = t.stopping;
        if let Some(live) = t.live.get_mut(&id) {
            live.busy = busy;
        }
        !stopping
    }

    /// Starts stopping: no one is admitted any more, and idle connections are cut at
    /// once (busy ones see `stopping` when their response is written). Returns false
    /// if stopping had already begun.
    pub(super) fn stop(&self) -> bool {
        let mut t = self.lock();
        if t.stopping {
            return false;
        }
        t.stopping = true;
        for live in t.live.values().filter(|l| !l.busy) {
            let _ = live.stream.shutdown(Shutdown::Both);
        }
        true
    }

    pub(super) fn stopping(&self) -> bool {
        self.lock().stopping
    }

    pub(super) fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// Waits until every connection has left, at most `grace`; then cuts the ones left
    /// so their threads end soon. Returns how many had to be cut.
    pub(super) fn drain(&self, grace: Duration) -> usize {
        let until = Instant::now() + grace;
        let mut t = self.lock();
        while !t.live.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            t = match self.emptied.wait_timeout(t, left) {
                Ok((t, _)) => t,
                Err(e) => e.into_inner().0,
            };
        }
        for live in t.live.values() {
            let _ = live.stream.shutdown(Shutdown::Both);
        }
        t.live.len()
    }
}

/// A connection's place in the registry, held by its thread; dropping it leaves.
pub(super) struct Admission {
    registry: Arc<Registry>,
    id: u64,
}

impl Admission {
    pub(super) fn new(registry: Arc<Registry>, id: u64) -> Admission {
        Admission { registry, id }
    }

    /// A request has begun: shutdown lets it finish.
    pub(super) fn busy(&self) {
        self.registry.set_busy(self.id, true);
    }

    /// Waiting for the next request; false if the front is stopping (close instead).
    pub(super) fn idle(&self) -> bool {
        self.registry.set_busy(self.id, false)
    }

    pub(super) fn stopping(&self) -> bool {
        self.registry.stopping()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.registry.leave(self.id);
    }
}
