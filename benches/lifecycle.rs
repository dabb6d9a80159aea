//! `cargo bench --bench lifecycle`: starts the release server and measures it, printing
//! figures and ratios taken in one run (nothing here is asserted against a time):
//!
//! 1. the raw rate of SQLite `synchronous=FULL` commits on the disk of the data dirs
//!    (WAL, one single-row `BEGIN IMMEDIATE … COMMIT` at a time), sampled right before,
//!    between and after the lifecycle phases, so the API's figures read as a fraction
//!    of the storage limit measured beside them;
//! 2. a fresh server driven over TLS keep-alive (one connection per client thread):
//!    full lifecycles (create → approve → read, then `end` so the pair can be reused),
//!    and reads of one request, each at 1 client and at many; p50/p99/max latencies;
//! 3. the server's CPU per operation, and the outbox worker's commits (each request
//!    event is handed out in a write transaction of its own) and whether it keeps up;
//! 4. resident memory: just started, idle after warm-up, idle after the load, peak;
//! 5. time from process start to the first served request, with 100,000 requests
//!    (and their 300,000 audit events) already in the database;
//! 6. the expiry lag of 1,000 grants that all expire in the same millisecond, as the
//!    server records it (audit `at` − `due`, and the `/metrics` histogram) and as
//!    clients parked in long polls observe it, beside the time of the timer's one
//!    `expire_due` transaction for that many grants (through the library).
//!
//! Knobs (environment): `JITGATE_BENCH_THREADS` (default 32), `JITGATE_BENCH_SECS`
//! (length of each many-client phase, default 10), `JITGATE_BENCH_REQUESTS` (100000),
//! `JITGATE_BENCH_GRANTS` (1000), `JITGATE_BENCH_OBSERVERS` (100, one per grant owner),
//! `JITGATE_BENCH_DIR` (where the scratch data dirs go; default the system temp dir).
//! Results and their meaning: BENCHMARKS.md.

use jitgate::domain::policy::Connection;
use jitgate::store::users::{NewUser, User};
use jitgate::store::{connections, outbox, requests, tokens, users, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
mod common;
use common::*;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const ADMIN_TOKEN: &str = "jg_bench_admin_token_0123456789abcdefghijklmnop";

/// The token of user `exp{u}`, who owns the grants k with k % 100 == u.
fn exp_token(u: usize) -> String {
    format!("jg_bench_exp{u:03}_token_0123456789abcdefghijklmnop")
}

// ---------------------------------------------------------------------------------
// Figures

/// Latency samples in microseconds.
#[derive(Default, Clone)]
struct Lat(Vec<u64>);

impl Lat {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }
    fn merge(&mut self, other: Lat) {
        self.0.extend(other.0);
    }
    fn sorted(&self) -> Vec<u64> {
        let mut v = self.0.clone();
        v.sort_unstable();
        v
    }
    /// Nearest-rank percentile, in milliseconds.
    fn pct(&self, p: f64) -> f64 {
        pct_of(&self.sorted(), p) as f64 / 1_000.0
    }
    fn summary(&self) -> String {
        let s = self.sorted();
        if s.is_empty() {
            return "no samples".into();
        }
        format!(
            "min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s[0] as f64 / 1e3,
            pct_of(&s, 50.0) as f64 / 1e3,
            pct_of(&s, 99.0) as f64 / 1e3,
            s[s.len() - 1] as f64 / 1e3
        )
    }
}

