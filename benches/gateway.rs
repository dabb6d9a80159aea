//! `cargo bench --bench gateway`: the tunnel gateway on loopback, direct vs through
//! `jitgate connect` + the gateway (two relay hops, TLS between them), in one run:
//!
//! 1. bulk throughput: N MiB (default 256) upload (client → target), download
//!    (target → client) and both ways at once (an echo target), direct to the target
//!    vs through the tunnel; best of 2 each, with the CPU the two jitgate processes
//!    spent per GiB;
//! 2. 64-byte round trips on one connection (default 5,000 after 200 warm-up):
//!    p50/p99 direct vs through;
//! 3. `pgbench -S -c4 -T 10` on a scale-1 database (`pgbench -i -s 1` first): tps
//!    direct vs through a `postgres` connection (the gateway parses and records the
//!    SQL) and, to isolate that cost, through a `tcp` connection to the same server;
//!    then the yardstick: bulk upload and pgbench through plain relays without TLS
//!    (this binary re-run with `--baseline-relay`, two blocking threads per
//!    connection), one hop and two hops in a row, against direct in the same run;
//! 4. the cut-off: 1,000 idle streams open through one `jitgate connect`, the grant is
//!    revoked, and the figure is, per stream, the time from the revoke call returning
//!    to the local socket seeing EOF (p50/p99/max); beside it the time the server's
//!    relays ended (streams.ended_at in the database) and the time `connect` exited.
//!
//! Everything it starts is stopped at the end, also on error, panic or
//! SIGINT/SIGTERM/SIGHUP: the release server, the `connect` processes, pgbench, and the
//! throwaway PostgreSQL (`scripts/test-postgres.sh`, unless `JITGATE_TEST_PG=host:port`
//! names one already running: user postgres, trust auth; it is then left running).
//! It needs about 4,200 descriptors per process for 1,000 streams: it raises its own
//! soft `RLIMIT_NOFILE` with `prlimit` (the children inherit it); if the hard limit is
//! lower, run it under `ulimit -n 8192`.
//!
//! Knobs (environment): `JITGATE_BENCH_MIB` (256), `JITGATE_BENCH_RTTS` (5000),
//! `JITGATE_BENCH_PG_SECS` (10), `JITGATE_BENCH_STREAMS` (1000), `JITGATE_BENCH_DIR`
//! (scratch data dir parent). Nothing is asserted against a time: figures are printed,
//! with the targets. Results and their meaning: BENCHMARKS.md, "Gateway".

use polling::{Event, Events, Poller};
use serde_json::{json, Value};
use std::error::Error;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
mod common;
use common::*;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");
const MIB: usize = 1 << 20;
const BUF: usize = 256 * 1024;

/// utime + stime of a process so far (clock ticks of 10 ms, as on Linux).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    Duration::from_millis((f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10)
}

fn threads_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string()
    };
    format!("{} threads, RSS {} KiB", field("Threads:"), field("VmRSS:"))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn mibs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

// ---------------------------------------------------------------------------------
// Every child is registered, so that a signal (or a panic) still stops it.

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static PG_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-postgres.sh")
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill").args([signal, &pid.to_string()]).stderr(Stdio::null()).status();
}

fn stop_pg(dir: &Path) {
    let _ = Command::new("bash").arg(pg_script()).arg("stop").arg(dir).stdout(Stdio::null()).status();
    PG_DIRS.lock().unwrap_or_else(|e| e.into_inner()).retain(|d| d != dir);
}

fn emergency_cleanup() {
    let pids: Vec<u32> = PIDS.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
    for pid in pids {
        kill("-KILL", pid);
    }
    let dirs: Vec<PathBuf> = PG_DIRS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for d in dirs {
        stop_pg(&d);
    }
}

fn watch_signals() -> Res<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("gateway bench: signal {sig}: stopping every child");
            emergency_cleanup();
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}
/// A child process: its exit is waited for on a thread (and timestamped); dropped
/// while alive, it is killed.
struct Proc {
    pid: u32,
    name: String,
    exited: Receiver<(Instant, std::io::Result<ExitStatus>)>,
    exit: Option<(Instant, ExitStatus)>,
}

type Pipes = (Option<std::process::ChildStdout>, Option<std::process::ChildStderr>);

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Res<(Proc, Pipes)> {
        let mut child: Child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id();
        PIDS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        let pipes = (child.stdout.take(), child.stderr.take());
        let (tx, exited) = mpsc::channel();
        thread::spawn(move || {
            let status = child.wait();
            PIDS.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pid);
            let _ = tx.send((Instant::now(), status));
        });
        Ok((Proc { pid, name: name.to_string(), exited, exit: None }, pipes))
    }

    /// Waits (bounded) for the exit; returns when it happened.
    fn wait(&mut self, within: Duration) -> Option<(Instant, ExitStatus)> {
        if self.exit.is_none() {
            if let Ok((at, Ok(status))) = self.exited.recv_timeout(within) {
                self.exit = Some((at, status));
            }
        }
        self.exit
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.wait(Duration::ZERO).is_none() {
            kill("-TERM", self.pid);
            if self.wait(grace).is_none() {
                eprintln!("{} did not stop within {grace:?} of SIGTERM: killed", self.name);
                kill("-KILL", self.pid);
                self.wait(Duration::from_secs(10));
            }
        }
        self.exit.map(|(_, s)| s)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.wait(Duration::ZERO).is_none() {
            kill("-KILL", self.pid);
            self.wait(Duration::from_secs(10));
        }
    }
}

