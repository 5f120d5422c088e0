//! Several `tidings serve` nodes on one PostgreSQL: deliveries are shared out with leases,
//! a SIGKILLed node's deliveries are finished by the others, Socket Mode connections on
//! different nodes are counted together and each delivery goes to a node holding one, and
//! rate limits and the health rule count every node's deliveries.
//!
//! These run when `TIDINGS_TEST_DATABASE_URL` is set (the README's test command sets it,
//! and under `CI=true` requires PostgreSQL); on a SQLite-only run they say so and pass.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::SinkExt;
use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::ws::{connect, next_json, open_url, socket_app};
use support::{Server, ADMIN};
use tokio_tungstenite::tungstenite::Message;

fn postgres_only(test: &str) -> bool {
    if Server::on_postgres() {
        return true;
    }
    eprintln!("{test}: needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run on SQLite");
    false
}

/// Counts of each event id the receiver got (verification requests aside).
fn arrivals(r: &Receiver) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for h in r.events() {
        if let Some(id) = h.json()["event_id"].as_str() {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    counts
}

async fn publish_batch(url: &str, from: usize, n: usize) -> Option<Vec<String>> {
    let events: Vec<Value> = (from..from + n)
        .map(|i| json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("m{i}")}}))
        .collect();
    let res = Server::client()
        .post(format!("{url}/admin/v1/events/batch"))
        .bearer_auth(ADMIN)
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

const CLUSTER_ENV: &[(&str, &str)] = &[
    ("TIDINGS_DELIVERY_TIMEOUT", "1s"),
    ("TIDINGS_DATABASE_LEASE", "3s"),
    (
        "TIDINGS_DELIVERY_RETRY_SCHEDULE",
        r#"["0s","200ms","400ms"]"#,
    ),
];

#[tokio::test]
async fn every_event_arrives_when_one_of_three_nodes_is_killed_mid_load() {
    if !postgres_only("failover") {
        return;
    }
    const EVENTS: usize = 3000;
    const BATCH: usize = 100;
    let a = Server::start_with(CLUSTER_ENV);
    let b = a.peer();
    let mut c = a.peer();
    // A little latency per request keeps deliveries in flight when the kill lands.
    let r = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::ok().after(Duration::from_millis(3))
        }
    }))
    .await;
    a.app_in_channel(
        json!({"id": "A01", "name": "a", "bot_events": ["message.channels"], "request_url": r.url}),
    )
    .await;
    // Publish round-robin to the three nodes; node C's share stops when it dies. Nothing
    // is sent to C's address once it is dead: the port it frees may be taken at once by a
    // server another test starts (same admin token, same app and team ids), which would
    // accept the batch into its own store. The lock makes "C is dead" and "a request to C
    // is in flight" exclusive.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let c_dead = Arc::new(tokio::sync::RwLock::new(false));
    let urls = [a.url.clone(), b.url.clone(), c.url.clone()];
    let publisher = {
        let (acked, c_dead) = (acked.clone(), c_dead.clone());
        tokio::spawn(async move {
            for (k, from) in (0..EVENTS).step_by(BATCH).enumerate() {
                let to_c = k % 3 == 2;
                let guard = c_dead.read().await;
                if to_c && *guard {
                    continue;
                }
                let ids = publish_batch(&urls[k % 3], from, BATCH).await;
                drop(guard);
                if let Some(ids) = ids {
                    acked.lock().unwrap().extend(ids);
                }
            }
        })
    };
    r.wait_for(60, "deliveries flowing before the kill", |h| h.len() > 600)
        .await;
    {
        let mut dead = c_dead.write().await;
        *dead = true;
        c.kill();
    }
    publisher.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() >= EVENTS / 2,
        "most batches were acknowledged: {}",
        acked.len()
    );
    r.wait_for(
        90,
        "every acknowledged event, the dead node's leases included",
        |_| {
            let got = arrivals(&r);
            acked.iter().all(|e| got.contains_key(e))
        },
    )
    .await;
    let got = arrivals(&r);
    let dups: usize = got.values().map(|n| n - 1).sum();
    println!(
        "failover: 3 nodes, 1 SIGKILLed mid-load; {} events acknowledged, {} received, {} duplicate deliveries",
        acked.len(),
        got.len(),
        dups
    );
    a.wait_none_pending("A01").await;
}

#[tokio::test]
async fn in_normal_operation_each_delivery_is_attempted_by_one_node_once() {
    if !postgres_only("no duplicates") {
        return;
    }
    let a = Server::start_with(CLUSTER_ENV);
    let b = a.peer();
    let r = Receiver::start().await;
    a.app_in_channel(
        json!({"id": "A01", "name": "a", "bot_events": ["message.channels"], "request_url": r.url}),
    )
    .await;
    let mut ids = Vec::new();
    for k in 0..10 {
        let url = if k % 2 == 0 { &a.url } else { &b.url };
        ids.extend(publish_batch(url, k * 50, 50).await.expect("published"));
    }
    r.wait_for(30, "all 500 events", |_| arrivals(&r).len() >= 500)
        .await;
    // Both nodes dispatch; give any duplicate time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = arrivals(&r);
    assert!(ids.iter().all(|e| got.contains_key(e)));
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    b.wait_none_pending("A01").await;
}