fn pct_of(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The final table: (section, figure, value).
#[derive(Default)]
struct Table(Vec<(String, String, String)>);

impl Table {
    fn add(&mut self, section: &str, figure: &str, value: String) {
        println!("  {figure}: {value}");
        self.0.push((section.into(), figure.into(), value));
    }
    fn print(&self) {
        let w = self.0.iter().map(|(_, f, _)| f.len()).max().unwrap_or(10);
        println!("\n================ jitgate lifecycle bench: results ================");
        let mut last = "";
        for (section, figure, value) in &self.0 {
            if section != last {
                println!("\n[{section}]");
                last = section;
            }
            println!("  {figure:<w$}  {value}");
        }
        println!();
    }
}

// ---------------------------------------------------------------------------------
// The server process

struct Server {
    pid: u32,
    base: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Process spawn → "listening on" in its log.
    to_listening: Duration,
    spawned_at: Instant,
    exited: Receiver<std::io::Result<ExitStatus>>,
    stopped: bool,
}

/// utime + stime of a `/proc/…/stat` file (clock ticks of 10 ms, as on Linux).
fn cpu_of(path: &str) -> Duration {
    let stat = fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The 1-minute load average: how busy the (shared) machine was.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_string()
}

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts `jitgate serve` and returns once its log says it is listening. Its
    /// stderr goes through a pipe (copied to `DIR.log`), so readiness is a line read,
    /// not a sleep.
    fn start(dir: &Path, extra: &[&str]) -> Res<Server> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let log_path = dir.with_extension("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jitgate"));
        cmd.arg("serve").arg("--allow-root").arg("--data-dir").arg(dir).args(["--listen", &listen]).args(extra);
        cmd.env("JITGATE_ADMIN_TOKEN", ADMIN_TOKEN).env_remove("JITGATE_DATA_DIR");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let spawned_at = Instant::now();
        let mut child: Child = cmd.spawn()?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut log = fs::File::create(&log_path)?;
        thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("listening on") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let (exit_tx, exited) = mpsc::channel();
        thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });
        let mut server = Server {
            pid,
            base: format!("https://{listen}"),
            tls: None,
            to_listening: Duration::ZERO,
            spawned_at,
            exited,
            stopped: false,
        };
        if ready_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("server did not start listening; its log:\n{log}").into());
        }
        server.to_listening = spawned_at.elapsed();
        server.tls = Some(pinned(dir)?);
        Ok(server)
    }

    fn agent(&self) -> ureq::Agent {
        let mut b = ureq::AgentBuilder::new();
        if let Some(tls) = &self.tls {
            b = b.tls_config(tls.clone());
        }
        b.timeout_connect(Duration::from_secs(10)).timeout(Duration::from_secs(90)).build()
    }

    fn client(&self, token: &str) -> Client {
        Client { agent: self.agent(), base: self.base.clone(), token: token.to_string() }
    }

    /// (VmRSS, VmHWM, Threads) from /proc, in KiB.
    fn memory(&self) -> (u64, u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"), field("Threads:"))
    }

    /// CPU time (user + system) the server has used so far.
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.pid))
    }

    /// Live threads by name, e.g. `conn 33, http-worker 8, …`.
    fn thread_names(&self) -> String {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        if let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for t in tasks.flatten() {
                let name = fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
                *by.entry(name).or_default() += 1;
            }
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
    }

    /// SIGTERM, then waits for the exit (bounded); returns how long the stop took.
    fn stop(&mut self) -> Res<Duration> {
        let t = Instant::now();
        Command::new("kill").args(["-TERM", &self.pid.to_string()]).status()?;
        self.stopped = true;
        match self.exited.recv_timeout(Duration::from_secs(30)) {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    return Err(format!("server exited with {status}").into());
                }
                Ok(t.elapsed())
            }
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
                Err("server did not stop within 30 s of SIGTERM (killed)".into())
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// A client config that trusts exactly the certificate in `DIR/tls-cert.pem`.
fn pinned(dir: &Path) -> Res<Arc<rustls::ClientConfig>> {
    let pem = fs::read(dir.join(jitgate::tls::CERT_FILE))?;
    let cert = rustls_pemfile::certs(&mut pem.as_slice()).next().ok_or("no certificate")??;
    let fp = jitgate::tls::fingerprint(cert.as_ref());
    Ok(jitgate::tls::pinned_client_config(jitgate::tls::normalize_fingerprint(&fp)?)?)
}

// ---------------------------------------------------------------------------------
// HTTP client

struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    /// One call; any HTTP status comes back as (status, JSON body or Null). Transport
    /// errors are errors.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Res<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let req =
            self.agent.request(method, &url).set("Authorization", &format!("Bearer {}", token.unwrap_or(&self.token)));
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("{method} {path}: {e}").into()),
        };
        let status = resp.status();
        let text = resp.into_string()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    fn expect(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Res<Value> {
        let (status, v) = self.call(method, path, None, body)?;
        if status != want {
            return Err(format!("{method} {path}: {status} (wanted {want}): {v}").into());
        }
        Ok(v)
    }

    fn text(&self, path: &str) -> Res<String> {
        let resp = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call()?;
        Ok(resp.into_string()?)
    }
}

/// Prometheus text: the value of the first sample whose name and labels start with `key`.
fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------
// 1. The storage limit

struct Raw {
    commits_per_s: f64,
    lat: Lat,
}

/// Single-row commits into a scratch database beside the data dirs, each its own
/// `BEGIN IMMEDIATE … COMMIT`, WAL and synchronous=FULL (as jitgate's writer does).
fn raw_commits(dir: &Path, name: &str, secs: f64, max: usize) -> Res<Raw> {
    let path = dir.join(name);
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL);",
    )?;
    let body = "x".repeat(300);
    let mut lat = Lat::default();
    let start = Instant::now();
    let mut n = 0;
    while n < max && start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute("INSERT INTO t (at, body) VALUES (?1, ?2)", rusqlite::params![wall_ms(), body])?;
        conn.execute_batch("COMMIT")?;
        lat.push(t.elapsed());
        n += 1;
    }
    let commits_per_s = n as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Raw { commits_per_s, lat })
}

// ---------------------------------------------------------------------------------
// 2. Load

