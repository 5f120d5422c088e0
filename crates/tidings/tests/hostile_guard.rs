//! Issue 20's hostile findings, parts 4–6, against the real binary: `--dev` opens loopback
//! only and the SSRF table refuses embedded and special-purpose addresses; revoking an
//! app-level token ends what it opened (tickets, open sockets, on every node); client
//! numbers at the ends of `i64` get a 400/422 naming the field; scope lists are bounded;
//! the data directory and database files are owner-only; and a server logging at `trace`
//! writes no secret to stderr.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use support::receiver::{Receiver, Reply};
use support::ws::{next_json, open_url, Ws};
use support::{Server, ADMIN};
use tokio_tungstenite::tungstenite::Message;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// --- SSRF ------------------------------------------------------------------------------

#[tokio::test]
async fn dev_mode_opens_loopback_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::spawn(
        &tmp.path().join("data"),
        env(&[("TIDINGS_ADMIN_TOKEN", ADMIN)]),
        &["--dev"],
    );
    let r = Receiver::start().await;
    let (st, app) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"name": "dev", "request_url": r.url})),
        )
        .await;
    assert_eq!(st, 201, "loopback is open under --dev: {app}");
    let port = r.addr.port();
    // IP literals are refused before any connection is tried: no traffic leaves loopback.
    for (url, block) in [
        ("http://10.0.0.1:9/x".to_string(), "10.0.0.0/8"),
        (
            "http://169.254.169.254/latest".to_string(),
            "169.254.0.0/16",
        ),
        ("http://198.18.0.1/x".to_string(), "198.18.0.0/15"),
        ("http://[::ffff:a9fe:a9fe]/x".to_string(), "169.254.0.0/16"),
        (format!("http://[::127.0.0.1]:{port}/x"), "IPv4-compatible"),
        (format!("http://[64:ff9b::7f00:1]:{port}/x"), "NAT64"),
        (format!("http://[2002:7f00:1::]:{port}/x"), "6to4"),
        ("http://[fec0::1]/x".to_string(), "fec0::/10"),
        ("http://0.0.0.0:9/x".to_string(), "0.0.0.0/8"),
    ] {
        let (st, p) = s
            .admin(
                "POST",
                "/apps",
                Some(json!({"name": "ssrf", "request_url": url})),
            )
            .await;
        let detail = p["detail"].as_str().unwrap_or_default();
        assert_eq!(st, 422, "{url}: {p}");
        assert!(
            detail.contains("SSRF") && detail.contains(block),
            "{url}: {detail}"
        );
    }
    assert_eq!(
        r.hits().len(),
        1,
        "only the loopback verification reached anything"
    );
}

// --- revocation ------------------------------------------------------------------------

/// Socket-mode app A01 in C01 with two app-level tokens: `(id, token)` each.
async fn socket_app_with_tokens(s: &Server) -> [(String, String); 2] {
    s.app_in_channel(
        json!({"id": "A01", "name": "a", "socket_mode": true, "bot_events": ["message.channels"]}),
    )
    .await;
    let mut out = Vec::new();
    for _ in 0..2 {
        let (st, t) = s
            .admin(
                "POST",
                "/apps/A01/tokens",
                Some(json!({"scopes": ["connections:write"]})),
            )
            .await;
        assert_eq!(st, 201, "{t}");
        out.push((
            t["id"].as_str().unwrap().to_string(),
            t["token"].as_str().unwrap().to_string(),
        ));
    }
    [out[0].clone(), out[1].clone()]
}

async fn revoke(s: &Server, id: &str) -> Duration {
    let started = Instant::now();
    let (st, t) = s
        .admin("DELETE", &format!("/apps/A01/tokens/{id}"), None)
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(t["revoked_at"].is_i64(), "{t}");
    started.elapsed()
}

async fn dial(url: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    ws
}

/// Every text frame until the server closes the socket (within `within`), as JSON.
async fn frames_until_closed(ws: &mut Ws, within: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the socket was not closed within {within:?}; got {out:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return out,
            Ok(Some(Ok(Message::Text(t)))) => out.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn is_link_disabled(frames: &[Value]) -> bool {
    frames.len() == 1 && frames[0]["type"] == "disconnect" && frames[0]["reason"] == "link_disabled"
}

#[tokio::test]
async fn a_ticket_issued_before_its_token_is_revoked_is_refused_at_connect() {
    let s = Server::start();
    let [(id, token), _] = socket_app_with_tokens(&s).await;
    let url = open_url(&s, &token).await;
    revoke(&s, &id).await;
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 401)
        }
        other => panic!("the ticket of a revoked token must be refused: {other:?}"),
    }
    let (_, r) = s.api("apps.connections.open", Some(&token), &[]).await;
    assert_eq!(r["error"], "token_revoked", "{r}");
}

