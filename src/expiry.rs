//! The expiry timer: one thread that sleeps until the next grant expiry or pending
//! deadline (woken early by the hub on any change), then moves every due request in
//! one transaction: APPROVED → EXECUTED, stale PENDING → CANCELLED, and records the
//! "expiring in 10 minutes" warning of grants near their end. On start,
//! `catch_up` closes what ran out while the server was down, before anything is served.

use crate::error::Result;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{requests, Store};
use crate::time::now_ms;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Closes everything already due. Returns how many requests it moved.
pub fn catch_up(store: &Store, metrics: &Metrics) -> Result<usize> {
    sweep(store, metrics).map(|(closed, _)| closed)
}

/// Closes what is due and warns grants near their end: (closed, warned).
fn sweep(store: &Store, metrics: &Metrics) -> Result<(usize, usize)> {
    let now = now_ms();
    // Expire first: a grant that ran out while the server was down is not warned.
    let (done, warned) = store.write(|tx| Ok((requests::expire_due(tx, now)?, requests::warn_due(tx, now)?)))?;
    // One line per request while few; a summary when many end together (after a long
    // downtime that could be thousands of lines before the server listens).
    const LINES: usize = 20;
    for e in &done {
        if done.len() <= LINES {
            crate::info!("{} {} (due {} ms ago)", e.id, e.status, now - e.due);
        }
        metrics.observe_expiry_lag(now - e.due);
    }
    if done.len() > LINES {
        let oldest = done.iter().map(|e| now - e.due).max().unwrap_or(0);
        crate::info!(
            "closed {} requests that were due (the oldest {} ms ago); the audit trail lists each",
            done.len(),
            oldest
        );
    }
    Ok((done.len(), warned.len()))
}

pub fn spawn(store: Arc<Store>, hub: Arc<Hub>, metrics: Arc<Metrics>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("expiry".into()).spawn(move || run(&store, &hub, &metrics))
}

fn run(store: &Store, hub: &Hub, metrics: &Metrics) {
    while !hub.stopping() {
        // Read the version before the deadline, so a change made in between wakes us.
        let seen = hub.version();
        let next = match store.read(requests::next_deadline) {
            Ok(next) => next,
            Err(e) => {
                crate::error!("expiry: cannot read the next deadline: {}", e.log_detail());
                hub.wait(seen, Some(Instant::now() + Duration::from_secs(1)));
                continue;
            }
        };
        let now = now_ms();
        match next {
            Some(due) if due <= now => match sweep(store, metrics) {
                Ok((closed, warned)) if closed + warned > 0 => hub.notify(),
                Ok(_) => {}
                Err(e) => {
                    crate::error!("expiry: cannot close due requests: {}", e.log_detail());
                    hub.wait(seen, Some(Instant::now() + Duration::from_secs(1)));
                }
            },
            Some(due) => {
                hub.wait(seen, Some(Instant::now() + Duration::from_millis((due - now) as u64)));
            }
            None => {
                hub.wait(seen, None);
            }
        }
    }
}
