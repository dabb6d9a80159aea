//! Hooks: the operator's own commands, run when a grant starts, ends or is revoked,
//! for resources jitgate does not carry (a database role `VALID UNTIL` the expiry, a
//! VPN rule, a cloud IAM binding). They come only from the config file on disk, never
//! from the API: an API token must never become code execution on the box.
//!
//! A hook runs `/bin/sh -c COMMAND` in its own process group with the request in
//! `JITGATE_*` environment variables, bounded by a timeout (the whole group is
//! killed), its output (first 4 KiB) kept in the audit trail. Delivery comes from
//! the outbox: never lost, at most once per event (see `store::outbox`).

use crate::domain::{check_name, duration};
use crate::error::{Error, Result};
use crate::store::requests::RequestView;
use crate::time::rfc3339;
use serde::Deserialize;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

pub const MAX_OUTPUT: usize = 4 * 1024;
const DEFAULT_TIMEOUT: &str = "30s";

/// `[[hooks]]` in the server's TOML config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The connection whose grants trigger these commands.
    pub connection: String,
    /// Runs when a request is APPROVED (the grant starts).
    pub on_grant: Option<String>,
    /// Runs when a grant ends: expired, or given back by the requester.
    pub on_end: Option<String>,
    /// Runs when a grant is revoked.
    pub on_revoke: Option<String>,
    /// Longest a command may run (default 30s); then its process group is killed.
    pub timeout: Option<String>,
}

impl HookConfig {
    pub fn validate(&self) -> Result<()> {
        check_name("connection", &self.connection).map_err(|e| Error::Startup(format!("[[hooks]]: {e}")))?;
        if self.on_grant.is_none() && self.on_end.is_none() && self.on_revoke.is_none() {
            return Err(Error::Startup(format!(
                "[[hooks]] for {} has no on_grant, on_end or on_revoke",
                self.connection
            )));
        }
        self.timeout()?;
        Ok(())
    }

    pub fn timeout(&self) -> Result<Duration> {
        crate::config::setting_duration("hooks.timeout", self.timeout.as_deref().unwrap_or(DEFAULT_TIMEOUT))
    }

    /// The outbox's name for this hook's delivery of `event`: its place in the config,
    /// the event, and a digest of what it runs, so that a delivery never runs another
    /// hook's command after the config was edited and reloaded (a retry after a fix).
    pub fn sink_for(&self, index: usize, event: &str) -> Option<String> {
        let (on, command) = self.command_for(event)?;
        Some(format!("hook:{index}:{on}:{}", self.digest(on, command)))
    }

    fn digest(&self, on: &str, command: &str) -> String {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(format!("{}\0{on}\0{command}", self.connection).as_bytes());
        hex::encode(&d[..6])
    }

    /// The hook a delivery's sink names, with its event name and command, if the
    /// current config still has it unchanged for `connection`; otherwise why not.
    /// Sinks written before digests (`hook:{i}:{on}`) are matched by place only.
    pub fn for_sink<'a>(
        hooks: &'a [HookConfig],
        sink: &str,
        connection: &str,
        event: &str,
    ) -> std::result::Result<(&'a HookConfig, &'static str, String), &'static str> {
        let mut parts = sink.strip_prefix("hook:").unwrap_or("").split(':');
        let index = parts.next().and_then(|i| i.parse::<usize>().ok());
        let digest = parts.nth(1);
        let hook = index.and_then(|i| hooks.get(i)).filter(|h| h.connection == connection);
        let found = hook.and_then(|h| h.command_for(event).map(|(on, c)| (h, on, c.to_string())));
        let Some((hook, on, command)) = found else { return Err("this hook is no longer in the configuration") };
        if digest.is_some_and(|d| d != hook.digest(on, &command)) {
            return Err("this hook changed in the configuration since the event: not run");
        }
        Ok((hook, on, command))
    }

    /// The command for a lifecycle event, if this hook has one.
    pub fn command_for(&self, event: &str) -> Option<(&'static str, &str)> {
        match event {
            "request.approved" => self.on_grant.as_deref().map(|c| ("on_grant", c)),
            "request.executed" => self.on_end.as_deref().map(|c| ("on_end", c)),
            "request.revoked" => self.on_revoke.as_deref().map(|c| ("on_revoke", c)),
            _ => None,
        }
    }
}

