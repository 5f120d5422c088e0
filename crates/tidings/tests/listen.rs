//! `tidings listen` forwards Socket Mode events to a local app as signed POSTs and acks
//! them when the app answers 2xx; a refusal is not acked, so Tidings redelivers.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::receiver::{signature_ok, Hit, Receiver, Reply};
use support::{bin, Server, ADMIN};

#[tokio::test]
async fn listen_forwards_events_to_a_local_app_and_acks_on_2xx() {
    let s = Server::start_with(&[
        ("TIDINGS_SOCKET_MODE_ACK_TIMEOUT", "500ms"),
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["0s","0s","0s"]"#),
    ]);
    let app = s.app_in_channel(json!({"id": "A01", "name": "a", "socket_mode": true, "bot_events": ["message.channels"]})).await;
    // The local app refuses the first attempt of each event.
    let local = Receiver::with(Arc::new(|_: &Hit, seen| {
        if seen == 0 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let mut child = Command::new(bin())
        .args(["listen", "--app", "A01", "--forward-to", &local.url])
        .env("TIDINGS_URL", &s.url)
        .env("TIDINGS_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the connection to be up: the app then has an app token and a socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let event_id = s.say("to my laptop").await;
    local
        .wait_for(20, "the event twice at the local app", |h| h.len() >= 2)
        .await;
    let delivered = s.wait_status(&event_id, "delivered").await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        delivered["attempts"].as_array().unwrap().len(),
        2,
        "acked once the local app said 200"
    );
    let hits = local.hits();
    assert!(
        hits.iter()
            .all(|h| signature_ok(h, app["signing_secret"].as_str().unwrap())),
        "forwarded POSTs are signed"
    );
    assert_eq!(hits[0].json()["event_id"], event_id.as_str());
    assert_eq!(hits[1].header("x-slack-retry-num"), Some("1"));
}
