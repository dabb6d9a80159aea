//! `cargo bench --bench connect`: how long a person at `jitgate connect` waits after
//! an approver approves. A release server is started (temp data dir,
//! `--listen 127.0.0.1:0`, its port and certificate pin read from its log and data
//! dir); then, N times (default 100): `jitgate connect bench --duration 1h` is spawned
//! as the requester, its "waiting for access request to be approved" line is read,
//! another user approves through the API, and the figure is the time from the moment
//! the approve call returns to the moment the "Connection ready" line is read from
//! the CLI's stdout (each line is timestamped by the thread that reads it). The grant
//! is then ended (`POST /requests/{id}/end` as the requester) so the next connect
//! makes a new request. Nothing is asserted against a time: figures are printed.
//!
//! For scale it also prints the cost of process start-up alone (`jitgate --version`)
//! and of a one-call command (`jitgate whoami`: start-up, TLS handshake, one request).
//!
//! Knobs (environment): `JITGATE_BENCH_APPROVALS` (default 100),
//! `JITGATE_BENCH_DIR` (where the scratch data dir goes; default the system temp dir).
//! Results and their meaning: BENCHMARKS.md.

use serde_json::{json, Value};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
mod common;
use common::*;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");
const STEP: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn summary(samples: &[Duration]) -> String {
    let mut s = samples.to_vec();
    s.sort_unstable();
    if s.is_empty() {
        return "no samples".into();
    }
    format!(
        "n {}, min {}, median {}, p99 {}, max {}",
        s.len(),
        ms(s[0]),
        ms(pct(&s, 50.0)),
        ms(pct(&s, 99.0)),
        ms(s[s.len() - 1])
    )
}

// ---------------------------------------------------------------------------------

struct Server {
    child: Child,
    base: String,
    fingerprint: String,
    admin_token: String,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `jitgate serve` like the test harness does and returns once its log
    /// says where it listens. The log keeps being drained to `DIR/server.log`.
    fn start(dir: &Path) -> Res<Server> {
        let data = dir.join("data");
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(if running_as_root() { &["--allow-root"][..] } else { &[] })
            .env_remove("JITGATE_ADMIN_TOKEN")
            .env_remove("JITGATE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let ready = await_ready(stderr, &dir.join("server.log"), &data, Duration::from_secs(120))?;
        Ok(Server {
            child,
            base: ready.base,
            fingerprint: ready.fingerprint,
            admin_token: ready.admin_token,
            agent: ready.agent,
        })
    }

    fn call(&self, token: &str, method: &str, path: &str, body: Value) -> Res<Value> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {token}"));
        let resp = match req.send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!("{method} {path}: {code} {}", r.into_string().unwrap_or_default()).into())
            }
            Err(e) => return Err(format!("{method} {path}: {e}").into()),
        };
        Ok(resp.into_json()?)
    }

    fn admin(&self, method: &str, path: &str, body: Value) -> Res<Value> {
        self.call(&self.admin_token, method, path, body)
    }

    /// A user with a token, in `groups`.
    fn user(&self, name: &str, groups: &[&str]) -> Res<String> {
        self.admin("POST", "/api/v1/users", json!({"username": name}))?;
        for g in groups {
            self.admin("PUT", &format!("/api/v1/groups/{g}/members/{name}"), json!({}))?;
        }
        let t = self.admin("POST", &format!("/api/v1/users/{name}/tokens"), json!({"name": "bench"}))?;
        Ok(t["token"].as_str().ok_or("no token")?.to_string())
    }

    fn stop(mut self) -> Res<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let end = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > end {
                let _ = self.child.kill();
                return Err("the server did not stop on SIGTERM".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// A CLI process whose stdout lines arrive with the instant they were read.
struct Cli {
    child: Child,
    lines: Receiver<(Instant, String)>,
}

impl Cli {
    fn spawn(cmd: &mut Command) -> Res<Cli> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Cli { child, lines })
    }

    /// The first line containing `what`, with the instant it was read.
    fn line(&self, what: &str) -> Res<(Instant, String)> {
        let end = Instant::now() + STEP;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.contains(what) => return Ok((at, line)),
                Ok(_) => continue,
                Err(_) => return Err(format!("no line with {what:?} within {STEP:?}").into()),
            }
        }
    }

    fn wait(mut self) -> Res<i32> {
        let end = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return Err("the CLI did not exit".into());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `jitgate ARGS` with a private home and only the given JITGATE_* variables.
fn jitgate(home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("JITGATE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .env_remove("NO_COLOR")
        .envs(vars.iter().copied())
        .args(args);
    cmd
}

/// Runs a command to its end `n` times; returns the wall time of each run.
fn time_runs(n: usize, mut make: impl FnMut() -> Command) -> Res<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let status = make().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        out.push(t.elapsed());
        if !status.success() {
            return Err(format!("baseline command failed: {status}").into());
        }
    }
    Ok(out)
}

