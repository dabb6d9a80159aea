//! The relay engine: a few threads, each an epoll loop over many streams, instead of
//! a thread per stream.
//!
//! Why: on a small box the cost of a relayed message is mostly the wake-up, not the
//! copy. With a thread per stream every message of every stream is a context switch
//! into its own thread; with one loop per shard, a thread that wakes serves every
//! stream that became ready meanwhile, and 1,000 streams cut at once are closed by a
//! couple of threads in a row instead of 1,000 threads fighting for two cores.
//!
//! Each shard owns an epoll instance, its streams, a heap of deadlines (a stream lives
//! no longer than its grant) and an eventfd through which other threads hand it new
//! streams and cuts. Sockets are registered once, edge-triggered for input and output,
//! and never re-armed (see `relay.rs` for the readiness rules). A stream that used up
//! its turn's budget goes to the back of a run queue, so a bulk transfer cannot starve
//! the interactive streams of the same shard.
//!
//! `done` callbacks run on the shard's thread: they must not block (the gateway's
//! records its database writes on a thread of its own).

use super::relay::{Cut, Outcome, Relay, Side, Turn};
use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The shared read buffer of a shard: one socket read at most.
const SCRATCH: usize = 256 * 1024;
/// How often taps (the SQL recorder) are offered a flush while they hold something.
const TAP_TICK: Duration = Duration::from_millis(100);
/// Event data of the shard's own eventfd (stream keys are `id << 1 | side`).
const WAKE: u64 = u64::MAX;
/// The longest single wait (see `Loop::run`).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Runs when a stream ended, with how it ended. Must not block.
pub type Done = Box<dyn FnOnce(Outcome) + Send>;

/// A stream to relay.
pub struct Job {
    pub relay: Relay,
    /// When the grant ends: the stream is cut then, whatever else happens.
    pub deadline: Option<Instant>,
    pub cut: Arc<Cut>,
    pub done: Done,
}

pub struct Engine {
    shards: Vec<Shard>,
    next_id: AtomicU64,
}

struct Shard {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What other threads share with a shard's loop.
struct Shared {
    inbox: Mutex<Inbox>,
    wake: OwnedFd,
    streams: AtomicUsize,
}

#[derive(Default)]
struct Inbox {
    commands: Vec<Command>,
    /// The loop has stopped (asked to, or failed): it takes nothing more.
    closed: bool,
}

enum Command {
    Add(u64, Box<Job>),
    Cut(u64),
    Stop(String),
}

impl Shared {
    /// Queues a command for the loop; gives it back if the loop has stopped.
    fn send(&self, command: Command) -> Result<(), Command> {
        match self.inbox.lock() {
            Ok(mut inbox) if !inbox.closed => inbox.commands.push(command),
            _ => return Err(command),
        }
        // A failed write means the counter is already non-zero: the loop will wake.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.inbox.lock().map_or(true, |inbox| inbox.closed)
    }

