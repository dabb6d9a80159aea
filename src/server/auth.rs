//! Who is calling, and may they? Bearer tokens (`Authorization: Bearer jg_…`) or the
//! browser's session cookie; a cookie call that changes state must also carry the
//! session's CSRF token in `X-CSRF-Token`. Deny by default: every route asks for a
//! principal and a scope explicitly, and anything unrecognised is refused.

use super::http::Req;
use crate::error::{Error, Result};
use crate::secret::constant_time_eq;
use crate::store::tokens::{self, Scope};
use crate::store::users::{self, User};
use crate::store::Store;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub const SESSION_COOKIE: &str = "jitgate_session";
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// How the caller proved who they are.
#[derive(Clone, Debug)]
pub enum Via {
    Token { id: String, scope: Scope, expires_at: Option<i64> },
    Cookie { csrf: String },
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub user: User,
    pub via: Via,
}

impl Principal {
    pub fn name(&self) -> &str {
        &self.user.username
    }

    pub fn require_admin(&self) -> Result<()> {
        if self.user.admin {
            Ok(())
        } else {
            Err(Error::Forbidden("this needs an admin".into()))
        }
    }

    /// Admin, or the user named in the path acting on themselves.
    pub fn require_self_or_admin(&self, username: &str) -> Result<()> {
        if self.user.admin || self.user.username == username {
            Ok(())
        } else {
            Err(Error::Forbidden("only an admin or the user themselves may do this".into()))
        }
    }
}

/// Resolves the caller and checks the token's scope against what the route needs.
/// `None` when the request carries no credentials at all.
pub fn principal(store: &Store, req: &Req, needs: Scope, now: i64) -> Result<Option<Principal>> {
    if let Some(value) = req.header("authorization") {
        let token = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthenticated("use Authorization: Bearer <token>".into()))?;
        let found = store
            .read(|c| tokens::authenticate(c, token, now))?
            .ok_or_else(|| Error::Unauthenticated("unknown, expired or revoked token".into()))?;
        if found.scope != Scope::Api && found.scope != needs {
            return Err(Error::Forbidden(format!("a {} token cannot be used here", found.scope.as_str())));
        }
        let user = store.read(|c| users::get_by_id(c, found.user_id))?;
        if found.last_used_at.is_none_or(|t| t < now - tokens::TOUCH_INTERVAL_MS) {
            store.write(|tx| tokens::touch(tx, &found.token_id, now))?;
        }
        let via = Via::Token { id: found.token_id, scope: found.scope, expires_at: found.expires_at };
        return Ok(Some(Principal { user, via }));
    }
    let Some(cookie) = req.cookie(SESSION_COOKIE) else { return Ok(None) };
    let (user_id, csrf) = store
        .read(|c| tokens::web_session(c, cookie, now))?
        .ok_or_else(|| Error::Unauthenticated("your session has ended: log in again".into()))?;
    if needs != Scope::Api {
        return Err(Error::Forbidden("a browser session cannot be used here".into()));
    }
    if !req.is_read() {
        let sent = req.header(CSRF_HEADER).unwrap_or("");
        if !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
            return Err(Error::Forbidden(format!("missing or wrong {CSRF_HEADER} header")));
        }
    }
    let user = store.read(|c| users::get_by_id(c, user_id))?;
    Ok(Some(Principal { user, via: Via::Cookie { csrf } }))
}

/// Like `principal`, but a call without credentials is a 401.
pub fn require(store: &Store, req: &Req, needs: Scope, now: i64) -> Result<Principal> {
    principal(store, req, needs, now)?
        .ok_or_else(|| Error::Unauthenticated("log in, or send Authorization: Bearer <token>".into()))
}

/// Token buckets for password attempts, keyed per client address (IPv6 by /64, so
/// one host cannot rotate through its addresses) and per username (so many
/// addresses cannot share out one victim's password guesses; that budget is wider,
/// three times the per-address one, to keep lock-outs of the real user short).
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

const MAX_TRACKED_CLIENTS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute: f64::from(per_minute.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one password attempt for the client address `peer` ("ip:port").
    pub fn take_address(&self, peer: &str) -> Result<()> {
        self.take_key(address_key(peer_ip(peer)), self.per_minute)
    }

    /// Takes one password attempt against `username`, from wherever it comes.
    pub fn take_user(&self, username: &str) -> Result<()> {
        self.take_key(format!("user:{}", username.to_ascii_lowercase()), self.per_minute * 3.0)
    }

    fn take_key(&self, key: String, budget: f64) -> Result<()> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().map_err(|_| Error::Internal("rate limiter lock poisoned".into()))?;
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let per_minute = self.per_minute;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_minute / 60.0 < per_minute
            });
        }
        let (tokens, at) = buckets.entry(key).or_insert((budget, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * budget / 60.0).min(budget);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) * 60.0 / budget).ceil() as u64;
            Err(Error::RateLimited { retry_after: wait.max(1) })
        }
    }
}

fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The IP part of "ip:port" (IPv6 in brackets); unknown peers share one bucket.
pub fn peer_ip(peer: &str) -> IpAddr {
    peer.parse::<std::net::SocketAddr>().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_refuses_past_the_budget_per_address() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            limiter.take_address("10.0.0.1:5000").unwrap();
        }
        assert!(matches!(limiter.take_address("10.0.0.1:6000"), Err(Error::RateLimited { .. })));
        limiter.take_address("10.0.0.2:5000").unwrap();
        // One /64 is one budget.
        for i in 0..3 {
            limiter.take_address(&format!("[2001:db8::{i}]:1")).unwrap();
        }
        assert!(limiter.take_address("[2001:db8::99]:1").is_err());
    }

    #[test]
    fn a_username_has_a_budget_of_its_own_across_addresses() {
        let limiter = RateLimiter::new(1);
        for _ in 0..3 {
            limiter.take_user("alice").unwrap();
        }
        assert!(limiter.take_user("ALICE").is_err());
    }
}
