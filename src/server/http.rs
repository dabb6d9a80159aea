//! The HTTP vocabulary of the handlers: a parsed request (`Req`), a reply (`Reply`),
//! strict JSON bodies, query strings and path segments. Handlers see only these
//! types, never tiny_http, so each handler is a function from `Req` to `Reply`.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct Req {
    pub method: String,
    /// Decoded path segments after the leading `/`.
    pub segments: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The TCP client's address as the listener saw it.
    pub peer: String,
}

impl Req {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The value of one cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Decodes the JSON body into `T`, refusing unknown fields, duplicate keys and
    /// wrong types. An empty body reads as `{}` so optional-only bodies may be omitted.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &self.body };
        // A form can post text/plain across sites without a preflight: only JSON.
        let json_type = self
            .header("content-type")
            .is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !self.body.iter().all(u8::is_ascii_whitespace) && !json_type {
            return Err(Error::MediaType);
        }
        // serde would also read a struct from a JSON array (`["alice"]`): only objects.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::bad("invalid_json", "the body must be a JSON object"));
        }
        serde_json::from_slice(body).map_err(|e| Error::bad("invalid_json", format!("invalid JSON body: {e}")))
    }

    /// For routes that take no body: nothing, or `{}`.
    pub fn no_body(&self) -> Result<()> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        self.json::<Empty>().map(|_| ())
    }

    pub fn query_str(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Refuses query keys a route does not know: a typo in a filter must not widen a list.
    pub fn allow_query(&self, known: &[&str]) -> Result<()> {
        match self.query.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Error::bad(
                "unknown_parameter",
                format!("unknown query parameter {k:?}; known: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Reply { status, body, content_type: "application/json", headers: Vec::new() }
    }

    pub fn ok(value: &impl Serialize) -> Reply {
        Reply::json(200, value)
    }

    pub fn created(value: &impl Serialize) -> Reply {
        Reply::json(201, value)
    }

    pub fn text(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply { status, body, content_type, headers: Vec::new() }
    }

    pub fn error(err: &Error) -> Reply {
        let mut reply =
            Reply::json(err.status(), &json!({"error": {"code": err.code(), "message": err.user_message()}}));
        match err {
            Error::RateLimited { retry_after } => reply.headers.push(("Retry-After".into(), retry_after.to_string())),
            Error::Unauthenticated(_) => {
                reply.headers.push(("WWW-Authenticate".into(), "Bearer realm=\"jitgate\"".into()))
            }
            _ => {}
        }
        reply
    }

    pub fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_string(), value));
        self
    }
}

/// A list page: `{items, next_cursor}`.
pub fn page(items: Vec<Value>, next_cursor: Option<String>) -> Reply {
    Reply::ok(&json!({"items": items, "next_cursor": next_cursor}))
}

/// Splits a request target into decoded path segments and query pairs.
pub fn parse_target(target: &str) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect::<Result<Vec<_>>>()?;
    let mut pairs = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(&k.replace('+', " "))?, percent_decode(&v.replace('+', " "))?);
        if pairs.insert(k.clone(), v).is_some() {
            return Err(Error::bad("bad_query", format!("query parameter {k:?} is given twice")));
        }
    }
    Ok((segments, pairs))
}

/// Percent-decoding that refuses what no jitgate name or value contains: invalid
/// UTF-8, NUL and other control characters, malformed escapes.
fn percent_decode(text: &str) -> Result<String> {
    let bad = || Error::bad("bad_path", "malformed percent-encoding or control character in the URL");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| bad())?;
    if decoded.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(decoded)
}

/// Parses `limit` and `cursor` into a page.
pub fn page_of(req: &Req) -> Result<crate::store::Page> {
    use crate::store::Page;
    let limit =
        match req.query_str("limit") {
            None => Page::DEFAULT_LIMIT,
            Some(l) => l.parse::<u32>().ok().filter(|n| (1..=Page::MAX_LIMIT).contains(n)).ok_or_else(|| {
                Error::bad("bad_limit", format!("limit must be a number from 1 to {}", Page::MAX_LIMIT))
            })?,
        };
    let before = match req.query_str("cursor") {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::bad("bad_cursor", "cursor is not one this server gave"))?,
        ),
    };
    Ok(Page { limit, before })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_decode_strictly() {
        let (s, q) = parse_target("/api/v1/users/al%69ce?status=PENDING&x=a+b").unwrap();
        assert_eq!(s, vec!["api", "v1", "users", "alice"]);
        assert_eq!(q["status"], "PENDING");
        assert_eq!(q["x"], "a b");
        assert!(parse_target("/api/v1/users/a%00b").is_err());
        assert!(parse_target("/api/v1/users/a%ff").is_err());
        assert!(parse_target("/api/v1/users/a%2").is_err());
        assert!(parse_target("/x?a=1&a=2").is_err());
    }
}
