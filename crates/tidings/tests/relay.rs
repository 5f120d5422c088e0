//! `tidings relay` against the real binary: events published through the relay arrive
//! exactly once (by `event_id`) with their original `event_time` while the Tidings process
//! is SIGKILLed and restarted (also with many batches in flight at once); a node's 4xx is kept aside; a full spool and a wrong token
//! are refused with clear problems.
//!
//! On PostgreSQL, a further test also cuts and restores the database connection.
//!
//! `TIDINGS_RELAY_TEST_EVENTS` sets how many events (default 10,000: the 50,000
//! takes minutes on a busy machine; the logic does not change with the count).

mod support;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::Receiver;
use support::{bin, Server};

struct Relay {
    child: Child,
    url: String,
    spool: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn relay(upstreams: &str, token: &str, extra: &[&str]) -> Relay {
    let spool = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args([
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstreams,
            "--spool",
        ])
        .arg(spool.path())
        .args(extra)
        .env("TIDINGS_PUBLISHER_TOKEN", token)
        .env("TIDINGS_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the relay");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the relay printed nothing").unwrap();
        if let Some(rest) = line.strip_prefix("tidings relay listening on ") {
            break rest.split(' ').next().unwrap().to_string();
        }
    };
    Relay { child, url, spool }
}

async fn post(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let res = Server::client()
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let st = res.status().as_u16();
    (st, res.json().await.unwrap_or(Value::Null))
}

