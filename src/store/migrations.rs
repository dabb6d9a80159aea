//! Schema versions keyed by `PRAGMA user_version`. A fresh database is built from
//! `schema.sql` in one step; an older one climbs the ordered steps in `migrations/`.
//! A database newer than this binary is refused: a downgrade could lose data.

use super::CachedRow;
use crate::error::{Error, Result};
use rusqlite::Connection;

/// The whole current schema.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// Step N takes a database from user_version N-1 to N.
pub const STEPS: &[&str] = &[include_str!("migrations/001_initial.sql")];

pub fn latest_version() -> i64 {
    STEPS.len() as i64
}

/// The version of an existing database that `migrate` is about to upgrade, or `None`
/// when nothing will change (already current, or a fresh empty file that gets the
/// whole schema). Refuses a database newer than this binary.
pub fn pending_upgrade(conn: &Connection) -> Result<Option<i64>> {
    let version = current_version(conn)?;
    if version == latest_version() || (version == 0 && is_empty(conn)?) {
        return Ok(None);
    }
    Ok(Some(version))
}

/// `PRAGMA user_version`, refusing one newer than this binary knows.
fn current_version(conn: &Connection) -> Result<i64> {
    let version: i64 = conn.row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = latest_version();
    if version > latest {
        return Err(Error::Startup(format!(
            "the database has schema version {version} but this jitgate knows only up to {latest}: run the newer jitgate, or restore a backup made by this version"
        )));
    }
    Ok(version)
}

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version = current_version(conn)?;
    let latest = latest_version();
    if version == latest {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    if version == 0 && is_empty(&tx)? {
        tx.execute_batch(SCHEMA)?;
    } else {
        for (i, step) in STEPS.iter().enumerate().skip(version as usize) {
            crate::info!("migrating database schema from version {i} to {}", i + 1);
            tx.execute_batch(step)?;
        }
    }
    tx.pragma_update(None, "user_version", latest)?;
    tx.commit()?;
    Ok(())
}

fn is_empty(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(n == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table's columns, every index and trigger, normalised for comparison.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut stmt = conn
            .prepare(
                "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .unwrap();
        let objects: Vec<(String, String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect();
        for (kind, name, table) in objects {
            out.push(format!("{kind} {name} on {table}"));
            if kind == "table" {
                let mut cols = conn.prepare(&format!("PRAGMA table_xinfo({name})")).unwrap();
                let rows = cols
                    .query_map([], |r| {
                        Ok(format!(
                            "  {} {} notnull={} default={:?} pk={}",
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, i64>(5)?
                        ))
                    })
                    .unwrap();
                out.extend(rows.map(|r| r.unwrap()));
                let mut fks = conn.prepare(&format!("PRAGMA foreign_key_list({name})")).unwrap();
                let rows = fks
                    .query_map([], |r| {
                        Ok(format!(
                            "  fk {}->{}.{} on_delete={}",
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(6)?
                        ))
                    })
                    .unwrap();
                out.extend(rows.map(|r| r.unwrap()));
            }
            if kind == "index" {
                let mut cols = conn.prepare(&format!("PRAGMA index_xinfo({name})")).unwrap();
                let rows = cols.query_map([], |r| Ok(format!("  col {:?}", r.get::<_, Option<String>>(2)?))).unwrap();
                out.extend(rows.map(|r| r.unwrap()));
            }
        }
        // CHECK constraints and trigger bodies live only in the SQL text.
        let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
        let sqls = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        out.extend(sqls.map(|s| s.unwrap().split_whitespace().collect::<Vec<_>>().join(" ")));
        out
    }

    #[test]
    fn migrated_database_equals_fresh_one() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        let mut stepped = Connection::open_in_memory().unwrap();
        stepped.execute_batch("CREATE TABLE placeholder_forcing_steps (x INTEGER); ").unwrap();
        migrate(&mut stepped).unwrap();
        stepped.execute_batch("DROP TABLE placeholder_forcing_steps;").unwrap();
        assert_eq!(shape(&fresh), shape(&stepped));
        let v: i64 = stepped.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, latest_version());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest_version() + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer jitgate"), "{err}");
    }
}
