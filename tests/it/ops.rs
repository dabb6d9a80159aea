//! Operations: backup while the server writes, restore and start from it, periodic
//! backups with retention, the backup before an upgrade, config check, the root
//! refusal, and the metrics an operator alerts on.

use crate::harness::{wait_until, Server, BIN};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn jitgate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("JITGATE_DATA_DIR").output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// What a backup must be: it opens, passes the integrity check, its chain verifies.
fn assert_sound_backup(path: &Path) -> rusqlite::Connection {
    assert_eq!(mode(path), 0o600, "{}", path.display());
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let v = jitgate::audit::verify(&db).unwrap();
    assert!(v.ok, "audit chain of {}: {v:?}", path.display());
    db
}

/// `serve` in plain HTTP on a loopback port, for a data dir the harness did not make.
struct Plain {
    child: Child,
    log: PathBuf,
    pub base: String,
}

impl Plain {
    fn start(data: &Path, extra: &[&str]) -> Plain {
        let log = data.with_extension("log");
        let child = Command::new(BIN)
            .args(["serve", "--plain-http", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .env_remove("JITGATE_ADMIN_TOKEN")
            .env_remove("JITGATE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Plain { child, log, base: String::new() };
        wait_until("the server to listen", Duration::from_secs(30), || {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("jitgate exited with {status}:\n{}", p.log());
            }
            p.base = p.log().lines().find_map(|l| l.split("listening on ").nth(1)).unwrap_or("").trim().to_string();
            !p.base.is_empty()
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, token: &str, path: &str) -> Value {
        let resp = ureq::get(&format!("{}{path}", self.base)).set("Authorization", &format!("Bearer {token}")).call();
        match resp {
            Ok(r) => r.into_json().unwrap(),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_backup_taken_while_requests_are_written_opens_and_verifies() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &[]);
    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let id = alice.request("db", "1h").expect(201).id();
                alice.act(&id, "cancel").expect(200);
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("some requests", Duration::from_secs(30), || written.load(Ordering::Relaxed) >= 5);
    let dir = tempfile::tempdir().unwrap();
    let data = s.data_dir();
    let mut seen = Vec::new();
    for i in 0..3 {
        let file = dir.path().join(format!("b{i}.db"));
        let out = jitgate(&["backup", "--data-dir", data.to_str().unwrap(), "--to", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("verified"), "{}", text(&out));
        let db = assert_sound_backup(&file);
        let n: i64 = db.query_row("SELECT count(*) FROM requests", [], |r| r.get(0)).unwrap();
        seen.push(n);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(seen[0] > 0 && seen[2] > seen[0], "the writer went on during the backups: {seen:?}");
    // The live chain is intact too: the backup only read.
    assert_eq!(s.admin().get("/api/v1/audit/verify").expect(200).body["ok"], true);
}

#[test]
fn restore_into_a_new_data_dir_and_start_from_it() {
    let s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let id = s.user("alice", &[]).request("db", "2h").expect(201).id();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let out = jitgate(&["backup", "--data-dir", s.data_dir().to_str().unwrap(), "--to", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // Never under a running server.
    let out =
        jitgate(&["admin", "restore", "--from", file.to_str().unwrap(), "--data-dir", s.data_dir().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("stop it first"), "{}", text(&out));

    let fresh = dir.path().join("restored");
    let out = jitgate(&["admin", "restore", "--from", file.to_str().unwrap(), "--data-dir", fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("jitgate.db")), 0o600);

    let restored = Plain::start(&fresh, &["--allow-root"]);
    // The old admin token is in the restored data: it works, and the request is there.
    let req = restored.get(&s.admin_token, &format!("/api/v1/requests/{id}"));
    assert_eq!(req["status"], "PENDING");
    assert_eq!(restored.get(&s.admin_token, "/api/v1/audit/verify")["ok"], true);
    assert!(!fresh.join("initial-admin.json").exists(), "a restored data dir is not a first start");
    drop(restored);

    // Restoring over an existing database keeps the old one aside.
    let out = jitgate(&["admin", "restore", "--from", file.to_str().unwrap(), "--data-dir", fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let kept: Vec<_> = std::fs::read_dir(&fresh)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("jitgate.db.before-restore-"))
        .collect();
    assert!(!kept.is_empty(), "the replaced database is kept");
}

#[test]
fn a_damaged_backup_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![7u8; 8192]).unwrap();
    let data = dir.path().join("data");
    let out = jitgate(&["admin", "restore", "--from", junk.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("junk.db"), "{}", text(&out));
    assert!(!data.exists(), "nothing was touched");
}

#[test]
fn periodic_backups_are_taken_and_pruned_to_keep() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let backups = cfg_dir.path().join("backups");
    let cfg = cfg_dir.path().join("jitgate.toml");
    std::fs::write(&cfg, format!("[backup]\ndir = {:?}\ninterval = \"1s\"\nkeep = 2\n", backups.to_str().unwrap()))
        .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let s = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let files = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&backups)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.file_name().unwrap().to_string_lossy().starts_with("jitgate-"));
        v.sort();
        v
    };
    wait_until("four periodic backups", Duration::from_secs(30), || s.log().matches("written (").count() >= 4);
    wait_until("pruning to keep = 2", Duration::from_secs(10), || files().len() == 2);
    assert_eq!(mode(&backups), 0o700);
    for f in files() {
        assert_sound_backup(&f);
    }
    let m = s.admin().get("/metrics").expect(200).text;
    let last = m.lines().find_map(|l| l.strip_prefix("jitgate_backup_last_success_timestamp_seconds ")).unwrap();
    assert!(last.parse::<u64>().unwrap() > 1_600_000_000, "{last}");
    assert!(!s.log().contains("chmod o-rwx"), "a 0640 config draws no warning");
}

#[test]
fn a_newer_binary_backs_up_an_older_database_before_migrating() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    // An "older" database: schema version 0 with something in it, so step 1 runs on
    // top of it (a fresh empty file would get schema.sql with no upgrade).
    let db = rusqlite::Connection::open(data.join("jitgate.db")).unwrap();
    db.execute_batch("CREATE TABLE older_marker (x INTEGER); INSERT INTO older_marker VALUES (42);").unwrap();
    drop(db);
    std::fs::set_permissions(data.join("jitgate.db"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let server = Plain::start(&data, &["--allow-root"]);
    assert!(server.log().contains("before upgrading it to version"), "{}", server.log());
    drop(server);
    let copies: Vec<PathBuf> = std::fs::read_dir(data.join("backups"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pre-upgrade-v0-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(mode(&copies[0]), 0o600);
    let copy = rusqlite::Connection::open(&copies[0]).unwrap();
    let (version, marker): (i64, i64) = (
        copy.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap(),
        copy.query_row("SELECT x FROM older_marker", [], |r| r.get(0)).unwrap(),
    );
    assert_eq!((version, marker), (0, 42), "the copy is the database as it was before the upgrade");
    let live = rusqlite::Connection::open(data.join("jitgate.db")).unwrap();
    let v: i64 = live.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, jitgate::store::migrations::latest_version());
}

#[test]
fn config_check_names_an_unknown_key_and_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:9000\"\n[backup]\nintreval = \"1h\"\n").unwrap();
    let out = jitgate(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("intreval"), "{}", text(&out));

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "listen = \"0.0.0.0:9443\"\n[backup]\ninterval = \"12h\"\nkeep = 3\n").unwrap();
    let out = jitgate(&["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for want in ["ok", "listen = \"0.0.0.0:9443\"", "keep = 3", "interval = \"12h\"", "workers = 8"] {
        assert!(shown.contains(want), "{want} missing from:\n{shown}");
    }
    // A combination serve would refuse is refused here too.
    let proxyless = dir.path().join("plain.toml");
    std::fs::write(&proxyless, "listen = \"0.0.0.0:9080\"\nplain_http = true\n").unwrap();
    let out = jitgate(&["config", "check", proxyless.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--behind-proxy"), "{}", text(&out));
}

#[test]
fn root_needs_allow_root() {
    if jitgate::preflight::effective_uid() != Some(0) {
        eprintln!("not root: the refusal of root cannot be observed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = jitgate(&["serve", "--plain-http", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("refusing to run as root") && text(&out).contains("--allow-root"), "{}", text(&out));
    assert!(!data.exists(), "refused before touching the data dir");

    // The config key does the same as the flag; a config readable by all draws a warning.
    let cfg = dir.path().join("jitgate.toml");
    std::fs::write(&cfg, "allow_root = true\n").unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Plain::start(&data, &["--config", cfg.to_str().unwrap()]);
    assert!(server.log().contains("chmod o-rwx"), "{}", server.log());
}

#[test]
fn metrics_count_active_grants() {
    let s = Server::start();
    s.connection("open", &[], json!({}));
    let alice = s.user("alice", &[]);
    assert_eq!(alice.request("open", "1h").expect(201).body["status"], "APPROVED");
    let m = s.admin().get("/metrics").expect(200).text;
    assert!(m.lines().any(|l| l == "jitgate_active_grants 1"), "{m}");
}

#[test]
fn config_check_masks_every_secret_and_reads_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "file-secret-0123456789\n").unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("jitgate.toml");
    let body = format!(
        r#"[[notify.webhook]]
url = "https://siem.internal/in"
secret = "inline-secret-0123456789"

[[notify.webhook]]
url = "https://siem2.internal/in"
secret_file = "{}"

[[notify.slack]]
url = "https://hooks.slack.com/services/T0/B0/slack-url-token"
signing_secret = "slack-signing-secret"

[notify.email]
server = "mail.internal:587"
from = "jitgate@example.com"
username = "jitgate"
password = "smtp-password-value"

[notify.mattermost]
action_secret = "mattermost-secret-0123"
allowed_sources = ["10.0.0.12"]
"#,
        secret_file.display()
    );
    std::fs::write(&config, &body).unwrap();
    for json_flag in [false, true] {
        let mut args = vec!["config", "check", config.to_str().unwrap()];
        if json_flag {
            args.insert(0, "--json");
        }
        let out = jitgate(&args);
        assert!(out.status.success(), "{}", text(&out));
        let shown = text(&out);
        for secret in
            ["inline-secret", "file-secret", "slack-signing", "smtp-password", "mattermost-secret", "slack-url-token"]
        {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        assert!(shown.matches("********").count() >= 6, "{shown}");
        assert!(shown.contains("siem2.internal") && shown.contains("webhook.secret"), "{shown}");
    }
    let out = jitgate(&["config", "check", config.to_str().unwrap()]);
    assert!(text(&out).contains("[[notify.webhook]]"), "{}", text(&out));

    // Both a key and its file: refused. A file readable by all: refused, naming chmod 600.
    std::fs::write(&config, format!("{body}\n[[notify.teams]]\nurl = \"https://t.example/x\"\n")).unwrap();
    assert!(jitgate(&["config", "check", config.to_str().unwrap()]).status.success());
    let both = body.replace(
        "secret = \"inline-secret-0123456789\"",
        &format!("secret = \"inline-secret-0123456789\"\nsecret_file = \"{}\"", secret_file.display()),
    );
    std::fs::write(&config, &both).unwrap();
    let out = jitgate(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not both"), "{}", text(&out));
    std::fs::write(&config, &body).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = jitgate(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    // A misspelt *_file key is still an unknown key.
    std::fs::write(&config, "[[notify.webhook]]\nurl = \"https://x.internal/\"\nsecret_flie = \"/x\"\n").unwrap();
    let out = jitgate(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("secret_flie"), "{}", text(&out));
}

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jitgate.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:9080\"\nworkers = 5\nplain_http = true\n").unwrap();
    let check = |env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(["config", "check", config.to_str().unwrap()]).env_remove("JITGATE_DATA_DIR");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // plain HTTP on 0.0.0.0 needs a proxy: the environment can say there is one.
    assert_eq!(check(&[]).status.code(), Some(2));
    let out = check(&[("JITGATE_BEHIND_PROXY", "true"), ("JITGATE_WORKERS", "3")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("workers = 3") && text(&out).contains("behind_proxy = true"), "{}", text(&out));
    // A false in the environment beats a true in the file.
    let out = check(&[("JITGATE_PLAIN_HTTP", "false")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("plain_http = false") && text(&out).contains("workers = 5"), "{}", text(&out));
    let out = check(&[("JITGATE_WORKERS", "many")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("many"), "{}", text(&out));
    let out = check(&[("JITGATE_BEHIND_PROXY", "1"), ("JITGATE_LOG_LEVEL", "loud")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("log level \"loud\""), "{}", text(&out));

    // serve: the flag wins over the environment, which wins over the file.
    let data = dir.path().join("data");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\n").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--allow-root",
            "--config",
            config.to_str().unwrap(),
            "--plain-http",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("JITGATE_LISTEN", "127.0.0.1:2")
        .env("JITGATE_DATA_DIR", &data)
        .env("JITGATE_PLAIN_HTTP", "false")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let listening = loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut err, &mut line).unwrap() == 0 {
            break None;
        }
        seen.push_str(&line);
        if let Some(url) = line.split("listening on ").nth(1) {
            break Some(url.trim().to_string());
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let url = listening.unwrap_or_else(|| panic!("serve did not start:\n{seen}"));
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":1") && !url.ends_with(":2"), "{url}");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let mut s = Server::start_with(&["--log-format", "json"]);
    s.admin().get("/api/v1/me").expect(200);
    s.stop();
    let log = s.log();
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).is_ok(), "{line}");
        assert!(["info", "warn", "error", "debug"].contains(&v["level"].as_str().unwrap()), "{line}");
        assert!(v["target"].as_str().unwrap().starts_with("jitgate"), "{line}");
        messages.push(v["msg"].as_str().unwrap().to_string());
    }
    assert!(messages.iter().any(|m| m.starts_with("listening on https://")), "{log}");
    assert!(messages.iter().any(|m| m == "stopped cleanly"), "{log}");
    let bad = jitgate(&["serve", "--allow-root", "--log-format", "xml", "--data-dir", "/nonexistent/x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("log format \"xml\": use text or json"), "{}", text(&bad));
}
