//! PostgreSQL is backed up with its own tools, as README's "Backup and restore" says:
//! `pg_dump --format=custom` of the store's schema, `pg_restore --no-owner` into a fresh
//! database, and a node started on the restored copy serves what was stored and delivers
//! what was pending. PostgreSQL runs only (`TIDINGS_TEST_DATABASE_URL`); skipped with a
//! message when pg_dump is missing, a failure under `CI=true`.

mod support;

use std::process::Command;

use serde_json::json;
use support::receiver::Receiver;
use support::{pg, Server, ADMIN};

#[tokio::test]
async fn a_pg_dump_restored_into_a_fresh_database_serves() {
    let Some(base) = pg::url() else { return };
    if !tool_present("pg_dump") || !tool_present("pg_restore") || !tool_present("psql") {
        let msg = "pg_dump, pg_restore or psql is missing; the PostgreSQL backup test is skipped";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let s = Server::start();
    let schema = s.schema.clone().expect("a PostgreSQL run");
    s.app_in_channel(json!({"id": "A0PILE", "name": "pile", "bot_events": ["message.channels"]}))
        .await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(s.say(&format!("before the dump {i}")).await);
    }

    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("tidings.dump");
    let schema_arg = format!("--schema={}", schema.name);
    run(
        "pg_dump",
        &[
            "--format=custom",
            &schema_arg,
            "--file",
            dump.to_str().unwrap(),
            "--dbname",
            &base,
        ],
    );
    drop(s);

    let db = FreshDatabase::create(&base);
    run(
        "pg_restore",
        &["--no-owner", "--dbname", &db.url, dump.to_str().unwrap()],
    );
    let url = format!("{}?options=-csearch_path%3D{}", db.url, schema.name);
    let s2 = Server::spawn(
        &tmp.path().join("data"),
        vec![
            ("TIDINGS_ADMIN_TOKEN".into(), ADMIN.into()),
            ("TIDINGS_SERVER_DATABASE_URL".into(), url),
            ("TIDINGS_DATABASE_MAX_CONNECTIONS".into(), "5".into()),
            (
                "TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS".into(),
                "true".into(),
            ),
        ],
        &[],
    );
    for id in &ids {
        let (st, ev) = s2.admin("GET", &format!("/events/{id}"), None).await;
        assert_eq!(st, 200, "{ev}");
        assert_eq!(ev["deliveries"][0]["status"], "pending", "{ev}");
    }
    let r = Receiver::start().await;
    let (st, app) = s2
        .admin("PATCH", "/apps/A0PILE", Some(json!({"request_url": r.url})))
        .await;
    assert_eq!(st, 200, "{app}");
    r.wait_for(60, "every pending delivery of the dump", |hits| {
        ids.iter().all(|id| {
            hits.iter()
                .any(|h| h.json()["event_id"].as_str() == Some(id.as_str()))
        })
    })
    .await;
    drop(s2);
}

fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of its own on the test server, dropped when the value is.
struct FreshDatabase {
    base: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    fn create(base: &str) -> FreshDatabase {
        let name = format!(
            "tidings_restore_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        run(
            "psql",
            &[base, "-q", "-c", &format!("CREATE DATABASE {name}")],
        );
        // The same server and credentials; only the database differs.
        let root = base.split('?').next().unwrap_or(base);
        let server = root.rsplit_once('/').map_or(root, |(s, _)| s);
        FreshDatabase {
            base: base.to_string(),
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.base,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}
