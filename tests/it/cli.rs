//! The command line, driven as a person or a script drives it: the real `jitgate`
//! binary as a child process against a real server (over pinned TLS), with its
//! stdout and stderr read as they are written, `kill -INT` for Ctrl-C, and a
//! pseudo-terminal (util-linux `script`) where the terminal matters.
//!
//! Every CLI process runs hermetically: its own `HOME` and `XDG_CONFIG_HOME` in a
//! temp dir, and no `JITGATE_*` or `NO_COLOR` inherited from the test's environment.

use crate::harness::{wait_until, Client, Server, BIN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any one CLI step may take before the test fails (never a sleep).
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// Helpers

/// One stream of a child (stdout or stderr), collected as it arrives.
#[derive(Default)]
struct Stream {
    state: Mutex<(Vec<u8>, bool)>,
    changed: Condvar,
}

impl Stream {
    fn pump(mut from: impl Read + Send + 'static) -> Arc<Stream> {
        let s = Arc::new(Stream::default());
        let to = s.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = from.read(&mut buf).unwrap_or(0);
                let mut st = to.state.lock().unwrap();
                if n == 0 {
                    st.1 = true;
                } else {
                    st.0.extend_from_slice(&buf[..n]);
                }
                to.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        s
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.state.lock().unwrap().0).into_owned()
    }

    /// The first complete line (ended by `\n` or `\r`, as a terminal spinner redraws)
    /// that contains `what`, as soon as it is written; `None` if the stream closes or
    /// `limit` passes first.
    fn wait_for(&self, what: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        let mut st = self.state.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&st.0).into_owned();
            let complete = match text.rfind(['\n', '\r']) {
                Some(i) => &text[..i],
                None if st.1 => text.as_str(),
                None => "",
            };
            if let Some(line) = complete.split(['\n', '\r']).find(|l| l.contains(what)) {
                return Some(line.to_string());
            }
            let now = Instant::now();
            if st.1 || now >= end {
                return None;
            }
            st = self.changed.wait_timeout(st, end - now).unwrap().0;
        }
    }

    fn wait_closed(&self, limit: Duration) {
        let end = Instant::now() + limit;
        let mut st = self.state.lock().unwrap();
        while !st.1 && Instant::now() < end {
            st = self.changed.wait_timeout(st, end.saturating_duration_since(Instant::now())).unwrap().0;
        }
    }
}

/// A running CLI process.
struct Live {
    child: Child,
    out: Arc<Stream>,
    err: Arc<Stream>,
    what: String,
}

impl Live {
    fn start(mut cmd: Command, input: Option<&str>, what: String) -> Live {
        let mut child = cmd
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        if let Some(text) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(text.as_bytes()).unwrap();
        }
        let out = Stream::pump(child.stdout.take().unwrap());
        let err = Stream::pump(child.stderr.take().unwrap());
        Live { child, out, err, what }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn transcript(&self) -> String {
        format!("`{}`\n--- stdout ---\n{}\n--- stderr ---\n{}", self.what, self.out.text(), self.err.text())
    }

    /// Waits for a stdout line containing `what`; returns the line.
    #[track_caller]
    fn line(&self, what: &str) -> String {
        self.out.wait_for(what, LIMIT).unwrap_or_else(|| panic!("no stdout line with {what:?}:\n{}", self.transcript()))
    }

    /// Waits for a stderr line containing `what`; returns the line.
    #[track_caller]
    fn err_line(&self, what: &str) -> String {
        self.err.wait_for(what, LIMIT).unwrap_or_else(|| panic!("no stderr line with {what:?}:\n{}", self.transcript()))
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Ctrl-C, as the terminal sends it.
    fn interrupt(&self) {
        let ok = Command::new("kill").arg("-INT").arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success(), "kill -INT failed");
    }

