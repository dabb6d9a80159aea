//! The data directory: `jitgate.db` (with its WAL), the TLS key and certificate, the
//! internal socket directory and `initial-admin.json`. Nothing in it is readable by
//! others: the directory is 0700 and every file jitgate writes is 0600. `serve`
//! refuses an unsafe layout rather than run on it, and each refusal names the fix.

use crate::error::{Error, Result};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DB_FILE: &str = "jitgate.db";
pub const INITIAL_ADMIN_FILE: &str = "initial-admin.json";

/// Creates the directory (0700) if missing, and checks an existing one.
pub fn prepare(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::Startup(format!("cannot create data dir {}: {e}", dir.display())))?;
    }
    let meta = fs::metadata(dir).map_err(|e| Error::Startup(format!("cannot read data dir {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::Startup(format!("data dir {} is not a directory", dir.display())));
    }
    let mode = meta.permissions().mode();
    // Group-writable is refused too: a group member could swap the internal socket.
    if mode & 0o022 != 0 {
        return Err(Error::Startup(format!(
            "data dir {} is writable by other users (mode {:o}): run `chmod 700 {}`",
            dir.display(),
            mode & 0o777,
            dir.display()
        )));
    }
    if mode & 0o077 != 0 {
        crate::warn!(
            "data dir {} is readable by others (mode {:o}); `chmod 700 {}` is advised",
            dir.display(),
            mode & 0o777,
            dir.display()
        );
    }
    Ok(())
}

/// Refuses a private key that other users can read.
pub fn check_key_file(path: &Path) -> Result<()> {
    let meta =
        fs::metadata(path).map_err(|e| Error::Startup(format!("cannot read TLS key {}: {e}", path.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(Error::Startup(format!(
            "TLS key {} is readable by every user (mode {:o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

/// Writes a file only its owner can read, replacing any old one, and syncs it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// The database path, creating an empty 0600 file first so that SQLite (which gives
/// its WAL and shared-memory files the database's mode) never makes them readable.
pub fn database(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(DB_FILE);
    if !path.exists() {
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    }
    Ok(path)
}

/// A private directory for the internal socket between the listener and the HTTP
/// workers: 0700, so no other local user can reach it and forge a client address.
pub fn socket_dir(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("run");
    if path.exists() {
        fs::remove_dir_all(&path)?;
    }
    fs::DirBuilder::new().mode(0o700).create(&path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
    Ok(path)
}
