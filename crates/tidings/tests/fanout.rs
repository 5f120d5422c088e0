//! Fan-out rules end to end: who gets a delivery, with which authorization.

mod support;

use serde_json::{json, Value};
use support::Server;

/// Team T01 with users U01..U04, channel C01 {U01, U02}, and the given apps.
async fn team(s: &Server) {
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
    for u in ["U01", "U02", "U03", "U04"] {
        assert_eq!(
            s.admin(
                "POST",
                "/teams/T01/users",
                Some(json!({"id": u, "name": u.to_lowercase()}))
            )
            .await
            .0,
            201
        );
    }
    assert_eq!(
        s.admin(
            "PUT",
            "/teams/T01/conversations/C01",
            Some(json!({"name": "general", "kind": "public", "members": ["U01", "U02"]}))
        )
        .await
        .0,
        201
    );
}

async fn app(s: &Server, id: &str, bot: &[&str], user: &[&str]) {
    let (st, a) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"id": id, "name": id, "bot_events": bot, "user_events": user})),
        )
        .await;
    assert_eq!(st, 201, "{a}");
}

async fn install(s: &Server, app: &str, installer: &str, bot: &[&str], user: &[&str]) -> Value {
    let (st, i) = s
        .admin("POST", &format!("/apps/{app}/installations"), Some(json!({"team_id": "T01", "installer_user_id": installer, "bot_scopes": bot, "user_scopes": user})))
        .await;
    assert_eq!(st, 201, "{i}");
    i
}

async fn join(s: &Server, user: &str) {
    assert_eq!(
        s.admin(
            "POST",
            "/teams/T01/conversations/C01/members",
            Some(json!({"user": user}))
        )
        .await
        .0,
        200
    );
}

/// Publishes and returns (app id, authorization) for each delivery.
async fn deliveries(s: &Server, body: Value) -> Vec<(String, Value)> {
    let (st, r) = s.admin("POST", "/events", Some(body)).await;
    assert_eq!(st, 202, "{r}");
    let (_, ev) = s
        .admin(
            "GET",
            &format!("/events/{}", r["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    let mut v: Vec<(String, Value)> = ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["app_id"].as_str().unwrap().to_string(),
                d["authorization"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(r["deliveries"].as_u64().unwrap() as usize, v.len());
    v
}

fn message(channel: &str, user: &str, text: &str) -> Value {
    json!({"team_id": "T01", "event": {"type": "message", "channel": channel, "user": user, "text": text}})
}

#[tokio::test]
async fn only_bots_in_the_channel_with_the_scope_and_subscription_get_messages() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A0IN", &["message.channels"], &[]).await;
    app(&s, "A0OUT", &["message.channels"], &[]).await;
    app(&s, "A0NOSCOPE", &["message.channels"], &[]).await;
    app(&s, "A0NOSUB", &["reaction_added"], &[]).await;
    let bot_in = install(&s, "A0IN", "U01", &["channels:history"], &[]).await;
    install(&s, "A0OUT", "U01", &["channels:history"], &[]).await;
    let noscope = install(&s, "A0NOSCOPE", "U01", &["chat:write"], &[]).await;
    let nosub = install(
        &s,
        "A0NOSUB",
        "U01",
        &["channels:history", "reactions:read"],
        &[],
    )
    .await;
    for b in [&bot_in, &noscope, &nosub] {
        join(&s, b["bot_user_id"].as_str().unwrap()).await;
    }
    let got = deliveries(&s, message("C01", "U01", "hello")).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "A0IN");
    assert_eq!(got[0].1["user_id"], bot_in["bot_user_id"]);
}

#[tokio::test]
async fn one_delivery_per_app_even_with_bot_and_user_installations_and_the_bot_is_chosen() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &["message.channels"], &["message.channels"]).await;
    let b = install(
        &s,
        "A01",
        "U01",
        &["channels:history"],
        &["channels:history"],
    )
    .await;
    install(&s, "A01", "U02", &[], &["channels:history"]).await;
    join(&s, b["bot_user_id"].as_str().unwrap()).await;
    let got = deliveries(&s, message("C01", "U01", "x")).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["is_bot"], true);
    // Without the bot in the channel, the user installation of the lowest user id is chosen.
    assert_eq!(
        s.admin(
            "DELETE",
            &format!(
                "/teams/T01/conversations/C01/members/{}",
                b["bot_user_id"].as_str().unwrap()
            ),
            None
        )
        .await
        .0,
        200
    );
    let got = deliveries(&s, message("C01", "U02", "y")).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].1["user_id"].as_str(), got[0].1["is_bot"].as_bool()),
        (Some("U01"), Some(false))
    );
}

#[tokio::test]
async fn user_installations_see_channels_their_user_is_in() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &[], &["message.channels"]).await;
    install(&s, "A01", "U03", &[], &["channels:history"]).await;
    assert!(
        deliveries(&s, message("C01", "U01", "x")).await.is_empty(),
        "U03 is not in C01"
    );
    join(&s, "U03").await;
    let got = deliveries(&s, message("C01", "U01", "x")).await;
    assert_eq!(got[0].1["user_id"], "U03");
}

#[tokio::test]
async fn private_user_actions_reach_only_the_acting_users_installation() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &["channel_left"], &["channel_left"]).await;
    install(&s, "A01", "U01", &["channels:read"], &["channels:read"]).await;
    install(&s, "A01", "U02", &[], &["channels:read"]).await;
    let got = deliveries(&s, json!({"team_id": "T01", "event": {"type": "channel_left", "channel": "C01", "user": "U02", "actor_id": "U02"}})).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].1["user_id"].as_str(), got[0].1["is_bot"].as_bool()),
        (Some("U02"), Some(false)),
        "never the bot"
    );
    let (_, c) = s.admin("GET", "/teams/T01/conversations/C01", None).await;
    assert_eq!(
        c["members"],
        json!(["U01"]),
        "channel_left removed the member"
    );
}

