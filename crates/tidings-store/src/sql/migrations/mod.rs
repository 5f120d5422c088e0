//! Versioned schema migrations, one list per backend with the same versions: version N
//! means the same tables and columns on SQLite and PostgreSQL. One runner ([`migrate_to`])
//! applies either list: every pending migration and its `schema_migrations` row in one
//! transaction, so a crash mid-migration leaves the previous version intact. On PostgreSQL
//! the transaction first takes an advisory lock keyed by the schema, so nodes starting
//! together apply each migration once. Never edit a shipped migration: add a new one.

pub mod postgres;
pub mod sqlite;

use super::conn::{Conn, Dialect};
use crate::{params, StoreError, StoreResult};

/// (version, name, SQL). Versions are dense and ascending.
pub type Migration = (i64, &'static str, &'static str);

/// Applies the migrations of `list` newer than the database's version, up to `target`;
/// returns the version the database is at afterwards.
pub fn migrate_to(c: &Conn, list: &[Migration], target: i64) -> StoreResult<i64> {
    c.batch(match c.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    })?;
    let result = apply(c, list, target);
    match &result {
        Ok(_) => c.batch("COMMIT")?,
        Err(_) => {
            let _ = c.batch("ROLLBACK");
        }
    }
    result
}

fn apply(c: &Conn, list: &[Migration], target: i64) -> StoreResult<i64> {
    if c.dialect() == Dialect::Postgres {
        // Two-key advisory lock: a constant for Tidings, and the schema, so tests
        // migrating their own schemas in parallel do not wait for each other.
        c.query_one(
            "SELECT pg_advisory_xact_lock(1952739, hashtext(current_schema()))::text",
            params![],
            |_| Ok(()),
        )?;
    }
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )?;
    let current: i64 = c.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        params![],
        |r| r.get(0),
    )?;
    if let Some((latest, _, _)) = list.last() {
        if current > *latest {
            return Err(StoreError::Internal(format!(
                "the database schema is version {current}, newer than this Tidings knows ({latest}): upgrade Tidings"
            )));
        }
    }
    for (version, name, sql) in list.iter().filter(|(v, _, _)| *v > current && *v <= target) {
        c.batch(sql)?;
        if *version == 2 {
            super::insights::backfill_user_sets(c)?;
        }
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, super::now()],
        )?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(target.max(current))
}

/// The newest version of a list.
pub fn latest(list: &[Migration]) -> i64 {
    list.last().map_or(0, |m| m.0)
}

/// A version-1 database with data, upgraded by both backends' tests: the insight rollups
/// must be backfilled from what version 1 stored.
#[cfg(test)]
pub(crate) mod upgrade_fixture {
    use crate::sql::conn::Conn;

    pub const V1_ROWS: &str = "
        INSERT INTO teams VALUES ('T1', 'Acme', 'acme', NULL, 0);
        INSERT INTO apps (id, name, bot_events, user_events, event_shape, signing_secret, verification_token, created_at)
          VALUES ('A1', 'app', '[]', '[]', 'authorizations', 's', 'v', 0);
        INSERT INTO events (id, team_id, event_type, actor_id, event_time, payload, created_at) VALUES
          ('Ev1', 'T1', 'message.channels', 'U1', 3600, '{}', 3600),
          ('Ev2', 'T1', 'message.channels', 'U2', 3660, '{}', 3660),
          ('Ev3', 'T1', 'reaction_added', 'U1', 90000, '{}', 90000),
          ('Ev4', 'T1', 'app_rate_limited', NULL, 90000, '{}', 90000);
        INSERT INTO deliveries (seq, id, event_id, app_id, team_id, event_type, status, reason, auth, attempts, next_attempt_at, created_at, updated_at) VALUES
          (1, 'D1', 'Ev1', 'A1', 'T1', 'message.channels', 'delivered', NULL, '{}', 2, 0, 3600, 3700),
          (2, 'D2', 'Ev2', 'A1', 'T1', 'message.channels', 'dropped', 'rate_limited', '{}', 0, 0, 3660, 3660);
        INSERT INTO delivery_attempts VALUES
          (1, 1, 3600000, 'http', 500, 'http_error', 30, 0),
          (1, 2, 3700000, 'http', 200, NULL, 4, 1);";

    /// What [`V1_ROWS`] must have become at the latest version.
    pub fn check_upgraded(c: &Conn) {
        let q = |sql: &str| -> i64 { c.query_one(sql, &[], |r| r.get(0)).unwrap() };
        // Day 0, all types, all teams: two messages by two users; the notice is not an event.
        assert_eq!(q("SELECT events FROM insight_events WHERE g = 2 AND team_id = '' AND event_type = '' AND bucket = 0"), 2);
        assert_eq!(q("SELECT users FROM insight_events WHERE g = 2 AND team_id = '' AND event_type = '' AND bucket = 0"), 2);
        assert_eq!(q("SELECT events FROM insight_events WHERE g = 0 AND team_id = 'T1' AND event_type = 'reaction_added' AND bucket = 90000"), 1);
        assert_eq!(q("SELECT COUNT(*) FROM insight_user_ids"), 2);
        assert_eq!(
            q("SELECT COUNT(*) FROM insight_user_sets WHERE g = 2 AND team_id = 'T1' AND event_type = ''"),
            2,
            "days 0 and 1"
        );
        assert_eq!(
            q("SELECT SUM(attempts) FROM insight_deliveries WHERE g = 2"),
            2
        );
        assert_eq!(
            q("SELECT SUM(retries) FROM insight_deliveries WHERE g = 2"),
            1
        );
        assert_eq!(q("SELECT SUM(l2) FROM insight_deliveries WHERE g = 2"), 1); // 4 ms in (2, 5]
        assert_eq!(
            q("SELECT SUM(delivered) FROM insight_deliveries WHERE g = 1"),
            1
        );
        assert_eq!(
            q("SELECT SUM(dropped) FROM insight_deliveries WHERE g = 0"),
            1
        );
        assert_eq!(q("SELECT n FROM insight_delivery_reasons WHERE g = 2 AND kind = 'dropped' AND reason = 'rate_limited'"), 1);
        assert_eq!(q("SELECT n FROM insight_delivery_reasons WHERE g = 2 AND kind = 'attempt' AND reason = 'http_error'"), 1);
        // Version 3: deliveries carry (empty) leases; the directory version exists.
        assert_eq!(
            q("SELECT COUNT(*) FROM deliveries WHERE lease_until IS NULL"),
            2
        );
        assert_eq!(
            q("SELECT COUNT(*) FROM settings WHERE key = 'directory_version'"),
            1
        );
    }
}
