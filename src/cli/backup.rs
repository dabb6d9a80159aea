//! `jitgate backup --to FILE` (while the server runs) and `jitgate admin restore
//! --from FILE` (on a stopped data dir). Both work on the data dir's files directly,
//! so they run as the user that owns it (`sudo -u jitgate …`); the copy logic and
//! its checks live in `store::backup`.

use super::output::Out;
use crate::datadir::DB_FILE;
use crate::error::{Error, Result};
use crate::store::backup;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "\
Safe while the server runs: the copy is one consistent snapshot (SQLite VACUUM INTO),
written 0600 under a temporary name, checked (integrity and audit chain) and only then
renamed to FILE (an existing FILE is replaced only by a good copy).

Example:
  sudo -u jitgate jitgate backup --data-dir /var/lib/jitgate --to /var/backups/jitgate/$(date +%F).db")]
pub struct BackupArgs {
    /// The backup file to write.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// The server's data directory.
    #[arg(long, env = "JITGATE_DATA_DIR", value_name = "DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

pub fn run(out: Out, args: BackupArgs) -> Result<i32> {
    let db = args.data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(Error::Startup(format!("no database at {}: pass --data-dir", db.display())));
    }
    let checked = backup::backup_file(&db, &args.to)?;
    out.show(&json!({"file": args.to, "backup": checked}), || {
        format!(
            "backup written to {} ({} bytes, schema version {}, {} audit events); integrity and audit chain verified",
            args.to.display(),
            checked.bytes,
            checked.schema_version,
            checked.audit_events
        )
    });
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file (made by `jitgate backup` or a periodic backup).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The data directory to restore into (created if missing); its server must be stopped.
    #[arg(long, env = "JITGATE_DATA_DIR", value_name = "DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

pub fn restore(out: Out, args: RestoreArgs) -> Result<i32> {
    let done = backup::restore(&args.from, &args.data_dir, crate::time::now_ms())?;
    out.show(&json!({"data_dir": args.data_dir, "restored": done}), || {
        let kept = match &done.kept {
            Some(p) => format!("; the database it replaced is kept as {}", p.display()),
            None => String::new(),
        };
        format!(
            "restored {} into {} ({} audit events, schema version {}){kept}. Start the server to use it.",
            args.from.display(),
            args.data_dir.display(),
            done.checked.audit_events,
            done.checked.schema_version
        )
    });
    Ok(0)
}