/// One client thread's identity: a requester, an approver (member of `approvers`),
/// a connection of its own, and one keep-alive connection (its agent).
struct Worker {
    client: Client,
    requester: String,
    approver: String,
    connection: String,
    last_id: Option<String>,
}

#[derive(Default)]
struct Tally {
    done: u64,
    errors: u64,
    first_error: Option<String>,
    total: Lat,
    steps: BTreeMap<&'static str, Lat>,
}

impl Tally {
    fn step(&mut self, name: &'static str, d: Duration) {
        self.steps.entry(name).or_default().push(d);
    }
    fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
    fn merge(&mut self, o: Tally) {
        self.done += o.done;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.total.merge(o.total);
        for (k, v) in o.steps {
            self.steps.entry(k).or_default().merge(v);
        }
    }
}

fn setup_workers(server: &Server, admin: &Client, n: usize) -> Res<Vec<Worker>> {
    admin.expect("POST", "/api/v1/groups", Some(json!({"name": "approvers"})), 201)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (req, app, conn) = (format!("req{i}"), format!("app{i}"), format!("db{i}"));
        let mut toks = Vec::new();
        for user in [&req, &app] {
            admin.expect("POST", "/api/v1/users", Some(json!({"username": user})), 201)?;
            let t =
                admin.expect("POST", &format!("/api/v1/users/{user}/tokens"), Some(json!({"name": "bench"})), 201)?;
            toks.push(t["token"].as_str().ok_or("no token in reply")?.to_string());
        }
        admin.expect("PUT", &format!("/api/v1/groups/approvers/members/{app}"), None, 200)?;
        admin.expect(
            "POST",
            "/api/v1/connections",
            Some(json!({"name": conn, "approval_groups": ["approvers"]})),
            201,
        )?;
        out.push(Worker {
            client: server.client(&toks[0]),
            requester: toks[0].clone(),
            approver: toks[1].clone(),
            connection: conn,
            last_id: None,
        });
    }
    Ok(out)
}

fn status_of(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("?")
}

/// create → approve → read (the lifecycle, timed as one), then end.
fn lifecycle(w: &mut Worker, t: &mut Tally) -> Res<()> {
    let c = &w.client;
    let t0 = Instant::now();
    let (s, v) = c.call("POST", "/api/v1/requests", Some(&w.requester), Some(json!({"connection": w.connection})))?;
    if s != 201 {
        return Err(format!("create: {s} {v}").into());
    }
    let id = v["id"].as_str().ok_or("create: no id")?.to_string();
    w.last_id = Some(id.clone());
    let t1 = Instant::now();
    let (s, v) = c.call("POST", &format!("/api/v1/requests/{id}/approve"), Some(&w.approver), Some(json!({})))?;
    if s != 200 || status_of(&v) != "APPROVED" {
        return Err(format!("approve: {s} {v}").into());
    }
    let t2 = Instant::now();
    let (s, v) = c.call("GET", &format!("/api/v1/requests/{id}"), Some(&w.requester), None)?;
    if s != 200 || status_of(&v) != "APPROVED" {
        return Err(format!("read: {s} {v}").into());
    }
    let t3 = Instant::now();
    let (s, v) = c.call("POST", &format!("/api/v1/requests/{id}/end"), Some(&w.requester), Some(json!({})))?;
    if s != 200 || status_of(&v) != "EXECUTED" {
        return Err(format!("end: {s} {v}").into());
    }
    let t4 = Instant::now();
    t.step("create", t1 - t0);
    t.step("approve", t2 - t1);
    t.step("read", t3 - t2);
    t.step("end", t4 - t3);
    t.total.push(t3 - t0);
    t.done += 1;
    Ok(())
}

fn read_one(w: &mut Worker, t: &mut Tally) -> Res<()> {
    let id = w.last_id.as_deref().ok_or("no request to read")?;
    let t0 = Instant::now();
    let (s, v) = w.client.call("GET", &format!("/api/v1/requests/{id}"), None, None)?;
    if s != 200 || v["id"].as_str() != Some(id) {
        return Err(format!("read: {s} {v}").into());
    }
    t.total.push(t0.elapsed());
    t.done += 1;
    Ok(())
}