/// Runs a short command to its end (registered, so a signal stops it too).
fn run_to_end(name: &str, cmd: &mut Command, within: Duration) -> Res<(ExitStatus, String)> {
    let (mut p, (out, err)) =
        Proc::spawn(name, cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()))?;
    let readers: Vec<_> = [out.map(|o| Box::new(o) as Box<dyn Read + Send>), err.map(|e| Box::new(e) as _)]
        .into_iter()
        .flatten()
        .map(|mut r| {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        })
        .collect();
    let status = match p.wait(within) {
        Some((_, s)) => s,
        None => {
            p.stop(Duration::from_secs(2));
            return Err(format!("{name} did not finish within {within:?}").into());
        }
    };
    let text = readers.into_iter().map(|h| h.join().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    Ok((status, text))
}

// ---------------------------------------------------------------------------------
// PostgreSQL: the one named by JITGATE_TEST_PG, or a throwaway cluster.

struct Pg {
    addr: String,
    dir: Option<PathBuf>,
}

impl Pg {
    fn start() -> Res<Pg> {
        if let Ok(addr) = std::env::var("JITGATE_TEST_PG") {
            return Ok(Pg { addr, dir: None });
        }
        // Outside the scratch dir: as root the cluster runs as `postgres`, who must
        // reach it (the scratch dir is 0700 root).
        let dir = std::env::temp_dir().join(format!("jitgate-gwbench-pg-{}", std::process::id()));
        PG_DIRS.lock().unwrap_or_else(|e| e.into_inner()).push(dir.clone());
        let mut pg = Pg { addr: String::new(), dir: Some(dir.clone()) };
        let (status, out) = run_to_end(
            "test-postgres.sh start",
            Command::new("bash").arg(pg_script()).arg("start").arg(&dir),
            Duration::from_secs(120),
        )?;
        if !status.success() {
            return Err(format!("scripts/test-postgres.sh start failed: {out}").into());
        }
        let addr = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("JITGATE_TEST_PG="))
            .ok_or_else(|| format!("no JITGATE_TEST_PG in {out:?}"))?
            .to_string();
        pg.addr = addr;
        Ok(pg)
    }

    fn port(&self) -> &str {
        self.addr.rsplit_once(':').map_or("5432", |(_, p)| p)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            stop_pg(d);
        }
    }
}

fn conninfo(port: &str) -> String {
    format!("host=127.0.0.1 port={port} sslmode=disable user=postgres dbname=postgres connect_timeout=10")
}

struct Pgbench {
    tps: f64,
    latency: String,
}

fn pgbench(port: &str, secs: usize) -> Res<Pgbench> {
    let (status, out) = run_to_end(
        "pgbench -S",
        Command::new("pgbench").args(["-n", "-S", "-c", "4", "-T", &secs.to_string()]).arg(conninfo(port)),
        Duration::from_secs(secs as u64 + 60),
    )?;
    if !status.success() {
        return Err(format!("pgbench on port {port} failed: {out}").into());
    }
    let tps = out
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench's output: {out}"))?;
    let latency = out
        .lines()
        .find(|l| l.starts_with("latency average"))
        .map(|l| l.trim_start_matches("latency average = ").to_string())
        .unwrap_or_default();
    Ok(Pgbench { tps, latency })
}

// ---------------------------------------------------------------------------------
// The jitgate server and `connect`

struct Server {
    proc: Proc,
    base: String,
    fingerprint: String,
    data: PathBuf,
    admin_token: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Res<Server> {
        let data = dir.join("data");
        let (proc, (_, stderr)) = Proc::spawn(
            "jitgate serve",
            Command::new(BIN)
                .arg("serve")
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen", "127.0.0.1:0"])
                .args(extra)
                .args(if running_as_root() { &["--allow-root"][..] } else { &[] })
                .env_remove("JITGATE_ADMIN_TOKEN")
                .env_remove("JITGATE_DATA_DIR")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let stderr = stderr.ok_or("no stderr pipe")?;
        let ready = await_ready(stderr, &dir.join("server.log"), &data, Duration::from_secs(60))?;
        Ok(Server {
            proc,
            base: ready.base,
            fingerprint: ready.fingerprint,
            data,
            admin_token: ready.admin_token,
            agent: ready.agent,
        })
    }

    fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Res<Value> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {token}"));
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!("{method} {path}: {code} {}", r.into_string().unwrap_or_default()).into())
            }
            Err(e) => return Err(format!("{method} {path}: {e}").into()),
        };
        Ok(resp.into_json()?)
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Res<Value> {
        self.call(&self.admin_token, method, path, body)
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .agent
            .get(&format!("{}/metrics", self.base))
            .set("Authorization", &format!("Bearer {}", self.admin_token))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    }
}

