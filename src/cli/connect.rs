//! `jitgate connect CONN`: asks for access (or reuses a live grant or pending
//! request), waits for the decision with the long-poll endpoint (no busy polling),
//! and reports it:
//!
//! ```text
//! ⣷ waiting for access request to be approved at https://HOST/#/requests/req_…
//! Connection ready. Session ID: sess_…
//! Access expires in 2 hours.
//! ```
//!
//! Ctrl-C while waiting cancels the request on the server. For proxied kinds
//! (postgres, tcp) the command then stays in the foreground until the grant ends
//! (the gateway will serve the local port here); Ctrl-C then ends the session but
//! leaves the grant live, so `connect` again reconnects without a new approval.
//! Exit codes: 0 granted (and, for proxied kinds, ended normally), 3 rejected,
//! 4 cancelled, 5 revoked, 1 error.

use super::api::Api;
use super::output::{remaining_secs, text, Out};
use super::requests::enc;
use super::{EXIT_CANCELLED, EXIT_REJECTED, EXIT_REVOKED};
use crate::domain::duration::humanize;
use crate::error::{Error, Result};
use crate::gateway::client::Dialer;
use crate::gateway::engine::{Engine, Job};
use crate::gateway::relay::{Cut, NoTap, Relay};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  jitgate connect prod-postgres --duration 2h --reason INC-1234\n  jitgate connect wiki-admin --no-wait --json"
)]
pub struct ConnectArgs {
    /// The connection to ask access to.
    connection: String,
    /// How long, counted from approval (e.g. 30m, 2h, 1h30m); default: the connection's.
    #[arg(long, short)]
    duration: Option<String>,
    /// Why (some connections require it).
    #[arg(long, short)]
    reason: Option<String>,
    /// Local port for proxied connections (the gateway uses it).
    #[arg(long, short)]
    port: Option<u16>,
    /// Create (or reuse) the request, print it, and exit without waiting.
    #[arg(long)]
    no_wait: bool,
}

enum Event {
    Changed(Value),
    Failed(Error),
    Interrupted,
}

pub fn run(api: &Api, out: Out, args: ConnectArgs) -> Result<i32> {
    let created = api.post(
        "/api/v1/requests",
        &json!({"connection": args.connection, "duration": args.duration, "reason": args.reason}),
    )?;
    if args.no_wait {
        out.show(&created, || {
            format!("{} is {}: {}", text(&created["id"]), text(&created["status"]), text(&created["url"]))
        });
        return Ok(0);
    }
    let (tx, rx) = channel();
    watch_signals(tx.clone())?;
    let decided = wait_for_decision(api, out, &created, &tx, &rx)?;
    match text(&decided["status"]).as_str() {
        "APPROVED" => granted(api, out, &decided, args.port, &tx, &rx),
        _ => Ok(report_end(out, &decided)),
    }
}

/// Waits while the request is PENDING; Ctrl-C cancels it on the server.
fn wait_for_decision(api: &Api, out: Out, created: &Value, tx: &Sender<Event>, rx: &Receiver<Event>) -> Result<Value> {
    if created["status"] != "PENDING" {
        return Ok(created.clone());
    }
    let id = text(&created["id"]);
    let line = format!("waiting for access request to be approved at {}", text(&created["url"]));
    let spinner = if !out.json && std::io::stdout().is_terminal() {
        // Drawn on stdout, where the waiting line belongs.
        let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .tick_chars("⣾⣽⣻⢿⡿⣟⣯⣷ "),
        );
        bar.set_message(line);
        bar.enable_steady_tick(Duration::from_millis(80));
        Some(bar)
    } else {
        if out.json {
            eprintln!("{line}")
        } else {
            say!("{line}")
        }
        None
    };
    poll_until_changed(api.clone(), id.clone(), "PENDING", tx.clone());
    let result = match rx.recv() {
        Ok(Event::Changed(v)) => Ok(v),
        Ok(Event::Failed(e)) => Err(e),
        Ok(Event::Interrupted) | Err(_) => cancel(api, &id),
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    result
}

/// Ctrl-C while waiting: withdraw the request. If an approval landed in the same
/// moment, give the fresh grant back instead, so Ctrl-C never leaves access behind.
fn cancel(api: &Api, id: &str) -> Result<Value> {
    let reason = json!({"reason": "cancelled from the terminal"});
    match api.post(&format!("/api/v1/requests/{}/cancel", enc(id)), &reason) {
        Err(Error::Remote { status: 409, .. }) => {
            let now = api.get(&format!("/api/v1/requests/{}", enc(id)))?;
            if now["status"] == "APPROVED" {
                api.post(&format!("/api/v1/requests/{}/end", enc(id)), &reason)?;
                return api.get(&format!("/api/v1/requests/{}", enc(id))).map(|mut v| {
                    v["status"] = json!("CANCELLED");
                    v
                });
            }
            Ok(now)
        }
        other => other,
    }
}

/// Long-polls on its own thread until the status differs from `from`.
fn poll_until_changed(api: Api, id: String, from: &'static str, tx: Sender<Event>) {
    std::thread::spawn(move || loop {
        match api.get(&format!("/api/v1/requests/{}/wait?status={from}&timeout=30s", enc(&id))) {
            Ok(v) if v["status"] != from => {
                let _ = tx.send(Event::Changed(v));
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Event::Failed(e));
                return;
            }
        }
    });
}

