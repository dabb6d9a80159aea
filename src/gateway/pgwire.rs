//! A tap on the PostgreSQL frontend protocol (client → server): records the SQL of
//! simple-query (`Q`) and extended-protocol `Parse` (`P`) messages, bounded in size,
//! and never the startup or password messages. It also answers `SSLRequest` and
//! `GSSENCRequest` with `N` itself: the client's leg already runs inside jitgate's
//! TLS, and only plaintext can be recorded. (The gateway's leg to the database is
//! plain TCP: keep that network private.)

use super::relay::Tap;
use crate::store::streams::MAX_SQL_BYTES;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// Messages larger than this are skipped, not buffered (COPY data, big binds).
const MAX_PARSED_MESSAGE: usize = 64 * 1024;

/// Captured statements reach the database at least this often.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// One captured statement: (at ms, kind, sql, truncated).
pub type Captured = (i64, &'static str, String, bool);

pub struct PgTap<F: FnMut(Vec<Captured>)> {
    startup_done: bool,
    /// Bytes of the message being assembled (startup phase: held back; after: copies).
    buf: Vec<u8>,
    /// Bytes still to pass without parsing (the rest of a message too big to parse).
    skip: usize,
    batch: Vec<Captured>,
    /// Statements captured so far on this stream.
    captured: i64,
    last_flush: std::time::Instant,
    sink: F,
}

impl<F: FnMut(Vec<Captured>)> PgTap<F> {
    pub fn new(sink: F) -> Self {
        PgTap {
            startup_done: false,
            buf: Vec::new(),
            skip: 0,
            batch: Vec::new(),
            captured: 0,
            last_flush: std::time::Instant::now(),
            sink,
        }
    }

    /// Startup phase: whole messages are held back until complete, so an SSLRequest
    /// can be answered here instead of forwarded.
    fn startup(&mut self, forward: &mut Vec<u8>, reply: &mut Vec<u8>) {
        while !self.startup_done && self.buf.len() >= 8 {
            let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            let code = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
            if len == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
                self.buf.drain(..8);
                reply.push(b'N');
                continue;
            }
            // Startup (or cancel) message: forwarded as is, never parsed or stored.
            if len < 8 || self.buf.len() < len {
                if !(8..=MAX_PARSED_MESSAGE).contains(&len) {
                    self.startup_done = true; // not PostgreSQL as we know it: stop parsing
                    forward.append(&mut self.buf);
                }
                return;
            }
            forward.extend(self.buf.drain(..len));
            self.startup_done = true;
        }
    }

    /// Typed messages: forwarded at once; a copy is parsed for Q and P.
    fn messages(&mut self) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len());
                self.buf.drain(..n);
                self.skip -= n;
                if self.skip > 0 {
                    return;
                }
            }
            if self.buf.len() < 5 {
                return;
            }
            let kind = self.buf[0];
            let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            let total = len + 1;
            if len >= 4 && total > MAX_PARSED_MESSAGE && matches!(kind, b'Q' | b'P') {
                // A statement too big to hold is still recorded: its head, marked
                // truncated (padding a query must not hide it from the audit).
                let head = (5 + MAX_SQL_BYTES + 256).min(total);
                if self.buf.len() < head {
                    return;
                }
                let body: Vec<u8> = self.buf[5..head].to_vec();
                let sql = if kind == b'Q' {
                    cstring(&body, 0)
                } else {
                    cstring(&body, body.iter().position(|b| *b == 0).map_or(body.len(), |i| i + 1))
                };
                let (what, sql) = (if kind == b'Q' { "query" } else { "parse" }, sql.to_vec());
                self.capture_truncated(what, &sql);
                self.skip = total;
                continue;
            }
            if len < 4 || total > MAX_PARSED_MESSAGE {
                // Too big (or malformed) to hold: pass it without looking.
                self.skip = total.max(5);
                continue;
            }
            if self.buf.len() < total {
                return;
            }
            let body: Vec<u8> = self.buf.drain(..total).skip(5).collect();
            match kind {
                b'Q' => self.capture("query", cstring(&body, 0)),
                b'P' => {
                    let name_end = body.iter().position(|b| *b == 0).map_or(body.len(), |i| i + 1);
                    self.capture("parse", cstring(&body, name_end));
                }
                _ => {} // 'p' (password) and everything else: never stored
            }
        }
    }

    fn capture_truncated(&mut self, kind: &'static str, sql: &[u8]) {
        self.capture(kind, sql);
        if let Some(last) = self.batch.last_mut() {
            last.3 = true;
        }
    }

    fn capture(&mut self, kind: &'static str, sql: &[u8]) {
        // Past the per-stream bound statements are no longer kept (the relay goes on).
        if self.captured >= crate::store::streams::MAX_QUERIES_PER_STREAM {
            return;
        }
        self.captured += 1;
        let truncated = sql.len() > MAX_SQL_BYTES;
        let text = String::from_utf8_lossy(&sql[..sql.len().min(MAX_SQL_BYTES)]).to_string();
        self.batch.push((crate::time::now_ms(), kind, text, truncated));
    }
}

