//! Administration over the API: connections, users, groups, tokens, the audit trail,
//! and `whoami`. Each command is one or a few API calls; the server decides who may.

use super::api::Api;
use super::output::{table, text, Out};
use super::requests::enc;
use crate::error::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Args, Debug, Default)]
pub struct Policy {
    /// A group whose members approve (repeat for several; each must approve).
    #[arg(long = "approval-group", value_name = "GROUP")]
    approval_groups: Vec<String>,
    /// Remove every approval group (requests are then approved at once).
    #[arg(long, conflicts_with = "approval_groups")]
    no_approval_groups: bool,
    /// Approvals needed from each group.
    #[arg(long, value_name = "N")]
    min_approvals: Option<u32>,
    #[arg(long, value_name = "DURATION")]
    default_duration: Option<String>,
    #[arg(long, value_name = "DURATION")]
    max_duration: Option<String>,
    /// How long a request may wait for approval before it is cancelled.
    #[arg(long, value_name = "DURATION")]
    pending_ttl: Option<String>,
    /// Require a reason on every request (`--require-reason false` to drop it).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    require_reason: Option<bool>,
    /// Approve admins' requests at once (`--auto-approve-admins false` to stop).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    auto_approve_admins: Option<bool>,
    /// postgres, tcp or generic.
    #[arg(long)]
    kind: Option<String>,
    /// host:port the gateway connects to (postgres and tcp).
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
}

impl Policy {
    fn body(self) -> Value {
        let mut m = Map::new();
        if !self.approval_groups.is_empty() || self.no_approval_groups {
            m.insert("approval_groups".into(), json!(self.approval_groups));
        }
        let fields = [
            ("min_approvals", self.min_approvals.map(|n| json!(n))),
            ("default_duration", self.default_duration.map(Value::String)),
            ("max_duration", self.max_duration.map(Value::String)),
            ("pending_ttl", self.pending_ttl.map(Value::String)),
            ("require_reason", self.require_reason.map(Value::Bool)),
            ("auto_approve_admins", self.auto_approve_admins.map(Value::Bool)),
            ("kind", self.kind.map(Value::String)),
            ("target", self.target.map(Value::String)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        Value::Object(m)
    }
}

#[derive(Subcommand, Debug)]
pub enum ConnectionsCommand {
    /// Create a connection.
    #[command(
        after_help = "Example:\n  jitgate connections create prod-postgres --kind postgres --target db.internal:5432 \\\n    --approval-group dba-team --approval-group security --max-duration 8h"
    )]
    Create {
        name: String,
        #[command(flatten)]
        policy: Policy,
    },
    /// Change the given fields of a connection's policy.
    #[command(after_help = "Example:\n  jitgate connections update prod-postgres --max-duration 4h --require-reason")]
    Update {
        name: String,
        #[command(flatten)]
        policy: Policy,
    },
    Show {
        name: String,
    },
    List,
    /// Delete a connection: its pending requests are cancelled and live grants revoked.
    Delete {
        name: String,
    },
}

fn connection_text(c: &Value) -> String {
    let groups: Vec<String> = c["approval_groups"].as_array().into_iter().flatten().map(text).collect();
    format!(
        "{}  kind={} target={} approvers=[{}] min_approvals={} default={} max={} pending_ttl={} auto_approve_admins={} require_reason={}",
        text(&c["name"]),
        text(&c["kind"]),
        text(&c["target"]),
        groups.join(", "),
        text(&c["min_approvals"]),
        text(&c["default_duration"]),
        text(&c["max_duration"]),
        text(&c["pending_ttl"]),
        text(&c["auto_approve_admins"]),
        text(&c["require_reason"])
    )
}