/// Runs `op` on every worker in its own thread for `secs` (after one warm-up call
/// each, and a barrier so all start together). Returns the tally and the wall time
/// from the common start to the last thread's end.
fn drive(workers: &mut [Worker], secs: f64, op: fn(&mut Worker, &mut Tally) -> Res<()>) -> (Tally, Duration) {
    let barrier = Arc::new(Barrier::new(workers.len() + 1));
    let window = Duration::from_secs_f64(secs);
    let mut total = Tally::default();
    let mut elapsed = Duration::ZERO;
    thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|w| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    let mut warm = Tally::default();
                    if let Err(e) = op(w, &mut warm) {
                        warm.fail(e);
                    }
                    barrier.wait();
                    let mut t = Tally { errors: warm.errors, first_error: warm.first_error, ..Tally::default() };
                    let deadline = Instant::now() + window;
                    while Instant::now() < deadline {
                        if let Err(e) = op(w, &mut t) {
                            t.fail(e);
                            if t.errors > 100 {
                                break;
                            }
                        }
                    }
                    (t, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut last = start;
        for h in handles {
            match h.join() {
                Ok((t, end)) => {
                    total.merge(t);
                    last = last.max(end);
                }
                Err(_) => total.fail("a client thread panicked"),
            }
        }
        elapsed = last - start;
    });
    (total, elapsed)
}

/// Drives one phase and reports it: rate, latencies, the CPU the server and this
/// process (the clients) used per operation, and the server's RSS after it.
fn phase(
    table: &mut Table,
    server: &Server,
    label: &str,
    unit: &str,
    workers: &mut [Worker],
    secs: f64,
    op: fn(&mut Worker, &mut Tally) -> Res<()>,
) -> (f64, Tally) {
    println!("\n-- {label}");
    let (srv0, cli0) = (server.cpu(), cpu_of("/proc/self/stat"));
    let (t, elapsed) = drive(workers, secs, op);
    let (srv, cli) = (server.cpu() - srv0, cpu_of("/proc/self/stat") - cli0);
    let rate = report_phase(table, "load", label, unit, &t, elapsed);
    let per = |d: Duration| d.as_secs_f64() * 1e3 / t.done.max(1) as f64;
    let cores = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64();
    table.add(
        "load",
        &format!("{label}: CPU per op"),
        format!(
            "server {:.2} ms ({:.2} cores busy), clients {:.2} ms ({:.2} cores)",
            per(srv),
            cores(srv),
            per(cli),
            cores(cli)
        ),
    );
    let (rss, _, threads) = server.memory();
    table.add("load", &format!("{label}: server RSS after"), format!("{}  ({threads} threads)", mib(rss)));
    (rate, t)
}

