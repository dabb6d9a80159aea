//! Connections and their approval groups. A deleted connection keeps its row for the
//! requests that point at it, frees its name, and ends every open request on it.

use super::{found, requests, users, CachedRow, Page};
use crate::audit;
use crate::domain::duration;
use crate::domain::policy::{Connection, Kind};
use crate::error::{Error, Result};
use rusqlite::{params, Connection as Db, Row, Transaction};
use serde_json::{json, Value};

const COLUMNS: &str = "id, name, kind, target, min_approvals, default_duration, max_duration, pending_ttl, auto_approve_admins, require_reason";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Connection)> {
    let kind: String = r.get(2)?;
    Ok((
        r.get(0)?,
        Connection {
            name: r.get(1)?,
            kind: Kind::parse(&kind).unwrap_or(Kind::Generic),
            target: r.get(3)?,
            approval_groups: Vec::new(),
            min_approvals: r.get(4)?,
            default_duration: r.get(5)?,
            max_duration: r.get(6)?,
            pending_ttl: r.get(7)?,
            auto_approve_admins: r.get(8)?,
            require_reason: r.get(9)?,
        },
    ))
}

/// A live connection by name, with its internal id.
pub fn get_with_id(conn: &Db, name: &str) -> Result<(i64, Connection)> {
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE name = ?1 AND deleted_at IS NULL");
    let (id, mut c) = found("connection", name, conn.row(&sql, [name], row))?;
    c.approval_groups = groups_of(conn, id)?;
    Ok((id, c))
}

pub fn get(conn: &Db, name: &str) -> Result<Connection> {
    get_with_id(conn, name).map(|(_, c)| c)
}

/// Any connection by id, deleted ones included (requests outlive their connection).
pub fn get_by_id(conn: &Db, id: i64) -> Result<Connection> {
    let sql = format!("SELECT {COLUMNS} FROM connections WHERE id = ?1");
    let (_, mut c) = found("connection", &id.to_string(), conn.row(&sql, [id], row))?;
    c.approval_groups = groups_of(conn, id)?;
    Ok(c)
}

fn groups_of(conn: &Db, id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT g.name FROM connection_groups cg JOIN groups g ON g.id = cg.group_id WHERE cg.connection_id = ?1 ORDER BY cg.position",
    )?;
    let rows = stmt.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

pub fn list(conn: &Db, page: &Page) -> Result<(Vec<Connection>, Option<String>)> {
    let sql =
        format!("SELECT {COLUMNS} FROM connections WHERE deleted_at IS NULL AND id < ?1 ORDER BY id DESC LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![page.before_or_max(), page.fetch_limit()], row)?;
    let mut out = Vec::new();
    for r in rows {
        let (id, mut c) = r?;
        c.approval_groups = groups_of(conn, id)?;
        out.push((id, c));
    }
    Ok(page.finish(out))
}

/// The policy as recorded in audit events.
pub fn policy_json(c: &Connection) -> Value {
    json!({
        "kind": c.kind.as_str(),
        "target": c.target,
        "approval_groups": c.approval_groups,
        "min_approvals": c.min_approvals,
        "default_duration": duration::format(c.default_duration),
        "max_duration": duration::format(c.max_duration),
        "pending_ttl": duration::format(c.pending_ttl),
        "auto_approve_admins": c.auto_approve_admins,
        "require_reason": c.require_reason,
    })
}

pub fn create(tx: &Transaction<'_>, actor: &str, c: &Connection, now: i64) -> Result<Connection> {
    c.validate()?;
    if get(tx, &c.name).is_ok() {
        return Err(Error::conflict("already_exists", format!("connection {} already exists", c.name)));
    }
    tx.execute(
        "INSERT INTO connections (name, kind, target, min_approvals, default_duration, max_duration, pending_ttl, auto_approve_admins, require_reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        params![c.name, c.kind.as_str(), c.target, c.min_approvals, c.default_duration, c.max_duration, c.pending_ttl, c.auto_approve_admins, c.require_reason, now],
    )?;
    let id = tx.last_insert_rowid();
    set_groups(tx, id, &c.approval_groups)?;
    audit::append(tx, now, actor, "connection.created", &c.name, policy_json(c))?;
    get(tx, &c.name)
}

fn set_groups(tx: &Transaction<'_>, id: i64, groups: &[String]) -> Result<()> {
    tx.execute("DELETE FROM connection_groups WHERE connection_id = ?1", [id])?;
    for (position, name) in groups.iter().enumerate() {
        let gid = users::group_id(tx, name).map_err(|_| {
            Error::bad("unknown_group", format!("approval group {name} does not exist: create it first"))
        })?;
        tx.execute(
            "INSERT INTO connection_groups (connection_id, group_id, position) VALUES (?1, ?2, ?3)",
            params![id, gid, position as i64],
        )?;
    }
    Ok(())
}

/// Replaces the policy of `name` with `c` (whose name must be the same).
pub fn update(tx: &Transaction<'_>, actor: &str, name: &str, c: &Connection, now: i64) -> Result<Connection> {
    c.validate()?;
    let (id, before) = get_with_id(tx, name)?;
    if c.name != name {
        return Err(Error::bad("bad_request", "a connection cannot be renamed: create a new one"));
    }
    tx.execute(
        "UPDATE connections SET kind = ?1, target = ?2, min_approvals = ?3, default_duration = ?4, max_duration = ?5, pending_ttl = ?6,
         auto_approve_admins = ?7, require_reason = ?8, updated_at = ?9 WHERE id = ?10",
        params![c.kind.as_str(), c.target, c.min_approvals, c.default_duration, c.max_duration, c.pending_ttl, c.auto_approve_admins, c.require_reason, now, id],
    )?;
    set_groups(tx, id, &c.approval_groups)?;
    audit::append(
        tx,
        now,
        actor,
        "connection.updated",
        name,
        json!({"before": policy_json(&before), "after": policy_json(c)}),
    )?;
    get(tx, name)
}

/// Deletes a connection: cancels its pending requests and revokes its live grants.
pub fn delete(tx: &Transaction<'_>, actor: &str, name: &str, now: i64) -> Result<()> {
    let (id, c) = get_with_id(tx, name)?;
    requests::close_all_for_connection(tx, id, actor, "connection deleted", now)?;
    tx.execute("DELETE FROM connection_groups WHERE connection_id = ?1", [id])?;
    tx.execute("UPDATE connections SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2", params![now, id])?;
    audit::append(tx, now, actor, "connection.deleted", name, policy_json(&c))?;
    Ok(())
}
