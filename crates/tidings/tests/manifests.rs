//! The App Manifest API (issue 23) against the real binary, on SQLite or PostgreSQL:
//! configuration tokens and their rotation, `apps.manifest.*` with ownership, Request URL
//! verification that is all or nothing, and every bad input refused.

mod support;

use serde_json::{json, Value};
use support::receiver::Receiver;
use support::Server;

/// A configuration token pair for `user` of T01 (made by [`Server::acme`]).
async fn config_token(s: &Server, user: &str) -> (String, String) {
    let (st, t) = s
        .admin(
            "POST",
            "/config_tokens",
            Some(json!({"team_id": "T01", "user_id": user})),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    assert!(t["token"].as_str().unwrap().starts_with("xoxe.xoxp-1-"));
    assert!(t["refresh_token"].as_str().unwrap().starts_with("xoxe-1-"));
    (
        t["token"].as_str().unwrap().to_string(),
        t["refresh_token"].as_str().unwrap().to_string(),
    )
}

/// T01 with developers U01 and U02.
async fn developers(s: &Server) {
    s.acme().await;
    let (st, u) = s
        .admin(
            "POST",
            "/teams/T01/users",
            Some(json!({"id": "U02", "name": "bob"})),
        )
        .await;
    assert_eq!(st, 201, "{u}");
}

fn manifest(request_url: &str) -> Value {
    json!({
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {"name": "Manifested", "description": "from a manifest"},
        "features": {
            "bot_user": {"display_name": "manifested", "always_online": false},
            "slash_commands": [{"command": "/hello", "url": "https://example.com/cmd", "description": "hi"}],
            "unfurl_domains": ["example.com"]
        },
        "oauth_config": {
            "redirect_urls": ["https://example.com/oauth"],
            "scopes": {"bot": ["reactions:read"]}
        },
        "settings": {
            "event_subscriptions": {
                "request_url": request_url,
                "bot_events": ["reaction_added", "app_uninstalled"]
            },
            "interactivity": {"is_enabled": true, "request_url": "https://example.com/interact"},
            "org_deploy_enabled": false,
            "socket_mode_enabled": false,
            "token_rotation_enabled": false
        }
    })
}

async fn call(s: &Server, method: &str, token: &str, form: &[(&str, &str)]) -> Value {
    s.api(method, Some(token), form).await.1
}

async fn create(s: &Server, token: &str, m: &Value) -> Value {
    call(
        s,
        "apps.manifest.create",
        token,
        &[("manifest", &m.to_string())],
    )
    .await
}

#[tokio::test]
async fn a_refresh_token_rotates_once_and_the_new_pair_works() {
    let s = Server::start();
    developers(&s).await;
    let (access, refresh) = config_token(&s, "U01").await;
    let ok = call(
        &s,
        "apps.manifest.validate",
        &access,
        &[("manifest", &manifest("https://example.com/e").to_string())],
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");

    let (_, r) = s
        .api(
            "tooling.tokens.rotate",
            None,
            &[("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        (r["team_id"].as_str(), r["user_id"].as_str()),
        (Some("T01"), Some("U01"))
    );
    assert!(r["exp"].as_i64().unwrap() > r["iat"].as_i64().unwrap());
    let fresh = r["token"].as_str().unwrap();
    assert_ne!(fresh, access);
    let ok = call(
        &s,
        "apps.manifest.validate",
        fresh,
        &[("manifest", &manifest("https://example.com/e").to_string())],
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");

    let (_, again) = s
        .api(
            "tooling.tokens.rotate",
            None,
            &[("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(
        again,
        json!({"ok": false, "error": "invalid_refresh_token"})
    );
    let (_, next) = s
        .api(
            "tooling.tokens.rotate",
            None,
            &[("refresh_token", r["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(next["ok"], true, "{next}");

    // Only a human member of the team gets one.
    let (st, _) = s
        .admin(
            "POST",
            "/config_tokens",
            Some(json!({"team_id": "T01", "user_id": "U404"})),
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn a_configuration_token_is_refused_elsewhere_and_other_tokens_on_manifest_methods() {
    let s = Server::start();
    developers(&s).await;
    let (access, _) = config_token(&s, "U01").await;
    for method in [
        "auth.test",
        "apps.connections.open",
        "apps.event.authorizations.list",
    ] {
        let r = call(&s, method, &access, &[]).await;
        assert_eq!(r["error"], "not_allowed_token_type", "{method}: {r}");
    }
    let w = s
        .workspace(
            &["reaction_added"],
            &["reactions:read"],
            &["reactions:read"],
        )
        .await;
    let m = manifest("https://example.com/e").to_string();
    for t in [w.bot_token(), w.user_token()] {
        let r = call(&s, "apps.manifest.validate", t, &[("manifest", &m)]).await;
        assert_eq!(r["error"], "not_allowed_token_type", "{r}");
    }
    let (_, r) = s
        .api("apps.manifest.create", None, &[("manifest", &m)])
        .await;
    assert_eq!(r["error"], "not_authed");
    let r = call(
        &s,
        "apps.manifest.create",
        "xoxe.xoxp-1-nope",
        &[("manifest", &m)],
    )
    .await;
    assert_eq!(r["error"], "invalid_auth");
}

#[tokio::test]
async fn an_expired_configuration_token_answers_token_expired() {
    let s = Server::start_with(&[("TIDINGS_OAUTH_CONFIG_TOKEN_TTL", "1s")]);
    developers(&s).await;
    let (access, refresh) = config_token(&s, "U01").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let m = manifest("https://example.com/e").to_string();
    let r = call(&s, "apps.manifest.validate", &access, &[("manifest", &m)]).await;
    assert_eq!(r["error"], "token_expired", "{r}");
    // The refresh token still gives a fresh pair.
    let (_, r) = s
        .api(
            "tooling.tokens.rotate",
            None,
            &[("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
}

#[tokio::test]
async fn create_export_update_and_delete_an_app_from_a_manifest() {
    let s = Server::start();
    developers(&s).await;
    let rx = Receiver::start().await;
    let (access, _) = config_token(&s, "U01").await;
    let m = manifest(&rx.url);

    let c = create(&s, &access, &m).await;
    assert_eq!(c["ok"], true, "{c}");
    let app = c["app_id"].as_str().unwrap().to_string();
    for k in [
        "client_id",
        "client_secret",
        "verification_token",
        "signing_secret",
    ] {
        assert!(
            c["credentials"][k].as_str().is_some_and(|v| !v.is_empty()),
            "{k}: {c}"
        );
    }
    let url = c["oauth_authorize_url"].as_str().unwrap();
    assert!(
        url.contains("/oauth/v2/authorize?client_id=") && url.contains("scope=reactions%3Aread"),
        "{url}"
    );
    assert_eq!(rx.hits().iter().filter(|h| h.is_verification()).count(), 1);

    // Export gives back exactly what was applied, unacted-on fields included.
    let e = call(&s, "apps.manifest.export", &access, &[("app_id", &app)]).await;
    assert_eq!(e["manifest"], m, "{e}");
    let (st, view) = s.admin("GET", &format!("/apps/{app}/manifest"), None).await;
    assert_eq!(st, 200, "{view}");
    assert_eq!(view["owners"], json!(["U01"]));
    assert_eq!(view["deleted"], false);
    let (_, all) = s.admin("GET", "/app_owners", None).await;
    assert_eq!(all["owners"][&app], json!(["U01"]));

    // Update: scopes grow, subscriptions change at once.
    let mut m2 = m.clone();
    m2["oauth_config"]["scopes"]["bot"] = json!(["reactions:read", "channels:history"]);
    m2["settings"]["event_subscriptions"]["bot_events"] =
        json!(["reaction_added", "message.channels", "app_uninstalled"]);
    let u = call(
        &s,
        "apps.manifest.update",
        &access,
        &[("app_id", &app), ("manifest", &m2.to_string())],
    )
    .await;
    assert_eq!(
        u,
        json!({"ok": true, "app_id": app, "permissions_updated": true})
    );
    let (_, a) = s.admin("GET", &format!("/apps/{app}"), None).await;
    assert_eq!(
        a["bot_events"],
        json!(["reaction_added", "message.channels", "app_uninstalled"])
    );
    let u = call(
        &s,
        "apps.manifest.update",
        &access,
        &[("app_id", &app), ("manifest", &m2.to_string())],
    )
    .await;
    assert_eq!(u["permissions_updated"], false, "{u}");
    let e = call(&s, "apps.manifest.export", &access, &[("app_id", &app)]).await;
    assert_eq!(e["manifest"], m2);

    // The operator's change shows in the export.
    let (st, _) = s
        .admin(
            "PATCH",
            &format!("/apps/{app}"),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(st, 200);
    let e = call(&s, "apps.manifest.export", &access, &[("app_id", &app)]).await;
    assert_eq!(e["manifest"]["display_information"]["name"], "Renamed");
    assert_eq!(e["manifest"]["features"], m2["features"]);

    // Delete uninstalls everywhere, with app_uninstalled.
    let (st, inst) = s
        .admin("POST", &format!("/apps/{app}/installations"), Some(json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["reactions:read"]})))
        .await;
    assert_eq!(st, 201, "{inst}");
    let d = call(&s, "apps.manifest.delete", &access, &[("app_id", &app)]).await;
    assert_eq!(d, json!({"ok": true}));
    rx.wait_for(20, "app_uninstalled", |hits| {
        hits.iter()
            .any(|h| h.json()["event"]["type"] == "app_uninstalled")
    })
    .await;
    let (_, i) = s
        .admin(
            "GET",
            &format!("/apps/{app}/installations/{}", inst["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(i["revoked_at"].is_i64(), "{i}");
    let e = call(&s, "apps.manifest.export", &access, &[("app_id", &app)]).await;
    assert_eq!(e["error"], "invalid_app_id");
    let (_, view) = s.admin("GET", &format!("/apps/{app}/manifest"), None).await;
    assert_eq!(
        (view["deleted"].clone(), view["owners"].clone()),
        (json!(true), json!([]))
    );
}

#[tokio::test]
async fn a_developer_cannot_touch_another_developers_app() {
    let s = Server::start();
    developers(&s).await;
    let (alice, _) = config_token(&s, "U01").await;
    let (bob, _) = config_token(&s, "U02").await;
    let m = manifest("https://example.com/e");
    let mut sm = m.clone();
    sm["settings"]["event_subscriptions"]
        .as_object_mut()
        .unwrap()
        .remove("request_url");
    sm["settings"]["socket_mode_enabled"] = json!(true);
    let c = create(&s, &alice, &sm).await;
    assert_eq!(c["ok"], true, "{c}");
    let app = c["app_id"].as_str().unwrap();
    let text = sm.to_string();
    for (method, form) in [
        (
            "apps.manifest.validate",
            vec![("app_id", app), ("manifest", text.as_str())],
        ),
        (
            "apps.manifest.update",
            vec![("app_id", app), ("manifest", text.as_str())],
        ),
        ("apps.manifest.export", vec![("app_id", app)]),
        ("apps.manifest.delete", vec![("app_id", app)]),
    ] {
        let r = call(&s, method, &bob, &form).await;
        assert_eq!(
            r,
            json!({"ok": false, "error": "invalid_app_id"}),
            "{method}"
        );
    }
    // The owner still can; an operator-made app belongs to no developer.
    let e = call(&s, "apps.manifest.export", &alice, &[("app_id", app)]).await;
    assert_eq!(e["manifest"], sm);
    let (_, op) = s
        .admin("POST", "/apps", Some(json!({"name": "Operator's"})))
        .await;
    let r = call(
        &s,
        "apps.manifest.export",
        &alice,
        &[("app_id", op["id"].as_str().unwrap())],
    )
    .await;
    assert_eq!(r["error"], "invalid_app_id");
}

fn pointers(r: &Value) -> Vec<String> {
    assert_eq!(r["error"], "invalid_manifest", "{r}");
    r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn bad_manifests_are_refused_with_pointers() {
    let s = Server::start();
    developers(&s).await;
    let (access, _) = config_token(&s, "U01").await;
    let validate = |text: String| {
        let (s, access) = (&s, access.clone());
        async move { call(s, "apps.manifest.validate", &access, &[("manifest", &text)]).await }
    };
    assert_eq!(
        pointers(&validate("{\"display_information\":".into()).await),
        ["/"]
    );
    let mut unknown = manifest("https://example.com/e");
    unknown["settings"]["event_subscriptions"]["colour"] = json!("red");
    assert_eq!(
        pointers(&validate(unknown.to_string()).await),
        ["/settings/event_subscriptions/colour"]
    );
    let mut unscoped = manifest("https://example.com/e");
    unscoped["oauth_config"]["scopes"]["bot"] = json!(["chat:write"]);
    assert_eq!(
        pointers(&validate(unscoped.to_string()).await),
        ["/settings/event_subscriptions/bot_events/0"]
    );
    let mut big = manifest("https://example.com/e");
    big["display_information"]["long_description"] = json!("x".repeat(70_000));
    assert_eq!(pointers(&validate(big.to_string()).await), ["/"]);
    let private = manifest("https://10.0.0.1/e");
    assert_eq!(
        pointers(&validate(private.to_string()).await),
        ["/settings/event_subscriptions/request_url"]
    );
    let r = call(&s, "apps.manifest.validate", &access, &[]).await;
    assert_eq!(r["error"], "invalid_arguments");
}

#[tokio::test]
async fn a_request_url_that_fails_verification_creates_and_changes_nothing() {
    let s = Server::start();
    developers(&s).await;
    let (access, _) = config_token(&s, "U01").await;
    // A URL nobody answers at.
    let mut refusing = Receiver::start().await;
    refusing.stop().await;
    let (_, before) = s.admin("GET", "/apps", None).await;
    let r = create(&s, &access, &manifest(&refusing.url)).await;
    assert_eq!(pointers(&r), ["/settings/event_subscriptions/request_url"]);
    let (_, after) = s.admin("GET", "/apps", None).await;
    assert_eq!(before["items"], after["items"]);

    let good = Receiver::start().await;
    let c = create(&s, &access, &manifest(&good.url)).await;
    let app = c["app_id"].as_str().unwrap();
    let mut moved = manifest(&refusing.url);
    moved["display_information"]["name"] = json!("Moved");
    let r = call(
        &s,
        "apps.manifest.update",
        &access,
        &[("app_id", app), ("manifest", &moved.to_string())],
    )
    .await;
    assert_eq!(pointers(&r), ["/settings/event_subscriptions/request_url"]);
    let (_, a) = s.admin("GET", &format!("/apps/{app}"), None).await;
    assert_eq!(
        (a["name"].as_str(), a["request_url"].as_str()),
        (Some("Manifested"), Some(good.url.as_str()))
    );
    let e = call(&s, "apps.manifest.export", &access, &[("app_id", app)]).await;
    assert_eq!(e["manifest"], manifest(&good.url));
}

fn cli(s: &Server, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(support::bin())
        .args(args)
        .env("TIDINGS_URL", &s.url)
        .env("TIDINGS_CONFIG_TOKEN", token)
        .env_remove("TIDINGS_ADMIN_TOKEN")
        .output()
        .expect("running the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const APP_YAML: &str = "\
display_information:
  name: From YAML
features:
  bot_user:
    display_name: yamlbot
  slash_commands:
    - command: /deploy
      url: https://example.com/deploy
      description: ship it
oauth_config:
  scopes:
    bot: [reactions:read]
settings:
  socket_mode_enabled: true
  event_subscriptions:
    bot_events: [reaction_added]
";

#[tokio::test]
async fn the_cli_applies_a_yaml_manifest_then_its_change_and_exports_it() {
    let s = Server::start();
    developers(&s).await;
    let (access, _) = config_token(&s, "U01").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, APP_YAML).unwrap();
    let f = file.to_str().unwrap().to_string();
    let s = tokio::task::spawn_blocking(move || {
        let (ok, out, err) = cli(&s, &access, &["apps", "validate", "-f", &f]);
        assert!(ok, "{err}");
        assert!(out.contains("valid"), "{out}");
        let (ok, out, err) = cli(&s, &access, &["apps", "apply", "-f", &f]);
        assert!(ok, "{err}");
        assert!(
            out.contains("+ /display_information/name: \"From YAML\""),
            "{out}"
        );
        let app = out
            .lines()
            .find_map(|l| l.strip_prefix("created app "))
            .expect("the new app's id")
            .to_string();
        assert!(out.contains("signing_secret: "), "{out}");

        std::fs::write(&f, APP_YAML.replace("From YAML", "Renamed in YAML")).unwrap();
        let (ok, out, err) = cli(&s, &access, &["apps", "apply", "-f", &f, "--app", &app]);
        assert!(ok, "{err}");
        assert_eq!(
            out.trim(),
            "~ /display_information/name: \"From YAML\" -> \"Renamed in YAML\""
        );
        let (ok, out, err) = cli(&s, &access, &["apps", "export", &app]);
        assert!(ok, "{err}");
        let exported: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(exported["display_information"]["name"], "Renamed in YAML");
        assert_eq!(
            exported["features"]["slash_commands"][0]["command"],
            "/deploy"
        );

        // Bad input: one line, non-zero exit.
        std::fs::write(&f, "display_information: [").unwrap();
        let (ok, _, err) = cli(&s, &access, &["apps", "validate", "-f", &f]);
        assert!(!ok);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        std::fs::write(&f, APP_YAML.replace("bot_user:", "bot_usr:")).unwrap();
        let (ok, _, err) = cli(&s, &access, &["apps", "apply", "-f", &f, "--app", &app]);
        assert!(!ok);
        assert!(
            err.contains("invalid_manifest") && err.contains("/features/bot_usr"),
            "{err}"
        );
        let (ok, _, err) = cli(&s, "", &["apps", "export", &app]);
        assert!(!ok, "{err}");
        s
    })
    .await
    .unwrap();
    drop(s);
}
