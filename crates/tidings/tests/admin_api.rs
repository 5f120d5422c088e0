//! The operator API against the real binary: directory, apps, installations, pagination,
//! and every kind of bad input getting its problem+json.

mod support;

use serde_json::json;
use support::{Server, ADMIN};

#[tokio::test]
async fn teams_are_paginated_with_stable_cursors() {
    let s = Server::start();
    for i in 0..5 {
        let (st, _) = s.admin("POST", "/teams", Some(json!({"id": format!("T0000000{i}"), "name": format!("Team {i}"), "domain": format!("team{i}")}))).await;
        assert_eq!(st, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/teams?limit=2&cursor={c}"),
            None => "/teams?limit=2".to_string(),
        };
        let (st, page) = s.admin("GET", &path, None).await;
        assert_eq!(st, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("T0000000{i}")).collect::<Vec<_>>()
    );

    let (st, p) = s.admin("GET", "/teams?cursor=garbage", None).await;
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("cursor"))
    );
    let (st, p) = s.admin("GET", "/teams?limit=0", None).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("limit")));
    let (st, _) = s.admin("GET", "/teams?limit=1001", None).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn the_openapi_document_is_public_and_describes_the_operator_api() {
    let s = Server::start();
    let res = Server::client()
        .get(format!("{}/admin/v1/openapi.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "no token needed");
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: serde_json::Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/admin/v1/apps", "post"),
        ("/admin/v1/apps/{app}", "patch"),
        ("/admin/v1/events", "post"),
        ("/admin/v1/teams/{team}/conversations/{channel}", "put"),
        ("/admin/v1/openapi.json", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    // Every documented operation is served: none falls through to the router's 404 (a
    // method the path lacks would be 405).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", s.url, path.replace('{', "X").replace('}', ""));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = Server::client()
                .request(m, url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(
                !body.contains("no operator API route"),
                "{method} {path}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn missing_or_wrong_admin_tokens_are_401() {
    let s = Server::start();
    let res = Server::client()
        .get(format!("{}/admin/v1/teams", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    let (st, _) = s
        .admin_as("tdk_admin_wrong_wrong_wrong", "GET", "/teams", None)
        .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn duplicate_ids_are_409_and_leave_the_first_record_intact() {
    let s = Server::start();
    let (st, _) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"id": "T0DUP", "name": "First", "domain": "first"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, p) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"id": "T0DUP", "name": "Second", "domain": "second"})),
        )
        .await;
    assert_eq!(st, 409, "{p}");
    let (_, t) = s.admin("GET", "/teams/T0DUP", None).await;
    assert_eq!(t["name"], "First");
    // The failed create left no trace: the domain it asked for is still free.
    let (st, _) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"name": "Third", "domain": "second"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"name": "Again", "domain": "first"})),
        )
        .await;
    assert_eq!(st, 409, "domains are unique");
}

#[tokio::test]
async fn malformed_bodies_name_what_is_wrong() {
    let s = Server::start();
    let raw = |body: &'static str| {
        let url = format!("{}/admin/v1/teams", s.url);
        async move {
            let res = Server::client()
                .post(url)
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (st, p) = raw("{not json").await;
    assert_eq!(st, 400);
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    let (st, p) = raw(r#"{"name": 5, "domain": "x"}"#).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("name")));
    let (st, p) = raw(r#"{"name": "x", "domain": "x", "colour": "red"}"#).await;
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("colour"))
    );
    let (st, p) = raw(r#"{"name": "x"}"#).await;
    assert_eq!(st, 400, "missing domain: {p}");
    let (st, p) = raw(r#"{"id": "team-1", "name": "x", "domain": "x"}"#).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("id")));
    let (st, p) = raw(r#"{"name": "x", "domain": "Not A Domain"}"#).await;
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("domain"))
    );
    let (st, _) = raw("").await;
    assert_eq!(st, 400);
    // A team id in a bulk redelivery's filter is checked like any other (it was ignored
    // when malformed, and matched nothing).
    s.admin(
        "POST",
        "/apps",
        Some(serde_json::json!({"id": "A0RED", "name": "r"})),
    )
    .await;
    let (st, p) = s
        .admin(
            "POST",
            "/apps/A0RED/redeliver",
            Some(serde_json::json!({"team_id": "", "since": 0})),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("team_id")),
        "{p}"
    );
    let (_, list) = s.admin("GET", "/teams", None).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing half-written"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = Server::start_with(&[("TIDINGS_SERVER_MAX_BODY_BYTES", "2048")]);
    let big = "x".repeat(4096);
    let (st, p) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"name": big, "domain": "big"})),
        )
        .await;
    assert_eq!(st, 413, "{p}");
    assert_eq!(p["status"], 413);
}

