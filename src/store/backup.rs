//! Consistent copies of the database, and putting one back.
//!
//! A copy is `VACUUM INTO` on a connection of its own: it reads one snapshot (WAL lets
//! the server's writer go on meanwhile), so the copy is consistent without stopping
//! anything. Every copy is written beside its destination under a temporary name
//! (0600 from the first byte), made a single self-contained file (journal mode
//! DELETE), checked (`PRAGMA integrity_check`, and the audit chain for a full
//! backup), synced, and only then renamed into place: a failed or interrupted backup
//! never replaces a good one.
//!
//! Restore only ever runs on a stopped data dir, and keeps the database it replaces.
//! This module never touches a running server's files other than by reading.

use super::CachedRow;
use crate::audit;
use crate::datadir::DB_FILE;
use crate::error::{Error, Result};
use crate::store::migrations::latest_version;
use rusqlite::{Connection, OpenFlags};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a verified backup holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub schema_version: i64,
    pub audit_events: i64,
    pub bytes: u64,
}

/// Copies the database behind `conn` to `dest` and verifies the copy: integrity and
/// audit chain. `conn` must not be inside a transaction (`VACUUM` refuses that).
pub fn backup(conn: &Connection, dest: &Path) -> Result<Checked> {
    copy(conn, dest, check)
}

/// Opens the database file at `db` on a connection of its own (never the server's
/// writer) and backs it up to `dest`: safe while a server runs on it.
pub fn backup_file(db: &Path, dest: &Path) -> Result<Checked> {
    let conn = crate::store::open_connection(db, false)?;
    backup(&conn, dest)
}

/// A copy taken before a schema upgrade: only its integrity is checked, as an older
/// schema may predate what `check` looks at.
pub fn backup_before_upgrade(conn: &Connection, dest: &Path) -> Result<()> {
    copy(conn, dest, integrity)
}

/// Where backups go unless configured otherwise: `backups/` in the data dir (0700).
pub const BACKUP_SUBDIR: &str = "backups";

/// Takes the copy a newer binary makes before it migrates an older database:
/// `DATA/backups/pre-upgrade-v<FROM>-<time>.db`. Returns its path.
pub fn before_upgrade(conn: &Connection, data_dir: &Path, from: i64, now_ms: i64) -> Result<PathBuf> {
    let dir = data_dir.join(BACKUP_SUBDIR);
    crate::datadir::prepare(&dir)?;
    follow_owner(&dir, data_dir);
    let dest = dir.join(format!("pre-upgrade-v{from}-{}.db", stamp(now_ms)));
    backup_before_upgrade(conn, &dest)?;
    follow_owner(&dest, data_dir);
    crate::info!(
        "backed up the database (schema version {from}) to {} before upgrading it to version {}",
        dest.display(),
        latest_version()
    );
    Ok(dest)
}

/// A UTC time that sorts as it reads: `20260101T120000Z`.
pub fn stamp(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| now_ms.to_string())
}

/// Verifies a backup file: it opens, passes `PRAGMA integrity_check`, and its audit
/// chain verifies. Never writes to it.
pub fn check(path: &Path) -> Result<Checked> {
    integrity(path)?;
    let conn = open_read_only(path)?;
    let schema_version: i64 = conn.row("PRAGMA user_version", [], |r| r.get(0))?;
    let v = audit::verify(&conn)?;
    if !v.ok {
        return Err(Error::Startup(format!(
            "{}: the audit chain is broken at event {} ({}): this copy was changed after it was written",
            path.display(),
            v.first_bad.unwrap_or(0),
            v.problem.unwrap_or_default()
        )));
    }
    let bytes = fs::metadata(path)?.len();
    Ok(Checked { schema_version, audit_events: v.events, bytes })
}

fn integrity(path: &Path) -> Result<()> {
    let conn = open_read_only(path)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    if rows != ["ok"] {
        return Err(Error::Startup(format!(
            "{} fails the SQLite integrity check: {}",
            path.display(),
            rows.into_iter().take(5).collect::<Vec<_>>().join("; ")
        )));
    }
    Ok(())
}

fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::Startup(format!("no database file at {}", path.display())));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::Startup(format!("{} does not open as a database: {e}", path.display())))?;
    // A file that is not SQLite opens lazily and fails at the first read: say so.
    conn.row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map_err(|e| Error::Startup(format!("{} is not a jitgate database: {e}", path.display())))?;
    Ok(conn)
}

fn copy<T>(conn: &Connection, dest: &Path, verify: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = partial_name(dest)?;
    let result = (|| {
        create_private_empty(&tmp)?;
        let target = tmp.to_str().ok_or_else(|| Error::Startup(format!("{}: not a UTF-8 path", tmp.display())))?;
        conn.execute("VACUUM INTO ?1", [target])?;
        // One self-contained file: no -wal beside it to forget when it is copied away.
        let out = Connection::open(&tmp)?;
        out.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0))?;
        drop(out);
        let value = verify(&tmp)?;
        OpenOptions::new().read(true).open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dest)?;
        sync_parent(dest)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(journal_of(&tmp));
    }
    result
}

/// `.NAME.partial` beside `dest`, so that the final rename stays on one file system.
fn partial_name(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Startup(format!("{}: name a file to write", dest.display())))?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Startup(format!("{}: no such directory (create it first)", dir.display())));
    }
    if dest.is_dir() {
        return Err(Error::Startup(format!("{} is a directory: name a file to write", dest.display())));
    }
    Ok(dir.join(format!(".{name}.partial")))
}

fn journal_of(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-journal");
    PathBuf::from(s)
}

/// An empty file only the owner can read: `VACUUM INTO` accepts an empty file, and
/// the copy never exists with a wider mode, whatever the umask.
fn create_private_empty(path: &Path) -> Result<()> {
    let _ = fs::remove_file(path);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Startup(format!("cannot write {}: {e}", path.display())))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What `restore` did.
#[derive(Debug, serde::Serialize)]
pub struct Restored {
    pub checked: Checked,
    /// Where the database that was replaced now lives (with its -wal, if any).
    pub kept: Option<PathBuf>,
}