fn report_phase(table: &mut Table, section: &str, label: &str, unit: &str, t: &Tally, elapsed: Duration) -> f64 {
    let rate = t.done as f64 / elapsed.as_secs_f64();
    table.add(
        section,
        &format!("{label}: {unit}/s"),
        format!("{rate:.0}  ({} in {:.1} s)", t.done, elapsed.as_secs_f64()),
    );
    table.add(section, &format!("{label}: latency"), t.total.summary());
    for (step, lat) in &t.steps {
        table.add(section, &format!("{label}: {step}"), lat.summary());
    }
    if t.errors > 0 {
        table.add(
            section,
            &format!("{label}: ERRORS"),
            format!("{} (first: {})", t.errors, t.first_error.as_deref().unwrap_or("")),
        );
    }
    rate
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------
// 4 and 5. A pre-populated data dir

/// One write transaction: an admin with the bench token, 200 users and 50 connections
/// without approval groups, `n` requests spread over them one minute apart in the past
/// (auto-approved, 30 min each), all then closed by `expire_due` (EXECUTED): a
/// realistic history of 3 audit events per request. Also 100 users and 10
/// connections kept for the expiry phase.
fn populate_history(dir: &Path, n: usize) -> Res<Duration> {
    let t = Instant::now();
    jitgate::datadir::prepare(dir)?;
    let store = Store::open(&jitgate::datadir::database(dir)?)?;
    let now = jitgate::time::now_ms();
    store.write(|tx| {
        let admin = NewUser { username: "admin".into(), display_name: None, password_hash: None, admin: true };
        users::create(tx, jitgate::audit::SYSTEM, &admin, now)?;
        tokens::create_with_secret(tx, "admin", "bench", ADMIN_TOKEN, now)?;
        let mk = |name: String| NewUser { username: name, display_name: None, password_hash: None, admin: false };
        let people: Vec<User> =
            (0..200).map(|u| users::create(tx, "admin", &mk(format!("hist{u}")), now)).collect::<Result<_, _>>()?;
        for c in 0..50 {
            connections::create(tx, "admin", &Connection::with_defaults(&format!("hist-c{c}")), now)?;
        }
        for u in 0..100 {
            users::create(tx, "admin", &mk(format!("exp{u}")), now)?;
            tokens::create_with_secret(tx, &format!("exp{u}"), "bench", &exp_token(u), now)?;
        }
        for c in 0..10 {
            connections::create(tx, "admin", &Connection::with_defaults(&format!("exp-c{c}")), now)?;
        }
        let mut closed = 0;
        for i in 0..n {
            // The newest ends an hour before `now`: every one is over by then.
            let at = now - ((n - i) as i64 + 60) * 60_000;
            let (_, reused) =
                requests::create(tx, &people[i % 200], &format!("hist-c{}", i % 50), Some("30m"), None, at)?;
            if reused {
                return Err(jitgate::Error::Internal("history: a request was reused".into()));
            }
            // As the expiry timer would have: close what ran out by then.
            if i % 1_000 == 999 {
                closed += requests::expire_due(tx, at)?.len();
            }
        }
        closed += requests::expire_due(tx, now)?.len();
        if closed != n {
            return Err(jitgate::Error::Internal(format!("history: closed {closed} of {n}")));
        }
        mark_dispatched(tx, now)?;
        Ok(())
    })?;
    store.close()?;
    Ok(t.elapsed())
}

/// Hands out every queued notification event as the outbox worker does when no hook
/// or channel is configured, so a populated database has no backlog: in a server that
/// lived through that history they were handed out as they came.
fn mark_dispatched(tx: &rusqlite::Transaction<'_>, now: i64) -> jitgate::Result<usize> {
    let mut n = 0;
    loop {
        let events = outbox::undispatched(tx, 10_000)?;
        if events.is_empty() {
            return Ok(n);
        }
        for e in &events {
            outbox::dispatch(tx, e.seq, &[], now)?;
        }
        n += events.len();
    }
}

/// (handed out, waiting) notification events, read beside the running server.
fn outbox_counts(db: &Path) -> Option<(i64, i64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    c.query_row("SELECT coalesce(sum(dispatched = 1), 0), coalesce(sum(dispatched = 0), 0) FROM outbox", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .ok()
}

/// Waits (at most 10 s) until the outbox worker has handed out every event.
struct Settled {
    handed_out: i64,
    /// Still queued when the wait gave up (0: drained).
    stuck: i64,
    took: Duration,
}

fn outbox_settled(db: &Path) -> Option<Settled> {
    let t = Instant::now();
    loop {
        let (handed_out, waiting) = outbox_counts(db)?;
        if waiting == 0 || t.elapsed() > Duration::from_secs(10) {
            return Some(Settled { handed_out, stuck: waiting, took: t.elapsed() });
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn drained(s: &Settled) -> String {
    if s.stuck == 0 {
        format!("drained {:.0} ms later", s.took.as_secs_f64() * 1e3)
    } else {
        format!("{} STILL QUEUED {:.0} s later, the server idle", s.stuck, s.took.as_secs_f64())
    }
}

/// One write transaction: `n` APPROVED grants with the same `now`, so all expire at
/// `now + secs` to the millisecond. Returns (their ids, the due time in ms).
fn populate_grants(dir: &Path, n: usize, secs: u64) -> Res<(Vec<String>, i64)> {
    let store = Store::open(&jitgate::datadir::database(dir)?)?;
    let now = jitgate::time::now_ms();
    let dur = format!("{secs}s");
    let ids = store.write(|tx| {
        let people: Vec<User> = (0..100).map(|u| users::get(tx, &format!("exp{u}"))).collect::<Result<_, _>>()?;
        let mut ids = Vec::with_capacity(n);
        for k in 0..n {
            // (user, connection) pairs are distinct for k < 1,000.
            let (view, reused) =
                requests::create(tx, &people[k % 100], &format!("exp-c{}", (k / 100) % 10), Some(&dur), None, now)?;
            if reused || view.request.expires_at != Some(now + secs as i64 * 1_000) {
                return Err(jitgate::Error::Internal(format!("grant {k}: reused or not APPROVED")));
            }
            ids.push(view.request.id);
        }
        mark_dispatched(tx, now)?;
        Ok(ids)
    })?;
    store.close()?;
    Ok((ids, now + secs as i64 * 1_000))
}

// ---------------------------------------------------------------------------------

fn main() -> Res<()> {
    let threads = env_usize("JITGATE_BENCH_THREADS", 32).max(1);
    let secs = env_usize("JITGATE_BENCH_SECS", 10).max(1) as f64;
    let n_history = env_usize("JITGATE_BENCH_REQUESTS", 100_000);
    let n_grants = env_usize("JITGATE_BENCH_GRANTS", 1_000).clamp(1, 1_000);
    // One observer per owner: the server parks at most 8 long polls per user.
    let n_observers = env_usize("JITGATE_BENCH_OBSERVERS", 100).clamp(1, n_grants.min(100));
    let root = match std::env::var_os("JITGATE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let began = Instant::now();
    let load_start = loadavg();
    let mut table = Table::default();
    println!(
        "jitgate lifecycle bench: {threads} client threads, {secs} s per many-client phase, scratch dir {}",
        root.path().display()
    );
    println!("machine: {} CPUs online", thread::available_parallelism().map(|n| n.get()).unwrap_or(0));

    // 1. The storage limit is sampled right before, between and after the two
    // lifecycle phases (the server idle meanwhile): on a shared disk it moves, so each
    // phase is compared with the samples taken beside it.
    let raw_sample = |table: &mut Table, label: &str| -> Res<Raw> {
        println!("\n-- raw SQLite commits (WAL, synchronous=FULL), {label}");
        let raw = raw_commits(root.path(), "raw.db", 2.5, 20_000)?;
        table.add(
            "storage",
            &format!("raw FULL commits/s, {label}"),
            format!("{:.0}  (commit {}; load average {})", raw.commits_per_s, raw.lat.summary(), loadavg()),
        );
        Ok(raw)
    };

    // 2. Load on a fresh server.
    println!("\n-- fresh server (first start: self-signed cert, admin), {threads} client threads");
    let dir = root.path().join("load");
    let mut server = Server::start(&dir, &["--max-connections-per-ip", "1024"])?;
    let admin = server.client(ADMIN_TOKEN);
    let t_first = Instant::now();
    admin.expect("GET", "/api/v1/me", None, 200)?;
    let first_start = server.to_listening + t_first.elapsed();
    table.add(
        "start",
        "empty data dir: start → first request",
        format!(
            "{:.0} ms  (→ listening {:.0} ms; incl. cert generation)",
            first_start.as_secs_f64() * 1e3,
            server.to_listening.as_secs_f64() * 1e3
        ),
    );
    let (rss_fresh, _, _) = server.memory();
    let mut workers = setup_workers(&server, &admin, threads)?;

    // Warm-up: one lifecycle and one read per worker, then measure idle memory.
    let (warm, _) = drive(&mut workers, 0.0, lifecycle);
    let (warm_reads, _) = drive(&mut workers, 0.0, read_one);
    if warm.errors + warm_reads.errors > 0 {
        return Err(format!("warm-up failed: {:?} {:?}", warm.first_error, warm_reads.first_error).into());
    }
    let (rss_idle, _, threads_idle) = server.memory();
    let names_idle = server.thread_names();

    let short = secs.min(4.0);
    let many = format!("{threads} clients");
    // The outbox worker hands out every request event in a write transaction of its
    // own: count those commits per lifecycle too (settled after each phase).
    let db = dir.join(jitgate::datadir::DB_FILE);
    // `before` and the result are (events so far, events handed out so far); the
    // per-lifecycle figures are (events queued, events handed out during the phase).
    type Marks = Option<(i64, i64)>;
    let outbox_per_loop = |table: &mut Table, label: &str, before: Marks, loops: u64| -> (Marks, f64, f64) {
        let at_end = outbox_counts(&db);
        let Some(after) = outbox_settled(&db) else { return (None, 0.0, 0.0) };
        let marks = Some((after.handed_out + after.stuck, after.handed_out));
        let (Some((total0, handed0)), Some((handed_end, backlog))) = (before, at_end) else {
            return (marks, 0.0, 0.0);
        };
        let events = after.handed_out + after.stuck - total0;
        let during = handed_end - handed0;
        let per = |n: i64| n as f64 / loops.max(1) as f64;
        table.add(
            "load",
            &format!("{label}: outbox events per lifecycle"),
            format!(
                "{:.2}  ({events} events, each handed out in a write transaction of its own; {during} handed out \
                 during the phase, {backlog} queued when it ended, {})",
                per(events),
                drained(&after)
            ),
        );
        (marks, per(events), per(during))
    };
    let ob0 = outbox_settled(&db).map(|s| (s.handed_out + s.stuck, s.handed_out));
    let raw0 = raw_sample(&mut table, "before lifecycles, 1 client")?;
    let (lc1, t1) =
        phase(&mut table, &server, "lifecycles, 1 client", "lifecycles", &mut workers[..1], short, lifecycle);
    let (ob1, per1, during1) = outbox_per_loop(&mut table, "lifecycles, 1 client", ob0, t1.done);
    let raw1 = raw_sample(&mut table, "between the lifecycle phases")?;
    let (lcn, tn) =
        phase(&mut table, &server, &format!("lifecycles, {many}"), "lifecycles", &mut workers, secs, lifecycle);
    let (_, pern, duringn) = outbox_per_loop(&mut table, &format!("lifecycles, {many}"), ob1, tn.done);
    let raw2 = raw_sample(&mut table, &format!("after lifecycles, {many}"))?;
    let lc1_p50 = t1.total.pct(50.0);
    phase(&mut table, &server, "reads, 1 client", "reads", &mut workers[..1], short, read_one);
    phase(&mut table, &server, &format!("reads, {many}"), "reads", &mut workers, secs, read_one);

    let (rss_after, hwm, threads_after) = server.memory();
    let names_after = server.thread_names();
    // tiny_http's task pool grows a thread whenever none is idle and lets each extra
    // one go after 5 s idle: wait (bounded) until the thread count is back to the
    // warm-up figure, then take the settled RSS.
    let settle = Instant::now();
    while server.memory().2 > threads_idle && settle.elapsed() < Duration::from_secs(15) {
        thread::sleep(Duration::from_millis(200));
    }
    let (rss_settled, _, threads_settled) = server.memory();
    let settled_after = settle.elapsed();
    let m = admin.text("/metrics")?;
    let conns = metric(&m, "jitgate_connections_total").unwrap_or(0.0);
    let reqs = metric(&m, "jitgate_listener_requests_total").unwrap_or(0.0);
    table.add("load", "keep-alive check", format!("{reqs:.0} requests over {conns:.0} TLS connections"));
    drop(workers);
    drop(admin);
    let stop_load = server.stop()?;

    // Each lifecycle loop commits 3 times: create, approve, end (the read does not write).
    let beside = |a: &Raw, b: &Raw| (a.commits_per_s + b.commits_per_s) / 2.0;
    for (label, rate, raw, per, during) in [
        ("1 client", lc1, beside(&raw0, &raw1), per1, during1),
        (many.as_str(), lcn, beside(&raw1, &raw2), pern, duringn),
    ] {
        table.add(
            "ratios",
            &format!("lifecycles/s ÷ raw commits/s, {label}"),
            format!("{:.3}  ({rate:.0} ÷ {raw:.0})", rate / raw),
        );
        table.add(
            "ratios",
            &format!("API write commits/s ÷ raw, {label}"),
            format!("{:.3}  (3 commits per loop: create, approve, end)", 3.0 * rate / raw),
        );
        table.add(
            "ratios",
            &format!("all server write commits/s ÷ raw, {label}"),
            format!(
                "{:.3}  ({:.2} per loop made during the phase: the API's 3 + the outbox's; {:.2} once it catches up)",
                (3.0 + during) * rate / raw,
                3.0 + during,
                3.0 + per
            ),
        );
    }
    let raw_p50 = (raw0.lat.pct(50.0) + raw1.lat.pct(50.0)) / 2.0;
    table.add(
        "ratios",
        "lifecycle p50 ÷ 2 raw commit p50, 1 client",
        format!("{:.1}×  ({lc1_p50:.2} ms ÷ (2 × {raw_p50:.2} ms))", lc1_p50 / (2.0 * raw_p50)),
    );

    table.add("memory", "RSS just started", mib(rss_fresh));
    table.add(
        "memory",
        "RSS idle after warm-up",
        format!("{}  ({threads} idle keep-alive connections; {threads_idle} threads: {names_idle})", mib(rss_idle)),
    );
    table.add(
        "memory",
        "RSS idle after the load",
        format!("{}  ({threads_after} threads: {names_after})", mib(rss_after)),
    );
    table.add(
        "memory",
        "RSS idle after the load, settled",
        format!(
            "{}  ({threads_settled} threads, {:.1} s after the load)",
            mib(rss_settled),
            settled_after.as_secs_f64()
        ),
    );
    table.add("memory", "peak RSS (VmHWM)", mib(hwm));
    table.add(
        "start",
        "graceful stop (SIGTERM → exit), after load",
        format!("{:.0} ms", stop_load.as_secs_f64() * 1e3),
    );

    // 4. Start with a big database.
    println!("\n-- populating {n_history} requests (one transaction)");
    let hist = root.path().join("history");
    let pop = populate_history(&hist, n_history)?;
    let db_mib = fs::metadata(hist.join(jitgate::datadir::DB_FILE)).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    table.add(
        "start",
        "population (bench side, one transaction)",
        format!("{n_history} requests in {:.1} s, db {db_mib:.0} MiB", pop.as_secs_f64()),
    );
    // The cert is made on this first start: do one start/stop so the measured start
    // is the steady one (cert on disk), as in production restarts.
    let mut s = Server::start(&hist, &[])?;
    s.stop()?;
    let mut server = Server::start(&hist, &["--max-connections-per-ip", "1024"])?;
    let admin = server.client(ADMIN_TOKEN);
    let (status, v) = admin.call("GET", "/api/v1/requests?limit=1", None, None)?;
    let to_first = server.spawned_at.elapsed();
    if status != 200 || v["items"].as_array().map(Vec::len) != Some(1) {
        return Err(format!("first request on the big database: {status} {v}").into());
    }
    table.add(
        "start",
        &format!("{n_history} requests: start → first request"),
        format!(
            "{:.0} ms  (→ listening {:.0} ms; first = TLS handshake + GET /api/v1/requests?limit=1)",
            to_first.as_secs_f64() * 1e3,
            server.to_listening.as_secs_f64() * 1e3
        ),
    );
    let (rss_big, _, _) = server.memory();
    table.add("memory", &format!("RSS just started, {n_history}-request db"), mib(rss_big));
    drop(admin);
    server.stop()?;

    // 5. Many grants expiring in the same millisecond.
    let lead = 6;
    println!("\n-- {n_grants} grants expiring together, {lead} s from now; {n_observers} long-poll observers");
    let (ids, due) = populate_grants(&hist, n_grants, lead)?;
    let mut server = Server::start(&hist, &["--max-connections-per-ip", "1024"])?;
    let barrier = Arc::new(Barrier::new(n_observers + 1));
    let observers: Vec<_> = (0..n_observers)
        .map(|u| {
            // A grant of user exp{u}, spread over the connections.
            let k = u + 100 * (u % 10);
            let id = ids[if k < n_grants { k } else { u }].clone();
            let (client, barrier) = (server.client(&exp_token(u)), barrier.clone());
            thread::spawn(move || -> Res<(i64, i64)> {
                // Open the keep-alive connection first, so the wait itself is one round trip.
                let warm = client.call("GET", "/healthz", None, None);
                barrier.wait();
                warm?;
                let sent = wall_ms();
                let (s, v) = client.call(
                    "GET",
                    &format!("/api/v1/requests/{id}/wait?status=APPROVED&timeout=30s"),
                    None,
                    None,
                )?;
                let got = wall_ms();
                if s != 200 || status_of(&v) != "EXECUTED" {
                    return Err(format!("wait: {s} {v}").into());
                }
                Ok((sent, got))
            })
        })
        .collect();
    barrier.wait();
    let mut seen = Lat::default();
    let mut last_sent = i64::MIN;
    let mut early = 0;
    for h in observers {
        let (sent, got) = h.join().map_err(|_| "observer panicked")??;
        last_sent = last_sent.max(sent);
        if got < due {
            early += 1;
        }
        seen.push(Duration::from_millis((got - due).max(0) as u64));
    }
    if early > 0 {
        println!("  WARNING: {early} observers saw EXECUTED before the due time");
    }
    if last_sent >= due {
        println!("  WARNING: an observer sent its wait {} ms after the due time", last_sent - due);
    }
    // The 1,000 `request.executed` events then go through the outbox, one commit each.
    let hist_db = hist.join(jitgate::datadir::DB_FILE);
    let after_expiry = outbox_settled(&hist_db).map(|s| (wall_ms() - due, s));
    let admin = server.client(ADMIN_TOKEN);
    let m = admin.text("/metrics")?;
    let count = metric(&m, "jitgate_expiry_lag_seconds_count").unwrap_or(0.0);
    let buckets: Vec<String> = m
        .lines()
        .filter(|l| l.starts_with("jitgate_expiry_lag_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split('"').nth(1)?;
            Some(format!("≤{le}s:{}", l.rsplit(' ').next()?))
        })
        .collect();
    // The exact recorded lag, per grant, from the audit trail (the API shows `at` to
    // the second only, so read the database itself, read-only, beside the server).
    let db = rusqlite::Connection::open_with_flags(
        jitgate::datadir::database(&hist)?,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare(
        "SELECT at - json_extract(detail, '$.due') FROM audit_events WHERE action = 'request.executed' AND json_extract(detail, '$.due') = ?1",
    )?;
    let mut recorded = Lat::default();
    for lag in stmt.query_map([due], |r| r.get::<_, i64>(0))? {
        recorded.push(Duration::from_millis(lag?.max(0) as u64));
    }
    drop(stmt);
    drop(db);
    table.add("expiry", &format!("recorded lag, {} grants (audit at − due)", recorded.0.len()), recorded.summary());
    table.add("expiry", &format!("observed lag, {} long polls (answer − due)", seen.0.len()), seen.summary());
    table.add("expiry", "/metrics histogram", format!("count {count:.0}; {}", buckets.join(" ")));
    table.add("expiry", "observers parked before due by", format!("{} ms", due - last_sent));
    if let Some((ms, s)) = after_expiry {
        table.add(
            "expiry",
            "outbox after the expiry (1 event per grant)",
            format!("checked until due + {ms} ms: {}", drained(&s)),
        );
    }
    drop(admin);
    server.stop()?;
    drop(server);

    // The expiry transaction alone, through the library on a small database of its
    // own: what the timer's one transaction costs before anyone can be told.
    let lib = root.path().join("expiry-lib");
    populate_history(&lib, 0)?;
    let (_, due_lib) = populate_grants(&lib, n_grants, 1)?;
    let store = Store::open(&jitgate::datadir::database(&lib)?)?;
    let t = Instant::now();
    let closed = store.write(|tx| requests::expire_due(tx, due_lib))?.len();
    let took = t.elapsed();
    store.close()?;
    table.add(
        "expiry",
        &format!("library: expire_due of {closed} grants, one transaction"),
        format!("{:.1} ms (with its commit)", took.as_secs_f64() * 1e3),
    );

    table.add("run", "whole bench", format!("{:.0} s", began.elapsed().as_secs_f64()));
    table.add("run", "load average (1 min) at start → end", format!("{load_start} → {}", loadavg()));
    table.print();
    Ok(())
}
