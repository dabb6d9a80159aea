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

pub struct WaitSpec {
    pub id: String,
    /// Answer as soon as the status is not this one.
    pub unless: Status,
    pub timeout: Duration,
}

pub fn park(app: Arc<App>, request: tiny_http::Request, route: &'static str, spec: WaitSpec) {
    let taken = app.waiters.fetch_add(1, Ordering::SeqCst);
    if taken >= app.config.max_waiters {
        app.waiters.fetch_sub(1, Ordering::SeqCst);
        let e = Error::Unavailable("too many clients are waiting; retry shortly".into());
        return respond(&app, request, route, Reply::error(&e).with_header("Retry-After", "1".into()));
    }
    let waiter_app = app.clone();
    // The request moves into the thread; if the spawn fails we cannot answer it, and
    // tiny_http closes the connection when it is dropped.
    let spawned = std::thread::Builder::new().name("long-poll".into()).stack_size(128 * 1024).spawn(move || {
        let reply = wait_for_change(&waiter_app, &spec);
        respond(&waiter_app, request, route, reply);
        waiter_app.waiters.fetch_sub(1, Ordering::SeqCst);
    });
    if let Err(e) = spawned {
        app.waiters.fetch_sub(1, Ordering::SeqCst);
        crate::error!("cannot start a long-poll thread: {e}");
    }
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
