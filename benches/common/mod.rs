//! Small helpers the benchmarks share (each bench is its own crate: `mod common;`).
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A knob from the environment, or its default.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Wall-clock Unix milliseconds (to compare with times the server records).
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The 1, 5 and 15 minute load averages: how busy the shared machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether this process runs as root (then `serve` needs `--allow-root`).
pub fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).is_some_and(|u| u == "0")
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A started server, as a client sees it.
pub struct Ready {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// The fingerprint the server logged (checked against its certificate).
    pub fingerprint: String,
    pub admin_token: String,
    /// An agent pinned to the server's certificate.
    pub agent: ureq::Agent,
}

/// Tees the server's stderr to `log`, waits for its "listening on" line, reads the
/// first-start admin token, and pins the certificate from the data dir (checking it is
/// the one the log names).
pub fn await_ready(
    stderr: std::process::ChildStderr,
    log: &std::path::Path,
    data: &std::path::Path,
    wait: Duration,
) -> Result<Ready, BoxError> {
    use std::io::{BufRead, BufReader, Write};
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut file = std::fs::File::create(log)?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            let _ = tx.send(line);
        }
    });
    let (mut base, mut logged) = (None, None);
    while base.is_none() {
        let line = rx.recv_timeout(wait).map_err(|_| "the server did not start listening")?;
        if let Some(fp) = line.split("TLS certificate SHA-256 fingerprint: ").nth(1) {
            logged = Some(fp.trim().to_string());
        }
        if let Some(url) = line.split("listening on ").nth(1) {
            base = Some(url.trim().to_string());
        }
    }
    let admin: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data.join("initial-admin.json"))?)?;
    let pem = std::fs::read(data.join(jitgate::tls::CERT_FILE))?;
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().ok_or("no certificate")??;
    let pinned = jitgate::tls::fingerprint(der.as_ref());
    let fingerprint = logged.ok_or("no fingerprint in the log")?;
    if jitgate::tls::normalize_fingerprint(&pinned)? != jitgate::tls::normalize_fingerprint(&fingerprint)? {
        return Err("the logged fingerprint is not the certificate's".into());
    }
    let tls = jitgate::tls::pinned_client_config(jitgate::tls::normalize_fingerprint(&pinned)?)?;
    let agent = ureq::AgentBuilder::new().tls_config(tls).timeout(Duration::from_secs(60)).build();
    let admin_token = admin["token"].as_str().ok_or("no admin token")?.to_string();
    Ok(Ready { base: base.ok_or("no address")?, fingerprint, admin_token, agent })
}
