//! Receiver back-pressure against real receivers on 127.0.0.1: `429`/`503` with
//! `Retry-After` pause the app and, within the budget, are not counted as attempts;
//! values past the cap are bounded; `410 Gone` stops deliveries until a new Request URL.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::Server;

async fn app_with_url(s: &Server, url: &str) -> Value {
    s.app_in_channel(
        json!({"id": "A01", "name": "bp", "bot_events": ["message.channels"], "request_url": url}),
    )
    .await
}

async fn delivery(s: &Server, event_id: &str) -> Value {
    let (_, ev) = s.admin("GET", &format!("/events/{event_id}"), None).await;
    ev["deliveries"][0].clone()
}

#[tokio::test]
async fn a_429_with_retry_after_waits_that_long_and_is_not_counted_as_an_attempt() {
    let s = Server::start();
    // Every event's first request: 429, wait 2 s; then 200.
    let r = Receiver::with(Arc::new(|_: &Hit, n| {
        if n == 0 {
            Reply::status(429).with_header("Retry-After", "2")
        } else {
            Reply::ok()
        }
    }))
    .await;
    app_with_url(&s, &r.url).await;
    let event_id = s.say("slow down").await;
    let d = s.wait_status(&event_id, "delivered").await;
    let hits = r.events();
    assert_eq!(hits.len(), 2);
    assert!(
        hits[1].at - hits[0].at >= Duration::from_secs(2),
        "the second request came {:?} after the first",
        hits[1].at - hits[0].at
    );
    // The deferral is not an attempt: one attempt logged, sent as a first attempt.
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{d}");
    assert_eq!(attempts[0]["retry_num"], 0);
    assert!(hits[1].header("x-slack-retry-num").is_none());
    assert!(s
        .metrics()
        .await
        .contains("tidings_delivery_backpressure_total{counted=\"no\"} 1"));
}

#[tokio::test]
async fn a_huge_retry_after_is_capped_and_past_the_budget_back_pressure_counts() {
    let s = Server::start_with(&[
        ("TIDINGS_DELIVERY_MAX_RETRY_AFTER", "1s"),
        ("TIDINGS_DELIVERY_RETRY_AFTER_BUDGET", "1"),
        (
            "TIDINGS_DELIVERY_RETRY_SCHEDULE",
            r#"["0s","200ms","400ms"]"#,
        ),
    ]);
    // 503 with a day's wait twice, then 200.
    let r = Receiver::with(Arc::new(|_: &Hit, n| {
        if n < 2 {
            Reply::status(503).with_header("Retry-After", "86400")
        } else {
            Reply::ok()
        }
    }))
    .await;
    app_with_url(&s, &r.url).await;
    let event_id = s.say("busy").await;
    let d = s.wait_status(&event_id, "delivered").await;
    let hits = r.events();
    assert_eq!(hits.len(), 3);
    for w in hits.windows(2) {
        // Capped at 1 s, not a day: the test would not end otherwise.
        assert!(w[1].at - w[0].at >= Duration::from_secs(1));
    }
    // The first 503 was a deferral (budget 1); the second counted as a failed attempt.
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(attempts[0]["status_code"], 503);
    assert_eq!(attempts[1]["retry_num"], 1);
    let m = s.metrics().await;
    assert!(
        m.contains("tidings_delivery_retry_after_total{decision=\"capped\"} 2"),
        "{m}"
    );
    assert!(m.contains("tidings_delivery_backpressure_total{counted=\"yes\"} 1"));
}

#[tokio::test]
async fn a_410_stops_deliveries_marks_the_app_and_a_new_url_resumes_them() {
    let s = Server::start();
    let gone = Receiver::with(Arc::new(|_: &Hit, _| Reply::status(410))).await;
    app_with_url(&s, &gone.url).await;
    let first = s.say("one").await;
    // The app is marked: its URL no longer verified, the reason shown.
    let mut app = Value::Null;
    for _ in 0..200 {
        app = s.admin("GET", "/apps/A01", None).await.1;
        if !app["request_url_gone"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        app["request_url_gone"].as_str().unwrap().contains("410"),
        "{app}"
    );
    assert!(app["request_url_gone_at"].is_i64());
    assert_eq!(app["request_url_verified"], false);
    assert!(s
        .metrics()
        .await
        .contains("tidings_delivery_request_url_gone_total 1"));
    // Nothing more goes to the gone URL: a second event waits pending.
    let second = s.say("two").await;
    assert_eq!(delivery(&s, &first).await["status"], "pending");
    assert_eq!(delivery(&s, &second).await["status"], "pending");
    let sent_to_gone = gone.events().len();
    assert_eq!(sent_to_gone, 1, "one request reached the gone URL");

    // A new Request URL clears the mark, and both are delivered there.
    let fresh = Receiver::start().await;
    let (st, app) = s
        .admin(
            "PATCH",
            "/apps/A01",
            Some(json!({"request_url": fresh.url})),
        )
        .await;
    assert_eq!(st, 200, "{app}");
    assert!(app["request_url_gone"].is_null() && app["request_url_gone_at"].is_null());
    s.wait_status(&first, "delivered").await;
    s.wait_status(&second, "delivered").await;
    assert_eq!(gone.events().len(), sent_to_gone);
}
