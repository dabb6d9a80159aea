//! Long polls (`GET /api/v1/requests/{id}/wait`). A worker validates the call, then
//! parks it here on a thread of its own, so waiting clients never hold the workers
//! that answer ordinary requests. The number parked is bounded (`max_waiters`); past
//! it the caller gets a 503 and retries. A waiter wakes on the hub's change signal,
//! re-reads the request, and answers as soon as its status differs.

use super::app::{respond, App};
use super::http::Reply;
use super::views;
use crate::domain::Status;
use crate::error::Error;
use crate::store::requests;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Long polls one user may have parked at once, so one user cannot take every slot.
pub const MAX_PER_USER: usize = 8;

pub struct WaitSpec {
    /// The waiting user (for the per-user cap).
    pub user_id: i64,
    pub id: String,
    /// Answer as soon as the status is not this one.
    pub unless: Status,
    pub timeout: Duration,
}

pub fn park(app: Arc<App>, request: tiny_http::Request, route: &'static str, spec: WaitSpec) {
    if let Err(e) = take_slot(&app, spec.user_id) {
        return respond(&app, request, route, Reply::error(&e).with_header("Retry-After", "1".into()));
    }
    let waiter_app = app.clone();
    // The request moves into the thread; if the spawn fails we cannot answer it, and
    // tiny_http closes the connection when it is dropped.
    let spawned = std::thread::Builder::new().name("long-poll".into()).stack_size(128 * 1024).spawn(move || {
        let reply = wait_for_change(&waiter_app, &spec);
        respond(&waiter_app, request, route, reply);
        give_slot(&waiter_app, spec.user_id);
    });
    if let Err(e) = spawned {
        crate::error!("cannot start a long-poll thread: {e}");
    }
}

/// One slot of the global budget and one of the user's, or a 503.
fn take_slot(app: &App, user_id: i64) -> Result<(), Error> {
    let busy = || Error::Unavailable("too many clients are waiting; retry shortly".into());
    let mut per_user = app.waiters_by_user.lock().map_err(|_| busy())?;
    let mine = per_user.entry(user_id).or_insert(0);
    if *mine >= MAX_PER_USER || app.waiters.load(Ordering::SeqCst) >= app.config.max_waiters {
        return Err(busy());
    }
    *mine += 1;
    app.waiters.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn give_slot(app: &App, user_id: i64) {
    if let Ok(mut per_user) = app.waiters_by_user.lock() {
        if let Some(n) = per_user.get_mut(&user_id) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&user_id);
            }
        }
    }
    app.waiters.fetch_sub(1, Ordering::SeqCst);
}

fn wait_for_change(app: &App, spec: &WaitSpec) -> Reply {
    let deadline = Instant::now() + spec.timeout;
    loop {
        // Read the version first: a change committed after this read wakes the wait.
        let seen = app.hub.version();
        let view = match app.store.read(|c| requests::get(c, &spec.id)) {
            Ok(v) => v,
            Err(e) => return Reply::error(&e),
        };
        if view.request.status != spec.unless || Instant::now() >= deadline || app.hub.stopping() {
            return Reply::ok(&views::request(&view, app.request_url(&view.request.id)));
        }
        app.hub.wait(seen, Some(deadline));
    }
}
