//! The OAuth v2 install flow (issue 21) against the real binary, on SQLite or PostgreSQL:
//! login hand-off, consent page, `oauth.v2.access`, rotation, revocation and uninstall,
//! and every bad input refused with nothing installed.

mod support;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::HashSet;
use support::receiver::Receiver;
use support::Server;

const SECRET: &str = "login-secret-0123456789abcdef-0123";
const LOGIN_URL: &str = "http://127.0.0.1:9/platform-login";
const REDIRECT: &str = "http://127.0.0.1:9/slack/oauth_redirect";

fn start(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("TIDINGS_OAUTH_LOGIN_URL", LOGIN_URL),
        ("TIDINGS_OAUTH_LOGIN_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn assertion(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// App A0OAUTH with a registered redirect URL (and rotation when asked), in team T01.
async fn app(s: &Server, rotation: bool, request_url: Option<&str>) -> (String, String) {
    s.acme().await;
    let mut body = json!({"id": "A0OAUTH", "name": "Oauth App",
        "bot_events": ["message.channels", "tokens_revoked", "app_uninstalled"],
        "redirect_urls": [REDIRECT], "token_rotation_enabled": rotation});
    if let Some(u) = request_url {
        body["request_url"] = u.into();
    }
    let (st, a) = s.admin("POST", "/apps", Some(body)).await;
    assert_eq!(st, 201, "{a}");
    let id = a["client_id"].as_str().unwrap().to_string();
    assert!(id
        .split_once('.')
        .is_some_and(|(x, y)| x.bytes().chain(y.bytes()).all(|b| b.is_ascii_digit())));
    (id, a["client_secret"].as_str().unwrap().to_string())
}

/// The authorize query as Python builds it: unencoded.
fn python_query(client_id: &str, scope: &str, redirect: &str) -> String {
    format!("state=st4te&client_id={client_id}&scope={scope}&user_scope=&redirect_uri={redirect}")
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Signs U01 in through the login hand-off; answers the session cookie.
async fn sign_in(s: &Server, user: &str, team: &str, query: &str) -> String {
    let r = browser()
        .get(format!("{}/oauth/v2/authorize?{query}", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let to = location(&r);
    assert!(to.starts_with(&format!("{LOGIN_URL}?return_to=")), "{to}");
    let return_to: String = url_param(&to, "return_to");
    let jti = format!("{:?}", std::time::Instant::now());
    let jwt = assertion(
        json!({"sub": user, "team_id": team, "exp": now() + 120, "jti": jti}),
        SECRET,
    );
    let r = browser()
        .get(format!("{}/oauth/v2/login", s.url))
        .query(&[
            ("assertion", jwt.as_str()),
            ("return_to", return_to.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(location(&r).starts_with("/oauth/v2/authorize?"));
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

fn url_param(url: &str, name: &str) -> String {
    let q = url.split_once('?').map(|x| x.1).unwrap_or("");
    form_urlencoded_parse(q)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn form_urlencoded_parse(q: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The consent page: (status, html, csrf).
async fn consent(s: &Server, cookie: &str, query: &str) -> (u16, String, String) {
    let r = browser()
        .get(format!("{}/oauth/v2/authorize?{query}", s.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let html = r.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap_or("")
        .to_string();
    (st, html, csrf)
}

/// Presses a button of the consent form; answers (status, Location).
async fn decide(s: &Server, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = browser()
        .post(format!("{}/oauth/v2/authorize", s.url))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), location(&r))
}

/// Runs the flow to a code for U01 in T01.
async fn code_for(s: &Server, client_id: &str, scope: &str) -> String {
    let q = python_query(client_id, scope, REDIRECT);
    let cookie = sign_in(s, "U01", "T01", &q).await;
    let (st, html, csrf) = consent(s, &cookie, &q).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains(">Allow</button>") && html.contains(">Cancel</button>"));
    assert!(html.contains("Oauth App") && html.contains("Acme"));
    let (st, to) = decide(
        s,
        &cookie,
        &[
            ("client_id", client_id),
            ("scope", scope),
            ("user_scope", ""),
            ("redirect_uri", REDIRECT),
            ("state", "st4te"),
            ("csrf", &csrf),
            ("decision", "allow"),
        ],
    )
    .await;
    assert!((300..400).contains(&st), "{st}");
    assert!(to.starts_with(&format!("{REDIRECT}?code=")), "{to}");
    assert_eq!(url_param(&to, "state"), "st4te");
    url_param(&to, "code")
}

/// `oauth.v2.access` with HTTP Basic credentials, as Python sends them.
async fn access_basic(s: &Server, id: &str, secret: &str, form: &[(&str, &str)]) -> Value {
    Server::client()
        .post(format!("{}/api/oauth.v2.access", s.url))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn installations(s: &Server) -> Vec<Value> {
    let (_, p) = s.admin("GET", "/apps/A0OAUTH/installations", None).await;
    p["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_person_signed_in_by_the_platform_installs_an_app_through_consent() {
    let s = start(&[]);
    let (id, secret) = app(&s, false, None).await;
    let code = code_for(&s, &id, "channels:history,chat:write").await;
    assert!(
        installations(&s).await.is_empty(),
        "nothing is installed before the exchange"
    );
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["app_id"], "A0OAUTH");
    assert_eq!(r["token_type"], "bot");
    assert_eq!(r["scope"], "channels:history,chat:write");
    assert_eq!(r["team"], json!({"id": "T01", "name": "Acme"}));
    assert_eq!(r["enterprise"], Value::Null);
    assert_eq!(r["is_enterprise_install"], false);
    assert_eq!(r["authed_user"], json!({"id": "U01"}));
    assert!(r.get("refresh_token").is_none());
    let bot = r["access_token"].as_str().unwrap();
    assert!(bot.starts_with("xoxb-"));
    let (headers, t) = s.api("auth.test", Some(bot), &[]).await;
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["user_id"], r["bot_user_id"]);
    assert!(t["bot_id"].as_str().is_some_and(|b| b.starts_with('B')));
    assert!(t["url"].as_str().is_some());
    assert_eq!(headers["x-oauth-scopes"], "channels:history,chat:write");
    let list = installations(&s).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["installer_user_id"], "U01");
    // The code is single use.
    let again = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(again["error"], "invalid_code");
}

#[tokio::test]
async fn node_style_requests_install_too_percent_encoded_with_form_credentials() {
    let s = start(&[]);
    let (id, secret) = app(&s, false, None).await;
    let q = format!(
        "scope=channels%3Ahistory&state=abc&client_id={id}&redirect_uri={}&user_scope=search%3Aread",
        REDIRECT.replace(':', "%3A").replace('/', "%2F")
    );
    let cookie = sign_in(&s, "U01", "T01", &q).await;
    let (st, _, csrf) = consent(&s, &cookie, &q).await;
    assert_eq!(st, 200);
    let (_, to) = decide(
        &s,
        &cookie,
        &[
            ("client_id", &id),
            ("scope", "channels:history"),
            ("user_scope", "search:read"),
            ("redirect_uri", REDIRECT),
            ("state", "abc"),
            ("csrf", &csrf),
            ("decision", "allow"),
        ],
    )
    .await;
    let code = url_param(&to, "code");
    let (_, r) = s
        .api(
            "oauth.v2.access",
            None,
            &[
                ("client_id", &id),
                ("client_secret", &secret),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["authed_user"]["id"], "U01");
    assert_eq!(r["authed_user"]["scope"], "search:read");
    assert_eq!(r["authed_user"]["token_type"], "user");
    assert!(r["authed_user"]["access_token"]
        .as_str()
        .unwrap()
        .starts_with("xoxp-"));
}

#[tokio::test]
async fn cancel_redirects_with_access_denied_and_installs_nothing() {
    let s = start(&[]);
    let (id, _) = app(&s, false, None).await;
    let q = python_query(&id, "channels:history", REDIRECT);
    let cookie = sign_in(&s, "U01", "T01", &q).await;
    let (_, _, csrf) = consent(&s, &cookie, &q).await;
    let (st, to) = decide(
        &s,
        &cookie,
        &[
            ("client_id", &id),
            ("scope", "channels:history"),
            ("redirect_uri", REDIRECT),
            ("state", "st4te"),
            ("csrf", &csrf),
            ("decision", "cancel"),
        ],
    )
    .await;
    assert!((300..400).contains(&st));
    assert_eq!(to, format!("{REDIRECT}?error=access_denied&state=st4te"));
    assert!(installations(&s).await.is_empty());
}

#[tokio::test]
async fn bad_exchanges_answer_slack_errors_and_install_nothing() {
    let s = start(&[]);
    let (id, secret) = app(&s, false, None).await;
    let code = code_for(&s, &id, "channels:history").await;
    let wrong_secret = access_basic(
        &s,
        &id,
        "0000",
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(wrong_secret["error"], "bad_client_secret");
    let wrong_client = access_basic(&s, "1.2", &secret, &[("code", &code)]).await;
    assert_eq!(wrong_client["error"], "invalid_client_id");
    let wrong_redirect = access_basic(
        &s,
        &id,
        &secret,
        &[
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ],
    )
    .await;
    assert_eq!(wrong_redirect["error"], "bad_redirect_uri");
    let forged = access_basic(
        &s,
        &id,
        &secret,
        &[("code", "1.2.3"), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(forged["error"], "invalid_code");
    let grant = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("grant_type", "password")],
    )
    .await;
    assert_eq!(grant["error"], "invalid_grant_type");
    let no_rotation = access_basic(
        &s,
        &id,
        &secret,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "xoxe-1-x"),
        ],
    )
    .await;
    assert_eq!(no_rotation["error"], "invalid_refresh_token");
    assert!(
        installations(&s).await.is_empty(),
        "refused exchanges install nothing"
    );
    // The refusals did not burn the code.
    let ok = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime() {
    let s = start(&[("TIDINGS_OAUTH_CODE_TTL", "1s")]);
    let (id, secret) = app(&s, false, None).await;
    let code = code_for(&s, &id, "channels:history").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(r["error"], "invalid_code");
    assert!(installations(&s).await.is_empty());
}

#[tokio::test]
async fn unsafe_authorize_requests_get_an_error_page_never_a_redirect() {
    let s = start(&[]);
    let (id, _) = app(&s, false, None).await;
    for q in [
        python_query("9.9", "channels:history", REDIRECT),
        python_query(
            &id,
            "channels:history",
            "http://evil.example/slack/oauth_redirect",
        ),
        python_query(
            &id,
            "channels:history",
            "http://127.0.0.1:9@evil.example/slack/oauth_redirect",
        ),
        python_query(&id, "channels:history,admin", REDIRECT),
        python_query(&id, "", REDIRECT),
    ] {
        let r = browser()
            .get(format!("{}/oauth/v2/authorize?{q}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert!(r.headers().get("location").is_none(), "{q}");
    }
}

#[tokio::test]
async fn forged_expired_and_replayed_assertions_and_foreign_return_to_are_refused() {
    let s = start(&[]);
    let (id, _) = app(&s, false, None).await;
    let back = format!(
        "/oauth/v2/authorize?{}",
        python_query(&id, "channels:history", REDIRECT)
    );
    let login = |jwt: String, to: String| {
        let url = format!("{}/oauth/v2/login", s.url);
        async move {
            let r = browser()
                .get(url)
                .query(&[("assertion", jwt), ("return_to", to)])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().get("set-cookie").is_some())
        }
    };
    let good = || {
        let jti = format!("{:?}", std::time::Instant::now());
        assertion(
            json!({"sub": "U01", "team_id": "T01", "exp": now() + 60, "jti": jti}),
            SECRET,
        )
    };
    let forged = assertion(
        json!({"sub": "U01", "team_id": "T01", "exp": now() + 60}),
        "another-secret-0123456789abcdef-0123",
    );
    assert_eq!(login(forged, back.clone()).await, (401, false));
    let expired = assertion(
        json!({"sub": "U01", "team_id": "T01", "exp": now() - 5}),
        SECRET,
    );
    assert_eq!(login(expired, back.clone()).await, (401, false));
    let long = assertion(
        json!({"sub": "U01", "team_id": "T01", "exp": now() + 3600}),
        SECRET,
    );
    assert_eq!(login(long, back.clone()).await, (401, false));
    assert_eq!(
        login(good(), "https://evil.example/".into()).await,
        (400, false)
    );
    assert_eq!(login(good(), "//evil.example/".into()).await, (400, false));
    let once = good();
    assert_eq!(login(once.clone(), back.clone()).await, (303, true));
    assert_eq!(
        login(once, back).await,
        (401, false),
        "an assertion is single use"
    );
}

#[tokio::test]
async fn csrf_mismatch_and_installers_outside_the_team_are_refused() {
    let s = start(&[]);
    let (id, _) = app(&s, false, None).await;
    assert_eq!(
        s.admin(
            "POST",
            "/teams",
            Some(json!({"id": "T02", "name": "Other", "domain": "other"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        s.admin(
            "POST",
            "/teams/T02/users",
            Some(json!({"id": "U02", "name": "bob"}))
        )
        .await
        .0,
        201
    );
    let q = python_query(&id, "channels:history", REDIRECT);
    let cookie = sign_in(&s, "U01", "T01", &q).await;
    let f = [
        ("client_id", id.as_str()),
        ("scope", "channels:history"),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("csrf", "forged"),
        ("decision", "allow"),
    ];
    let (st, to) = decide(&s, &cookie, &f).await;
    assert_eq!((st, to.as_str()), (403, ""));
    // The platform vouches for a user who is not a member of the team it names.
    let outsider = sign_in(&s, "U02", "T01", &q).await;
    let (st, _, _) = consent(&s, &outsider, &q).await;
    assert_eq!(st, 403);
    let unknown = sign_in(&s, "U0NOBODY", "T01", &q).await;
    assert_eq!(consent(&s, &unknown, &q).await.0, 403);
    // A link for another workspace than the signed-in one.
    let other_team = format!("{q}&team=T02");
    assert_eq!(consent(&s, &cookie, &other_team).await.0, 403);
    assert!(installations(&s).await.is_empty());
}

#[tokio::test]
async fn rotating_tokens_expire_refresh_once_and_keep_the_installation_working() {
    // Expiry is kept in whole seconds, so a token issued late in a second lives between
    // TTL − 1 and TTL seconds: 1s left a refreshed token as little as a few ms, and the
    // auth.test right after the refresh failed on a loaded machine (CI, PostgreSQL).
    let s = start(&[("TIDINGS_OAUTH_ACCESS_TOKEN_TTL", "3s")]);
    let (id, secret) = app(&s, true, None).await;
    let code = code_for(&s, &id, "channels:history").await;
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let access = r["access_token"].as_str().unwrap().to_string();
    let refresh = r["refresh_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("xoxe.xoxb-1-"), "{access}");
    assert!(refresh.starts_with("xoxe-1-"), "{refresh}");
    assert_eq!(r["expires_in"], 3);
    assert_eq!(s.api("auth.test", Some(&access), &[]).await.1["ok"], true);
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(
        s.api("auth.test", Some(&access), &[]).await.1["error"],
        "token_expired"
    );
    // Node's refresh: form credentials.
    let (_, n) = s
        .api(
            "oauth.v2.access",
            None,
            &[
                ("client_id", &id),
                ("client_secret", &secret),
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    assert_eq!(n["ok"], true, "{n}");
    assert_eq!(n["token_type"], "bot");
    assert_eq!(n["team"]["id"], "T01");
    let fresh = n["access_token"].as_str().unwrap();
    assert!(fresh.starts_with("xoxe.xoxb-1-"));
    assert_eq!(s.api("auth.test", Some(fresh), &[]).await.1["ok"], true);
    let reuse = access_basic(
        &s,
        &id,
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        reuse["error"], "invalid_refresh_token",
        "a refresh token is single use"
    );
    let next = n["refresh_token"].as_str().unwrap();
    let wrong = access_basic(
        &s,
        &id,
        "bad",
        &[("grant_type", "refresh_token"), ("refresh_token", next)],
    )
    .await;
    assert_eq!(wrong["error"], "bad_client_secret");
    assert_eq!(installations(&s).await.len(), 1);
}

#[tokio::test]
async fn revoking_and_uninstalling_deliver_lifecycle_events() {
    let rx = Receiver::start().await;
    let s = start(&[]);
    let (id, secret) = app(&s, false, Some(&rx.url)).await;
    let code = code_for(&s, &id, "channels:history").await;
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    let bot = r["access_token"].as_str().unwrap().to_string();
    let bot_user = r["bot_user_id"].as_str().unwrap().to_string();
    let (_, t) = s.api("auth.revoke", Some(&bot), &[("test", "1")]).await;
    assert_eq!(t, json!({"ok": true, "revoked": false}));
    assert_eq!(
        s.api("auth.test", Some(&bot), &[]).await.1["ok"],
        true,
        "test mode revokes nothing"
    );
    // A second installation (the same person, re-installing) to uninstall with apps.uninstall.
    let code = code_for(&s, &id, "channels:history").await;
    let r2 = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    let bot2 = r2["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        r2["bot_user_id"],
        bot_user.as_str(),
        "the bot user is reused on re-install"
    );
    assert_eq!(
        s.api("auth.test", Some(&bot), &[]).await.1["error"],
        "token_revoked",
        "re-install replaces tokens"
    );
    let (_, m) = s
        .api(
            "apps.uninstall",
            Some(&bot2),
            &[("client_id", "1.2"), ("client_secret", &secret)],
        )
        .await;
    assert_eq!(m["error"], "invalid_client_id");
    let (_, m) = s
        .api(
            "apps.uninstall",
            Some(&bot2),
            &[("client_id", &id), ("client_secret", "nope")],
        )
        .await;
    assert_eq!(m["error"], "bad_client_secret");
    let (_, u) = s
        .api(
            "apps.uninstall",
            Some(&bot2),
            &[("client_id", &id), ("client_secret", &secret)],
        )
        .await;
    assert_eq!(u, json!({"ok": true}));
    assert_eq!(
        s.api("auth.test", Some(&bot2), &[]).await.1["error"],
        "token_revoked"
    );
    rx.wait_for(20, "tokens_revoked and app_uninstalled", |hits| {
        let types: Vec<String> = hits
            .iter()
            .filter(|h| !h.is_verification())
            .map(|h| h.json()["event"]["type"].as_str().unwrap_or("").to_string())
            .collect();
        types.contains(&"tokens_revoked".to_string())
            && types.contains(&"app_uninstalled".to_string())
    })
    .await;
    for h in rx.events() {
        let b = h.json();
        assert!(b.get("event_context").is_none(), "{b}");
        assert_eq!(b["team_id"], "T01");
        if b["event"]["type"] == "tokens_revoked" {
            assert_eq!(b["event"]["tokens"]["bot"], json!([bot_user]));
        }
    }
    assert!(installations(&s)
        .await
        .iter()
        .all(|i| !i["revoked_at"].is_null()));
}

#[tokio::test]
async fn a_last_auth_revoke_uninstalls_with_one_tokens_revoked_and_one_app_uninstalled() {
    let rx = Receiver::start().await;
    let s = start(&[]);
    let (id, secret) = app(&s, false, Some(&rx.url)).await;
    let code = code_for(&s, &id, "channels:history").await;
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    let bot = r["access_token"].as_str().unwrap().to_string();
    let bot_user = r["bot_user_id"].as_str().unwrap().to_string();
    let (_, t) = s.api("auth.revoke", Some(&bot), &[]).await;
    assert_eq!(t, json!({"ok": true, "revoked": true}));
    assert_eq!(
        s.api("auth.test", Some(&bot), &[]).await.1["error"],
        "token_revoked"
    );
    let ids_of = |hits: &[support::receiver::Hit], ty: &str| -> HashSet<String> {
        hits.iter()
            .filter(|h| !h.is_verification() && h.json()["event"]["type"] == ty)
            .map(|h| h.json()["event_id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    rx.wait_for(20, "tokens_revoked and app_uninstalled", |hits| {
        !ids_of(hits, "app_uninstalled").is_empty() && !ids_of(hits, "tokens_revoked").is_empty()
    })
    .await;
    // Both were written in the revocation's one transaction: what the server holds is
    // exactly one event of each (no second tokens_revoked from the uninstall).
    for ty in ["tokens_revoked", "app_uninstalled"] {
        let (st, d) = s
            .admin(
                "GET",
                &format!("/apps/A0OAUTH/deliveries?event_type={ty}&limit=100"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{d}");
        let items = d["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{ty}: {d}");
        assert_eq!(ids_of(&rx.hits(), ty).len(), 1, "{ty} reached the app once");
        assert_eq!(
            ids_of(&rx.hits(), ty),
            HashSet::from([items[0]["event_id"].as_str().unwrap().to_string()])
        );
    }
    let revoked = rx
        .events()
        .into_iter()
        .map(|h| h.json())
        .find(|b| b["event"]["type"] == "tokens_revoked")
        .unwrap();
    assert_eq!(revoked["event"]["tokens"]["bot"], json!([bot_user]));
    assert_eq!(revoked["event"]["tokens"]["oauth"], json!([]));
    assert!(installations(&s)
        .await
        .iter()
        .all(|i| !i["revoked_at"].is_null()));
}

#[tokio::test]
async fn patching_the_app_sets_its_oauth_fields_under_its_if_match() {
    let s = start(&[]);
    app(&s, false, None).await;
    let url = format!("{}/admin/v1/apps/A0OAUTH", s.url);
    let patch = |tag: &str, body: Value| {
        Server::client()
            .patch(&url)
            .bearer_auth(support::ADMIN)
            .header("if-match", tag.to_string())
            .json(&body)
            .send()
    };
    let tag = Server::client()
        .get(&url)
        .bearer_auth(support::ADMIN)
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let other = "http://127.0.0.1:9/elsewhere/cb";
    let ok = patch(
        &tag,
        json!({"name": "Renamed", "redirect_urls": [REDIRECT, other],
               "token_rotation_enabled": true, "org_deploy_enabled": true}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    let new_tag = ok.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(new_tag, tag);
    let a: Value = ok.json().await.unwrap();
    assert_eq!(a["name"], "Renamed");
    let client = || async { s.admin("GET", "/apps/A0OAUTH/oauth", None).await.1 };
    let c = client().await;
    assert_eq!(c["redirect_urls"], json!([REDIRECT, other]));
    assert_eq!(c["token_rotation_enabled"], true);
    assert_eq!(c["org_deploy_enabled"], true);
    // A stale If-Match writes nothing: neither the name nor the OAuth fields.
    let stale = patch(
        &tag,
        json!({"name": "Stale", "redirect_urls": [REDIRECT], "token_rotation_enabled": false}),
    )
    .await
    .unwrap();
    assert_eq!(stale.status(), 412);
    let c = client().await;
    assert_eq!(c["redirect_urls"], json!([REDIRECT, other]));
    assert_eq!(c["token_rotation_enabled"], true);
    assert_eq!(
        s.admin("GET", "/apps/A0OAUTH", None).await.1["name"],
        "Renamed"
    );
    // Validated as on PATCH /apps/{app}/oauth: a bad redirect URL is a 400 naming the
    // field, and nothing is written.
    let bad = patch(
        &new_tag,
        json!({"name": "Bad", "redirect_urls": ["javascript:alert(1)"]}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let p: Value = bad.json().await.unwrap();
    assert!(p.to_string().contains("redirect_urls"), "{p}");
    let c = client().await;
    assert_eq!(c["redirect_urls"], json!([REDIRECT, other]));
    let ok = patch(&new_tag, json!({"token_rotation_enabled": false}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let c = client().await;
    assert_eq!(c["token_rotation_enabled"], false);
    assert_eq!(c["org_deploy_enabled"], true, "fields not named stay");
}

#[tokio::test]
async fn the_client_secret_rotates_and_the_old_one_stops_working() {
    let s = start(&[]);
    let (id, old) = app(&s, false, None).await;
    let (st, c) = s
        .admin("POST", "/apps/A0OAUTH/client_secret/rotate", None)
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["client_id"], id.as_str());
    let new = c["client_secret"].as_str().unwrap();
    assert_ne!(new, old);
    let code = code_for(&s, &id, "channels:history").await;
    let r = access_basic(
        &s,
        &id,
        &old,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(r["error"], "bad_client_secret");
    let r = access_basic(&s, &id, new, &[("code", &code), ("redirect_uri", REDIRECT)]).await;
    assert_eq!(r["ok"], true);
    let (st, p) = s
        .admin(
            "PATCH",
            "/apps/A0OAUTH/oauth",
            Some(json!({"redirect_urls": ["javascript:alert(1)"]})),
        )
        .await;
    assert_eq!(st, 400, "{p}");
    let (st, p) = s
        .admin(
            "PATCH",
            "/apps/A0OAUTH/oauth",
            Some(json!({"org_deploy_enabled": true})),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["org_deploy_enabled"], true);
    assert_eq!(p["redirect_urls"], json!([REDIRECT]));
    assert!(p.get("client_secret").is_none() && p.get("client_secret_hash").is_none());
}

#[tokio::test]
async fn a_long_lived_token_is_exchanged_once_for_a_rotating_pair() {
    let s = start(&[]);
    let (id, secret) = app(&s, false, None).await;
    let code = code_for(&s, &id, "channels:history").await;
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    let old = r["access_token"].as_str().unwrap().to_string();
    let form = |t: &str| {
        vec![
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
            ("token", t.to_string()),
        ]
    };
    let call = |f: Vec<(&'static str, String)>| {
        let url = format!("{}/api/oauth.v2.exchange", s.url);
        async move {
            Server::client()
                .post(url)
                .form(&f)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        call(form(&old)).await["error"],
        "token_rotation_not_enabled"
    );
    assert_eq!(
        s.admin(
            "PATCH",
            "/apps/A0OAUTH/oauth",
            Some(json!({"token_rotation_enabled": true}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(form("xoxb-unknown")).await["error"],
        "authorization_not_found"
    );
    let e = call(form(&old)).await;
    assert_eq!(e["ok"], true, "{e}");
    assert_eq!(e["token_type"], "bot");
    let fresh = e["access_token"].as_str().unwrap();
    assert!(fresh.starts_with("xoxe.xoxb-1-"));
    assert!(e["refresh_token"].as_str().unwrap().starts_with("xoxe-1-"));
    assert_eq!(s.api("auth.test", Some(fresh), &[]).await.1["ok"], true);
    assert_eq!(
        s.api("auth.test", Some(&old), &[]).await.1["error"],
        "token_revoked"
    );
    assert_eq!(call(form(fresh)).await["error"], "token_already_exchanged");
}

#[tokio::test]
async fn an_org_admin_installs_an_org_ready_app_org_wide() {
    let s = start(&[]);
    let (id, secret) = app(&s, false, None).await;
    assert_eq!(
        s.admin(
            "PATCH",
            "/apps/A0OAUTH/oauth",
            Some(json!({"org_deploy_enabled": true}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.admin(
            "POST",
            "/enterprises",
            Some(json!({"id": "E0ORG", "name": "Grid Org"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(s.admin("POST", "/teams", Some(json!({"id": "T0GRID", "name": "Grid Team", "domain": "grid", "enterprise_id": "E0ORG"}))).await.0, 201);
    assert_eq!(
        s.admin(
            "POST",
            "/teams/T0GRID/users",
            Some(json!({"id": "U0ADMIN", "name": "root"}))
        )
        .await
        .0,
        201
    );
    let q = python_query(&id, "channels:history", REDIRECT);
    let jwt = assertion(
        json!({"sub": "U0ADMIN", "team_id": "T0GRID", "enterprise_id": "E0ORG", "org_admin": true, "exp": now() + 60, "jti": "org-1"}),
        SECRET,
    );
    let back = format!("/oauth/v2/authorize?{q}");
    let r = browser()
        .get(format!("{}/oauth/v2/login", s.url))
        .query(&[("assertion", jwt.as_str()), ("return_to", back.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (st, html, csrf) = consent(&s, &cookie, &q).await;
    assert_eq!(st, 200);
    assert!(
        html.contains("Grid Org (every workspace of the organization)"),
        "{html}"
    );
    let (_, to) = decide(
        &s,
        &cookie,
        &[
            ("client_id", &id),
            ("scope", "channels:history"),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            ("csrf", &csrf),
            ("decision", "allow"),
        ],
    )
    .await;
    let code = url_param(&to, "code");
    let r = access_basic(
        &s,
        &id,
        &secret,
        &[("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["is_enterprise_install"], true);
    assert_eq!(r["team"], Value::Null);
    assert_eq!(r["enterprise"], json!({"id": "E0ORG", "name": "Grid Org"}));
    let t = s
        .api("auth.test", Some(r["access_token"].as_str().unwrap()), &[])
        .await
        .1;
    assert_eq!(t["is_enterprise_install"], true, "{t}");
    assert_eq!(t["enterprise_id"], "E0ORG");
    assert!(t["url"].as_str().is_some());
    let list = installations(&s).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["team_id"], Value::Null);
    assert_eq!(list[0]["enterprise_id"], "E0ORG");
}
