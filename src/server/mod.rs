//! `jitgate serve`: wires the pieces together and runs them until SIGTERM/SIGINT.
//! SIGHUP re-reads `--config` and swaps the hooks and notification channels.
//!
//! Threads: the listener (`front`, accept + TLS + limits), the HTTP workers
//! (tiny_http on a private Unix socket), long-poll waiters, the expiry timer, the
//! periodic `backup` thread (when `[backup]` is configured) and the signal watcher.
//! Shutdown: wake the long polls, stop accepting, finish requests in flight, stop the
//! workers, the timer and the backups, checkpoint the database, exit 0.

pub mod api;
pub mod app;
pub mod auth;
mod bootstrap;
pub mod front;
pub mod http;
pub mod maintenance;
pub mod routes;
pub mod views;
pub mod wait;

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::{datadir, expiry, tls};
use app::App;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

pub fn serve(cfg: ServeConfig) -> Result<()> {
    cfg.validate()?;
    datadir::prepare(&cfg.data_dir)?;
    let store = Arc::new(Store::open_with(&datadir::database(&cfg.data_dir)?, |conn, from| {
        crate::store::backup::before_upgrade(conn, &cfg.data_dir, from, crate::time::now_ms()).map(|_| ())
    })?);
    bootstrap::first_start(&store, &cfg.data_dir)?;
    let metrics = Arc::new(Metrics::default());
    let closed = expiry::catch_up(&store, &metrics)?;
    if closed > 0 {
        crate::info!("closed {closed} requests that ran out while the server was down");
    }
    let tls = load_tls(&cfg)?;
    let socket = datadir::socket_dir(&cfg.data_dir)?.join("http.sock");
    let http = Arc::new(
        tiny_http::Server::http_unix(&socket)
            .map_err(|e| Error::Startup(format!("internal socket {}: {e}", socket.display())))?,
    );
    let gateway =
        crate::gateway::Gateway::new(store.clone(), cfg.max_streams_per_grant, crate::gateway::relay_threads())?;
    let front = front::Front::bind(cfg.listen, tls, socket, cfg.limits.clone())
        .map_err(|e| Error::Startup(format!("cannot listen on {}: {e}", cfg.listen)))?
        .with_tunnels(gateway.clone());
    let public_url = match &cfg.public_url {
        Some(url) => url.clone(),
        None => default_url(&cfg, front.local_addr()),
    };
    let hub = Arc::new(Hub::default());
    let live =
        crate::notify::Live::new(crate::notify::Channels { hooks: cfg.hooks.clone(), notify: cfg.notify.clone() });
    let app = Arc::new(App {
        live: live.clone(),
        gateway: gateway.clone(),
        public_url,
        store: store.clone(),
        hub: hub.clone(),
        metrics: metrics.clone(),
        login_limiter: auth::RateLimiter::new(cfg.login_attempts_per_minute),
        waiters: AtomicUsize::new(0),
        waiters_by_user: Default::default(),
        front_stats: Default::default(),
        config: cfg.clone(),
    });
    let mut workers = Vec::new();
    for _ in 0..cfg.workers {
        let (app, http) = (app.clone(), http.clone());
        workers.push(std::thread::Builder::new().name("http-worker".into()).spawn(move || app::worker(app, http))?);
    }
    let backups = maintenance::spawn(cfg.backup.clone(), store.clone(), metrics.clone())?;
    let timer = expiry::spawn(store.clone(), hub.clone(), metrics)?;
    let tunnel_watch = gateway.spawn_watcher(hub.clone())?;
    let outbox = crate::notify::Worker::spawn(store.clone(), hub.clone(), live.clone(), app.public_url.clone())?;
    let _ = app.front_stats.set(front.stats());
    watch_signals(hub.clone(), front.shutdown_handle(), cfg.config_file.clone(), live)?;
    crate::sdnotify::ready();
    let served = front.run();
    crate::sdnotify::stopping();
    crate::info!("stopping: no longer accepting; finishing requests in flight");
    hub.stop();
    for _ in &workers {
        http.unblock();
    }
    for w in workers {
        let _ = w.join();
    }
    let _ = timer.join();
    let _ = tunnel_watch.join();
    gateway.stop();
    let _ = outbox.join();
    backups.stop();
    store.close()?;
    served?;
    crate::info!("stopped cleanly");
    Ok(())
}

/// `https://127.0.0.1:8443`, or `https://localhost:8443` for a wildcard address.
fn default_url(cfg: &ServeConfig, bound: std::net::SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("{}://localhost:{}", cfg.scheme(), bound.port())
    } else {
        format!("{}://{bound}", cfg.scheme())
    }
}

fn load_tls(cfg: &ServeConfig) -> Result<Option<Arc<rustls::ServerConfig>>> {
    if cfg.plain_http {
        crate::warn!("TLS is off (--plain-http): tokens cross the network in the clear");
        return Ok(None);
    }
    let source = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => tls::Source::Files { cert: cert.clone(), key: key.clone() },
        _ => tls::Source::SelfSigned { data_dir: cfg.data_dir.clone(), names: certificate_names(cfg) },
    };
    let loaded = tls::load(&source)?;
    crate::info!("TLS certificate SHA-256 fingerprint: {}", loaded.fingerprint);
    Ok(Some(loaded.config))
}

/// Names for a self-signed certificate: loopback, the listen address, the host name.
fn certificate_names(cfg: &ServeConfig) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ip = cfg.listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && crate::domain::check_name("host", host).is_ok() {
            names.push(host.to_string());
        }
    }
    names
}

/// SIGTERM and SIGINT: wake the long polls (they answer with the current state),
/// then stop the listener, which lets requests in flight finish. SIGHUP: `reload`.
fn watch_signals(
    hub: Arc<Hub>,
    front: front::ShutdownHandle,
    config_file: Option<std::path::PathBuf>,
    live: crate::notify::Live,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                reload(config_file.as_deref(), &live, &hub);
                continue;
            }
            crate::info!("signal {sig} received");
            hub.stop();
            front.shutdown();
            break;
        }
    })?;
    Ok(())
}

/// SIGHUP: re-reads the config file and, if it is valid, swaps the hooks and the
/// notification channels (nothing else changes: connections stay up; other settings
/// need a restart). An invalid file changes nothing.
fn reload(config_file: Option<&std::path::Path>, live: &crate::notify::Live, hub: &Hub) {
    let Some(path) = config_file else {
        crate::warn!("SIGHUP: no --config file, nothing to reload");
        return;
    };
    let read = crate::config::FileConfig::read(path).and_then(|f| {
        for hook in &f.hooks {
            hook.validate()?;
        }
        f.notify.validate()?;
        Ok(crate::notify::Channels { hooks: f.hooks, notify: f.notify })
    });
    match read {
        Ok(channels) => {
            let n = &channels.notify;
            let sinks = n.webhook.len() + n.slack.len() + n.teams.len() + usize::from(n.email.is_some());
            crate::info!(
                "config {} reloaded on SIGHUP: {} hooks, {} notification channels (other settings need a restart)",
                path.display(),
                channels.hooks.len(),
                sinks
            );
            live.swap(channels);
            hub.notify();
        }
        Err(e) => crate::error!(
            "config {} not reloaded on SIGHUP, the running configuration is kept: {}",
            path.display(),
            e.log_detail()
        ),
    }
}
#[cfg(test)]
mod openapi_tests;
