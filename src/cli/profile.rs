//! The client's saved login: server URL, API token and trust (a pinned certificate
//! fingerprint or a CA file), in `$XDG_CONFIG_HOME/jitgate/config.toml` (or
//! `~/.config/jitgate/config.toml`), mode 0600. `--server`, `--token`, `--fingerprint`
//! (and `JITGATE_SERVER`, `JITGATE_TOKEN`, `JITGATE_FINGERPRINT`) override it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: Option<String>,
    pub token: Option<String>,
    /// SHA-256 of the server certificate, for a self-signed server.
    pub fingerprint: Option<String>,
    /// A CA certificate file that signs the server's certificate.
    pub ca_cert: Option<PathBuf>,
}

/// Where the profile lives: `JITGATE_CONFIG`, else the XDG config dir.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("JITGATE_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| Error::bad("no_home", "neither XDG_CONFIG_HOME nor HOME is set"))?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("jitgate").join("config.toml"))
}

pub fn load() -> Result<Profile> {
    let p = path()?;
    match std::fs::read_to_string(&p) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| Error::bad("bad_config", format!("{}: {}", p.display(), e.message())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
        Err(e) => Err(Error::bad("bad_config", format!("cannot read {}: {e}", p.display()))),
    }
}

/// Saves with mode 0600 (the token is a secret), in a 0700 directory.
pub fn save(profile: &Profile) -> Result<PathBuf> {
    let p = path()?;
    if let Some(dir) = p.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let text = toml::to_string(profile).map_err(|e| Error::Internal(format!("profile: {e}")))?;
    crate::datadir::write_private(&p, text.as_bytes())?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p)
}
