//! The RTM API against the real binary with a raw WebSocket client: rtm.connect and
//! rtm.start, hello then unwrapped events, JSON ping/pong, single-use and expiring URLs,
//! revoked tokens (refused at connect, goodbye when open), the per-token connection
//! limit, a client that never reads (dropped, memory bounded) and goodbye on SIGTERM.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::ws::{next_json, Ws};
use support::Server;
use tokio_tungstenite::tungstenite::Message;

/// App A0RTM subscribed to channel messages, installed in T01 with its bot in C01 (where
/// U01 talks); returns its bot token.
async fn rtm_app(s: &Server) -> String {
    s.acme().await;
    let (st, app) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"id": "A0RTM", "name": "rtm", "bot_events": ["message.channels"]})),
        )
        .await;
    assert_eq!(st, 201, "{app}");
    let (st, inst) = s
        .admin(
            "POST",
            "/apps/A0RTM/installations",
            Some(json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["channels:history"]})),
        )
        .await;
    assert_eq!(st, 201, "{inst}");
    let (st, _) = s
        .admin(
            "POST",
            "/teams/T01/conversations/C01/members",
            Some(json!({"user": inst["bot_user_id"]})),
        )
        .await;
    assert_eq!(st, 200);
    inst["bot_token"].as_str().unwrap().to_string()
}

async fn rtm_url(s: &Server, token: &str) -> String {
    let (_, r) = s.api("rtm.connect", Some(token), &[]).await;
    assert_eq!(r["ok"], true, "{r}");
    r["url"].as_str().unwrap().to_string()
}

async fn open(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket")
        .0
}

/// rtm.connect, open, and read `hello`.
async fn connect(s: &Server, token: &str) -> Ws {
    let mut ws = open(&rtm_url(s, token).await).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello, json!({"type": "hello"}));
    ws
}

/// Reads until the server closes the connection (within 10 s); the text frames read.
async fn until_closed(ws: &mut Ws) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server closes within 10 s")
        {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return frames,
            Some(Ok(_)) => {}
        }
    }
}

async fn metric(s: &Server, line_start: &str) -> Option<f64> {
    s.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (up to 20 s) until the metric line reads `want`.
async fn wait_metric(s: &Server, line_start: &str, want: f64) {
    for _ in 0..200 {
        if metric(s, line_start).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{line_start} never became {want}: {:?}",
        metric(s, line_start).await
    );
}

#[tokio::test]
async fn rtm_connect_and_start_answer_url_self_and_team_for_bot_and_user_tokens_only() {
    let s = Server::start();
    let bot = rtm_app(&s).await;
    let (_, r) = s.api("rtm.connect", Some(&bot), &[]).await;
    assert_eq!(r["ok"], true, "{r}");
    let prefix = format!(
        "{}/rtm/websocket?ticket=",
        s.url.replace("http://", "ws://")
    );
    assert!(r["url"].as_str().unwrap().starts_with(&prefix), "{r}");
    let (_, me) = s.api("auth.test", Some(&bot), &[]).await;
    assert_eq!(r["self"]["id"], me["user_id"]);
    assert!(r["self"]["name"].is_string());
    assert_eq!(
        r["team"],
        json!({"id": "T01", "name": "Acme", "domain": "acme"})
    );

    let (_, st) = s.api("rtm.start", Some(&bot), &[]).await;
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["self"], r["self"]);
    assert_eq!(st["team"], r["team"]);
    assert_eq!(st["warning"], "method_deprecated");
    assert_ne!(st["url"], r["url"], "every call has its own URL");

    let ws = s.workspace(&[], &["chat:write"], &["search:read"]).await;
    let (_, u) = s.api("rtm.connect", Some(ws.user_token()), &[]).await;
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(u["self"]["id"], ws.user_id.as_str());

    let (_, t) = s
        .admin(
            "POST",
            "/apps/A0RTM/tokens",
            Some(json!({"scopes": ["connections:write"]})),
        )
        .await;
    let (_, a) = s
        .api("rtm.connect", Some(t["token"].as_str().unwrap()), &[])
        .await;
    assert_eq!(a["error"], "not_allowed_token_type");
    assert_eq!(
        s.api("rtm.connect", None, &[]).await.1["error"],
        "not_authed"
    );
    assert_eq!(
        s.api("rtm.connect", Some("xoxb-nope"), &[]).await.1["error"],
        "invalid_auth"
    );
}

