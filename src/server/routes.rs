//! The route table: every route, the least a caller must be to reach it, and its
//! handler. This table *is* the coarse authorization policy (deny by default: a route
//! not listed is a 404, a method not listed is a 405); handlers then apply the fine
//! rules (who may see a request, who may review it) from the domain.

use super::api::{
    access, audit, connections, groups, integrations, outbox, requests, sessions, system, tokens, ui, users,
};
use super::app::{App, Call};
use super::http::Reply;
use super::wait::WaitSpec;
use crate::error::Result;

/// Who may reach a route at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any authenticated user (API token or browser session).
    User,
    /// Admins only.
    Admin,
    /// Admins, or the user named by the route's first parameter.
    SelfOrAdmin,
    /// Admins, or a token of scope `check`.
    Check,
    /// Admins, or a token of scope `metrics`.
    Metrics,
}

pub enum Handler {
    Plain(fn(&App, &Call) -> Result<Reply>),
    /// Long polls: validated on a worker, then parked on their own thread budget.
    LongPoll(fn(&App, &Call) -> Result<WaitSpec>),
}

pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub access: Access,
    pub handler: Handler,
}

const fn r(method: &'static str, pattern: &'static str, access: Access, f: fn(&App, &Call) -> Result<Reply>) -> Route {
    Route { method, pattern, access, handler: Handler::Plain(f) }
}

use Access::*;

pub static ROUTES: &[Route] = &[
    r("GET", "/", Public, ui::index),
    r("GET", "/ui/{file}", Public, ui::asset),
    r("GET", "/healthz", Public, system::healthz),
    r("GET", "/metrics", Metrics, system::metrics),
    r("GET", "/api/v1/openapi.json", Public, system::openapi),
    r("POST", "/api/v1/login", Public, system::login),
    r("POST", "/api/v1/logout", User, system::logout),
    r("GET", "/api/v1/me", User, system::me),
    r("GET", "/api/v1/users", Admin, users::list),
    r("POST", "/api/v1/users", Admin, users::create),
    r("GET", "/api/v1/users/{name}", SelfOrAdmin, users::show),
    r("PATCH", "/api/v1/users/{name}", SelfOrAdmin, users::update),
    r("DELETE", "/api/v1/users/{name}", Admin, users::delete),
    r("GET", "/api/v1/users/{name}/tokens", SelfOrAdmin, tokens::list),
    r("POST", "/api/v1/users/{name}/tokens", SelfOrAdmin, tokens::create),
    r("GET", "/api/v1/users/{name}/tokens/{id}", SelfOrAdmin, tokens::show),
    r("DELETE", "/api/v1/users/{name}/tokens/{id}", SelfOrAdmin, tokens::delete),
    r("GET", "/api/v1/groups", Admin, groups::list),
    r("POST", "/api/v1/groups", Admin, groups::create),
    r("GET", "/api/v1/groups/{name}", Admin, groups::show),
    r("DELETE", "/api/v1/groups/{name}", Admin, groups::delete),
    r("PUT", "/api/v1/groups/{name}/members/{user}", Admin, groups::add_member),
    r("DELETE", "/api/v1/groups/{name}/members/{user}", Admin, groups::remove_member),
    r("GET", "/api/v1/connections", User, connections::list),
    r("POST", "/api/v1/connections", Admin, connections::create),
    r("GET", "/api/v1/connections/{name}", User, connections::show),
    r("PUT", "/api/v1/connections/{name}", Admin, connections::update),
    r("DELETE", "/api/v1/connections/{name}", Admin, connections::delete),
    r("GET", "/api/v1/requests", User, requests::list),
    r("POST", "/api/v1/requests", User, requests::create),
    r("GET", "/api/v1/requests/{id}", User, requests::show),
    Route {
        method: "GET",
        pattern: "/api/v1/requests/{id}/wait",
        access: User,
        handler: Handler::LongPoll(requests::wait),
    },
    r("POST", "/api/v1/requests/{id}/approve", User, requests::approve),
    r("POST", "/api/v1/requests/{id}/reject", User, requests::reject),
    r("POST", "/api/v1/requests/{id}/revoke", User, requests::revoke),
    r("POST", "/api/v1/requests/{id}/cancel", User, requests::cancel),
    r("POST", "/api/v1/requests/{id}/end", User, requests::end),
    r("GET", "/api/v1/sessions", User, sessions::list),
    r("POST", "/api/v1/sessions", User, sessions::start),
    r("GET", "/api/v1/sessions/{id}", User, sessions::show),
    r("POST", "/api/v1/sessions/{id}/end", User, sessions::end),
    r("GET", "/api/v1/audit", Admin, audit::list),
    r("GET", "/api/v1/audit/verify", Admin, audit::verify),
    r("GET", "/api/v1/access/check", Check, access::check),
    r("GET", "/api/v1/outbox", Admin, outbox::list),
    r("POST", "/api/v1/outbox/{id}/retry", Admin, outbox::retry),
    // Public: the callers hold no token; each handler checks the chat's own proof
    // (Slack's signature; Mattermost's context HMAC and source address) first.
    r("POST", "/api/v1/integrations/slack/actions", Public, integrations::slack),
    r("POST", "/api/v1/integrations/mattermost/actions", Public, integrations::mattermost),
];

/// The routes whose pattern matches `segments`, with the captured parameters.
pub fn matching<'a>(segments: &[String]) -> Vec<(&'a Route, Vec<String>)> {
    ROUTES
        .iter()
        .filter_map(|route| {
            let parts: Vec<&str> = route.pattern.split('/').filter(|p| !p.is_empty()).collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut params = Vec::new();
            for (part, seg) in parts.iter().zip(segments) {
                if part.starts_with('{') {
                    params.push(seg.clone());
                } else if part != seg {
                    return None;
                }
            }
            Some((route, params))
        })
        .collect()
}
