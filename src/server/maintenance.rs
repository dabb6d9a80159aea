//! The `backup` thread: periodic backups of the live database (`[backup]` in the
//! config), with retention. Each backup is `store::backup::backup` on a connection of
//! its own, so requests go on meanwhile; a failure is logged and counted in
//! `/metrics`, and never stops the server.
//!
//! Schedule: the next backup is due one interval after the newest one in the
//! directory (so a restart neither skips nor doubles one), and at once when there is
//! none. The thread sleeps on its own Condvar until then or until `stop`.

use crate::config::PeriodicBackup;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::{backup, open_connection, Store};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Periodic backups are named `jitgate-<UTC time>.db`: name order is age order.
const PREFIX: &str = "jitgate-";
const SUFFIX: &str = ".db";

/// The running thread (or nothing, when periodic backups are off).
pub struct Backups {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Backups {
    /// Wakes the thread for good and waits for it (a backup under way finishes).
    pub fn stop(mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn spawn(plan: Option<PeriodicBackup>, store: Arc<Store>, metrics: Arc<Metrics>) -> Result<Backups> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let Some(plan) = plan else { return Ok(Backups { stop, thread: None }) };
    crate::datadir::prepare(&plan.dir)?;
    crate::info!(
        "periodic backups every {}s into {}, keeping {}",
        plan.interval.as_secs(),
        plan.dir.display(),
        plan.keep
    );
    // The last backup before this start counts: an alert on its age must not fire
    // merely because the server restarted.
    let newest_time = newest(&plan.dir).and_then(|p| p.metadata().ok()).and_then(|m| m.modified().ok());
    if let Some(secs) = newest_time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        metrics.backup_succeeded(secs.as_secs());
    }
    let flag = stop.clone();
    let thread =
        std::thread::Builder::new().name("backup".into()).spawn(move || run(&plan, &store, &metrics, &flag))?;
    Ok(Backups { stop, thread: Some(thread) })
}

fn run(plan: &PeriodicBackup, store: &Store, metrics: &Metrics, stop: &(Mutex<bool>, Condvar)) {
    let (lock, cvar) = stop;
    // After a failure, wait (an interval, at most a minute) before trying again:
    // a failing backup must never spin.
    let mut retry_at: Option<Instant> = None;
    loop {
        let wait = due_in(plan, retry_at);
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !wait.is_zero() {
            stopped = cvar.wait_timeout_while(stopped, wait, |s| !*s).unwrap_or_else(|p| p.into_inner()).0;
        }
        if *stopped {
            return;
        }
        drop(stopped);
        if due_in(plan, retry_at).is_zero() {
            let ok = take_one(plan, store, metrics);
            retry_at = if ok { None } else { Some(Instant::now() + plan.interval.min(Duration::from_secs(60))) };
        }
    }
}

/// How long until the next backup: one interval after the newest, zero if overdue.
fn due_in(plan: &PeriodicBackup, retry_at: Option<Instant>) -> Duration {
    if let Some(at) = retry_at {
        return at.saturating_duration_since(Instant::now());
    }
    let newest = newest(&plan.dir).and_then(|p| p.metadata().ok()).and_then(|m| m.modified().ok());
    match newest {
        Some(t) => {
            let age = SystemTime::now().duration_since(t).unwrap_or_default();
            plan.interval.saturating_sub(age)
        }
        None => Duration::ZERO,
    }
}

fn newest(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .max()
}

/// One backup and the pruning after it; false when the backup failed.
fn take_one(plan: &PeriodicBackup, store: &Store, metrics: &Metrics) -> bool {
    let now = crate::time::now_ms();
    let dest = plan.dir.join(format!("{PREFIX}{}{SUFFIX}", backup::stamp(now)));
    let result = open_connection(store.path(), false).and_then(|conn| backup::backup(&conn, &dest));
    match result {
        Ok(checked) => {
            metrics.backup_succeeded((now / 1_000).max(0) as u64);
            crate::info!(
                "backup {} written ({} bytes, {} audit events, verified)",
                dest.display(),
                checked.bytes,
                checked.audit_events
            );
            match backup::prune(&plan.dir, PREFIX, SUFFIX, plan.keep) {
                Ok(gone) => {
                    for p in gone {
                        crate::debug!("backup {} removed (keep = {})", p.display(), plan.keep);
                    }
                }
                Err(e) => crate::warn!("pruning backups in {}: {}", plan.dir.display(), e.log_detail()),
            }
            true
        }
        Err(e) => {
            metrics.backup_failed();
            crate::error!("backup to {} failed: {}", dest.display(), e.log_detail());
            false
        }
    }
}
