//! `jitgate config check FILE`: parses and validates a server config exactly as
//! `serve --config FILE` would (unknown keys are named), then prints the effective
//! configuration, defaults filled in. Touches nothing: no data dir, no socket.
//!
//! Secrets (webhook `secret`, Slack `signing_secret`, SMTP `password`, Mattermost
//! `action_secret`, whether inline or from `*_file`) are printed as `MASK`, never
//! their value; so is the path of Slack and Teams webhook URLs (their token).

use super::output::Out;
use crate::config::ServeConfig;
use crate::error::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a server config file and print the effective settings (exit 2 if bad).
    #[command(after_help = "Example:\n  jitgate config check /etc/jitgate/jitgate.toml")]
    Check { file: PathBuf },
}

pub fn run(out: Out, cmd: ConfigCommand) -> Result<i32> {
    match cmd {
        ConfigCommand::Check { file } => {
            let cfg = super::serve::effective(file.clone())?;
            let v = effective(&cfg);
            out.show(&json!({"ok": true, "file": file, "effective": v}), || {
                format!("{}: ok\n\n# effective configuration (defaults filled in)\n{}", file.display(), to_toml(&v))
            });
            Ok(0)
        }
    }
}

/// What is shown in place of a secret.
pub const MASK: &str = "********";

fn secs(d: std::time::Duration) -> String {
    crate::domain::duration::format(d.as_secs())
}

fn effective(c: &ServeConfig) -> Value {
    let tls = match (&c.tls_cert, &c.tls_key) {
        _ if c.plain_http => json!("off (plain HTTP)"),
        (Some(cert), Some(key)) => json!({"cert": cert, "key": key}),
        _ => json!("self-signed (made in the data dir)"),
    };
    json!({
        "listen": c.listen.to_string(),
        "data_dir": c.data_dir,
        "public_url": c.public_url.clone().unwrap_or_else(|| "(the bound address)".into()),
        "tls": tls,
        "plain_http": c.plain_http,
        "behind_proxy": c.behind_proxy,
        "workers": c.workers,
        "allow_root": c.allow_root,
        "limits": {
            "max_connections": c.limits.max_connections,
            "max_connections_per_ip": c.limits.max_connections_per_ip,
            "handshake_timeout": secs(c.limits.handshake_timeout),
            "head_timeout": secs(c.limits.head_timeout),
            "body_timeout": secs(c.limits.body_timeout),
            "idle_timeout": secs(c.limits.idle_timeout),
            "max_waiters": c.max_waiters,
            "max_streams_per_grant": c.max_streams_per_grant,
            "max_sessions_per_grant": c.max_sessions_per_grant,
        },
        "login": {
            "attempts_per_minute": c.login_attempts_per_minute,
            "session_lifetime": secs(c.session_lifetime),
        },
        "hooks": c.hooks.iter().map(|h| json!({
            "connection": h.connection,
            "on_grant": h.on_grant,
            "on_end": h.on_end,
            "on_revoke": h.on_revoke,
            "timeout": h.timeout().map(secs).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "notify": notify(&c.notify),
        "backup": match &c.backup {
            Some(b) => json!({"dir": b.dir, "interval": secs(b.interval), "keep": b.keep}),
            None => json!("off (set [backup] interval to turn on)"),
        },
    })
}

/// `[notify]` with every secret masked.
fn notify(n: &crate::notify::config::NotifyConfig) -> Value {
    let mask = |set: bool| if set { json!(MASK) } else { Value::Null };
    json!({
        "max_attempts": n.max_attempts(),
        "retry_after": n.retry_after().map(secs).unwrap_or_default(),
        "webhook": n.webhook.iter().map(|w| json!({
            "url": w.url,
            "secret": mask(true),
            "secret_file": w.secret_file,
            "connections": w.connections,
        })).collect::<Vec<_>>(),
        "slack": n.slack.iter().map(|s| json!({
            "url": mask_url(&s.url),
            "style": s.style.as_deref().unwrap_or("slack"),
            "signing_secret": mask(s.signing_secret.is_some()),
            "signing_secret_file": s.signing_secret_file,
            "connections": s.connections,
        })).collect::<Vec<_>>(),
        "teams": n.teams.iter().map(|t| json!({"url": mask_url(&t.url), "connections": t.connections}))
            .collect::<Vec<_>>(),
        "email": n.email.as_ref().map(|e| json!({
            "server": e.server,
            "tls": e.tls_mode(),
            "from": e.from,
            "username": e.username,
            "password": mask(e.password.is_some()),
            "password_file": e.password_file,
            "connections": e.connections,
        })),
        "mattermost": n.mattermost.as_ref().map(|m| json!({
            "action_secret": mask(true),
            "action_secret_file": m.action_secret_file,
            "allowed_sources": m.allowed_sources,
        })),
        "slack_dm": n.slack_dm.as_ref().map(|d| json!({
            "bot_token": mask(true),
            "bot_token_file": d.bot_token_file,
            "signing_secret": mask(d.signing_secret.is_some()),
            "signing_secret_file": d.signing_secret_file,
            "api_url": d.post_message_url().trim_end_matches("/chat.postMessage"),
            "connections": d.connections,
        })),
    })
}

/// `https://hooks.slack.com/********`: an incoming webhook's path is its credential.
fn mask_url(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let keep = url.len() - rest.len() + host_len;
    if keep == url.len() {
        url.to_string()
    } else {
        format!("{}/{MASK}", &url[..keep])
    }
}

/// A TOML-looking rendering for people: keys, then one table per object, nested
/// (`[notify]`, `[[notify.webhook]]`); unset keys are left out.
fn to_toml(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = v {
        table(&mut out, "", map);
    }
    out.trim().to_string()
}

fn table(out: &mut String, path: &str, map: &serde_json::Map<String, Value>) {
    let is_tables = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object));
    for (k, val) in map.iter().filter(|(_, v)| !v.is_null() && !v.is_object() && !is_tables(v)) {
        out.push_str(&format!("{k} = {val}\n"));
    }
    let name = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    for (k, val) in map {
        if let Value::Object(inner) = val {
            out.push_str(&format!("\n[{}]\n", name(k)));
            table(out, &name(k), inner);
        }
    }
    // An array of tables (`[[hooks]]`): one block each.
    for (k, items) in map.iter().filter(|(_, v)| is_tables(v)).filter_map(|(k, v)| Some((k, v.as_array()?))) {
        for item in items.iter().filter_map(Value::as_object) {
            out.push_str(&format!("\n[[{}]]\n", name(k)));
            table(out, &name(k), item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_keep_only_their_host() {
        assert_eq!(mask_url("https://hooks.slack.com/services/T/B/X"), "https://hooks.slack.com/********");
        assert_eq!(mask_url("http://mm.internal:8065"), "http://mm.internal:8065");
        assert_eq!(mask_url("https://h?token=1"), "https://h/********");
    }

    #[test]
    fn nested_tables_render_as_toml() {
        let v = json!({"a": 1, "n": {"b": 2, "w": [{"c": 3}], "e": []}, "h": [{"d": null, "x": "y"}]});
        let t = to_toml(&v);
        assert_eq!(t, "a = 1\n\n[n]\nb = 2\ne = []\n\n[[n.w]]\nc = 3\n\n[[h]]\nx = \"y\"");
    }
}
