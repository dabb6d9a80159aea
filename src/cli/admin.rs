//! `jitgate admin …`: offline work on a stopped server's data dir.

use crate::audit;
use crate::datadir::DB_FILE;
use crate::error::{Error, Result};
use clap::{Args, Subcommand};
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Verify the audit chain of a data dir without a running server. Exit 0 when
    /// intact, 1 when a link is broken (the first bad event is printed).
    AuditVerify(DataDir),
}

#[derive(Args, Debug)]
pub struct DataDir {
    /// The server's data directory.
    #[arg(long, env = "JITGATE_DATA_DIR", value_name = "DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

pub fn run(cmd: AdminCommand) -> Result<i32> {
    match cmd {
        AdminCommand::AuditVerify(d) => audit_verify(&d),
    }
}

fn audit_verify(d: &DataDir) -> Result<i32> {
    let path = d.data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(Error::Startup(format!("no database at {}", path.display())));
    }
    // Read-only: verification must never change what it verifies.
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let v = audit::verify(&conn)?;
    println!("{}", serde_json::to_string(&v).unwrap_or_default());
    Ok(if v.ok { 0 } else { 1 })
}
