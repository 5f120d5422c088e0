//! At-least-once through crashes: the real process is SIGKILLed while thousands of events
//! are being published and delivered; after a restart every acknowledged event arrives at
//! the receiver. Duplicates are reported, not forbidden (at-least-once).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::{Server, ADMIN};

const EVENTS: usize = 3000;
const BATCH: usize = 200;

#[tokio::test]
async fn every_acknowledged_event_arrives_after_a_sigkill_mid_load() {
    let s = Server::start_with(&[(
        "TIDINGS_DELIVERY_RETRY_SCHEDULE",
        r#"["0s","200ms","400ms"]"#,
    )]);
    // A little latency per request keeps deliveries in flight when the kill lands.
    let r = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::ok().after(Duration::from_millis(2))
        }
    }))
    .await;
    s.app_in_channel(
        json!({"id": "A01", "name": "a", "bot_events": ["message.channels"], "request_url": r.url}),
    )
    .await;
    // Publish in batches from another task; remember every event a 200 acknowledged.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let publisher = {
        let (url, acked) = (s.url.clone(), acked.clone());
        tokio::spawn(async move {
            let c = Server::client();
            for b in 0..EVENTS / BATCH {
                let events: Vec<Value> = (0..BATCH)
                    .map(|i| json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("{b}-{i}")}}))
                    .collect();
                let res = c
                    .post(format!("{url}/admin/v1/events/batch"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"events": events}))
                    .send()
                    .await;
                let Ok(res) = res else { return };
                let Ok(body) = res.json::<Value>().await else {
                    return;
                };
                let mut a = acked.lock().unwrap();
                for r in body["results"].as_array().unwrap() {
                    a.push(
                        r["event_id"]
                            .as_str()
                            .expect("every event accepted")
                            .to_string(),
                    );
                }
            }
        })
    };
    r.wait_for(60, "some deliveries before the kill", |h| h.len() > 400)
        .await;
    let s = s.restart();
    let _ = publisher.await;
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() >= BATCH,
        "the kill came after some batches were acknowledged"
    );

    r.wait_for(120, "every acknowledged event after the restart", |hits| {
        let ids: HashSet<String> = hits
            .iter()
            .filter_map(|h| h.json()["event_id"].as_str().map(str::to_string))
            .collect();
        acked.iter().all(|e| ids.contains(e))
    })
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for h in r.events() {
        if let Some(id) = h.json()["event_id"].as_str() {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    let dups: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "durability: {} events acknowledged before/around the SIGKILL, {} received, {} duplicate deliveries",
        acked.len(),
        counts.len(),
        dups
    );
    s.wait_none_pending("A01").await;
}
