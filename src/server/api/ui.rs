//! The web UI: static files embedded in the binary, served from an explicit
//! allow-list (nothing on disk is ever read by path, so no traversal is possible),
//! with a strict Content-Security-Policy: scripts and styles from this origin only,
//! no inline script, no framing.

use crate::error::{Error, Result};
use crate::server::app::{App, Call};
use crate::server::http::Reply;

/// Every file the UI may serve: name, bytes, content type.
/// (The JavaScript files are ES modules that import each other by these names.)
const ASSETS: &[(&str, &[u8], &str)] = &[
    ("app.js", include_bytes!("../../../static/app.js"), JS),
    ("api.js", include_bytes!("../../../static/api.js"), JS),
    ("dom.js", include_bytes!("../../../static/dom.js"), JS),
    ("inbox.js", include_bytes!("../../../static/inbox.js"), JS),
    ("request.js", include_bytes!("../../../static/request.js"), JS),
    ("access.js", include_bytes!("../../../static/access.js"), JS),
    ("connections.js", include_bytes!("../../../static/connections.js"), JS),
    ("users.js", include_bytes!("../../../static/users.js"), JS),
    ("tokens.js", include_bytes!("../../../static/tokens.js"), JS),
    ("audit.js", include_bytes!("../../../static/audit.js"), JS),
    ("style.css", include_bytes!("../../../static/style.css"), "text/css; charset=utf-8"),
    ("favicon.svg", include_bytes!("../../../static/favicon.svg"), "image/svg+xml"),
];

const JS: &str = "text/javascript; charset=utf-8";

pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(bytes: &[u8], content_type: &'static str) -> Reply {
    Reply::text(200, content_type, bytes.to_vec())
        .with_header("Content-Security-Policy", CSP.to_string())
        .with_header("Cache-Control", "no-cache".to_string())
}

pub fn index(_: &App, _: &Call) -> Result<Reply> {
    Ok(page(include_bytes!("../../../static/index.html"), "text/html; charset=utf-8"))
}

pub fn asset(_: &App, call: &Call) -> Result<Reply> {
    let name = call.param(0);
    let (_, bytes, content_type) =
        ASSETS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| Error::not_found("file", name))?;
    Ok(page(bytes, content_type))
}
