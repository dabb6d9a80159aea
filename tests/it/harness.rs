//! The test harness: runs the real `jitgate` binary in a temp data dir on a free
//! loopback port (`--listen 127.0.0.1:0`, the port read back from its log) and talks
//! to it over real HTTPS, pinned to the certificate it made on first start.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

pub struct Server {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin_token: String,
    pub admin_password: String,
    args: Vec<String>,
    child: Option<Child>,
    tls: Option<Arc<rustls::ClientConfig>>,
    starts: usize,
}

/// Waits for `cond`, checking every 20 ms, up to `limit`; panics with `what` if it
/// never holds.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Server {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: String::new(),
            admin_password: String::new(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            tls: None,
            starts: 0,
        };
        s.launch();
        let admin: Value =
            serde_json::from_str(&std::fs::read_to_string(s.data_dir().join("initial-admin.json")).unwrap()).unwrap();
        s.admin_token = admin["token"].as_str().unwrap().to_string();
        s.admin_password = admin["password"].as_str().unwrap().to_string();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("server-{}.log", self.starts))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn plain(&self) -> bool {
        self.args.iter().any(|a| a == "--plain-http")
    }

    /// Starts the binary on the same data dir and waits until it listens.
    fn launch(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let listen = if self.addr.port() == 0 { "127.0.0.1:0".to_string() } else { self.addr.to_string() };
        let child = Command::new(BIN)
            .arg("serve")
            // The tests run as root in CI; the root refusal has its own test (ops.rs).
            .arg("--allow-root")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(listen)
            .args(&self.args)
            .env_remove("JITGATE_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start jitgate");
        self.child = Some(child);
        let mut addr = None;
        wait_until("the server to listen", Duration::from_secs(30), || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("jitgate exited with {status} before listening:\n{}", self.log());
            }
            addr = self.log().lines().find_map(|l| {
                // The address ends where an address's characters end (a JSON record
                // goes on with `",`).
                l.split("listening on ").nth(1).and_then(|u| u.split("://").nth(1)).map(|a| {
                    a.split(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c))).next().unwrap().to_string()
                })
            });
            addr.is_some()
        });
        self.addr = addr.unwrap().parse().unwrap();
        if !self.plain() {
            let given = self.args.iter().position(|a| a == "--tls-cert").map(|i| PathBuf::from(&self.args[i + 1]));
            let pem = std::fs::read(given.unwrap_or_else(|| self.data_dir().join("tls-cert.pem"))).unwrap();
            let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
            let pin = jitgate::tls::normalize_fingerprint(&jitgate::tls::fingerprint(der.as_ref())).unwrap();
            self.tls = Some(jitgate::tls::pinned_client_config(pin).unwrap());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Resident memory of the server process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "jitgate did not stop on SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts again on the same data dir and port.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.launch();
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.plain() { "http" } else { "https" };
        format!("{scheme}://{}{path}", self.addr)
    }

    fn agent(&self) -> ureq::Agent {
        let mut b = ureq::AgentBuilder::new().timeout(Duration::from_secs(90));
        if let Some(tls) = &self.tls {
            b = b.tls_config(tls.clone());
        }
        b.build()
    }

    /// A client with its own agent and a short timeout, for load tests.
    pub fn client_with_timeout(&self, token: Option<&str>, timeout: Duration) -> Client {
        let mut b = ureq::AgentBuilder::new().timeout(timeout);
        if let Some(tls) = &self.tls {
            b = b.tls_config(tls.clone());
        }
        Client {
            agent: b.build(),
            base: self.url(""),
            token: token.map(str::to_string),
            headers: Vec::new(),
            name: String::new(),
        }
    }

    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone().unwrap()
    }

    pub fn client(&self, token: Option<&str>) -> Client {
        Client {
            agent: self.agent(),
            base: self.url(""),
            token: token.map(str::to_string),
            headers: Vec::new(),
            name: String::new(),
        }
    }

    pub fn admin(&self) -> Client {
        Client { name: "admin".into(), ..self.client(Some(&self.admin_token)) }
    }

    pub fn anonymous(&self) -> Client {
        self.client(None)
    }

    /// Creates `name` (with a token) and puts them in `groups` (created if missing).
    pub fn user(&self, name: &str, groups: &[&str]) -> Client {
        let admin = self.admin();
        admin.post("/api/v1/users", json!({"username": name})).expect(201);
        for g in groups {
            let r = admin.post("/api/v1/groups", json!({"name": g}));
            assert!(r.status == 201 || r.status == 409, "{r:?}");
            admin.put(&format!("/api/v1/groups/{g}/members/{name}"), json!({})).expect(200);
        }
        let t = admin.post(&format!("/api/v1/users/{name}/tokens"), json!({"name": "test"})).expect(201);
        Client { name: name.into(), ..self.client(Some(t.body["token"].as_str().unwrap())) }
    }

    /// Creates a connection with the given approval groups and extra policy fields.
    pub fn connection(&self, name: &str, groups: &[&str], extra: Value) -> Value {
        let admin = self.admin();
        for g in groups {
            let r = admin.post("/api/v1/groups", json!({"name": g}));
            assert!(r.status == 201 || r.status == 409, "{r:?}");
        }
        let mut body = json!({"name": name, "approval_groups": groups});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        admin.post("/api/v1/connections", body).expect(201).body
    }

    /// Opens the database read-only, for checks behind the API's back.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data_dir().join("jitgate.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// A raw TCP connection to the server (no TLS).
    pub fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.addr).unwrap()
    }

    /// A TLS connection speaking raw bytes.
    pub fn tls_stream(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(self.tls.clone().unwrap(), name).unwrap();
        rustls::StreamOwned::new(conn, self.tcp())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP client acting as one user.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    pub headers: Vec<(String, String)>,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap().to_string()
    }
}

