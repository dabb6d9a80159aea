//! The signatures of notifications and of chat actions, as pure functions (no I/O):
//! jitgate's own webhook signature, Slack's request signature, and the HMAC that a
//! Mattermost button carries in its context. Every comparison is constant-time.

use crate::secret::constant_time_eq;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Slack refuses requests older than this; so do we (and remember signatures as long).
pub const SLACK_WINDOW_SECS: i64 = 5 * 60;

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this never fails; the fallback keeps the
    // function total without a panic (and the config refuses empty secrets).
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return [0u8; 32] };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `X-Jitgate-Signature` of a webhook body: `sha256=<lowercase hex>`, as GitHub signs.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &[body])))
}

/// Why a Slack request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SlackRefusal {
    Missing,
    Stale,
    BadSignature,
}

/// Checks `X-Slack-Signature` (`v0=hex(HMAC(secret, "v0:" + ts + ":" + body))`) against
/// each configured signing secret, and that the timestamp is within the window.
pub fn verify_slack(
    secrets: &[&str],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SlackRefusal> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else { return Err(SlackRefusal::Missing) };
    let at: i64 = ts.trim().parse().map_err(|_| SlackRefusal::Missing)?;
    // abs_diff: a timestamp of i64::MIN must be refused, not overflow.
    if now_secs.abs_diff(at) > SLACK_WINDOW_SECS as u64 {
        return Err(SlackRefusal::Stale);
    }
    let given = sig.strip_prefix("v0=").and_then(|h| hex::decode(h).ok()).ok_or(SlackRefusal::BadSignature)?;
    let ok = secrets
        .iter()
        .any(|s| constant_time_eq(&hmac_sha256(s.as_bytes(), &[b"v0:", ts.trim().as_bytes(), b":", body]), &given));
    if ok {
        Ok(())
    } else {
        Err(SlackRefusal::BadSignature)
    }
}

/// The HMAC a Mattermost button carries: binds one request id to one action.
pub fn mattermost_context_mac(secret: &str, request_id: &str, action: &str) -> String {
    hex::encode(hmac_sha256(
        secret.as_bytes(),
        &[b"jitgate-mattermost:", request_id.as_bytes(), b":", action.as_bytes()],
    ))
}

pub fn verify_mattermost_context(secret: &str, request_id: &str, action: &str, mac: &str) -> bool {
    constant_time_eq(mattermost_context_mac(secret, request_id, action).as_bytes(), mac.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_timestamp_is_refused_without_overflow() {
        let r = verify_slack(&["secret"], Some(&i64::MIN.to_string()), Some("v0=00"), b"payload=x", 1_800_000_000);
        assert!(r.is_err());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn slack_signatures_are_checked_with_their_window() {
        let body = b"payload=%7B%7D";
        let sig = format!("v0={}", hex::encode(hmac_sha256(b"shh", &[b"v0:1000:", body])));
        assert_eq!(verify_slack(&["other", "shh"], Some("1000"), Some(&sig), body, 1100), Ok(()));
        assert_eq!(verify_slack(&["shh"], Some("1000"), Some(&sig), body, 1000 + 301), Err(SlackRefusal::Stale));
        assert_eq!(
            verify_slack(&["shh"], Some("1000"), Some(&sig), b"payload=x", 1000),
            Err(SlackRefusal::BadSignature)
        );
        assert_eq!(verify_slack(&["nope"], Some("1000"), Some(&sig), body, 1000), Err(SlackRefusal::BadSignature));
        assert_eq!(verify_slack(&["shh"], None, Some(&sig), body, 1000), Err(SlackRefusal::Missing));
        assert_eq!(verify_slack(&[], Some("1000"), Some(&sig), body, 1000), Err(SlackRefusal::BadSignature));
    }

    #[test]
    fn a_mattermost_context_binds_request_and_action() {
        let mac = mattermost_context_mac("k", "req_1", "approve");
        assert!(verify_mattermost_context("k", "req_1", "approve", &mac));
        assert!(!verify_mattermost_context("k", "req_1", "reject", &mac));
        assert!(!verify_mattermost_context("k", "req_2", "approve", &mac));
        assert!(!verify_mattermost_context("j", "req_1", "approve", &mac));
    }
}
