//! Dashboard sessions ended before their time (logout): the cookie stays a signed,
//! stateless value every node can check, and this list, shared through the database, is
//! what makes a logged-out cookie useless everywhere. Rows are kept until the cookie
//! would have expired anyway, and swept on each logout.

use super::conn::Conn;
use crate::{params, StoreResult};

/// Ends the session `id` (a hash of its cookie) until `expires_at` (Unix seconds).
pub fn end(c: &Conn, id: &str, expires_at: i64, now: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO ended_sessions (id, expires_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
        params![id, expires_at],
    )?;
    c.execute(
        "DELETE FROM ended_sessions WHERE expires_at < ?1",
        params![now],
    )?;
    Ok(())
}

/// Whether the session `id` was ended.
pub fn ended(c: &Conn, id: &str) -> StoreResult<bool> {
    let n: i64 = c.query_one(
        "SELECT COUNT(*) FROM ended_sessions WHERE id = ?1",
        params![id],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}
