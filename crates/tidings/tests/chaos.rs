//! Chaos on one PostgreSQL: three `tidings serve` nodes with a short lease, a receiver on
//! 127.0.0.1 counting every (event, app) arrival and its retry headers, events published
//! round-robin to the nodes. Three scenarios, run one after the other (each on a schema of
//! its own):
//!
//! - **A, no kills**: every acknowledged event reaches every app exactly once: 0 lost,
//!   0 duplicates, 0 pending, and the insights count each delivery once.
//! - **B, kills**: a random node is SIGKILLed and restarted every few seconds while
//!   publishing: 0 lost; duplicates at most what the killed nodes had in flight
//!   (`max_in_flight_per_app` per app per kill), and every re-send carries
//!   `X-Slack-Retry-Num` / `X-Slack-Retry-Reason`.
//! - **C, PostgreSQL hangs for one node**: its connections go through a TCP relay the test
//!   runs, which stops passing bytes (connections stay open, nothing answers) for a few
//!   seconds: that node's publish calls answer 503 within about a second, nothing
//!   acknowledged is lost.
//!
//! The figures are printed (`cargo test -p tidings --test chaos -- --nocapture`). Bounded
//! to about a minute and a half; `TIDINGS_CHAOS_LONG=1` runs the long version (30,000
//! events, 20 kills). Runs when `TIDINGS_TEST_DATABASE_URL` is set; otherwise says so and
//! passes.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::{Server, ADMIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const APPS: [&str; 3] = ["A01", "A02", "A03"];
/// Per app and node: what a killed node can leave sent but unsaved.
const IN_FLIGHT: usize = 16;
const BATCH: usize = 20;

fn long_run() -> bool {
    std::env::var("TIDINGS_CHAOS_LONG").is_ok_and(|v| v == "1")
}

fn env(database_url: Option<&str>) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = [
        ("TIDINGS_DELIVERY_TIMEOUT", "1s"),
        ("TIDINGS_DATABASE_LEASE", "3s"),
        ("TIDINGS_DATABASE_MAX_CONNECTIONS", "6"),
        (
            "TIDINGS_DELIVERY_RETRY_SCHEDULE",
            r#"["0s","200ms","400ms"]"#,
        ),
        ("TIDINGS_DELIVERY_MAX_IN_FLIGHT_PER_APP", "16"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(u) = database_url {
        e.push(("TIDINGS_SERVER_DATABASE_URL".into(), u.into()));
    }
    e
}

fn env_refs(e: &[(String, String)]) -> Vec<(&str, &str)> {
    e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A receiver that answers 200 after a little work, so deliveries are in flight when a
/// kill lands.
async fn receiver() -> Receiver {
    Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::ok().after(Duration::from_millis(2))
        }
    }))
    .await
}

async fn apps(s: &Server, r: &Receiver) {
    for id in APPS {
        s.app_in_channel(
            json!({"id": id, "name": id, "bot_events": ["message.channels"], "request_url": r.url}),
        )
        .await;
    }
}

/// Publishes events `from..from+n` to `url` in one batch call: their ids when acknowledged.
async fn publish_batch(url: &str, from: usize, n: usize) -> Option<Vec<String>> {
    let events: Vec<Value> = (from..from + n)
        .map(|i| json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("m{i}")}}))
        .collect();
    let res = Server::client()
        .post(format!("{url}/admin/v1/events/batch"))
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(30))
        .json(&json!({"events": events}))
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let body: Value = res.json().await.ok()?;
    body["results"]
        .as_array()?
        .iter()
        .map(|r| r["event_id"].as_str().map(str::to_string))
        .collect()
}

/// What the receiver saw, against what was acknowledged.
struct Figures {
    accepted: usize,
    expected: usize,
    delivered: usize,
    lost: usize,
    duplicates: usize,
    resends_without_retry_header: usize,
    resends_with_take_over_reason: usize,
}

