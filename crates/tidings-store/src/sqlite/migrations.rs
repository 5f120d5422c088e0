//! Versioned schema migrations for SQLite. Each entry runs once, in order, inside one
//! transaction with its `schema_migrations` row, so a crash mid-migration leaves the
//! previous version intact. Never edit a shipped migration: add a new one.

use rusqlite::Connection;

use crate::StoreResult;

/// (version, name, SQL). Versions are dense and ascending.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "initial", V1)];

const V1: &str = r#"
CREATE TABLE enterprises (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain TEXT NOT NULL,
    enterprise_id TEXT REFERENCES enterprises(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX teams_enterprise ON teams(enterprise_id);
CREATE UNIQUE INDEX teams_domain ON teams(domain);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    team_id TEXT REFERENCES teams(id),
    enterprise_id TEXT REFERENCES enterprises(id),
    name TEXT NOT NULL,
    real_name TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    is_bot INTEGER NOT NULL DEFAULT 0,
    app_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX users_team ON users(team_id, id);
CREATE TABLE conversations (
    team_id TEXT NOT NULL REFERENCES teams(id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, id)
);
CREATE TABLE conversation_members (
    team_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (team_id, conversation_id, user_id),
    FOREIGN KEY (team_id, conversation_id) REFERENCES conversations(team_id, id) ON DELETE CASCADE
);
CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    request_url TEXT,
    request_url_verified INTEGER NOT NULL DEFAULT 0,
    socket_mode INTEGER NOT NULL DEFAULT 0,
    bot_events TEXT NOT NULL,
    user_events TEXT NOT NULL,
    event_shape TEXT NOT NULL,
    signing_secret TEXT NOT NULL,
    verification_token TEXT NOT NULL,
    events_enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    disabled_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE app_tokens (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id),
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE installations (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id),
    team_id TEXT REFERENCES teams(id),
    enterprise_id TEXT REFERENCES enterprises(id),
    installer_user_id TEXT NOT NULL REFERENCES users(id),
    bot_user_id TEXT REFERENCES users(id),
    bot_id TEXT,
    bot_scopes TEXT NOT NULL,
    user_scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX installations_app ON installations(app_id, id);
CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- Every token Tidings issued, by the SHA-256 of its text. The owner columns say what it
-- grants; revocation lives on the owner (installation, app token, operator token) and on
-- the row itself (a re-install replaces an installation's tokens).
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    installation_id TEXT REFERENCES installations(id),
    app_token_id TEXT REFERENCES app_tokens(id),
    operator_token_id TEXT REFERENCES operator_tokens(id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX tokens_installation ON tokens(installation_id);
-- Server-wide secrets and settings (the event_context signing key).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Published events. `payload` is the inner event exactly as it will be sent.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id),
    enterprise_id TEXT,
    event_type TEXT NOT NULL,
    app_id TEXT,
    channel_id TEXT,
    actor_id TEXT,
    event_time INTEGER NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key TEXT,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_idempotency ON events(team_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- One event for one app in one team: the unit that is sent, retried, rate limited and
-- logged. `seq` orders them (listings, the dispatcher's scan); `auth` is the JSON of the
-- authorization the envelope carries.
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL REFERENCES events(id),
    app_id TEXT NOT NULL REFERENCES apps(id),
    team_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    auth TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    redeliver INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX deliveries_app ON deliveries(app_id, seq);
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE INDEX deliveries_app_due ON deliveries(app_id, next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX deliveries_rate ON deliveries(app_id, team_id, created_at);
CREATE TABLE delivery_attempts (
    delivery_seq INTEGER NOT NULL REFERENCES deliveries(seq),
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    transport TEXT NOT NULL,
    status_code INTEGER,
    reason TEXT,
    latency_ms INTEGER NOT NULL,
    retry_num INTEGER NOT NULL,
    PRIMARY KEY (delivery_seq, n)
);
CREATE INDEX delivery_attempts_at ON delivery_attempts(at);
"#;

/// Applies every migration newer than the database's version.
pub fn migrate(conn: &mut Connection) -> StoreResult<i64> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if let Some((latest, _, _)) = MIGRATIONS.last() {
        if current > *latest {
            return Err(crate::StoreError::Internal(format!(
                "the database schema is version {current}, newer than this Tidings knows ({latest}): upgrade Tidings"
            )));
        }
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, super::now()],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(MIGRATIONS.last().map(|m| m.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as i64);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, MIGRATIONS.len() as i64);
    }

    #[test]
    fn versions_are_dense_and_ascending() {
        for (i, (v, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
    }

    #[test]
    fn a_database_from_a_newer_tidings_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        assert!(migrate(&mut conn).is_err());
    }
}
