//! The answers the front writes itself: refusals (4xx), gateway errors (502, 503, 504)
//! and `100 Continue`, all in jitgate's JSON error shape.
//!
//! Owns: status lines, reason phrases and error bodies of front-made responses. Must
//! never echo request data (header values may be secrets) into a reply or the log.

use serde_json::json;

/// Interim answer to `Expect: 100-continue`, sent before the body is read.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response the front makes instead of tiny_http; the connection closes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Reject {
    fn new(status: u16, code: &'static str, message: String) -> Reject {
        Reject { status, code, message }
    }

    pub(super) fn bad_request(message: &str) -> Reject {
        Reject::new(400, "bad_request", message.to_string())
    }

    pub(super) fn length_required() -> Reject {
        let m = "chunked request bodies are not accepted: send Content-Length";
        Reject::new(411, "length_required", m.to_string())
    }

    pub(super) fn body_too_large(max: usize) -> Reject {
        let m = format!("request body exceeds {max} bytes");
        Reject::new(413, "body_too_large", m)
    }

    pub(super) fn head_too_large(max: usize) -> Reject {
        let m = format!("request head exceeds {max} bytes");
        Reject::new(431, "head_too_large", m)
    }

    pub(super) fn too_many_headers(max: usize) -> Reject {
        let m = format!("request head has more than {max} headers");
        Reject::new(431, "head_too_large", m)
    }

    pub(super) fn expectation_failed() -> Reject {
        let m = "only Expect: 100-continue is supported";
        Reject::new(417, "expectation_failed", m.to_string())
    }

    pub(super) fn too_many_connections() -> Reject {
        let m = "too many connections, try again later";
        Reject::new(503, "too_many_connections", m.to_string())
    }

    pub(super) fn bad_gateway() -> Reject {
        let m = "the application server did not answer";
        Reject::new(502, "bad_gateway", m.to_string())
    }

    pub(super) fn gateway_timeout() -> Reject {
        let m = "the application server did not answer in time";
        Reject::new(504, "gateway_timeout", m.to_string())
    }

    /// The whole response, `Connection: close` included.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let body = json!({"error": {"code": self.code, "message": self.message}}).to_string();
        let mut out = status_line(self.status, reason(self.status));
        out.extend_from_slice(b"Content-Type: application/json\r\n");
        out.extend_from_slice(b"Cache-Control: no-store\r\n");
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }
}

pub(super) fn status_line(status: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} {reason}\r\n").into_bytes()
}

/// Reason phrases for the statuses the front makes, and a fallback for upstream ones
/// that came without a phrase.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