#[tokio::test]
async fn hello_comes_first_then_published_events_unwrapped_and_pings_get_pongs() {
    let s = Server::start();
    let bot = rtm_app(&s).await;
    // Published between rtm.connect and opening the URL: sent right after hello.
    let url = rtm_url(&s, &bot).await;
    s.say("before opening").await;
    let mut ws = open(&url).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "hello"}));
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "message", "{first}");
    assert_eq!(first["text"], "before opening");
    assert!(
        first.get("event_id").is_none() && first.get("event").is_none(),
        "unwrapped: {first}"
    );

    s.say("hello rtm").await;
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "message");
    assert_eq!(ev["channel"], "C01");
    assert_eq!(ev["user"], "U01");
    assert_eq!(ev["text"], "hello rtm");

    ws.send(Message::Text(
        json!({"type": "ping", "id": 42, "time": 1403299273342u64})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "pong", "reply_to": 42, "time": 1403299273342u64})
    );
    ws.send(Message::Text("not json".into())).await.unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], 6);

    // RTM is at-most-once beside the Events API: it never marks a delivery delivered.
    let id = s.say("still pending for the Events API").await;
    assert_eq!(
        next_json(&mut ws).await["text"],
        "still pending for the Events API"
    );
    let (_, e) = s.admin("GET", &format!("/events/{id}"), None).await;
    assert_ne!(e["deliveries"][0]["status"], "delivered", "{e}");
}

#[tokio::test]
async fn another_workspaces_events_do_not_reach_the_connection() {
    let s = Server::start();
    let bot = rtm_app(&s).await;
    let mut ws = connect(&s, &bot).await;
    // Same app, another team: its install's events are not this token's.
    let (st, _) = s
        .admin(
            "POST",
            "/teams",
            Some(json!({"id": "T02", "name": "Other", "domain": "other"})),
        )
        .await;
    assert_eq!(st, 201);
    s.admin(
        "POST",
        "/teams/T02/users",
        Some(json!({"id": "U02", "name": "bob"})),
    )
    .await;
    let (_, inst) = s
        .admin(
            "POST",
            "/apps/A0RTM/installations",
            Some(json!({"team_id": "T02", "installer_user_id": "U02", "bot_scopes": ["channels:history"]})),
        )
        .await;
    s.admin(
        "PUT",
        "/teams/T02/conversations/C02",
        Some(json!({"name": "general", "kind": "public", "members": ["U02", inst["bot_user_id"]]})),
    )
    .await;
    let (st, r) = s
        .admin("POST", "/events", Some(json!({"team_id": "T02", "event": {"type": "message", "channel": "C02", "user": "U02", "text": "elsewhere"}})))
        .await;
    assert_eq!(st, 202, "{r}");
    s.say("here").await;
    assert_eq!(
        next_json(&mut ws).await["text"],
        "here",
        "T02's event is not sent"
    );
}

#[tokio::test]
async fn a_url_is_single_use_and_expires() {
    let s = Server::start_with(&[("TIDINGS_RTM_URL_TTL", "1s")]);
    let bot = rtm_app(&s).await;
    let url = rtm_url(&s, &bot).await;
    let mut first = open(&url).await;
    assert_eq!(next_json(&mut first).await["type"], "hello");
    let mut again = open(&url).await;
    let frames = until_closed(&mut again).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["error"]["code"], 3, "{frames:?}");

    let mut bogus = open(&format!(
        "{}/rtm/websocket?ticket=nope",
        s.url.replace("http://", "ws://")
    ))
    .await;
    assert_eq!(until_closed(&mut bogus).await[0]["error"]["code"], 3);

    let late = rtm_url(&s, &bot).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut ws = open(&late).await;
    let frames = until_closed(&mut ws).await;
    assert_eq!(
        frames,
        vec![json!({"type": "error", "error": {"code": 1, "msg": "Socket URL has expired"}})]
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_its_open_connection_gets_goodbye() {
    let s = Server::start();
    let bot = rtm_app(&s).await;
    let mut ws = connect(&s, &bot).await;
    let unused = rtm_url(&s, &bot).await;
    let (_, r) = s.api("auth.revoke", Some(&bot), &[]).await;
    assert_eq!(r["revoked"], true, "{r}");
    let frames = until_closed(&mut ws).await;
    assert_eq!(
        frames.last(),
        Some(&json!({"type": "goodbye"})),
        "{frames:?}"
    );
    assert_eq!(
        s.api("rtm.connect", Some(&bot), &[]).await.1["error"],
        "token_revoked"
    );
    // A URL issued before the revoke is refused when opened after it.
    let mut late = open(&unused).await;
    assert_eq!(until_closed(&mut late).await[0]["error"]["code"], 4);
}

#[tokio::test]
async fn connections_per_token_are_limited_and_a_closed_one_frees_its_place() {
    let s = Server::start_with(&[("TIDINGS_RTM_MAX_CONNECTIONS_PER_TOKEN", "2")]);
    let bot = rtm_app(&s).await;
    let mut a = connect(&s, &bot).await;
    let _b = connect(&s, &bot).await;
    let mut c = open(&rtm_url(&s, &bot).await).await;
    let frames = until_closed(&mut c).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["error"]["code"], 5, "{frames:?}");
    wait_metric(&s, "tidings_rtm_connections ", 2.0).await;
    a.close(None).await.unwrap();
    wait_metric(&s, "tidings_rtm_connections ", 1.0).await;
    let _d = connect(&s, &bot).await;
}

