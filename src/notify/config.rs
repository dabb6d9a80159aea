//! `[notify]` in the server's TOML config: where notifications go (webhooks, Slack-
//! or Mattermost-compatible incoming webhooks, Teams, email) and how the chat buttons
//! are checked. Like hooks, these come only from the config file on disk, never from
//! the API: a URL and a secret are the operator's to give.

use crate::config::setting_duration;
use crate::domain::check_name;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default attempts per notification before it is marked dead.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default wait before the first retry; each retry doubles it (with jitter).
pub const DEFAULT_RETRY_AFTER: &str = "2s";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Attempts per delivery before it is dead (default 8).
    pub max_attempts: Option<u32>,
    /// Wait before the first retry, doubled each time, capped at 10 minutes (default 2s).
    pub retry_after: Option<String>,
    #[serde(default)]
    pub webhook: Vec<WebhookSink>,
    #[serde(default)]
    pub slack: Vec<SlackSink>,
    #[serde(default)]
    pub teams: Vec<TeamsSink>,
    pub email: Option<EmailSink>,
    pub mattermost: Option<MattermostActions>,
    pub slack_dm: Option<SlackDm>,
}

/// `[notify.slack_dm]`: a direct message in Slack to the requester (a user with a
/// `slack_user_id`) on every event after their request: the decision, the end of the
/// grant, the warning before it expires. Needs a Slack app's bot token with
/// `chat:write`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackDm {
    /// `xoxb-…` (or `bot_token_file`).
    #[serde(default)]
    pub bot_token: String,
    pub bot_token_file: Option<PathBuf>,
    /// Slack's Web API base (default `https://slack.com/api`): another for an egress
    /// proxy that speaks it.
    pub api_url: Option<String>,
    /// The app's signing secret (or `signing_secret_file`): the approvers of a new
    /// request get it in a DM with Approve and Reject buttons.
    pub signing_secret: Option<String>,
    pub signing_secret_file: Option<PathBuf>,
    pub connections: Option<Vec<String>>,
}

impl SlackDm {
    pub fn post_message_url(&self) -> String {
        format!("{}/chat.postMessage", self.api_url.as_deref().unwrap_or("https://slack.com/api").trim_end_matches('/'))
    }
}

/// `[[notify.webhook]]`: a signed JSON POST per event.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    pub url: String,
    /// HMAC-SHA256 key of `X-Jitgate-Signature` (or `secret_file`).
    #[serde(default)]
    pub secret: String,
    /// A file holding `secret` (read at start and on reload; not readable by others).
    pub secret_file: Option<PathBuf>,
    /// Only events of these connections (default: all).
    pub connections: Option<Vec<String>>,
}

/// `[[notify.slack]]`: a Slack-compatible incoming webhook (Slack or Mattermost).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSink {
    pub url: String,
    /// `slack` (Block Kit buttons, needs `signing_secret`) or `mattermost`
    /// (attachment buttons, needs `[notify.mattermost] action_secret`). Default slack.
    pub style: Option<String>,
    /// The Slack app's signing secret: turns on Approve/Reject buttons.
    pub signing_secret: Option<String>,
    pub signing_secret_file: Option<PathBuf>,
    pub connections: Option<Vec<String>>,
}

/// `[[notify.teams]]`: a Teams incoming webhook (Adaptive Card, a link, no buttons).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsSink {
    pub url: String,
    pub connections: Option<Vec<String>>,
}

/// `[notify.email]`: SMTP to the approvers on a new request, to the requester after.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSink {
    /// `host:port` of the SMTP server.
    pub server: String,
    /// `starttls` (default), `tls` (implicit, port 465) or `none` (loopback or a
    /// trusted relay only: no authentication is sent in the clear).
    pub tls: Option<String>,
    pub from: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub connections: Option<Vec<String>>,
}

/// `[notify.mattermost]`: the check of Mattermost's interactive buttons.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostActions {
    /// Key of the HMAC carried in each button's context (or `action_secret_file`).
    #[serde(default)]
    pub action_secret: String,
    pub action_secret_file: Option<PathBuf>,
    /// Addresses (`10.0.0.5`, `10.0.0.0/24`) the Mattermost server calls from.
    /// Mattermost does not sign its calls: only these may post actions.
    pub allowed_sources: Vec<String>,
}

