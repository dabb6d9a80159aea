//! The wire: one HTTP POST with ureq (rustls 0.23, the operating system's roots, no
//! redirects, bounded time), and a small SMTP client (EHLO, STARTTLS or implicit TLS,
//! AUTH PLAIN, MAIL/RCPT/DATA) written here rather than pulled in: it needs ~150
//! lines, keeps `cargo tree -i rustls` at 0.23 only, and has no async runtime.
//! Errors come back as text for `outbox_deliveries.last_error`.

use super::config::EmailSink;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS trust of outbound calls: the operating system's roots (an internal CA on
/// an air-gapped box lives there).
pub fn client_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub fn agent(timeout: Duration) -> ureq::Agent {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(timeout)
        .redirects(0)
        .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")));
    match client_tls() {
        Ok(tls) => b = b.tls_config(tls),
        Err(e) => crate::warn!("notifications: {e}; using ureq's own roots"),
    }
    b.build()
}

/// Why a send failed, and how long the receiver asked us to wait (429 Retry-After).
pub struct Failure {
    pub error: String,
    pub retry_after: Option<Duration>,
}

/// POSTs a JSON body with extra headers; any 2xx is success.
pub fn post_json(agent: &ureq::Agent, url: &str, headers: &[(&str, String)], body: &[u8]) -> Result<(), Failure> {
    post(agent, url, headers, body, "the receiver").map(|_| ())
}

/// One call of Slack's Web API (`chat.postMessage`): Slack answers 200 with
/// `{"ok": false, "error": …}` for most failures, so the body decides.
pub fn slack_api(agent: &ureq::Agent, url: &str, token: &str, body: &[u8]) -> Result<(), Failure> {
    let headers =
        [("Content-Type", "application/json; charset=utf-8".to_string()), ("Authorization", format!("Bearer {token}"))];
    let answer: serde_json::Value = post(agent, url, &headers, body, "Slack")?.into_json().unwrap_or_default();
    if answer["ok"] == true {
        return Ok(());
    }
    let error = answer["error"].as_str().unwrap_or("no \"ok\" in the answer");
    Err(Failure { error: format!("Slack refused: {error}"), retry_after: None })
}

/// The POST both share: a non-2xx answer is a failure that names `who` answered and
/// carries its Retry-After.
fn post(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    who: &str,
) -> Result<ureq::Response, Failure> {
    let mut req = agent.post(url).set("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.send_bytes(body) {
        Ok(resp) => Ok(resp),
        Err(ureq::Error::Status(code, resp)) => {
            let retry_after =
                resp.header("retry-after").and_then(|s| s.trim().parse::<u64>().ok()).map(Duration::from_secs);
            Err(Failure { error: format!("HTTP {code} from {who}"), retry_after })
        }
        Err(e) => Err(Failure { error: e.to_string(), retry_after: None }),
    }
}

/// One email to `to` (all in one SMTP transaction).
pub fn email(cfg: &EmailSink, to: &[String], subject: &str, body: &str) -> Result<(), String> {
    let (host, _) = cfg.server.rsplit_once(':').ok_or("server is not host:port")?;
    let addr = cfg
        .server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", cfg.server))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}", cfg.server))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {}: {e}", cfg.server))?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut s = Smtp { stream: Stream::Plain(tcp), pending: Vec::new() };
    if cfg.tls_mode() == "tls" {
        s.start_tls(host)?;
    }
    s.expect(220, None)?;
    let hello = "EHLO jitgate\r\n";
    s.expect(250, Some(hello))?;
    if cfg.tls_mode() == "starttls" {
        s.expect(220, Some("STARTTLS\r\n"))?;
        s.start_tls(host)?;
        s.expect(250, Some(hello))?;
    }
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        // Never a password in the clear, except to a relay on this very box.
        if matches!(s.stream, Stream::Plain(_)) && !addr.ip().is_loopback() {
            return Err("refusing to send SMTP credentials without TLS".into());
        }
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        s.expect(235, Some(&format!("AUTH PLAIN {token}\r\n")))?;
    }
    s.expect(250, Some(&format!("MAIL FROM:<{}>\r\n", cfg.from)))?;
    for rcpt in to {
        s.expect(250, Some(&format!("RCPT TO:<{rcpt}>\r\n")))?;
    }
    s.expect(354, Some("DATA\r\n"))?;
    s.expect(250, Some(&message(&cfg.from, to, subject, body)))?;
    let _ = s.send("QUIT\r\n");
    Ok(())
}

