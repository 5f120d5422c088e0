//! Insights through the operator API against the real binary: event counts by type, team
//! and event time with distinct users (late and too-old events included), key events and
//! the share of active users, delivery insights per app, and bad ranges.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::Server;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Publishes `event` in T01 (optionally at `event_time`); returns the status and body.
async fn publish(s: &Server, event: Value, event_time: Option<i64>) -> (u16, Value) {
    let mut body = json!({"team_id": "T01", "event": event});
    if let Some(t) = event_time {
        body["event_time"] = t.into();
    }
    s.admin("POST", "/events", Some(body)).await
}

async fn user(s: &Server, id: &str) {
    let (st, u) = s
        .admin(
            "POST",
            "/teams/T01/users",
            Some(json!({"id": id, "name": id.to_lowercase()})),
        )
        .await;
    assert_eq!(st, 201, "{u}");
}

fn message(user: &str) -> Value {
    json!({"type": "message", "channel": "C01", "user": user, "text": "hi"})
}

fn by_type<'a>(body: &'a Value, ty: &str) -> &'a Value {
    body["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["event_type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} in {body}"))
}

/// Sum of a series' `count` (or `events`) over buckets starting in `[from, to)`.
fn series_sum(series: &Value, key: &str, from: i64, to: i64) -> u64 {
    series
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| (from..to).contains(&p["t"].as_i64().unwrap()))
        .map(|p| p[key].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn events_are_counted_by_type_and_event_time_with_distinct_users_late_and_too_old_included() {
    let s = Server::start();
    s.acme().await;
    user(&s, "U02").await;
    user(&s, "U03").await;
    let t = now();
    for u in ["U01", "U01", "U02"] {
        assert_eq!(publish(&s, message(u), None).await.0, 202);
    }
    // Held by an offline client and published late: it counts in the hour it happened.
    let late = t - 2 * 3_600;
    assert_eq!(publish(&s, message("U03"), Some(late)).await.0, 202);
    let (st, r) = publish(
        &s,
        json!({"type": "reaction_added", "user": "U02", "reaction": "tada",
               "item": {"type": "message", "channel": "C01", "ts": "1.000001"}}),
        None,
    )
    .await;
    assert_eq!(st, 202, "{r}");
    // Too old: refused, and counted as such.
    let (st, r) = publish(&s, message("U01"), Some(t - 73 * 3_600)).await;
    assert_eq!(
        (st, r["type"].as_str()),
        (422, Some("urn:tidings:problem:event_too_old")),
        "{r}"
    );
    // A duplicate publish is not a second event.
    let body = json!({"team_id": "T01", "event": message("U02"), "idempotency_key": "k1"});
    assert_eq!(s.admin("POST", "/events", Some(body.clone())).await.0, 202);
    assert_eq!(
        s.admin("POST", "/events", Some(body)).await.1["duplicate"],
        true
    );

    let q = format!(
        "/insights/events?team_id=T01&from={}&to={}&granularity=hour",
        t - 3 * 3_600,
        t + 60
    );
    let mut snapshot = Value::Null;
    for restarted in [false, true] {
        let (st, b) = s.admin("GET", &q, None).await;
        assert_eq!(st, 200, "{b}");
        let msgs = by_type(&b, "message.channels");
        assert_eq!(msgs["count"], 5, "{b}");
        assert_eq!(msgs["users"], 3, "U01, U02 and U03: {b}");
        assert_eq!(msgs["refused_too_old"], 1, "{b}");
        let late_hour = late - late.rem_euclid(3_600);
        assert_eq!(
            series_sum(&msgs["series"], "count", late_hour, late_hour + 3_600),
            1,
            "the late event is in its own hour: {b}"
        );
        let reactions = by_type(&b, "reaction_added");
        assert_eq!(
            (reactions["count"].as_u64(), reactions["users"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(b["totals"]["events"], 6, "{b}");
        assert_eq!(b["totals"]["users"], 3, "{b}");
        assert_eq!(b["totals"]["refused_too_old"], 1, "{b}");
        assert_eq!(b["granularity"], "hour");
        assert_eq!(b["from"].as_i64().unwrap() % 3_600, 0);
        if restarted {
            assert_eq!(b, snapshot, "the rollups are on disk");
        } else {
            snapshot = b;
        }
    }
    let s = s.restart();
    let (_, b) = s.admin("GET", &q, None).await;
    assert_eq!(b, snapshot, "the same numbers after a restart");

    // Minute granularity: counts per minute, no per-minute user sets.
    let (_, b) = s
        .admin(
            "GET",
            &format!(
                "/insights/events?granularity=minute&from={}&to={}",
                t - 600,
                t + 60
            ),
            None,
        )
        .await;
    assert_eq!(b["team_id"], Value::Null);
    assert_eq!(by_type(&b, "message.channels")["count"], 4, "{b}");
    assert!(b["series"][0].get("users").is_none(), "{b}");
    // Another team's view is empty.
    let (st, other) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"id": "T02", "name": "Other", "domain": "other"})),
        )
        .await;
    assert_eq!(st, 201, "{other}");
    let (_, b) = s.admin("GET", "/insights/events?team_id=T02", None).await;
    assert_eq!(b["totals"]["events"], 0, "{b}");
}

