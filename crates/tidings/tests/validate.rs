//! `POST /admin/v1/events/validate` against the real binary: for a table of events, what
//! the dry run predicts (codes, catalog type, audience, exact envelopes) is what publish
//! then does, and the dry run itself stores nothing.

mod support;

use serde_json::{json, Value};
use support::Server;

const SCOPES: &[&str] = &[
    "channels:history",
    "reactions:read",
    "app_mentions:read",
    "channels:read",
];
const EVENTS: &[&str] = &[
    "message.channels",
    "reaction_added",
    "app_mention",
    "member_joined_channel",
];

/// Team T01 with U01, U02; app A01 whose bot is in C01 with U01; app A02 whose bot is not.
async fn setup(s: &Server) -> String {
    s.acme().await;
    let (st, _) = s
        .admin(
            "POST",
            "/teams/T01/users",
            Some(json!({"id": "U02", "name": "bob"})),
        )
        .await;
    assert_eq!(st, 201);
    let mut bot = String::new();
    for id in ["A01", "A02"] {
        let (st, app) = s
            .admin(
                "POST",
                "/apps",
                Some(json!({"id": id, "name": id, "bot_events": EVENTS})),
            )
            .await;
        assert_eq!(st, 201, "{app}");
        let (st, inst) = s
            .admin(
                "POST",
                &format!("/apps/{id}/installations"),
                Some(json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": SCOPES})),
            )
            .await;
        assert_eq!(st, 201, "{inst}");
        if id == "A01" {
            bot = inst["bot_user_id"].as_str().unwrap().to_string();
            let (st, _) = s
                .admin(
                    "POST",
                    "/teams/T01/conversations/C01/members",
                    Some(json!({"user": bot})),
                )
                .await;
            assert_eq!(st, 200);
        }
    }
    bot
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An envelope without what names the (placeholder or real) event id.
fn comparable(mut envelope: Value) -> Value {
    if let Some(o) = envelope.as_object_mut() {
        o.remove("event_id");
        o.remove("event_context");
    }
    envelope
}

/// (app, authorization, envelope) of each delivery, sorted by app.
fn audience(deliveries: &Value) -> Vec<(String, Value, Value)> {
    let mut v: Vec<_> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["app_id"].as_str().unwrap().to_string(),
                d["authorization"].clone(),
                comparable(d["envelope"].clone()),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn validate_predicts_what_publish_then_delivers() {
    let s = Server::start();
    let bot = setup(&s).await;
    let t = now() - 60;
    let ts = format!("{t}.000100");
    let table = vec![
        // A channel message: only A01's bot is in C01.
        (
            json!({"team_id": "T01", "event_time": t, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "hi", "ts": ts, "event_ts": ts}}),
            vec!["A01"],
        ),
        // A reaction to a file: the whole team.
        (
            json!({"team_id": "T01", "event_time": t, "event": {"type": "reaction_added", "user": "U01", "reaction": "tada", "item": {"type": "file", "file": "F01"}, "event_ts": ts}}),
            vec!["A01", "A02"],
        ),
        // A mention of A01's bot.
        (
            json!({"team_id": "T01", "event_time": t, "event": {"type": "app_mention", "channel": "C01", "user": "U01", "text": format!("<@{bot}> hello"), "ts": ts, "event_ts": ts}}),
            vec!["A01"],
        ),
        // Bob joins C01: a directory change applied before fan-out.
        (
            json!({"team_id": "T01", "event_time": t, "idempotency_key": "join-1", "event": {"type": "member_joined_channel", "channel": "C01", "user": "U02", "channel_type": "C", "event_ts": ts}}),
            vec!["A01"],
        ),
    ];
    for (body, apps) in table {
        let (st, v) = s
            .admin("POST", "/events/validate", Some(body.clone()))
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["messages"], json!([]), "{v}");
        let predicted = audience(&v["deliveries"]);
        let predicted_apps: Vec<&str> = predicted.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(predicted_apps, apps, "{body}");
        for d in v["deliveries"].as_array().unwrap() {
            assert_eq!(d["envelope"]["event_id"], "Ev0000DRYRUN");
        }
        let (st, p) = s.admin("POST", "/events", Some(body.clone())).await;
        assert_eq!(st, 202, "{p}");
        assert_eq!(
            p["duplicate"], false,
            "validate used no idempotency key: {p}"
        );
        let id = p["event_id"].as_str().unwrap();
        let (st, ev) = s.admin("GET", &format!("/events/{id}"), None).await;
        assert_eq!(st, 200);
        assert_eq!(ev["event"]["event_type"], v["event_type"], "{ev}");
        assert_eq!(audience(&ev["deliveries"]), predicted, "{body}");
    }
}

#[tokio::test]
async fn validate_reports_the_codes_publish_refuses_with() {
    let s = Server::start();
    setup(&s).await;
    let t = now();
    let table = vec![
        json!({"team_id": "T01", "event_time": t - 80 * 3600, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "old"}}),
        json!({"team_id": "T01", "event_time": t + 3600, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "future"}}),
        json!({"team_id": "T01", "event": {"type": "no_such_event"}}),
        json!({"team_id": "T01", "event": {"type": "message", "channel": "C99", "user": "U01", "text": "x"}}),
        json!({"team_id": "T0NOPE", "event": {"type": "message", "channel": "C01", "user": "U01"}}),
    ];
    for body in table {
        let (st, v) = s
            .admin("POST", "/events/validate", Some(body.clone()))
            .await;
        assert_eq!(st, 200, "{v}");
        let (pst, p) = s.admin("POST", "/events", Some(body.clone())).await;
        assert!(pst >= 400, "{body} published: {p}");
        assert_eq!(v["valid"], false, "{body}: {v}");
        let code = p["type"]
            .as_str()
            .unwrap()
            .trim_start_matches("urn:tidings:problem:");
        assert_eq!(v["messages"][0]["code"], code, "{body}: {v} vs {p}");
        let field = p["errors"][0]["field"].as_str().unwrap_or("");
        assert_eq!(v["messages"][0]["field_path"], field, "{body}: {v} vs {p}");
        assert_eq!(v["deliveries"], json!([]));
    }
    // What the document rules out is the same problem as publish's.
    for body in [
        json!({"team_id": "T01", "event": {"channel": "C01"}}),
        json!({"team_id": "T01", "event": {"type": ""}}),
        json!({"team_id": "T01", "event": {"type": "member_joined_channel", "channel": "C01"}}),
        json!({"team_id": "", "event": {"type": "message", "channel": "C01", "user": "U01"}}),
        json!({"team_id": "T01", "event": {"type": "message"}, "surprise": 1}),
    ] {
        let (st, v) = s
            .admin("POST", "/events/validate", Some(body.clone()))
            .await;
        let (pst, p) = s.admin("POST", "/events", Some(body.clone())).await;
        assert_eq!((st, &v["type"]), (pst, &p["type"]), "{body}: {v} vs {p}");
        assert!(st == 400 || st == 422, "{body}: {v}");
    }
}

#[tokio::test]
async fn validate_stores_nothing_and_names_a_duplicate() {
    let s = Server::start();
    setup(&s).await;
    let join = json!({"team_id": "T01", "idempotency_key": "k1", "event": {"type": "member_joined_channel", "channel": "C01", "user": "U02"}});
    let (st, v) = s
        .admin("POST", "/events/validate", Some(join.clone()))
        .await;
    assert_eq!((st, &v["valid"]), (200, &json!(true)), "{v}");
    assert_eq!(v["event_type"], "member_joined_channel");
    let (_, c) = s.admin("GET", "/teams/T01/conversations/C01", None).await;
    assert!(
        !c["members"].as_array().unwrap().contains(&json!("U02")),
        "the dry run's join was rolled back: {c}"
    );
    let (_, page) = s.admin("GET", "/apps/A01/deliveries", None).await;
    assert_eq!(page["items"], json!([]), "no delivery was stored: {page}");
    let (st, p) = s.admin("POST", "/events", Some(join.clone())).await;
    assert_eq!(st, 202, "{p}");
    let (_, v) = s.admin("POST", "/events/validate", Some(join)).await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["duplicate_of"], p["event_id"], "{v}");
    assert_eq!(v["deliveries"], json!([]));
}
