//! The outbox worker: one thread that fans lifecycle events out to their sinks and
//! delivers them, in order, with retries. Sinks are the operator's hooks (`[[hooks]]`,
//! see `gateway::hooks`, at most once) and the notification channels of `[notify]`
//! (`webhook:{i}`, `slack:{i}`, `teams:{i}`, `email`, `slack_dm:{user}`: one event
//! at a time per sink,
//! exponential backoff with jitter, dead after `max_attempts`; see `store::outbox`).
//! It sleeps on the hub until something changes or a retry is due. Hooks and channels
//! are `Live`: SIGHUP swaps them (see `server::reload`); a delivery whose sink is gone
//! from the new set fails as "no longer in the configuration".

pub mod config;
pub mod message;
pub mod send;
pub mod sign;

use crate::audit;
use crate::error::Result;
use crate::gateway::hooks::{self, HookConfig};
use crate::hub::Hub;
use crate::store::outbox::{self, Delivery, Finish};
use crate::store::{requests, users, Store};
use crate::time::now_ms;
use config::NotifyConfig;
use message::Facts;
use serde_json::json;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long the worker lets changes gather before a pass.
const COALESCE: Duration = Duration::from_millis(20);

/// Events fanned out per pass (and per write transaction).
const DISPATCH_BATCH: usize = 256;

/// Attempts per hook run before it is failed for good.
pub const MAX_ATTEMPTS: i64 = 5;
/// The longest wait between two attempts of a notification.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// The part of the config that SIGHUP reloads: hooks and notification channels.
#[derive(Debug, Default)]
pub struct Channels {
    pub hooks: Vec<HookConfig>,
    pub notify: NotifyConfig,
}

/// The current `Channels`, shared by the outbox worker and the chat endpoints;
/// readers take a snapshot, a reload swaps the whole set at once.
#[derive(Clone, Debug, Default)]
pub struct Live(Arc<RwLock<Arc<Channels>>>);

impl Live {
    pub fn new(channels: Channels) -> Live {
        Live(Arc::new(RwLock::new(Arc::new(channels))))
    }

    pub fn get(&self) -> Arc<Channels> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn swap(&self, channels: Channels) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(channels);
    }
}

pub struct Worker {
    store: Arc<Store>,
    hub: Arc<Hub>,
    live: Live,
    /// Base of the links to requests (the server's public URL).
    public_url: String,
    agent: ureq::Agent,
}