/// `jitgate connect NAME --duration 1h --port 0`, serving its local port.
struct Connect {
    proc: Proc,
    port: u16,
    lines: Receiver<String>,
}

impl Connect {
    fn start(server: &Server, home: &Path, token: &str, connection: &str) -> Res<Connect> {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("JITGATE_") {
                cmd.env_remove(&k);
            }
        }
        cmd.args(["connect", connection, "--duration", "1h", "--port", "0"])
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("xdg"))
            .env("JITGATE_SERVER", &server.base)
            .env("JITGATE_TOKEN", token)
            .env("JITGATE_FINGERPRINT", &server.fingerprint)
            .env("JITGATE_CONFIG", home.join("no-profile.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (proc, (out, err)) = Proc::spawn(&format!("jitgate connect {connection}"), &mut cmd)?;
        let (tx, lines) = mpsc::channel();
        for pipe in
            [out.map(|o| Box::new(o) as Box<dyn Read + Send>), err.map(|e| Box::new(e) as _)].into_iter().flatten()
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let end = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let line = lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
                .map_err(|_| format!("connect {connection}: no \"Listening on\" line; got {seen:?}"))?;
            if let Some(rest) = line.split("Listening on 127.0.0.1:").nth(1) {
                let port = rest.split_whitespace().next().and_then(|p| p.parse().ok()).ok_or("bad port")?;
                return Ok(Connect { proc, port, lines });
            }
            seen.push(line);
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What it printed since it started listening.
    fn rest(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

// ---------------------------------------------------------------------------------
// The yardstick: a plain relay, no TLS and no bookkeeping, in a process of its own
// (this bench binary re-run with `--baseline-relay TARGET`): two threads per
// connection, blocking reads and writes of up to 256 KiB. One is one hop; two in a
// row have the path shape of `connect` + gateway, without the TLS between them.

struct Baseline {
    _proc: Proc,
    addr: String,
}

impl Baseline {
    fn start(target: &str) -> Res<Baseline> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(["--baseline-relay", target]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let (proc, (out, _)) = Proc::spawn("baseline relay", &mut cmd)?;
        let mut line = String::new();
        BufReader::new(out.ok_or("no stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening ").ok_or_else(|| format!("baseline relay said {line:?}"))?;
        Ok(Baseline { _proc: proc, addr: addr.to_string() })
    }
}

fn baseline_relay(target: &str) -> Res<()> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    println!("listening {}", l.local_addr()?);
    std::io::stdout().flush()?;
    for client in l.incoming().flatten() {
        let target = target.to_string();
        thread::spawn(move || -> Res<()> {
            let upstream = TcpStream::connect(&target)?;
            for s in [&client, &upstream] {
                s.set_nodelay(true)?;
            }
            let (c2, u2) = (client.try_clone()?, upstream.try_clone()?);
            let up = thread::spawn(move || pump(c2, u2));
            pump(upstream, client);
            let _ = up.join();
            Ok(())
        });
    }
    Ok(())
}

/// Copies until EOF, then passes the EOF on.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUF];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------
// The target: one loopback server, the first byte of a connection picks the mode.
//   'S' sink: read to EOF, answer the count (8 bytes), close.
//   'D' source: read an 8-byte count, send that many bytes, close.
//   'E' echo until EOF.

fn target_server() -> Res<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?.to_string();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            let _ = thread::Builder::new().stack_size(512 * 1024).spawn(move || serve_target(c));
        }
    });
    Ok(addr)
}

fn serve_target(mut c: TcpStream) -> std::io::Result<()> {
    let _ = c.set_nodelay(true);
    let mut mode = [0u8; 1];
    c.read_exact(&mut mode)?;
    let mut buf = vec![0u8; BUF];
    match mode[0] {
        b'S' => {
            let mut n = 0u64;
            loop {
                match c.read(&mut buf)? {
                    0 => break,
                    k => n += k as u64,
                }
            }
            c.write_all(&n.to_be_bytes())?;
        }
        b'D' => {
            let mut len = [0u8; 8];
            c.read_exact(&mut len)?;
            let mut left = u64::from_be_bytes(len) as usize;
            buf.fill(0x5a);
            while left > 0 {
                let k = left.min(BUF);
                c.write_all(&buf[..k])?;
                left -= k;
            }
            c.shutdown(Shutdown::Write)?;
            while c.read(&mut buf)? > 0 {}
        }
        _ => loop {
            match c.read(&mut buf)? {
                0 => {
                    c.shutdown(Shutdown::Write)?;
                    break;
                }
                k => c.write_all(&buf[..k])?,
            }
        },
    }
    Ok(())
}

