//! Secrets: random identifiers and tokens, token hashing, password hashing and
//! constant-time comparison. Nothing here logs, and nothing returns a secret twice.

use crate::error::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    Ok(buf)
}

/// A public identifier such as `req_5f2c…` (80 random bits: unguessable, short).
pub fn random_id(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}_{}", hex::encode(random_bytes::<10>()?)))
}

/// A bearer secret: `jg_` and 256 random bits in hex. Returned with its hash; store
/// only the hash.
pub fn new_token() -> Result<(String, [u8; 32])> {
    let token = format!("jg_{}", hex::encode(random_bytes::<32>()?));
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// SHA-256 of a token. Tokens carry 256 bits of entropy, so a fast hash is enough
/// (a slow one would only slow every API call); the database lookup is by this hash.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A password readable enough to type once from `initial-admin.json`.
pub fn new_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = random_bytes::<24>()?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1_024;

/// argon2 runs at most this many at once: each takes ~19 MiB and a core for tens of
/// milliseconds, and a flood of password checks must never hold every HTTP worker.
const ARGON_SLOTS: usize = 2;
static ARGON_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct ArgonSlot;

impl ArgonSlot {
    fn take() -> Result<ArgonSlot> {
        use std::sync::atomic::Ordering;
        if ARGON_IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= ARGON_SLOTS {
            ARGON_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Unavailable("too many password checks at once; retry in a second".into()));
        }
        Ok(ArgonSlot)
    }
}

impl Drop for ArgonSlot {
    fn drop(&mut self) {
        ARGON_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// argon2id with the crate's defaults (OWASP's 19 MiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let _slot = ArgonSlot::take()?;
    let salt = SaltString::encode_b64(&random_bytes::<16>()?).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::bad(
            "weak_password",
            format!(
                "a password needs at least {MIN_PASSWORD_CHARS} characters (and at most {MAX_PASSWORD_BYTES} bytes)"
            ),
        ));
    }
    Ok(())
}

/// Verifies a password; `None` (unknown user or token-only account) still spends the
/// time of one verification, so timing does not tell which usernames exist.
pub fn verify_password(password: &str, stored: Option<&str>) -> Result<bool> {
    let _slot = ArgonSlot::take()?;
    Ok(verify_unthrottled(password, stored))
}

fn verify_unthrottled(password: &str, stored: Option<&str>) -> bool {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yh3Yd3kX0S3m3gqUCBr7Tn8S5f4c1M5Wg0mYb3b6y1E";
    let candidate = if password.len() > MAX_PASSWORD_BYTES { "" } else { password };
    let parsed = match PasswordHash::new(stored.unwrap_or(DUMMY)) {
        Ok(p) => p,
        Err(_) => return false,
    };
    let ok = Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok();
    ok && stored.is_some()
}

/// Constant-time equality for secrets of equal length (CSRF tokens, pins).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_refuse() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(verify_unthrottled("correct horse battery", Some(&h)));
        assert!(!verify_unthrottled("correct horse battery!", Some(&h)));
        assert!(!verify_unthrottled("anything at all", None));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn tokens_are_unique_and_hashed() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), ha);
        assert!(a.starts_with("jg_") && a.len() == 67);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
