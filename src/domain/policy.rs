//! A connection and the access policy it carries, with the checks made when a policy
//! is written and when a request is made against it.
//!
//! Decisions (documented in README "Policy changes"):
//! - A pending request follows the policy *in force* at each decision: groups and
//!   `min_approvals` are read when a review lands, so tightening a policy applies at
//!   once to requests still waiting, and loosening it never approves anything by itself
//!   (the next review, or an admin, completes it).
//! - If the maximum duration was lowered while a request waited, the grant is clamped
//!   to the new maximum when it is approved.
//! - The pending deadline (`pending_ttl`) is fixed when the request is made: it is a
//!   promise made to the requester.

use super::{check_name, duration, Actor};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Postgres,
    Tcp,
    Generic,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Tcp => "tcp",
            Kind::Generic => "generic",
        }
    }

    pub fn parse(text: &str) -> Result<Kind> {
        match text {
            "postgres" => Ok(Kind::Postgres),
            "tcp" => Ok(Kind::Tcp),
            "generic" => Ok(Kind::Generic),
            other => {
                Err(Error::bad("bad_kind", format!("unknown connection kind {other:?}; one of postgres, tcp, generic")))
            }
        }
    }
}

/// The longest a connection's `max_duration` or `pending_ttl` may be set to.
pub const POLICY_MAX_SECONDS: u64 = 30 * 86_400;
pub const MAX_APPROVAL_GROUPS: usize = 8;
pub const MAX_MIN_APPROVALS: u32 = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub name: String,
    pub kind: Kind,
    pub target: Option<String>,
    pub approval_groups: Vec<String>,
    pub min_approvals: u32,
    pub default_duration: u64,
    pub max_duration: u64,
    pub pending_ttl: u64,
    pub auto_approve_admins: bool,
    pub require_reason: bool,
}

impl Connection {
    /// A connection with DESIGN.md's defaults: 1 approval, 1h default, 8h max, 24h
    /// pending TTL, admins auto-approved, no reason required.
    pub fn with_defaults(name: &str) -> Connection {
        Connection {
            name: name.to_string(),
            kind: Kind::Generic,
            target: None,
            approval_groups: Vec::new(),
            min_approvals: 1,
            default_duration: 3_600,
            max_duration: 8 * 3_600,
            pending_ttl: 24 * 3_600,
            auto_approve_admins: true,
            require_reason: false,
        }
    }

    /// Checks a policy before it is stored.
    pub fn validate(&self) -> Result<()> {
        check_name("connection", &self.name)?;
        for g in &self.approval_groups {
            check_name("group", g)?;
        }
        if self.approval_groups.len() > MAX_APPROVAL_GROUPS {
            return Err(Error::bad("bad_policy", format!("at most {MAX_APPROVAL_GROUPS} approval groups")));
        }
        let mut sorted = self.approval_groups.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.approval_groups.len() {
            return Err(Error::bad("bad_policy", "approval_groups lists a group twice"));
        }
        if self.min_approvals == 0 || self.min_approvals > MAX_MIN_APPROVALS {
            return Err(Error::bad("bad_policy", format!("min_approvals must be between 1 and {MAX_MIN_APPROVALS}")));
        }
        for (what, secs) in [("max_duration", self.max_duration), ("pending_ttl", self.pending_ttl)] {
            if secs == 0 || secs > POLICY_MAX_SECONDS {
                return Err(Error::bad("bad_policy", format!("{what} must be between 1s and 30d")));
            }
        }
        if self.default_duration == 0 || self.default_duration > self.max_duration {
            return Err(Error::bad(
                "bad_policy",
                format!(
                    "default_duration {} exceeds max_duration {}",
                    duration::format(self.default_duration),
                    duration::format(self.max_duration)
                ),
            ));
        }
        self.validate_target()
    }

    fn validate_target(&self) -> Result<()> {
        match (&self.kind, &self.target) {
            (Kind::Postgres | Kind::Tcp, None) => {
                Err(Error::bad("bad_policy", format!("a {} connection needs a target host:port", self.kind.as_str())))
            }
            (_, Some(t)) => check_target(t),
            (Kind::Generic, None) => Ok(()),
        }
    }