fn figures(r: &Receiver, accepted: &HashSet<String>) -> Figures {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let (mut duplicates, mut bare, mut take_over) = (0, 0, 0);
    for h in r.events() {
        let v = h.json();
        let (Some(e), Some(a)) = (v["event_id"].as_str(), v["api_app_id"].as_str()) else {
            continue;
        };
        let n = seen.entry((e.to_string(), a.to_string())).or_default();
        *n += 1;
        if *n > 1 {
            duplicates += 1;
            match h.header("x-slack-retry-num") {
                None => bare += 1,
                Some(_) if h.header("x-slack-retry-reason") == Some("unknown_error") => {
                    take_over += 1
                }
                Some(_) => {}
            }
        }
    }
    let expected = accepted.len() * APPS.len();
    let lost = accepted
        .iter()
        .flat_map(|e| APPS.iter().map(move |a| (e.clone(), a.to_string())))
        .filter(|k| !seen.contains_key(k))
        .count();
    Figures {
        accepted: accepted.len(),
        expected,
        delivered: seen.len(),
        lost,
        duplicates,
        resends_without_retry_header: bare,
        resends_with_take_over_reason: take_over,
    }
}

/// Deliveries pending for all apps (up to 1,000 each).
async fn pending(s: &Server) -> usize {
    let mut n = 0;
    for a in APPS {
        let (_, p) = s
            .admin(
                "GET",
                &format!("/apps/{a}/deliveries?status=pending&limit=1000"),
                None,
            )
            .await;
        n += p["items"].as_array().map_or(0, Vec::len);
    }
    n
}

