//! Retention against the real binary with ages of seconds: finished deliveries and their
//! events disappear, a pending delivery (and its event) survives and is still delivered,
//! and the operator API says an id that is gone may be past retention.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::Server;

const SHORT_RETENTION: &[(&str, &str)] = &[
    ("TIDINGS_RETENTION_DELIVERED", "2s"),
    ("TIDINGS_RETENTION_FAILED", "2s"),
    ("TIDINGS_RETENTION_EVENTS", "2s"),
    ("TIDINGS_RETENTION_INTERVAL", "300ms"),
    // The late app's first attempt fails; its one retry comes 8 s later.
    ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["8s"]"#),
];

/// Polls `f` every 100 ms for up to `secs`; panics with `what` if it never holds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within {secs}s");
}

#[tokio::test]
async fn old_rows_are_pruned_while_pending_deliveries_survive_and_are_delivered() {
    let s = Server::start_with(SHORT_RETENTION);
    let good = Receiver::start().await;
    let answering = Arc::new(AtomicBool::new(false));
    let late = Receiver::with(Arc::new({
        let answering = answering.clone();
        move |_: &Hit, _| {
            if answering.load(Ordering::SeqCst) {
                Reply::ok()
            } else {
                Reply::status(503)
            }
        }
    }))
    .await;
    s.app_in_channel(json!({"id": "A0GOOD", "name": "good", "request_url": good.url, "bot_events": ["message.channels"]}))
        .await;
    s.app_in_channel(json!({"id": "A0LATE", "name": "late", "request_url": late.url, "bot_events": ["message.channels"]}))
        .await;

    let event = s.say("kept while a delivery is pending").await;
    let (_, ev) = s.admin("GET", &format!("/events/{event}"), None).await;
    let delivery_of = |app: &str| -> String {
        ev["deliveries"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["app_id"] == app))
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("no delivery for {app}: {ev}"))
            .to_string()
    };
    let (good_dl, late_dl) = (delivery_of("A0GOOD"), delivery_of("A0LATE"));

    // The delivered one goes once it is 2 s old; the pending one and the event stay.
    eventually(7, "the delivered delivery is pruned", || async {
        s.admin("GET", &format!("/deliveries/{good_dl}"), None)
            .await
            .0
            == 404
    })
    .await;
    let (st, ev) = s.admin("GET", &format!("/events/{event}"), None).await;
    assert_eq!(st, 200, "an event with a pending delivery is kept: {ev}");
    let left: Vec<&Value> = ev["deliveries"].as_array().unwrap().iter().collect();
    assert_eq!(left.len(), 1, "{ev}");
    assert_eq!(left[0]["id"], late_dl.as_str());
    assert_eq!(left[0]["status"], "pending", "{ev}");

    // The pending delivery is still sent: its retry succeeds.
    answering.store(true, Ordering::SeqCst);
    eventually(15, "the late app receives the event", || async {
        late.events()
            .iter()
            .filter(|h| h.json()["event_id"] == event.as_str())
            .count()
            >= 2
    })
    .await;
    eventually(5, "the late delivery is delivered", || async {
        let (_, d) = s
            .admin("GET", &format!("/deliveries/{late_dl}"), None)
            .await;
        d["status"] == "delivered"
    })
    .await;

    // Then it goes, and its event with it; the API says why they may be gone.
    eventually(7, "the event is pruned", || async {
        s.admin("GET", &format!("/events/{event}"), None).await.0 == 404
    })
    .await;
    let (st, p) = s.admin("GET", &format!("/events/{event}"), None).await;
    assert_eq!(st, 404);
    assert_eq!(p["type"], "urn:tidings:problem:not_found", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or("")
            .contains("past retention"),
        "{p}"
    );
    let (st, p) = s
        .admin("POST", &format!("/deliveries/{good_dl}/redeliver"), None)
        .await;
    assert_eq!(st, 404, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or("")
            .contains("past retention"),
        "{p}"
    );
    let (_, list) = s.admin("GET", "/apps/A0LATE/deliveries", None).await;
    assert_eq!(list["items"], json!([]), "{list}");

    let metrics = s.metrics().await;
    let pruned = |table: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("tidings_retention_pruned_rows_total")
                    && l.contains(&format!("table=\"{table}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(pruned("deliveries") >= 2.0, "{metrics}");
    assert!(pruned("attempts") >= 3.0, "{metrics}");
    assert!(pruned("events") >= 1.0, "{metrics}");
    assert!(
        metrics.contains("tidings_retention_last_run_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn retention_off_keeps_finished_deliveries() {
    let s = Server::start_with(&[
        ("TIDINGS_RETENTION_ENABLED", "false"),
        ("TIDINGS_RETENTION_DELIVERED", "1s"),
        ("TIDINGS_RETENTION_INTERVAL", "200ms"),
    ]);
    let good = Receiver::start().await;
    s.app_in_channel(json!({"id": "A0KEEP", "name": "keep", "request_url": good.url, "bot_events": ["message.channels"]}))
        .await;
    let event = s.say("kept").await;
    s.wait_status(&event, "delivered").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (st, ev) = s.admin("GET", &format!("/events/{event}"), None).await;
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["deliveries"][0]["status"], "delivered");
}
