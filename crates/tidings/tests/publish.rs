//! Events in: publish, validation, idempotency, the time rules, batches, directory upkeep,
//! and the exact envelopes (golden), against the real binary.

mod support;

use serde_json::{json, Value};
use support::Server;

/// A team T01 with users U01 (alice), U02 (bob), channel C01 with alice and the app's bot.
async fn setup(s: &Server, bot_events: &[&str], bot_scopes: &[&str]) -> Value {
    assert_eq!(
        s.admin(
            "POST",
            "/teams",
            Some(json!({"id": "T01", "name": "Acme", "domain": "acme"}))
        )
        .await
        .0,
        201
    );
    for (id, name) in [("U01", "alice"), ("U02", "bob")] {
        assert_eq!(
            s.admin(
                "POST",
                "/teams/T01/users",
                Some(json!({"id": id, "name": name}))
            )
            .await
            .0,
            201
        );
    }
    let (st, app) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"id": "A01", "name": "App", "bot_events": bot_events})),
        )
        .await;
    assert_eq!(st, 201, "{app}");
    let (st, inst) = s
        .admin(
            "POST",
            "/apps/A01/installations",
            Some(json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": bot_scopes})),
        )
        .await;
    assert_eq!(st, 201, "{inst}");
    let bot = inst["bot_user_id"].as_str().unwrap();
    let (st, _) = s
        .admin(
            "PUT",
            "/teams/T01/conversations/C01",
            Some(json!({"name": "general", "kind": "public", "members": ["U01", bot]})),
        )
        .await;
    assert_eq!(st, 201);
    json!({"app": app, "inst": inst})
}

async fn publish(s: &Server, body: Value) -> (u16, Value) {
    s.admin("POST", "/events", Some(body)).await
}

async fn envelopes(s: &Server, event_id: &str) -> Vec<Value> {
    let (st, ev) = s.admin("GET", &format!("/events/{event_id}"), None).await;
    assert_eq!(st, 200, "{ev}");
    ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["envelope"].clone())
        .collect()
}