    /// Whether `actor` may review requests on this connection: a member of one of its
    /// approval groups, or an admin.
    pub fn is_eligible_reviewer(&self, actor: &Actor) -> bool {
        actor.admin || self.approval_groups.iter().any(|g| actor.groups.contains(g))
    }

    /// Resolves the duration asked for (or the default) against this policy.
    pub fn resolve_duration(&self, requested: Option<&str>) -> Result<u64> {
        let Some(text) = requested else {
            return Ok(self.default_duration);
        };
        let secs = duration::parse(text)?;
        if secs > self.max_duration {
            return Err(Error::DurationTooLong {
                requested: duration::format(secs),
                max: duration::format(self.max_duration),
                connection: self.name.clone(),
            });
        }
        Ok(secs)
    }

    /// Whether a new request by `requester` is approved on creation.
    pub fn approves_on_creation(&self, requester: &Actor) -> bool {
        self.approval_groups.is_empty() || (requester.admin && self.auto_approve_admins)
    }
}

/// `host:port` with a hostname or IP literal (IPv6 in brackets) and a port 1-65535.
fn check_target(target: &str) -> Result<()> {
    let bad = || {
        Error::bad("bad_target", format!("bad target {target:?}: use host:port, e.g. db.internal:5432 or [::1]:5432"))
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0) && !port.starts_with('0');
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(groups: &[&str]) -> Connection {
        Connection {
            approval_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Connection::with_defaults("prod-db")
        }
    }

    fn actor(name: &str, admin: bool, groups: &[&str]) -> Actor {
        Actor { username: name.into(), admin, groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Connection::with_defaults("x");
        assert_eq!((c.min_approvals, c.default_duration, c.max_duration, c.pending_ttl), (1, 3_600, 28_800, 86_400));
        assert!(c.auto_approve_admins && !c.require_reason);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn too_long_duration_names_the_limit() {
        let err = conn(&["dba"]).resolve_duration(Some("12h")).unwrap_err();
        assert_eq!(err.to_string(), "duration 12h exceeds the maximum of 8h for prod-db");
        assert_eq!(err.status(), 400);
        assert_eq!(conn(&["dba"]).resolve_duration(Some("8h")).unwrap(), 28_800);
        assert_eq!(conn(&["dba"]).resolve_duration(None).unwrap(), 3_600);
    }

    #[test]
    fn eligible_reviewer_is_a_member_or_an_admin() {
        let c = conn(&["dba", "security"]);
        assert!(c.is_eligible_reviewer(&actor("a", false, &["security"])));
        assert!(c.is_eligible_reviewer(&actor("root", true, &[])));
        assert!(!c.is_eligible_reviewer(&actor("b", false, &["sales"])));
    }

    #[test]
    fn creation_approval_rules() {
        assert!(conn(&[]).approves_on_creation(&actor("a", false, &[])));
        assert!(!conn(&["dba"]).approves_on_creation(&actor("a", false, &["dba"])));
        assert!(conn(&["dba"]).approves_on_creation(&actor("root", true, &[])));
        let strict = Connection { auto_approve_admins: false, ..conn(&["dba"]) };
        assert!(!strict.approves_on_creation(&actor("root", true, &[])));
    }

    #[test]
    fn bad_policies_are_refused() {
        let bad = [
            Connection { min_approvals: 0, ..conn(&["dba"]) },
            Connection { default_duration: 9 * 3600, ..conn(&["dba"]) },
            Connection { max_duration: 31 * 86_400, ..conn(&["dba"]) },
            Connection { pending_ttl: 0, ..conn(&["dba"]) },
            conn(&["dba", "dba"]),
            Connection { kind: Kind::Postgres, ..conn(&[]) },
            Connection { kind: Kind::Tcp, target: Some("db:0".into()), ..conn(&[]) },
            Connection { kind: Kind::Tcp, target: Some("db:99999".into()), ..conn(&[]) },
            Connection { kind: Kind::Tcp, target: Some("db/../x:5432".into()), ..conn(&[]) },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let ok = Connection { kind: Kind::Postgres, target: Some("[::1]:5432".into()), ..conn(&[]) };
        assert!(ok.validate().is_ok());
    }
}
