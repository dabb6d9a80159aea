//! First start, unsafe layouts, TLS by default, and clean shutdown.

use crate::harness::{Server, BIN};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_start_writes_private_credentials_and_never_logs_them() {
    let s = Server::start();
    let dir = s.data_dir();
    assert_eq!(mode(&dir), 0o700);
    for f in ["initial-admin.json", "jitgate.db", "tls-key.pem", "tls-cert.pem"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let log = s.log();
    assert!(!log.contains(&s.admin_token) && !log.contains(&s.admin_password), "a secret reached the log");
    assert!(log.contains("fingerprint"), "{log}");
    // The password from the file logs in.
    let login =
        s.anonymous().post("/api/v1/login", json!({"username": "admin", "password": s.admin_password})).expect(200);
    let cookie = login.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
}

#[test]
fn the_chosen_admin_token_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = "automation-token-0123456789abcdef-0123456789";
    let mut child = Command::new(BIN)
        .args(["serve", "--allow-root", "--listen", "127.0.0.1:0", "--plain-http", "--data-dir"])
        .arg(&data)
        .env("JITGATE_ADMIN_TOKEN", token)
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    crate::harness::wait_until("the admin file", std::time::Duration::from_secs(20), || {
        data.join("initial-admin.json").exists()
    });
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("initial-admin.json")).unwrap()).unwrap();
    assert_eq!(file["token"], token);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn serve_fails(args: &[&str], data: &std::path::Path) -> String {
    let out =
        Command::new(BIN).args(["serve", "--allow-root"]).arg("--data-dir").arg(data).args(args).output().unwrap();
    assert!(!out.status.success(), "serve should refuse: {args:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn unsafe_layouts_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("open");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o770)).unwrap();
    let err = serve_fails(&["--listen", "127.0.0.1:0"], &data);
    assert!(err.contains("chmod 700"), "{err}");

    let mut s = Server::start();
    s.stop();
    let key = s.data_dir().join("tls-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = serve_fails(&["--listen", "127.0.0.1:0"], &s.data_dir());
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn plain_http_is_loopback_only_unless_behind_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_fails(&["--plain-http", "--listen", "0.0.0.0:0"], &dir.path().join("d"));
    assert!(err.contains("--behind-proxy"), "{err}");
}

#[test]
fn a_bad_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jitgate.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n").unwrap();
    let err = serve_fails(&["--config", cfg.to_str().unwrap()], &dir.path().join("d"));
    assert!(err.contains("listen_adress"), "{err}");
}

#[test]
fn sigterm_finishes_cleanly_and_the_data_survives() {
    let mut s = Server::start();
    s.connection("db", &["dba"], json!({}));
    let alice = s.user("alice", &[]);
    let id = alice.request("db", "1h").expect(201).id();
    let status = s.stop();
    assert!(status.success(), "exit status {status}");
    assert!(s.log().contains("stopped cleanly"));
    s.restart();
    assert_eq!(s.admin().show(&id)["status"], "PENDING");
}

#[test]
fn the_offline_audit_check_finds_a_changed_row() {
    let mut s = Server::start();
    s.connection("db", &["dba"], json!({}));
    s.stop();
    let ok = Command::new(BIN).args(["admin", "audit-verify", "--data-dir"]).arg(s.data_dir()).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let db = rusqlite::Connection::open(s.data_dir().join("jitgate.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER audit_events_append_only_update; UPDATE audit_events SET actor = 'mallory' WHERE seq = 2;",
    )
    .unwrap();
    drop(db);
    let bad = Command::new(BIN).args(["admin", "audit-verify", "--data-dir"]).arg(s.data_dir()).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["first_bad"], 2);
}

#[test]
fn a_newer_database_is_refused() {
    let mut s = Server::start();
    s.stop();
    let db = rusqlite::Connection::open(s.data_dir().join("jitgate.db")).unwrap();
    db.pragma_update(None, "user_version", 999).unwrap();
    drop(db);
    let err = serve_fails(&["--listen", "127.0.0.1:0"], &s.data_dir());
    assert!(err.contains("newer jitgate"), "{err}");
}