/// Waits (up to `secs`) until every acknowledged (event, app) pair has arrived and nothing
/// is pending; returns the figures and what is pending.
async fn settle(
    s: &Server,
    r: &Receiver,
    accepted: &HashSet<String>,
    secs: u64,
) -> (Figures, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let f = figures(r, accepted);
        let p = pending(s).await;
        if (f.lost == 0 && p == 0) || Instant::now() > deadline {
            return (f, p);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print(name: &str, f: &Figures, pending: usize, extra: &str) {
    println!(
        "chaos {name}: accepted {} events, expected {} (event, app) pairs, delivered {}, lost {}, duplicates {} \
         (re-sends without X-Slack-Retry-Num {}, with retry reason unknown_error {}), pending {pending}{extra}",
        f.accepted, f.expected, f.delivered, f.lost, f.duplicates, f.resends_without_retry_header,
        f.resends_with_take_over_reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_nothing_and_send_once_per_step_under_kills_and_a_hung_database() {
    let Some(base) = support::pg::url() else {
        eprintln!("chaos: needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run on SQLite");
        return;
    };
    no_kills().await;
    kills().await;
    hung_database(&base).await;
}

/// Scenario A: no node dies, so no delivery goes out twice.
async fn no_kills() {
    let events = if long_run() { 6000 } else { 900 };
    let e = env(None);
    let a = Server::start_with(&env_refs(&e));
    let nodes = [a.peer(), a.peer()];
    let r = receiver().await;
    apps(&a, &r).await;
    let urls = [a.url.clone(), nodes[0].url.clone(), nodes[1].url.clone()];
    let mut accepted = HashSet::new();
    for (k, from) in (0..events).step_by(BATCH).enumerate() {
        if let Some(ids) = publish_batch(&urls[k % 3], from, BATCH).await {
            accepted.extend(ids);
        }
    }
    let (f, p) = settle(&a, &r, &accepted, 60).await;
    let (_, insights) = a.admin("GET", "/insights/deliveries", None).await;
    let counted = insights["totals"]["delivered"].as_u64().unwrap_or(0) as usize;
    print(
        "A (no kills)",
        &f,
        p,
        &format!(", insights delivered {counted}"),
    );
    assert_eq!(f.lost, 0, "nothing acknowledged is lost");
    assert_eq!(p, 0, "nothing is left pending");
    assert_eq!(f.duplicates, 0, "no node died: each delivery went out once");
    assert!(
        f.accepted >= events * 9 / 10,
        "nearly every batch was acknowledged: {}",
        f.accepted
    );
    assert_eq!(
        counted, f.expected,
        "insights count each delivery once: {insights}"
    );
}

/// Scenario B: a random node is SIGKILLed and restarted every few seconds.
async fn kills() {
    let (events, kills) = if long_run() { (30_000, 20) } else { (3000, 5) };
    let e = env(None);
    let first = Server::start_with(&env_refs(&e));
    let r = receiver().await;
    apps(&first, &r).await;
    let peers = [first.peer(), first.peer()];
    let urls: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![
        first.url.clone(),
        peers[0].url.clone(),
        peers[1].url.clone(),
    ]));
    let mut nodes: Vec<Option<Server>> = vec![Some(first)];
    nodes.extend(peers.into_iter().map(Some));
    let done = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let publisher = {
        let (urls, done, accepted) = (urls.clone(), done.clone(), accepted.clone());
        tokio::spawn(async move {
            for (k, from) in (0..events).step_by(BATCH).enumerate() {
                let url = urls.lock().unwrap()[k % 3].clone();
                if let Some(ids) = publish_batch(&url, from, BATCH).await {
                    accepted.lock().unwrap().extend(ids);
                }
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut killed = 0;
    let mut pick = std::process::id() as usize;
    while killed < kills {
        tokio::time::sleep(Duration::from_millis(if long_run() { 5000 } else { 3000 })).await;
        pick = pick.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let i = (pick >> 8) % 3;
        let node = nodes[i].take().expect("a node in every place");
        let restarted = tokio::task::spawn_blocking(move || node.restart())
            .await
            .unwrap();
        urls.lock().unwrap()[i] = restarted.url.clone();
        nodes[i] = Some(restarted);
        killed += 1;
        if done.load(Ordering::Relaxed) && killed >= kills {
            break;
        }
    }
    publisher.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    let any = nodes[0].as_ref().unwrap();
    let (f, p) = settle(any, &r, &accepted, 90).await;
    let bound = killed * APPS.len() * IN_FLIGHT;
    print(
        &format!("B ({killed} kills)"),
        &f,
        p,
        &format!(
            ", duplicate bound {bound} ({killed} kills x {} apps x {IN_FLIGHT} in flight)",
            APPS.len()
        ),
    );
    assert_eq!(f.lost, 0, "nothing acknowledged is lost");
    assert_eq!(p, 0, "nothing is left pending");
    assert!(
        f.duplicates <= bound,
        "re-sends stay within what was in flight"
    );
    assert_eq!(
        f.resends_without_retry_header, 0,
        "every re-send carries X-Slack-Retry-Num"
    );
    assert!(
        f.accepted >= events / 2,
        "most batches were acknowledged: {}",
        f.accepted
    );
}

/// A TCP relay that can stop passing bytes (connections stay open; nothing answers).
struct Relay {
    addr: std::net::SocketAddr,
    paused: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paused = Arc::new(AtomicBool::new(false));
        let p = paused.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (p, target) = (p.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pump(ri, wo, p.clone()));
                    tokio::spawn(pump(ro, wi, p));
                });
            }
        });
        Relay { addr, paused }
    }
}

/// Copies bytes one way, holding them while the relay is paused.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hp = rest.split(['/', '?']).next().unwrap_or(rest);
    if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:5432")
    }
}