pub static REQUESTS: AtomicUsize = AtomicUsize::new(0);

impl Client {
    pub fn with_header(mut self, k: &str, v: &str) -> Client {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        self.try_send(method, path, body).unwrap_or_else(|e| panic!("{method} {path}: transport error {e}"))
    }

    /// Like `send`, but a transport failure (server gone) is an `Err`, not a panic.
    pub fn try_send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Resp, String> {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in &self.headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) if self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) => req.send_bytes(b),
            Some(b) => req.set("Content-Type", "application/json").send_bytes(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let headers =
            resp.headers_names().iter().map(|n| (n.clone(), resp.header(n).unwrap_or("").to_string())).collect();
        let mut text = String::new();
        resp.into_reader().read_to_string(&mut text).map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp { status, body, text, headers })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(body.to_string().as_bytes()))
    }

    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.send("PUT", path, Some(body.to_string().as_bytes()))
    }

    pub fn patch(&self, path: &str, body: Value) -> Resp {
        self.send("PATCH", path, Some(body.to_string().as_bytes()))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None)
    }

    /// Asks for access; returns the request JSON.
    pub fn request(&self, connection: &str, duration: &str) -> Resp {
        self.post("/api/v1/requests", json!({"connection": connection, "duration": duration}))
    }

    pub fn show(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/requests/{id}")).expect(200).body
    }

    pub fn approve(&self, id: &str) -> Resp {
        self.post(&format!("/api/v1/requests/{id}/approve"), json!({}))
    }

    pub fn reject(&self, id: &str, reason: &str) -> Resp {
        self.post(&format!("/api/v1/requests/{id}/reject"), json!({"reason": reason}))
    }

    pub fn act(&self, id: &str, action: &str) -> Resp {
        self.post(&format!("/api/v1/requests/{id}/{action}"), json!({}))
    }

    /// Long-polls until the status moves away from `from`.
    pub fn wait(&self, id: &str, from: &str, timeout: &str) -> Value {
        self.get(&format!("/api/v1/requests/{id}/wait?status={from}&timeout={timeout}")).expect(200).body
    }
}

/// Sends raw bytes and reads until the server closes or `limit` passes.
pub fn raw_exchange(stream: &mut (impl Read + Write), bytes: &[u8], limit: Duration) -> String {
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let end = Instant::now() + limit;
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Reads one HTTP response's status line from a buffered stream.
pub fn status_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line
}

pub fn data_dir_of(p: &Path) -> PathBuf {
    p.join("data")
}
