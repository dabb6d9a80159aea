//! The outbox worker: one thread that fans lifecycle events out to their sinks and
//! delivers them, in order, with retries. Sinks today are the operator's hooks
//! (`[[hooks]]`, see `gateway::hooks`); chat and webhook notifications are sinks of
//! the same outbox. It sleeps on the hub until something changes or a retry is due.

use crate::audit;
use crate::error::Result;
use crate::gateway::hooks::{self, HookConfig};
use crate::hub::Hub;
use crate::store::outbox::{self, Delivery, Finish};
use crate::store::{requests, Store};
use crate::time::now_ms;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts per delivery before it is failed for good.
pub const MAX_ATTEMPTS: i64 = 5;

pub struct Worker {
    store: Arc<Store>,
    hub: Arc<Hub>,
    hooks: Vec<HookConfig>,
}

impl Worker {
    pub fn spawn(
        store: Arc<Store>,
        hub: Arc<Hub>,
        hooks: Vec<HookConfig>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let w = Worker { store, hub, hooks };
        std::thread::Builder::new().name("outbox".into()).spawn(move || w.run())
    }

    fn run(&self) {
        if let Err(e) = self.recover() {
            crate::error!("outbox: cannot recover after restart: {}", e.log_detail());
        }
        while !self.hub.stopping() {
            let seen = self.hub.version();
            let next = match self.pass() {
                Ok(next) => next,
                Err(e) => {
                    crate::error!("outbox: {}", e.log_detail());
                    Some(now_ms() + 1_000)
                }
            };
            let deadline = next.map(|t| Instant::now() + Duration::from_millis((t - now_ms()).max(0) as u64));
            if next.is_some_and(|t| t <= now_ms()) {
                continue;
            }
            self.hub.wait(seen, deadline);
        }
    }

    /// Deliveries that were running when the server stopped are not run again.
    fn recover(&self) -> Result<()> {
        let now = now_ms();
        self.store.write(|tx| {
            for (request_id, sink) in outbox::interrupt_running(tx)? {
                audit::append(tx, now, audit::SYSTEM, "hook.interrupted", &request_id, json!({"sink": sink}))?;
            }
            Ok(())
        })
    }

    /// One pass: fan out new events, run what is due; returns when to come back.
    fn pass(&self) -> Result<Option<i64>> {
        self.dispatch()?;
        let due = self.store.write(|tx| outbox::claim_due(tx, now_ms(), 16))?;
        for d in &due {
            self.deliver(d)?;
        }
        if !due.is_empty() {
            return Ok(Some(now_ms()));
        }
        self.store.read(outbox::next_due)
    }

    /// Creates the deliveries of new events: one per hook command that applies.
    fn dispatch(&self) -> Result<()> {
        let events = self.store.read(|c| outbox::undispatched(c, 256))?;
        for e in events {
            let connection =
                self.store.read(|c| requests::get(c, &e.request_id)).map(|v| v.request.connection).unwrap_or_default();
            let sinks: Vec<String> = self
                .hooks
                .iter()
                .enumerate()
                .filter(|(_, h)| h.connection == connection)
                .filter_map(|(i, h)| h.command_for(&e.event).map(|(on, _)| format!("hook:{i}:{on}")))
                .collect();
            self.store.write(|tx| outbox::dispatch(tx, e.seq, &sinks, now_ms()))?;
        }
        Ok(())
    }

    fn deliver(&self, d: &Delivery) -> Result<()> {
        let hook = d
            .sink
            .strip_prefix("hook:")
            .and_then(|rest| rest.split(':').next())
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.hooks.get(i));
        let command = hook.and_then(|h| h.command_for(&d.event).map(|(on, c)| (h, on, c.to_string())));
        let Some((hook, on, command)) = command else {
            let error = "this hook is no longer in the configuration";
            return self.store.write(|tx| outbox::finish(tx, d, Finish::Failed { error }));
        };
        let view = self.store.read(|c| requests::get(c, &d.request_id))?;
        let target = self.store.read(|c| requests::policy_of(c, &d.request_id)).ok().and_then(|p| p.target);
        let env = hooks::environment(&d.event, &view, target.as_deref());
        let ran = hooks::run(&command, &env, hook.timeout()?)?;
        let now = now_ms();
        let detail = json!({"sink": d.sink, "hook": on, "attempt": d.attempts + 1, "exit_code": ran.exit_code, "timed_out": ran.timed_out, "output": ran.output});
        let error = if ran.timed_out { "timed out".to_string() } else { format!("exit code {:?}", ran.exit_code) };
        self.store.write(|tx| {
            let (action, finish) = if ran.ok() {
                ("hook.ran", Finish::Done)
            } else if d.attempts + 1 >= MAX_ATTEMPTS {
                ("hook.failed", Finish::Failed { error: &error })
            } else {
                // 2 s, 4 s, 8 s, 16 s between attempts.
                ("hook.retrying", Finish::Retry { at: now + 1_000 * (2_i64 << d.attempts.min(10)), error: &error })
            };
            audit::append(tx, now, audit::SYSTEM, action, &d.request_id, detail.clone())?;
            outbox::finish(tx, d, finish)
        })
    }
}