fn watch_signals(tx: Sender<Event>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // SIGHUP too: a closed terminal or a dropped SSH connection ends the session
    // cleanly instead of leaving it open (a grant holds at most 16 open sessions).
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if tx.send(Event::Interrupted).is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn granted(
    api: &Api,
    out: Out,
    request: &Value,
    port: Option<u16>,
    tx: &Sender<Event>,
    rx: &Receiver<Event>,
) -> Result<i32> {
    let id = text(&request["id"]);
    let session = api.post("/api/v1/sessions", &json!({"request_id": id}))?;
    let left = remaining_secs(&request["expires_at"]).unwrap_or(0);
    if out.json {
        say!("{}", json!({"request": request, "session": session}));
    } else {
        say!("Connection ready. Session ID: {}", text(&session["id"]));
        say!("Access expires in {}.", humanize(left));
    }
    let connection = api.get(&format!("/api/v1/connections/{}", enc(&text(&request["connection"]))))?;
    if connection["kind"] == "generic" {
        return Ok(0);
    }
    // A proxied connection: serve the local port, and stay with the grant until it
    // ends or Ctrl-C.
    serve_local_port(api, out, &connection, &id, &text(&session["id"]), port)?;
    poll_until_changed(api.clone(), id.clone(), "APPROVED", tx.clone());
    match rx.recv() {
        Ok(Event::Changed(v)) => Ok(report_end(out, &v)),
        Ok(Event::Failed(e)) => Err(e),
        Ok(Event::Interrupted) | Err(_) => {
            api.post(
                &format!("/api/v1/sessions/{}/end", enc(&text(&session["id"]))),
                &json!({"reason": "client disconnected"}),
            )?;
            if !out.json {
                say!(
                    "Disconnected. The grant stays live until {}; `jitgate requests end {id}` gives it back.",
                    text(&request["expires_at"])
                );
            }
            Ok(0)
        }
    }
}

/// Listens on 127.0.0.1 and turns each local TCP connection into a tunnel stream.
fn serve_local_port(
    api: &Api,
    out: Out,
    connection: &Value,
    request_id: &str,
    session_id: &str,
    port: Option<u16>,
) -> Result<()> {
    let kind = text(&connection["kind"]);
    let port = port.unwrap_or(if kind == "postgres" { 5433 } else { 0 });
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
        Error::bad("port_in_use", format!("cannot listen on 127.0.0.1:{port}: {e}; pick another with --port"))
    })?;
    let local = listener.local_addr()?;
    if out.json {
        eprintln!("{}", json!({"listening": local.to_string()}));
    } else {
        say!("Listening on {local} for {}.", text(&connection["name"]));
        if kind == "postgres" {
            say!(
                "Connect with: psql \"host=127.0.0.1 port={} sslmode=disable\" -U <database user> -d <database>",
                local.port()
            );
        }
    }
    let tls = match api.target.server.starts_with("https://") {
        true => Some(super::api::tls_config(api.target.fingerprint.as_deref(), api.target.ca_cert.as_deref())?),
        false => None,
    };
    let dialer = Dialer { server: api.target.server.clone(), tls, token: api.target.token.clone().unwrap_or_default() };
    let (request_id, session_id) = (request_id.to_string(), session_id.to_string());
    // A few relay threads serve every stream of this session; each stream's TLS
    // handshake and upgrade run on a short-lived thread of their own first.
    let engine = Arc::new(Engine::start("relay", crate::gateway::relay_threads().min(2))?);
    std::thread::Builder::new().name("local-port".into()).spawn(move || {
        for local in listener.incoming().flatten() {
            let (dialer, request_id, session_id) = (dialer.clone(), request_id.clone(), session_id.clone());
            let engine = Arc::clone(&engine);
            let _ = std::thread::Builder::new().name("stream-open".into()).spawn(move || {
                let opened = dialer.open(&request_id, &session_id).and_then(|(tunnel, early)| {
                    Relay::new(tunnel, local, &early, Box::new(NoTap)).map_err(Error::from)
                });
                match opened {
                    Ok(relay) => {
                        let job = Job { relay, deadline: None, cut: Arc::new(Cut::default()), done: Box::new(|_| {}) };
                        engine.spawn(job);
                    }
                    Err(e) => eprintln!("jitgate: stream refused: {}", crate::log::printable(&e.log_detail())),
                }
            });
        }
    })?;
    Ok(())
}

/// Says how a request ended and returns the documented exit code.
fn report_end(out: Out, r: &Value) -> i32 {
    let (id, by, why) = (
        text(&r["id"]),
        text(&r["ended_by"]),
        r["end_reason"].as_str().map(|w| format!(": {}", crate::log::printable(w))).unwrap_or_default(),
    );
    let (code, message) = match text(&r["status"]).as_str() {
        "REJECTED" => (EXIT_REJECTED, format!("Request {id} was rejected by {by}{why}")),
        "CANCELLED" => (EXIT_CANCELLED, format!("Request {id} was cancelled{why}")),
        "REVOKED" => (EXIT_REVOKED, format!("Access revoked by {by}{why}")),
        "EXECUTED" if by == "system" => (0, "Access expired.".to_string()),
        "EXECUTED" => (0, format!("Access ended by {by}.")),
        other => (1, format!("Request {id} is {other}")),
    };
    if out.json {
        say!("{r}");
    }
    if code == 0 {
        if !out.json {
            say!("{message}");
        }
    } else {
        eprintln!("{message}");
    }
    code
}
