//! The Slack Web API conventions and `auth.test`, against the real binary.

mod support;

use serde_json::json;
use support::Server;

#[tokio::test]
async fn auth_test_describes_bot_and_user_tokens_with_their_scopes() {
    let s = Server::start();
    let ws = s
        .workspace(
            &["message.channels"],
            &["channels:history", "chat:write"],
            &["stars:read"],
        )
        .await;
    let (h, b) = s.api("auth.test", Some(ws.bot_token()), &[]).await;
    assert_eq!(b["ok"], true, "{b}");
    assert_eq!(b["team_id"], ws.team_id.as_str());
    assert_eq!(b["user_id"], ws.bot_user_id());
    assert_eq!(b["bot_id"], ws.installation["bot_id"]);
    assert_eq!(b["app_id"], ws.app_id.as_str());
    assert_eq!(b["team"], "Acme");
    assert_eq!(b["is_enterprise_install"], false);
    assert!(b["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert_eq!(h["x-oauth-scopes"], "channels:history,chat:write");

    let (h, b) = s.api("auth.test", Some(ws.user_token()), &[]).await;
    assert_eq!(b["ok"], true);
    assert_eq!(b["user_id"], ws.user_id.as_str());
    assert_eq!(b["user"], "alice");
    assert!(b.get("bot_id").is_none(), "user tokens have no bot_id");
    assert_eq!(h["x-oauth-scopes"], "stars:read");
}

#[tokio::test]
async fn tokens_arrive_by_header_form_json_or_query() {
    let s = Server::start();
    let ws = s.workspace(&[], &["chat:write"], &[]).await;
    let (_, b) = s.api("auth.test", None, &[("token", ws.bot_token())]).await;
    assert_eq!(b["ok"], true, "form token: {b}");
    let c = Server::client();
    let b: serde_json::Value = c
        .get(format!("{}/api/auth.test?token={}", s.url, ws.bot_token()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["ok"], true, "GET with query token: {b}");
    let b: serde_json::Value = c
        .post(format!("{}/api/auth.test", s.url))
        .json(&json!({"token": ws.bot_token()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["ok"], true, "JSON token: {b}");
}

#[tokio::test]
async fn bad_tokens_and_methods_get_slack_error_codes() {
    let s = Server::start();
    let ws = s.workspace(&[], &["chat:write"], &[]).await;
    let err = |b: serde_json::Value| {
        (
            b["ok"].clone(),
            b["error"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        err(s.api("auth.test", None, &[]).await.1),
        (json!(false), "not_authed".into())
    );
    assert_eq!(
        err(s
            .api("auth.test", Some("xoxb-not-a-real-token"), &[])
            .await
            .1),
        (json!(false), "invalid_auth".into())
    );
    assert_eq!(
        err(s.api("auth.test", Some("garbage"), &[]).await.1),
        (json!(false), "invalid_auth".into())
    );
    assert_eq!(
        err(s.api("auth.test", Some(support::ADMIN), &[]).await.1),
        (json!(false), "invalid_auth".into())
    );
    assert_eq!(
        err(s.api("chat.nonsense", Some(ws.bot_token()), &[]).await.1),
        (json!(false), "unknown_method".into())
    );

    let (st, tok) = s
        .admin(
            "POST",
            &format!("/apps/{}/tokens", ws.app_id),
            Some(json!({"scopes": ["connections:write"]})),
        )
        .await;
    assert_eq!(st, 201);
    let xapp = tok["token"].as_str().unwrap();
    assert!(xapp.starts_with(&format!("xapp-1-{}-", ws.app_id)));
    assert_eq!(
        err(s.api("auth.test", Some(xapp), &[]).await.1),
        (json!(false), "not_allowed_token_type".into())
    );

    let c = Server::client();
    let b: serde_json::Value = c
        .post(format!("{}/api/auth.test", s.url))
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["error"], "invalid_json");
}

#[tokio::test]
async fn uninstalled_and_reinstalled_tokens_answer_token_revoked() {
    let s = Server::start();
    let ws = s.workspace(&[], &["chat:write"], &["stars:read"]).await;
    // Re-installing by the same user replaces the tokens, keeps the bot user.
    let (st, again) = s
        .admin(
            "POST",
            &format!("/apps/{}/installations", ws.app_id),
            Some(json!({"team_id": ws.team_id, "installer_user_id": ws.user_id, "bot_scopes": ["chat:write", "channels:read"]})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(again["id"], ws.installation["id"]);
    assert_eq!(again["bot_user_id"], ws.installation["bot_user_id"]);
    assert_eq!(
        s.api("auth.test", Some(ws.bot_token()), &[]).await.1["error"],
        "token_revoked"
    );
    let new_bot = again["bot_token"].as_str().unwrap();
    let (h, b) = s.api("auth.test", Some(new_bot), &[]).await;
    assert_eq!(b["ok"], true);
    assert_eq!(h["x-oauth-scopes"], "chat:write,channels:read");

    let id = again["id"].as_str().unwrap();
    let (st, inst) = s
        .admin(
            "DELETE",
            &format!("/apps/{}/installations/{id}", ws.app_id),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert!(inst["revoked_at"].is_i64());
    assert_eq!(
        s.api("auth.test", Some(new_bot), &[]).await.1["error"],
        "token_revoked"
    );
    let (st, _) = s
        .admin(
            "DELETE",
            &format!("/apps/{}/installations/{id}", ws.app_id),
            None,
        )
        .await;
    assert_eq!(st, 409, "already uninstalled");
}

#[tokio::test]
async fn org_wide_installs_authenticate_as_the_enterprise() {
    let s = Server::start();
    let (st, _) = s
        .admin(
            "POST",
            "/enterprises",
            Some(json!({"id": "E0ORG", "name": "Org"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"id": "T0ORG1", "name": "One", "domain": "one", "enterprise_id": "E0ORG"})),
        )
        .await;
    assert_eq!(st, 201);
    let (_, u) = s
        .admin(
            "POST",
            "/teams/T0ORG1/users",
            Some(json!({"name": "admin", "is_admin": true})),
        )
        .await;
    let (_, app) = s
        .admin("POST", "/apps", Some(json!({"name": "Org App"})))
        .await;
    let (st, inst) = s
        .admin(
            "POST",
            &format!("/apps/{}/installations", app["id"].as_str().unwrap()),
            Some(json!({"enterprise_id": "E0ORG", "installer_user_id": u["id"], "bot_scopes": ["chat:write"]})),
        )
        .await;
    assert_eq!(st, 201, "{inst}");
    assert_eq!(inst["is_enterprise_install"], true);
    assert!(inst["team_id"].is_null());
    let (_, b) = s
        .api("auth.test", Some(inst["bot_token"].as_str().unwrap()), &[])
        .await;
    assert_eq!(b["ok"], true, "{b}");
    assert_eq!(b["is_enterprise_install"], true);
    assert_eq!(b["enterprise_id"], "E0ORG");
    assert_eq!(b["team_id"], "E0ORG");
}
