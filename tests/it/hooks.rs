//! Hooks from the config file: run once per event, with the request in the
//! environment, never lost and never run twice across a kill -9.

use crate::harness::{wait_until, Server};
use serde_json::json;
use std::time::Duration;

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn hooks_run_once_per_event_and_survive_a_crash_between_event_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let config = dir.path().join("jitgate.toml");
    let record =
        format!("echo \"$JITGATE_EVENT $JITGATE_REQUEST_ID $JITGATE_USER $JITGATE_CONNECTION\" >> {}", log.display());
    std::fs::write(
        &config,
        format!(
            "[[hooks]]\nconnection = \"slow\"\non_grant = \"sleep 20\"\n\n[[hooks]]\nconnection = \"db\"\non_grant = '{record}'\non_end = '{record}'\non_revoke = '{record}'\ntimeout = \"10s\"\n"
        ),
    )
    .unwrap();
    let mut s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.connection("slow", &[], json!({}));
    s.connection("db", &[], json!({}));
    let alice = s.user("alice", &[]);
    alice.request("slow", "1h").expect(201);
    // The worker is now busy with the slow hook: the next event waits behind it.
    wait_until("the slow hook to run", Duration::from_secs(20), || {
        s.db()
            .query_row("SELECT count(*) FROM outbox_deliveries WHERE state = 'running'", [], |r| r.get::<_, i64>(0))
            .unwrap()
            == 1
    });
    let id = alice.request("db", "1h").expect(201).id();
    s.kill9();
    assert!(lines(&log).is_empty(), "the db hook ran before the crash");
    s.restart();
    wait_until("the db hook to run after the restart", Duration::from_secs(20), || !lines(&log).is_empty());
    assert_eq!(lines(&log), vec![format!("request.approved {id} alice db")]);
    // The slow hook was running at the crash: recorded as interrupted, not run again.
    let interrupted = s.admin().get("/api/v1/audit?action=hook.interrupted").expect(200);
    assert_eq!(interrupted.body["items"].as_array().unwrap().len(), 1);
    alice.act(&id, "end").expect(200);
    wait_until("the end hook", Duration::from_secs(20), || lines(&log).len() == 2);
    assert_eq!(lines(&log)[1], format!("request.executed {id} alice db"));
    // The audit event is written after the command exits: wait for it, do not race it.
    wait_until("both runs audited", Duration::from_secs(20), || {
        let ran = s.admin().get(&format!("/api/v1/audit?action=hook.ran&target={id}")).expect(200);
        ran.body["items"].as_array().unwrap().len() == 2
    });
    // Another restart runs nothing again.
    s.restart();
    wait_until("an idle outbox", Duration::from_secs(20), || {
        s.admin().get("/metrics").text.contains("jitgate_outbox_depth 0")
    });
    assert_eq!(lines(&log).len(), 2);
}

#[test]
fn a_failing_hook_is_retried_and_its_output_audited() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("tries");
    let config = dir.path().join("jitgate.toml");
    // Fails the first time, succeeds the second.
    let cmd =
        format!("echo try >> {m}; [ $(wc -l < {m}) -ge 2 ] || {{ echo not yet >&2; exit 7; }}", m = marker.display());
    std::fs::write(&config, format!("[[hooks]]\nconnection = \"db\"\non_revoke = '{cmd}'\n")).unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.connection("db", &[], json!({}));
    let alice = s.user("alice", &[]);
    let id = alice.request("db", "1h").expect(201).id();
    s.admin().act(&id, "revoke").expect(200);
    wait_until("the retry to succeed", Duration::from_secs(30), || lines(&marker).len() == 2);
    let retrying = s.admin().get("/api/v1/audit?action=hook.retrying").expect(200);
    let first = &retrying.body["items"][0]["detail"];
    assert_eq!(first["exit_code"], 7);
    assert!(first["output"].as_str().unwrap().contains("not yet"));
    wait_until("the success to be audited", Duration::from_secs(10), || {
        s.admin().get("/api/v1/audit?action=hook.ran").body["items"].as_array().is_some_and(|a| a.len() == 1)
    });
}

#[test]
fn hooks_come_only_from_the_config_file_and_bad_ones_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jitgate.toml");
    std::fs::write(&config, "[[hooks]]\nconnection = \"db\"\n").unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--allow-root", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no on_grant, on_end or on_revoke"));
}

