//! The dashboard's server side against the real binary: login with the admin token (an
//! HttpOnly, SameSite=Strict session cookie), refused logins, redirects when logged out,
//! CSRF on every operator API call made with the cookie, logout (server-side: a replayed
//! cookie is refused), the embedded assets'
//! headers, and the Socket Mode connections endpoint the app page lists.

mod support;

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use support::{Server, ADMIN};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

fn set_cookie(h: &HeaderMap) -> Option<String> {
    h.get(SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").to_string())
}

/// Logs in through the form; returns the cookie value.
async fn login(s: &Server) -> String {
    let res = client()
        .post(format!("{}/ui/login", s.url))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let c = set_cookie(res.headers()).expect("a session cookie");
    let value = c
        .strip_prefix("tidings_session=")
        .and_then(|r| r.split(';').next())
        .expect("tidings_session=…");
    value.to_string()
}

async fn csrf(s: &Server, cookie: &str) -> String {
    let v: Value = client()
        .get(format!("{}/ui/session", s.url))
        .header("cookie", format!("tidings_session={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["csrf_token"].as_str().expect("csrf_token").to_string()
}

/// An operator API call with the session cookie and, optionally, an X-CSRF-Token.
async fn with_cookie(
    s: &Server,
    cookie: &str,
    csrf: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}/admin/v1{path}", s.url))
        .header("cookie", format!("tidings_session={cookie}"));
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let st = res.status().as_u16();
    (st, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn login_sets_an_http_only_strict_cookie_that_opens_the_dashboard() {
    let s = Server::start();
    let res = client()
        .post(format!("{}/ui/login", s.url))
        .header("origin", s.url.clone())
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/ui/");
    let c = set_cookie(res.headers()).expect("Set-Cookie");
    assert!(c.starts_with("tidings_session="), "{c}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(c.split("; ").any(|a| a == attr), "{attr} missing in {c}");
    }
    assert!(!c.contains("Secure"), "plain http: no Secure flag");
    assert!(!c.contains(ADMIN), "the cookie is not the token");

    let cookie = login(&s).await;
    let res = client()
        .get(format!("{}/ui/", s.url))
        .header("cookie", format!("tidings_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["referrer-policy"], "same-origin");
    let page = res.text().await.unwrap();
    assert!(page.contains("/ui/assets/app.js"));

    // Reads through the operator API need only the cookie.
    let (st, apps) = with_cookie(&s, &cookie, None, reqwest::Method::GET, "/apps", None).await;
    assert_eq!(st, 200, "{apps}");
}

#[tokio::test]
async fn a_wrong_token_or_a_foreign_origin_is_refused() {
    let s = Server::start();
    for token in ["tdk_admin_not_the_token_000000", ""] {
        let res = client()
            .post(format!("{}/ui/login", s.url))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{token:?}");
        assert!(set_cookie(res.headers()).is_none());
        let page = res.text().await.unwrap();
        assert!(page.contains("not the admin token"), "{page}");
        assert!(page.contains("<form"), "the form again");
    }
    let res = client()
        .post(format!("{}/ui/login", s.url))
        .header("origin", "http://evil.example")
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(set_cookie(res.headers()).is_none());
}

#[tokio::test]
async fn logged_out_requests_are_sent_to_the_login_page() {
    let s = Server::start();
    for path in ["/ui/", "/ui/apps", "/ui/anything/else"] {
        let res = client()
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()[LOCATION], "/ui/login", "{path}");
    }
    let res = client().get(format!("{}/ui", s.url)).send().await.unwrap();
    assert_eq!(res.headers()[LOCATION], "/ui/");
    let res = client()
        .get(format!("{}/ui/login", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A forged or tampered cookie is no session.
    let cookie = login(&s).await;
    let forged = format!("{}x", cookie);
    let res = client()
        .get(format!("{}/ui/", s.url))
        .header("cookie", format!("tidings_session={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (st, _) = with_cookie(&s, &forged, None, reqwest::Method::GET, "/apps", None).await;
    assert_eq!(st, 401);
    let res = client()
        .get(format!("{}/ui/session", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The assets need no session (they hold no data).
    let res = client()
        .get(format!("{}/ui/vendor/chart.umd.js", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = res.headers()["etag"].clone();
    let res = client()
        .get(format!("{}/ui/vendor/chart.umd.js", s.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}

#[tokio::test]
async fn actions_with_the_cookie_need_the_csrf_token() {
    let s = Server::start();
    let cookie = login(&s).await;
    let token = csrf(&s, &cookie).await;
    let post = reqwest::Method::POST;
    let body = || Some(json!({"id": "A0CSRF", "name": "csrf"}));

    let (st, p) = with_cookie(&s, &cookie, None, post.clone(), "/apps", body()).await;
    assert_eq!(st, 403, "{p}");
    assert_eq!(p["type"], "urn:tidings:problem:forbidden");
    let (st, _) = with_cookie(&s, &cookie, Some("wrong"), post.clone(), "/apps", body()).await;
    assert_eq!(st, 403);
    // Another session's token does not fit this cookie.
    let other = login(&s).await;
    let other_token = csrf(&s, &other).await;
    assert_ne!(other_token, token);
    let (st, _) = with_cookie(
        &s,
        &cookie,
        Some(&other_token),
        post.clone(),
        "/apps",
        body(),
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(
        s.admin("GET", "/apps/A0CSRF", None).await.0,
        404,
        "refused calls did nothing"
    );

    let (st, app) = with_cookie(&s, &cookie, Some(&token), post.clone(), "/apps", body()).await;
    assert_eq!(st, 201, "{app}");
    let secret = app["signing_secret"].clone();
    let rotate = "/apps/A0CSRF/signing_secret/rotate";
    let (st, _) = with_cookie(&s, &cookie, None, post.clone(), rotate, None).await;
    assert_eq!(st, 403);
    assert_eq!(
        s.admin("GET", "/apps/A0CSRF", None).await.1["signing_secret"],
        secret
    );
    let (st, rotated) = with_cookie(&s, &cookie, Some(&token), post.clone(), rotate, None).await;
    assert_eq!(st, 200);
    assert_ne!(rotated["signing_secret"], secret);

    // Logging out needs the token too, and then clears the cookie.
    let res = client()
        .post(format!("{}/ui/logout", s.url))
        .header("cookie", format!("tidings_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = client()
        .post(format!("{}/ui/logout", s.url))
        .header("cookie", format!("tidings_session={cookie}"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let c = set_cookie(res.headers()).expect("a clearing cookie");
    assert!(
        c.starts_with("tidings_session=;") && c.contains("Max-Age=0"),
        "{c}"
    );
}

#[tokio::test]
async fn a_logged_out_cookie_replayed_is_refused_on_every_node() {
    let s = Server::start();
    let cookie = login(&s).await;
    let other = login(&s).await;
    let token = csrf(&s, &cookie).await;
    let get = reqwest::Method::GET;
    let res = client()
        .post(format!("{}/ui/logout", s.url))
        .header("cookie", format!("tidings_session={cookie}"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // The browser dropped the cookie; whoever kept a copy replays it.
    let (st, _) = with_cookie(&s, &cookie, None, get.clone(), "/apps", None).await;
    assert_eq!(st, 401, "the session ended on the server");
    let post = reqwest::Method::POST;
    let body = Some(json!({"id": "A0REPLAY", "name": "replay"}));
    let (st, _) = with_cookie(&s, &cookie, Some(&token), post, "/apps", body).await;
    assert_eq!(st, 401);
    for page in ["/ui/", "/ui/session"] {
        let res = client()
            .get(format!("{}{page}", s.url))
            .header("cookie", format!("tidings_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(res.status().as_u16(), 303 | 401),
            "{page}: {}",
            res.status()
        );
    }
    let (st, _) = with_cookie(&s, &other, None, get.clone(), "/apps", None).await;
    assert_eq!(st, 200, "another session stays signed in");
    if Server::on_postgres() {
        let peer = s.peer();
        let (st, _) = with_cookie(&peer, &cookie, None, get.clone(), "/apps", None).await;
        assert_eq!(st, 401, "another node refuses it too");
        let (st, _) = with_cookie(&peer, &other, None, get.clone(), "/apps", None).await;
        assert_eq!(st, 200);
    }
    let s = s.restart();
    let (st, _) = with_cookie(&s, &cookie, None, get, "/apps", None).await;
    assert_eq!(st, 401, "and after a restart");
}

#[tokio::test]
async fn sessions_survive_a_restart_and_end_when_the_admin_token_changes() {
    let s = Server::start();
    let cookie = login(&s).await;
    let mut s = s.restart();
    let (st, _) = with_cookie(&s, &cookie, None, reqwest::Method::GET, "/apps", None).await;
    assert_eq!(st, 200, "stateless sessions outlive the process");
    s.kill();
    let rotated = Server::spawn(
        &s.data_dir,
        vec![(
            "TIDINGS_ADMIN_TOKEN".into(),
            "tdk_admin_another_token_987654".into(),
        )],
        &[],
    );
    let (st, _) = with_cookie(&rotated, &cookie, None, reqwest::Method::GET, "/apps", None).await;
    assert_eq!(st, 401, "a new admin token ends old sessions");
}

#[tokio::test]
async fn the_connections_endpoint_lists_open_sockets() {
    let s = Server::start();
    s.app_in_channel(json!({"id": "A01", "name": "sock", "socket_mode": true, "bot_events": ["message.channels"]}))
        .await;
    let (_, t) = s
        .admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["connections:write"]})),
        )
        .await;
    let app_token = t["token"].as_str().unwrap().to_string();
    let (st, empty) = s.admin("GET", "/apps/A01/connections", None).await;
    assert_eq!(st, 200);
    assert_eq!(empty, json!({"items": [], "next_cursor": null}));

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (_, r) = s.api("apps.connections.open", Some(&app_token), &[]).await;
        let url = r["url"].as_str().unwrap().to_string();
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let hello = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap();
        assert!(hello.is_some());
        sockets.push(ws);
    }
    let (st, list) = s.admin("GET", "/apps/A01/connections", None).await;
    assert_eq!(st, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for c in items {
        assert!(c["id"].is_string(), "{c}");
        assert!(c["opened_at"].as_i64().unwrap() >= before - 1, "{c}");
        assert_eq!(c["pending_acks"], 0);
    }
    assert_eq!(list["next_cursor"], Value::Null);

    let mut ws = sockets.pop().unwrap();
    ws.close(None).await.unwrap();
    let mut n = 2;
    for _ in 0..250 {
        n = s.admin("GET", "/apps/A01/connections", None).await.1["items"]
            .as_array()
            .unwrap()
            .len();
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 1, "a closed socket leaves the list");

    let (st, p) = s.admin("GET", "/apps/A0NOPE/connections", None).await;
    assert_eq!(st, 404, "{p}");
    assert_eq!(p["type"], "urn:tidings:problem:not_found");
}
