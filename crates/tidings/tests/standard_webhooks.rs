//! Standard Webhooks signing against real receivers on 127.0.0.1: which headers each
//! scheme sends, the end of a rotation's grace period, and bad input. (The official
//! `standardwebhooks` packages verify deliveries in compat/python and compat/node.)

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use support::receiver::{signature_ok, Hit, Receiver, Reply};
use support::Server;
use tidings_core::signing::standard;

/// Whether some `v1` signature of the hit verifies with `secret`.
fn v1_ok(h: &Hit, secret: &str) -> bool {
    let (Some(id), Some(ts), Some(sig)) = (
        h.header("webhook-id"),
        h.header("webhook-timestamp"),
        h.header("webhook-signature"),
    ) else {
        return false;
    };
    let ts: i64 = ts.parse().unwrap_or(0);
    let want = standard::v1(secret, id, ts, &h.body).unwrap();
    sig.split(' ').any(|s| s == want)
}

fn v1_count(h: &Hit) -> usize {
    h.header("webhook-signature")
        .unwrap_or("")
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .count()
}

async fn standard_app(s: &Server, url: &str) -> Value {
    s.app_in_channel(
        json!({"id": "A01", "name": "std", "bot_events": ["message.channels"],
        "signing_scheme": "standard_webhooks", "request_url": url}),
    )
    .await
}

#[tokio::test]
async fn a_standard_webhooks_app_gets_webhook_headers_and_no_slack_signature() {
    let s = Server::start();
    let r = Receiver::start().await;
    let app = standard_app(&s, &r.url).await;
    assert_eq!(app["signing_scheme"], "standard_webhooks");
    let secret = app["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{app}");
    assert!(app["webhook_public_key"]
        .as_str()
        .unwrap()
        .starts_with("whpk_"));
    assert!(
        app.get("webhook_signing_key").is_none(),
        "the private key is never shown"
    );

    let event_id = s.say("hello").await;
    let d = s.wait_status(&event_id, "delivered").await;
    let hits = r.events();
    let h = hits.last().unwrap();
    assert!(v1_ok(h, &secret));
    assert_eq!(h.header("webhook-id"), d["id"].as_str());
    assert!(h.header("x-slack-signature").is_none());
    let sig = h.header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').filter(|s| s.starts_with("v1a,")).count(), 1);
    // The verification request was signed the same way.
    assert!(r
        .hits()
        .iter()
        .any(|h| h.is_verification() && v1_ok(h, &secret)));
}

#[tokio::test]
async fn a_slack_v0_app_keeps_slacks_signature_and_gets_no_webhook_headers() {
    let s = Server::start();
    let r = Receiver::start().await;
    let app = s
        .app_in_channel(json!({"id": "A01", "name": "v0", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    assert_eq!(app["signing_scheme"], "slack_v0");
    let event_id = s.say("hello").await;
    s.wait_status(&event_id, "delivered").await;
    let h = r.events().pop().unwrap();
    assert!(signature_ok(&h, app["signing_secret"].as_str().unwrap()));
    assert!(h.header("webhook-signature").is_none() && h.header("webhook-id").is_none());
}

#[tokio::test]
async fn once_the_grace_period_is_over_only_the_new_secret_signs() {
    // A zero grace: the previous secret stops signing as soon as the rotation's second ends.
    let s = Server::start_with(&[("TIDINGS_DELIVERY_WEBHOOK_SECRET_GRACE", "0s")]);
    let r = Receiver::start().await;
    let app = standard_app(&s, &r.url).await;
    let old = app["webhook_secret"].as_str().unwrap().to_string();
    let (st, rotated) = s
        .admin("POST", "/apps/A01/webhook_secret/rotate", None)
        .await;
    assert_eq!(st, 200, "{rotated}");
    let new = rotated["webhook_secret"].as_str().unwrap().to_string();
    let until = rotated["webhook_previous_until"].as_i64().unwrap();
    // Wait (by the clock the server signs with) until the grace period has surely passed.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        <= until
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let event_id = s.say("after").await;
    s.wait_status(&event_id, "delivered").await;
    let h = r.events().pop().unwrap();
    assert!(v1_ok(&h, &new));
    assert!(!v1_ok(&h, &old));
    assert_eq!(v1_count(&h), 1);
}

#[tokio::test]
async fn during_the_grace_period_old_and_new_secrets_both_sign() {
    let s = Server::start();
    let r = Receiver::start().await;
    let app = standard_app(&s, &r.url).await;
    let old = app["webhook_secret"].as_str().unwrap().to_string();
    let (_, rotated) = s
        .admin("POST", "/apps/A01/webhook_secret/rotate", None)
        .await;
    let new = rotated["webhook_secret"].as_str().unwrap().to_string();
    assert_ne!(rotated["webhook_public_key"], app["webhook_public_key"]);
    let event_id = s.say("during").await;
    s.wait_status(&event_id, "delivered").await;
    let h = r.events().pop().unwrap();
    assert!(v1_ok(&h, &old) && v1_ok(&h, &new));
    let sig = h.header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').filter(|s| s.starts_with("v1a,")).count(), 2);
}

#[tokio::test]
async fn an_unknown_signing_scheme_is_refused_and_a_receiver_that_refuses_fails_verification() {
    let s = Server::start();
    s.acme().await;
    let (st, p) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"name": "x", "signing_scheme": "v2"})),
        )
        .await;
    assert_eq!(st, 400, "{p}");
    assert_eq!(p["errors"][0]["field"], "signing_scheme", "{p}");
    // A receiver that checks Standard Webhooks signatures with a secret it made up.
    let wrong = standard::new_secret();
    // (It answers 200 "bad signature" instead of the challenge: the support receiver
    // echoes the challenge itself on a non-200.)
    let r = Receiver::with(Arc::new(move |h: &Hit, _| Reply {
        status: 200,
        body: if v1_ok(h, &wrong) {
            h.json()["challenge"].as_str().unwrap_or("").to_string()
        } else {
            "bad signature".into()
        },
        ..Default::default()
    }))
    .await;
    let (st, p) = s
        .admin(
            "POST",
            "/apps",
            Some(json!({"name": "y", "signing_scheme": "standard_webhooks", "request_url": r.url})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("bad signature"),
        "{p}"
    );
}
