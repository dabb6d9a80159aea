//! `jitgate serve`: flags over `JITGATE_*` environment variables over the config file
//! over the defaults.

use crate::config::{
    setting_duration, BackupFile, FileConfig, PeriodicBackup, ServeConfig, DEFAULT_DATA_DIR, DEFAULT_LISTEN,
};
use crate::error::{Error, Result};
use crate::server::front;
use clap::builder::BoolishValueParser;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Default)]
#[command(
    after_help = "Examples:\n  jitgate serve\n  jitgate serve --listen 0.0.0.0:8443 --public-url https://jitgate.example.com:8443\n  jitgate serve --tls-cert /etc/jitgate/cert.pem --tls-key /etc/jitgate/key.pem\n  jitgate serve --plain-http --listen 127.0.0.1:8080 --behind-proxy"
)]
pub struct ServeArgs {
    /// TOML configuration file (unknown keys are refused; hooks and [notify] are
    /// re-read on SIGHUP). Every other flag also reads a JITGATE_* variable.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "JITGATE_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where the database, TLS key and first-start credentials live [default: ./jitgate-data].
    #[arg(long, env = "JITGATE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The URL people reach this server at, used in links to requests.
    #[arg(long, env = "JITGATE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Serve plain HTTP (only on a loopback address unless --behind-proxy).
    #[arg(long, env = "JITGATE_PLAIN_HTTP", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    plain_http: Option<bool>,
    /// A TLS-terminating proxy sits in front: allows --plain-http on any address.
    #[arg(long, env = "JITGATE_BEHIND_PROXY", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    behind_proxy: Option<bool>,
    /// PEM certificate chain to serve instead of the self-signed one.
    #[arg(long, env = "JITGATE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (must not be readable by others).
    #[arg(long, env = "JITGATE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// HTTP worker threads [default: 8].
    #[arg(long, env = "JITGATE_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// Live client connections at most [default: 1024].
    #[arg(long, env = "JITGATE_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Live connections per client address at most [default: 128].
    #[arg(long, env = "JITGATE_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Deadline for a TLS handshake [default: 10s].
    #[arg(long, env = "JITGATE_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    handshake_timeout: Option<String>,
    /// Deadline for reading a request head [default: 10s].
    #[arg(long, env = "JITGATE_HEAD_TIMEOUT", value_name = "DURATION")]
    head_timeout: Option<String>,
    /// Deadline for reading a request body [default: 30s].
    #[arg(long, env = "JITGATE_BODY_TIMEOUT", value_name = "DURATION")]
    body_timeout: Option<String>,
    /// How long an idle keep-alive connection is kept [default: 30s].
    #[arg(long, env = "JITGATE_IDLE_TIMEOUT", value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Long polls parked at once at most [default: 256].
    #[arg(long, env = "JITGATE_MAX_WAITERS", value_name = "N")]
    max_waiters: Option<usize>,
    /// Live tunnel streams one grant may hold [default: 32].
    #[arg(long, env = "JITGATE_MAX_STREAMS_PER_GRANT", value_name = "N")]
    max_streams_per_grant: Option<usize>,
    /// Open sessions (`jitgate connect` runs) one grant may hold [default: 16].
    #[arg(long, env = "JITGATE_MAX_SESSIONS_PER_GRANT", value_name = "N")]
    max_sessions_per_grant: Option<usize>,
    /// Login attempts per minute per client address [default: 10].
    #[arg(long, env = "JITGATE_LOGIN_ATTEMPTS_PER_MINUTE", value_name = "N")]
    login_attempts_per_minute: Option<u32>,
    /// Log level: info or debug [default: info].
    #[arg(long, env = "JITGATE_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log records as text lines (`LEVEL target: message`, for journald) or as JSON
    /// lines (`ts`, `level`, `target`, `msg`, for log shippers) [default: text].
    #[arg(long, env = "JITGATE_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
    /// Run even as root (refused by default: run as a dedicated user).
    #[arg(long, env = "JITGATE_ALLOW_ROOT", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    allow_root: Option<bool>,
}

pub fn run(args: ServeArgs) -> Result<i32> {
    let cfg = resolve(args)?;
    crate::preflight::refuse_root(cfg.allow_root)?;
    crate::server::serve(cfg)?;
    Ok(0)
}

fn set_log_format(format: &str) -> Result<()> {
    match format {
        "text" => crate::log::set_json(false),
        "json" => crate::log::set_json(true),
        other => return Err(Error::Startup(format!("log format {other:?}: use text or json"))),
    }
    Ok(())
}

fn pick_duration(key: &str, flag: Option<String>, file: Option<String>, default: u64) -> Result<Duration> {
    match flag.or(file) {
        Some(text) => setting_duration(key, &text),
        None => Ok(Duration::from_secs(default)),
    }
}

