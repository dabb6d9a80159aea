//! What the chat integrations remember: the signatures of Slack actions already seen,
//! for as long as Slack's timestamp window, so a captured click is refused if sent
//! again. Written before the action is applied, in its own transaction, so even a
//! refused action cannot be replayed later (when its answer might differ).

use crate::error::{Error, Result};
use rusqlite::{params, Transaction};

/// Records `signature` as seen at `now`; a signature seen before is refused.
pub fn remember_signature(tx: &Transaction<'_>, signature: &str, now: i64, window_ms: i64) -> Result<()> {
    // Twice the window: a timestamp may be up to one window in the future too.
    tx.execute("DELETE FROM chat_action_replays WHERE seen_at < ?1", [now - 2 * window_ms])?;
    let added = tx.execute(
        "INSERT INTO chat_action_replays (signature, seen_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![signature, now],
    )?;
    if added == 0 {
        return Err(Error::Unauthenticated("this action was already received (replay)".into()));
    }
    Ok(())
}
