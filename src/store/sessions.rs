//! Sessions of `jitgate connect` (sess_…). The gateway writes them; until it exists
//! the list is empty, but who may see which session is already decided here: the
//! same people who may see the request behind it.

use super::Page;
use crate::error::Result;
use crate::store::users::User;
use rusqlite::{params, Connection, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub request_id: String,
    pub user: String,
    pub connection: String,
    pub client_addr: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

const SELECT: &str = "SELECT s.seq, s.id, r.id, u.username, c.name, s.client_addr, s.started_at, s.ended_at, s.end_reason
    FROM sessions s JOIN requests r ON r.seq = s.request_seq JOIN users u ON u.id = s.user_id JOIN connections c ON c.id = r.connection_id";

/// Sessions on requests the viewer may see: their own, those of connections they
/// approve for, or all for admins.
const VISIBLE: &str =
    "(?1 = 1 OR s.user_id = ?2 OR r.connection_id IN (SELECT cg.connection_id FROM connection_groups cg
    JOIN group_members gm ON gm.group_id = cg.group_id WHERE gm.user_id = ?2))";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Session)> {
    Ok((
        r.get(0)?,
        Session {
            id: r.get(1)?,
            request_id: r.get(2)?,
            user: r.get(3)?,
            connection: r.get(4)?,
            client_addr: r.get(5)?,
            started_at: r.get(6)?,
            ended_at: r.get(7)?,
            end_reason: r.get(8)?,
        },
    ))
}

pub fn list(conn: &Connection, viewer: &User, page: &Page) -> Result<(Vec<Session>, Option<String>)> {
    let mut stmt =
        conn.prepare_cached(&format!("{SELECT} WHERE {VISIBLE} AND s.seq < ?3 ORDER BY s.seq DESC LIMIT ?4"))?;
    let rows = stmt.query_map(params![viewer.admin, viewer.id, page.before_or_max(), page.fetch_limit()], row)?;
    Ok(page.finish(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

/// A session the viewer may see; `None` when it does not exist or is not theirs to see.
pub fn get(conn: &Connection, viewer: &User, id: &str) -> Result<Option<Session>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE {VISIBLE} AND s.id = ?3"))?;
    let mut rows = stmt.query_map(params![viewer.admin, viewer.id, id], row)?;
    Ok(rows.next().transpose()?.map(|(_, s)| s))
}
