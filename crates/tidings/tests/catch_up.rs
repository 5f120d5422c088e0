//! The catch-up feed, `tidings.events.list`: an app that was down reconciles by
//! `event_id` and sees every event exactly once; the feed's token, scope, cursor and
//! parameter errors.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use support::receiver::{Hit, Receiver, Reply};
use support::Server;

async fn feed_token(s: &Server, app: &str) -> String {
    let (st, t) = s
        .admin(
            "POST",
            &format!("/apps/{app}/tokens"),
            Some(json!({"scopes": ["events:read"]})),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    t["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_app_down_for_10000_events_catches_up_and_sees_each_event_once() {
    let s = Server::start();
    // The app's endpoint: up, then down (500 with X-Slack-No-Retry, so each fails at once),
    // then up again. It records the event_ids it accepted.
    let down = Arc::new(AtomicBool::new(false));
    let r = {
        let down = down.clone();
        Receiver::with(Arc::new(move |_: &Hit, _| {
            if down.load(Ordering::Relaxed) {
                Reply::status(500).with_header("X-Slack-No-Retry", "1")
            } else {
                Reply::ok()
            }
        }))
        .await
    };
    s.app_in_channel(json!({"id": "A01", "name": "app", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    let mut published = s.say_many(500, "before").await;
    s.wait_none_pending("A01").await;
    down.store(true, Ordering::Relaxed);
    let missed = s.say_many(10_000, "down").await;
    s.wait_none_pending("A01").await;
    down.store(false, Ordering::Relaxed);
    // So many failures disable the app (the health rule; the rest were dropped): the
    // operator turns it back on.
    let (st, _) = s.admin("POST", "/apps/A01/events/enable", None).await;
    assert_eq!(st, 200);
    published.extend(missed.iter().cloned());
    published.extend(s.say_many(500, "after").await);
    s.wait_none_pending("A01").await;

    // What the app processed from deliveries: the 2xx answers.
    let missed_set: HashSet<&String> = missed.iter().collect();
    let accepted: Vec<String> = r
        .events()
        .iter()
        .map(|h| h.json()["event_id"].as_str().unwrap().to_string())
        .filter(|id| !missed_set.contains(id))
        .collect();
    let mut processed: HashMap<String, usize> = HashMap::new();
    for id in &accepted {
        *processed.entry(id.clone()).or_default() += 1;
    }
    // Back up: it walks the feed, oldest first, and processes what it has not seen.
    let token = feed_token(&s, "A01").await;
    let mut cursor = String::new();
    let mut listed: Vec<(String, String)> = Vec::new();
    loop {
        let mut form = vec![("limit", "1000"), ("oldest", "0")];
        if !cursor.is_empty() {
            form.push(("cursor", cursor.as_str()));
        }
        let (_, page) = s.api("tidings.events.list", Some(&token), &form).await;
        assert_eq!(page["ok"], true, "{page}");
        for e in page["events"].as_array().unwrap() {
            let id = e["envelope"]["event_id"].as_str().unwrap().to_string();
            assert_eq!(e["envelope"]["type"], "event_callback");
            assert_eq!(e["envelope"]["api_app_id"], "A01");
            listed.push((id, e["delivery"]["status"].as_str().unwrap().to_string()));
        }
        cursor = page["response_metadata"]["next_cursor"]
            .as_str()
            .unwrap()
            .to_string();
        if cursor.is_empty() {
            break;
        }
    }
    // Oldest first: the feed is in publish order, every event once.
    let order: Vec<&String> = listed.iter().map(|(id, _)| id).collect();
    assert_eq!(order, published.iter().collect::<Vec<_>>());
    for (id, status) in &listed {
        if !processed.contains_key(id) {
            assert!(status == "failed" || status == "dropped", "{id} {status}");
            processed.insert(id.clone(), 1);
        }
    }
    assert_eq!(processed.len(), published.len());
    assert!(processed.values().all(|n| *n == 1));
    let all: HashSet<&String> = published.iter().collect();
    assert!(processed.keys().all(|k| all.contains(k)));

    // status=failed lists exactly what was missed.
    let (_, failed) = s
        .api(
            "tidings.events.list",
            Some(&token),
            &[("status", "failed"), ("limit", "1")],
        )
        .await;
    assert_eq!(
        failed["events"][0]["envelope"]["event_id"],
        missed[0].as_str()
    );
    assert_eq!(failed["events"][0]["delivery"]["status"], "failed");
}

#[tokio::test]
async fn the_feed_refuses_another_apps_cursor_and_bad_tokens_and_parameters() {
    let s = Server::start();
    s.app_in_channel(json!({"id": "A01", "name": "one", "bot_events": ["message.channels"]}))
        .await;
    let (st, _) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"id": "A02", "name": "two", "bot_events": ["message.channels"]})),
        )
        .await;
    assert_eq!(st, 201);
    s.say_many(3, "x").await;
    let one = feed_token(&s, "A01").await;
    let two = feed_token(&s, "A02").await;
    let (_, page) = s
        .api("tidings.events.list", Some(&one), &[("limit", "1")])
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    let c = page["response_metadata"]["next_cursor"].as_str().unwrap();
    assert!(!c.is_empty());
    let (_, e) = s
        .api("tidings.events.list", Some(&two), &[("cursor", c)])
        .await;
    assert_eq!(e, json!({"ok": false, "error": "invalid_cursor"}));
    let (_, e) = s
        .api("tidings.events.list", Some(&one), &[("cursor", "zz")])
        .await;
    assert_eq!(e["error"], "invalid_cursor");
    for (k, v, err) in [
        ("limit", "0", "invalid_limit"),
        ("limit", "1001", "invalid_limit"),
        ("oldest", "yesterday", "invalid_ts_oldest"),
        ("status", "lost", "invalid_status"),
    ] {
        let (_, e) = s.api("tidings.events.list", Some(&one), &[(k, v)]).await;
        assert_eq!(e["error"], err, "{k}={v}");
    }
    // Reaching back past what retention keeps says so; a recent `oldest` does not.
    let (_, e) = s.api("tidings.events.list", Some(&one), &[]).await;
    assert_eq!(
        e["response_metadata"]["warnings"],
        json!(["oldest_past_retention"]),
        "{e}"
    );
    assert!(
        e["response_metadata"]["messages"][0]
            .as_str()
            .is_some_and(|m| m.contains("[retention]")),
        "{e}"
    );
    let recent = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60)
        .to_string();
    let (_, e) = s
        .api("tidings.events.list", Some(&one), &[("oldest", &recent)])
        .await;
    assert!(e["response_metadata"].get("warnings").is_none(), "{e}");
    assert_eq!(e["events"].as_array().map(Vec::len), Some(3), "{e}");
    // A future `oldest` lists nothing; team_id filters.
    let (_, e) = s
        .api(
            "tidings.events.list",
            Some(&one),
            &[("oldest", "99999999999")],
        )
        .await;
    assert_eq!(e["events"], json!([]));
    let (_, e) = s
        .api("tidings.events.list", Some(&one), &[("team_id", "T99")])
        .await;
    assert_eq!(e["events"], json!([]));
    // An app-level token without events:read, and a bot token.
    let (_, t) = s
        .admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["authorizations:read"]})),
        )
        .await;
    let (_, e) = s.api("tidings.events.list", t["token"].as_str(), &[]).await;
    assert_eq!(e["error"], "missing_scope");
    let ws = s
        .workspace(&["message.channels"], &["channels:history"], &[])
        .await;
    let (_, e) = s
        .api("tidings.events.list", Some(ws.bot_token()), &[])
        .await;
    assert_eq!(e["error"], "not_allowed_token_type");
}
