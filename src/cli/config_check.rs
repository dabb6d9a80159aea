//! `jitgate config check FILE`: parses and validates a server config exactly as
//! `serve --config FILE` would (unknown keys are named), then prints the effective
//! configuration, defaults filled in. Touches nothing: no data dir, no socket.
//!
//! Secrets: no key of today's config holds one (TLS keys are paths); a key that
//! does (a webhook secret) must be printed as "(set)" here, never its value.

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
            "max_connections": c.max_connections,
            "max_connections_per_ip": c.max_connections_per_ip,
            "handshake_timeout": secs(c.handshake_timeout),
            "head_timeout": secs(c.head_timeout),
            "body_timeout": secs(c.body_timeout),
            "idle_timeout": secs(c.idle_timeout),
            "max_waiters": c.max_waiters,
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
        "backup": match &c.backup {
            Some(b) => json!({"dir": b.dir, "interval": secs(b.interval), "keep": b.keep}),
            None => json!("off (set [backup] interval to turn on)"),
        },
    })
}

/// A TOML-looking rendering for people: top-level keys, then one table per object.
fn to_toml(v: &Value) -> String {
    let mut top = String::new();
    let mut tables = String::new();
    if let Value::Object(map) = v {
        for (k, val) in map {
            match val {
                Value::Object(inner) => {
                    tables.push_str(&format!("\n[{k}]\n"));
                    for (ik, iv) in inner.iter().filter(|(_, v)| !v.is_null()) {
                        tables.push_str(&format!("{ik} = {iv}\n"));
                    }
                }
                // An array of tables (`[[hooks]]`): one block each.
                Value::Array(items) if items.iter().all(Value::is_object) => {
                    for item in items.iter().filter_map(Value::as_object) {
                        tables.push_str(&format!("\n[[{k}]]\n"));
                        for (ik, iv) in item.iter().filter(|(_, v)| !v.is_null()) {
                            tables.push_str(&format!("{ik} = {iv}\n"));
                        }
                    }
                }
                other => top.push_str(&format!("{k} = {other}\n")),
            }
        }
    }
    format!("{top}{tables}").trim_end().to_string()
}