/// VmRSS of the process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let s = Server::start_with(&[("TIDINGS_RTM_WRITE_TIMEOUT", "1s")]);
    let bot = rtm_app(&s).await;
    let text = "x".repeat(500_000);
    // The same publishing once with no RTM client: what it costs the server by itself.
    let start = rss_kib(s.pid());
    for _ in 0..80 {
        s.say(&text).await;
    }
    let baseline_mib = rss_kib(s.pid()).saturating_sub(start) / 1024;
    let url = rtm_url(&s, &bot).await;
    // A small receive window, so the server's writes block after a few MB.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr = s.url.trim_start_matches("http://").parse().unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    // From here on the client reads nothing.
    let before = rss_kib(s.pid());
    for _ in 0..80 {
        s.say(&text).await;
    }
    wait_metric(&s, "tidings_rtm_closed_total{reason=\"slow_reader\"}", 1.0).await;
    wait_metric(&s, "tidings_rtm_connections ", 0.0).await;
    let grown_mib = rss_kib(s.pid()).saturating_sub(before) / 1024;
    // 40 MB were published for it; a server that queued them for the client would hold
    // them all. It holds at most one batch (10 events) read from the store, on top of what
    // the same publishing costs with no client (the store's buffers: 7 MiB on PostgreSQL,
    // where a bare 24 MiB bound failed once at 26).
    eprintln!("server RSS grew by {grown_mib} MiB (publishing alone: {baseline_mib} MiB)");
    assert!(
        grown_mib < baseline_mib + 24,
        "server RSS grew by {grown_mib} MiB (publishing alone: {baseline_mib} MiB)"
    );
    drop(ws);
    // The server is fine and serves the next client.
    let mut next = connect(&s, &bot).await;
    s.say("after the slow reader").await;
    assert_eq!(next_json(&mut next).await["text"], "after the slow reader");
}

#[tokio::test]
async fn sigterm_sends_goodbye_before_closing() {
    let mut s = Server::start();
    let bot = rtm_app(&s).await;
    let mut ws = connect(&s, &bot).await;
    s.signal(libc::SIGTERM);
    let frames = until_closed(&mut ws).await;
    assert_eq!(frames, vec![json!({"type": "goodbye"})]);
    let status = s.wait_exit(Duration::from_secs(20)).await.expect("exits");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_connection_says_goodbye_at_the_end_of_its_lifetime() {
    let s = Server::start_with(&[("TIDINGS_RTM_CONNECTION_LIFETIME", "1s")]);
    let bot = rtm_app(&s).await;
    let mut ws = connect(&s, &bot).await;
    let frames = until_closed(&mut ws).await;
    assert_eq!(frames, vec![json!({"type": "goodbye"})]);
}

#[tokio::test]
async fn an_expired_rotating_token_is_refused_and_its_open_connection_gets_goodbye() {
    let s = Server::start_with(&[("TIDINGS_OAUTH_ACCESS_TOKEN_TTL", "2s")]);
    s.acme().await;
    let (st, app) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"id": "A0RTM", "name": "rtm", "bot_events": ["message.channels"], "token_rotation_enabled": true})),
        )
        .await;
    assert_eq!(st, 201, "{app}");
    let (st, inst) = s
        .admin(
            "POST",
            "/apps/A0RTM/installations",
            Some(json!({"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["channels:history"]})),
        )
        .await;
    assert_eq!(st, 201, "{inst}");
    // The long-lived bot token exchanged for a rotating one that lasts 2 s.
    let (_, pair) = s
        .api(
            "oauth.v2.exchange",
            None,
            &[
                ("client_id", app["client_id"].as_str().unwrap()),
                ("client_secret", app["client_secret"].as_str().unwrap()),
                ("token", inst["bot_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(pair["ok"], true, "{pair}");
    let rotating = pair["access_token"].as_str().unwrap().to_string();
    let mut ws = connect(&s, &rotating).await;
    let frames = until_closed(&mut ws).await;
    assert_eq!(
        frames,
        vec![json!({"type": "goodbye"})],
        "goodbye once it expired"
    );
    assert_eq!(
        s.api("rtm.connect", Some(&rotating), &[]).await.1["error"],
        "token_expired"
    );
}

#[tokio::test]
async fn with_several_nodes_events_published_on_one_reach_connections_on_another() {
    if !Server::on_postgres() {
        eprintln!("skipped: nodes share a PostgreSQL store (set TIDINGS_TEST_DATABASE_URL)");
        return;
    }
    let a = Server::start();
    let bot = rtm_app(&a).await;
    let b = a.peer();
    // The URL is node A's; the connection is on A.
    let mut ws = connect(&a, &bot).await;
    // Published through node B: A hears of it by the work signal and reads it.
    let (st, r) = b
        .admin("POST", "/events", Some(json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "from node b"}})))
        .await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(next_json(&mut ws).await["text"], "from node b");
    // A URL issued by A is unknown to B.
    let url = rtm_url(&a, &bot).await;
    let on_b = url.replace(
        &a.url.replace("http://", "ws://"),
        &b.url.replace("http://", "ws://"),
    );
    let mut other = open(&on_b).await;
    assert_eq!(until_closed(&mut other).await[0]["error"]["code"], 3);
}