/// Scenario C: node 3 reaches PostgreSQL through a relay that hangs for a few seconds.
async fn hung_database(base: &str) {
    let cut = Duration::from_secs(if long_run() { 10 } else { 4 });
    let e = env(None);
    let a = Server::start_with(&env_refs(&e));
    let b = a.peer();
    let schema = a.schema.clone().expect("a PostgreSQL schema");
    let target = host_port(base);
    let relay = Relay::start(target.clone()).await;
    let via_relay = schema.url().replacen(&target, &relay.addr.to_string(), 1);
    let mut ce = env(Some(&via_relay));
    // The default: what an operator gets.
    ce.push(("TIDINGS_DATABASE_STATEMENT_TIMEOUT".into(), "1s".into()));
    let mut c = Server::start_with(&env_refs(&ce));
    c.schema = Some(schema);
    let r = receiver().await;
    apps(&a, &r).await;
    let urls = [a.url.clone(), b.url.clone(), c.url.clone()];
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    // (started, latency, status) of the cut-off node's single publishes.
    let probes: Arc<Mutex<Vec<(Instant, Duration, u16)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(ids) = publish_batch(&urls[k % 2], k * BATCH, BATCH).await {
                    accepted.lock().unwrap().extend(ids);
                }
                k += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let prober = {
        let (accepted, probes, stop, url) = (
            accepted.clone(),
            probes.clone(),
            stop.clone(),
            c.url.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let res = Server::client()
                    .post(format!("{url}/admin/v1/events"))
                    .bearer_auth(ADMIN)
                    .timeout(Duration::from_secs(30))
                    .json(&json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("probe {i}")}}))
                    .send()
                    .await;
                let status = res.as_ref().map_or(0, |r| r.status().as_u16());
                if status == 202 {
                    if let Ok(body) = res.unwrap().json::<Value>().await {
                        if let Some(id) = body["event_id"].as_str() {
                            accepted.lock().unwrap().insert(id.to_string());
                        }
                    }
                }
                probes
                    .lock()
                    .unwrap()
                    .push((started, started.elapsed(), status));
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.paused.store(true, Ordering::Relaxed);
    let cut_at = Instant::now();
    let started = Instant::now();
    let readyz = Server::client()
        .get(format!("{}/readyz", c.url))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    let readyz_took = started.elapsed();
    tokio::time::sleep(cut.saturating_sub(readyz_took)).await;
    relay.paused.store(false, Ordering::Relaxed);
    let cut_end = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    prober.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    let (f, p) = settle(&a, &r, &accepted, 60).await;
    // Probes that started well inside the cut (the one under way when it began may
    // have been answered before).
    let during: Vec<(Duration, u16)> = probes
        .lock()
        .unwrap()
        .iter()
        // ... and were answered before it ended: one sent shortly before the relay resumes
        // is rightly stored and answered 202 once PostgreSQL answers again.
        .filter(|(s, l, _)| *s > cut_at + Duration::from_millis(300) && *s + *l < cut_end)
        .map(|(_, l, st)| (*l, *st))
        .collect();
    let worst = during.iter().map(|(l, _)| *l).max().unwrap_or_default();
    let ok_during = during.iter().filter(|(_, st)| *st == 202).count();
    print(
        &format!("C (PostgreSQL hung {} s for one node)", cut.as_secs()),
        &f,
        p,
        &format!(
            ", publishes to the cut-off node during the cut: {} (statuses {:?}), slowest {} ms; /readyz {readyz} in {} ms",
            during.len(),
            during.iter().map(|(_, s)| *s).collect::<HashSet<_>>(),
            worst.as_millis(),
            readyz_took.as_millis()
        ),
    );
    assert!(
        !during.is_empty(),
        "publishes reached the cut-off node during the cut"
    );
    assert_eq!(
        ok_during, 0,
        "no 2xx while the node cannot reach PostgreSQL"
    );
    assert!(
        worst <= Duration::from_millis(2500),
        "publish answers 503 fast: slowest {worst:?}"
    );
    assert_eq!(readyz, 503, "/readyz says the store is away");
    assert!(
        readyz_took <= Duration::from_millis(2500),
        "/readyz answers fast: {readyz_took:?}"
    );
    assert_eq!(f.lost, 0, "nothing acknowledged is lost");
    assert_eq!(p, 0, "nothing is left pending");
    drop(c);
}