fn resolve(a: ServeArgs) -> Result<ServeConfig> {
    let d = front::Limits::default();
    // The format first (a flag or the environment wins over the file), so that every
    // record, the file's own warnings included, comes out in it.
    if let Some(format) = &a.log_format {
        set_log_format(format)?;
    }
    let file = match &a.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    if a.log_format.is_none() {
        set_log_format(file.log_format.as_deref().unwrap_or("text"))?;
    }
    if let Some(path) = &a.config {
        crate::preflight::check_config_file(path);
    }
    let level = a.log_level.or(file.log_level).unwrap_or_else(|| "info".into());
    match level.as_str() {
        "info" => {}
        "debug" => crate::log::set_debug(true),
        other => return Err(Error::Startup(format!("log level {other:?}: use info or debug"))),
    }
    let listen = match a.listen.or(file.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse().map_err(|_| Error::Internal("default listen address".into()))?,
    };
    let plain_http = a.plain_http.or(file.plain_http).unwrap_or(false);
    let hooks = file.hooks.clone();
    let notify = file.notify.clone();
    let (limits, login) = (file.limits, file.login);
    let data_dir = a.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    Ok(ServeConfig {
        config_file: a.config,
        listen,
        backup: periodic_backup(file.backup, &data_dir)?,
        data_dir,
        public_url: a.public_url.or(file.public_url),
        plain_http,
        behind_proxy: a.behind_proxy.or(file.behind_proxy).unwrap_or(false),
        tls_cert: a.tls_cert.or(file.tls_cert),
        tls_key: a.tls_key.or(file.tls_key),
        workers: a.workers.or(file.workers).unwrap_or(8),
        // The listener's own defaults, overlaid: one place says what they are.
        limits: front::Limits {
            max_connections: a.max_connections.or(limits.max_connections).unwrap_or(d.max_connections),
            max_connections_per_ip: a
                .max_connections_per_ip
                .or(limits.max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            handshake_timeout: pick_duration(
                "handshake_timeout",
                a.handshake_timeout,
                limits.handshake_timeout,
                d.handshake_timeout.as_secs(),
            )?,
            head_timeout: pick_duration("head_timeout", a.head_timeout, limits.head_timeout, d.head_timeout.as_secs())?,
            body_timeout: pick_duration("body_timeout", a.body_timeout, limits.body_timeout, d.body_timeout.as_secs())?,
            idle_timeout: pick_duration("idle_timeout", a.idle_timeout, limits.idle_timeout, d.idle_timeout.as_secs())?,
            ..d.clone()
        },
        max_waiters: a.max_waiters.or(limits.max_waiters).unwrap_or(256),
        max_streams_per_grant: a
            .max_streams_per_grant
            .or(limits.max_streams_per_grant)
            .unwrap_or(crate::gateway::MAX_STREAMS_PER_GRANT),
        max_sessions_per_grant: a
            .max_sessions_per_grant
            .or(limits.max_sessions_per_grant)
            .unwrap_or(crate::store::sessions::MAX_OPEN_PER_GRANT),
        login_attempts_per_minute: a.login_attempts_per_minute.or(login.attempts_per_minute).unwrap_or(10),
        session_lifetime: pick_duration("session_lifetime", None, login.session_lifetime, 12 * 3600)?,
        allow_root: a.allow_root.or(file.allow_root).unwrap_or(false),
        hooks,
        notify,
    })
}

/// The configuration `serve --config FILE` would run with (for `config check`),
/// `JITGATE_*` environment variables included.
pub(super) fn effective(config: PathBuf) -> Result<ServeConfig> {
    use clap::FromArgMatches;
    let bad_env = |e: clap::Error| Error::Startup(format!("environment: {}", e.to_string().trim()));
    let matches =
        ServeArgs::augment_args(clap::Command::new("serve")).try_get_matches_from(["serve"]).map_err(bad_env)?;
    let args = ServeArgs::from_arg_matches(&matches).map_err(bad_env)?;
    let cfg = resolve(ServeArgs { config: Some(config), ..args })?;
    cfg.validate()?;
    Ok(cfg)
}

fn periodic_backup(file: BackupFile, data_dir: &std::path::Path) -> Result<Option<PeriodicBackup>> {
    let Some(interval) = file.interval else {
        if file.dir.is_some() || file.keep.is_some() {
            return Err(Error::Startup("[backup] needs interval (e.g. \"24h\") for periodic backups".into()));
        }
        return Ok(None);
    };
    Ok(Some(PeriodicBackup {
        dir: file.dir.unwrap_or_else(|| data_dir.join("backups")),
        interval: setting_duration("backup.interval", &interval)?,
        keep: file.keep.unwrap_or(7),
    }))
}
