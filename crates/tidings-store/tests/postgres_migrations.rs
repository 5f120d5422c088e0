//! PostgreSQL migrations against a real server (`TIDINGS_TEST_DATABASE_URL`): a schema
//! at version 1 holding data is upgraded to the latest version, with the insight rollups
//! backfilled from what version 1 stored; nodes migrating at once apply each migration
//! once; a schema from a newer Tidings is refused.

use tidings_store::sql::conn::{Conn, PgConn};
use tidings_store::sql::migrations::postgres::{migrate, migrate_to, MIGRATIONS};
use tidings_store::sql::postgres::Opener;

struct Schema {
    base: String,
    name: String,
}

impl Schema {
    fn create(base: &str, tag: &str) -> Schema {
        let name = format!("m_{tag}_{}", std::process::id());
        let mut c = postgres::Client::connect(base, postgres::NoTls).expect("connect");
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .expect("schema");
        Schema {
            base: base.into(),
            name,
        }
    }

    fn conn(&self) -> PgConn {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-csearch_path%3D{}", self.base, self.name);
        PgConn::new(Opener::new(&url).unwrap().client().unwrap())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

fn base() -> Option<String> {
    let url = std::env::var("TIDINGS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run");
    }
    url
}

fn count(c: &Conn, sql: &str) -> i64 {
    c.query_one(sql, &[], |r| r.get(0)).unwrap()
}

#[test]
fn upgrading_from_v1_backfills_insights_from_stored_events_and_attempts() {
    let Some(base) = base() else { return };
    let schema = Schema::create(&base, "upgrade");
    let pg = schema.conn();
    assert_eq!(migrate_to(&pg, 1).unwrap(), 1);
    let c = Conn::Postgres(&pg);
    c.batch(
        "INSERT INTO teams VALUES ('T1', 'Acme', 'acme', NULL, 0);
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
           (1, 2, 3700000, 'http', 200, NULL, 4, 1);",
    )
    .unwrap();
    let latest = MIGRATIONS.last().unwrap().0;
    assert_eq!(migrate(&pg).unwrap(), latest);
    let q = |sql: &str| count(&c, sql);
    assert_eq!(q("SELECT events FROM insight_events WHERE g = 2 AND team_id = '' AND event_type = '' AND bucket = 0"), 2);
    assert_eq!(q("SELECT users FROM insight_events WHERE g = 2 AND team_id = '' AND event_type = '' AND bucket = 0"), 2);
    assert_eq!(q("SELECT events FROM insight_events WHERE g = 0 AND team_id = 'T1' AND event_type = 'reaction_added' AND bucket = 90000"), 1);
    assert_eq!(q("SELECT COUNT(*) FROM insight_user_ids"), 2);
    assert_eq!(q("SELECT COUNT(*) FROM insight_user_sets WHERE g = 2 AND team_id = 'T1' AND event_type = ''"), 2);
    assert_eq!(
        q("SELECT SUM(attempts) FROM insight_deliveries WHERE g = 2"),
        2
    );
    assert_eq!(
        q("SELECT SUM(retries) FROM insight_deliveries WHERE g = 2"),
        1
    );
    assert_eq!(q("SELECT SUM(l2) FROM insight_deliveries WHERE g = 2"), 1);
    assert_eq!(
        q("SELECT SUM(delivered) FROM insight_deliveries WHERE g = 1"),
        1
    );
    assert_eq!(
        q("SELECT SUM(dropped) FROM insight_deliveries WHERE g = 0"),
        1
    );
    assert_eq!(q("SELECT n FROM insight_delivery_reasons WHERE g = 2 AND kind = 'dropped' AND reason = 'rate_limited'"), 1);
    // Version 3: deliveries carry (empty) leases; new deliveries continue the sequence.
    assert_eq!(
        q("SELECT COUNT(*) FROM deliveries WHERE lease_until IS NULL"),
        2
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM settings WHERE key = 'directory_version'"),
        1
    );
}

#[test]
fn nodes_migrating_at_once_apply_each_migration_once() {
    let Some(base) = base() else { return };
    let schema = Schema::create(&base, "race");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pg = schema.conn();
            std::thread::spawn(move || migrate(&pg))
        })
        .collect();
    let latest = MIGRATIONS.last().unwrap().0;
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), latest);
    }
    let pg = schema.conn();
    let c = Conn::Postgres(&pg);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM schema_migrations"), latest);
}

#[test]
fn a_schema_from_a_newer_tidings_is_refused() {
    let Some(base) = base() else { return };
    let schema = Schema::create(&base, "newer");
    let pg = schema.conn();
    migrate(&pg).unwrap();
    Conn::Postgres(&pg)
        .batch("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
        .unwrap();
    let err = migrate(&pg).unwrap_err().to_string();
    assert!(err.contains("newer than this Tidings"), "{err}");
}
