//! First start: an empty database gets its first admin, and the credentials go to
//! `initial-admin.json` (0600) in the data dir, never to the log. With
//! `JITGATE_ADMIN_TOKEN` set, that token is the admin's token (for automation).

use crate::datadir::{write_private, INITIAL_ADMIN_FILE};
use crate::error::{Error, Result};
use crate::secret;
use crate::store::users::{self, NewUser};
use crate::store::{tokens, Store};
use crate::time::now_ms;
use serde_json::json;
use std::path::Path;

pub const ADMIN_TOKEN_ENV: &str = "JITGATE_ADMIN_TOKEN";
const ADMIN_NAME: &str = "admin";
/// A chosen token must be as hard to guess as a minted one.
const MIN_TOKEN_CHARS: usize = 32;

pub fn first_start(store: &Store, data_dir: &Path) -> Result<()> {
    let users: i64 = store.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))?;
    if users > 0 {
        return Ok(());
    }
    let token = match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(t) if t.len() >= MIN_TOKEN_CHARS && t.bytes().all(|b| b.is_ascii_graphic()) => t,
        Ok(_) => {
            return Err(Error::Startup(format!(
                "{ADMIN_TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} printable characters without spaces"
            )))
        }
        Err(_) => secret::new_token()?.0,
    };
    let password = secret::new_password()?;
    let file = data_dir.join(INITIAL_ADMIN_FILE);
    // The file is written before the commit: a crash in between leaves a file for an
    // admin that does not exist (harmless, rewritten next start), never an admin
    // whose credentials were lost.
    let body = json!({"username": ADMIN_NAME, "password": password, "token": token});
    write_private(&file, format!("{body:#}\n").as_bytes())?;
    let now = now_ms();
    let new = NewUser {
        username: ADMIN_NAME.into(),
        display_name: Some("Administrator".into()),
        password_hash: Some(secret::hash_password(&password)?),
        admin: true,
    };
    store.write(|tx| {
        users::create(tx, crate::audit::SYSTEM, &new, now)?;
        tokens::create_with_secret(tx, ADMIN_NAME, "initial", &token, now)?;
        Ok(())
    })?;
    crate::info!("first start: created user {ADMIN_NAME}; its password and token are in {}", file.display());
    Ok(())
}
