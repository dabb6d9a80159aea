//! The hop to tiny_http: one request per Unix-socket connection, and its response read
//! whole and re-framed for the client.
//!
//! Owns: which client headers reach tiny_http (never hop-by-hop ones, never a client's
//! own `X-Jitgate-*`), the peer and scheme headers, and decoding tiny_http's framing
//! (sized, chunked or close-delimited). Must never reuse an internal connection (a pool
//! brings tiny_http's keep-alive stall back) and never let the exchange outlive
//! `upstream_timeout` (one gap: std cannot bound the Unix `connect` itself, which only
//! blocks if tiny_http's accept backlog is full).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::deadline::Deadlined;
use super::head::{tokens, Header, RequestHead};
use super::reply::{reason, status_line};
use super::{PEER_HEADER, SCHEME_HEADER};

/// tiny_http's heads are small; anything bigger is a fault, not a response.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Responses are buffered to be re-framed; this bounds the memory one can take.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Below this, head and body go out in one write (one TLS record, one segment).
const COALESCE_BELOW: usize = 16 * 1024;

/// Headers that describe one hop, and the framing the front redoes itself: never
/// relayed in either direction.
const NOT_RELAYED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

#[derive(Debug)]
pub(super) enum UpstreamError {
    /// No one listens on the socket: 502.
    Unreachable(io::Error),
    /// The deadline passed: 504.
    Timeout,
    /// An answer that cannot be relayed (malformed, truncated, too big): 502.
    Bad(String),
}

fn io_failure(e: io::Error) -> UpstreamError {
    match e.kind() {
        io::ErrorKind::TimedOut => UpstreamError::Timeout,
        _ => UpstreamError::Bad(e.to_string()),
    }
}

/// What tiny_http answered, body decoded.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    reason: String,
    headers: Vec<Header>,
    /// As announced by tiny_http: for HEAD and 304, the client is owed this one.
    content_length: Option<u64>,
    pub(super) body: Vec<u8>,
}

/// Who is asking, as only the front knows it.
pub(super) struct Origin {
    pub(super) peer: SocketAddr,
    pub(super) scheme: &'static str,
}

/// Sends one request to tiny_http and reads its answer, all within `timeout`.
pub(super) fn forward(
    socket: &Path,
    timeout: Duration,
    head: &RequestHead,
    body: &[u8],
    origin: &Origin,
) -> Result<Response, UpstreamError> {
    let deadline = Instant::now() + timeout;
    let stream = UnixStream::connect(socket).map_err(UpstreamError::Unreachable)?;
    let mut sock = Deadlined::new(stream, deadline);
    let request = request_bytes(head, body.len(), origin);
    let sent = sock.write_all(&request).and_then(|()| sock.write_all(body));
    match sent {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(UpstreamError::Timeout),
        // tiny_http may answer (and close) before taking the whole body: its answer
        // still stands if it can be read.
        Err(e) => read_response(&mut sock, head.is_head()).map_err(|_| io_failure(e)),
        Ok(()) => read_response(&mut sock, head.is_head()),
    }
}

/// True for the client headers tiny_http must not see.
fn dropped_toward_upstream(name: &str, connection: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    NOT_RELAYED.contains(&lower.as_str())
        || lower == "expect"
        // Only the front sets these: a client's copy would be a forgery.
        || lower.starts_with("x-jitgate-")
        || (lower != "host" && connection.contains(&lower))
}

pub(super) fn request_bytes(head: &RequestHead, body_len: usize, origin: &Origin) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.target).into_bytes();
    for h in &head.headers {
        if !dropped_toward_upstream(&h.name, &head.connection) {
            push_header(&mut out, &h.name, &h.value);
        }
    }
    out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
    out.extend_from_slice(b"Connection: close\r\n");
    push_header(&mut out, PEER_HEADER, origin.peer.to_string().as_bytes());
    push_header(&mut out, SCHEME_HEADER, origin.scheme.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn read_response<R: Read>(sock: R, is_head: bool) -> Result<Response, UpstreamError> {
    let mut r = BufReader::with_capacity(16 * 1024, sock);
    loop {
        let raw = read_head(&mut r)?;
        let mut resp = parse_head(&raw)?;
        // Interim answers are never asked for (Expect is stripped); skip any.
        if (100..200).contains(&resp.status) {
            continue;
        }
        resp.body = read_body(&mut r, &resp, is_head)?;
        return Ok(resp);
    }
}

fn read_head<B: BufRead>(r: &mut B) -> Result<Vec<u8>, UpstreamError> {
    let mut raw = Vec::new();
    loop {
        let left = MAX_HEAD_BYTES.saturating_sub(raw.len() as u64);
        let n = r.by_ref().take(left).read_until(b'\n', &mut raw).map_err(io_failure)?;
        if n == 0 {
            let what = if raw.is_empty() { "closed without an answer" } else { "head too large or cut" };
            return Err(UpstreamError::Bad(what.into()));
        }
        if raw.ends_with(b"\r\n\r\n") {
            return Ok(raw);
        }
    }
}

fn parse_head(raw: &[u8]) -> Result<Response, UpstreamError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(UpstreamError::Bad("partial head".into())),
        Err(e) => return Err(UpstreamError::Bad(format!("malformed head: {e}"))),
    }
    let status = parsed.code.unwrap_or(0);
    let headers: Vec<Header> =
        parsed.headers.iter().map(|h| Header { name: h.name.to_string(), value: h.value.to_vec() }).collect();
    Ok(Response {
        status,
        reason: parsed.reason.unwrap_or("").to_string(),
        content_length: announced_length(&headers)?,
        headers,
        body: Vec::new(),
    })
}