    /// Waits for the exit (bounded), then for both streams to close.
    #[track_caller]
    fn finish(mut self) -> Done {
        let end = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                panic!("still running after {LIMIT:?}:\n{}", self.transcript());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.out.wait_closed(Duration::from_secs(5));
        self.err.wait_closed(Duration::from_secs(5));
        let code = status.code().unwrap_or_else(|| panic!("killed by a signal ({status}):\n{}", self.transcript()));
        Done { code, out: self.out.text(), err: self.err.text(), what: self.what.clone() }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A finished CLI process.
#[derive(Debug)]
struct Done {
    code: i32,
    out: String,
    err: String,
    what: String,
}

impl Done {
    #[track_caller]
    fn code(self, expected: i32) -> Done {
        assert_eq!(
            self.code, expected,
            "exit code of `{}`\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.out, self.err
        );
        self
    }

    #[track_caller]
    fn ok(self) -> Done {
        self.code(0)
    }

    /// Stdout as one JSON document.
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{}", self.what, self.out))
    }
}

/// One person's shell: a private home and config dir, and only the variables given.
struct Term {
    home: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Term {
    fn new() -> Term {
        Term { home: tempfile::tempdir().unwrap(), vars: Vec::new() }
    }

    /// A shell that reaches `s` as the owner of `token`, through the environment only.
    fn signed_in(s: &Server, token: &str) -> Term {
        Term::new()
            .env("JITGATE_SERVER", &s.url(""))
            .env("JITGATE_TOKEN", token)
            .env("JITGATE_FINGERPRINT", &fingerprint(s))
    }

    fn env(mut self, k: &str, v: &str) -> Term {
        self.vars.push((k.into(), v.into()));
        self
    }

    /// Where `jitgate login` saves the profile for this shell (XDG_CONFIG_HOME).
    fn profile(&self) -> PathBuf {
        self.home.path().join("xdg").join("jitgate").join("config.toml")
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("JITGATE_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env_remove("NO_COLOR")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args);
        cmd
    }

    fn spawn(&self, args: &[&str]) -> Live {
        Live::start(self.command(BIN, args), None, format!("jitgate {}", args.join(" ")))
    }

    fn run(&self, args: &[&str]) -> Done {
        self.spawn(args).finish()
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Done {
        Live::start(self.command(BIN, args), Some(input), format!("jitgate {}", args.join(" "))).finish()
    }

    /// The command in a pseudo-terminal (util-linux `script`), or `None` when this
    /// machine has no `script`.
    fn spawn_in_pty(&self, args: &[&str]) -> Option<Live> {
        let found = Command::new("script").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            eprintln!("skipping the terminal part: util-linux `script` is not installed");
            return None;
        }
        let quoted: Vec<String> = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let line = quoted.join(" ");
        let mut cmd = self.command("script", &["-q", "-e", "-c", &line, "/dev/null"]);
        cmd.env("TERM", "xterm-256color");
        Some(Live::start(cmd, None, format!("(pty) jitgate {}", args.join(" "))))
    }
}

/// The pin the server printed at start, exactly as a person would copy it.
fn fingerprint(s: &Server) -> String {
    let log = s.log();
    let line = log
        .lines()
        .find_map(|l| l.split("TLS certificate SHA-256 fingerprint: ").nth(1))
        .unwrap_or_else(|| panic!("no fingerprint in the log:\n{log}"));
    line.trim().to_string()
}

/// Creates `name` in `groups`; returns an API client and a separate CLI token.
fn person(s: &Server, name: &str, groups: &[&str]) -> (Client, String) {
    let client = s.user(name, groups);
    let t = s.admin().post(&format!("/api/v1/users/{name}/tokens"), json!({"name": "cli"})).expect(201);
    (client, t.body["token"].as_str().unwrap().to_string())
}

/// The `req_…` id in a line.
#[track_caller]
fn request_id(line: &str) -> String {
    let start = line.find("req_").unwrap_or_else(|| panic!("no request id in {line:?}"));
    line[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

#[track_caller]
fn assert_plain(text: &str) {
    assert!(!text.contains('\x1b'), "ANSI escape in output that is not a terminal:\n{text:?}");
}

fn ids(list: &Value) -> Vec<String> {
    let items = if list.is_array() { list } else { &list["items"] };
    items.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap_or_default().to_string()).collect()
}

// ---------------------------------------------------------------------------------
// connect: the whole flow

#[test]
fn connect_waits_for_another_users_approval_then_prints_the_ready_lines_and_exits_0() {
    let s = Server::start();
    s.connection("wiki", &["dba"], json!({"kind": "generic"}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let me = Term::signed_in(&s, &alice_token);

    let live = me.spawn(&["connect", "wiki", "--duration", "2h", "--reason", "INC-7"]);
    let waiting = live.line("waiting for access request to be approved at ");
    let id = request_id(&waiting);
    assert!(waiting.contains(&s.url(&format!("/#/requests/{id}"))), "{waiting}");
    assert_eq!(alice.show(&id)["status"], "PENDING");
    assert_eq!(alice.show(&id)["reason"], "INC-7");

    assert_eq!(bob.approve(&id).expect(200).body["status"], "APPROVED");
    let ready = live.line("Connection ready. Session ID: sess_");
    live.line("Access expires in 2 hours.");
    let done = live.finish().ok();
    assert_plain(&done.out);
    assert_plain(&done.err);
    // Exactly the documented lines, in order.
    let lines: Vec<&str> = done.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", done.out);
    assert!(lines[0].starts_with("waiting for access request to be approved at "), "{}", done.out);
    assert_eq!(lines[1], ready);
    assert_eq!(lines[2], "Access expires in 2 hours.");
    // The session named on screen is the one the server recorded, on this grant.
    let session = ready.rsplit(' ').next().unwrap();
    let shown = alice.get(&format!("/api/v1/sessions/{session}")).expect(200).body;
    assert_eq!(shown["request_id"], id.as_str());
    assert_eq!(shown["user"], "alice");
}

#[test]
fn connect_in_a_terminal_shows_a_spinner_then_the_ready_lines() {
    let s = Server::start();
    s.connection("wiki", &["dba"], json!({"kind": "generic"}));
    let (_, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let Some(live) = Term::signed_in(&s, &alice_token).spawn_in_pty(&["connect", "wiki"]) else { return };
    let waiting = live.line("waiting for access request to be approved at ");
    // indicatif redraws the line with one of the braille frames before the message.
    assert!(waiting.chars().any(|c| "⣾⣽⣻⢿⡿⣟⣯⣷".contains(c)), "no spinner frame in {waiting:?}");
    bob.approve(&request_id(&waiting)).expect(200);
    live.line("Connection ready. Session ID: sess_");
    live.line("Access expires in 1 hour.");
    live.finish().ok();
}

#[test]
fn connect_exits_3_with_the_reviewers_reason_when_rejected() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let live = Term::signed_in(&s, &alice_token).spawn(&["connect", "db"]);
    let id = request_id(&live.line("waiting for access request to be approved"));
    bob.reject(&id, "use the read replica").expect(200);
    live.err_line(&format!("Request {id} was rejected by bob: use the read replica"));
    let done = live.finish().code(3);
    assert!(!done.out.contains("Connection ready"), "{}", done.out);
    assert_eq!(alice.show(&id)["status"], "REJECTED");
}

#[test]
fn ctrl_c_while_waiting_cancels_the_request_and_exits_4() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let live = Term::signed_in(&s, &alice_token).spawn(&["connect", "db"]);
    let id = request_id(&live.line("waiting for access request to be approved"));
    live.interrupt();
    live.err_line(&format!("Request {id} was cancelled"));
    live.finish().code(4);
    let r = alice.show(&id);
    assert_eq!(r["status"], "CANCELLED");
    assert_eq!(r["ended_by"], "alice");
    // Nothing is left pending: the next connect asks anew.
    assert_eq!(s.admin().get("/api/v1/requests?status=PENDING").expect(200).body["items"], json!([]));
}

#[test]
fn connect_reuses_a_live_grant_without_a_new_approval() {
    let s = Server::start();
    s.connection("wiki", &["dba"], json!({"kind": "generic"}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let me = Term::signed_in(&s, &alice_token);
    let first = me.spawn(&["connect", "wiki", "--json"]);
    // With --json the waiting line goes to stderr, so stdout stays one JSON document.
    let id = request_id(&first.err_line("waiting for access request to be approved"));
    bob.approve(&id).expect(200);
    let first = first.finish().ok();
    let first_json = first.json();
    assert_eq!(first_json["request"]["id"], id.as_str());

    let again = me.run(&["connect", "wiki", "--json"]).ok();
    assert!(!again.err.contains("waiting"), "a live grant must not wait again:\n{}", again.err);
    let v = again.json();
    assert_eq!(v["request"]["id"], id.as_str(), "same grant");
    assert_eq!(v["request"]["reused"], true);
    assert_eq!(v["request"]["status"], "APPROVED");
    assert_ne!(v["session"]["id"], first_json["session"]["id"], "a new session on the same grant");
    // Also in text: straight to the ready lines.
    let text = me.run(&["connect", "wiki"]).ok();
    assert!(text.out.starts_with("Connection ready. Session ID: sess_"), "{}", text.out);
    assert_eq!(alice.get("/api/v1/requests?user=alice").expect(200).body["items"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------
// connect: proxied kinds stay in the foreground
//
// `--port 0` everywhere: a postgres connect listens on 5433 by default, and these tests
// run in parallel.

#[test]
fn a_proxied_connect_stays_in_the_foreground_and_exits_5_when_the_grant_is_revoked() {
    let s = Server::start();
    s.connection("pg", &["dba"], json!({"kind": "postgres", "target": "127.0.0.1:5432"}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let mut live = Term::signed_in(&s, &alice_token).spawn(&["connect", "pg", "--duration", "1h", "--port", "0"]);
    let id = request_id(&live.line("waiting for access request to be approved"));
    bob.approve(&id).expect(200);
    let ready = live.line("Connection ready. Session ID: sess_");
    live.line("Access expires in 1 hour.");
    // Still here, holding the grant, until it ends.
    let session = ready.rsplit(' ').next().unwrap().to_string();
    wait_until("connect to park on the grant", LIMIT, || {
        alice.get(&format!("/api/v1/sessions/{session}")).expect(200).body["ended_at"].is_null()
    });
    assert!(live.running(), "a proxied connect must stay in the foreground:\n{}", live.transcript());
    bob.post(&format!("/api/v1/requests/{id}/revoke"), json!({"reason": "incident closed"})).expect(200);
    let revoked_at = Instant::now();
    live.err_line("Access revoked by bob: incident closed");
    let done = live.finish().code(5);
    assert!(revoked_at.elapsed() < Duration::from_secs(5), "exit took {:?}", revoked_at.elapsed());
    assert!(done.err.contains("revoked"), "{}", done.err);
    assert!(
        !alice.get(&format!("/api/v1/sessions/{session}")).expect(200).body["ended_at"].is_null(),
        "the session ended with the grant"
    );
}

#[test]
fn a_proxied_connect_exits_0_with_access_expired_when_a_short_grant_runs_out() {
    let s = Server::start();
    s.connection("pg", &["dba"], json!({"kind": "postgres", "target": "127.0.0.1:5432"}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let live = Term::signed_in(&s, &alice_token).spawn(&["connect", "pg", "--duration", "2s", "--port", "0"]);
    let id = request_id(&live.line("waiting for access request to be approved"));
    let approved = bob.approve(&id).expect(200).body;
    let approved_at = Instant::now();
    live.line("Connection ready. Session ID: sess_");
    live.line("Access expires in ");
    live.line("Access expired.");
    let held = approved_at.elapsed();
    let done = live.finish().ok();
    assert!(held >= Duration::from_millis(1_500), "ended after {held:?}, before the 2s grant ran out");
    assert!(held < Duration::from_secs(6), "ended {held:?} after approval: expiry is enforced within a second or so");
    assert_plain(&done.out);
    let r = alice.show(&id);
    assert_eq!(r["status"], "EXECUTED");
    assert_eq!(r["ended_by"], "system");
    assert_eq!(r["expires_at"], approved["expires_at"]);
}

#[test]
fn ctrl_c_after_approval_ends_the_session_but_the_grant_stays_approved_for_the_next_connect() {
    let s = Server::start();
    s.connection("pg", &["dba"], json!({"kind": "postgres", "target": "127.0.0.1:5432"}));
    let (alice, alice_token) = person(&s, "alice", &[]);
    let (bob, _) = person(&s, "bob", &["dba"]);
    let me = Term::signed_in(&s, &alice_token);
    let live = me.spawn(&["connect", "pg", "--port", "0"]);
    let id = request_id(&live.line("waiting for access request to be approved"));
    bob.approve(&id).expect(200);
    let ready = live.line("Connection ready. Session ID: sess_");
    live.line("Access expires in 1 hour.");
    live.interrupt();
    live.line(&format!("`jitgate requests end {id}` gives it back"));
    live.finish().ok();

    let session = ready.rsplit(' ').next().unwrap();
    let sessions = alice.get("/api/v1/sessions").expect(200).body;
    let ours = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == session)
        .unwrap_or_else(|| panic!("{sessions}"));
    assert!(!ours["ended_at"].is_null(), "{ours}");
    assert_eq!(ours["end_reason"], "client disconnected");
    assert_eq!(alice.show(&id)["status"], "APPROVED", "Ctrl-C gives up the session, not the grant");

    // Connecting again rides the same grant: no waiting line, a new session.
    let again = me.spawn(&["connect", "pg", "--port", "0"]);
    let ready2 = again.line("Connection ready. Session ID: sess_");
    assert_ne!(ready2, ready);
    assert!(!again.out.text().contains("waiting"), "{}", again.transcript());
    // Giving the grant back ends this foreground connect too.
    me.run(&["requests", "end", &id]).ok();
    again.line("Access ended by alice.");
    again.finish().ok();
}

// ---------------------------------------------------------------------------------
// trust and credentials

#[test]
fn login_with_password_stdin_saves_a_private_profile_that_later_commands_use_alone() {
    let s = Server::start();
    s.connection("wiki", &[], json!({"kind": "generic"}));
    let me = Term::new();
    let fp = fingerprint(&s);
    let url = s.url("");
    let done = me
        .run_with_stdin(
            &["login", &url, "--username", "admin", "--password-stdin", "--fingerprint", &fp],
            &format!("{}\n", s.admin_password),
        )
        .ok();
    assert!(done.err.contains("Logged in to") && done.err.contains("as admin"), "{}", done.err);
    let profile = me.profile();
    assert_eq!(std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(profile.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let saved: toml::Value = toml::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    assert_eq!(saved["server"].as_str(), Some(url.as_str()));
    assert_eq!(saved["fingerprint"].as_str(), Some(fp.as_str()));
    let token = saved["token"].as_str().unwrap().to_string();
    assert!(!done.out.contains(&token) && !done.err.contains(&token), "the token is not printed");
    assert!(!std::fs::read_to_string(&profile).unwrap().contains(&s.admin_password), "the password is not saved");

    // Later commands need nothing but the profile.
    let who = me.run(&["whoami"]).ok();
    assert_eq!(who.out.trim(), format!("admin on {url} (admin)"));
    me.run(&["connect", "wiki"]).ok();
    // The minted token is a named token of admin's, visible in the token list.
    let tokens = me.run(&["tokens", "list", "--json"]).ok().json();
    assert!(tokens.as_array().unwrap().iter().any(|t| t["name"].as_str().unwrap().starts_with("cli-")), "{tokens}");

    // JITGATE_CONFIG puts the profile elsewhere; --token logs in too, and the pin may
    // be given in capitals without colons.
    let elsewhere = me.home.path().join("other.toml");
    let other = Term::new().env("JITGATE_CONFIG", elsewhere.to_str().unwrap());
    other.run(&["login", &url, "--token", &s.admin_token, "--fingerprint", &fp.replace(':', "").to_uppercase()]).ok();
    assert_eq!(std::fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!other.profile().exists());
    other.run(&["whoami"]).ok();

    // With no profile at all, a command says what to do (exit 2: configuration).
    let lost = Term::new().run(&["whoami"]).code(2);
    assert!(lost.err.contains("jitgate login"), "{}", lost.err);
}

#[test]
fn a_wrong_fingerprint_is_refused_and_nothing_is_saved() {
    let s = Server::start();
    let url = s.url("");
    let wrong = "ab".repeat(32);
    let me = Term::new();
    let done = me.run(&["login", &url, "--token", &s.admin_token, "--fingerprint", &wrong]).code(1);
    assert!(done.err.contains("FINGERPRINT MISMATCH"), "{}", done.err);
    assert!(done.err.contains(&fingerprint(&s)), "names what the server presented: {}", done.err);
    assert!(!me.profile().exists(), "nothing saved after a mismatch");

    // A command pinned to the wrong certificate refuses to talk (the token never leaves).
    let pinned_wrong = Term::signed_in(&s, &s.admin_token).env("JITGATE_FINGERPRINT", &wrong);
    let done = pinned_wrong.run(&["whoami"]).code(1);
    assert!(done.err.contains("does not match the pinned"), "{}", done.err);
    assert!(!done.out.contains("admin"), "{}", done.out);

    // A malformed pin is a usage error.
    let bad = Term::signed_in(&s, &s.admin_token).env("JITGATE_FINGERPRINT", "zz");
    assert!(bad.run(&["whoami"]).code(2).err.contains("64 hex digits"));
}

#[test]
fn an_unpinned_self_signed_server_is_refused_never_trusted_silently() {
    let s = Server::start();
    let url = s.url("");
    let me = Term::new().env("JITGATE_SERVER", &url).env("JITGATE_TOKEN", &s.admin_token);
    let done = me.run(&["whoami"]).code(1);
    assert!(done.err.contains("not trusted"), "{}", done.err);
    assert!(done.err.contains("--fingerprint"), "says how to pin it: {}", done.err);

    // login without a pin and without a terminal to confirm: refused, the fingerprint
    // shown to compare with the server's log, nothing saved.
    let me = Term::new();
    let done = me.run(&["login", &url, "--token", &s.admin_token]).code(1);
    assert!(done.err.contains("no terminal to confirm"), "{}", done.err);
    assert!(done.err.contains(&fingerprint(&s)), "{}", done.err);
    assert!(!me.profile().exists());
}

#[test]
fn expired_and_revoked_tokens_are_refused_with_a_message_that_says_so() {
    let s = Server::start();
    let (_, alice_token) = person(&s, "alice", &[]);
    let alice = Term::signed_in(&s, &alice_token);
    // A short token of her own.
    let short = alice.run(&["tokens", "create", "short", "--expires-in", "2s", "--json"]).ok().json();
    let expires = chrono::DateTime::parse_from_rfc3339(short["expires_at"].as_str().unwrap()).unwrap();
    let with_short = Term::signed_in(&s, short["token"].as_str().unwrap());
    with_short.run(&["whoami"]).ok();
    // Times are shown to the second: the token may live up to a second past the one shown.
    wait_until("the short token to expire", LIMIT, || {
        chrono::Utc::now() > expires + chrono::Duration::milliseconds(1_100)
    });
    let done = with_short.run(&["whoami"]).code(1);
    assert!(done.err.contains("expired or revoked token"), "{}", done.err);
    assert_plain(&done.err);

    // Revoked by an admin: the same refusal.
    let admin = Term::signed_in(&s, &s.admin_token);
    let listed = admin.run(&["tokens", "list", "--user", "alice", "--json"]).ok().json();
    let cli_token =
        listed.as_array().unwrap().iter().find(|t| t["name"] == "cli").unwrap()["id"].as_str().unwrap().to_string();
    alice.run(&["whoami"]).ok();
    let revoked = admin.run(&["tokens", "revoke", &cli_token, "--user", "alice"]).ok();
    assert!(revoked.out.contains(&format!("revoked {cli_token}")), "{}", revoked.out);
    let done = alice.run(&["whoami"]).code(1);
    assert!(done.err.contains("expired or revoked token"), "{}", done.err);
}

// ---------------------------------------------------------------------------------
// requests, connections, users, groups, tokens, audit

#[test]
fn requests_commands_list_show_and_move_requests_through_their_lifecycle() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let (alice_api, alice_token) = person(&s, "alice", &[]);
    let (bob_api, bob_token) = person(&s, "bob", &["dba"]);
    let alice = Term::signed_in(&s, &alice_token);
    let bob = Term::signed_in(&s, &bob_token);

    // Create without waiting; list; approve with a comment; show; end.
    let r1 = alice.run(&["connect", "db", "--duration", "30m", "--reason", "INC-1", "--no-wait", "--json"]).ok().json();
    assert_eq!(r1["status"], "PENDING");
    let r1 = r1["id"].as_str().unwrap().to_string();
    assert_eq!(ids(&alice.run(&["requests", "list", "--json"]).ok().json()), vec![r1.clone()]);
    assert_eq!(ids(&bob.run(&["requests", "list", "--reviewable", "--json"]).ok().json()), vec![r1.clone()]);
    let listed = bob.run(&["requests", "list", "--reviewable"]).ok();
    assert!(listed.out.lines().next().unwrap().starts_with("ID"), "{}", listed.out);
    assert!(
        listed.out.contains(&r1) && listed.out.contains("PENDING") && listed.out.contains("dba 0/1"),
        "{}",
        listed.out
    );
    assert_plain(&listed.out);
    let approved = bob.run(&["requests", "approve", &r1, "--comment", "ok for INC-1"]).ok();
    assert_eq!(approved.out.trim(), format!("{r1} is APPROVED (dba 1/1)"));
    let shown = alice.run(&["requests", "show", &r1]).ok();
    for want in [
        "Status      APPROVED",
        "User        alice",
        "Connection  db",
        "Duration    30m",
        "Reason      INC-1",
        "Group       dba: 1/1 done (bob)",
        "Review      bob ",
        ": ok for INC-1",
        "Expires     ",
    ] {
        assert!(shown.out.contains(want), "{want:?} missing:\n{}", shown.out);
    }
    assert_plain(&shown.out);
    let shown = alice.run(&["requests", "show", &r1, "--json"]).ok().json();
    assert_eq!(shown["reviews"][0]["comment"], "ok for INC-1");
    assert_eq!(alice.run(&["requests", "end", &r1, "--json"]).ok().json()["status"], "EXECUTED");

    // Reject with a reason.
    let r2 = alice_api.request("db", "1h").expect(201).id();
    let rejected = bob.run(&["requests", "reject", &r2, "--reason", "use the replica", "--json"]).ok().json();
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["end_reason"], "use the replica");

    // Cancel one's own.
    let r3 = alice_api.request("db", "1h").expect(201).id();
    assert!(alice.run(&["requests", "cancel", &r3]).ok().out.contains(&format!("{r3} is CANCELLED")));
    // A transition from a final state: a readable error, exit 1.
    let late = bob.run(&["requests", "approve", &r3]).code(1);
    assert!(late.err.contains(&r3) && late.err.contains("CANCELLED"), "{}", late.err);

    // Revoke a live grant.
    let r4 = alice_api.request("db", "1h").expect(201).id();
    bob_api.approve(&r4).expect(200);
    let revoked = bob.run(&["requests", "revoke", &r4, "--reason", "done", "--json"]).ok().json();
    assert_eq!(revoked["status"], "REVOKED");
    assert_eq!(revoked["ended_by"], "bob");

    // Filters narrow the list; newest first.
    assert_eq!(ids(&alice.run(&["requests", "list", "--status", "REVOKED", "--json"]).ok().json()), vec![r4.clone()]);
    assert_eq!(ids(&alice.run(&["requests", "list", "--mine", "--json"]).ok().json()), vec![r4, r3, r2, r1]);
    // A requester cannot review her own request from the CLI either.
    let r5 = alice_api.request("db", "1h").expect(201).id();
    alice.run(&["requests", "approve", &r5]).code(1);
    assert_eq!(alice_api.show(&r5)["status"], "PENDING");
}

#[test]
fn requests_show_words_reviews_as_approved_and_rejected() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let (alice_api, alice_token) = person(&s, "alice", &[]);
    let (bob_api, _) = person(&s, "bob", &["dba"]);
    let alice = Term::signed_in(&s, &alice_token);
    let id = alice_api.request("db", "1h").expect(201).id();
    bob_api.approve(&id).expect(200);
    let shown = alice.run(&["requests", "show", &id]).ok();
    assert!(shown.out.contains("Review      bob approved at"), "{}", shown.out);
    alice.run(&["requests", "end", &id]).ok();
    let id = alice_api.request("db", "1h").expect(201).id();
    bob_api.reject(&id, "no").expect(200);
    let shown = alice.run(&["requests", "show", &id]).ok();
    assert!(shown.out.contains("Review      bob rejected at"), "{}", shown.out);
}

#[test]
fn connections_create_with_two_approval_groups_then_show_as_json() {
    let s = Server::start();
    let admin = Term::signed_in(&s, &s.admin_token);
    // Groups must exist first; the error says so.
    let missing = admin.run(&["connections", "create", "prod-postgres", "--approval-group", "dba-team"]).code(1);
    assert!(missing.err.contains("dba-team"), "{}", missing.err);
    admin.run(&["groups", "create", "dba-team"]).ok();
    admin.run(&["groups", "create", "security"]).ok();
    let created = admin
        .run(&[
            "connections",
            "create",
            "prod-postgres",
            "--kind",
            "postgres",
            "--target",
            "db.internal:5432",
            "--approval-group",
            "dba-team",
            "--approval-group",
            "security",
            "--min-approvals",
            "1",
            "--default-duration",
            "30m",
            "--max-duration",
            "4h",
            "--require-reason",
        ])
        .ok();
    assert!(
        created.out.starts_with("prod-postgres  kind=postgres target=db.internal:5432 approvers=[dba-team, security]"),
        "{}",
        created.out
    );
    let c = admin.run(&["connections", "show", "prod-postgres", "--json"]).ok().json();
    assert_eq!(c["name"], "prod-postgres");
    assert_eq!(c["kind"], "postgres");
    assert_eq!(c["target"], "db.internal:5432");
    assert_eq!(c["approval_groups"], json!(["dba-team", "security"]));
    assert_eq!(c["min_approvals"], 1);
    assert_eq!(c["default_duration"], "30m");
    assert_eq!(c["max_duration"], "4h");
    assert_eq!(c["pending_ttl"], "1d");
    assert_eq!(c["require_reason"], true);
    assert_eq!(c["auto_approve_admins"], true);

    let updated = admin
        .run(&["connections", "update", "prod-postgres", "--max-duration", "2h", "--require-reason", "false", "--json"])
        .ok()
        .json();
    assert_eq!(updated["max_duration"], "2h");
    assert_eq!(updated["require_reason"], false);
    assert_eq!(updated["approval_groups"], json!(["dba-team", "security"]), "fields not given stay");
    let all = admin.run(&["connections", "list", "--json"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 1);
    // The policy is enforced for a request made from the CLI: two groups, two people.
    let (_, carol_token) = person(&s, "carol", &[]);
    let too_long =
        Term::signed_in(&s, &carol_token).run(&["connect", "prod-postgres", "--duration", "3h", "--no-wait"]).code(1);
    assert!(too_long.err.contains("exceeds the maximum of 2h for prod-postgres"), "{}", too_long.err);
    let r = Term::signed_in(&s, &carol_token).run(&["connect", "prod-postgres", "--no-wait", "--json"]).ok().json();
    assert_eq!(r["groups"].as_array().unwrap().len(), 2);
    admin.run(&["connections", "delete", "prod-postgres"]).ok();
    assert_eq!(s.admin().show(r["id"].as_str().unwrap())["status"], "CANCELLED");
}

#[test]
fn users_groups_and_tokens_are_managed_from_the_cli() {
    let s = Server::start();
    let admin = Term::signed_in(&s, &s.admin_token);
    let password = "a long passphrase 42";
    let created = admin
        .run_with_stdin(
            &["users", "create", "carol", "--display-name", "Carol C.", "--password-stdin", "--json"],
            &format!("{password}\n"),
        )
        .ok()
        .json();
    assert_eq!(created["username"], "carol");
    assert_eq!(created["admin"], false);
    admin.run(&["groups", "create", "dba-team"]).ok();
    let g = admin.run(&["groups", "add-member", "dba-team", "carol"]).ok();
    assert_eq!(g.out.trim(), "dba-team  members=[carol]");
    let shown = admin.run(&["users", "show", "carol", "--json"]).ok().json();
    assert_eq!(shown["groups"], json!(["dba-team"]));
    assert_eq!(shown["display_name"], "Carol C.");
    let users = admin.run(&["users", "list", "--json"]).ok().json();
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert!(names.contains(&"admin") && names.contains(&"carol"), "{names:?}");
    let listed = admin.run(&["users", "list"]).ok();
    assert!(listed.out.contains("carol  admin=false disabled=false groups=[dba-team] name=Carol C."), "{}", listed.out);

    // Carol logs in with her password and mints a token of her own, shown once.
    let carol = Term::new();
    carol
        .run_with_stdin(
            &["login", &s.url(""), "--username", "carol", "--password-stdin", "--fingerprint", &fingerprint(&s)],
            &format!("{password}\n"),
        )
        .ok();
    assert_eq!(carol.run(&["whoami"]).ok().out.trim(), format!("carol on {}", s.url("")));
    let me = carol.run(&["whoami", "--json"]).ok().json();
    assert_eq!(me["username"], "carol");
    assert_eq!(me["admin"], false);
    let minted = carol.run(&["tokens", "create", "ci", "--expires-in", "30d"]).ok();
    let secret = minted.out.lines().next().unwrap().trim().to_string();
    assert!(minted.out.contains("it is shown only this once"), "{}", minted.out);
    // Listed, by her and by an admin, without its secret.
    let own = carol.run(&["tokens", "list"]).ok();
    assert!(own.out.starts_with("ID") && own.out.contains("ci"), "{}", own.out);
    let listed = admin.run(&["tokens", "list", "--user", "carol", "--json"]).ok();
    assert!(!listed.out.contains(&secret), "a listed token must not carry its secret");
    let ci = listed.json().as_array().unwrap().iter().find(|t| t["name"] == "ci").unwrap().clone();
    assert!(ci["expires_at"].is_string(), "{ci}");
    let with_ci = Term::signed_in(&s, &secret);
    with_ci.run(&["whoami"]).ok();
    // A non-admin cannot manage users.
    with_ci.run(&["users", "list"]).code(1);
    admin.run(&["tokens", "revoke", ci["id"].as_str().unwrap(), "--user", "carol"]).ok();
    assert!(with_ci.run(&["whoami"]).code(1).err.contains("expired or revoked token"));
    carol.run(&["whoami"]).ok();
    // Group removal and user deletion round off the story.
    assert_eq!(admin.run(&["groups", "remove-member", "dba-team", "carol"]).ok().out.trim(), "dba-team  members=[]");
    admin.run(&["users", "delete", "carol"]).ok();
    carol.run(&["whoami"]).code(1);
}

#[test]
fn audit_verify_reports_the_chain_and_export_prints_json_lines_oldest_first() {
    let s = Server::start();
    s.connection("db", &[], json!({}));
    let (alice_api, alice_token) = person(&s, "alice", &[]);
    let id = alice_api.request("db", "1h").expect(201).id();
    Term::signed_in(&s, &alice_token).run(&["requests", "end", &id]).ok();
    let admin = Term::signed_in(&s, &s.admin_token);
    let verified = admin.run(&["audit", "verify"]).ok();
    assert!(verified.out.starts_with("audit chain intact: "), "{}", verified.out);
    let v = admin.run(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(v["ok"], true);
    let exported = admin.run(&["audit", "export"]).ok();
    let events: Vec<Value> = exported
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(events.len() as u64, v["events"].as_u64().unwrap(), "every event exported");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "oldest first, none missing");
    assert_eq!(events[0]["action"], "user.created");
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "the chain links in export order");
    }
    assert!(events.iter().any(|e| e["action"] == "request.created" && e["target"] == id.as_str()), "{}", exported.out);
    let listed = admin.run(&["audit", "list", "--limit", "2", "--json"]).ok().json();
    assert_eq!(listed["items"][0]["seq"], *seqs.last().unwrap(), "list is newest first");
    // Non-admins may not read the trail.
    Term::signed_in(&s, &alice_token).run(&["audit", "verify"]).code(1);
}

#[test]
fn offline_admin_commands_work_on_a_stopped_data_dir_and_their_results_work_after_restart() {
    let mut s = Server::start();
    s.stop();
    let dir = s.data_dir();
    let dir = dir.to_str().unwrap();
    let shell = Term::new();
    let reset = shell.run(&["admin", "reset-password", "admin", "--data-dir", dir]).ok();
    let password = reset.out.trim().to_string();
    assert!(password.len() >= 16, "{reset:?}");
    assert!(reset.err.contains("password of admin reset"), "{}", reset.err);
    let minted = shell.run(&["admin", "create-token", "admin", "--name", "recovery", "--data-dir", dir]).ok();
    let token = minted.out.trim().to_string();
    assert!(minted.err.contains("recovery") && minted.err.contains("shown only this once"), "{}", minted.err);
    let verified = shell.run(&["admin", "audit-verify", "--data-dir", dir]).ok().json();
    assert_eq!(verified["ok"], true, "{verified}");
    let events_offline = verified["events"].as_u64().unwrap();
    // Unknown user and missing data dir: readable errors.
    shell.run(&["admin", "create-token", "nobody", "--data-dir", dir]).code(1);
    let nowhere = shell.home.path().join("nowhere");
    assert!(shell
        .run(&["admin", "audit-verify", "--data-dir", nowhere.to_str().unwrap()])
        .code(2)
        .err
        .contains("no database"));

    s.restart();
    let me = Term::new();
    let url = s.url("");
    me.run_with_stdin(
        &["login", &url, "--username", "admin", "--password-stdin", "--fingerprint", &fingerprint(&s)],
        &format!("{password}\n"),
    )
    .ok();
    let old = Term::new()
        .run_with_stdin(
            &["login", &url, "--username", "admin", "--password-stdin", "--fingerprint", &fingerprint(&s)],
            &format!("{}\n", s.admin_password),
        )
        .code(1);
    assert!(old.err.contains("wrong username or password"), "{}", old.err);
    let who = Term::signed_in(&s, &token).run(&["whoami"]).ok();
    assert_eq!(who.out.trim(), format!("admin on {url} (admin)"));
    // The offline changes are in the audit trail, by the offline actor, chain intact.
    let admin = Term::signed_in(&s, &token);
    let events: Vec<Value> =
        admin.run(&["audit", "export"]).ok().out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.len() as u64 >= events_offline);
    assert!(events.iter().filter(|e| e["actor"] == "offline-admin").count() >= 2, "{events:?}");
    assert_eq!(admin.run(&["audit", "verify", "--json"]).ok().json()["ok"], true);
}

// ---------------------------------------------------------------------------------
// output for scripts and terminals

#[test]
fn json_output_is_json_for_every_kind_of_command() {
    let s = Server::start();
    s.connection("wiki", &[], json!({"kind": "generic"}));
    let admin = Term::signed_in(&s, &s.admin_token);
    for args in [
        &["whoami", "--json"][..],
        &["connections", "list", "--json"],
        &["connections", "show", "wiki", "--json"],
        &["users", "list", "--json"],
        &["groups", "list", "--json"],
        &["tokens", "list", "--json"],
        &["requests", "list", "--json"],
        &["audit", "list", "--json"],
        &["audit", "verify", "--json"],
    ] {
        let v = admin.run(args).ok().json();
        assert!(v.is_object() || v.is_array(), "{args:?}: {v}");
    }
    // connect on an auto-approved connection: one JSON document with request and session.
    let c = admin.run(&["connect", "wiki", "--json"]).ok();
    let v = c.json();
    assert_eq!(v["request"]["status"], "APPROVED");
    assert!(v["session"]["id"].as_str().unwrap().starts_with("sess_"), "{v}");
    assert_plain(&c.out);
    // Errors stay on stderr, stdout stays empty for the script.
    let e = admin.run(&["connections", "show", "nope", "--json"]).code(1);
    assert!(e.out.is_empty(), "{}", e.out);
    assert!(e.err.contains("nope"), "{}", e.err);
}

#[test]
fn output_has_no_ansi_escapes_unless_a_terminal_without_no_color() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    s.connection("wiki", &[], json!({}));
    let (alice_api, alice_token) = person(&s, "alice", &[]);
    alice_api.request("db", "1h").expect(201);
    alice_api.request("wiki", "1h").expect(201);
    let alice = Term::signed_in(&s, &alice_token);
    // Piped: plain, with or without NO_COLOR.
    let piped = alice.run(&["requests", "list"]).ok();
    assert!(piped.out.contains("PENDING") && piped.out.contains("APPROVED"), "{}", piped.out);
    assert_plain(&piped.out);
    assert_plain(&alice.run(&["requests", "list", "--status", "PENDING"]).ok().out);

    // At a terminal the statuses are coloured…
    let Some(tty) = alice.spawn_in_pty(&["requests", "list"]) else { return };
    let coloured = tty.finish().ok();
    assert!(coloured.out.contains("\x1b[33mPENDING\x1b[0m"), "expected colour at a terminal: {:?}", coloured.out);
    // …and NO_COLOR turns that off.
    let quiet = Term::signed_in(&s, &alice_token).env("NO_COLOR", "1");
    let plain = quiet.spawn_in_pty(&["requests", "list"]).unwrap().finish().ok();
    assert!(plain.out.contains("PENDING"), "{}", plain.out);
    assert_plain(&plain.out);
}

#[test]
fn completions_man_page_and_usage_errors() {
    let shell = Term::new();
    let bash = shell.run(&["completions", "bash"]).ok();
    assert!(
        bash.out.contains("_jitgate()") && bash.out.contains("complete -F _jitgate"),
        "{}",
        &bash.out[..bash.out.len().min(400)]
    );
    for sub in ["connect", "requests", "approve", "--fingerprint"] {
        assert!(bash.out.contains(sub), "completion lacks {sub}");
    }
    assert!(shell.run(&["completions", "zsh"]).ok().out.contains("#compdef jitgate"));
    let man = shell.run(&["man"]).ok();
    assert!(man.out.starts_with(".ie") || man.out.contains(".TH jitgate"), "{}", &man.out[..man.out.len().min(400)]);
    assert!(man.out.contains(".TH jitgate") && man.out.contains("connect"), "man page lacks the basics");
    let help = shell.run(&["--help"]).ok();
    assert!(help.out.contains("Exit codes: 0 success, 1 error, 2 bad usage"), "{}", help.out);
    assert!(shell.run(&["--version"]).ok().out.starts_with("jitgate "));
    // Usage errors exit 2.
    shell.run(&["requests", "frobnicate"]).code(2);
    shell.run(&["connect"]).code(2);
    shell.run(&["completions", "tcsh"]).code(2);
}