    /// Marks the loop stopped; returns what was queued and never taken.
    fn close(&self) -> Vec<Command> {
        match self.inbox.lock() {
            Ok(mut inbox) => {
                inbox.closed = true;
                std::mem::take(&mut inbox.commands)
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Ends a stream that no loop will run (the engine stopped), on the caller's thread.
fn end_unrun(job: Job, reason: &str) {
    let Job { relay, done, .. } = job;
    done(relay.finish(reason.to_string(), false));
}

impl Engine {
    /// Starts `threads` shards (at least one), named `name`.
    pub fn start(name: &str, threads: usize) -> io::Result<Engine> {
        let mut shards = Vec::new();
        for _ in 0..threads.max(1) {
            let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            let shared = Arc::new(Shared { inbox: Mutex::default(), wake, streams: AtomicUsize::new(0) });
            let mut lp = Loop::new(Arc::clone(&shared))?;
            let thread = std::thread::Builder::new().name(name.into()).spawn(move || lp.run())?;
            shards.push(Shard { shared, thread: Mutex::new(Some(thread)) });
        }
        Ok(Engine { shards, next_id: AtomicU64::new(0) })
    }

    /// Streams relayed now, over all shards.
    pub fn streams(&self) -> usize {
        self.shards.iter().map(|s| s.shared.streams.load(Ordering::Relaxed)).sum()
    }

    /// Hands a stream over to the shard with the fewest streams (a session's streams
    /// spread over the cores: tying them to one shard gained nothing measurable for
    /// pgbench and would put a session's parallel bulk streams on one core).
    /// A stream given after the engine stopped is ended at once, on this thread.
    pub fn spawn(&self, job: Job) {
        let open = self.shards.iter().filter(|s| !s.shared.is_closed());
        let Some(shard) = open.min_by_key(|s| s.shared.streams.load(Ordering::Relaxed)) else {
            return end_unrun(job, "relay engine stopped");
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        shard.shared.streams.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shard.shared);
        job.cut.on_cut(Box::new(move || {
            let _ = shared.send(Command::Cut(id));
        }));
        if let Err(Command::Add(_, job)) = shard.shared.send(Command::Add(id, Box::new(job))) {
            shard.shared.streams.fetch_sub(1, Ordering::Relaxed);
            end_unrun(*job, "relay engine stopped");
        }
    }

    /// Ends every stream with `reason` and stops the threads (their `done` callbacks
    /// have all run when this returns).
    pub fn stop(&self, reason: &str) {
        for s in &self.shards {
            let _ = s.shared.send(Command::Stop(reason.to_string()));
        }
        for s in &self.shards {
            if let Some(t) = s.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop("stopping");
    }
}

struct Entry {
    relay: Relay,
    cut: Arc<Cut>,
    done: Done,
    deadline: Option<Instant>,
    /// In the run queue already.
    queued: bool,
}

struct Loop {
    epoll: OwnedFd,
    shared: Arc<Shared>,
    streams: HashMap<u64, Entry>,
    runq: VecDeque<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_tap_tick: Option<Instant>,
    scratch: Vec<u8>,
    stopping: Option<String>,
}

/// However the loop ends (asked to, failed, or a callback panicked), its streams and
/// the streams queued for it end with it, and the shard takes no more.
impl Drop for Loop {
    fn drop(&mut self) {
        self.shut_down("relay engine stopped");
    }
}

fn key(id: u64, side: Side) -> u64 {
    id << 1 | u64::from(side == Side::Plain)
}

impl Loop {
    fn new(shared: Arc<Shared>) -> io::Result<Loop> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&epoll, &shared.wake, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        Ok(Loop {
            epoll,
            shared,
            streams: HashMap::new(),
            runq: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            next_tap_tick: None,
            scratch: vec![0u8; SCRATCH],
            stopping: None,
        })
    }

    fn run(&mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        loop {
            if let Some(reason) = self.stopping.clone() {
                return self.shut_down(&reason);
            }
            events.clear();
            // Capped: a month-long grant's deadline would need epoll_pwait2, which
            // older kernels and syscall filters refuse; waking hourly costs nothing.
            let timeout = self
                .timeout()
                .map(|d| d.min(MAX_WAIT))
                .map(|d| Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) });
            let got = epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), timeout.as_ref());
            match got {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    crate::error!("relay engine: epoll_wait failed ({e}); ending its streams");
                    self.stopping = Some(format!("relay engine failed: {e}"));
                    continue;
                }
            }
            for ev in &events {
                let data = ev.data.u64();
                if data == WAKE {
                    self.take_inbox();
                    continue;
                }
                let (id, side) = (data >> 1, if data & 1 == 1 { Side::Plain } else { Side::Tunnel });
                let flags = ev.flags;
                use epoll::EventFlags as F;
                // Urgent data too: `recv` stops short at its mark (see relay.rs).
                let exhaust = flags.intersects(F::HUP | F::ERR | F::RDHUP | F::PRI);
                if let Some(e) = self.streams.get_mut(&id) {
                    e.relay.ready(side, flags.contains(F::IN), flags.contains(F::OUT), exhaust);
                    if !e.queued {
                        e.queued = true;
                        self.runq.push_back(id);
                    }
                }
            }
            self.run_queue();
            self.expire();
            self.tick_taps();
        }
    }

    /// Until the next deadline or tap tick; zero while streams wait for their turn.
    fn timeout(&self) -> Option<Duration> {
        if !self.runq.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
        [deadline, self.next_tap_tick].into_iter().flatten().min().map(|at| at.saturating_duration_since(now))
    }

