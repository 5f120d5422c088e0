//! `apps.event.authorizations.list`: the full audience of an event for the calling app,
//! paginated; errors for bad tokens, contexts and cursors.

mod support;

use serde_json::{json, Value};
use support::Server;

struct Fixture {
    s: Server,
    event_context: String,
    app_token: String,
}

/// App A01 subscribed to message.channels (bot and user side), installed by its bot plus
/// `users` user installations, all members of C01; one event published there.
async fn fixture(users: usize) -> Fixture {
    let s = Server::start();
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
    assert_eq!(s.admin("POST", "/apps", Some(json!({"id": "A01", "name": "App", "bot_events": ["message.channels"], "user_events": ["message.channels"]}))).await.0, 201);
    let mut members = Vec::new();
    let mut bot = None;
    for i in 0..users.max(1) {
        let id = format!("U{i:05}");
        assert_eq!(
            s.admin(
                "POST",
                "/teams/T01/users",
                Some(json!({"id": id, "name": format!("user{i}")}))
            )
            .await
            .0,
            201
        );
        let bot_scopes: Vec<&str> = if i == 0 {
            vec!["channels:history"]
        } else {
            vec![]
        };
        let user_scopes: Vec<&str> = if i < users {
            vec!["channels:history"]
        } else {
            vec![]
        };
        let (st, inst) = s
            .admin("POST", "/apps/A01/installations", Some(json!({"team_id": "T01", "installer_user_id": id, "bot_scopes": bot_scopes, "user_scopes": user_scopes})))
            .await;
        assert_eq!(st, 201, "{inst}");
        if i == 0 {
            bot = inst["bot_user_id"].as_str().map(str::to_string);
        }
        members.push(id);
    }
    members.extend(bot);
    assert_eq!(
        s.admin(
            "PUT",
            "/teams/T01/conversations/C01",
            Some(json!({"name": "general", "kind": "public", "members": members}))
        )
        .await
        .0,
        201
    );
    let (_, r) = s.admin("POST", "/events", Some(json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U00000", "text": "hi"}}))).await;
    let (_, ev) = s
        .admin(
            "GET",
            &format!("/events/{}", r["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    let event_context = ev["deliveries"][0]["envelope"]["event_context"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, t) = s
        .admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["authorizations:read"]})),
        )
        .await;
    Fixture {
        s,
        event_context,
        app_token: t["token"].as_str().unwrap().to_string(),
    }
}

async fn list(f: &Fixture, token: Option<&str>, form: &[(&str, &str)]) -> Value {
    f.s.api("apps.event.authorizations.list", token, form)
        .await
        .1
}

#[tokio::test]
async fn every_visible_installation_is_listed_across_pages() {
    let f = fixture(7).await;
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut form = vec![("event_context", f.event_context.as_str()), ("limit", "3")];
        if !cursor.is_empty() {
            form.push(("cursor", cursor.as_str()));
        }
        let page = list(&f, Some(&f.app_token), &form).await;
        assert_eq!(page["ok"], true, "{page}");
        assert_eq!(
            page["cursor_next"],
            page["response_metadata"]["next_cursor"]
        );
        all.extend(page["authorizations"].as_array().unwrap().clone());
        cursor = page["cursor_next"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(all.len(), 8, "the bot and 7 user installations");
    assert_eq!(all[0]["is_bot"], true);
    for a in &all {
        for k in [
            "enterprise_id",
            "team_id",
            "user_id",
            "is_bot",
            "is_enterprise_install",
        ] {
            assert!(a.get(k).is_some(), "{k} missing in {a}");
        }
    }
    let users: Vec<&str> = all[1..]
        .iter()
        .map(|a| a["user_id"].as_str().unwrap())
        .collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(users, sorted, "stable order");
}

#[tokio::test]
async fn bad_tokens_contexts_and_cursors_get_slack_errors() {
    let f = fixture(2).await;
    let ctx = f.event_context.as_str();
    let err = |v: Value| v["error"].as_str().unwrap_or("").to_string();
    assert_eq!(
        err(list(&f, None, &[("event_context", ctx)]).await),
        "not_authed"
    );
    assert_eq!(
        err(list(&f, None, &[("event_context", ctx), ("token", &f.app_token)]).await),
        "not_authed",
        "token parameter is not read"
    );
    let (_, inst) = f.s.admin("GET", "/apps/A01/installations", None).await;
    assert!(inst["items"].as_array().unwrap().len() >= 2);
    assert_eq!(
        err(list(&f, Some(&f.app_token), &[]).await),
        "invalid_arguments"
    );
    assert_eq!(
        err(list(&f, Some(&f.app_token), &[("event_context", "4-e30")]).await),
        "invalid_event_context"
    );
    assert_eq!(
        err(list(&f, Some(&f.app_token), &[("event_context", "EC123ABC456")]).await),
        "invalid_event_context"
    );
    assert_eq!(
        err(list(
            &f,
            Some(&f.app_token),
            &[("event_context", ctx), ("cursor", "bogus")]
        )
        .await),
        "invalid_cursor"
    );
    assert_eq!(
        err(list(
            &f,
            Some(&f.app_token),
            &[("event_context", ctx), ("limit", "0")]
        )
        .await),
        "invalid_limit"
    );
    assert_eq!(
        err(list(
            &f,
            Some(&f.app_token),
            &[("event_context", ctx), ("limit", "1001")]
        )
        .await),
        "invalid_limit"
    );

    let (_, conn_only) =
        f.s.admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["connections:write"]})),
        )
        .await;
    let v = list(
        &f,
        Some(conn_only["token"].as_str().unwrap()),
        &[("event_context", ctx)],
    )
    .await;
    assert_eq!(
        (err(v.clone()), v["needed"].as_str()),
        ("missing_scope".into(), Some("authorizations:read"))
    );

    // Another app's token cannot use this app's context.
    assert_eq!(
        f.s.admin("POST", "/apps", Some(json!({"id": "A02", "name": "Other"})))
            .await
            .0,
        201
    );
    let (_, other) =
        f.s.admin(
            "POST",
            "/apps/A02/tokens",
            Some(json!({"scopes": ["authorizations:read"]})),
        )
        .await;
    assert_eq!(
        err(list(
            &f,
            Some(other["token"].as_str().unwrap()),
            &[("event_context", ctx)]
        )
        .await),
        "auth_mismatch"
    );

    // Bot tokens are not app-level tokens.
    let ws = f.s.workspace(&[], &["chat:write"], &[]).await;
    assert_eq!(
        err(list(&f, Some(ws.bot_token()), &[("event_context", ctx)]).await),
        "not_allowed_token_type"
    );
}
