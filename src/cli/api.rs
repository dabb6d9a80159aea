//! The HTTP client of the command line: one ureq agent with the right trust (a pinned
//! certificate, a CA file, or the system's roots), and JSON calls that turn the
//! server's error body into one readable message.

use super::profile::Profile;
use crate::error::{Error, Result};
use crate::tls;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where to connect and how to trust it, after flags, environment and profile.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
    pub fingerprint: Option<String>,
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Target {
    /// Flags and environment win; the profile's trust applies only to its own server.
    pub fn resolve(
        server: Option<String>,
        token: Option<String>,
        fingerprint: Option<String>,
        ca_cert: Option<std::path::PathBuf>,
        profile: &Profile,
    ) -> Result<Target> {
        let server = match server.or_else(|| profile.server.clone()) {
            Some(s) => normalize_url(&s)?,
            None => {
                return Err(Error::bad(
                    "no_server",
                    "no server: run `jitgate login URL`, or pass --server (JITGATE_SERVER)",
                ))
            }
        };
        let same = profile.server.as_deref().map(normalize_url).transpose()?.as_deref() == Some(server.as_str());
        Ok(Target {
            token: token.or_else(|| if same { profile.token.clone() } else { None }),
            fingerprint: fingerprint.or_else(|| if same { profile.fingerprint.clone() } else { None }),
            ca_cert: ca_cert.or_else(|| if same { profile.ca_cert.clone() } else { None }),
            server,
        })
    }
}

/// `host:port` or `https://host:port/` → `https://host:port`.
pub fn normalize_url(text: &str) -> Result<String> {
    let t = text.trim().trim_end_matches('/');
    let url =
        if t.starts_with("https://") || t.starts_with("http://") { t.to_string() } else { format!("https://{t}") };
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err(Error::bad("bad_url", format!("bad server URL {text:?}: use https://HOST:PORT")));
    }
    Ok(url)
}

/// The TLS trust for a target: exactly one pinned certificate, a CA file, or the
/// operating system's roots. A self-signed server is never trusted silently.
pub fn tls_config(fingerprint: Option<&str>, ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    if let Some(fp) = fingerprint {
        return tls::pinned_client_config(tls::normalize_fingerprint(fp)?);
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::bad("bad_ca", format!("cannot read CA certificate {}: {e}", path.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| Error::bad("bad_ca", format!("{}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| Error::bad("bad_ca", format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = crate::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS client setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    pub target: Target,
}

impl Api {
    pub fn new(target: Target) -> Result<Api> {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(90))
            .redirects(0);
        if target.server.starts_with("https://") {
            builder = builder.tls_config(tls_config(target.fingerprint.as_deref(), target.ca_cert.as_deref())?);
        }
        Ok(Api { agent: builder.build(), target })
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("POST", path, Some(body), &[])
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("PUT", path, Some(body), &[])
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("PATCH", path, Some(body), &[])
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.call("DELETE", path, None, &[])
    }

    /// One call; a JSON error from the server becomes `Error::Remote` with its message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Result<Value> {
        self.call_raw(method, path, body, headers).map(|(v, _)| v)
    }

    /// Like `call`, and also returns the `Set-Cookie` header (for login).
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(Value, Option<String>)> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.target.server));
        if let Some(t) = &self.target.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => return Err(remote_error(status, r)),
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&self.target, &t.to_string())),
        };
        let cookie = resp.header("set-cookie").map(str::to_string);
        let mut text = String::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|e| Error::Connect(format!("reading the answer: {e}")))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| Error::Connect("the server's answer is not JSON".into()))?
        };
        Ok((value, cookie))
    }
}

fn remote_error(status: u16, resp: ureq::Response) -> Error {
    let mut text = String::new();
    let _ = resp.into_reader().take(1 << 20).read_to_string(&mut text);
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("http_error").to_string();
    let message = match body["error"]["message"].as_str() {
        Some(m) => m.to_string(),
        None if body["allowed"] == false => "not allowed".to_string(),
        None => format!("the server answered {status}"),
    };
    let message = if status == 401 { format!("{message} (log in again: jitgate login URL)") } else { message };
    Error::Remote { status, code, message }
}

/// Names the likely cause of a transport failure in words a person can act on.
fn transport_error(target: &Target, detail: &str) -> Error {
    let server = &target.server;
    if detail.contains("does not match the pinned") {
        return Error::Connect(format!(
            "{server} presented a certificate whose fingerprint does not match the pinned one: refusing to talk to it. If the server's certificate was replaced on purpose, log in again with its new --fingerprint"
        ));
    }
    if detail.contains("UnknownIssuer")
        || detail.contains("invalid peer certificate")
        || detail.contains("NotValidForName")
    {
        return Error::Connect(format!(
            "the certificate of {server} is not trusted by this machine: a self-signed server must be pinned with `jitgate login {server} --fingerprint FP` (the server logs FP when it starts), or give --ca-cert"
        ));
    }
    Error::Connect(format!("cannot reach {server}: {detail}"))
}
