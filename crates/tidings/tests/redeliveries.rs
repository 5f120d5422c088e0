//! Bulk replay (`POST /apps/{app}/redeliveries`, `GET /redeliveries/{id}`): the job's
//! shape and validation, and a job over thousands of failed deliveries that survives a
//! SIGKILL half way, finishes after the restart and re-queues each delivery once.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::{Hit, Receiver, Reply};
use support::{Server, ADMIN};

/// Waits until A01 has no pending delivery (bounded by what `n` deliveries may take).
async fn wait_none_pending(s: &Server) {
    for _ in 0..30_000 {
        let (_, p) = s
            .admin("GET", "/apps/A01/deliveries?status=pending&limit=1", None)
            .await;
        if p["items"].as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deliveries left pending");
}

async fn job(s: &Server, id: &str) -> Value {
    let (st, j) = s.admin("GET", &format!("/redeliveries/{id}"), None).await;
    assert_eq!(st, 200, "{j}");
    j
}

#[tokio::test]
async fn a_job_has_its_shape_and_bad_requests_and_unknown_ids_are_problems() {
    let s = Server::start();
    let r = Receiver::start().await;
    s.app_in_channel(json!({"id": "A01", "name": "app", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    let (st, j) = s
        .admin("POST", "/apps/A01/redeliveries", Some(json!({})))
        .await;
    assert_eq!(st, 202, "{j}");
    assert!(j["id"].as_str().unwrap().starts_with("RD"), "{j}");
    assert_eq!(j["app_id"], "A01");
    assert_eq!(j["status"], json!(["failed"]));
    assert_eq!(j["total"], 0);
    assert_eq!(j["sent"], 0);
    // Nothing failed: done at once.
    assert_eq!(j["state"], "done");
    assert!(j["since"].is_null() && j["until"].is_null());
    assert!(j["created_at"].as_i64().unwrap() > 0);
    assert_eq!(job(&s, j["id"].as_str().unwrap()).await, j);

    let (st, k) = s
        .admin(
            "POST",
            "/apps/A01/redeliveries",
            Some(json!({"status": ["failed", "dropped"], "since": 10, "until": 20})),
        )
        .await;
    assert_eq!(st, 202, "{k}");
    assert_eq!(k["status"], json!(["failed", "dropped"]));
    assert_eq!(
        (k["since"].clone(), k["until"].clone()),
        (json!(10), json!(20))
    );

    let (st, list) = s.admin("GET", "/apps/A01/redeliveries", None).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = list["redeliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&j["id"].as_str().unwrap()) && ids.contains(&k["id"].as_str().unwrap()));

    for (body, field) in [
        (json!({"status": ["sent"]}), "status"),
        (json!({"status": ["pending"]}), "status"),
        (json!({"status": []}), "status"),
    ] {
        let (st, p) = s
            .admin("POST", "/apps/A01/redeliveries", Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body} {p}");
        assert_eq!(p["status"], 400);
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let (st, p) = s
        .admin(
            "POST",
            "/apps/A01/redeliveries",
            Some(json!({"since": 20, "until": 10})),
        )
        .await;
    assert_eq!(st, 422, "{p}");
    assert_eq!(p["type"], "urn:tidings:problem:invalid_range", "{p}");
    assert_eq!(p["errors"][0]["field"], "until", "{p}");
    let (st, p) = s
        .admin("POST", "/apps/A01/redeliveries", Some(json!([null, null])))
        .await;
    assert_eq!(st, 400, "an array is not a job: {p}");
    let (st, p) = s
        .admin(
            "POST",
            "/apps/A01/redeliveries",
            Some(json!({"status": "failed"})),
        )
        .await;
    assert_eq!(st, 400, "{p}");
    let (st, p) = s
        .admin("POST", "/apps/A0NOSUCHAPP/redeliveries", Some(json!({})))
        .await;
    assert_eq!(st, 404, "{p}");
    assert_eq!(p["status"], 404);
    let (st, p) = s.admin("GET", "/redeliveries/RD0000000000", None).await;
    assert_eq!(st, 404, "{p}");
    assert_eq!(p["status"], 404);
    let (st, p) = s.admin("GET", "/redeliveries/nope", None).await;
    assert_eq!(st, 400, "{p}");
}

const FAILING: u8 = 0;
const GONE: u8 = 1;
const UP: u8 = 2;

#[tokio::test]
async fn a_job_killed_half_way_resumes_after_restart_and_requeues_each_delivery_once() {
    // The 100,000 on SQLite (about 100 s on a quiet 2-core machine, debug build);
    // 5,000 on PostgreSQL, where 100,000 takes over 6 minutes: run it there by hand with
    // TIDINGS_TEST_REPLAY_N=100000 TIDINGS_TEST_REPLAY_RATE=20000.
    let var = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, rate) = if Server::on_postgres() {
        (5_000, 1_000)
    } else {
        (100_000, 20_000)
    };
    let n = var("TIDINGS_TEST_REPLAY_N", n);
    let rate = var("TIDINGS_TEST_REPLAY_RATE", rate).to_string();
    let s = Server::start_with(&[
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", "[]"),
        ("TIDINGS_DELIVERY_REDELIVERY_RATE", &rate),
        ("TIDINGS_RATE_LIMIT_MAX_DELIVERIES", "1000000"),
    ]);
    // The app's endpoint: failing (500), then answering 410 Gone (which holds the app's
    // deliveries pending until its URL is verified again, so nothing is in flight when the
    // server is killed), then up; it counts the events it accepted.
    let mode = Arc::new(AtomicU8::new(FAILING));
    let accepted: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let r = {
        let (mode, accepted) = (mode.clone(), accepted.clone());
        Receiver::with(Arc::new(move |h: &Hit, _| {
            match mode.load(Ordering::SeqCst) {
                FAILING => Reply::status(500),
                GONE => Reply::status(410),
                _ => {
                    if let Some(id) = h.json()["event_id"].as_str() {
                        *accepted.lock().unwrap().entry(id.to_string()).or_default() += 1;
                    }
                    Reply::ok()
                }
            }
        }))
        .await
    };
    s.app_in_channel(json!({"id": "A01", "name": "app", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    let published = s.say_many(n, "m").await;
    wait_none_pending(&s).await;
    mode.store(GONE, Ordering::SeqCst);
    // So many failures disable the app (the health rule; later ones are dropped).
    let (st, _) = s.admin("POST", "/apps/A01/events/enable", None).await;
    assert_eq!(st, 200);

    let (st, j) = s
        .admin(
            "POST",
            "/apps/A01/redeliveries",
            Some(json!({"status": ["failed", "dropped"]})),
        )
        .await;
    assert_eq!(st, 202, "{j}");
    assert_eq!(j["total"], n as u64, "{j}");
    assert_eq!(j["state"], "running");
    let id = j["id"].as_str().unwrap().to_string();
    let mut before_kill = 0;
    let started = std::time::Instant::now();
    for _ in 0..100_000 {
        let j = job(&s, &id).await;
        before_kill = j["sent"].as_u64().unwrap();
        if before_kill >= n as u64 / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        (n as u64 / 2..n as u64).contains(&before_kill),
        "killed at {before_kill} of {n}"
    );
    let s = s.restart();
    let after_restart = std::time::Instant::now();
    let after = job(&s, &id).await;
    assert_eq!(after["state"], "running", "{after}");
    assert!(after["sent"].as_u64().unwrap() >= before_kill, "{after}");
    let mut done = Value::Null;
    for _ in 0..100_000 {
        done = job(&s, &id).await;
        if done["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["sent"], n as u64, "{done}");
    eprintln!(
        "replayed {n}: {:?} to the kill at {before_kill}, {:?} from the restart to done",
        started.elapsed(),
        after_restart.elapsed()
    );

    // The receiver is back: verifying its URL again releases the re-queued deliveries.
    mode.store(UP, Ordering::SeqCst);
    let (st, v) = s.admin("POST", "/apps/A01/request_url/verify", None).await;
    assert_eq!(st, 200, "{v}");
    // Polled on the count, not `r.wait_for`: that copies every hit the receiver has logged
    // (200,000 and more at the 100,000) each time it looks.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while accepted.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {} of {n} replayed events arrived",
            accepted.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_none_pending(&s).await;
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), n);
    for id in &published {
        assert_eq!(accepted.get(id), Some(&1), "{id}");
    }
    assert_eq!(job(&s, &id).await["sent"], n as u64);
}

fn cli(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(support::bin())
        .args(args)
        .env("TIDINGS_URL", &s.url)
        .env("TIDINGS_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("running the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_starts_a_job_waits_for_it_and_shows_it() {
    let s = Server::start_with(&[("TIDINGS_DELIVERY_RETRY_SCHEDULE", "[]")]);
    let r = Receiver::with(Arc::new(|_: &Hit, _| Reply::status(500))).await;
    s.app_in_channel(json!({"id": "A01", "name": "app", "bot_events": ["message.channels"], "request_url": r.url}))
        .await;
    s.say_many(3, "m").await;
    s.wait_none_pending("A01").await;
    r.set_script(Arc::new(|_: &Hit, _| Reply::ok()));
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = cli(
            &s,
            &[
                "apps",
                "redeliver",
                "A01",
                "--status",
                "failed,dropped",
                "--wait",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        let job: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(
            (job["total"].clone(), job["sent"].clone()),
            (json!(3), json!(3))
        );
        let id = job["id"].as_str().unwrap();
        let (ok, out, err) = cli(&s, &["redeliveries", "show", id, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(shown, job);
        let (ok, _, err) = cli(
            &s,
            &["apps", "redeliver", "A01", "--since", "20", "--until", "10"],
        );
        assert!(!ok);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("until"), "{err}");
    })
    .await
    .unwrap();
}