pub fn connections(api: &Api, out: Out, cmd: ConnectionsCommand) -> Result<i32> {
    let v = match cmd {
        ConnectionsCommand::Create { name, policy } => {
            let mut body = policy.body();
            body["name"] = json!(name);
            api.post("/api/v1/connections", &body)?
        }
        ConnectionsCommand::Update { name, policy } => {
            api.put(&format!("/api/v1/connections/{}", enc(&name)), &policy.body())?
        }
        ConnectionsCommand::Show { name } => api.get(&format!("/api/v1/connections/{}", enc(&name)))?,
        ConnectionsCommand::Delete { name } => api.delete(&format!("/api/v1/connections/{}", enc(&name)))?,
        ConnectionsCommand::List => {
            let page = all_pages(api, "/api/v1/connections")?;
            out.show(&page, || {
                page.as_array().into_iter().flatten().map(connection_text).collect::<Vec<_>>().join("\n")
            });
            return Ok(0);
        }
    };
    out.show(&v, || {
        if v["deleted"].is_string() {
            format!("deleted {}", text(&v["deleted"]))
        } else {
            connection_text(&v)
        }
    });
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user (token-only unless --password-stdin).
    #[command(
        after_help = "Examples:\n  jitgate users create alice --display-name 'Alice A.'\n  echo \"$PW\" | jitgate users create bob --password-stdin --admin"
    )]
    Create {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    Show {
        username: String,
    },
    /// Change a user: admin flag, disabled, display name, password.
    Update {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long, value_name = "BOOL")]
        admin: Option<bool>,
        /// Disable (true) or enable (false); disabling cancels their requests and revokes their grants.
        #[arg(long, value_name = "BOOL")]
        disabled: Option<bool>,
        /// Read a new password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user: ends their access, keeps their history.
    Delete {
        username: String,
    },
}

fn user_text(u: &Value) -> String {
    let groups: Vec<String> = u["groups"].as_array().into_iter().flatten().map(text).collect();
    format!(
        "{}  admin={} disabled={} groups=[{}] name={}",
        text(&u["username"]),
        text(&u["admin"]),
        text(&u["disabled"]),
        groups.join(", "),
        text(&u["display_name"])
    )
}

pub fn users(api: &Api, out: Out, cmd: UsersCommand) -> Result<i32> {
    let v = match cmd {
        UsersCommand::Create { username, display_name, admin, password_stdin } => {
            let password = if password_stdin { Some(super::read_stdin_line()?) } else { None };
            api.post(
                "/api/v1/users",
                &json!({"username": username, "display_name": display_name, "admin": admin, "password": password}),
            )?
        }
        UsersCommand::Show { username } => api.get(&format!("/api/v1/users/{}", enc(&username)))?,
        UsersCommand::Update { username, display_name, admin, disabled, password_stdin } => {
            let mut body = Map::new();
            if let Some(d) = display_name {
                body.insert("display_name".into(), json!(d));
            }
            if let Some(a) = admin {
                body.insert("admin".into(), json!(a));
            }
            if let Some(d) = disabled {
                body.insert("disabled".into(), json!(d));
            }
            if password_stdin {
                body.insert("password".into(), json!(super::read_stdin_line()?));
            }
            api.patch(&format!("/api/v1/users/{}", enc(&username)), &Value::Object(body))?
        }
        UsersCommand::Delete { username } => api.delete(&format!("/api/v1/users/{}", enc(&username)))?,
        UsersCommand::List => {
            let all = all_pages(api, "/api/v1/users")?;
            out.show(&all, || all.as_array().into_iter().flatten().map(user_text).collect::<Vec<_>>().join("\n"));
            return Ok(0);
        }
    };
    out.show(&v, || if v["deleted"].is_string() { format!("deleted {}", text(&v["deleted"])) } else { user_text(&v) });
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    Create {
        name: String,
    },
    List,
    Show {
        name: String,
    },
    /// Delete a group (refused while a connection uses it).
    Delete {
        name: String,
    },
    /// Add a user to a group.
    #[command(after_help = "Example:\n  jitgate groups add-member dba-team bob")]
    AddMember {
        group: String,
        user: String,
    },
    RemoveMember {
        group: String,
        user: String,
    },
}

fn group_text(g: &Value) -> String {
    let members: Vec<String> = g["members"].as_array().into_iter().flatten().map(text).collect();
    format!("{}  members=[{}]", text(&g["name"]), members.join(", "))
}

pub fn groups(api: &Api, out: Out, cmd: GroupsCommand) -> Result<i32> {
    let v = match cmd {
        GroupsCommand::Create { name } => api.post("/api/v1/groups", &json!({"name": name}))?,
        GroupsCommand::Show { name } => api.get(&format!("/api/v1/groups/{}", enc(&name)))?,
        GroupsCommand::Delete { name } => api.delete(&format!("/api/v1/groups/{}", enc(&name)))?,
        GroupsCommand::AddMember { group, user } => {
            api.put(&format!("/api/v1/groups/{}/members/{}", enc(&group), enc(&user)), &json!({}))?
        }
        GroupsCommand::RemoveMember { group, user } => {
            api.delete(&format!("/api/v1/groups/{}/members/{}", enc(&group), enc(&user)))?
        }
        GroupsCommand::List => {
            let all = all_pages(api, "/api/v1/groups")?;
            out.show(&all, || all.as_array().into_iter().flatten().map(group_text).collect::<Vec<_>>().join("\n"));
            return Ok(0);
        }
    };
    out.show(&v, || if v["deleted"].is_string() { format!("deleted {}", text(&v["deleted"])) } else { group_text(&v) });
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Mint a token (shown once).
    #[command(
        after_help = "Examples:\n  jitgate tokens create ci --expires-in 30d\n  jitgate tokens create envoy --user svc-proxy --scope check"
    )]
    Create {
        name: String,
        /// Whose token (default: yours).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// api (default), check (only /access/check) or metrics (only /metrics).
        #[arg(long)]
        scope: Option<String>,
    },
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its id (tok_…).
    Revoke {
        id: String,
        #[arg(long)]
        user: Option<String>,
    },
}