async fn metric(r: &Relay, name: &str) -> u64 {
    let text = Server::client()
        .get(format!("{}/metrics", r.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn publisher_token(s: &Server) -> String {
    let (st, t) = s
        .admin("POST", "/publisher_tokens", Some(json!({"label": "relay"})))
        .await;
    assert_eq!(st, 201, "{t}");
    t["token"].as_str().unwrap().to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Unique markers seen by the receiver: marker → (event ids, event_time).
fn seen(r: &Receiver) -> HashMap<u64, (HashSet<String>, i64)> {
    let mut m: HashMap<u64, (HashSet<String>, i64)> = HashMap::new();
    for h in r.events() {
        let v = h.json();
        let Some(n) = v["event"]["text"]
            .as_str()
            .and_then(|t| t.strip_prefix('n'))
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        let e = m.entry(n).or_default();
        e.0.insert(v["event_id"].as_str().unwrap().to_string());
        e.1 = v["event_time"].as_i64().unwrap();
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_through_the_relay_arrives_once_across_sigkills() {
    let total: u64 = std::env::var("TIDINGS_RELAY_TEST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    arrives_once_across_sigkills(total, &["--batch-size", "500"]).await;
}

/// With many small batches in flight at once (a window of 8), answered in any order and
/// cut off mid-way by each SIGKILL: still every event exactly once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_batches_in_flight_a_killed_upstream_loses_and_doubles_nothing() {
    let rl = arrives_once_across_sigkills(
        6_000,
        &[
            "--batch-size",
            "50",
            "--max-in-flight",
            "8",
            "--linger-ms",
            "1",
        ],
    )
    .await;
    let peak = metric(&rl, "tidings_relay_batches_in_flight_peak").await;
    assert!(peak > 1, "the window was never used: peak {peak}");
    assert_eq!(metric(&rl, "tidings_relay_spool_events").await, 0);
}

/// Publishes `total` events through a relay (started with `extra`) while Tidings is
/// SIGKILLed and restarted three times; checks each arrives as exactly one event with its
/// original `event_time`. Returns the relay, for its metrics.
async fn arrives_once_across_sigkills(total: u64, extra: &[&str]) -> Relay {
    // Slack's 30,000 deliveries an hour per app and team would drop the rest.
    let mut s = Server::start_with(&[("TIDINGS_RATE_LIMIT_MAX_DELIVERIES", "4000000000")]);
    let r = Receiver::start().await;
    s.app_in_channel(json!({"id": "A01", "name": "Relay", "request_url": r.url, "bot_events": ["message.channels"]}))
        .await;
    let token = publisher_token(&s).await;
    let rl = relay(&s.url, &token, extra);

    let (st, p) = post(
        &format!("{}/admin/v1/events", rl.url),
        "tdk_pub_wrong",
        &json!({}),
    )
    .await;
    assert_eq!(
        (st, p["type"].as_str()),
        (401, Some("urn:tidings:problem:unauthorized"))
    );

    let t0 = now();
    let time_of = move |i: u64| t0 - (i % 7200) as i64;
    let url = format!("{}/admin/v1/events/batch", rl.url);
    let tok = token.clone();
    let publishing = tokio::spawn(async move {
        for start in (0..total).step_by(250) {
            let events: Vec<Value> = (start..(start + 250).min(total))
                .map(|i| json!({"team_id": "T01", "event_time": time_of(i),
                                "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("n{i}")}}))
                .collect();
            let (st, body) = post(&url, &tok, &json!({"events": events})).await;
            assert_eq!(st, 202, "{body}");
        }
    });
    // SIGKILL and restart Tidings three times while events flow.
    for k in 1..=3u64 {
        while metric(&rl, "tidings_relay_events_spooled_total").await < total * k / 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s = tokio::task::block_in_place(|| s.restart_on_same_port());
    }
    publishing.await.unwrap();
    let mut last = 0;
    for _ in 0..3000 {
        last = r.events().len() as u64;
        if last >= total && seen(&r).len() as u64 == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = seen(&r);
    assert_eq!(
        m.len() as u64,
        total,
        "only {last} of {total} events arrived"
    );
    for (n, (ids, time)) in &m {
        assert_eq!(
            ids.len(),
            1,
            "marker {n} arrived as several events: {ids:?}"
        );
        assert_eq!(*time, time_of(*n), "marker {n} lost its event_time");
    }
    assert_eq!(
        metric(&rl, "tidings_relay_events_dead_lettered_total").await,
        0
    );
    assert!(metric(&rl, "tidings_relay_events_acknowledged_total").await >= total);
    eprintln!(
        "relay: {total} events, {} retries, {} duplicates, {} hits at the app",
        metric(&rl, "tidings_relay_retries_total").await,
        metric(&rl, "tidings_relay_events_duplicate_total").await,
        r.events().len()
    );
    drop(s);
    rl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_kept_aside_and_a_too_old_one_dropped() {
    let s = Server::start();
    s.acme().await;
    let token = publisher_token(&s).await;
    let rl = relay(&s.url, &token, &["--linger-ms", "10"]);
    let url = format!("{}/admin/v1/events", rl.url);
    let (st, p) = post(&url, &token, &json!({"team_id": "T0NOPE", "event": {"type": "message", "channel": "C01", "user": "U01"}})).await;
    assert_eq!(st, 202, "{p}");
    let old = json!({"team_id": "T01", "event_time": now() - 73 * 3600, "event": {"type": "message", "channel": "C01", "user": "U01", "text": "old"}});
    assert_eq!(post(&url, &token, &old).await.0, 202);
    let (st, p) = post(&url, &token, &json!({"team_id": "T01"})).await;
    assert_eq!(
        (st, p["type"].as_str()),
        (400, Some("urn:tidings:problem:invalid_field")),
        "{p}"
    );
    while metric(&rl, "tidings_relay_events_dead_lettered_total").await < 1
        || metric(&rl, "tidings_relay_events_too_old_total").await < 1
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = std::fs::read_to_string(rl.spool.path().join("dead-letter.ndjson")).unwrap();
    let line: Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(line["code"], "unknown_team", "{line}");
    assert_eq!(line["status"], 422);
    assert_eq!(line["body"]["team_id"], "T0NOPE");
    assert_eq!(metric(&rl, "tidings_relay_spool_events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_node_answering_the_relay_retries_and_a_full_spool_refuses() {
    // Nothing listens here: every send is "no answer" and is retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rl = relay(
        &format!("http://127.0.0.1:{port}"),
        "tdk_pub_x",
        &["--max-spool-bytes", "2000", "--linger-ms", "1"],
    );
    let url = format!("{}/admin/v1/events", rl.url);
    let ev = json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "waiting"}});
    let mut accepted = 0;
    let refusal = loop {
        let (st, p) = post(&url, "tdk_pub_x", &ev).await;
        if st != 202 {
            break (st, p);
        }
        accepted += 1;
        assert!(accepted < 100, "the spool never filled");
    };
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert_eq!(refusal.1["type"], "urn:tidings:problem:spool_full");
    assert!(metric(&rl, "tidings_relay_spool_full_total").await >= 1);
    assert_eq!(metric(&rl, "tidings_relay_spool_events").await, accepted);
    while metric(&rl, "tidings_relay_retries_total").await < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP link to PostgreSQL that can be cut (every connection dropped, new ones refused)
/// and restored (as in `pg_outage.rs`).
struct PgLink {
    addr: std::net::SocketAddr,
    target: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl PgLink {
    async fn start(target: &str) -> PgLink {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = PgLink {
            addr: l.local_addr().unwrap(),
            target: target.to_string(),
            tasks: Default::default(),
        };
        link.serve(l);
        link
    }

    fn serve(&self, l: tokio::net::TcpListener) {
        let (tasks, target) = (self.tasks.clone(), self.target.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = l.accept().await {
                let target = target.clone();
                let t = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                tasks.lock().unwrap().push(t);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    async fn restore(&self) {
        let l = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(l);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_arrives_once_across_postgres_cuts_and_sigkills() {
    let Some(base) = support::pg::url() else {
        eprintln!("relay and PostgreSQL cuts: needs TIDINGS_TEST_DATABASE_URL; not run on SQLite");
        return;
    };
    let total: u64 = std::env::var("TIDINGS_RELAY_TEST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let schema = support::pg::Schema::create(&base);
    let rest = base
        .split("://")
        .nth(1)
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap();
    let hp = rest.split('/').next().unwrap();
    let target = if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:5432")
    };
    let link = PgLink::start(&target).await;
    let via_link = schema.url().replacen(&target, &link.addr.to_string(), 1);
    let mut s = Server::start_with(&[
        ("TIDINGS_SERVER_DATABASE_URL", via_link.as_str()),
        ("TIDINGS_RATE_LIMIT_MAX_DELIVERIES", "4000000000"),
    ]);
    let r = Receiver::start().await;
    s.app_in_channel(json!({"id": "A01", "name": "Relay", "request_url": r.url, "bot_events": ["message.channels"]}))
        .await;
    let token = publisher_token(&s).await;
    let rl = relay(&s.url, &token, &["--batch-size", "500"]);
    let t0 = now();
    let time_of = move |i: u64| t0 - (i % 7200) as i64;
    let url = format!("{}/admin/v1/events/batch", rl.url);
    let tok = token.clone();
    let publishing = tokio::spawn(async move {
        for start in (0..total).step_by(250) {
            let events: Vec<Value> = (start..(start + 250).min(total))
                .map(|i| json!({"team_id": "T01", "event_time": time_of(i),
                                "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("n{i}")}}))
                .collect();
            let (st, body) = post(&url, &tok, &json!({"events": events})).await;
            assert_eq!(st, 202, "{body}");
        }
    });
    // Cut PostgreSQL (the node answers 503, the relay resends), restore it; SIGKILL and
    // restart the node; cut and restore again.
    for k in 1..=3u64 {
        while metric(&rl, "tidings_relay_events_spooled_total").await < total * k / 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if k == 2 {
            s = tokio::task::block_in_place(|| s.restart_on_same_port());
            continue;
        }
        let retries = metric(&rl, "tidings_relay_retries_total").await;
        link.cut();
        while metric(&rl, "tidings_relay_retries_total").await < retries + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        link.restore().await;
    }
    publishing.await.unwrap();
    let mut last = 0;
    for _ in 0..3000 {
        last = r.events().len() as u64;
        if last >= total && seen(&r).len() as u64 == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = seen(&r);
    assert_eq!(
        m.len() as u64,
        total,
        "only {} of {total} events arrived ({last} hits)",
        m.len()
    );
    for (n, (ids, time)) in &m {
        assert_eq!(
            ids.len(),
            1,
            "marker {n} arrived as several events: {ids:?}"
        );
        assert_eq!(*time, time_of(*n), "marker {n} lost its event_time");
    }
    assert_eq!(
        metric(&rl, "tidings_relay_events_dead_lettered_total").await,
        0
    );
    eprintln!(
        "relay with PostgreSQL cuts: {total} events, {} retries, {} duplicates, {} hits at the app",
        metric(&rl, "tidings_relay_retries_total").await,
        metric(&rl, "tidings_relay_events_duplicate_total").await,
        r.events().len()
    );
    drop(s);
    drop(schema);
}

#[test]
fn a_corrupt_or_unusable_spool_or_no_token_stops_the_relay_with_one_line() {
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(corrupt.path().join("spool.log"), b"not a spool").unwrap();
    let file = corrupt.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let cases: Vec<(Vec<std::ffi::OsString>, Option<&str>, &str)> = vec![
        (
            vec![corrupt.path().into()],
            Some("tdk_pub_x"),
            "is corrupt: it does not start with the spool header",
        ),
        (
            vec![file.join("spool").into()],
            Some("tdk_pub_x"),
            "plain-file",
        ),
        (
            vec![corrupt.path().into()],
            None,
            "no upstream token: set TIDINGS_PUBLISHER_TOKEN",
        ),
    ];
    for (spool, token, want) in cases {
        let mut cmd = Command::new(bin());
        cmd.args([
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--spool",
        ])
        .args(&spool)
        .env_remove("TIDINGS_PUBLISHER_TOKEN");
        if let Some(t) = token {
            cmd.env("TIDINGS_PUBLISHER_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{want}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
    }
    assert_eq!(
        std::fs::read(corrupt.path().join("spool.log")).unwrap(),
        b"not a spool",
        "a corrupt spool is left as it was"
    );
}