impl Worker {
    pub fn spawn(
        store: Arc<Store>,
        hub: Arc<Hub>,
        live: Live,
        public_url: String,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let agent = send::agent(send::TIMEOUT);
        let w = Worker { store, hub, live, public_url, agent };
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
            if self.hub.wait(seen, deadline) != seen {
                // Woken by a change: let a burst of transitions gather, so that one
                // write transaction fans many events out instead of one commit each
                // (a short, bounded delay for hooks and notifications).
                std::thread::sleep(COALESCE);
            }
        }
    }

    /// Deliveries that were running when the server stopped are not run again.
    fn recover(&self) -> Result<()> {
        let now = now_ms();
        self.store.write(|tx| {
            for (request_id, sink) in outbox::interrupt_running(tx, now)? {
                audit::append(tx, now, audit::SYSTEM, "hook.interrupted", &request_id, json!({"sink": sink}))?;
            }
            Ok(())
        })
    }

    /// One pass: fan out new events, run what is due; returns when to come back.
    fn pass(&self) -> Result<Option<i64>> {
        // A full batch means more may wait: come straight back rather than sleep.
        if self.dispatch()? == DISPATCH_BATCH {
            return Ok(Some(now_ms()));
        }
        let due = self.store.write(|tx| outbox::claim_due(tx, now_ms(), 16))?;
        for d in &due {
            self.deliver(d)?;
        }
        if !due.is_empty() {
            return Ok(Some(now_ms()));
        }
        self.store.read(outbox::next_due)
    }

    /// Creates the deliveries of new events: one per hook command that applies, one
    /// per notification channel that takes the event's connection.
    /// Returns how many events it handled; the whole batch is one write transaction.
    fn dispatch(&self) -> Result<usize> {
        let events = self.store.read(|c| outbox::undispatched(c, DISPATCH_BATCH as i64))?;
        if events.is_empty() {
            return Ok(0);
        }
        let live = self.live.get();
        let mut fanned = Vec::with_capacity(events.len());
        for e in &events {
            let connection =
                self.store.read(|c| requests::get(c, &e.request_id)).map(|v| v.request.connection).unwrap_or_default();
            // A read that fails here leaves this event without DMs rather than holding
            // up every sink of the batch.
            let dms = self.slack_dms(&live.notify, &e.event, &e.request_id, &connection).unwrap_or_else(|err| {
                crate::warn!("outbox: no Slack DMs for {} of {}: {}", e.event, e.request_id, err.log_detail());
                Vec::new()
            });
            let sinks: Vec<String> = live
                .hooks
                .iter()
                .enumerate()
                .filter(|(_, h)| h.connection == connection)
                .filter_map(|(i, h)| h.sink_for(i, &e.event))
                .chain(notification_sinks(&live.notify, &connection))
                .chain(dms)
                .collect();
            fanned.push((e.seq, sinks));
        }
        let now = now_ms();
        self.store.write(|tx| {
            for (seq, sinks) in &fanned {
                outbox::dispatch(tx, *seq, sinks, now)?;
            }
            Ok(())
        })?;
        Ok(events.len())
    }

    /// Slack DMs, one sink per person (`slack_dm:{user}`, so one who cannot be reached
    /// neither holds up nor repeats the others): a new request that waits for a
    /// decision goes to each approver with a Slack id (with buttons, when the app's
    /// signing secret is set); every later event to the requester.
    fn slack_dms(&self, n: &NotifyConfig, event: &str, request: &str, connection: &str) -> Result<Vec<String>> {
        let Some(dm) = n.slack_dm.as_ref().filter(|d| config::applies(&d.connections, connection)) else {
            return Ok(Vec::new());
        };
        let view = self.store.read(|c| requests::get(c, request))?;
        if event != "request.created" {
            return Ok(vec![format!("slack_dm:{}", view.request.user)]);
        }
        if dm.signing_secret.is_none() || view.request.status != crate::domain::Status::Pending {
            return Ok(Vec::new());
        }
        Ok(self.approvers_with_slack(&view)?.into_iter().map(|(name, _)| format!("slack_dm:{name}")).collect())
    }

    /// (username, Slack id) of who may decide `view` now: live members of its approval
    /// groups with a Slack id, not the requester.
    fn approvers_with_slack(&self, view: &requests::RequestView) -> Result<Vec<(String, String)>> {
        let groups = self.store.read(|c| requests::policy_of(c, &view.request.id))?.approval_groups;
        let members = self.store.read(|c| users::slack_ids_of_groups(c, &groups))?;
        Ok(members.into_iter().filter(|(name, _)| *name != view.request.user).collect())
    }

    fn deliver(&self, d: &Delivery) -> Result<()> {
        if !d.sink.starts_with("hook:") {
            return self.deliver_notification(d);
        }
        let view = self.store.read(|c| requests::get(c, &d.request_id))?;
        let live = self.live.get();
        // After a reload the index may name another hook, or this one may run another
        // command: only the very hook the event was meant for runs.
        let found = hooks::HookConfig::for_sink(&live.hooks, &d.sink, &view.request.connection, &d.event);
        let (hook, on, command) = match found {
            Ok(found) => found,
            Err(error) => return self.store.write(|tx| outbox::finish(tx, d, Finish::Failed { error })),
        };
        // A grant hook that comes late (retries, a backlog) must not give access to a
        // grant that has ended meanwhile: it is recorded as skipped instead.
        let r = &view.request;
        if d.event == "request.approved" && r.live_until(now_ms()).is_none() {
            let detail = json!({"sink": d.sink, "hook": on, "reason": format!("the grant is {} now", r.status)});
            return self.store.write(|tx| {
                audit::append(tx, now_ms(), audit::SYSTEM, "hook.skipped", &d.request_id, detail.clone())?;
                outbox::finish(tx, d, Finish::Done)
            });
        }
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

impl Worker {
    /// Sends one notification; records done, a retry with backoff, or dead.
    fn deliver_notification(&self, d: &Delivery) -> Result<()> {
        let sent = self.send(d);
        let now = now_ms();
        self.store.write(|tx| match &sent {
            Ok(()) => outbox::finish(tx, d, Finish::Done),
            Err(f) if d.attempts + 1 >= self.live.get().notify.max_attempts() => {
                crate::warn!(
                    "notification {} to {} is dead after {} attempts: {}",
                    d.event,
                    d.sink,
                    d.attempts + 1,
                    f.error
                );
                let detail = json!({"sink": d.sink, "event": d.event, "attempts": d.attempts + 1, "error": f.error});
                audit::append(tx, now, audit::SYSTEM, "notify.failed", &d.request_id, detail)?;
                outbox::finish(tx, d, Finish::Failed { error: &f.error })
            }
            Err(f) => {
                let at = now + self.backoff_ms(d.attempts, f.retry_after);
                crate::debug!("notification {} to {} failed ({}); retry in {} ms", d.event, d.sink, f.error, at - now);
                outbox::finish(tx, d, Finish::Retry { at, error: &f.error })
            }
        })
    }

    /// Exponential backoff with jitter: `retry_after` × 2^attempts, capped, each wait
    /// drawn from its upper half so that receivers coming back are not hit in step;
    /// never sooner than a 429's Retry-After.
    fn backoff_ms(&self, attempts_before: i64, retry_after: Option<Duration>) -> i64 {
        let base = self.live.get().notify.retry_after().map(|d| d.as_millis() as i64).unwrap_or(2_000).max(1);
        let full = base.saturating_mul(1_i64 << attempts_before.clamp(0, 20)).min(MAX_BACKOFF_MS);
        let r = crate::secret::random_bytes::<4>().map(u32::from_le_bytes).unwrap_or(u32::MAX / 2);
        let wait = full / 2 + (full / 2) * i64::from(r) / i64::from(u32::MAX);
        let asked = retry_after.map(|d| d.as_millis() as i64).unwrap_or(0).min(3_600_000);
        wait.max(asked).max(1)
    }

    fn request_url(&self, id: &str) -> String {
        format!("{}/#/requests/{id}", self.public_url.trim_end_matches('/'))
    }

    /// Builds and sends the message of one delivery.
    fn send(&self, d: &Delivery) -> std::result::Result<(), send::Failure> {
        let fail = |error: String| send::Failure { error, retry_after: None };
        let view = self.store.read(|c| requests::get(c, &d.request_id)).map_err(|e| fail(e.user_message()))?;
        let requester = self.store.read(|c| users::get(c, &view.request.user)).ok();
        let url = self.request_url(&view.request.id);
        let facts = Facts {
            event: &d.event,
            view: &view,
            url: &url,
            requester_slack: requester.as_ref().and_then(|u| u.slack_user_id.as_deref()),
        };
        let (kind, index) = match d.sink.split_once(':') {
            Some((k, i)) => (k, i.parse::<usize>().ok()),
            None => (d.sink.as_str(), None),
        };
        let gone = || fail("this channel is no longer in the configuration".into());
        let live = self.live.get();
        let n = &live.notify;
        match kind {
            "webhook" => {
                let w = index.and_then(|i| n.webhook.get(i)).ok_or_else(gone)?;
                let now = now_ms();
                let event_id = outbox::event_id(d.event_seq);
                let body = message::webhook(&event_id, &facts, crate::server::views::request(&view, url.clone()), now);
                let body = serde_json::to_vec(&body).map_err(|e| fail(e.to_string()))?;
                let headers = [
                    ("X-Jitgate-Signature", sign::webhook_signature(&w.secret, &body)),
                    ("X-Jitgate-Timestamp", (now / 1000).to_string()),
                    ("X-Jitgate-Event", d.event.clone()),
                    ("X-Jitgate-Delivery", event_id),
                ];
                send::post_json(&self.agent, &w.url, &headers, &body)
            }
            "slack" => {
                let s = index.and_then(|i| n.slack.get(i)).ok_or_else(gone)?;
                let body = if s.style.as_deref() == Some("mattermost") {
                    let actions_url =
                        format!("{}/api/v1/integrations/mattermost/actions", self.public_url.trim_end_matches('/'));
                    let actions = n.mattermost.as_ref().map(|m| (actions_url.as_str(), m.action_secret.as_str()));
                    message::mattermost(&facts, actions)
                } else {
                    message::slack(&facts, s.signing_secret.is_some())
                };
                send::post_json(&self.agent, &s.url, &[], body.to_string().as_bytes())
            }
            "teams" => {
                let t = index.and_then(|i| n.teams.get(i)).ok_or_else(gone)?;
                send::post_json(&self.agent, &t.url, &[], message::teams(&facts).to_string().as_bytes())
            }
            "slack_dm" => {
                let dm = n.slack_dm.as_ref().ok_or_else(gone)?;
                let name = d.sink.strip_prefix("slack_dm:").unwrap_or_default();
                // Read again at sending time (a retry can come hours later): an approver
                // is asked only while the request waits and they may still decide it;
                // the requester only while they still are that user. Someone who may
                // not, or has no Slack id any more, is not messaged: nothing to retry.
                let asking = d.event == "request.created";
                let to = if asking {
                    if view.request.status != crate::domain::Status::Pending {
                        return Ok(());
                    }
                    let approvers = self.approvers_with_slack(&view).map_err(|e| fail(e.user_message()))?;
                    approvers.into_iter().find(|(n, _)| n == name).map(|(_, id)| id)
                } else {
                    facts.requester_slack.filter(|_| name == view.request.user).map(str::to_string)
                };
                let Some(to) = to else { return Ok(()) };
                let buttons = asking && dm.signing_secret.is_some();
                let mut body = message::slack(&Facts { requester_slack: None, ..facts }, buttons);
                body["channel"] = json!(to);
                send::slack_api(&self.agent, &dm.post_message_url(), &dm.bot_token, body.to_string().as_bytes())
            }
            "email" => {
                let e = n.email.as_ref().ok_or_else(gone)?;
                let to =
                    self.email_recipients(&d.event, &view, requester.as_ref()).map_err(|e| fail(e.user_message()))?;
                if to.is_empty() {
                    return Ok(());
                }
                let (subject, body) = message::email(&facts);
                send::email(e, &to, &subject, &body).map_err(fail)
            }
            _ => Err(gone()),
        }
    }

    /// A new request goes to the approvers (members of its approval groups, not the
    /// requester); every later event goes to the requester.
    fn email_recipients(
        &self,
        event: &str,
        view: &requests::RequestView,
        requester: Option<&users::User>,
    ) -> Result<Vec<String>> {
        if event != "request.created" {
            return Ok(requester.and_then(|u| u.email.clone()).into_iter().collect());
        }
        let policy = self.store.read(|c| requests::policy_of(c, &view.request.id))?;
        let members = self.store.read(|c| users::emails_of_groups(c, &policy.approval_groups))?;
        Ok(members.into_iter().filter(|(name, _)| *name != view.request.user).map(|(_, email)| email).collect())
    }
}

/// The notification channels of `n` that take events of `connection`.
fn notification_sinks(n: &NotifyConfig, connection: &str) -> Vec<String> {
    let mut out = Vec::new();
    let kinds: [(&str, Vec<&Option<Vec<String>>>); 3] = [
        ("webhook", n.webhook.iter().map(|w| &w.connections).collect()),
        ("slack", n.slack.iter().map(|w| &w.connections).collect()),
        ("teams", n.teams.iter().map(|w| &w.connections).collect()),
    ];
    for (kind, lists) in kinds {
        for (i, list) in lists.into_iter().enumerate() {
            if config::applies(list, connection) {
                out.push(format!("{kind}:{i}"));
            }
        }
    }
    if n.email.as_ref().is_some_and(|e| config::applies(&e.connections, connection)) {
        out.push("email".into());
    }
    out
}