fn cstring(body: &[u8], from: usize) -> &[u8] {
    let rest = body.get(from..).unwrap_or(&[]);
    &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
}

impl<F: FnMut(Vec<Captured>) + Send> Tap for PgTap<F> {
    /// Once the startup message went by, bytes go on untouched (a copy is parsed).
    fn passthrough(&self) -> bool {
        self.startup_done
    }

    fn observe(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.messages();
    }

    fn tunnel_to_plain(&mut self, bytes: &[u8], forward: &mut Vec<u8>, reply: &mut Vec<u8>) {
        if !self.startup_done {
            self.buf.extend_from_slice(bytes);
            self.startup(forward, reply);
            if self.startup_done {
                // What followed the startup message in this read is ordinary traffic.
                let rest = std::mem::take(&mut self.buf);
                forward.extend_from_slice(&rest);
                self.buf = rest;
                self.messages();
            }
            return;
        }
        forward.extend_from_slice(bytes);
        self.observe(bytes);
    }

    fn pending(&self) -> bool {
        !self.batch.is_empty()
    }

    fn flush(&mut self, last: bool) {
        let due = self.batch.len() >= 256 || (!self.batch.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY);
        if last || due {
            self.last_flush = std::time::Instant::now();
            if !self.batch.is_empty() {
                (self.sink)(std::mem::take(&mut self.batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00alice\x00\x00";
        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn records_queries_and_parses_but_never_passwords() {
        let mut got = Vec::new();
        let mut tap = PgTap::new(|b| got.extend(b));
        let mut wire = vec![0, 0, 0, 8, 4, 210, 22, 47]; // SSLRequest
        wire.extend(startup());
        wire.extend(msg(b'p', b"s3cret\0"));
        wire.extend(msg(b'Q', b"SELECT 1\0"));
        wire.extend(msg(b'P', b"stmt1\0SELECT $1\0\0\0"));
        let (mut forward, mut reply) = (Vec::new(), Vec::new());
        // Fed one byte at a time: framing must not depend on read sizes.
        for b in &wire {
            tap.tunnel_to_plain(&[*b], &mut forward, &mut reply);
        }
        tap.flush(true);
        assert_eq!(reply, b"N");
        assert_eq!(forward, wire[8..].to_vec(), "everything but the SSLRequest goes on");
        let sql: Vec<(&str, String)> = got.iter().map(|(_, k, s, _)| (*k, s.clone())).collect();
        assert_eq!(sql, vec![("query", "SELECT 1".to_string()), ("parse", "SELECT $1".to_string())]);
        assert!(!got.iter().any(|(_, _, s, _)| s.contains("s3cret")));
    }

    #[test]
    fn long_statements_are_truncated_and_huge_messages_skipped() {
        let mut got = Vec::new();
        let mut tap = PgTap::new(|b| got.extend(b));
        let (mut f, mut r) = (Vec::new(), Vec::new());
        tap.tunnel_to_plain(&startup(), &mut f, &mut r);
        let long = format!("SELECT '{}'\0", "x".repeat(10_000));
        tap.tunnel_to_plain(&msg(b'Q', long.as_bytes()), &mut f, &mut r);
        tap.tunnel_to_plain(&msg(b'd', &vec![7u8; 200_000]), &mut f, &mut r);
        let padded = format!("SELECT 'HIDDEN' /*{}*/; DROP TABLE important\0", "x".repeat(70_000));
        tap.tunnel_to_plain(&msg(b'Q', padded.as_bytes()), &mut f, &mut r);
        tap.tunnel_to_plain(&msg(b'Q', b"SELECT 2\0"), &mut f, &mut r);
        tap.flush(true);
        assert_eq!(got.len(), 3);
        assert!(got[1].2.starts_with("SELECT 'HIDDEN'") && got[1].3, "a padded statement is recorded, truncated");
        assert!(got[0].3 && got[0].2.len() == MAX_SQL_BYTES);
        assert_eq!(got[2].2, "SELECT 2");
    }
}