#[tokio::test]
async fn revoking_a_token_closes_its_sockets_with_link_disabled_and_sends_them_nothing_more() {
    let s = Server::start();
    let [(id1, t1), (id2, t2)] = socket_app_with_tokens(&s).await;
    let mut ws1 = dial(&open_url(&s, &t1).await).await;
    let e1 = s.say("before").await;
    let env = next_json(&mut ws1).await;
    assert_eq!(env["payload"]["event_id"], e1.as_str(), "{env}");
    support_ack(&mut ws1, &env).await;
    s.wait_status(&e1, "delivered").await;

    revoke(&s, &id1).await;
    // Published after the revoke answered: must not reach the revoked token's socket.
    let e2 = s.say("after").await;
    let frames = frames_until_closed(&mut ws1, Duration::from_secs(5)).await;
    assert!(
        is_link_disabled(&frames),
        "one disconnect/link_disabled, then close, no envelope: {frames:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, ev) = s.admin("GET", &format!("/events/{e2}"), None).await;
    assert_eq!(
        ev["deliveries"][0]["status"], "pending",
        "held, not sent: {ev}"
    );

    // The app's other token still works, and receives what was held.
    let mut ws2 = dial(&open_url(&s, &t2).await).await;
    let env = next_json(&mut ws2).await;
    assert_eq!(env["payload"]["event_id"], e2.as_str(), "{env}");
    support_ack(&mut ws2, &env).await;
    s.wait_status(&e2, "delivered").await;

    // With every token revoked, nothing of the app stays connected.
    revoke(&s, &id2).await;
    let e3 = s.say("none left").await;
    let frames = frames_until_closed(&mut ws2, Duration::from_secs(5)).await;
    assert!(is_link_disabled(&frames), "{frames:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, ev) = s.admin("GET", &format!("/events/{e3}"), None).await;
    assert_eq!(ev["deliveries"][0]["status"], "pending", "{ev}");
    let (_, conns) = s.admin("GET", "/apps/A01/connections", None).await;
    assert_eq!(conns["items"].as_array().map(Vec::len), Some(0), "{conns}");
}

async fn support_ack(ws: &mut Ws, env: &Value) {
    use futures::SinkExt;
    ws.send(Message::Text(
        json!({"envelope_id": env["envelope_id"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_revoke_on_one_node_closes_the_tokens_sockets_on_the_others() {
    if !Server::on_postgres() {
        eprintln!("needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run on SQLite");
        return;
    }
    let a = Server::start();
    let b = a.peer();
    let [(id, token), _] = socket_app_with_tokens(&a).await;
    // Both the socket and a spare ticket live on node B; the revoke is made on node A.
    let mut ws = dial(&open_url(&b, &token).await).await;
    let spare = open_url(&b, &token).await;
    let took = revoke(&a, &id).await;
    let closed_at = Instant::now();
    let e = a.say("after the revoke").await;
    let frames = frames_until_closed(&mut ws, Duration::from_secs(5)).await;
    let after_return = closed_at.elapsed();
    assert!(is_link_disabled(&frames), "{frames:?}");
    eprintln!(
        "cross-node revoke: call took {took:?}; B's close observed {after_return:?} after it returned"
    );
    assert!(
        tokio_tungstenite::connect_async(spare.as_str())
            .await
            .is_err(),
        "B refuses a ticket it issued before the revoke on A"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, ev) = a.admin("GET", &format!("/events/{e}"), None).await;
    assert_eq!(ev["deliveries"][0]["status"], "pending", "{ev}");
}

// --- numbers at the ends of i64, bounded lists -------------------------------------------

#[tokio::test]
async fn client_numbers_at_the_ends_of_i64_get_a_named_400_or_422_never_a_panic() {
    let s = Server::start();
    s.acme().await;
    let (min, max) = (i64::MIN, i64::MAX);
    // Out-of-range times are malformed (400); a range of valid times refused as a whole
    // (too many buckets) is well-formed but refused (422).
    for (query, field, status) in [
        (format!("from={min}"), "from", 400),
        (format!("from={min}&granularity=minute"), "from", 400),
        (format!("to={min}"), "to", 400),
        (format!("to={max}"), "to", 400),
        (format!("from={max}&to={max}"), "from", 400),
        (format!("from=0&to={}", 253_402_300_799i64), "from", 422),
        ("from=-1&to=60".to_string(), "from", 400),
    ] {
        for path in ["events", "key_events", "deliveries"] {
            let (st, p) = s
                .admin("GET", &format!("/insights/{path}?{query}"), None)
                .await;
            assert_eq!(
                (st, p["errors"][0]["field"].as_str()),
                (status, Some(field)),
                "{path}?{query}: {p}"
            );
        }
    }
    let ev = |t: Value| json!({"team_id": "T01", "event_time": t, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "x"}});
    for (t, code) in [
        (json!(min), "event_too_old"),
        (json!(min + 1), "event_too_old"),
        (json!(max), "event_in_future"),
    ] {
        let (st, p) = s.admin("POST", "/events", Some(ev(t.clone()))).await;
        assert_eq!(
            (st, p["type"].as_str(), p["errors"][0]["field"].as_str()),
            (
                422,
                Some(format!("urn:tidings:problem:{code}").as_str()),
                Some("event_time")
            ),
            "{t}: {p}"
        );
    }
    let (st, p) = s.admin("POST", "/events", Some(ev(json!(1e30)))).await;
    assert_eq!(st, 400, "{p}");
    let (st, r) = s
        .admin(
            "POST",
            "/events/batch",
            Some(json!({"events": [ev(json!(min)), ev(json!(max))]})),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["results"][0]["error"]["status"], 422, "{r}");
    assert_eq!(r["results"][1]["error"]["status"], 422, "{r}");

    let ws = s
        .workspace(&["message.channels"], &["channels:history"], &[])
        .await;
    let app = &ws.app_id;
    let (st, p) = s
        .admin(
            "GET",
            &format!("/apps/{app}/deliveries?since={min}&until={max}"),
            None,
        )
        .await;
    assert_eq!(st, 200, "since/until are only compared: {p}");
    for (query, field) in [
        ("limit=99999999999999999999", "limit"),
        (&*format!("limit={min}"), "limit"),
        ("limit=0", "limit"),
        ("cursor=!!not-a-cursor", "cursor"),
        ("since=99999999999999999999", "since"),
    ] {
        let (st, p) = s
            .admin("GET", &format!("/apps/{app}/deliveries?{query}"), None)
            .await;
        assert_eq!(
            (st, p["errors"][0]["field"].as_str()),
            (400, Some(field)),
            "{query}: {p}"
        );
    }
    let (st, p) = s
        .admin(
            "POST",
            &format!("/apps/{app}/redeliver"),
            Some(json!({"since": min, "until": max})),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    // The server is still up (a debug build would have panicked on an overflow).
    assert_eq!(s.admin("GET", "/teams/T01", None).await.0, 200);
}

#[tokio::test]
async fn a_huge_scope_list_is_refused_at_once_and_the_server_stays_responsive() {
    let s = Server::start();
    let ws = s.workspace(&[], &["chat:write"], &[]).await;
    let scopes: Vec<String> = (0..60_000).map(|i| format!("s{i}:read")).collect();
    let started = Instant::now();
    let (st, p) = s
        .admin(
            "POST",
            &format!("/apps/{}/installations", ws.app_id),
            Some(json!({"team_id": ws.team_id, "installer_user_id": ws.user_id, "bot_scopes": scopes})),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("bot_scopes")),
        "{p}"
    );
    assert!(
        took < Duration::from_secs(2),
        "refused in {took:?}, not after an O(n²) pass"
    );
    let (st, p) = s
        .admin(
            "POST",
            &format!("/apps/{}/tokens", ws.app_id),
            Some(json!({"scopes": vec!["connections:write"; 40_000]})),
        )
        .await;
    assert_eq!(
        (st, p["errors"][0]["field"].as_str()),
        (400, Some("scopes")),
        "{p}"
    );
}

// --- file modes --------------------------------------------------------------------------

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_is_0700_its_secret_files_0600_and_looser_ones_are_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = Server::spawn(&dir, vec![], &[]);
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let (st, _) = s
        .admin_as(
            token.trim(),
            "POST",
            "/teams",
            Some(json!({"name": "Acme", "domain": "acme"})),
        )
        .await;
    assert_eq!(st, 201, "a write, so the WAL has something in it");
    let files = [
        "tidings.db",
        "tidings.db-wal",
        "tidings.db-shm",
        "admin-token",
    ];
    assert_eq!(mode(&dir), 0o700);
    for f in files {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    s.kill();

    // As an older Tidings (or a copy with a default umask) would have left them.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in files {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let log = tmp.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let s = Server::spawn_logging_to(&dir, env(&[("TIDINGS_LOG", "info")]), &[], stderr.into());
    assert_eq!(mode(&dir), 0o700);
    for f in files {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f} tightened on start");
    }
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("tightened permissions") && text.contains("admin-token"),
        "{text}"
    );
}

// --- logs --------------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let s = Server::spawn_logging_to(
        &tmp.path().join("data"),
        env(&[
            ("TIDINGS_ADMIN_TOKEN", ADMIN),
            ("TIDINGS_DELIVERY_ALLOW_LOOPBACK_TARGETS", "true"),
            ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["0s"]"#),
            ("TIDINGS_LOG", "trace"),
        ]),
        &[],
        stderr.into(),
    );
    // The receiver fails each event's first attempt and takes the retry.
    let r = Receiver::with(std::sync::Arc::new(|h: &support::receiver::Hit, n| {
        if h.is_verification() {
            // /bad answers without the challenge; elsewhere the receiver echoes it.
            return if h.path.starts_with("/bad") {
                Reply {
                    body: "nope".into(),
                    ..Reply::ok()
                }
            } else {
                Reply::default()
            };
        }
        if n == 0 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let base = r.url.trim_end_matches('/').to_string();
    let with_secrets = |path: &str, pw: &str, q: &str| {
        base.replacen("http://", &format!("http://hooks:{pw}@"), 1)
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
            + path
            + q
    };
    let good = with_secrets(
        "/slack/events",
        "Pw0rdInUrl1",
        "?token=QueryTok3n&sig=QuerySig4&keep=visible",
    );
    let app = s
        .app_in_channel(json!({"id": "A01", "name": "logged", "request_url": good, "bot_events": ["message.channels"]}))
        .await;
    let bad = with_secrets(
        "/bad",
        "Pw0rdInUrl2",
        "?password=QueryPass5&client_secret=QuerySec6&keep=visible",
    );
    let (st, p) = s
        .admin("PATCH", "/apps/A01", Some(json!({"request_url": bad})))
        .await;
    assert_eq!(st, 422, "a failed verification: {p}");
    let (st, _) = s
        .admin("POST", "/apps/A01/signing_secret/rotate", None)
        .await;
    assert_eq!(st, 200);
    let (_, app2) = s.admin("GET", "/apps/A01", None).await;
    let e = s.say("logged").await;
    s.wait_status(&e, "delivered").await;

    // Tokens in the query string and the Authorization header, a Socket Mode ticket.
    let (_, inst) = s
        .admin(
            "POST",
            "/apps/A01/installations",
            Some(
                json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["chat:write"]}),
            ),
        )
        .await;
    let bot = inst["bot_token"].as_str().unwrap().to_string();
    let res = Server::client()
        .post(format!("{}/api/auth.test?token={bot}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, t) = s
        .admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["connections:write"]})),
        )
        .await;
    let xapp = t["token"].as_str().unwrap().to_string();
    let (_, opened) = s.api("apps.connections.open", Some(&xapp), &[]).await;
    let link = opened["url"].as_str().unwrap().to_string();
    let ticket = link
        .split("ticket=")
        .nth(1)
        .and_then(|t| t.split('&').next())
        .unwrap()
        .to_string();
    // Socket mode is off for this app: the server says link_disabled, which is fine here.
    let _ = tokio_tungstenite::connect_async(link.as_str()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 100,
        "trace logging ran ({} lines)",
        text.lines().count()
    );
    assert!(
        text.contains("keep=visible") && text.contains("[redacted]"),
        "the Request URL was logged, redacted: the test is not vacuous"
    );
    let after = |t: &str, prefix: &str| t.strip_prefix(prefix).unwrap_or(t).to_string();
    let secrets = [
        ("URL password", "Pw0rdInUrl1".to_string()),
        ("URL password (failed verification)", "Pw0rdInUrl2".into()),
        ("?token=", "QueryTok3n".into()),
        ("?sig=", "QuerySig4".into()),
        ("?password=", "QueryPass5".into()),
        ("?client_secret=", "QuerySec6".into()),
        ("admin token", after(ADMIN, "tdk_admin_")),
        ("bot token", after(&bot, "xoxb-")),
        ("app-level token", after(&xapp, "xapp-")),
        ("Socket Mode ticket", ticket),
        (
            "signing secret",
            app["signing_secret"].as_str().unwrap().into(),
        ),
        (
            "rotated signing secret",
            app2["signing_secret"].as_str().unwrap().into(),
        ),
        (
            "verification token",
            app["verification_token"].as_str().unwrap().into(),
        ),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        if let Some(line) = text.lines().find(|l| l.contains(&secret)) {
            panic!("the {what} reached the log: {line}");
        }
    }
}
