//! SQLite storage. One writer connection behind a mutex (write transactions are
//! `BEGIN IMMEDIATE`), and a small pool of read connections: WAL lets readers run
//! beside the writer. `synchronous=FULL`: once a call returns, its change is on disk.
//!
//! Each aggregate has its module; functions speak in domain types and keep their SQL
//! beside them. The store never imports the server.

pub mod backup;
pub mod chat;
pub mod connections;
pub mod migrations;
pub mod outbox;
pub mod requests;
pub mod sessions;
pub mod streams;
pub mod tokens;
pub mod users;

use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const READ_POOL_MAX: usize = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Store {
    /// Opens (creating if absent) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, |_, _| Ok(()))
    }

    /// Like `open`, but calls `before_upgrade(conn, from_version)` first when an
    /// existing database is about to be migrated (never for a fresh or current one),
    /// so that a backup is taken before any schema step runs; its error stops the open.
    pub fn open_with(path: &Path, before_upgrade: impl FnOnce(&Connection, i64) -> Result<()>) -> Result<Store> {
        let mut writer = open_connection(path, true)?;
        if let Some(from) = migrations::pending_upgrade(&writer)? {
            before_upgrade(&writer, from)?;
        }
        migrations::migrate(&mut writer)?;
        Ok(Store { path: path.to_path_buf(), writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if `f` succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` on a read connection, inside one read transaction so that it sees
    /// one consistent snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers)?.pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path, false)?,
        };
        let result = read_snapshot(&mut conn, f);
        let mut pool = lock(&self.readers)?;
        if pool.len() < READ_POOL_MAX {
            pool.push(conn);
        }
        result
    }

    /// Proves the database takes a write lock (for /healthz), without writing.
    pub fn check_writable(&self) -> Result<()> {
        let mut conn = lock(&self.writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
        tx.rollback()?;
        Ok(())
    }

    /// Checkpoints the WAL into the main file; called on clean shutdown.
    pub fn close(&self) -> Result<()> {
        lock(&self.readers)?.clear();
        let conn = lock(&self.writer)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

fn read_snapshot<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let value = f(&tx)?;
    tx.finish()?;
    Ok(value)
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::Internal("database lock poisoned".into()))
}

/// Opens one connection with jitgate's settings.
pub fn open_connection(path: &Path, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// `query_row` through the connection's statement cache: the hot queries (loading a
/// request, a user, a token) are compiled once per connection, not on every call.
pub(crate) trait CachedRow {
    fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl CachedRow for Connection {
    fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Maps "no row" to a 404 naming what was looked for.
pub(crate) fn found<T>(what: &'static str, name: &str, r: rusqlite::Result<T>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(Error::not_found(what, name)),
        Err(e) => Err(e.into()),
    }
}

/// A page of a newest-first list: `cursor` is the `seq` to continue below.
pub struct Page {
    pub limit: u32,
    pub before: Option<i64>,
}

impl Page {
    pub const MAX_LIMIT: u32 = 200;
    pub const DEFAULT_LIMIT: u32 = 50;

    /// Fetch one more than asked so the caller knows if there is a next page.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    pub fn before_or_max(&self) -> i64 {
        self.before.unwrap_or(i64::MAX)
    }

    /// Splits the over-fetched rows into the page and the next cursor.
    pub fn finish<T>(&self, mut rows: Vec<(i64, T)>) -> (Vec<T>, Option<String>) {
        let next = if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            rows.last().map(|(seq, _)| seq.to_string())
        } else {
            None
        };
        (rows.into_iter().map(|(_, v)| v).collect(), next)
    }
}