fn me(api: &Api, user: Option<String>) -> Result<String> {
    match user {
        Some(u) => Ok(u),
        None => Ok(text(&api.get("/api/v1/me")?["username"])),
    }
}

pub fn tokens(api: &Api, out: Out, cmd: TokensCommand) -> Result<i32> {
    match cmd {
        TokensCommand::Create { name, user, expires_in, scope } => {
            let user = me(api, user)?;
            let v = api.post(
                &format!("/api/v1/users/{}/tokens", enc(&user)),
                &json!({"name": name, "expires_in": expires_in, "scope": scope}),
            )?;
            out.show(&v, || {
                format!("{}\n(token {} for {}; it is shown only this once)", text(&v["token"]), text(&v["id"]), user)
            });
        }
        TokensCommand::List { user } => {
            let user = me(api, user)?;
            let all = all_pages(api, &format!("/api/v1/users/{}/tokens", enc(&user)))?;
            out.show(&all, || {
                let rows: Vec<Vec<String>> = all
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            text(&t["id"]),
                            text(&t["name"]),
                            text(&t["scope"]),
                            text(&t["created_at"]),
                            text(&t["expires_at"]),
                            text(&t["last_used_at"]),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "LAST USED"], &rows)
            });
        }
        TokensCommand::Revoke { id, user } => {
            let user = me(api, user)?;
            let v = api.delete(&format!("/api/v1/users/{}/tokens/{}", enc(&user), enc(&id)))?;
            out.show(&v, || format!("revoked {id}"));
        }
    }
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// The newest events, newest first.
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// The object acted on (a request id, a user or connection name…).
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Verify the hash chain on the server. Exit 1 if a link is broken.
    Verify,
    /// Every event as JSON lines, oldest first (for archiving off the box).
    Export,
}

pub fn audit(api: &Api, out: Out, cmd: AuditCommand) -> Result<i32> {
    match cmd {
        AuditCommand::List { actor, action, target, limit } => {
            let mut q = vec![format!("limit={limit}")];
            for (k, v) in [("actor", actor), ("action", action), ("target", target)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let page = api.get(&format!("/api/v1/audit?{}", q.join("&")))?;
            out.show(&page, || {
                let rows: Vec<Vec<String>> = page["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        vec![
                            text(&e["seq"]),
                            text(&e["at"]),
                            text(&e["actor"]),
                            text(&e["action"]),
                            text(&e["target"]),
                            e["detail"].to_string(),
                        ]
                    })
                    .collect();
                table(&["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "DETAIL"], &rows)
            });
            Ok(0)
        }
        AuditCommand::Verify => {
            let v = api.get("/api/v1/audit/verify")?;
            let ok = v["ok"] == true;
            out.show(&v, || {
                if ok {
                    format!("audit chain intact: {} events", text(&v["events"]))
                } else {
                    format!("audit chain BROKEN at event {}: {}", text(&v["first_bad"]), text(&v["problem"]))
                }
            });
            Ok(if ok { 0 } else { 1 })
        }
        AuditCommand::Export => {
            let mut events = all_pages(api, "/api/v1/audit")?.as_array().cloned().unwrap_or_default();
            events.reverse();
            for e in events {
                say!("{e}");
            }
            Ok(0)
        }
    }
}

pub fn whoami(api: &Api, out: Out) -> Result<i32> {
    let v = api.get("/api/v1/me")?;
    out.show(&v, || {
        format!("{} on {}{}", text(&v["username"]), api.target.server, if v["admin"] == true { " (admin)" } else { "" })
    });
    Ok(0)
}

/// Follows `next_cursor` to the end; returns all items as one JSON array.
fn all_pages(api: &Api, path: &str) -> Result<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=200&cursor={c}"),
            None => format!("{path}{sep}limit=200"),
        };
        let page = api.get(&url)?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(Value::Array(items)),
        }
    }
}
