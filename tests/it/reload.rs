//! SIGHUP: the hooks and notification channels of `--config` are re-read and swapped
//! without a restart; an invalid file is refused and the running set kept.

use crate::harness::{wait_until, Server};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

fn hup(s: &Server) {
    assert!(Command::new("kill").arg("-HUP").arg(s.pid().to_string()).status().unwrap().success());
}

fn hook(tag: &str, log: &std::path::Path) -> String {
    format!("[[hooks]]\nconnection = \"db\"\non_grant = 'echo \"{tag} $JITGATE_REQUEST_ID\" >> {}'\n", log.display())
}

#[test]
fn sighup_swaps_the_hooks_and_an_invalid_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let config = dir.path().join("jitgate.toml");
    std::fs::write(&config, hook("old", &log)).unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    s.connection("db", &[], json!({}));
    let alice = s.user("alice", &[]);
    let first = alice.request("db", "1h").expect(201).id();
    wait_until("the old hook", Duration::from_secs(20), || lines(&log).len() == 1);
    alice.act(&first, "end").expect(200);

    // A keep-alive connection opened before the reload must still work after it.
    let kept = s.admin();
    kept.get("/api/v1/connections").expect(200);

    std::fs::write(&config, hook("new", &log)).unwrap();
    hup(&s);
    wait_until("the reload", Duration::from_secs(10), || s.log().contains("reloaded on SIGHUP"));
    let reloaded = s.log().lines().filter(|l| l.contains("reloaded on SIGHUP")).count();
    assert_eq!(reloaded, 1, "one INFO line per reload:\n{}", s.log());
    assert!(s.log().lines().any(|l| l.starts_with("INFO") && l.contains("1 hooks")), "{}", s.log());
    let second = alice.request("db", "1h").expect(201).id();
    wait_until("the new hook", Duration::from_secs(20), || lines(&log).len() == 2);
    assert_eq!(lines(&log), vec![format!("old {first}"), format!("new {second}")]);
    alice.act(&second, "end").expect(200);

    // An invalid file: refused, logged, the new hooks kept, the server serving.
    std::fs::write(&config, format!("{}\nbogus_key = 1\n", hook("broken", &log))).unwrap();
    hup(&s);
    wait_until("the refusal", Duration::from_secs(10), || s.log().contains("not reloaded on SIGHUP"));
    let refusal = s.log().lines().find(|l| l.contains("not reloaded")).unwrap().to_string();
    assert!(refusal.starts_with("ERROR") && refusal.contains("bogus_key"), "{refusal}");
    kept.get("/api/v1/connections").expect(200);
    let third = alice.request("db", "1h").expect(201).id();
    wait_until("the kept hook", Duration::from_secs(20), || lines(&log).len() == 3);
    assert_eq!(lines(&log)[2], format!("new {third}"));
    assert!(!std::fs::read_to_string(&log).unwrap().contains("broken"));
}
