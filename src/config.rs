//! Server configuration: a TOML file (`serve --config FILE`, unknown keys refused)
//! overlaid by command-line flags. Every key has a default, so no file is needed.
//! Hooks and notifications will live here too: they come only from this file on
//! disk, never from the API (an API token must never become code on the box).

use crate::domain::duration;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file, as written. Every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub plain_http: Option<bool>,
    pub behind_proxy: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub workers: Option<usize>,
    pub log_level: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Run as root anyway (refused by default; see `preflight`).
    pub allow_root: Option<bool>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub login: LoginFile,
    #[serde(default)]
    pub backup: BackupFile,
    /// `[[hooks]]`: commands run on grant, end and revoke (see `gateway::hooks`).
    #[serde(default)]
    pub hooks: Vec<crate::gateway::hooks::HookConfig>,
    /// `[notify]`: webhooks, chat, Teams, email (see `notify::config`).
    #[serde(default)]
    pub notify: crate::notify::config::NotifyConfig,
}

/// `[backup]`: periodic backups by the server, off until `interval` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    /// Default: `backups/` in the data dir.
    pub dir: Option<PathBuf>,
    pub interval: Option<String>,
    /// How many periodic backups to keep (default 7).
    pub keep: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub handshake_timeout: Option<String>,
    pub head_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_waiters: Option<usize>,
    pub max_streams_per_grant: Option<usize>,
    pub max_sessions_per_grant: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    pub attempts_per_minute: Option<u32>,
    pub session_lifetime: Option<String>,
}

impl FileConfig {
    pub fn read(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Startup(format!("cannot read config {}: {e}", path.display())))?;
        let mut cfg: FileConfig = toml::from_str(&text).map_err(|e| {
            // The line, so that a misspelt key is found at once in a long file.
            let at = match e.span() {
                Some(span) => {
                    let before = &text.as_bytes()[..span.start.min(text.len())];
                    format!(" line {}", before.iter().filter(|b| **b == b'\n').count() + 1)
                }
                None => String::new(),
            };
            Error::Startup(format!("config {}{at}: {}", path.display(), e.message()))
        })?;
        cfg.notify.load_secret_files()?;
        Ok(cfg)
    }
}

/// The resolved configuration `serve` runs with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `--config FILE`: re-read on SIGHUP for hooks and notifications.
    pub config_file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: derived from the address actually bound.
    pub public_url: Option<String>,
    pub plain_http: bool,
    pub behind_proxy: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub workers: usize,
    /// The listener's caps and deadlines (defaults: `front::Limits::default()`).
    pub limits: crate::server::front::Limits,
    pub max_waiters: usize,
    /// Live tunnel streams one grant may hold (streams count against the connection caps).
    pub max_streams_per_grant: usize,
    /// Open sessions one grant may hold (a crashed `connect` leaves its own open).
    pub max_sessions_per_grant: usize,
    pub login_attempts_per_minute: u32,
    pub session_lifetime: Duration,
    pub allow_root: bool,
    /// `None`: no periodic backups.
    pub backup: Option<PeriodicBackup>,
    pub hooks: Vec<crate::gateway::hooks::HookConfig>,
    pub notify: crate::notify::config::NotifyConfig,
}

/// Periodic backups: one every `interval` into `dir`, the newest `keep` kept.
#[derive(Clone, Debug)]
pub struct PeriodicBackup {
    pub dir: PathBuf,
    pub interval: Duration,
    pub keep: usize,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_DATA_DIR: &str = "./jitgate-data";

/// Parses a duration setting such as `"10s"`.
pub fn setting_duration(key: &str, text: &str) -> Result<Duration> {
    duration::parse(text).map(Duration::from_secs).map_err(|e| Error::Startup(format!("{key}: {e}")))
}

impl ServeConfig {
    /// Checks the combination: plain HTTP only on loopback unless behind a proxy, a
    /// certificate needs its key.
    pub fn validate(&self) -> Result<()> {
        for hook in &self.hooks {
            hook.validate()?;
        }
        self.notify.validate()?;
        if self.plain_http && !self.listen.ip().is_loopback() && !self.behind_proxy {
            return Err(Error::Startup(format!(
                "plain HTTP on {} would send tokens in the clear: listen on a loopback address, or add --behind-proxy when a TLS proxy is in front",
                self.listen
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Startup("--tls-cert and --tls-key go together".into()));
        }
        if self.workers == 0 || self.workers > 256 {
            return Err(Error::Startup("workers must be between 1 and 256".into()));
        }
        if self.limits.max_connections == 0
            || self.limits.max_connections_per_ip == 0
            || self.max_waiters == 0
            || self.max_streams_per_grant == 0
            || self.max_sessions_per_grant == 0
            || self.max_sessions_per_grant > 100_000
        {
            return Err(Error::Startup(
                "connection, waiter, stream and session limits must be at least 1 (sessions: at most 100000)".into(),
            ));
        }
        if let Some(b) = &self.backup {
            if b.keep == 0 || b.interval.is_zero() {
                return Err(Error::Startup("[backup] keep and interval must be at least 1 (1s)".into()));
            }
        }
        Ok(())
    }

    pub fn scheme(&self) -> &'static str {
        if self.plain_http {
            "http"
        } else {
            "https"
        }
    }
}