/// What one run of a hook did.
#[derive(Debug)]
pub struct Ran {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub output: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// The request as environment variables for a hook.
pub fn environment(event: &str, v: &RequestView, target: Option<&str>) -> Vec<(String, String)> {
    let r = &v.request;
    let time = |t: Option<i64>| t.map(rfc3339).unwrap_or_default();
    [
        ("EVENT", event.to_string()),
        ("REQUEST_ID", r.id.clone()),
        ("USER", r.user.clone()),
        ("CONNECTION", r.connection.clone()),
        ("TARGET", target.unwrap_or("").to_string()),
        ("STATUS", r.status.to_string()),
        ("DURATION", duration::format(r.duration)),
        ("DURATION_SECONDS", r.duration.to_string()),
        ("REASON", r.reason.clone().unwrap_or_default()),
        ("APPROVED_AT", time(r.approved_at)),
        ("EXPIRES_AT", time(r.expires_at)),
        ("ENDED_AT", time(r.ended_at)),
        ("ENDED_BY", r.ended_by.clone().unwrap_or_default()),
        ("END_REASON", r.end_reason.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("JITGATE_{k}"), v))
    .collect()
}

/// Runs `command` with `env`, killing its whole process group at `timeout`.
pub fn run(command: &str, env: &[(String, String)], timeout: Duration) -> Result<Ran> {
    let mut cmd = Command::new("/bin/sh");
    // The server's own JITGATE_* settings (an admin token at first start, say) are
    // not the hook's business: only the request's JITGATE_* variables reach it.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("JITGATE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    let (out_tx, out_rx) = channel();
    let pipes = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for pipe in pipes.into_iter().flatten() {
        let tx = out_tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_bounded(pipe));
        });
    }
    drop(out_tx);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let (status, timed_out) = match rx.recv_timeout(timeout) {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            kill_group(pid);
            (rx.recv_timeout(Duration::from_secs(5)).ok().and_then(|s| s.ok()), true)
        }
    };
    // Whatever the shell left running in its group goes with it: a hook must not
    // hold the outbox (or a pipe) after it is done.
    kill_group(pid);
    let mut output = String::new();
    let grace = std::time::Instant::now() + Duration::from_secs(2);
    while let Ok(part) = out_rx.recv_timeout(grace.saturating_duration_since(std::time::Instant::now())) {
        output.push_str(&part);
    }
    output.truncate(floor_char_boundary(&output, MAX_OUTPUT));
    Ok(Ran { exit_code: status.and_then(|s| s.code()), timed_out, output })
}

fn kill_group(pid: u32) {
    let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
}

/// Reads a pipe to its end, keeping the first `MAX_OUTPUT` bytes.
fn read_bounded(mut pipe: Box<dyn Read + Send>) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).to_string()
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_gets_its_environment_and_its_output_is_kept() {
        let env = vec![("JITGATE_USER".to_string(), "alice".to_string())];
        let ran = run("echo hello $JITGATE_USER; echo oops >&2; exit 3", &env, Duration::from_secs(10)).unwrap();
        assert_eq!(ran.exit_code, Some(3));
        assert!(ran.output.contains("hello alice") && ran.output.contains("oops"));
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let t = std::time::Instant::now();
        let ran = run("sleep 30 & sleep 30", &[], Duration::from_millis(300)).unwrap();
        assert!(ran.timed_out && !ran.ok());
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_background_process_left_behind_does_not_hold_the_worker() {
        let t = std::time::Instant::now();
        let ran = run("sleep 60 & echo started", &[], Duration::from_secs(30)).unwrap();
        assert!(ran.ok() && ran.output.contains("started"));
        assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    }

    #[test]
    fn output_is_bounded() {
        let ran = run("yes x | head -c 100000", &[], Duration::from_secs(10)).unwrap();
        assert!(ran.ok());
        assert_eq!(ran.output.len(), MAX_OUTPUT);
    }
}