/// Puts the backup `from` in place as `data_dir`'s database. The data dir must be
/// stopped (no server answers on its internal socket). The backup is verified first,
/// and one made by a newer jitgate is refused; the replaced database is renamed to
/// `jitgate.db.before-restore-<time>` (with its -wal and -shm), never deleted.
pub fn restore(from: &Path, data_dir: &Path, now_ms: i64) -> Result<Restored> {
    let checked = check(from)?;
    let latest = latest_version();
    if checked.schema_version > latest {
        return Err(Error::Startup(format!(
            "{} has schema version {} but this jitgate knows only up to {latest}: restore it with the newer jitgate that made it",
            from.display(),
            checked.schema_version
        )));
    }
    if server_running(data_dir) {
        return Err(Error::Startup(format!(
            "a jitgate server is running on {}: stop it first (`systemctl stop jitgate`)",
            data_dir.display()
        )));
    }
    crate::datadir::prepare(data_dir)?;
    let db = data_dir.join(DB_FILE);
    let kept = if db.exists() {
        let aside = data_dir.join(format!("{DB_FILE}.before-restore-{}", stamp(now_ms)));
        // The -wal may hold committed changes: it moves with its database.
        for suffix in ["-wal", "-shm", ""] {
            let from = with_suffix(&db, suffix);
            if from.exists() {
                fs::rename(&from, with_suffix(&aside, suffix))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    let tmp = data_dir.join(format!("{DB_FILE}.restore-partial"));
    create_private_empty(&tmp)?;
    fs::copy(from, &tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    follow_owner(&tmp, data_dir);
    OpenOptions::new().read(true).open(&tmp)?.sync_all()?;
    fs::rename(&tmp, &db)?;
    sync_parent(&db)?;
    Ok(Restored { checked, kept })
}

/// Gives `path` the owner of `like` (the data dir) when they differ: a restore run
/// with `sudo` must leave files the service user can open. Only root can, so a
/// failure is a warning, never an error.
fn follow_owner(path: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(want), Ok(have)) = (fs::metadata(like), fs::metadata(path)) else { return };
    if (want.uid(), want.gid()) != (have.uid(), have.gid()) {
        if let Err(e) = std::os::unix::fs::chown(path, Some(want.uid()), Some(want.gid())) {
            crate::warn!("cannot give {} the owner of {}: {e}", path.display(), like.display());
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether a server answers on the data dir's internal socket (`run/http.sock`, see
/// `datadir::socket_dir`). A socket file left by a crash refuses the connection.
fn server_running(data_dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(data_dir.join("run").join("http.sock")).is_ok()
}

/// Removes the oldest files named `PREFIX…SUFFIX` in `dir` until `keep` are left.
/// Names carry a sortable UTC time, so name order is age order. Returns what went.
pub fn prune(dir: &Path, prefix: &str, suffix: &str, keep: usize) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(keep);
    let gone: Vec<PathBuf> = found.into_iter().take(excess).collect();
    for p in &gone {
        fs::remove_file(p)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store_in(dir: &Path) -> Store {
        let store = Store::open(&dir.join("jitgate.db")).unwrap();
        store.write(|tx| crate::audit::append(tx, 1, "system", "test.event", "x", serde_json::json!({}))).unwrap();
        store
    }

    #[test]
    fn a_backup_is_private_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let dest = dir.path().join("copy.db");
        let checked = backup_file(store.path(), &dest).unwrap();
        assert_eq!(checked.schema_version, latest_version());
        assert_eq!(checked.audit_events, 1);
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join(".copy.db.partial").exists());
        let mode: String = Connection::open(&dest).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn a_changed_audit_row_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let dest = dir.path().join("copy.db");
        backup_file(store.path(), &dest).unwrap();
        let c = Connection::open(&dest).unwrap();
        c.execute_batch("DROP TRIGGER audit_events_append_only_update; UPDATE audit_events SET actor = 'mallory';")
            .unwrap();
        drop(c);
        let err = check(&dest).unwrap_err().to_string();
        assert!(err.contains("audit chain is broken"), "{err}");
    }

    #[test]
    fn not_a_database_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        fs::write(&junk, vec![b'x'; 4096]).unwrap();
        let err = check(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.db"), "{err}");
    }

    #[test]
    fn restore_keeps_the_old_database_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let store = store_in(&src);
        let dest = dir.path().join("copy.db");
        backup_file(store.path(), &dest).unwrap();

        let data = dir.path().join("data");
        let first = restore(&dest, &data, 0).unwrap();
        assert!(first.kept.is_none());
        // Run by root (sudo) on the service user's data dir: the file is the user's.
        let as_root = crate::preflight::effective_uid() == Some(0);
        if as_root {
            std::os::unix::fs::chown(&data, Some(4242), Some(4242)).unwrap();
        }
        let again = restore(&dest, &data, 1_000).unwrap();
        let kept = again.kept.unwrap();
        assert!(kept.exists() && data.join(DB_FILE).exists());
        if as_root {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs::metadata(data.join(DB_FILE)).unwrap().uid(), 4242);
        }

        let c = Connection::open(&dest).unwrap();
        c.pragma_update(None, "user_version", latest_version() + 1).unwrap();
        drop(c);
        let err = restore(&dest, &data, 2_000).unwrap_err().to_string();
        assert!(err.contains("newer jitgate"), "{err}");
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["jitgate-20250101T000000Z.db", "jitgate-20250102T000000Z.db", "jitgate-20250103T000000Z.db"] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        fs::write(dir.path().join("other.db"), b"").unwrap();
        let gone = prune(dir.path(), "jitgate-", ".db", 2).unwrap();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].ends_with("jitgate-20250101T000000Z.db"));
        assert!(dir.path().join("other.db").exists());
    }
}