#[tokio::test]
async fn key_events_are_marked_for_history_too_with_the_share_of_active_users() {
    let s = Server::start();
    s.acme().await;
    user(&s, "U02").await;
    for u in ["U01", "U02"] {
        assert_eq!(publish(&s, message(u), None).await.0, 202);
    }
    let (st, _) = publish(
        &s,
        json!({"type": "reaction_added", "user": "U02", "reaction": "tada",
               "item": {"type": "message", "channel": "C01", "ts": "1.000001"}}),
        None,
    )
    .await;
    assert_eq!(st, 202);

    let (st, k) = s.admin("PUT", "/key_events/reaction_added", None).await;
    assert_eq!(st, 201, "{k}");
    assert_eq!(k["event_type"], "reaction_added");
    assert!(k["created_at"].is_i64());
    assert_eq!(
        s.admin("PUT", "/key_events/reaction_added", None).await.0,
        200
    );
    let (st, p) = s.admin("PUT", "/key_events/no_such_event", None).await;
    assert_eq!(st, 404, "{p}");
    let (_, list) = s.admin("GET", "/key_events", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (_, types) = s.admin("GET", "/event_types", None).await;
    let reaction = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "reaction_added")
        .cloned()
        .unwrap();
    assert_eq!(reaction["key_event"], true);
    assert_eq!(reaction["custom"], false);

    // Marked after the fact, and the earlier event counts.
    let (st, b) = s
        .admin("GET", "/insights/key_events?team_id=T01", None)
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["active_users"], 2, "{b}");
    let ke = &b["key_events"][0];
    assert_eq!(
        (
            ke["event_type"].as_str(),
            ke["count"].as_u64(),
            ke["users"].as_u64()
        ),
        (Some("reaction_added"), Some(1), Some(1))
    );
    assert_eq!(ke["share_of_active_users"], 0.5, "{b}");
    let (_, ev) = s.admin("GET", "/insights/events?team_id=T01", None).await;
    assert_eq!(by_type(&ev, "reaction_added")["key_event"], true);
    assert_eq!(by_type(&ev, "message.channels")["key_event"], false);

    assert_eq!(
        s.admin("DELETE", "/key_events/reaction_added", None)
            .await
            .0,
        204
    );
    assert_eq!(
        s.admin("DELETE", "/key_events/reaction_added", None)
            .await
            .0,
        404
    );
    let (_, b) = s.admin("GET", "/insights/key_events", None).await;
    assert_eq!(b["key_events"], json!([]));
}