#[tokio::test]
async fn a_channel_message_envelope_matches_the_golden_shape() {
    let s = Server::start();
    let w = setup(&s, &["message.channels"], &["channels:history"]).await;
    // An event from 2023 is far outside the 72 h window.
    let (st, r) = publish(&s, json!({"team_id": "T01", "event_time": 1_700_000_000i64, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "hi", "ts": "1700000000.000100"}})).await;
    assert_eq!(st, 422, "{r}");
    assert_eq!(r["type"], "urn:tidings:problem:event_too_old");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (st, r) = publish(&s, json!({"team_id": "T01", "event_time": now, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "hi", "ts": "1700000000.000100"}})).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(
        (r["deliveries"].as_u64(), r["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    let event_id = r["event_id"].as_str().unwrap();
    assert!(event_id.starts_with("Ev") && (12..=14).contains(&event_id.len()));
    assert!(event_id[2..]
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));

    let mut env = envelopes(&s, event_id).await.pop().unwrap();
    let ctx = env["event_context"].take();
    assert!(ctx.as_str().unwrap().starts_with("4-"), "{ctx}");
    let ts = env["event"]["event_ts"].take();
    assert!(
        ts.as_str().unwrap().starts_with(&format!("{now}.")),
        "event_ts filled in: {ts}"
    );
    let bot = w["inst"]["bot_user_id"].clone();
    assert_eq!(
        env,
        json!({
            "token": w["app"]["verification_token"],
            "team_id": "T01",
            "context_team_id": "T01",
            "context_enterprise_id": null,
            "api_app_id": "A01",
            "event": {"type": "message", "channel": "C01", "user": "U01", "text": "hi", "ts": "1700000000.000100",
                      "channel_type": "channel", "event_ts": null},
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now,
            "authorizations": [{"enterprise_id": null, "team_id": "T01", "user_id": bot, "is_bot": true, "is_enterprise_install": false}],
            "is_ext_shared_channel": false,
            "event_context": null
        })
    );
}

#[tokio::test]
async fn legacy_apps_in_an_enterprise_get_authed_lists_and_the_enterprise() {
    let s = Server::start();
    assert_eq!(
        s.admin(
            "POST",
            "/enterprises",
            Some(json!({"id": "E01", "name": "Org"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        s.admin(
            "POST",
            "/teams",
            Some(json!({"id": "T01", "name": "Acme", "domain": "acme", "enterprise_id": "E01"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        s.admin(
            "POST",
            "/teams/T01/users",
            Some(json!({"id": "U01", "name": "alice"}))
        )
        .await
        .0,
        201
    );
    let (_, app) = s.admin("POST", "/apps", Some(json!({"id": "A01", "name": "Old", "bot_events": ["team_join"], "event_shape": "legacy"}))).await;
    let (st, inst) = s
        .admin("POST", "/apps/A01/installations", Some(json!({"enterprise_id": "E01", "installer_user_id": "U01", "bot_scopes": ["users:read"]})))
        .await;
    assert_eq!(st, 201, "{inst}");
    let (st, r) = publish(&s, json!({"team_id": "T01", "event": {"type": "team_join", "user": {"id": "U09", "name": "newbie"}}})).await;
    assert_eq!(st, 202, "{r}");
    let mut env = envelopes(&s, r["event_id"].as_str().unwrap())
        .await
        .pop()
        .unwrap();
    env["event"]["event_ts"].take();
    env["event_time"].take();
    let bot = inst["bot_user_id"].clone();
    assert_eq!(
        env,
        json!({
            "token": app["verification_token"], "team_id": "T01", "enterprise_id": "E01",
            "context_team_id": "T01", "context_enterprise_id": "E01", "api_app_id": "A01",
            "event": {"type": "team_join", "user": {"id": "U09", "name": "newbie"}, "event_ts": null},
            "type": "event_callback", "event_id": r["event_id"], "event_time": null,
            "authorizations": [{"enterprise_id": "E01", "team_id": null, "user_id": bot, "is_bot": true, "is_enterprise_install": true}],
            "is_ext_shared_channel": false,
            "authed_users": [bot], "authed_teams": ["T01"]
        }),
        "team_join carries no event_context (SLACK-WIRE §7)"
    );
    let (st, _) = s.admin("GET", "/teams/T01/users/U09", None).await;
    assert_eq!(st, 200, "team_join added the user to the directory");
}

#[tokio::test]
async fn deliveries_are_pending_in_the_listing_and_survive_a_restart() {
    let s = Server::start();
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (st, r) = publish(&s, json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U02", "text": format!("m{i}")}})).await;
        assert_eq!(st, 202);
        ids.push(r["event_id"].as_str().unwrap().to_string());
    }
    let s = s.restart();
    let (st, page) = s
        .admin("GET", "/apps/A01/deliveries?status=pending&limit=3", None)
        .await;
    assert_eq!(st, 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["event_id"], ids[4].as_str(), "newest first");
    for d in items {
        assert_eq!(
            (
                d["status"].as_str(),
                d["team_id"].as_str(),
                d["event_type"].as_str()
            ),
            (Some("pending"), Some("T01"), Some("message.channels"))
        );
        assert!(d["attempts"].as_array().unwrap().is_empty());
        assert!(d["id"].as_str().unwrap().starts_with("DL"));
    }
    let (_, next) = s
        .admin(
            "GET",
            &format!(
                "/apps/A01/deliveries?status=pending&limit=3&cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 2);
    assert!(next["next_cursor"].is_null());
    let id = items[0]["id"].as_str().unwrap();
    let (st, one) = s.admin("GET", &format!("/deliveries/{id}"), None).await;
    assert_eq!((st, one["id"].as_str()), (200, Some(id)));
    let (_, none) = s
        .admin("GET", "/apps/A01/deliveries?status=failed", None)
        .await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let (st, _) = s
        .admin("GET", "/apps/A01/deliveries?status=lost", None)
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_event_and_creates_nothing() {
    let s = Server::start();
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let body = json!({"team_id": "T01", "idempotency_key": "msg-1", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "once"}});
    let (_, first) = publish(&s, body.clone()).await;
    let (st, again) = publish(&s, body).await;
    assert_eq!(st, 202);
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(
        (again["duplicate"].as_bool(), again["deliveries"].as_u64()),
        (Some(true), Some(1))
    );
    let (_, page) = s.admin("GET", "/apps/A01/deliveries", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_time_rules_follow_configuration() {
    let s = Server::start_with(&[
        ("TIDINGS_EVENTS_MAX_EVENT_AGE", "1h"),
        ("TIDINGS_EVENTS_MAX_FUTURE_SKEW", "10s"),
    ]);
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ev = |t: i64| json!({"team_id": "T01", "event_time": t, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "t"}});
    assert_eq!(publish(&s, ev(now - 1800)).await.0, 202);
    let (st, p) = publish(&s, ev(now - 7200)).await;
    assert_eq!(
        (st, p["type"].as_str(), p["errors"][0]["field"].as_str()),
        (
            422,
            Some("urn:tidings:problem:event_too_old"),
            Some("event_time")
        )
    );
    let (st, p) = publish(&s, ev(now + 600)).await;
    assert_eq!(
        (st, p["type"].as_str()),
        (422, Some("urn:tidings:problem:event_in_future"))
    );
}

#[tokio::test]
async fn event_times_at_the_ends_of_i64_are_refused_and_the_store_keeps_writing() {
    // i64::MIN used to overflow the age check and panic the store's writer: every later
    // write answered 503 until a restart.
    let s = Server::start();
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let ev = |t: Value| json!({"team_id": "T01", "event_time": t, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "t"}});
    let (st, p) = publish(&s, ev(json!(i64::MIN))).await;
    assert_eq!(
        (st, p["type"].as_str()),
        (422, Some("urn:tidings:problem:event_too_old")),
        "{p}"
    );
    let (st, p) = publish(&s, ev(json!(i64::MAX))).await;
    assert_eq!(
        (st, p["type"].as_str()),
        (422, Some("urn:tidings:problem:event_in_future")),
        "{p}"
    );
    let (st, p) = publish(&s, ev(Value::Null)).await;
    assert_eq!(st, 202, "the writer still commits: {p}");
}

#[tokio::test]
async fn an_event_time_written_with_a_zero_fraction_is_a_whole_number() {
    // JSON Schema, and so the OpenAPI document, calls 1700000000.0 an integer.
    let s = Server::start();
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let ev = |t: f64| json!({"team_id": "T01", "event_time": t, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "t"}});
    let (st, p) = publish(&s, ev(now - 60.0)).await;
    assert_eq!(st, 202, "{p}");
    let (st, p) = publish(&s, ev(now - 60.5)).await;
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("event_time")),
        "{p}"
    );
}

#[tokio::test]
async fn refusals_name_the_field_and_write_nothing() {
    let s = Server::start();
    setup(
        &s,
        &["message.channels", "app_home_opened"],
        &["channels:history"],
    )
    .await;
    let cases = [
        (
            json!({"team_id": "T0NOPE", "event": {"type": "message", "channel": "C01", "user": "U01"}}),
            422,
            "team_id",
        ),
        (
            json!({"team_id": "nope", "event": {"type": "message", "channel": "C01", "user": "U01"}}),
            422,
            "team_id",
        ),
        (
            json!({"team_id": "T01", "event": {"type": "message", "channel": "C0NOPE", "user": "U01"}}),
            422,
            "event.channel",
        ),
        (
            json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U0NOPE"}}),
            422,
            "event.user",
        ),
        (
            json!({"team_id": "T01", "event": {"type": "made_up", "user": "U01"}}),
            422,
            "event.type",
        ),
        (
            json!({"team_id": "T01", "event": {"type": "app_home_opened", "user": "U01", "channel": "D01"}}),
            422,
            "app_id",
        ),
        (
            json!({"team_id": "T01", "app_id": "A0NOPE", "event": {"type": "app_home_opened", "user": "U01"}}),
            422,
            "app_id",
        ),
        (
            json!({"team_id": "T01", "event": {"type": "member_joined_channel", "channel": "C01"}}),
            400,
            "event.user",
        ),
        (
            json!({"team_id": "T01", "event": {"channel": "C01"}}),
            400,
            "event.type",
        ),
        (
            json!({"team_id": "T01", "event": ["not", "an", "object"]}),
            400,
            "event",
        ),
        (
            json!({"team_id": "T01", "event": {"type": "message"}, "surprise": 1}),
            400,
            "surprise",
        ),
    ];
    for (body, status, field) in cases {
        let (st, p) = publish(&s, body.clone()).await;
        assert_eq!(st, status, "{body} → {p}");
        assert_eq!(
            p["errors"][0]["field"].as_str(),
            Some(field),
            "{body} → {p}"
        );
    }
    let (_, page) = s.admin("GET", "/apps/A01/deliveries", None).await;
    assert!(
        page["items"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_batch_answers_each_event_in_order_and_one_bad_event_fails_alone() {
    let s = Server::start();
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let (st, r) = s
        .admin(
            "POST",
            "/events/batch",
            Some(json!({"events": [
                {"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "a"}},
                {"team_id": "T01", "event": {"type": "message", "channel": "C0NOPE", "user": "U01"}},
                "not an object",
                {"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U02", "text": "b"}}
            ]})),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 4);
    assert!(res[0]["event_id"].is_string() && res[3]["event_id"].is_string());
    assert_eq!(res[1]["error"]["status"], 422);
    assert_eq!(res[2]["error"]["status"], 400);
    let (_, page) = s.admin("GET", "/apps/A01/deliveries", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let many: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let (st, _) = s
        .admin("POST", "/events/batch", Some(json!({"events": many})))
        .await;
    assert_eq!(st, 400, "more than 1000 events in a batch");
}

#[tokio::test]
async fn published_events_keep_the_directory_current() {
    let s = Server::start();
    let w = setup(
        &s,
        &[
            "member_joined_channel",
            "member_left_channel",
            "channel_created",
        ],
        &["channels:read"],
    )
    .await;
    let bot = w["inst"]["bot_user_id"].as_str().unwrap().to_string();
    let (st, r) = publish(&s, json!({"team_id": "T01", "event": {"type": "channel_created", "channel": {"id": "C02", "name": "fresh", "created": 1, "creator": "U02"}}})).await;
    assert_eq!((st, r["deliveries"].as_u64()), (202, Some(1)), "{r}");
    let (_, c) = s.admin("GET", "/teams/T01/conversations/C02", None).await;
    assert_eq!(
        (c["kind"].as_str(), &c["members"]),
        (Some("public"), &json!(["U02"]))
    );
    // The bot joins C02: it sees its own join (applied before fan-out).
    let (_, r) = publish(&s, json!({"team_id": "T01", "event": {"type": "member_joined_channel", "channel": "C02", "user": bot, "channel_type": "C", "team": "T01"}})).await;
    assert_eq!(r["deliveries"], 1, "{r}");
    // bob leaves: the bot, still a member, sees it; bob is gone afterwards.
    let (_, r) = publish(&s, json!({"team_id": "T01", "event": {"type": "member_left_channel", "channel": "C02", "user": "U02", "channel_type": "C", "team": "T01"}})).await;
    assert_eq!(r["deliveries"], 1, "{r}");
    let (_, c) = s.admin("GET", "/teams/T01/conversations/C02", None).await;
    assert_eq!(c["members"], json!([bot]));
    let (_, r) = publish(
        &s,
        json!({"team_id": "T01", "event": {"type": "channel_deleted", "channel": "C02"}}),
    )
    .await;
    assert!(r["event_id"].is_string());
    assert_eq!(
        s.admin("GET", "/teams/T01/conversations/C02", None).await.0,
        404
    );
}

#[tokio::test]
async fn publisher_tokens_publish() {
    let s = Server::start();
    setup(&s, &["message.channels"], &["channels:history"]).await;
    let (_, t) = s.admin("POST", "/publisher_tokens", Some(json!({}))).await;
    let token = t["token"].as_str().unwrap();
    let (st, r) = s
        .admin_as(token, "POST", "/events", Some(json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "x"}})))
        .await;
    assert_eq!(st, 202, "{r}");
    let (st, _) = s
        .admin_as(
            token,
            "GET",
            &format!("/events/{}", r["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, 403, "publishers cannot read");
}