    /// Ends every stream, and every stream still queued for this loop, with
    /// `reason`; from then on the shard takes nothing more. Idempotent.
    fn shut_down(&mut self, reason: &str) {
        for command in self.shared.close() {
            if let Command::Add(_, job) = command {
                self.shared.streams.fetch_sub(1, Ordering::Relaxed);
                end_unrun(*job, reason);
            }
        }
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            self.end(id, reason.to_string(), false);
        }
    }

    fn take_inbox(&mut self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.shared.wake, &mut counter);
        let commands = match self.shared.inbox.lock() {
            Ok(mut inbox) => std::mem::take(&mut inbox.commands),
            Err(_) => return,
        };
        for command in commands {
            match command {
                Command::Add(id, job) => self.add(id, *job),
                Command::Cut(id) => {
                    if let Some(reason) = self.streams.get(&id).and_then(|e| e.cut.reason()) {
                        self.end(id, reason, false);
                    }
                }
                Command::Stop(reason) => self.stopping = Some(reason),
            }
        }
    }

    fn add(&mut self, id: u64, job: Job) {
        let Job { relay, deadline, cut, done } = job;
        let (tunnel, plain) = relay.sockets();
        use epoll::EventFlags as F;
        let flags = F::IN | F::OUT | F::RDHUP | F::PRI | F::ET;
        let registered = epoll::add(&self.epoll, tunnel, epoll::EventData::new_u64(key(id, Side::Tunnel)), flags)
            .and_then(|()| epoll::add(&self.epoll, plain, epoll::EventData::new_u64(key(id, Side::Plain)), flags));
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, id)));
        }
        self.streams.insert(id, Entry { relay, cut, done, deadline, queued: true });
        if let Err(e) = registered {
            self.end(id, format!("error: cannot watch the sockets: {e}"), true);
            return;
        }
        // A cut may have come before the stream got here, or its grant may have run
        // out meanwhile; otherwise start at once: every flag starts set, so the first
        // turn reads what is already there.
        match self.streams.get(&id).and_then(|e| e.cut.reason()) {
            Some(reason) => self.end(id, reason, false),
            None if deadline.is_some_and(|at| at <= Instant::now()) => self.end(id, "grant expired".into(), false),
            None => self.runq.push_back(id),
        }
    }

    /// One turn for each stream queued now; those with work left go to the back.
    /// Cuts and deadlines are looked at every few turns too, so that a long queue of
    /// busy streams does not hold them back.
    fn run_queue(&mut self) {
        for turn in 0..self.runq.len() {
            if turn % 64 == 63 {
                self.take_inbox();
                self.expire();
            }
            let Some(id) = self.runq.pop_front() else { break };
            let Some(e) = self.streams.get_mut(&id) else { continue };
            let turn = e.relay.advance(&mut self.scratch);
            if e.relay.tap_mut().pending() {
                e.relay.tap_mut().flush(false);
                if self.next_tap_tick.is_none() {
                    self.next_tap_tick = Some(Instant::now() + TAP_TICK);
                }
            }
            match turn {
                Ok(Turn::Wait) => e.queued = false,
                Ok(Turn::More) => self.runq.push_back(id),
                Ok(Turn::Done(reason)) => self.end(id, reason.to_string(), false),
                Err(err) => self.end(id, format!("error: {err}"), true),
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.streams.get(&id).is_some_and(|e| e.deadline == Some(at)) {
                self.end(id, "grant expired".into(), false);
            }
        }
    }

    fn tick_taps(&mut self) {
        if self.next_tap_tick.is_none_or(|at| at > Instant::now()) {
            return;
        }
        let mut pending = false;
        for e in self.streams.values_mut() {
            let tap = e.relay.tap_mut();
            tap.flush(false);
            pending |= tap.pending();
        }
        self.next_tap_tick = pending.then(|| Instant::now() + TAP_TICK);
    }

    fn end(&mut self, id: u64, reason: String, failed: bool) {
        let Some(e) = self.streams.remove(&id) else { return };
        let (tunnel, plain) = e.relay.sockets();
        let _ = epoll::delete(&self.epoll, tunnel);
        let _ = epoll::delete(&self.epoll, plain);
        let outcome = e.relay.finish(reason, failed);
        self.shared.streams.fetch_sub(1, Ordering::Relaxed);
        // Deadlines of ended streams stay in the heap until they pass (hours, for a
        // long grant): prune them before short-lived streams pile them up.
        if self.deadlines.len() > 64 + 2 * self.streams.len() {
            let streams = &self.streams;
            self.deadlines.retain(|Reverse((at, id))| streams.get(id).is_some_and(|e| e.deadline == Some(*at)));
        }
        (e.done)(outcome);
    }
}