#[tokio::test]
async fn delivery_insights_count_attempts_retries_latency_and_how_deliveries_ended() {
    let s = Server::start_with(&[(
        "TIDINGS_DELIVERY_RETRY_SCHEDULE",
        r#"["0s","200ms","400ms"]"#,
    )]);
    // Every event's first attempt fails; its retry succeeds.
    let r = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else if h.header("x-slack-retry-num").is_none() {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    }))
    .await;
    s.app_in_channel(json!({"id": "A01", "name": "flaky", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    s.app_in_channel(json!({"id": "A02", "name": "idle", "bot_events": ["message.channels"]}))
        .await;

    for i in 0..5 {
        s.say(&format!("m{i}")).await;
    }

    let mut b = Value::Null;
    for _ in 0..200 {
        b = s
            .admin("GET", "/insights/deliveries?app_id=A01", None)
            .await
            .1;
        if b["apps"][0]["delivered"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = &b["apps"][0];
    assert_eq!(a["app_id"], "A01", "{b}");
    assert_eq!(
        (
            a["attempts"].as_u64(),
            a["succeeded"].as_u64(),
            a["failed"].as_u64()
        ),
        (Some(10), Some(5), Some(5)),
        "{b}"
    );
    assert_eq!(a["retries"], 5, "{b}");
    assert_eq!(a["delivered"], 5, "{b}");
    assert_eq!(a["success_ratio"], 0.5, "{b}");
    assert_eq!(a["attempt_failures"]["http_error"], 5, "{b}");
    assert!(a["latency_ms"]["p50"].as_f64().unwrap() >= 0.0, "{b}");
    assert!(a["latency_ms"]["p99"].as_f64().unwrap() >= a["latency_ms"]["p50"].as_f64().unwrap());
    assert_eq!(a["events_enabled"], true);
    assert_eq!(a["health"]["attempts"], 10, "{b}");
    assert_eq!(a["health"]["events"], 5, "{b}");
    assert_eq!(a["health"]["min_events"], 1000);
    assert_eq!(b["totals"]["attempts"], 10, "{b}");
    assert_eq!(
        series_sum(&b["totals"]["series"], "attempts", 0, i64::MAX),
        10
    );

    // All apps: every app listed, even one with nothing counted (A02 has no Request URL).
    let (_, all) = s.admin("GET", "/insights/deliveries", None).await;
    let ids: Vec<&str> = all["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A01", "A02"], "{all}");
    assert_eq!(all["apps"][1]["success_ratio"], Value::Null);
    assert_eq!(all["apps"][1]["latency_ms"], Value::Null);
}

#[tokio::test]
async fn deliveries_dropped_for_a_disabled_app_are_counted_by_reason() {
    let s = Server::start_with(&[
        ("TIDINGS_HEALTH_MIN_EVENTS", "3"),
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", "[]"),
    ]);
    let r = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::status(500)
        }
    }))
    .await;
    s.app_in_channel(json!({"id": "A01", "name": "broken", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    for i in 0..4 {
        s.say(&format!("m{i}")).await;
    }
    for _ in 0..300 {
        if s.admin("GET", "/apps/A01", None).await.1["events_enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = s.say("while disabled").await;
    s.wait_status(&ev, "dropped").await;
    let (_, b) = s.admin("GET", "/insights/deliveries", None).await;
    let a = &b["apps"][0];
    assert_eq!(a["events_enabled"], false, "{b}");
    assert!(
        a["disabled_reason"].as_str().unwrap().contains("failed"),
        "{b}"
    );
    // Every delivery ended: failed for good, or dropped once the app was off; the counts
    // agree with the delivery log.
    let (_, log) = s
        .admin("GET", "/apps/A01/deliveries?status=dropped", None)
        .await;
    let dropped = log["items"].as_array().unwrap().len() as u64;
    assert!(dropped >= 1);
    assert_eq!(a["drops"]["app_disabled"].as_u64(), Some(dropped), "{b}");
    assert_eq!(a["dropped"].as_u64(), Some(dropped), "{b}");
    assert_eq!(a["gave_up"].as_u64(), Some(5 - dropped), "{b}");
    assert_eq!(
        a["failures"]["http_error"].as_u64(),
        Some(5 - dropped),
        "{b}"
    );
    assert_eq!(a["success_ratio"], 0.0, "{b}");
}

#[tokio::test]
async fn insight_queries_refuse_bad_ranges_and_unknown_scopes() {
    let s = Server::start();
    let cases = [
        // A range refused as a whole (each end is fine): 422 invalid_range.
        ("/insights/events?from=100&to=100", 422, "invalid_range"),
        ("/insights/events?granularity=week", 400, "granularity"),
        (
            "/insights/events?from=0&to=5184000&granularity=minute",
            422,
            "invalid_range",
        ),
        // Times outside 0..=9999-12-31 are malformed (they used to overflow the bucket
        // arithmetic and drop the connection).
        (
            "/insights/events?from=-9223372036854775808&granularity=minute",
            400,
            "from",
        ),
        ("/insights/key_events?to=9223372036854775807", 400, "\"to\""),
        ("/insights/deliveries?from=-1&to=100", 400, "from"),
        ("/insights/events?from=yesterday", 400, "from"),
        ("/insights/events?team=T01", 400, "team"),
        ("/insights/events?team_id=nope", 400, "team_id"),
        ("/insights/key_events?team_id=T0NOPE", 404, ""),
        ("/insights/deliveries?app_id=A0NOPE", 404, ""),
    ];
    for (path, status, field) in cases {
        let (st, p) = s.admin("GET", path, None).await;
        assert_eq!(st, status, "{path}: {p}");
        if !field.is_empty() {
            assert!(p.to_string().contains(field), "{path}: {p}");
        }
    }
    // A 30-day range at minute granularity is within bounds.
    let (st, b) = s
        .admin(
            "GET",
            &format!(
                "/insights/events?from={}&granularity=minute",
                now() - 30 * 86_400
            ),
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
}
