//! Health, metrics, the OpenAPI document, and browser login/logout/me.

use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::auth::{Via, SESSION_COOKIE};
use crate::server::http::Reply;
use crate::server::views;
use crate::store::{requests, tokens, users};
use crate::{audit, secret};
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub fn healthz(app: &App, _: &Call) -> Result<Reply> {
    app.store.check_writable().map_err(|e| {
        crate::error!("health check: {}", e.log_detail());
        Error::Unavailable("the database does not take writes".into())
    })?;
    Ok(Reply::ok(&json!({"ok": true})))
}

pub fn openapi(_: &App, _: &Call) -> Result<Reply> {
    Ok(Reply::text(200, "application/json", include_bytes!("../../../static/openapi.json").to_vec()))
}

pub fn metrics(app: &App, call: &Call) -> Result<Reply> {
    let mut out = String::new();
    let (by_status, oldest, active) = app.store.read(|c| {
        Ok((requests::count_by_status(c)?, requests::oldest_pending(c)?, requests::active_grants(c, call.now)?))
    })?;
    let _ = writeln!(out, "# HELP jitgate_requests Access requests by status.\n# TYPE jitgate_requests gauge");
    for status in crate::domain::Status::ALL {
        let n = by_status.iter().find(|(s, _)| s == status.as_str()).map(|(_, n)| *n).unwrap_or(0);
        let _ = writeln!(out, "jitgate_requests{{status=\"{status}\"}} {n}");
    }
    let age = oldest.map(|t| (call.now - t).max(0) as f64 / 1_000.0).unwrap_or(0.0);
    let _ = writeln!(out, "# HELP jitgate_oldest_pending_seconds Age of the oldest PENDING request.\n# TYPE jitgate_oldest_pending_seconds gauge\njitgate_oldest_pending_seconds {age}");
    let _ = writeln!(out, "# HELP jitgate_active_grants Grants in force now (APPROVED, not yet expired).\n# TYPE jitgate_active_grants gauge\njitgate_active_grants {active}");
    let db_bytes = std::fs::metadata(app.store.path()).map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(out, "# HELP jitgate_db_bytes Size of the database file.\n# TYPE jitgate_db_bytes gauge\njitgate_db_bytes {db_bytes}");
    let _ = writeln!(
        out,
        "# HELP jitgate_long_polls Long polls waiting now.\n# TYPE jitgate_long_polls gauge\njitgate_long_polls {}",
        app.waiters.load(Ordering::Relaxed)
    );
    if let Some(stats) = app.front_stats.get() {
        render_front(stats, &mut out);
    }
    let (waiting, dead) = app.store.read(crate::store::outbox::depth)?;
    let _ = writeln!(out, "# HELP jitgate_outbox_depth Events and deliveries waiting for hooks and notifications.\n# TYPE jitgate_outbox_depth gauge\njitgate_outbox_depth {waiting}");
    let _ = writeln!(out, "# HELP jitgate_outbox_dead Deliveries failed for good or interrupted by a restart.\n# TYPE jitgate_outbox_dead gauge\njitgate_outbox_dead {dead}");
    let _ = writeln!(out, "# HELP jitgate_outbox_dead_by_sink Dead deliveries by sink kind (hook, webhook, slack, teams, email, slack_dm).\n# TYPE jitgate_outbox_dead_by_sink gauge");
    for (kind, n) in app.store.read(crate::store::outbox::dead_by_kind)? {
        let _ = writeln!(out, "jitgate_outbox_dead_by_sink{{kind=\"{kind}\"}} {n}");
    }
    let g = &app.gateway.stats;
    let tunnel_rows = [
        ("jitgate_tunnel_streams_open", "gauge", "Tunnel streams relaying now.", &g.streams_open),
        ("jitgate_tunnel_streams_total", "counter", "Tunnel streams opened.", &g.streams_total),
        ("jitgate_tunnel_bytes_up_total", "counter", "Bytes from clients to targets through tunnels.", &g.bytes_up),
        ("jitgate_tunnel_bytes_down_total", "counter", "Bytes from targets to clients through tunnels.", &g.bytes_down),
    ];
    for (name, kind, help, value) in tunnel_rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
    }
    app.metrics.render(&mut out);
    Ok(Reply::text(200, "text/plain; version=0.0.4", out.into_bytes()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

pub fn login(app: &App, call: &Call) -> Result<Reply> {
    app.login_limiter.take_address(&call.req.peer)?;
    let body: Login = call.req.json()?;
    app.login_limiter.take_user(&body.username)?;
    let found = app.store.read(|c| users::credentials(c, &body.username))?;
    let stored = found.as_ref().and_then(|(_, hash, disabled)| if *disabled { None } else { hash.as_deref() });
    let ok = secret::verify_password(&body.password, stored)?;
    let target = if crate::domain::check_name("user", &body.username).is_ok() {
        body.username.as_str()
    } else {
        "(invalid name)"
    };
    let (user_id, _, _) = match (ok, found) {
        (true, Some(f)) => f,
        _ => {
            app.store.write(|tx| {
                // The claimed name is not an identity: the actor is anonymous.
                let detail = json!({"peer": call.req.peer, "username": target});
                audit::append(tx, call.now, audit::ANONYMOUS, "login.failed", target, detail)
            })?;
            return Err(Error::Unauthenticated("wrong username or password".into()));
        }
    };
    let lifetime = app.config.session_lifetime.as_millis() as i64;
    let (cookie, csrf) = app.store.write(|tx| {
        let pair = tokens::create_web_session(tx, user_id, lifetime, call.now)?;
        audit::append(tx, call.now, target, "login.succeeded", target, json!({"peer": call.req.peer}))?;
        Ok(pair)
    })?;
    let user = app.store.read(|c| users::get_by_id(c, user_id))?;
    let set_cookie =
        format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", lifetime / 1_000);
    let body = json!({"user": views::user(&user), "csrf_token": csrf, "expires_at": crate::time::rfc3339(call.now + lifetime)});
    Ok(Reply::ok(&body).with_header("Set-Cookie", set_cookie))
}

pub fn logout(app: &App, call: &Call) -> Result<Reply> {
    call.req.no_body()?;
    let who = call.who()?;
    if let (Via::Cookie { .. }, Some(cookie)) = (&who.via, call.req.cookie(SESSION_COOKIE)) {
        app.store.write(|tx| {
            tokens::delete_web_session(tx, cookie)?;
            audit::append(tx, call.now, who.name(), "logout", who.name(), json!({}))
        })?;
    }
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    Ok(Reply::ok(&json!({"ok": true})).with_header("Set-Cookie", expired))
}

pub fn me(_: &App, call: &Call) -> Result<Reply> {
    let who = call.who()?;
    let mut body = views::user(&who.user);
    match &who.via {
        Via::Cookie { csrf } => {
            body["auth"] = json!("session");
            body["csrf_token"] = json!(csrf);
        }
        Via::Token { id, scope, .. } => {
            body["auth"] = json!("token");
            body["token_id"] = json!(id);
            body["scope"] = json!(scope.as_str());
        }
    }
    Ok(Reply::ok(&body))
}

fn render_front(stats: &crate::server::front::Stats, out: &mut String) {
    let rows = [
        ("jitgate_connections_open", "gauge", "Client connections alive now.", &stats.connections_open),
        ("jitgate_connections_total", "counter", "Client connections accepted.", &stats.connections_total),
        (
            "jitgate_connections_refused_total",
            "counter",
            "Connections refused over a connection cap.",
            &stats.refused_over_cap,
        ),
        (
            "jitgate_listener_timeouts_total",
            "counter",
            "Handshake, head, body, write and upstream deadlines that passed.",
            &stats.timeouts,
        ),
        ("jitgate_listener_requests_total", "counter", "Requests handed to the HTTP workers.", &stats.requests),
        (
            "jitgate_listener_refused_requests_total",
            "counter",
            "Requests the listener refused itself (4xx).",
            &stats.bad_requests,
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
    }
}
