//! Column-scoped and compare-and-swap app updates on both backends (PostgreSQL when
//! `TIDINGS_TEST_DATABASE_URL` is set): writers that read the same row cannot undo each
//! other, and a decision made on an old version writes nothing.

use std::sync::Arc;

use crate::sql::postgres::{self, TestSchema};
use crate::sql::sqlite;
use crate::{App, AppUpdate, EventShape, Store, StoreError};

/// The stores to test: SQLite always, PostgreSQL when configured (kept alive with their
/// directory or schema).
fn stores() -> Vec<(Arc<dyn Store>, Box<dyn std::any::Any + Send>)> {
    let mut out: Vec<(Arc<dyn Store>, Box<dyn std::any::Any + Send>)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let s = sqlite::open(&dir.path().join("data")).unwrap();
    out.push((Arc::new(s), Box::new(dir)));
    if let Some(schema) = TestSchema::from_env() {
        let url = schema.url();
        let s = std::thread::spawn(move || {
            postgres::open(&postgres::PgOptions {
                url,
                max_connections: 4,
                lease: std::time::Duration::from_secs(4),
                connect_timeout: std::time::Duration::from_secs(3),
                statement_timeout: std::time::Duration::from_secs(3),
                ca_file: None,
            })
        })
        .join()
        .unwrap()
        .unwrap();
        let s: Arc<dyn Store> = Arc::new(s);
        // Never dropped: its blocking driver must not be dropped on the test's runtime.
        std::mem::forget(s.clone());
        out.push((s, Box::new(schema)));
    }
    out
}

fn app(id: &str) -> App {
    App {
        id: id.into(),
        name: "before".into(),
        request_url: Some("https://old.example/events".into()),
        request_url_verified: true,
        socket_mode: false,
        bot_events: vec!["message.channels".into()],
        user_events: vec![],
        event_shape: EventShape::Authorizations,
        signing_secret: "secret-0".into(),
        verification_token: "vt".into(),
        events_enabled: true,
        disabled_reason: None,
        disabled_at: None,
        created_at: 0,
        version: 0,
        enabled_at_ms: None,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_writes_only_the_columns_it_names() {
    for (store, _keep) in stores() {
        let created = store.create_app(app("A1")).await.unwrap();
        // Two writers read the same row; each changes its own field.
        let rotated = store
            .update_app(
                "A1",
                AppUpdate {
                    signing_secret: Some("secret-1".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let renamed = store
            .update_app(
                "A1",
                AppUpdate {
                    name: Some("after".into()),
                    request_url: Some(Some("https://new.example/events".into())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(renamed.signing_secret, "secret-1", "the rotation survives");
        assert_eq!(renamed.name, "after");
        assert_eq!(
            renamed.request_url.as_deref(),
            Some("https://new.example/events")
        );
        assert_eq!(renamed.bot_events, created.bot_events);
        assert_eq!(
            (created.version, rotated.version, renamed.version),
            (1, 2, 3)
        );
        assert_eq!(store.get_app("A1").await.unwrap().unwrap(), renamed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_decided_on_an_old_version_writes_nothing() {
    for (store, _keep) in stores() {
        let read = store.create_app(app("A1")).await.unwrap();
        // The operator re-enables (an enable on an enabled app still counts: it is news).
        store
            .update_app(
                "A1",
                AppUpdate {
                    events_enabled: Some(true),
                    disabled_reason: Some(None),
                    disabled_at: Some(None),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // The health rule's disable, decided on what it read before the enable.
        let stale = store
            .update_app(
                "A1",
                AppUpdate {
                    expect_version: Some(read.version),
                    expect_events_enabled: Some(true),
                    events_enabled: Some(false),
                    disabled_reason: Some(Some("failing".into())),
                    disabled_at: Some(Some(60)),
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
        let now = store.get_app("A1").await.unwrap().unwrap();
        assert!(now.events_enabled);
        assert_eq!(now.disabled_reason, None);
        assert_eq!(now.version, 2);
        // Decided again on the current version, it applies.
        let disabled = store
            .update_app(
                "A1",
                AppUpdate {
                    expect_version: Some(now.version),
                    events_enabled: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(!disabled.events_enabled);
        let missing = store.update_app("A9", AppUpdate::default()).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verified_url_is_written_only_over_the_url_it_replaced() {
    for (store, _keep) in stores() {
        store.create_app(app("A1")).await.unwrap();
        // Another PATCH sets a third URL while ours is being verified.
        store
            .update_app(
                "A1",
                AppUpdate {
                    request_url: Some(None),
                    request_url_verified: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let ours = store
            .update_app(
                "A1",
                AppUpdate {
                    expect_request_url: Some(Some("https://old.example/events".into())),
                    request_url: Some(Some("https://ours.example/events".into())),
                    request_url_verified: Some(true),
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(ours, Err(StoreError::Stale(_))), "{ours:?}");
        let now = store.get_app("A1").await.unwrap().unwrap();
        assert_eq!((now.request_url, now.request_url_verified), (None, false));
        // `Some(None)` guards on "still no URL".
        let set = store
            .update_app(
                "A1",
                AppUpdate {
                    expect_request_url: Some(None),
                    request_url: Some(Some("https://ours.example/events".into())),
                    request_url_verified: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            set.request_url.as_deref(),
            Some("https://ours.example/events")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_different_columns_each_keep_their_last_value() {
    const N: usize = 25;
    for (store, _keep) in stores() {
        store.create_app(app("A1")).await.unwrap();
        let mut tasks = Vec::new();
        for field in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..N {
                    let mut u = AppUpdate::default();
                    match field {
                        0 => u.name = Some(format!("name-{i}")),
                        1 => u.signing_secret = Some(format!("secret-{i}")),
                        2 => u.bot_events = Some(vec![format!("type-{i}")]),
                        _ => u.socket_mode = Some(i.is_multiple_of(2)),
                    }
                    store.update_app("A1", u).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let a = store.get_app("A1").await.unwrap().unwrap();
        assert_eq!(a.name, format!("name-{}", N - 1));
        assert_eq!(a.signing_secret, format!("secret-{}", N - 1));
        assert_eq!(a.bot_events, vec![format!("type-{}", N - 1)]);
        assert_eq!(a.socket_mode, (N - 1).is_multiple_of(2));
        assert_eq!(
            a.version,
            1 + 4 * N as i64,
            "every write bumped the version"
        );
    }
}
