//! The application behind the listener: shared state (`App`), the tiny_http worker
//! loop, and dispatch through the route table. Every reply passes through one place,
//! which adds the security headers and counts it for /metrics.

use super::auth::{self, Principal, RateLimiter};
use super::http::{parse_target, Reply, Req};
use super::routes::{self, Access, Handler};
use super::{front, wait};
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::tokens::Scope;
use crate::store::Store;
use crate::time::now_ms;
use std::io::Read;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

pub struct App {
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub config: ServeConfig,
    /// Hooks and notification channels as last (re)loaded: use these, not `config`'s.
    pub live: crate::notify::Live,
    /// Base of the links to requests (`public_url`, or the bound address).
    pub public_url: String,
    pub login_limiter: RateLimiter,
    /// Long polls parked right now (bounded by `config.max_waiters`).
    pub waiters: AtomicUsize,
    /// Long polls parked per user id (bounded by `wait::MAX_PER_USER`).
    pub waiters_by_user: std::sync::Mutex<std::collections::HashMap<i64, usize>>,
    pub front_stats: std::sync::OnceLock<Arc<front::Stats>>,
    pub gateway: Arc<crate::gateway::Gateway>,
}

/// One call as a handler sees it.
pub struct Call {
    pub req: Req,
    pub who: Option<Principal>,
    pub params: Vec<String>,
    pub now: i64,
}

impl Call {
    /// The authenticated caller (every non-public route has one).
    pub fn who(&self) -> Result<&Principal> {
        self.who.as_ref().ok_or_else(|| Error::Unauthenticated("log in, or send Authorization: Bearer <token>".into()))
    }

    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }
}

impl App {
    /// The web page of a request, as CLI and notifications link to it.
    pub fn request_url(&self, id: &str) -> String {
        format!("{}/#/requests/{id}", self.public_url.trim_end_matches('/'))
    }
}

/// A worker: takes requests from tiny_http until it is unblocked at shutdown.
pub fn worker(app: Arc<App>, server: Arc<tiny_http::Server>) {
    while let Ok(request) = server.recv() {
        // A bug on one request must not cost a worker for good: the request is lost
        // (the listener answers 502), the worker goes on.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&app, request)));
        if caught.is_err() {
            crate::error!("a request handler panicked; the worker goes on");
        }
    }
}

fn handle(app: &Arc<App>, mut request: tiny_http::Request) {
    let req = match read_req(&mut request, &app.config) {
        Ok(req) => req,
        Err(e) => return respond(app, request, "-", Reply::error(&e)),
    };
    let candidates = routes::matching(&req.segments);
    let Some((route, params)) = candidates.iter().find(|(r, _)| r.method == req.method) else {
        let reply = if candidates.is_empty() {
            Reply::error(&Error::not_found("route", format!("{} /{}", req.method, req.segments.join("/"))))
        } else {
            let allow: Vec<&str> = candidates.iter().map(|(r, _)| r.method).collect();
            Reply::error(&Error::MethodNotAllowed(allow.join(", "))).with_header("Allow", allow.join(", "))
        };
        return respond(app, request, "-", reply);
    };
    let now = now_ms();
    let call = match authorize(app, req, route.access, params, now) {
        Ok(call) => call,
        Err(e) => return respond(app, request, route.pattern, Reply::error(&e)),
    };
    match &route.handler {
        Handler::Plain(f) => {
            let reply = f(app, &call).unwrap_or_else(|e| {
                log_failure(&call, &e);
                Reply::error(&e)
            });
            respond(app, request, route.pattern, reply);
        }
        Handler::LongPoll(f) => match f(app, &call) {
            Ok(spec) => wait::park(app.clone(), request, route.pattern, spec),
            Err(e) => respond(app, request, route.pattern, Reply::error(&e)),
        },
    }
}

fn log_failure(call: &Call, e: &Error) {
    if e.status() >= 500 {
        crate::error!("{} /{}: {}", call.req.method, call.req.segments.join("/"), e.log_detail());
    }
}

/// Applies the route's access level: resolves the caller and refuses early.
fn authorize(app: &App, req: Req, access: Access, params: &[String], now: i64) -> Result<Call> {
    let needs = match access {
        Access::Check => Scope::Check,
        Access::Metrics => Scope::Metrics,
        _ => Scope::Api,
    };
    let who = match access {
        Access::Public => None,
        _ => Some(auth::require(&app.store, &req, needs, now)?),
    };
    if let Some(p) = &who {
        let scoped = matches!(p.via, auth::Via::Token { scope, .. } if scope == needs && scope != Scope::Api);
        match access {
            Access::Admin => p.require_admin()?,
            Access::SelfOrAdmin => p.require_self_or_admin(params.first().map(String::as_str).unwrap_or(""))?,
            Access::Check | Access::Metrics if !scoped => p.require_admin()?,
            _ => {}
        }
    }
    Ok(Call { req, who, params: params.to_vec(), now })
}

fn read_req(request: &mut tiny_http::Request, config: &ServeConfig) -> Result<Req> {
    let (segments, query) = parse_target(request.url())?;
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string()))
        .collect();
    let tcp_peer = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(front::PEER_HEADER))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let peer = client_address(&tcp_peer, &headers, config.behind_proxy);
    let mut body = Vec::new();
    // The listener enforced the same bound already; this guards the socket behind it.
    let limit = config.limits.max_body_bytes as u64;
    request.as_reader().take(limit + 1).read_to_end(&mut body)?;
    if body.len() as u64 > limit {
        return Err(Error::TooLarge("request body exceeds 1 MiB".into()));
    }
    Ok(Req { method: request.method().as_str().to_uppercase(), segments, query, headers, body, peer })
}

/// The client's address. Behind a proxy (`--behind-proxy`) that connects from
/// loopback, the last `X-Forwarded-For` entry is the client (the one the proxy
/// added; earlier entries are the client's own claims). Otherwise the TCP peer.
fn client_address(tcp_peer: &str, headers: &[(String, String)], behind_proxy: bool) -> String {
    let from_loopback = tcp_peer.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
    if behind_proxy && from_loopback {
        let forwarded = headers.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"));
        if let Some(ip) =
            forwarded.and_then(|(_, v)| v.rsplit(',').next()).and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        {
            return std::net::SocketAddr::new(ip, 0).to_string();
        }
    }
    tcp_peer.to_string()
}

/// Sends a reply with jitgate's headers and counts it.
pub fn respond(app: &App, request: tiny_http::Request, route: &str, reply: Reply) {
    // Only known methods become labels: a client must not grow the metrics map.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => m,
        _ => "OTHER",
    };
    app.metrics.count_http(method, route, reply.status);
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), reply.content_type.into()),
        ("X-Content-Type-Options".into(), "nosniff".into()),
        ("X-Frame-Options".into(), "DENY".into()),
        ("Referrer-Policy".into(), "no-referrer".into()),
    ];
    // Defaults a reply may replace (the UI sets its own policy and caching).
    for (name, value) in
        [("Cache-Control", "no-store"), ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")]
    {
        if !reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            headers.push((name.into(), value.into()));
        }
    }
    if !app.config.plain_http || app.config.behind_proxy {
        headers.push(("Strict-Transport-Security".into(), "max-age=31536000".into()));
    }
    headers.extend(reply.headers);
    for (name, value) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        crate::debug!("reply not delivered: {e}");
    }
}