impl NotifyConfig {
    /// Reads every `*_file` secret into its key: exactly one of the two may be set.
    pub fn load_secret_files(&mut self) -> Result<()> {
        for w in &mut self.webhook {
            required_secret("[[notify.webhook]] secret", &mut w.secret, &w.secret_file)?;
        }
        for s in &mut self.slack {
            optional_secret("[[notify.slack]] signing_secret", &mut s.signing_secret, &s.signing_secret_file)?;
        }
        if let Some(e) = &mut self.email {
            optional_secret("[notify.email] password", &mut e.password, &e.password_file)?;
        }
        if let Some(m) = &mut self.mattermost {
            required_secret("[notify.mattermost] action_secret", &mut m.action_secret, &m.action_secret_file)?;
        }
        if let Some(d) = &mut self.slack_dm {
            required_secret("[notify.slack_dm] bot_token", &mut d.bot_token, &d.bot_token_file)?;
            optional_secret("[notify.slack_dm] signing_secret", &mut d.signing_secret, &d.signing_secret_file)?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Startup(m));
        if self.max_attempts == Some(0) || self.max_attempts.is_some_and(|n| n > 50) {
            return bad("[notify] max_attempts must be between 1 and 50".into());
        }
        self.retry_after()?;
        for w in &self.webhook {
            check_url("[[notify.webhook]]", &w.url)?;
            if w.secret.len() < 16 {
                return bad("[[notify.webhook]] secret (or secret_file) must be at least 16 characters".into());
            }
            check_connections("[[notify.webhook]]", &w.connections)?;
        }
        for s in &self.slack {
            check_url("[[notify.slack]]", &s.url)?;
            check_connections("[[notify.slack]]", &s.connections)?;
            match s.style.as_deref() {
                None | Some("slack") | Some("mattermost") => {}
                Some(other) => return bad(format!("[[notify.slack]] style {other:?}: use slack or mattermost")),
            }
            if s.signing_secret.as_deref().is_some_and(str::is_empty) {
                return bad("[[notify.slack]] signing_secret is empty".into());
            }
        }
        for t in &self.teams {
            check_url("[[notify.teams]]", &t.url)?;
            check_connections("[[notify.teams]]", &t.connections)?;
        }
        if let Some(e) = &self.email {
            e.validate()?;
        }
        if let Some(d) = &self.slack_dm {
            check_url("[notify.slack_dm] api_url", &d.post_message_url())?;
            check_connections("[notify.slack_dm]", &d.connections)?;
            if d.bot_token.trim().is_empty() || d.bot_token.chars().any(char::is_whitespace) {
                return bad("[notify.slack_dm] bot_token (or bot_token_file) is empty or has spaces".into());
            }
            if d.signing_secret.as_deref().is_some_and(str::is_empty) {
                return bad("[notify.slack_dm] signing_secret is empty".into());
            }
        }
        if let Some(m) = &self.mattermost {
            if m.action_secret.len() < 16 {
                return bad(
                    "[notify.mattermost] action_secret (or action_secret_file) must be at least 16 characters".into()
                );
            }
            if m.allowed_sources.is_empty() {
                return bad("[notify.mattermost] allowed_sources: name the Mattermost server's address".into());
            }
            for s in &m.allowed_sources {
                parse_cidr(s).ok_or_else(|| Error::Startup(format!("[notify.mattermost] allowed_sources: {s:?}")))?;
            }
        }
        Ok(())
    }

    pub fn max_attempts(&self) -> i64 {
        i64::from(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
    }

    pub fn retry_after(&self) -> Result<Duration> {
        setting_duration("notify.retry_after", self.retry_after.as_deref().unwrap_or(DEFAULT_RETRY_AFTER))
    }

    /// The Slack signing secrets that buttons are checked against.
    pub fn slack_signing_secrets(&self) -> Vec<&str> {
        let dm = self.slack_dm.iter().filter_map(|d| d.signing_secret.as_deref());
        self.slack.iter().filter_map(|s| s.signing_secret.as_deref()).chain(dm).collect()
    }

    /// Whether `peer` (`ip:port` as the listener saw it) may post Mattermost actions.
    pub fn mattermost_source_allowed(&self, peer: &str) -> bool {
        let Some(m) = &self.mattermost else { return false };
        let ip = peer.parse::<std::net::SocketAddr>().map(|a| a.ip()).or_else(|_| peer.parse::<IpAddr>());
        let Ok(ip) = ip else { return false };
        m.allowed_sources.iter().filter_map(|s| parse_cidr(s)).any(|(net, bits)| in_net(ip, net, bits))
    }
}

impl EmailSink {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Startup(format!("[notify.email] {m}")));
        if !self.server.contains(':') {
            return bad("server is host:port (e.g. \"mail.example.com:587\")");
        }
        if crate::store::users::check_email(&self.from).is_err() {
            return bad("from is not an email address");
        }
        match self.tls.as_deref() {
            None | Some("starttls") | Some("tls") | Some("none") => {}
            Some(_) => return bad("tls is starttls, tls or none"),
        }
        if self.username.is_some() != self.password.is_some() {
            return bad("username and password go together");
        }
        check_connections("[notify.email]", &self.connections)
    }

    pub fn tls_mode(&self) -> &str {
        self.tls.as_deref().unwrap_or("starttls")
    }
}

