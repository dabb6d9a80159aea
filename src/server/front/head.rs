//! Request heads: finding where one ends, parsing it, and the framing rules that keep
//! request smuggling out.
//!
//! Owns: every decision about what a client's head means (length, keep-alive, expect)
//! and which heads are refused with a 4xx. Pure functions over bytes, so they can be
//! fuzzed. Must never do I/O, never panic on any input, and never accept a head whose
//! body length could be read two ways.

use super::reply::Reject;
use super::Limits;

/// More headers than this is a 431 (httparse's `TooManyHeaders`).
pub(super) const MAX_HEADERS: usize = 64;

/// Empty lines tolerated before a request line (RFC 9112 §2.2), in bytes.
const MAX_LEADING_CRLF: usize = 8;

/// One client header as received: the name as spelt, the value as raw bytes (obs-text
/// is allowed, so it need not be UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// A parsed, accepted request head. Kept whole (not only what forwarding needs) so that a
/// later `Upgrade` branch can decide on it without parsing again.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    /// Origin form only: always starts with `/`.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    pub content_length: u64,
    pub expect_continue: bool,
    pub keep_alive: bool,
    /// Tokens of the `Connection` header(s), lowercase: options and the names of
    /// headers that are hop-by-hop for this request only.
    pub connection: Vec<String>,
}

impl RequestHead {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
    }

    /// The client asks to switch protocols (not served yet: forwarded as a plain request
    /// with `Upgrade` stripped).
    pub fn wants_upgrade(&self) -> bool {
        self.connection.iter().any(|t| t == "upgrade") && self.header("upgrade").is_some()
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Finds the end of a head in a growing buffer, looking at each byte once.
#[derive(Debug, Default)]
pub(super) struct Scanner {
    pos: usize,
}

impl Scanner {
    pub(super) fn new() -> Self {
        Scanner::default()
    }

    /// `Ok(Some(n))`: `buf[..n]` is a whole head, its blank line included. `Ok(None)`:
    /// more bytes are needed. A bare LF is refused outright: accepting it would let the
    /// front and tiny_http disagree on where a line ends.
    pub(super) fn advance(&mut self, buf: &[u8], max_head: usize) -> Result<Option<usize>, Reject> {
        let lead = leading_crlf(buf);
        if lead > MAX_LEADING_CRLF {
            return Err(Reject::bad_request("too many empty lines before the request line"));
        }
        let start = self.pos.max(lead);
        for i in start..buf.len() {
            if buf[i] != b'\n' {
                continue;
            }
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(Reject::bad_request("bare LF in request head"));
            }
            if i >= lead + 3 && &buf[i - 3..=i] == b"\r\n\r\n" {
                let end = i + 1;
                if end > max_head {
                    return Err(Reject::head_too_large(max_head));
                }
                return Ok(Some(end));
            }
        }
        self.pos = buf.len();
        if buf.len() > max_head {
            return Err(Reject::head_too_large(max_head));
        }
        Ok(None)
    }
}

/// Bytes taken by CRLF pairs at the very start, looking no further than needed to tell
/// that there are too many.
fn leading_crlf(buf: &[u8]) -> usize {
    let mut n = 0;
    while n <= MAX_LEADING_CRLF && buf.get(n..n + 2) == Some(b"\r\n".as_slice()) {
        n += 2;
    }
    n
}

/// Parses a whole head (as delimited by [`Scanner`]) and applies the framing rules.
pub(super) fn parse(head: &[u8], limits: &Limits) -> Result<RequestHead, Reject> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(Reject::bad_request("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::too_many_headers(MAX_HEADERS));
        }
        Err(e) => return Err(Reject::bad_request(&format!("malformed request head: {e}"))),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Reject::bad_request("malformed request line"));
    };
    if !target.starts_with('/') {
        return Err(Reject::bad_request("request target must be a path starting with /"));
    }
    // obs-text (bytes >= 0x80) is legal to httparse but not to tiny_http behind us:
    // refuse it here with a clean 400 rather than have the hop fail.
    if req.headers.iter().any(|h| h.value.iter().any(|b| !(b.is_ascii_graphic() || *b == b' ' || *b == b'\t'))) {
        return Err(Reject::bad_request("header values must be printable ASCII"));
    }
    let headers = req.headers.iter().map(|h| Header { name: h.name.to_string(), value: h.value.to_vec() }).collect();
    let mut head = RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        minor_version: version,
        headers,
        content_length: 0,
        expect_continue: false,
        keep_alive: false,
        connection: Vec::new(),
    };
    apply_framing(&mut head, limits)?;
    Ok(head)
}

/// What the headers say about framing, gathered before any rule is applied so that the
/// rules read in one place and in order.
#[derive(Default)]
struct Framing<'a> {
    content_lengths: Vec<&'a [u8]>,
    transfer_encoding: bool,
    hosts: usize,
    expects: Vec<&'a [u8]>,
}

fn apply_framing(head: &mut RequestHead, limits: &Limits) -> Result<(), Reject> {
    let mut f = Framing::default();
    let mut connection = Vec::new();
    for h in &head.headers {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => f.content_lengths.push(&h.value),
            "transfer-encoding" => f.transfer_encoding = true,
            "host" => f.hosts += 1,
            "expect" => f.expects.push(&h.value),
            "connection" => connection.extend(tokens(&h.value)),
            _ => {}
        }
    }
    if f.transfer_encoding && !f.content_lengths.is_empty() {
        return Err(Reject::bad_request("Content-Length together with Transfer-Encoding"));
    }
    if f.transfer_encoding {
        return Err(Reject::length_required());
    }
    if f.content_lengths.len() > 1 {
        return Err(Reject::bad_request("more than one Content-Length"));
    }
    if f.hosts > 1 || (f.hosts == 0 && head.minor_version == 1) {
        return Err(Reject::bad_request("an HTTP/1.1 request needs exactly one Host"));
    }
    if let Some(value) = f.content_lengths.first() {
        head.content_length = content_length(value, limits.max_body_bytes)?;
    }
    for value in &f.expects {
        if !trim(value).eq_ignore_ascii_case(b"100-continue") {
            return Err(Reject::expectation_failed());
        }
        head.expect_continue = true;
    }
    let close = connection.iter().any(|t| t == "close");
    let keep = connection.iter().any(|t| t == "keep-alive");
    head.keep_alive = !close && (head.minor_version == 1 || keep);
    head.connection = connection;
    Ok(())
}

/// Digits only (no sign, no list, no spaces inside). A number too big for u64 is still a
/// well-formed length, just one over any limit.
fn content_length(value: &[u8], max: usize) -> Result<u64, Reject> {
    let digits = trim(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Reject::bad_request("Content-Length is not a number"));
    }
    let mut n: u64 = 0;
    for d in digits {
        n = match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))) {
            Some(n) => n,
            None => return Err(Reject::body_too_large(max)),
        };
    }
    if n > max as u64 {
        return Err(Reject::body_too_large(max));
    }
    Ok(n)
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Comma-separated tokens of a list header, lowercase, empty ones dropped.
pub(super) fn tokens(value: &[u8]) -> impl Iterator<Item = String> + '_ {
    value
        .split(|b| *b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
}