#[tokio::test]
async fn app_events_go_only_to_the_app_they_name() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &["app_home_opened"], &[]).await;
    app(&s, "A02", &["app_home_opened"], &[]).await;
    install(&s, "A01", "U01", &["chat:write"], &[]).await;
    install(&s, "A02", "U01", &["chat:write"], &[]).await;
    let got = deliveries(&s, json!({"team_id": "T01", "app_id": "A02", "event": {"type": "app_home_opened", "user": "U01", "channel": "D01", "tab": "home"}})).await;
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["A02"]
    );
}

#[tokio::test]
async fn app_mention_goes_only_to_the_mentioned_bot() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &["app_mention"], &[]).await;
    app(&s, "A02", &["app_mention"], &[]).await;
    let b1 = install(&s, "A01", "U01", &["app_mentions:read"], &[]).await;
    let b2 = install(&s, "A02", "U01", &["app_mentions:read"], &[]).await;
    join(&s, b1["bot_user_id"].as_str().unwrap()).await;
    join(&s, b2["bot_user_id"].as_str().unwrap()).await;
    let text = format!(
        "hey <@{}> can you help?",
        b2["bot_user_id"].as_str().unwrap()
    );
    let got = deliveries(&s, json!({"team_id": "T01", "event": {"type": "app_mention", "channel": "C01", "user": "U01", "text": text}})).await;
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["A02"]
    );
}

#[tokio::test]
async fn team_events_reach_every_subscribed_installation_and_uninstalled_apps_get_nothing() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &["channel_rename"], &[]).await;
    app(&s, "A02", &["channel_rename"], &[]).await;
    install(&s, "A01", "U01", &["channels:read"], &[]).await;
    let i2 = install(&s, "A02", "U01", &["channels:read"], &[]).await;
    let body = json!({"team_id": "T01", "event": {"type": "channel_rename", "channel": {"id": "C01", "name": "renamed", "created": 1}}});
    assert_eq!(deliveries(&s, body.clone()).await.len(), 2);
    assert_eq!(
        s.admin(
            "DELETE",
            &format!("/apps/A02/installations/{}", i2["id"].as_str().unwrap()),
            None
        )
        .await
        .0,
        200
    );
    let got = deliveries(&s, body).await;
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["A01"]
    );
    let (_, c) = s.admin("GET", "/teams/T01/conversations/C01", None).await;
    assert_eq!(c["name"], "renamed");
}

#[tokio::test]
async fn messages_in_private_channels_and_dms_need_their_own_subscriptions() {
    let s = Server::start();
    team(&s).await;
    assert_eq!(
        s.admin(
            "PUT",
            "/teams/T01/conversations/G01",
            Some(json!({"name": "secret", "kind": "private", "members": ["U01"]}))
        )
        .await
        .0,
        201
    );
    app(&s, "A01", &[], &["message.channels"]).await;
    app(&s, "A02", &[], &["message.groups"]).await;
    install(
        &s,
        "A01",
        "U01",
        &[],
        &["channels:history", "groups:history"],
    )
    .await;
    install(&s, "A02", "U01", &[], &["groups:history"]).await;
    let got = deliveries(&s, message("G01", "U01", "psst")).await;
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["A02"]
    );
    let (_, ev) = s
        .admin("POST", "/events", Some(message("G01", "U01", "again")))
        .await;
    let (_, full) = s
        .admin(
            "GET",
            &format!("/events/{}", ev["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(full["event"]["event"]["channel_type"], "group");
    assert_eq!(full["event"]["event_type"], "message.groups");
}

#[tokio::test]
async fn uninstalling_sends_tokens_revoked_and_app_uninstalled_when_nothing_is_left() {
    let s = Server::start();
    team(&s).await;
    app(&s, "A01", &["tokens_revoked", "app_uninstalled"], &[]).await;
    let bot = install(&s, "A01", "U01", &["chat:write"], &[]).await;
    let user = install(&s, "A01", "U02", &[], &["stars:read"]).await;
    let types = |page: &Value| -> Vec<String> {
        let mut v: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["event_type"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    // U02's user installation goes: its token is revoked; the bot remains, so no app_uninstalled.
    assert_eq!(
        s.admin(
            "DELETE",
            &format!("/apps/A01/installations/{}", user["id"].as_str().unwrap()),
            None
        )
        .await
        .0,
        200
    );
    let (_, page) = s.admin("GET", "/apps/A01/deliveries", None).await;
    assert_eq!(types(&page), vec!["tokens_revoked"]);
    let (_, ev) = s
        .admin(
            "GET",
            &format!("/events/{}", page["items"][0]["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        ev["event"]["event"]["tokens"],
        json!({"oauth": ["U02"], "bot": []})
    );
    // The last installation goes: tokens_revoked for the bot, and app_uninstalled.
    assert_eq!(
        s.admin(
            "DELETE",
            &format!("/apps/A01/installations/{}", bot["id"].as_str().unwrap()),
            None
        )
        .await
        .0,
        200
    );
    let (_, page) = s.admin("GET", "/apps/A01/deliveries", None).await;
    assert_eq!(
        types(&page),
        vec!["app_uninstalled", "tokens_revoked", "tokens_revoked"]
    );
    let newest = &page["items"][0];
    let (_, ev) = s
        .admin(
            "GET",
            &format!("/events/{}", newest["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(
        ev["deliveries"][0]["envelope"]
            .get("event_context")
            .is_none(),
        "app events carry no event_context"
    );
}