fn request_id(line: &str) -> Res<String> {
    let start = line.find("req_").ok_or_else(|| format!("no request id in {line:?}"))?;
    Ok(line[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; this harness has no options of its own.
    let approvals = env_usize("JITGATE_BENCH_APPROVALS", 100);
    let scratch = match std::env::var_os("JITGATE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home)?;
    println!("jitgate connect bench: {approvals} approvals; binary {BIN}");
    println!("load average before: {}", loadavg());

    let t = Instant::now();
    let server = Server::start(scratch.path())?;
    println!("server listening on {} after {}", server.base, ms(t.elapsed()));
    server.admin("POST", "/api/v1/groups", json!({"name": "approvers"}))?;
    server.admin(
        "POST",
        "/api/v1/connections",
        json!({"name": "bench", "kind": "generic", "approval_groups": ["approvers"]}),
    )?;
    let alice = server.user("alice", &[])?;
    let bob = server.user("bob", &["approvers"])?;
    let vars = [
        ("JITGATE_SERVER", server.base.as_str()),
        ("JITGATE_TOKEN", alice.as_str()),
        ("JITGATE_FINGERPRINT", server.fingerprint.as_str()),
    ];

    // Baselines: what process start-up and one API call cost on their own.
    let version = time_runs(30, || jitgate(&home, &[], &["--version"]))?;
    let whoami = time_runs(30, || jitgate(&home, &vars, &["whoami"]))?;

    let mut to_ready = Vec::with_capacity(approvals);
    let mut approve_call = Vec::with_capacity(approvals);
    let mut sent_to_ready = Vec::with_capacity(approvals);
    let mut to_waiting = Vec::with_capacity(approvals);
    let mut ready_first = 0;
    for i in 0..approvals {
        let spawned = Instant::now();
        let cli = Cli::spawn(&mut jitgate(&home, &vars, &["connect", "bench", "--duration", "1h"]))?;
        let (waiting_at, waiting) = cli.line("waiting for access request to be approved at ")?;
        to_waiting.push(waiting_at - spawned);
        let id = request_id(&waiting)?;
        let before = Instant::now();
        let approved = server.call(&bob, "POST", &format!("/api/v1/requests/{id}/approve"), json!({}))?;
        let returned = Instant::now();
        if approved["status"] != "APPROVED" {
            return Err(format!("approval {i}: {approved}").into());
        }
        let (ready_at, _) = cli.line("Connection ready. Session ID: sess_")?;
        if ready_at < returned {
            ready_first += 1;
        }
        to_ready.push(ready_at.saturating_duration_since(returned));
        approve_call.push(returned - before);
        sent_to_ready.push(ready_at.saturating_duration_since(before));
        let code = cli.wait()?;
        if code != 0 {
            return Err(format!("connect {i} exited {code}").into());
        }
        server.call(&alice, "POST", &format!("/api/v1/requests/{id}/end"), json!({}))?;
    }
    println!("load average after: {}", loadavg());
    server.stop()?;

    let mut sorted = to_ready.clone();
    sorted.sort_unstable();
    println!("\n================ jitgate connect bench: results ================");
    let rows = [
        ("approve returned -> \"Connection ready\" read", summary(&to_ready)),
        ("approve sent -> \"Connection ready\" read", summary(&sent_to_ready)),
        ("the approve call itself (bob, keep-alive)", summary(&approve_call)),
        ("spawn connect -> waiting line read", summary(&to_waiting)),
        ("baseline: jitgate --version, spawn to exit", summary(&version)),
        ("baseline: jitgate whoami, spawn to exit", summary(&whoami)),
    ];
    for (figure, value) in rows {
        println!("  {figure:<44}  {value}");
    }
    println!("  (ready line read before the approve call returned: {ready_first} of {approvals}, counted as 0)");
    println!(
        "\n  target p99 < 100 ms: {} (median {}, p99 {}, max {})",
        if pct(&sorted, 99.0) < Duration::from_millis(100) { "met" } else { "NOT met" },
        ms(pct(&sorted, 50.0)),
        ms(pct(&sorted, 99.0)),
        ms(sorted.last().copied().unwrap_or_default())
    );
    Ok(())
}