/// The target of the cut-off streams: an echo for many idle connections served by
/// one thread (a poller), so that 1,000 target threads waking at the cut do not
/// compete with jitgate for the two cores: the target would not be on this box.
fn idle_echo_server() -> Res<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?.to_string();
    let poller = Arc::new(Poller::new()?);
    let conns: Arc<Mutex<std::collections::HashMap<usize, TcpStream>>> = Arc::default();
    {
        let (poller, conns) = (Arc::clone(&poller), Arc::clone(&conns));
        thread::spawn(move || {
            for (key, c) in l.incoming().flatten().enumerate() {
                if c.set_nonblocking(true).is_err() {
                    continue;
                }
                let mut map = conns.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: deleted from the poller before the socket is dropped (below).
                if unsafe { poller.add(&c, Event::readable(key)) }.is_ok() {
                    map.insert(key, c);
                }
            }
        });
    }
    thread::spawn(move || {
        let mut events = Events::new();
        let mut buf = [0u8; 4096];
        loop {
            events.clear();
            if poller.wait(&mut events, None).is_err() {
                return;
            }
            let mut map = conns.lock().unwrap_or_else(|e| e.into_inner());
            for ev in events.iter() {
                let Some(mut c) = map.get(&ev.key) else { continue };
                let keep = loop {
                    match c.read(&mut buf) {
                        Ok(0) => break false,
                        // Small echoes on an idle socket: the write does not block.
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                break false;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                        Err(_) => break false,
                    }
                };
                if keep {
                    let _ = poller.modify(c, Event::readable(ev.key));
                } else if let Some(c) = map.remove(&ev.key) {
                    let _ = poller.delete(&c);
                }
            }
        }
    });
    Ok(addr)
}

fn dial(addr: &str) -> Res<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(s)
}

/// Client → target: `bytes`, then EOF; done when the target's count arrives.
/// Returns the time and how many bytes arrived (a shortfall is reported, not fatal).
fn upload(addr: &str, bytes: usize) -> Res<(Duration, usize)> {
    let buf = vec![0xa5u8; BUF];
    let t = Instant::now();
    let mut s = dial(addr)?;
    s.write_all(b"S")?;
    let mut left = bytes;
    while left > 0 {
        let k = left.min(BUF);
        s.write_all(&buf[..k])?;
        left -= k;
    }
    s.shutdown(Shutdown::Write)?;
    let mut n = [0u8; 8];
    s.read_exact(&mut n)?;
    Ok((t.elapsed(), u64::from_be_bytes(n) as usize))
}

/// Target → client: `bytes`, then EOF.
fn download(addr: &str, bytes: usize) -> Res<(Duration, usize)> {
    let mut buf = vec![0u8; BUF];
    let t = Instant::now();
    let mut s = dial(addr)?;
    let mut ask = b"D".to_vec();
    ask.extend_from_slice(&(bytes as u64).to_be_bytes());
    s.write_all(&ask)?;
    let mut got = 0;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            k => got += k,
        }
    }
    Ok((t.elapsed(), got))
}

/// Both ways at once through the echo: `bytes` up while `bytes` come back.
fn duplex(addr: &str, bytes: usize) -> Res<(Duration, usize)> {
    let t = Instant::now();
    let mut s = dial(addr)?;
    s.write_all(b"E")?;
    let mut w = s.try_clone()?;
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let buf = vec![0x3cu8; BUF];
        let mut left = bytes;
        while left > 0 {
            let k = left.min(BUF);
            w.write_all(&buf[..k])?;
            left -= k;
        }
        w.shutdown(Shutdown::Write)
    });
    let mut buf = vec![0u8; BUF];
    let mut got = 0;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            k => got += k,
        }
    }
    let took = t.elapsed();
    writer.join().map_err(|_| "writer panicked")??;
    Ok((took, got))
}

/// 64-byte round trips on one connection; returns the measured ones, sorted.
fn round_trips(addr: &str, warm: usize, n: usize) -> Res<Vec<Duration>> {
    let mut s = dial(addr)?;
    s.write_all(b"E")?;
    let msg = [0x42u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(n);
    for i in 0..warm + n {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if i >= warm {
            out.push(t.elapsed());
        }
    }
    out.sort_unstable();
    Ok(out)
}

// ---------------------------------------------------------------------------------

/// The results, printed together at the end.
#[derive(Default)]
struct Table(Vec<(String, String)>);

impl Table {
    fn add(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        let (f, v) = (figure.into(), value.into());
        println!("  {f}: {v}");
        self.0.push((f, v));
    }
}

fn raise_nofile(want: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let (soft, hard) = (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0));
    if soft >= want {
        println!("open files: soft limit {soft} (enough)");
        return;
    }
    let target = want.min(hard);
    let ok = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--nofile={target}:")])
        .status()
        .is_ok_and(|s| s.success());
    println!(
        "open files: soft limit {soft} -> {target} ({}, hard {hard})",
        if ok { "raised" } else { "prlimit FAILED" }
    );
    if target < want {
        println!("  warning: hard limit {hard} < {want}; run under `ulimit -n 8192` for 1,000 streams");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-relay") {
        let target = args.get(i + 1).cloned().unwrap_or_default();
        if let Err(e) = baseline_relay(&target) {
            eprintln!("baseline relay: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = watch_signals() {
        eprintln!("cannot watch signals: {e}");
    }
    let result = std::panic::catch_unwind(run);
    emergency_cleanup();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("gateway bench failed: {e}");
            std::process::exit(1);
        }
        Err(_) => std::process::exit(101),
    }
}