#[tokio::test]
async fn socket_mode_connections_on_two_nodes_are_counted_together_and_get_events() {
    if !postgres_only("socket mode across nodes") {
        return;
    }
    let a = Server::start_with(&[("TIDINGS_SOCKET_MODE_MAX_CONNECTIONS_PER_APP", "2")]);
    let b = a.peer();
    let token = socket_app(&a).await;
    // One connection on node A; an event published on node B reaches it.
    let (mut ws_a, hello) = connect(&a, &token).await;
    assert_eq!(hello["num_connections"], 1);
    let event_id = b.say("over a socket on the other node").await;
    let env = next_json(&mut ws_a).await;
    assert_eq!(env["type"], "events_api", "{env}");
    assert_eq!(env["payload"]["event_id"], event_id.as_str());
    ws_a.send(Message::Text(
        json!({"envelope_id": env["envelope_id"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    b.wait_status(&event_id, "delivered").await;
    // A second connection, on node B: hello counts both nodes' connections.
    let (mut ws_b, hello) = connect(&b, &token).await;
    assert_eq!(hello["num_connections"], 2, "{hello}");
    // A third anywhere is over the app's limit of 2, counted across nodes.
    let url = open_url(&a, &token).await;
    let (mut ws_c, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket");
    let refused = next_json(&mut ws_c).await;
    assert_eq!(refused["type"], "disconnect", "{refused}");
    assert_eq!(refused["reason"], "too_many_websockets");
    // Node A's connection closes: events published on A now go out through node B.
    ws_a.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let event_id = a.say("now only node B holds a connection").await;
    let env = next_json(&mut ws_b).await;
    assert_eq!(env["payload"]["event_id"], event_id.as_str(), "{env}");
    ws_b.send(Message::Text(
        json!({"envelope_id": env["envelope_id"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    a.wait_status(&event_id, "delivered").await;
}

#[tokio::test]
async fn the_rate_limit_counts_every_nodes_deliveries() {
    if !postgres_only("rate limits across nodes") {
        return;
    }
    let env = [("TIDINGS_RATE_LIMIT_MAX_DELIVERIES", "10")];
    let a = Server::start_with(&env);
    let b = a.peer();
    let r = Receiver::start().await;
    a.app_in_channel(
        json!({"id": "A01", "name": "a", "bot_events": ["message.channels"], "request_url": r.url}),
    )
    .await;
    for i in 0..20 {
        let s = if i % 2 == 0 { &a } else { &b };
        s.say(&format!("m{i}")).await;
    }
    let (_, dropped) = a
        .admin("GET", "/apps/A01/deliveries?status=dropped&limit=100", None)
        .await;
    let dropped = dropped["items"].as_array().unwrap().len();
    assert_eq!(
        dropped, 10,
        "20 published across two nodes, 10 allowed per hour"
    );
    r.wait_for(10, "the 10 allowed events", |_| arrivals(&r).len() >= 10)
        .await;
}

#[tokio::test]
async fn the_health_rule_counts_attempts_made_by_other_nodes() {
    if !postgres_only("health across nodes") {
        return;
    }
    let env = [
        ("TIDINGS_HEALTH_MIN_EVENTS", "10"),
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", "[]"),
    ];
    let mut a = Server::start_with(&env);
    let r = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::status(500)
        }
    }))
    .await;
    a.app_in_channel(
        json!({"id": "A01", "name": "a", "bot_events": ["message.channels"], "request_url": r.url}),
    )
    .await;
    // Node A alone makes 6 failing attempts: fewer events than the rule needs.
    let mut first = Vec::new();
    for i in 0..6 {
        first.push(a.say(&format!("on A {i}")).await);
    }
    for id in &first {
        a.wait_status(id, "failed").await;
    }
    let (_, app) = a.admin("GET", "/apps/A01", None).await;
    assert_eq!(
        app["events_enabled"], true,
        "6 events are not enough: {app}"
    );
    // Node B takes over: its 4th failure is the 10th across the two nodes, and the rule
    // (counting every node's attempts) disables the app; B alone has seen only 4.
    let b = a.peer();
    a.kill();
    for i in 0..6 {
        b.say(&format!("on B {i}")).await;
    }
    let mut app = Value::Null;
    for _ in 0..600 {
        app = b.admin("GET", "/apps/A01", None).await.1;
        if app["events_enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app["events_enabled"], false,
        "12 failed events across nodes: {app}"
    );
    // The rule is checked as outcomes are written, and one write may carry several
    // failures: it trips at the 10th attempt or in the batch that holds it.
    let reason = app["disabled_reason"].as_str().unwrap_or("");
    let counted = (10..=12).find(|n| reason.contains(&format!("({n} of {n})")));
    assert!(counted.is_some(), "{app}");
}
