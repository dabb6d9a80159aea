//! Test harness: a real tiny_http on a Unix socket in a temp dir, a [`Front`] before it
//! on 127.0.0.1:0, and a raw HTTP/1.1 client (plain or TLS) that shows exactly what
//! goes over the wire. Test-only; never used by the server.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::{Front, Limits, ShutdownHandle, Stats};

/// Deadlines short enough for tests, long enough for a loaded 2-core machine.
pub(super) fn test_limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(2),
        head_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        upstream_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// The echo tiny_http: what it received, one `key=value` per line.
fn answer(mut req: tiny_http::Request) {
    let mut body = Vec::new();
    let _ = req.as_reader().read_to_end(&mut body);
    let url = req.url().to_string();
    let response = match url.as_str() {
        "/big" => tiny_http::Response::from_data(vec![b'x'; 100 * 1024]),
        "/hang" => {
            thread::sleep(Duration::from_millis(2500));
            tiny_http::Response::from_string("late")
        }
        _ => {
            if url == "/slow" {
                thread::sleep(Duration::from_millis(600));
            }
            let mut text = format!("method={}\npath={url}\nbody={}\n", req.method(), body.len());
            for h in req.headers() {
                let name = h.field.as_str().as_str().to_ascii_lowercase();
                if name.starts_with("x-jitgate-") || name == "te" || name == "expect" {
                    text.push_str(&format!("{name}={}\n", h.value));
                }
            }
            tiny_http::Response::from_string(text)
        }
    };
    let _ = req.respond(response);
}

pub(super) struct Harness {
    pub(super) addr: SocketAddr,
    pub(super) stats: Arc<Stats>,
    pub(super) handle: ShutdownHandle,
    pub(super) cert: Option<CertificateDer<'static>>,
    done: mpsc::Receiver<io::Result<()>>,
    upstream: Option<Arc<tiny_http::Server>>,
    _dir: tempfile::TempDir,
}

pub(super) struct Options {
    pub(super) limits: Limits,
    pub(super) tls: bool,
    pub(super) upstream_up: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { limits: test_limits(), tls: false, upstream_up: true }
    }
}

pub(super) fn start() -> Harness {
    start_with(Options::default())
}

pub(super) fn start_with(opts: Options) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("app.sock");
    let upstream = opts.upstream_up.then(|| {
        let server = Arc::new(tiny_http::Server::http_unix(&socket).unwrap());
        let s = Arc::clone(&server);
        thread::spawn(move || {
            for req in s.incoming_requests() {
                thread::spawn(move || answer(req));
            }
        });
        server
    });
    let (tls, cert) = match opts.tls {
        true => {
            let (config, cert) = server_tls();
            (Some(config), Some(cert))
        }
        false => (None, None),
    };
    let front = Front::bind("127.0.0.1:0".parse().unwrap(), tls, socket, opts.limits).unwrap();
    let (tx, done) = mpsc::channel();
    let h = Harness {
        addr: front.local_addr(),
        stats: front.stats(),
        handle: front.shutdown_handle(),
        cert,
        done,
        upstream,
        _dir: dir,
    };
    thread::spawn(move || tx.send(front.run()));
    h
}

impl Harness {
    pub(super) fn connect(&self) -> Client<TcpStream> {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client::new(s)
    }

    pub(super) fn connect_tls(&self) -> Client<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone().unwrap()).unwrap();
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client::new(rustls::StreamOwned::new(conn, tcp))
    }

    /// Waits (bounded) until `f` holds on the stats.
    pub(super) fn wait_for(&self, what: &str, f: impl Fn(&Stats) -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !f(&self.stats) {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the front; returns how long `run` took to return.
    pub(super) fn stop(&self) -> Duration {
        let t0 = Instant::now();
        self.handle.shutdown();
        let res = self.done.recv_timeout(Duration::from_secs(15)).unwrap();
        res.unwrap();
        t0.elapsed()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(server) = &self.upstream {
            server.unblock();
        }
    }
}

fn server_tls() -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert.clone()], key).unwrap();
    (Arc::new(config), cert)
}

#[derive(Debug)]
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: HashMap<String, String>,
    pub(super) body: Vec<u8>,
}

impl Resp {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    /// The echo's `key=value` lines with that key.
    pub(super) fn echoed(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}=");
        self.text().lines().filter_map(|l| l.strip_prefix(&prefix).map(str::to_string)).collect()
    }
}

pub(super) struct Client<S: Read + Write> {
    pub(super) r: BufReader<S>,
}

impl<S: Read + Write> Client<S> {
    fn new(s: S) -> Self {
        Client { r: BufReader::new(s) }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) {
        let s = self.r.get_mut();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    pub(super) fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response().unwrap()
    }

    /// One response; the body per `Content-Length` (the front always sends one, save
    /// for 1xx, 204 and HEAD).
    pub(super) fn response(&mut self) -> io::Result<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            let dup = headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
            assert!(dup.is_none(), "duplicate response header {k}");
        }
        let len: usize = headers.get("content-length").map_or(0, |v: &String| v.parse().unwrap());
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok(Resp { status, headers, body })
    }

    /// Reads until the server closes; an RST (or anything but a clean close) is an error.
    pub(super) fn rest(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.r.read_to_end(&mut rest)?;
        Ok(rest)
    }
}
