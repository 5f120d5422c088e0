//! `tidings trigger`: every built-in event type's catalog sample publishes and is delivered
//! to an app subscribed to it, through the real CLI and server.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::receiver::Receiver;
use support::{bin, Server, ADMIN};
use tidings_core::catalog::Catalog;

fn trigger(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("trigger")
        .args(args)
        .env("TIDINGS_URL", &s.url)
        .env("TIDINGS_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("running the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn union(lists: impl Iterator<Item = Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = lists.flatten().collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builtin_types_sample_publishes_and_is_delivered() {
    let s = Server::start();
    let r = Receiver::start().await;
    s.acme().await;
    let catalog = Catalog::builtin();
    let bot_events: Vec<&str> = catalog
        .iter()
        .filter(|k| k.bot)
        .map(|k| k.name.as_str())
        .collect();
    let user_events: Vec<&str> = catalog
        .iter()
        .filter(|k| k.user)
        .map(|k| k.name.as_str())
        .collect();
    let (st, app) = s
        .admin(
            "POST",
            "/apps",
            Some(
                json!({"id": "A01", "name": "Everything", "request_url": r.url,
                        "bot_events": bot_events, "user_events": user_events}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{app}");
    let bot_scopes = union(catalog.iter().map(|k| k.bot_scopes.clone()));
    let user_scopes = union(catalog.iter().map(|k| k.user_scopes.clone()));
    let (st, inst) = s
        .admin(
            "POST",
            "/apps/A01/installations",
            Some(json!({"team_id": "T01", "installer_user_id": "U01",
                        "bot_scopes": bot_scopes, "user_scopes": user_scopes})),
        )
        .await;
    assert_eq!(st, 201, "{inst}");
    let (st, _) = s
        .admin(
            "POST",
            "/teams/T01/conversations/C01/members",
            Some(json!({"user": inst["bot_user_id"]})),
        )
        .await;
    assert_eq!(st, 200);
    // Deleting C01 last, so every other sample still finds it.
    let mut names: Vec<&str> = catalog.iter().map(|k| k.name.as_str()).collect();
    names.sort_by_key(|n| *n == "channel_deleted");
    assert_eq!(names.len(), 50);
    for name in names {
        let (ok, out, err) = tokio::task::block_in_place(|| {
            trigger(
                &s,
                &[
                    name,
                    "--team",
                    "T01",
                    "--channel",
                    "C01",
                    "--user",
                    "U01",
                    "--app",
                    "A01",
                    "--json",
                ],
            )
        });
        assert!(ok, "{name}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
        assert_eq!(v["deliveries"], 1, "{name}: {v}");
        let id = v["event_id"].as_str().unwrap();
        let d = s.wait_status(id, "delivered").await;
        assert_eq!(d["event_type"], name, "{d}");
    }
    let delivered: Vec<String> = r
        .events()
        .iter()
        .map(|h| h.json()["event"]["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(delivered.len(), 50, "{delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_names_what_a_sample_needs_and_refuses_unknown_types() {
    let s = Server::start();
    s.acme().await;
    let (ok, _, err) =
        tokio::task::block_in_place(|| trigger(&s, &["reaction_added", "--team", "T01"]));
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: this event type's sample needs --channel, --user",
    );
    let (ok, _, err) =
        tokio::task::block_in_place(|| trigger(&s, &["no_such_type", "--team", "T01"]));
    assert!(!ok);
    assert!(err.contains("is not an event type in the catalog"), "{err}");
}