#[tokio::test]
async fn unknown_teams_in_nested_paths_are_404_and_bad_ids_400() {
    let s = Server::start();
    let (st, p) = s
        .admin("POST", "/teams/T0NOPE/users", Some(json!({"name": "a"})))
        .await;
    assert_eq!(st, 404, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("T0NOPE"));
    let (st, _) = s
        .admin("GET", "/teams/T0NOPE/conversations/C0NOPE", None)
        .await;
    assert_eq!(st, 404);
    let (st, p) = s.admin("GET", "/teams/not-a-team", None).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("team")));
    let (st, _) = s.admin("GET", "/no/such/route", None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn conversations_are_created_replaced_and_their_members_changed() {
    let s = Server::start();
    let ws = s.workspace(&[], &["channels:read"], &[]).await;
    let t = &ws.team_id;
    let (st, _) = s
        .admin(
            "POST",
            &format!("/teams/{t}/users"),
            Some(json!({"id": "U0BOB", "name": "bob"})),
        )
        .await;
    assert_eq!(st, 201);
    let path = format!("/teams/{t}/conversations/C0GENERAL");
    let (st, c) = s.admin("PUT", &path, Some(json!({"name": "general", "kind": "public", "members": [ws.user_id, ws.bot_user_id()]}))).await;
    assert_eq!(st, 201, "{c}");
    assert_eq!(c["members"].as_array().unwrap().len(), 2);
    let (st, c) = s
        .admin(
            "POST",
            &format!("{path}/members"),
            Some(json!({"user": "U0BOB"})),
        )
        .await;
    assert_eq!((st, c["members"].as_array().unwrap().len()), (200, 3));
    let (st, c) = s
        .admin("DELETE", &format!("{path}/members/{}", ws.user_id), None)
        .await;
    assert_eq!((st, c["members"].as_array().unwrap().len()), (200, 2));
    let (st, c) = s
        .admin(
            "PUT",
            &path,
            Some(json!({"name": "general-2", "kind": "public", "members": ["U0BOB"]})),
        )
        .await;
    assert_eq!(st, 200, "replace answers 200");
    assert_eq!(c["members"], json!(["U0BOB"]));
    let (st, _) = s
        .admin(
            "POST",
            &format!("{path}/members"),
            Some(json!({"user": "U0NOBODY"})),
        )
        .await;
    assert_eq!(st, 404, "members must exist in the team");
    let (st, p) = s
        .admin(
            "PUT",
            &format!("/teams/{t}/conversations/D0DM"),
            Some(json!({"name": "dm", "kind": "public"})),
        )
        .await;
    // Each field is well-formed, the combination is refused: 422 (the OpenAPI document
    // says what is malformed, and it cannot say this).
    assert_eq!(st, 422, "a D id cannot be public: {p}");
    assert_eq!(p["type"], "urn:tidings:problem:kind_mismatch");
    assert_eq!(p["errors"][0]["field"], "kind");
    let (st, p) = s
        .admin(
            "PUT",
            &format!("/teams/{t}/conversations/D0DM"),
            Some(json!({"name": "dm", "kind": "im", "members": ["U01", "U02", "U03"]})),
        )
        .await;
    assert_eq!(st, 422, "an im has at most two members: {p}");
    assert_eq!(p["type"], "urn:tidings:problem:too_many_members");
    let (st, _) = s
        .admin("PUT", &path, Some(json!({"name": "x", "kind": "open"})))
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn apps_validate_subscriptions_against_the_catalog() {
    let s = Server::start();
    let (st, p) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"name": "a", "bot_events": ["no_such_event"]})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(p["detail"].as_str().unwrap().contains("no_such_event"));
    let (st, p) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"name": "a", "bot_events": ["star_added"]})),
        )
        .await;
    assert_eq!(st, 400, "star_added is user-only: {p}");
    // A Request URL must answer the url_verification challenge before it is saved.
    let (st, p) = s
        .admin("POST", "/apps", Some(json!({"id": "A0APP1", "name": "a", "request_url": "https://example.invalid/slack/events"})))
        .await;
    assert_eq!(
        (st, p["type"].as_str()),
        (
            422,
            Some("urn:tidings:problem:request_url_verification_failed")
        ),
        "{p}"
    );
    let (st, app) = s
        .admin("POST", "/apps", Some(json!({"id": "A0APP1", "name": "a", "user_events": ["star_added"], "event_shape": "legacy"})))
        .await;
    assert_eq!(st, 201, "{app}");
    assert_eq!(app["request_url_verified"], false);
    assert_eq!(app["events_enabled"], true);
    assert_eq!(app["signing_secret"].as_str().unwrap().len(), 32);
    let (st, app) = s
        .admin(
            "PATCH",
            "/apps/A0APP1",
            Some(json!({"name": "renamed", "request_url": null})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (app["name"].as_str(), app["request_url"].is_null()),
        (Some("renamed"), true)
    );
    let secret = app["signing_secret"].clone();
    let (_, app) = s
        .admin("POST", "/apps/A0APP1/signing_secret/rotate", None)
        .await;
    assert_ne!(app["signing_secret"], secret);
    let (st, _) = s
        .admin(
            "PATCH",
            "/apps/A0APP1",
            Some(json!({"request_url": "not a url"})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s.admin("GET", "/apps/A0MISSING", None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn a_failed_install_leaves_nothing_behind() {
    let s = Server::start();
    let ws = s.workspace(&[], &["channels:read"], &[]).await;
    let (_, other) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"name": "Other", "domain": "other"})),
        )
        .await;
    let other = other["id"].as_str().unwrap();
    // alice belongs to the first team, not this one.
    let (st, p) = s
        .admin(
            "POST",
            &format!("/apps/{}/installations", ws.app_id),
            Some(json!({"team_id": other, "installer_user_id": ws.user_id, "bot_scopes": ["chat:write"]})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    let (_, users) = s.admin("GET", &format!("/teams/{other}/users"), None).await;
    assert_eq!(
        users["items"].as_array().unwrap().len(),
        0,
        "no bot user was left behind"
    );
    let (_, insts) = s
        .admin("GET", &format!("/apps/{}/installations", ws.app_id), None)
        .await;
    assert_eq!(insts["items"].as_array().unwrap().len(), 1);
    let (st, _) = s
        .admin(
            "POST",
            &format!("/apps/{}/installations", ws.app_id),
            Some(json!({"team_id": ws.team_id, "installer_user_id": ws.user_id})),
        )
        .await;
    assert_eq!(st, 400, "an install grants at least one scope");
}

#[tokio::test]
async fn publisher_tokens_may_only_publish() {
    let s = Server::start();
    let (st, t) = s
        .admin(
            "POST",
            "/publisher_tokens",
            Some(json!({"label": "ingest"})),
        )
        .await;
    assert_eq!(st, 201);
    let token = t["token"].as_str().unwrap();
    assert!(token.starts_with("tdk_pub_"));
    let (st, _) = s.admin_as(token, "GET", "/teams", None).await;
    assert_eq!(st, 403);
    let (_, list) = s.admin("GET", "/publisher_tokens", None).await;
    assert!(
        list["items"][0].get("token").is_none(),
        "token text is shown once only"
    );
    let id = t["id"].as_str().unwrap();
    let (st, _) = s
        .admin("DELETE", &format!("/publisher_tokens/{id}"), None)
        .await;
    assert_eq!(st, 200);
    let (st, _) = s.admin_as(token, "GET", "/teams", None).await;
    assert_eq!(st, 401, "revoked publisher tokens are refused");
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served_without_auth() {
    let s = Server::start();
    let c = Server::client();
    assert_eq!(
        c.get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/readyz", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = s.admin("GET", "/teams", None).await;
    let text = s.metrics().await;
    assert!(text.contains("tidings_http_requests_total"), "{text}");
    assert!(
        text.contains("tidings_http_request_duration_seconds"),
        "{text}"
    );
    assert!(text.contains(r#"route="/admin/v1/teams""#), "{text}");
}