fn run() -> Res<()> {
    let mib = env_usize("JITGATE_BENCH_MIB", 256);
    let rtts = env_usize("JITGATE_BENCH_RTTS", 5000);
    let pg_secs = env_usize("JITGATE_BENCH_PG_SECS", 10);
    let n_streams = env_usize("JITGATE_BENCH_STREAMS", 1000);
    let bytes = mib * MIB;
    let started = Instant::now();
    println!("jitgate gateway bench: binary {BIN}");
    println!("load average before: {}", loadavg());
    raise_nofile(8192);
    let scratch = match std::env::var_os("JITGATE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home)?;
    let mut table = Table::default();

    let pg = Pg::start()?;
    println!("PostgreSQL at {} ({})", pg.addr, if pg.dir.is_some() { "throwaway cluster" } else { "JITGATE_TEST_PG" });
    let target = target_server()?;
    let idle_echo = idle_echo_server()?;
    let cap = (n_streams * 2 + 256).to_string();
    let mut server = Server::start(
        scratch.path(),
        &[
            "--max-connections",
            &cap,
            "--max-connections-per-ip",
            &cap,
            "--max-streams-per-grant",
            &cap,
            "--workers",
            "8",
        ],
    )?;
    println!("server {} (pid {}), target {target}", server.base, server.proc.pid);
    server.admin("POST", "/api/v1/users", Some(json!({"username": "alice"})))?;
    let alice = server.admin("POST", "/api/v1/users/alice/tokens", Some(json!({"name": "bench"})))?["token"]
        .as_str()
        .ok_or("no token")?
        .to_string();
    for (name, kind, to) in
        [("bulk", "tcp", &target), ("pg", "postgres", &pg.addr), ("pgtcp", "tcp", &pg.addr), ("cut", "tcp", &idle_echo)]
    {
        // No approval groups: alice's request is approved at once.
        server.admin(
            "POST",
            "/api/v1/connections",
            Some(json!({"name": name, "kind": kind, "target": to, "approval_groups": []})),
        )?;
    }

    // 1. Bulk ---------------------------------------------------------------------
    let mut bulk = Connect::start(&server, &home, &alice, "bulk")?;
    let through = bulk.addr();
    println!("\n[bulk: {mib} MiB, best of 2, direct {target} vs through {through}]");
    let mut bulk_ratios = Vec::new();
    let mut truncated_runs = Vec::new();
    type Xfer = fn(&str, usize) -> Res<(Duration, usize)>;
    let cases: [(&str, Xfer, usize); 3] =
        [("upload", upload, 1), ("download", download, 1), ("both ways (echo)", duplex, 2)];
    let me = std::process::id();
    for (name, f, dirs) in cases {
        let (mut direct, mut tun) = (Vec::new(), Vec::new());
        let (mut cpu, mut cpu_direct, mut cpu_bench) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut short = Vec::new();
        for _ in 0..2 {
            let before = cpu_of(me);
            let (d, got) = f(&target, bytes)?;
            cpu_direct += cpu_of(me) - before;
            if got != bytes {
                short.push(format!("direct: {got} of {bytes} bytes"));
            }
            direct.push(d);
            let before = cpu_of(server.proc.pid) + cpu_of(bulk.proc.pid);
            let bench_before = cpu_of(me);
            let (d, got) = f(&through, bytes)?;
            cpu += cpu_of(server.proc.pid) + cpu_of(bulk.proc.pid) - before;
            cpu_bench += cpu_of(me) - bench_before;
            if got != bytes {
                short.push(format!("through: {got} of {bytes} bytes ({} lost)", bytes - got));
            }
            tun.push((d, got));
        }
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        // A truncated transfer counts at the rate of what it delivered (marked *).
        let d = mibs(bytes, best(&direct));
        let t = tun.iter().map(|(x, got)| mibs(*got, *x)).fold(0.0, f64::max);
        let list = |v: &[Duration]| v.iter().map(|x| format!("{:.0}", mibs(bytes, *x))).collect::<Vec<_>>().join(", ");
        let tlist = tun
            .iter()
            .map(|(x, got)| format!("{:.0}{}", mibs(*got, *x), if *got == bytes { "" } else { "*" }))
            .collect::<Vec<_>>()
            .join(", ");
        let gib_moved = (bytes * dirs * 2) as f64 / (1u64 << 30) as f64;
        table.add(
            format!("bulk {name}"),
            format!(
                "direct {d:.0} MiB/s [{}], through {t:.0} MiB/s [{}]{} -> ratio {:.2}x",
                list(&direct),
                tlist,
                if dirs == 2 { " each way" } else { "" },
                t / d,
            ),
        );
        table.add(
            format!("  CPU per GiB moved ({name})"),
            format!(
                "direct: bench (client + target) {:.2} s; through: bench {:.2} s + jitgate (server + connect) {:.2} s",
                cpu_direct.as_secs_f64() / gib_moved,
                cpu_bench.as_secs_f64() / gib_moved,
                cpu.as_secs_f64() / gib_moved
            ),
        );
        if !short.is_empty() {
            table.add(format!("  DATA LOST ({name}, * above)"), short.join("; "));
            truncated_runs.push(format!("{name}: {}", short.join("; ")));
        }
        bulk_ratios.push((name, t / d));
    }

    // 2. Round trips --------------------------------------------------------------
    println!("\n[64-byte round trips: {rtts} after 200 warm-up, one connection each]");
    let rd = round_trips(&target, 200, rtts)?;
    let rt = round_trips(&through, 200, rtts)?;
    let (d50, d99, t50, t99) = (pct(&rd, 50.0), pct(&rd, 99.0), pct(&rt, 50.0), pct(&rt, 99.0));
    table.add("rtt direct", format!("p50 {}, p99 {}, max {}", ms(d50), ms(d99), ms(*rd.last().unwrap_or(&d99))));
    table.add("rtt through", format!("p50 {}, p99 {}, max {}", ms(t50), ms(t99), ms(*rt.last().unwrap_or(&t99))));
    table.add(
        "rtt ratio (through / direct)",
        format!(
            "p50 {:.1}x, p99 {:.1}x (added: p50 +{}, p99 +{})",
            t50.as_secs_f64() / d50.as_secs_f64(),
            t99.as_secs_f64() / d99.as_secs_f64(),
            ms(t50.saturating_sub(d50)),
            ms(t99.saturating_sub(d99))
        ),
    );
    bulk.proc.stop(Duration::from_secs(10));

    // 3. pgbench ------------------------------------------------------------------
    println!("\n[pgbench -S -c4 -T {pg_secs}, scale 1]");
    let (status, out) = run_to_end(
        "pgbench -i",
        Command::new("pgbench").args(["-i", "-s", "1", "-q"]).arg(conninfo(pg.port())),
        Duration::from_secs(120),
    )?;
    if !status.success() {
        return Err(format!("pgbench -i failed: {out}").into());
    }
    let pgc = Connect::start(&server, &home, &alice, "pg")?;
    let pgt = Connect::start(&server, &home, &alice, "pgtcp")?;
    let direct = pgbench(pg.port(), pg_secs)?;
    let through_pg = pgbench(&pgc.port.to_string(), pg_secs)?;
    let through_tcp = pgbench(&pgt.port.to_string(), pg_secs)?;
    let pg_ratio = through_pg.tps / direct.tps;
    table.add("pgbench direct", format!("{:.0} tps (latency {})", direct.tps, direct.latency));
    table.add(
        "pgbench through (kind postgres, SQL recorded)",
        format!("{:.0} tps (latency {}) -> ratio {pg_ratio:.2}x", through_pg.tps, through_pg.latency),
    );
    table.add(
        "pgbench through (kind tcp, no tap)",
        format!(
            "{:.0} tps (latency {}) -> ratio {:.2}x",
            through_tcp.tps,
            through_tcp.latency,
            through_tcp.tps / direct.tps
        ),
    );
    let (mut pgc, mut pgt) = (pgc, pgt);
    pgc.proc.stop(Duration::from_secs(10));
    pgt.proc.stop(Duration::from_secs(10));

    // 3b. The yardstick: the same measures through plain relays of one and two hops.
    println!("\n[yardstick: plain relays without TLS, one hop and two hops]");
    let (pg_far, bulk_far) = (Baseline::start(&pg.addr)?, Baseline::start(&target)?);
    let (pg_near, bulk_near) = (Baseline::start(&pg_far.addr)?, Baseline::start(&bulk_far.addr)?);
    let best_upload = |addr: &str| -> Res<f64> {
        let mut best: f64 = 0.0;
        for _ in 0..2 {
            let (d, got) = upload(addr, bytes)?;
            best = best.max(mibs(got, d));
        }
        Ok(best)
    };
    let direct_up = best_upload(&target)?;
    let port_of = |addr: &str| addr.rsplit(':').next().unwrap_or("").to_string();
    for (hops, pg_addr, bulk_addr) in
        [("1 hop", &pg_far.addr, &bulk_far.addr), ("2 hops", &pg_near.addr, &bulk_near.addr)]
    {
        let up = best_upload(bulk_addr)?;
        let tps = pgbench(&port_of(pg_addr), pg_secs)?.tps;
        table.add(
            format!("yardstick: plain relay, {hops}"),
            format!(
                "bulk upload {up:.0} MiB/s of {direct_up:.0} direct -> {:.2}x; pgbench {tps:.0} tps -> {:.2}x",
                up / direct_up,
                tps / direct.tps
            ),
        );
    }
    drop((pg_near, bulk_near, pg_far, bulk_far));

    // 4. Cut-off ------------------------------------------------------------------
    println!("\n[cut-off: {n_streams} live streams through one connect, then revoke]");
    let mut cut = Connect::start(&server, &home, &alice, "cut")?;
    let grant = server.admin("GET", "/api/v1/requests?connection=cut&status=APPROVED", None)?["items"][0]["id"]
        .as_str()
        .ok_or("no approved request for cut")?
        .to_string();
    let opening = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let openers: Vec<_> = (0..16)
        .map(|_| {
            let (next, addr) = (Arc::clone(&next), cut.addr());
            thread::spawn(move || -> Res<Vec<(TcpStream, Duration)>> {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n_streams {
                    let t = Instant::now();
                    let mut s = dial(&addr)?;
                    s.write_all(b"E.")?;
                    let mut b = [0u8; 2]; // the idle echo echoes the mode byte too
                    s.read_exact(&mut b)?;
                    mine.push((s, t.elapsed()));
                }
                Ok(mine)
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(n_streams);
    let mut setup = Vec::with_capacity(n_streams);
    for h in openers {
        for (s, d) in h.join().map_err(|_| "an opener panicked")?? {
            streams.push(s);
            setup.push(d);
        }
    }
    let open_took = opening.elapsed();
    setup.sort_unstable();
    table.add(
        "stream setup (local connect -> first echo byte)",
        format!(
            "{} streams in {:.2} s, 16 at a time: p50 {}, p99 {}, max {}",
            streams.len(),
            open_took.as_secs_f64(),
            ms(pct(&setup, 50.0)),
            ms(pct(&setup, 99.0)),
            ms(*setup.last().unwrap_or(&Duration::ZERO))
        ),
    );
    let live = server.metric("jitgate_tunnel_streams_open").unwrap_or(-1.0);
    println!("  server: {live} streams open ({}); connect: {}", threads_of(server.proc.pid), threads_of(cut.proc.pid));
    thread::sleep(Duration::from_millis(500));

    // The watcher owns the sockets and stamps each EOF as it sees it.
    let n = streams.len();
    let (ready_tx, ready_rx) = mpsc::channel();
    let watcher = thread::spawn(move || -> Res<Vec<Option<(Instant, bool)>>> {
        // The observer must not be what is late: 1,000 relay threads per jitgate
        // process wake at the cut on two cores, so this thread asks for a higher
        // priority (root only; otherwise it stays as it is and says so).
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().map(|t| t.to_string_lossy().to_string()))
            .unwrap_or_default();
        let raised = !tid.is_empty()
            && Command::new("renice")
                .args(["-n", "-10", "-p", &tid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        println!("  EOF watcher thread {tid}: priority {}", if raised { "raised (nice -10)" } else { "NOT raised" });
        let poller = Poller::new()?;
        for (i, s) in streams.iter().enumerate() {
            s.set_nonblocking(true)?;
            // SAFETY: the sockets outlive their registration (deleted below, or the
            // poller is dropped before `streams`).
            unsafe { poller.add(s, Event::readable(i))? };
        }
        let _ = ready_tx.send(());
        let mut closed: Vec<Option<(Instant, bool)>> = vec![None; streams.len()];
        let mut left = streams.len();
        let mut events = Events::with_capacity(NonZeroUsize::new(1024).ok_or("zero")?);
        let end = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 512];
        while left > 0 && Instant::now() < end {
            events.clear();
            poller.wait(&mut events, Some(end.saturating_duration_since(Instant::now())))?;
            let now = Instant::now();
            for ev in events.iter() {
                let i = ev.key;
                let mut s = &streams[i];
                let done = match s.read(&mut buf) {
                    Ok(0) => Some(true),
                    Ok(_) => None,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                    Err(_) => Some(false), // reset
                };
                match done {
                    Some(clean) => {
                        closed[i] = Some((now, clean));
                        left -= 1;
                        let _ = poller.delete(s);
                    }
                    None => poller.modify(s, Event::readable(i))?,
                }
            }
        }
        for s in &streams {
            let _ = poller.delete(s);
        }
        Ok(closed)
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "the EOF watcher did not start")?;
    let sent = Instant::now();
    let revoked =
        server.admin("POST", &format!("/api/v1/requests/{grant}/revoke"), Some(json!({"reason": "bench"})))?;
    let returned = Instant::now();
    let returned_wall = wall_ms();
    if revoked["status"] != "REVOKED" {
        return Err(format!("revoke: {revoked}").into());
    }
    let closed = watcher.join().map_err(|_| "the watcher panicked")??;
    let exit = cut.proc.wait(Duration::from_secs(15));
    let missing = closed.iter().filter(|c| c.is_none()).count();
    let resets = closed.iter().filter(|c| matches!(c, Some((_, false)))).count();
    let before_return = closed.iter().flatten().filter(|(at, _)| *at < returned).count();
    let mut lag: Vec<Duration> =
        closed.iter().flatten().map(|(at, _)| at.saturating_duration_since(returned)).collect();
    lag.sort_unstable();
    let mut lag_sent: Vec<Duration> =
        closed.iter().flatten().map(|(at, _)| at.saturating_duration_since(sent)).collect();
    lag_sent.sort_unstable();
    let (c50, c99, cmax) = (pct(&lag, 50.0), pct(&lag, 99.0), lag.last().copied().unwrap_or_default());
    table.add("revoke call (sent -> returned)", ms(returned - sent));
    table.add(
        "cut-off lag: revoke returned -> local EOF",
        format!(
            "{} of {n} closed: p50 {}, p99 {}, max {} ({} seen before the call returned, counted as 0; {resets} by reset, {missing} never within 15 s)",
            lag.len(),
            ms(c50),
            ms(c99),
            ms(cmax),
            before_return
        ),
    );
    table.add(
        "cut-off lag: revoke sent -> local EOF",
        format!(
            "p50 {}, p99 {}, max {}",
            ms(pct(&lag_sent, 50.0)),
            ms(pct(&lag_sent, 99.0)),
            ms(lag_sent.last().copied().unwrap_or_default())
        ),
    );
    let mut stamps: Vec<Instant> = closed.iter().flatten().map(|(at, _)| *at).collect();
    stamps.sort_unstable();
    stamps.dedup();
    let before_exit = exit.map_or(0, |(x, _)| closed.iter().flatten().filter(|(at, _)| *at < x).count());
    table.add(
        "  how the EOFs were seen",
        format!("in {} wake-ups of the watcher; {before_exit} before the connect process had exited", stamps.len()),
    );
    match exit {
        Some((at, status)) => table.add(
            "connect exited (revoke returned -> exit)",
            format!("{} with {status} ({:?})", ms(at.saturating_duration_since(returned)), cut.rest().last()),
        ),
        None => table.add("connect exited", "NOT within 15 s"),
    }

    // Stop the server (graceful), then read when its relays ended from the database.
    let stopping = Instant::now();
    let status = server.proc.stop(Duration::from_secs(30));
    println!("  server stopped in {} ({status:?})", ms(stopping.elapsed()));
    let db = rusqlite::Connection::open_with_flags(
        server.data.join("jitgate.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare(
        "SELECT st.ended_at, st.end_reason FROM streams st JOIN sessions s ON s.seq = st.session_seq
         JOIN requests r ON r.seq = s.request_seq WHERE r.id = ?1",
    )?;
    let rows: Vec<(Option<i64>, Option<String>)> =
        stmt.query_map([&grant], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut server_lag: Vec<i64> = rows.iter().filter_map(|(e, _)| e.map(|e| e - returned_wall)).collect();
    server_lag.sort_unstable();
    let revoked_reason = rows.iter().filter(|(_, r)| r.as_deref().is_some_and(|r| r.contains("revoked"))).count();
    let p = |q: f64| {
        if server_lag.is_empty() {
            return 0;
        }
        let rank = ((q / 100.0) * server_lag.len() as f64).ceil() as usize;
        server_lag[rank.clamp(1, server_lag.len()) - 1]
    };
    table.add(
        "server relays ended (streams.ended_at - revoke returned, wall ms)",
        format!(
            "{} streams, {revoked_reason} with reason \"grant revoked…\": min {} ms, p50 {} ms, p99 {} ms, max {} ms",
            rows.len(),
            server_lag.first().copied().unwrap_or(0),
            p(50.0),
            p(99.0),
            server_lag.last().copied().unwrap_or(0)
        ),
    );
    let queries: i64 = db.query_row(
        "SELECT count(*) FROM stream_queries q JOIN streams st ON st.seq = q.stream_seq JOIN sessions s ON s.seq = st.session_seq
         JOIN requests r ON r.seq = s.request_seq JOIN connections c ON c.id = r.connection_id WHERE c.name = 'pg'",
        [],
        |r| r.get(0),
    ).unwrap_or(-1);
    println!("  statements recorded for the pg connection: {queries}");
    drop(stmt);
    drop(db);
    drop(pg);
    println!("load average after: {}; whole run {:.1} s", loadavg(), started.elapsed().as_secs_f64());

    // Verdicts ----------------------------------------------------------------------
    println!("\n================ jitgate gateway bench: results ================");
    let w = table.0.iter().map(|(f, _)| f.len()).max().unwrap_or(10);
    for (f, v) in &table.0 {
        println!("  {f:<w$}  {v}");
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("\n  targets (issue 5):");
    println!("    pgbench >= 0.7x direct: {} ({pg_ratio:.2}x)", verdict(pg_ratio >= 0.7));
    for (name, r) in &bulk_ratios {
        println!("    bulk {name} >= 0.5x direct: {} ({r:.2}x)", verdict(*r >= 0.5));
    }
    if truncated_runs.is_empty() {
        println!("    every bulk transfer delivered every byte");
    } else {
        println!(
            "    DATA LOST in {} bulk transfer(s), ended as a clean EOF: {}",
            truncated_runs.len(),
            truncated_runs.join(" | ")
        );
    }
    println!(
        "    cut-off p99 < 100 ms with {n} streams: {} (p99 {}, max {}, {missing} not closed)",
        verdict(c99 < Duration::from_millis(100) && missing == 0 && n >= n_streams),
        ms(c99),
        ms(cmax)
    );
    Ok(())
}
