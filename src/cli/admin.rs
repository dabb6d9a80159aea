//! `jitgate admin …`: offline work on a stopped server's data dir (lost admin
//! password, a token for automation, audit verification). These open the database
//! directly and write audit events like the server does.

use crate::datadir::DB_FILE;
use crate::error::{Error, Result};
use crate::store::{tokens, users, Store};
use crate::{audit, secret};
use clap::{Args, Subcommand};
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Verify the audit chain of a data dir without a running server. Exit 0 when
    /// intact, 1 when a link is broken (the first bad event is printed).
    AuditVerify(DataDir),
    /// Set a new password for a user; prints it (or reads it with --password-stdin).
    #[command(after_help = "Example:\n  jitgate admin reset-password admin --data-dir /var/lib/jitgate")]
    ResetPassword {
        username: String,
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Mint an API token for a user; prints it once.
    #[command(after_help = "Example:\n  jitgate admin create-token admin --name recovery --data-dir /var/lib/jitgate")]
    CreateToken {
        username: String,
        #[command(flatten)]
        dir: DataDir,
        #[arg(long, default_value = "offline")]
        name: String,
    },
    /// Replace a stopped data dir's database with a verified backup (the old one is kept).
    #[command(
        after_help = "Example:\n  systemctl stop jitgate\n  sudo -u jitgate jitgate admin restore --from /var/backups/jitgate/2026-01-01.db --data-dir /var/lib/jitgate"
    )]
    Restore(super::backup::RestoreArgs),
}

#[derive(Args, Debug)]
pub struct DataDir {
    /// The server's data directory.
    #[arg(long, env = "JITGATE_DATA_DIR", value_name = "DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

impl DataDir {
    /// Opens the store; a newer jitgate backs an older database up before migrating it.
    fn store(&self) -> Result<Store> {
        Store::open_with(&self.db()?, |conn, from| {
            crate::store::backup::before_upgrade(conn, &self.data_dir, from, crate::time::now_ms()).map(|_| ())
        })
    }

    fn db(&self) -> Result<PathBuf> {
        let path = self.data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(Error::Startup(format!("no database at {}", path.display())));
        }
        Ok(path)
    }
}

pub fn run(out: super::output::Out, cmd: AdminCommand) -> Result<i32> {
    match cmd {
        AdminCommand::Restore(args) => super::backup::restore(out, args),
        AdminCommand::AuditVerify(d) => audit_verify(&d),
        AdminCommand::ResetPassword { username, dir, password_stdin } => {
            let password = if password_stdin { super::read_stdin_line()? } else { secret::new_password()? };
            let hash = secret::hash_password(&password)?;
            let store = dir.store()?;
            let patch = users::Patch { password_hash: Some(hash), ..users::Patch::default() };
            store.write(|tx| users::update(tx, "offline-admin", &username, &patch, crate::time::now_ms()))?;
            if !password_stdin {
                say!("{password}");
            }
            eprintln!("password of {username} reset; their browser sessions ended");
            Ok(0)
        }
        AdminCommand::CreateToken { username, dir, name } => {
            let store = dir.store()?;
            let (token, secret) = store.write(|tx| {
                tokens::create(tx, "offline-admin", &username, &name, tokens::Scope::Api, None, crate::time::now_ms())
            })?;
            say!("{secret}");
            eprintln!("token {} ({}) for {username}; it is shown only this once", token.id, token.name);
            Ok(0)
        }
    }
}

fn audit_verify(d: &DataDir) -> Result<i32> {
    // Read-only: verification must never change what it verifies.
    let conn = Connection::open_with_flags(d.db()?, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let v = audit::verify(&conn)?;
    say!("{}", serde_json::to_string(&v).unwrap_or_default());
    Ok(if v.ok { 0 } else { 1 })
}
