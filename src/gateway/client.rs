//! The client end of a tunnel, used by `jitgate connect`: one TLS connection to the
//! server per local TCP connection, `GET /api/v1/tunnel/{id}` with `Upgrade`, and on
//! `101` the same relay loop as the server's, between the tunnel and the local socket.

use super::relay::Tunnel;
use super::SESSION_HEADER;
use crate::error::{Error, Result};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

const HEAD_MAX: usize = 16 * 1024;

/// Splits `https://host:port` into the host (for TLS names) and `host:port` (to
/// connect), with the scheme's default port when none is given.
pub fn endpoint(server: &str) -> Result<(String, String)> {
    let (scheme, authority) =
        server.split_once("://").ok_or_else(|| Error::bad("bad_url", "server URL without a scheme"))?;
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let host = if has_port { authority.rsplit_once(':').map_or(authority, |(h, _)| h) } else { authority };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let default_port = if scheme == "https" { 443 } else { 80 };
    let with_port = if has_port { authority.to_string() } else { format!("{authority}:{default_port}") };
    Ok((host, with_port))
}

/// Resolves and connects, within `timeout`.
pub fn dial(with_port: &str, timeout: Duration) -> Result<TcpStream> {
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| Error::Connect(format!("cannot resolve {with_port}: {e}")))?
        .next()
        .ok_or_else(|| Error::Connect(format!("cannot resolve {with_port}")))?;
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| Error::Connect(format!("cannot reach {with_port}: {e}")))
}

/// Where and how to open tunnels.
#[derive(Clone)]
pub struct Dialer {
    /// `https://host:port` or `http://host:port`.
    pub server: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub token: String,
}

impl Dialer {
    /// Opens one stream; returns the tunnel and any bytes that came after the `101`.
    pub fn open(&self, request_id: &str, session_id: &str) -> Result<(Tunnel, Vec<u8>)> {
        let (host, with_port) = endpoint(&self.server)?;
        let authority = self.server.split_once("://").map_or("", |(_, a)| a);
        let mut tcp = dial(&with_port, Duration::from_secs(10))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let _ = tcp.set_nodelay(true);
        let request = format!(
            "GET /api/v1/tunnel/{request_id} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\n{SESSION_HEADER}: {session_id}\r\nConnection: Upgrade\r\nUpgrade: jitgate-tunnel/1\r\n\r\n",
            self.token
        );
        match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| Error::bad("bad_url", format!("bad host {host:?}")))?;
                let mut conn = rustls::ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| Error::Connect(format!("TLS: {e}")))?;
                let early = {
                    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
                    stream.write_all(request.as_bytes()).map_err(|e| tls_error(&self.server, e))?;
                    read_upgrade(&mut stream)?
                };
                tcp.set_read_timeout(None)?;
                Ok((Tunnel::Tls(Box::new(conn.into()), tcp), early))
            }
            None => {
                tcp.write_all(request.as_bytes())?;
                let early = read_upgrade(&mut tcp)?;
                tcp.set_read_timeout(None)?;
                Ok((Tunnel::Plain(tcp), early))
            }
        }
    }
}

fn tls_error(server: &str, e: std::io::Error) -> Error {
    Error::Connect(format!("TLS with {server}: {e}"))
}

/// Reads the response head; `101` gives the bytes after it, anything else the
/// server's error message.
fn read_upgrade(s: &mut impl Read) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > HEAD_MAX {
            return Err(Error::Connect("the server's answer to the tunnel request is too long".into()));
        }
        let n = s.read(&mut chunk).map_err(|e| Error::Connect(format!("tunnel request: {e}")))?;
        if n == 0 {
            return Err(Error::Connect("the server closed the tunnel request".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status == 101 {
        return Ok(buf[end..].to_vec());
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0)
        .min(64 * 1024);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let message = json["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the server refused the tunnel ({status})"));
    let code = json["error"]["code"].as_str().unwrap_or("tunnel_refused").to_string();
    Err(Error::Remote { status, code, message })
}