/// Headers and a dot-stuffed body ending in `CRLF . CRLF`.
fn message(from: &str, to: &[String], subject: &str, body: &str) -> String {
    let subject =
        if subject.is_ascii() { subject.to_string() } else { format!("=?UTF-8?B?{}?=", base64(subject.as_bytes())) };
    let id = crate::secret::random_id("msg").unwrap_or_else(|_| format!("msg_{}", crate::time::now_ms()));
    let mut out = format!(
        "From: jitgate <{from}>\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{id}@jitgate>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
        to.join(", "),
        subject.replace(['\r', '\n'], " "),
        chrono::Utc::now().to_rfc2822(),
    );
    for line in body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

struct Smtp {
    stream: Stream,
    /// Bytes read past the last reply line.
    pending: Vec<u8>,
}

impl Smtp {
    fn send(&mut self, text: &str) -> Result<(), String> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(text.as_bytes()).and_then(|_| s.flush()),
            Stream::Tls(s) => s.write_all(text.as_bytes()).and_then(|_| s.flush()),
            Stream::Gone => return Err("connection lost".into()),
        };
        r.map_err(|e| format!("SMTP write: {e}"))
    }

    fn read_some(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 4096];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut buf),
            Stream::Tls(s) => s.read(&mut buf),
            Stream::Gone => return Err("connection lost".into()),
        }
        .map_err(|e| format!("SMTP read: {e}"))?;
        if n == 0 {
            return Err("the SMTP server closed the connection".into());
        }
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() > 64 * 1024 {
            return Err("SMTP reply too long".into());
        }
        Ok(())
    }

    /// Reads one (possibly multi-line) reply: its code and its last line.
    fn reply(&mut self) -> Result<(u16, String), String> {
        loop {
            while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                let more = line.as_bytes().get(3) == Some(&b'-');
                if !more {
                    let code =
                        line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad SMTP reply {line:?}"))?;
                    return Ok((code, line));
                }
            }
            self.read_some()?;
        }
    }

    /// Sends `command` (if any) and wants reply `code`.
    fn expect(&mut self, code: u16, command: Option<&str>) -> Result<(), String> {
        if let Some(c) = command {
            self.send(c)?;
        }
        let (got, line) = self.reply()?;
        if got != code {
            let what = command.map(|c| c.split_whitespace().next().unwrap_or("")).unwrap_or("greeting");
            let what = if what.starts_with("From:") { "message" } else { what };
            return Err(format!("SMTP {what}: {line}"));
        }
        Ok(())
    }

    fn start_tls(&mut self, host: &str) -> Result<(), String> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err("TLS already started".into());
        };
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
                .map_err(|e| format!("SMTP server name {host}: {e}"))?;
        let conn = rustls::ClientConnection::new(client_tls()?, name).map_err(|e| format!("TLS: {e}"))?;
        self.pending.clear();
        self.stream = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
        Ok(())
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes_like_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"\0u\0p"), "AHUAcA==");
    }

    #[test]
    fn a_message_is_dot_stuffed_and_headers_cannot_be_injected() {
        let m = message("j@x", &["a@x".into()], "hi\r\nBcc: evil@x", "line\n.hidden\n");
        assert!(m.contains("Subject: hi  Bcc: evil@x\r\n"));
        assert!(m.contains("\r\n..hidden\r\n"));
        assert!(m.ends_with("\r\n.\r\n"));
    }
}