#[test]
fn the_pg_role_example_creates_a_role_valid_until_expiry_and_drops_it() {
    let Some(pg) = crate::gateway::postgres() else { return };
    let (host, port) = pg.split_once(':').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jitgate.toml");
    let script = std::fs::canonicalize("packaging/hooks/pg-role").unwrap();
    let env = format!(
        "PGHOST={host} PGPORT={port} PGUSER=postgres PGDATABASE=postgres JITGATE_PG_GRANT_ROLE=pg_read_all_data"
    );
    let (grant, drop) = (format!("{env} {} grant", script.display()), format!("{env} {} drop", script.display()));
    std::fs::write(&config, format!("[[hooks]]\nconnection = \"prod-pg\"\non_grant = \"{grant}\"\non_end = \"{drop}\"\non_revoke = \"{drop}\"\n")).unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.connection("prod-pg", &[], json!({"kind": "postgres", "target": pg}));
    let who = format!("u{}", &jitgate::secret::random_id("x").unwrap()[2..12]);
    let user = s.user(&who, &[]);
    let id = user.request("prod-pg", "1h").expect(201).id();
    let role = format!("jit_{who}");
    let query = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args(["-X", "-A", "-t", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    wait_until("the role to exist", Duration::from_secs(20), || {
        query(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")) == "1"
    });
    let until = query(&format!("SELECT rolvaliduntil IS NOT NULL FROM pg_roles WHERE rolname = '{role}'"));
    assert_eq!(until, "t", "the role must expire with the grant");
    user.act(&id, "end").expect(200);
    wait_until("the role to be dropped", Duration::from_secs(20), || {
        query(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")) == "0"
    });
}

#[test]
fn a_retried_grant_hook_never_runs_after_the_revoke_hook() {
    let dir = tempfile::tempdir().unwrap();
    let (log, flag) = (dir.path().join("hook.log"), dir.path().join("failed-once"));
    let config = dir.path().join("jitgate.toml");
    let grant =
        format!("echo grant >> {l}; [ -f {f} ] || {{ touch {f}; exit 1; }}", l = log.display(), f = flag.display());
    let revoke = format!("echo revoke >> {}", log.display());
    std::fs::write(&config, format!("[[hooks]]\nconnection = \"db\"\non_grant = '{grant}'\non_revoke = '{revoke}'\n"))
        .unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.connection("db", &[], json!({}));
    let alice = s.user("alice", &[]);
    let id = alice.request("db", "1h").expect(201).id();
    wait_until("the first grant attempt", Duration::from_secs(20), || flag.exists());
    s.admin().act(&id, "revoke").expect(200);
    wait_until("the revoke hook", Duration::from_secs(30), || lines(&log).contains(&"revoke".to_string()));
    assert_eq!(lines(&log), vec!["grant", "revoke"], "the grant hook ran again after the revoke");
    let skipped = s.admin().get(&format!("/api/v1/audit?action=hook.skipped&target={id}")).expect(200);
    assert_eq!(skipped.body["items"].as_array().unwrap().len(), 1);
}

/// Marks a request's waiting hook delivery dead at once (what five failures would
/// do, without waiting half a minute for them).
fn kill_hook_delivery(s: &Server, request: &str) {
    wait_until("the hook's first failure", Duration::from_secs(20), || {
        s.admin().get(&format!("/api/v1/audit?action=hook.retrying&target={request}")).body["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let db = rusqlite::Connection::open(s.data_dir().join("jitgate.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let n = db
        .execute(
            "UPDATE outbox_deliveries SET state = 'failed' WHERE sink LIKE 'hook:%' AND state = 'pending'
             AND event_seq IN (SELECT seq FROM outbox WHERE request_id = ?1)",
            [request],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn reload(s: &Server, config: &std::path::Path, text: &str) {
    let before = s.log().matches("reloaded on SIGHUP").count();
    std::fs::write(config, text).unwrap();
    let hup = std::process::Command::new("kill").arg("-HUP").arg(s.pid().to_string()).status().unwrap();
    assert!(hup.success());
    wait_until("the reload", Duration::from_secs(10), || s.log().matches("reloaded on SIGHUP").count() > before);
}

#[test]
fn a_dead_hook_comes_back_on_request_only_as_itself_and_only_while_its_grant_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fixed, config) = (dir.path().join("hook.log"), dir.path().join("fixed"), dir.path().join("jitgate.toml"));
    // Fails until the operator "fixes" it (creates the flag file).
    let hook = |word: &str| {
        format!(
            "[[hooks]]\nconnection = \"db\"\non_grant = 'test -e {} && echo \"{word} $JITGATE_REQUEST_ID\" >> {}'\n",
            fixed.display(),
            log.display()
        )
    };
    std::fs::write(&config, hook("A")).unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.connection("db", &[], json!({}));
    let (alice, admin) = (s.user("alice", &[]), s.admin());
    let id = alice.request("db", "1h").expect(201).id();
    kill_hook_delivery(&s, &id);
    let dead = &admin.get("/api/v1/outbox?sink=hook&state=failed").body["items"][0];
    let retry = format!("/api/v1/outbox/{}/retry", dead["event_id"].as_str().unwrap());
    assert!(dead["sink"].as_str().unwrap().starts_with("hook:0:on_grant:"), "{dead}");

    // The config was edited meanwhile: the hook in that place now runs something else.
    reload(&s, &config, &hook("B"));
    std::fs::write(&fixed, "").unwrap();
    let changed = admin.post(&retry, json!({}));
    assert_eq!((changed.status, changed.code()), (409, "hook_changed"), "{}", changed.text);
    // Back to the hook the event was meant for: it runs, once.
    reload(&s, &config, &hook("A"));
    admin.post(&retry, json!({})).expect(200);
    wait_until("the retried hook", Duration::from_secs(20), || !lines(&log).is_empty());
    assert_eq!(lines(&log), vec![format!("A {id}")]);
    let again = admin.post(&retry, json!({}));
    assert_eq!((again.status, again.code()), (409, "nothing_to_retry"));

    // An on_grant whose grant has ended stays dead.
    std::fs::remove_file(&fixed).unwrap();
    let bob = s.user("bob", &[]);
    let other = bob.request("db", "1h").expect(201).id();
    kill_hook_delivery(&s, &other);
    bob.act(&other, "end").expect(200);
    let event =
        admin.get("/api/v1/outbox?sink=hook&state=failed").body["items"][0]["event_id"].as_str().unwrap().to_string();
    let late = admin.post(&format!("/api/v1/outbox/{event}/retry"), json!({}));
    assert_eq!((late.status, late.code()), (409, "grant_not_live"), "{}", late.text);
    let padded = admin.post(&format!("/api/v1/outbox/{}/retry", event.replace("evt_", "evt_0")), json!({}));
    assert_eq!(padded.status, 404, "only the canonical event id");
    assert_eq!(lines(&log).len(), 1);
}
