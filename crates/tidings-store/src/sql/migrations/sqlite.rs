//! The SQLite schema, version by version (see [`super`]).

use rusqlite::Connection;

use crate::sql::conn::Conn;
use crate::StoreResult;

/// Versions are dense and ascending, and match [`super::postgres::MIGRATIONS`].
pub const MIGRATIONS: &[super::Migration] = &[
    (1, "initial", V1),
    (2, "insights", V2),
    (3, "cluster", V3),
    (4, "fanout indexes", V4),
    (5, "revocation", V5),
    (6, "lease tokens", V6),
    (7, "app versions", V7),
    (8, "retention indexes", V8),
    (9, "oauth", V9),
    (10, "manifests", V10),
    (11, "receive", V11),
    (12, "redeliveries", V12),
    (13, "attempt log without its time index", V13),
];

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

/// Insights rollups (see `crate::insights`). `g` is the granularity (0 minute, 1 hour,
/// 2 day), `bucket` the bucket's start in Unix seconds, and `''` in `team_id` or
/// `event_type` the rollup over every team or type. Keys lead with the bucket so a range
/// query reads only its range.
const V2: &str = r#"
CREATE TABLE key_events (
    event_type TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE insight_events (
    g INTEGER NOT NULL,
    team_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    events INTEGER NOT NULL DEFAULT 0,
    too_old INTEGER NOT NULL DEFAULT 0,
    users INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (g, team_id, bucket, event_type)
) WITHOUT ROWID;
-- Users are numbered for the sets; a set is a serialized Roaring bitmap of those numbers,
-- so distinct users over a range are the size of a union of a few dozen small bitmaps.
CREATE TABLE insight_user_ids (
    n INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE
);
CREATE TABLE insight_user_sets (
    g INTEGER NOT NULL,
    team_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    users BLOB NOT NULL,
    PRIMARY KEY (g, team_id, bucket, event_type)
) WITHOUT ROWID;
CREATE TABLE insight_deliveries (
    g INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    app_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    gave_up INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    -- latency histogram, one column per bin of crate::insights::LATENCY_BOUNDS_MS
    l0 INTEGER NOT NULL DEFAULT 0, l1 INTEGER NOT NULL DEFAULT 0, l2 INTEGER NOT NULL DEFAULT 0,
    l3 INTEGER NOT NULL DEFAULT 0, l4 INTEGER NOT NULL DEFAULT 0, l5 INTEGER NOT NULL DEFAULT 0,
    l6 INTEGER NOT NULL DEFAULT 0, l7 INTEGER NOT NULL DEFAULT 0, l8 INTEGER NOT NULL DEFAULT 0,
    l9 INTEGER NOT NULL DEFAULT 0, l10 INTEGER NOT NULL DEFAULT 0, l11 INTEGER NOT NULL DEFAULT 0,
    l12 INTEGER NOT NULL DEFAULT 0, l13 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (g, bucket, app_id)
) WITHOUT ROWID;
CREATE TABLE insight_delivery_reasons (
    g INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (g, bucket, app_id, kind, reason)
) WITHOUT ROWID;
-- Backfill from what an older Tidings stored: events, attempts, and how deliveries ended
-- (at their last update). The user sets are built in Rust after this (`insights::backfill_user_sets`).
WITH gs(g, secs) AS (VALUES (0, 60), (1, 3600), (2, 86400)),
ev AS (SELECT team_id, event_type, event_time, actor_id FROM events WHERE event_type <> 'app_rate_limited'),
sc AS (SELECT team_id AS team, event_type AS ty, event_time, actor_id FROM ev
       UNION ALL SELECT team_id, '', event_time, actor_id FROM ev
       UNION ALL SELECT '', event_type, event_time, actor_id FROM ev
       UNION ALL SELECT '', '', event_time, actor_id FROM ev)
INSERT INTO insight_events (g, team_id, bucket, event_type, events)
SELECT gs.g, sc.team, (sc.event_time / gs.secs) * gs.secs AS b, sc.ty, COUNT(*)
FROM sc, gs GROUP BY gs.g, sc.team, b, sc.ty;
WITH gs(g, secs) AS (VALUES (0, 60), (1, 3600), (2, 86400)),
a AS (SELECT d.app_id, x.at / 1000 AS t, x.reason, x.retry_num, x.latency_ms
      FROM delivery_attempts x JOIN deliveries d ON d.seq = x.delivery_seq)
INSERT INTO insight_deliveries (g, bucket, app_id, attempts, succeeded, failed, retries, l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13)
SELECT gs.g, (a.t / gs.secs) * gs.secs AS b, a.app_id, COUNT(*), SUM(a.reason IS NULL),
       SUM(a.reason IS NOT NULL), SUM(a.retry_num > 0),
       SUM(a.latency_ms <= 1), SUM(a.latency_ms > 1 AND a.latency_ms <= 2), SUM(a.latency_ms > 2 AND a.latency_ms <= 5), SUM(a.latency_ms > 5 AND a.latency_ms <= 10), SUM(a.latency_ms > 10 AND a.latency_ms <= 25), SUM(a.latency_ms > 25 AND a.latency_ms <= 50), SUM(a.latency_ms > 50 AND a.latency_ms <= 100), SUM(a.latency_ms > 100 AND a.latency_ms <= 250), SUM(a.latency_ms > 250 AND a.latency_ms <= 500), SUM(a.latency_ms > 500 AND a.latency_ms <= 1000), SUM(a.latency_ms > 1000 AND a.latency_ms <= 2500), SUM(a.latency_ms > 2500 AND a.latency_ms <= 5000), SUM(a.latency_ms > 5000 AND a.latency_ms <= 10000), SUM(a.latency_ms > 10000)
FROM a, gs GROUP BY gs.g, b, a.app_id;
WITH gs(g, secs) AS (VALUES (0, 60), (1, 3600), (2, 86400))
INSERT INTO insight_deliveries (g, bucket, app_id, delivered, gave_up, dropped)
SELECT gs.g, (d.updated_at / gs.secs) * gs.secs AS b, d.app_id, SUM(d.status = 'delivered'),
       SUM(d.status = 'failed'), SUM(d.status = 'dropped')
FROM deliveries d, gs WHERE d.status <> 'pending' GROUP BY gs.g, b, d.app_id
ON CONFLICT (g, bucket, app_id) DO UPDATE SET delivered = excluded.delivered,
    gave_up = excluded.gave_up, dropped = excluded.dropped;
WITH gs(g, secs) AS (VALUES (0, 60), (1, 3600), (2, 86400)),
r AS (SELECT app_id, updated_at AS t, CASE status WHEN 'failed' THEN 'failed' ELSE 'dropped' END AS kind, reason
      FROM deliveries WHERE status IN ('failed', 'dropped') AND reason IS NOT NULL
      UNION ALL
      SELECT d.app_id, x.at / 1000, 'attempt', x.reason
      FROM delivery_attempts x JOIN deliveries d ON d.seq = x.delivery_seq WHERE x.reason IS NOT NULL)
INSERT INTO insight_delivery_reasons (g, bucket, app_id, kind, reason, n)
SELECT gs.g, (r.t / gs.secs) * gs.secs AS b, r.app_id, r.kind, r.reason, COUNT(*)
FROM r, gs GROUP BY gs.g, b, r.app_id, r.kind, r.reason;
"#;

/// Delivery leases, the node registry and where Socket Mode connections are open: used
/// by several nodes on PostgreSQL; on SQLite (one process) the columns stay empty and the
/// tables hold this node alone, so both schemas stay the same.
const V3: &str = r#"
ALTER TABLE deliveries ADD COLUMN lease_until INTEGER;
ALTER TABLE deliveries ADD COLUMN leased_by TEXT;
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    public_url TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE TABLE socket_connections (
    node_id TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    PRIMARY KEY (node_id, connection_id)
);
CREATE INDEX socket_connections_app ON socket_connections(app_id);
INSERT INTO settings (key, value) VALUES ('directory_version', '0') ON CONFLICT (key) DO NOTHING;
"#;

/// Indexes for the fan-out index's reads: a team's installations (the grants query read
/// the whole table per team, seconds for the first publishes to 1,000 teams).
const V4: &str = r#"
CREATE INDEX installations_team ON installations(team_id) WHERE revoked_at IS NULL;
CREATE INDEX installations_enterprise ON installations(enterprise_id) WHERE team_id IS NULL AND revoked_at IS NULL;
"#;

/// Revocation that takes effect everywhere: Socket Mode connections remember the
/// app-level token that opened them (so a revoke can close them on every node), and
/// dashboard sessions ended by logout are listed until they would have expired.
const V5: &str = r#"
ALTER TABLE socket_connections ADD COLUMN app_token_id TEXT;
CREATE INDEX socket_connections_token ON socket_connections(app_token_id);
CREATE TABLE ended_sessions (
    id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
"#;

/// Lease tokens: every claim of a delivery bumps `lease_token`, and an outcome is written
/// only where the token is still the one its node claimed with, so a node that lost its
/// lease (another node took the delivery over) changes nothing. Unused on SQLite, where
/// one process owns every delivery, but kept so both schemas stay alike.
const V6: &str = r#"
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
"#;

/// Apps carry a version bumped by every write, so writes decided on what was read can be
/// compare-and-swap (`UPDATE … WHERE id = ? AND version = ?`): a stale decision (the
/// health rule's disable, a PATCH whose URL changed meanwhile) writes nothing. And when an
/// operator last re-enabled events: the health rule (on every node) counts no attempt
/// from before it.
const V7: &str = r#"
ALTER TABLE apps ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN enabled_at_ms INTEGER;
"#;

/// What retention (`crate::sql::retention`) seeks on: finished deliveries by status and
/// when they finished (a partial index: a delivery enters it once, when it finishes),
/// events by age, and minute rollups of every team by bucket.
const V8: &str = r#"
CREATE INDEX deliveries_finished ON deliveries(status, updated_at) WHERE status <> 'pending';
CREATE INDEX events_created ON events(created_at, id);
CREATE INDEX insight_events_bucket ON insight_events(g, bucket);
"#;

/// OAuth v2 installs (issue 21): app clients, consent codes, token expiry, refresh
/// tokens and the login assertions already used.
const V9: &str = r#"
CREATE TABLE oauth_clients (
    app_id TEXT PRIMARY KEY REFERENCES apps(id),
    client_id TEXT NOT NULL UNIQUE,
    client_secret_hash TEXT NOT NULL,
    redirect_urls TEXT NOT NULL,
    token_rotation_enabled INTEGER NOT NULL DEFAULT 0,
    org_deploy_enabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id),
    redirect_uri TEXT,
    team_id TEXT,
    enterprise_id TEXT,
    user_id TEXT NOT NULL,
    bot_scopes TEXT NOT NULL,
    user_scopes TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE token_expiry (
    token_hash TEXT PRIMARY KEY REFERENCES tokens(hash),
    expires_at INTEGER NOT NULL
);
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    installation_id TEXT NOT NULL REFERENCES installations(id),
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX refresh_tokens_installation ON refresh_tokens(installation_id);
CREATE TABLE oauth_assertions (
    id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
"#;

/// App manifests (issue 23): configuration tokens (both halves hashed; a rotation marks
/// the old pair `rotated_at`, so its refresh token is refused), the developers who own an
/// app, and each app's manifest as applied (fields Tidings does not act on are kept
/// here, exported unchanged).
const V10: &str = r#"
CREATE TABLE config_tokens (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    access_hash TEXT NOT NULL UNIQUE,
    refresh_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE TABLE app_owners (
    app_id TEXT NOT NULL REFERENCES apps(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE TABLE app_manifests (
    app_id TEXT PRIMARY KEY REFERENCES apps(id),
    manifest TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
"#;

/// Issue 25: Standard Webhooks signing per app, and the Request URL that answered 410.
const V11: &str = r#"
ALTER TABLE apps ADD COLUMN signing_scheme TEXT NOT NULL DEFAULT 'slack_v0';
ALTER TABLE apps ADD COLUMN webhook_secret TEXT;
ALTER TABLE apps ADD COLUMN webhook_signing_key TEXT;
ALTER TABLE apps ADD COLUMN webhook_previous_secret TEXT;
ALTER TABLE apps ADD COLUMN webhook_previous_signing_key TEXT;
ALTER TABLE apps ADD COLUMN webhook_previous_until INTEGER;
ALTER TABLE apps ADD COLUMN request_url_gone TEXT;
ALTER TABLE apps ADD COLUMN request_url_gone_at INTEGER;
"#;

/// Bulk replay jobs: what each covers (statuses, time range, the app's deliveries up to
/// `max_seq`), how many matched at creation, and how far it got (`after_seq`, `sent`).
const V12: &str = r#"
CREATE TABLE redeliveries (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    state TEXT NOT NULL,
    statuses TEXT NOT NULL,
    since_at INTEGER,
    until_at INTEGER,
    max_seq INTEGER NOT NULL,
    after_seq INTEGER NOT NULL,
    total INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX redeliveries_app ON redeliveries(app_id, created_at);
CREATE INDEX redeliveries_running ON redeliveries(state) WHERE state = 'running';
"#;

/// No query reads the attempt log by time (retention deletes attempts by delivery, the
/// listings read them by delivery), so the index on `at` only cost every attempt one more
/// B-tree insert (issue 22; measured in `docs/benchmarks.md`, fifth pass).
const V13: &str = r#"
DROP INDEX IF EXISTS delivery_attempts_at;
"#;

/// Applies every migration newer than the database's version.
pub fn migrate(conn: &Connection) -> StoreResult<i64> {
    migrate_to(conn, super::latest(MIGRATIONS))
}

/// Applies the migrations newer than the database's version, up to `target`.
fn migrate_to(conn: &Connection, target: i64) -> StoreResult<i64> {
    super::migrate_to(&Conn::Sqlite(conn), MIGRATIONS, target)
}

#[cfg(test)]
mod tests {
    use super::super::upgrade_fixture;
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&conn).unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(migrate(&conn).unwrap(), MIGRATIONS.len() as i64);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, MIGRATIONS.len() as i64);
    }

    #[test]
    fn versions_are_dense_and_ascending_and_match_postgres() {
        for (i, (v, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
        let names =
            |l: &[super::super::Migration]| l.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>();
        assert_eq!(names(MIGRATIONS), names(super::super::postgres::MIGRATIONS));
    }

    #[test]
    fn upgrading_from_v1_backfills_insights_from_stored_events_and_attempts() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&conn, 1).unwrap(), 1);
        conn.execute_batch(upgrade_fixture::V1_ROWS).unwrap();
        assert_eq!(migrate(&conn).unwrap(), super::super::latest(MIGRATIONS));
        upgrade_fixture::check_upgraded(&Conn::Sqlite(&conn));
    }

    /// Column `col` of every row `sql` returns, its parameters bound to NULL.
    fn strings(conn: &Connection, sql: &str, col: usize) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get(col))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Every read of the attempt log goes by delivery, through the primary key; an index
    /// on anything else only costs each attempt a B-tree insert (version 13 dropped one).
    /// The reads are the store's own statements, so a new way of reading the log shows here.
    #[test]
    fn the_attempt_log_keeps_only_the_index_its_reads_use() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let indexes = strings(
            &conn,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'delivery_attempts'",
            0,
        );
        assert_eq!(indexes, vec!["sqlite_autoindex_delivery_attempts_1"]);
        let reads = [
            crate::sql::events::ATTEMPTS_OF_DELIVERY.to_string(),
            crate::sql::retention::delete_attempts_sql(crate::sql::conn::Dialect::Sqlite),
        ];
        for read in reads {
            let plan = strings(&conn, &format!("EXPLAIN QUERY PLAN {read}"), 3);
            assert!(
                plan.iter()
                    .any(|p| p.contains("sqlite_autoindex_delivery_attempts_1")),
                "{read}: {plan:?}"
            );
        }
    }

    #[test]
    fn a_database_from_a_newer_tidings_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        assert!(migrate(&conn).is_err());
    }
}
