//! Plain types and the rules of the access lifecycle. Nothing here does I/O: every
//! rule is a function of its inputs (including `now`), unit-tested on its own.

pub mod approval;
pub mod duration;
pub mod policy;
pub mod request;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The lifecycle statuses (DESIGN.md, "Lifecycle"). The first five keep hoop.dev's
/// meaning; CANCELLED is ours so that nothing stays PENDING for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Cancelled,
    Executed,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Pending, Status::Approved, Status::Rejected, Status::Cancelled, Status::Executed, Status::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
            Status::Cancelled => "CANCELLED",
            Status::Executed => "EXECUTED",
            Status::Revoked => "REVOKED",
        }
    }

    pub fn parse(text: &str) -> Result<Status> {
        Status::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text)).ok_or_else(|| {
            Error::bad(
                "bad_status",
                format!("unknown status {text:?}; one of PENDING, APPROVED, REJECTED, CANCELLED, EXECUTED, REVOKED"),
            )
        })
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Approved)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is acting, as the rules need to know them: identity, admin flag and the groups
/// they belong to *now* (membership is read at the moment of each decision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub username: String,
    pub admin: bool,
    pub groups: BTreeSet<String>,
}

/// Names of users, groups, connections and tokens: 1 to 64 characters of ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit. Narrow on
/// purpose: names appear in URLs, logs, audit events and shell environments.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad(
            "bad_name",
            format!("bad {what} name {:?}: use 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", truncate(name, 80)),
        ))
    }
}

/// Free text a person writes (reason, comment, display name): bounded and free of
/// control characters other than newline and tab, so it cannot forge log lines.
pub fn check_text(what: &'static str, text: &str, max_chars: usize) -> Result<()> {
    if text.chars().count() > max_chars {
        return Err(Error::bad("text_too_long", format!("{what} is longer than {max_chars} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::bad("bad_text", format!("{what} contains control characters")));
    }
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_narrow() {
        for good in ["prod-postgres", "dba_team", "a", "svc.ci-01", &"x".repeat(64)] {
            assert!(check_name("user", good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "../etc", "a\0b", "é", "a;drop", &"x".repeat(65)] {
            assert!(check_name("user", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_refuses_control_characters() {
        assert!(check_text("reason", "fix ticket #12\nsecond line", 100).is_ok());
        assert!(check_text("reason", "a\u{1b}[2J", 100).is_err());
        assert!(check_text("reason", "a\rINFO forged", 100).is_err());
        assert!(check_text("reason", &"x".repeat(101), 100).is_err());
    }

    #[test]
    fn statuses_parse_and_finality() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()).unwrap(), s);
        }
        assert!(Status::parse("pending").is_ok());
        assert!(Status::parse("DONE").is_err());
        assert!(!Status::Pending.is_final() && !Status::Approved.is_final());
        assert!(Status::Rejected.is_final() && Status::Revoked.is_final());
    }
}