fn announced_length(headers: &[Header]) -> Result<Option<u64>, UpstreamError> {
    let mut found: Option<u64> = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        let n = std::str::from_utf8(h.value.trim_ascii())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| UpstreamError::Bad("bad Content-Length".into()))?;
        if found.is_some_and(|f| f != n) {
            return Err(UpstreamError::Bad("conflicting Content-Length".into()));
        }
        found = Some(n);
    }
    Ok(found)
}

fn read_body<B: BufRead>(r: &mut B, resp: &Response, is_head: bool) -> Result<Vec<u8>, UpstreamError> {
    if is_head || resp.status == 204 || resp.status == 304 {
        return Ok(Vec::new());
    }
    let codings: Vec<String> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|h| tokens(&h.value).collect::<Vec<_>>())
        .collect();
    match (codings.last(), resp.content_length) {
        (Some(last), _) if last == "chunked" => read_chunked(r),
        (Some(_), _) | (None, None) => read_to_close(r),
        (None, Some(n)) => read_sized(r, n),
    }
}

fn read_sized<B: BufRead>(r: &mut B, n: u64) -> Result<Vec<u8>, UpstreamError> {
    if n > MAX_BODY_BYTES as u64 {
        return Err(UpstreamError::Bad(format!("body of {n} bytes is over the cap")));
    }
    let mut body = Vec::with_capacity(n as usize);
    r.by_ref().take(n).read_to_end(&mut body).map_err(io_failure)?;
    if body.len() as u64 != n {
        return Err(UpstreamError::Bad("body cut short".into()));
    }
    Ok(body)
}

fn read_to_close<B: BufRead>(r: &mut B) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    r.by_ref().take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut body).map_err(io_failure)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(UpstreamError::Bad("body over the cap".into()));
    }
    Ok(body)
}

fn read_chunked<B: BufRead>(r: &mut B) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, 1024)?;
        let size = chunk_size(&line)?;
        if size == 0 {
            // Trailers are dropped: the client gets a sized body.
            while !read_line(r, 8 * 1024)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_BODY_BYTES {
            return Err(UpstreamError::Bad("chunked body over the cap".into()));
        }
        let before = body.len();
        r.by_ref().take(size as u64).read_to_end(&mut body).map_err(io_failure)?;
        if body.len() - before != size || !read_line(r, 2)?.is_empty() {
            return Err(UpstreamError::Bad("chunk cut short".into()));
        }
    }
}

fn chunk_size(line: &[u8]) -> Result<usize, UpstreamError> {
    let hex = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    let bad = || UpstreamError::Bad("bad chunk size".into());
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let s = std::str::from_utf8(hex).map_err(|_| bad())?;
    usize::from_str_radix(s, 16).map_err(|_| bad())
}

/// One CRLF-terminated line without its terminator; EOF or an overlong line is an error.
fn read_line<B: BufRead>(r: &mut B, max: u64) -> Result<Vec<u8>, UpstreamError> {
    let mut line = Vec::new();
    r.by_ref().take(max + 2).read_until(b'\n', &mut line).map_err(io_failure)?;
    if !line.ends_with(b"\r\n") {
        return Err(UpstreamError::Bad("line cut short".into()));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

impl Response {
    /// The response for the client: tiny_http's status and headers minus hop-by-hop
    /// ones, sized with `Content-Length`, with our own `Connection`. The second part is
    /// the body still to write (empty when it went into the first).
    pub(super) fn to_client(&self, is_head: bool, keep_alive: bool) -> (Vec<u8>, &[u8]) {
        let phrase = if self.reason.is_empty() { reason(self.status) } else { &self.reason };
        let mut out = status_line(self.status, phrase);
        let connection: Vec<String> = self
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| tokens(&h.value).collect::<Vec<_>>())
            .collect();
        for h in &self.headers {
            let lower = h.name.to_ascii_lowercase();
            // tiny_http's `Server` banner names the internals: no use to a client.
            if !NOT_RELAYED.contains(&lower.as_str()) && !connection.contains(&lower) && lower != "server" {
                push_header(&mut out, &h.name, &h.value);
            }
        }
        let bodiless = is_head || self.status == 304;
        let length = match self.status {
            204 => None,
            _ if bodiless => self.content_length,
            _ => Some(self.body.len() as u64),
        };
        if let Some(n) = length {
            out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
        }
        let conn = if keep_alive { "keep-alive" } else { "close" };
        out.extend_from_slice(format!("Connection: {conn}\r\n\r\n").as_bytes());
        let body: &[u8] = if bodiless || self.status == 204 { &[] } else { &self.body };
        if body.len() < COALESCE_BELOW {
            out.extend_from_slice(body);
            return (out, &[]);
        }
        (out, body)
    }
}
