//! Change notification between threads: a version number bumped on every committed
//! change, and a Condvar to wait for the next bump. The expiry timer and the long
//! polls wait here instead of polling the database.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Default)]
pub struct Hub {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    version: u64,
    stopping: bool,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop expiry: the state is two plain numbers.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Call after committing any change that a waiter may care about.
    pub fn notify(&self) {
        self.lock().version += 1;
        self.changed.notify_all();
    }

    /// Wakes every waiter for good: the server is stopping.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    pub fn stopping(&self) -> bool {
        self.lock().stopping
    }

    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Waits until the version moves past `seen`, the deadline passes, or the server
    /// stops. Returns the current version.
    pub fn wait(&self, seen: u64, deadline: Option<Instant>) -> u64 {
        let mut state = self.lock();
        while state.version == seen && !state.stopping {
            match deadline {
                None => state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    state = self.changed.wait_timeout(state, d - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
        state.version
    }
}
