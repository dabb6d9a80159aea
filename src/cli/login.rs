//! `jitgate login URL`: decides how to trust the server, proves who you are, and saves
//! both to the profile. Trust, in order: `--ca-cert`; `--fingerprint` (must match
//! what the server presents); the system's roots (a real certificate); otherwise the
//! fingerprint is shown and must be confirmed at a terminal, as ssh does. A
//! self-signed server is never trusted silently.

use super::api::{normalize_url, Api, Target};
use super::profile::{self, Profile};
use super::{read_stdin_line, Global};
use crate::error::{Error, Result};
use crate::tls;
use clap::Args;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};

use std::time::Duration;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  jitgate login https://jitgate.internal:8443 --username alice --fingerprint 3f:a1:…\n  jitgate login https://jitgate.internal:8443 --token \"$JITGATE_TOKEN\" --fingerprint 3f:a1:…\n  jitgate login https://jitgate.example.com   # a real certificate: no pin needed"
)]
pub struct LoginArgs {
    /// The server, e.g. https://jitgate.internal:8443.
    url: String,
    /// Log in with this username and a password (asked without echo), and mint a token for this machine.
    #[arg(long)]
    username: Option<String>,
    /// Read the password from standard input instead of asking.
    #[arg(long, requires = "username")]
    password_stdin: bool,
}

pub fn run(g: &Global, args: LoginArgs) -> Result<i32> {
    let server = normalize_url(&args.url)?;
    let (fingerprint, ca_cert) = if server.starts_with("https://") { decide_trust(&server, g)? } else { (None, None) };
    let mut target = Target { server: server.clone(), token: None, fingerprint, ca_cert };
    let token = match (&g.token, &args.username) {
        (Some(t), None) => t.clone(),
        (None, Some(user)) => mint_token(&target, user, args.password_stdin)?,
        _ => return Err(Error::bad("usage", "give --token TOKEN or --username NAME")),
    };
    target.token = Some(token.clone());
    let me = Api::new(target.clone())?.get("/api/v1/me")?;
    let saved = profile::save(&Profile {
        server: Some(server.clone()),
        token: Some(token),
        fingerprint: target.fingerprint,
        ca_cert: target.ca_cert,
    })?;
    eprintln!("Logged in to {server} as {}. Saved to {}.", me["username"].as_str().unwrap_or("?"), saved.display());
    Ok(0)
}

type Trust = (Option<String>, Option<std::path::PathBuf>);

fn decide_trust(server: &str, g: &Global) -> Result<Trust> {
    if let Some(ca) = &g.ca_cert {
        return Ok((None, Some(ca.clone())));
    }
    let presented = tls::fingerprint(&peek_certificate(server)?);
    if let Some(expected) = &g.fingerprint {
        if tls::normalize_fingerprint(expected)? != tls::normalize_fingerprint(&presented)? {
            return Err(Error::Connect(format!(
                "FINGERPRINT MISMATCH: {server} presented {presented}, you expected {expected}. Someone may be in the middle, or the server has a new certificate: check its log before going on"
            )));
        }
        return Ok((Some(presented), None));
    }
    let system = Api::new(Target { server: server.to_string(), ..Target::default() })?;
    if system.get("/healthz").is_ok() {
        return Ok((None, None)); // a certificate this machine's roots already trust
    }
    confirm(server, &presented)?;
    Ok((Some(presented), None))
}

/// Trust on first use, only with a person at a terminal to compare the fingerprint.
fn confirm(server: &str, fingerprint: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Connect(format!(
            "{server} has a certificate this machine does not trust, and there is no terminal to confirm it: compare its SHA-256 fingerprint with the one the server logs at start, then pass --fingerprint (it presented {fingerprint})"
        )));
    }
    eprint!("The certificate of {server} is not signed by an authority this machine trusts.\nSHA-256 fingerprint: {fingerprint}\nCompare it with the fingerprint in the server's log. Trust it? [y/N] ");
    let _ = std::io::stderr().flush();
    let answer = read_stdin_line()?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Connect("not trusted: nothing saved".into()))
    }
}

fn mint_token(target: &Target, username: &str, password_stdin: bool) -> Result<String> {
    let password = if password_stdin {
        read_stdin_line()?
    } else {
        rpassword::prompt_password(format!("Password for {username}: ")).map_err(|e| {
            Error::bad("no_terminal", format!("cannot read a password without a terminal ({e}): use --password-stdin"))
        })?
    };
    let api = Api::new(target.clone())?;
    let (session, cookie) =
        api.call_raw("POST", "/api/v1/login", Some(&json!({"username": username, "password": password})), &[])?;
    let cookie = cookie
        .and_then(|c| c.split(';').next().map(str::to_string))
        .ok_or_else(|| Error::Connect("the server sent no session".into()))?;
    let csrf = session["csrf_token"].as_str().unwrap_or("").to_string();
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let name = token_name();
    let minted: Value = api.call(
        "POST",
        &format!("/api/v1/users/{}/tokens", super::requests::enc(username)),
        Some(&json!({"name": name})),
        &headers,
    )?;
    // The browser-style session was only a means to mint the token: end it.
    let _ = api.call("POST", "/api/v1/logout", Some(&json!({})), &headers);
    minted["token"].as_str().map(str::to_string).ok_or_else(|| Error::Connect("the server minted no token".into()))
}

/// `cli-HOST-20261204T2110`: says where and when this machine's token was made.
fn token_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let host = if host.is_empty() { "host".to_string() } else { host };
    format!("cli-{host}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"))
}

/// Completes a TLS handshake only to read the certificate the server presents.
fn peek_certificate(server: &str) -> Result<Vec<u8>> {
    let (host, with_port) = crate::gateway::client::endpoint(server)?;
    let (config, seen) = crate::tls::recording_client_config()?;
    let name =
        ServerName::try_from(host.to_string()).map_err(|_| Error::bad("bad_url", format!("bad host {host:?}")))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| Error::Connect(format!("TLS: {e}")))?;
    let mut tcp = crate::gateway::client::dial(&with_port, Duration::from_secs(10))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| Error::Connect(format!("TLS handshake with {server}: {e}")))?;
    }
    let cert = seen.lock().map_err(|_| Error::Internal("lock".into()))?.clone();
    cert.ok_or_else(|| Error::Connect(format!("{server} presented no certificate")))
}
