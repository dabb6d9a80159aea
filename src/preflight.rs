//! Startup checks on who runs jitgate and what it reads, before anything is opened
//! (kanidm-style: refuse the unsafe, and say the fix). The data dir and TLS key checks
//! live in `datadir`; these are the ones about the process and the config file.
//! Nothing here changes a file: checks only read.

use crate::error::{Error, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Refuses to run as root (uid 0) unless `allow` (`--allow-root`, `allow_root = true`):
/// a server holding approval power should not also hold the whole box, and files it
/// created as root would lock out the service user later.
pub fn refuse_root(allow: bool) -> Result<()> {
    match effective_uid() {
        Some(0) if allow => {
            crate::warn!("running as root because --allow-root was given; a dedicated user is advised");
            Ok(())
        }
        Some(0) => Err(Error::Startup(
            "refusing to run as root: run as a dedicated user (the systemd unit does: User=jitgate), or pass --allow-root (config: allow_root = true) if you must".into(),
        )),
        Some(_) => Ok(()),
        None => {
            crate::warn!("cannot tell which user runs jitgate (/proc/self/status unreadable); the root check is skipped");
            Ok(())
        }
    }
}

/// The effective user id, from `/proc/self/status` (no libc call needed on Linux).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Warns when the config file is readable by every user: it may name secret files
/// and, later, hold webhook secrets. Owner and group reading it (0640) is expected.
pub fn check_config_file(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o004 != 0 {
            crate::warn!(
                "config {} is readable by every user (mode {:o}): run `chmod o-rwx {}` (0640 root:jitgate is the packaged layout)",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_uid_is_read() {
        assert!(super::effective_uid().is_some());
    }
}