/// `key` or `key_file`, not both; the file's content (one trailing newline dropped).
fn optional_secret(key: &str, value: &mut Option<String>, file: &Option<PathBuf>) -> Result<()> {
    let Some(path) = file else { return Ok(()) };
    if value.is_some() {
        return Err(Error::Startup(format!("{key} and {key}_file: set one of the two, not both")));
    }
    *value = Some(read_secret_file(key, path)?);
    Ok(())
}

fn required_secret(key: &str, value: &mut String, file: &Option<PathBuf>) -> Result<()> {
    let mut v = (!value.is_empty()).then(|| std::mem::take(value));
    optional_secret(key, &mut v, file)?;
    *value = v.unwrap_or_default();
    Ok(())
}

/// A secret file must not be readable by every user on the box.
pub fn read_secret_file(key: &str, path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| Error::Startup(format!("{key}_file {}: {e}", path.display()));
    let mode = std::fs::metadata(path).map_err(cannot)?.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(Error::Startup(format!(
            "{key}_file {} is readable by every user (mode {:o}): run `chmod 600 {}` (or 0640 with the service's group)",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(cannot)?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(text.to_string())
}

fn check_url(what: &str, url: &str) -> Result<()> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.chars().any(char::is_whitespace) {
        return Err(Error::Startup(format!("{what} url must be an http:// or https:// URL")));
    }
    Ok(())
}

fn check_connections(what: &str, list: &Option<Vec<String>>) -> Result<()> {
    for c in list.iter().flatten() {
        check_name("connection", c).map_err(|e| Error::Startup(format!("{what} connections: {e}")))?;
    }
    Ok(())
}

/// Whether a sink limited to `list` takes events of `connection`.
pub fn applies(list: &Option<Vec<String>>, connection: &str) -> bool {
    list.as_ref().is_none_or(|l| l.iter().any(|c| c == connection))
}

/// `10.0.0.0/8`, `::1`, `127.0.0.1` → (network, prefix bits).
fn parse_cidr(text: &str) -> Option<(IpAddr, u32)> {
    let (ip, bits) = match text.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?),
        None => {
            let ip = text.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    let ip = match (ip, net) {
        (IpAddr::V6(v6), IpAddr::V4(_)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        _ => ip,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mattermost_sources_match_addresses_and_networks() {
        let cfg = NotifyConfig {
            mattermost: Some(MattermostActions {
                action_secret: "x".repeat(16),
                action_secret_file: None,
                allowed_sources: vec!["10.1.0.0/16".into(), "127.0.0.1".into(), "::1".into()],
            }),
            ..NotifyConfig::default()
        };
        assert!(cfg.mattermost_source_allowed("10.1.200.3:5555"));
        assert!(cfg.mattermost_source_allowed("127.0.0.1:80"));
        assert!(cfg.mattermost_source_allowed("[::1]:80"));
        assert!(!cfg.mattermost_source_allowed("127.0.0.2:80"));
        assert!(!cfg.mattermost_source_allowed("10.2.0.1:80"));
        assert!(!cfg.mattermost_source_allowed("junk"));
        assert!(!NotifyConfig::default().mattermost_source_allowed("127.0.0.1:80"));
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\n\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_secret_file("k", &path).unwrap(), "abc\n");
        std::fs::write(&path, "abc\r\n").unwrap();
        assert_eq!(read_secret_file("k", &path).unwrap(), "abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(read_secret_file("k", &path).unwrap_err().user_message().contains("chmod 600"));
        let (mut v, file) = (Some("x".to_string()), Some(path));
        assert!(optional_secret("k", &mut v, &file).unwrap_err().user_message().contains("not both"));
    }
}
