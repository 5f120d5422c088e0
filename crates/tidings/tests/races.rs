//! Concurrent changes to one app cannot undo each other (issue 20, part 3): a PATCH that
//! waits on a slow Request URL verification, many PATCHes of different fields at once,
//! and the health rule's disable racing an operator's enable, rotation and PATCH. Every
//! change ends at its last written value. Against the real binary, on SQLite or (with
//! `TIDINGS_TEST_DATABASE_URL`) PostgreSQL.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::receiver::{signature_ok, Hit, Receiver, Reply};
use support::Server;

/// A receiver that answers the `url_verification` challenge only after `delay`, and
/// 200 to everything else.
async fn slow_verifier(delay: Duration) -> Receiver {
    Receiver::with(Arc::new(move |h: &Hit, _| {
        if h.is_verification() {
            let ch = h.json()["challenge"].as_str().unwrap_or("").to_string();
            Reply {
                status: 200,
                body: json!({ "challenge": ch }).to_string(),
                delay,
                ..Default::default()
            }
        } else {
            Reply::ok()
        }
    }))
    .await
}

async fn app(s: &Server, id: &str) -> Value {
    let (st, a) = s.admin("GET", &format!("/apps/{id}"), None).await;
    assert_eq!(st, 200, "{a}");
    a
}

async fn rotate(s: &Server, id: &str) -> String {
    let (st, a) = s
        .admin("POST", &format!("/apps/{id}/signing_secret/rotate"), None)
        .await;
    assert_eq!(st, 200, "{a}");
    a["signing_secret"].as_str().expect("secret").to_string()
}

async fn patch(s: &Server, id: &str, body: Value) -> Value {
    let (st, a) = s
        .admin("PATCH", &format!("/apps/{id}"), Some(body.clone()))
        .await;
    assert_eq!(st, 200, "PATCH {body}: {a}");
    a
}

#[tokio::test]
async fn a_secret_rotated_while_a_new_request_url_is_verified_survives_and_signs_deliveries() {
    let s = Arc::new(Server::start());
    let fast = Receiver::start().await;
    s.app_in_channel(json!({"id": "A01", "name": "A01", "request_url": fast.url, "bot_events": ["message.channels"]}))
        .await;
    let slow = slow_verifier(Duration::from_millis(1500)).await;

    let url = slow.url.clone();
    let s2 = s.clone();
    let patching =
        tokio::spawn(async move { patch(&s2, "A01", json!({ "request_url": url })).await });
    slow.wait_for(5, "the verification request", |h| {
        h.iter().any(Hit::is_verification)
    })
    .await;
    let rotated = rotate(&s, "A01").await;
    let patched = patching.await.unwrap();
    assert_eq!(patched["request_url"], slow.url.as_str(), "{patched}");

    let a = app(&s, "A01").await;
    assert_eq!(a["request_url"], slow.url.as_str(), "{a}");
    assert_eq!(a["request_url_verified"], true, "{a}");
    assert_eq!(
        a["signing_secret"], rotated,
        "the rotated secret was reverted by the PATCH"
    );
    assert_eq!(patched["signing_secret"], rotated, "{patched}");

    s.say("after both").await;
    slow.wait_for(10, "the delivery", |h| {
        h.iter().any(|h| !h.is_verification())
    })
    .await;
    let delivered = slow.events();
    assert!(
        signature_ok(&delivered[0], &rotated),
        "the delivery is signed with the rotated secret"
    );
}

#[tokio::test]
async fn concurrent_patches_of_different_fields_each_end_at_their_last_value() {
    let s = Arc::new(Server::start());
    let fast = Receiver::start().await;
    s.app_in_channel(json!({"id": "A01", "name": "A01", "request_url": fast.url, "bot_events": ["message.channels"]}))
        .await;
    // One PATCH waits on a slow verification while the others come and go: it must write
    // only the URL, not the rest of the row as it read it.
    let slow = slow_verifier(Duration::from_millis(2000)).await;
    let url = slow.url.clone();
    let s2 = s.clone();
    let url_patch =
        tokio::spawn(async move { patch(&s2, "A01", json!({ "request_url": url })).await });
    slow.wait_for(5, "the verification request", |h| {
        h.iter().any(Hit::is_verification)
    })
    .await;

    const N: usize = 12;
    let names = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..N {
                patch(&s, "A01", json!({ "name": format!("name-{i}") })).await;
            }
        })
    };
    let events = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let list = if i % 2 == 0 {
                    json!(["message.channels", "reaction_added"])
                } else {
                    json!(["message.channels"])
                };
                patch(&s, "A01", json!({ "bot_events": list })).await;
            }
        })
    };
    let shapes = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let shape = if i % 2 == 0 {
                    "authorizations"
                } else {
                    "legacy"
                };
                patch(&s, "A01", json!({ "event_shape": shape })).await;
            }
        })
    };
    let sockets = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..N {
                patch(&s, "A01", json!({ "socket_mode": i % 2 == 0 })).await;
            }
        })
    };
    let secrets = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            for _ in 0..N {
                last = rotate(&s, "A01").await;
            }
            last
        })
    };
    names.await.unwrap();
    events.await.unwrap();
    shapes.await.unwrap();
    sockets.await.unwrap();
    let secret = secrets.await.unwrap();
    url_patch.await.unwrap();

    let a = app(&s, "A01").await;
    assert_eq!(a["name"], format!("name-{}", N - 1), "{a}");
    assert_eq!(a["bot_events"], json!(["message.channels"]), "{a}");
    assert_eq!(a["event_shape"], "legacy", "{a}");
    assert_eq!(a["socket_mode"], false, "{a}");
    assert_eq!(a["signing_secret"], secret, "{a}");
    assert_eq!(a["request_url"], slow.url.as_str(), "{a}");
    assert_eq!(a["request_url_verified"], true, "{a}");
}

/// Rounds of: failing deliveries make the health rule disable the app while an operator
/// rotates its secret and renames it without pause; then the operator re-enables it.
/// The disable must happen and keep every operator change; the enable must stay.
#[tokio::test]
async fn the_health_rule_and_an_operator_changing_the_app_lose_nothing_of_each_other() {
    let s = Arc::new(Server::start_with(&[
        ("TIDINGS_HEALTH_MIN_EVENTS", "3"),
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", "[]"),
    ]));
    let failing = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::status(500)
        }
    }))
    .await;
    s.app_in_channel(json!({"id": "A01", "name": "A01", "request_url": failing.url, "bot_events": ["message.channels"]}))
        .await;

    for round in 0..6 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let operator = {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut secret, mut name) = (String::new(), String::new());
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || i == 0 {
                    secret = rotate(&s, "A01").await;
                    name = format!("round-{round}-{i}");
                    patch(&s, "A01", json!({ "name": name })).await;
                    i += 1;
                }
                (secret, name)
            })
        };
        for i in 0..3 {
            s.say(&format!("r{round} m{i}")).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut disabled = false;
        while Instant::now() < deadline {
            if app(&s, "A01").await["events_enabled"] == false {
                disabled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (secret, name) = operator.await.unwrap();
        let a = app(&s, "A01").await;
        assert!(
            disabled,
            "round {round}: the health rule's disable was lost: {a}"
        );
        assert_eq!(a["events_enabled"], false, "round {round}: {a}");
        assert_eq!(
            a["signing_secret"], secret,
            "round {round}: secret reverted"
        );
        assert_eq!(a["name"], name, "round {round}: name reverted");

        let (st, enabled) = s.admin("POST", "/apps/A01/events/enable", None).await;
        assert_eq!((st, &enabled["events_enabled"]), (200, &json!(true)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = app(&s, "A01").await;
        assert_eq!(
            a["events_enabled"], true,
            "round {round}: enable undone: {a}"
        );
        assert_eq!(a["signing_secret"], secret, "round {round}: {a}");
    }
}

#[tokio::test]
async fn two_patches_racing_to_replace_the_request_url_write_one_and_refuse_the_other() {
    let s = Arc::new(Server::start());
    let first = Receiver::start().await;
    s.app_in_channel(json!({"id": "A01", "name": "A01", "request_url": first.url, "bot_events": ["message.channels"]}))
        .await;
    let (a, b) = (
        slow_verifier(Duration::from_millis(600)).await,
        slow_verifier(Duration::from_millis(1200)).await,
    );
    let send = |url: String| {
        let s = s.clone();
        tokio::spawn(async move {
            s.admin("PATCH", "/apps/A01", Some(json!({ "request_url": url })))
                .await
        })
    };
    let (pa, pb) = (send(a.url.clone()), send(b.url.clone()));
    let ((sa, ra), (sb, rb)) = (pa.await.unwrap(), pb.await.unwrap());
    assert_eq!(sa, 200, "{ra}");
    assert_eq!(
        sb, 409,
        "the slower one replaced a URL that was no longer there: {rb}"
    );
    assert_eq!(rb["type"], "urn:tidings:problem:conflict", "{rb}");
    let now = app(&s, "A01").await;
    assert_eq!(now["request_url"], a.url.as_str(), "{now}");
}

#[tokio::test]
async fn an_if_match_patch_applies_only_to_the_version_it_names() {
    let s = Server::start();
    let (st, _) = s
        .admin("POST", "/apps", Some(json!({"id": "A01", "name": "one"})))
        .await;
    assert_eq!(st, 201);
    let url = format!("{}/admin/v1/apps/A01", s.url);
    let res = Server::client()
        .get(&url)
        .bearer_auth(support::ADMIN)
        .send()
        .await
        .unwrap();
    let tag = res.headers()["etag"].to_str().unwrap().to_string();
    let send = |tag: String, name: &'static str| {
        Server::client()
            .patch(&url)
            .bearer_auth(support::ADMIN)
            .header("if-match", tag)
            .json(&json!({ "name": name }))
            .send()
    };
    let ok = send(tag.clone(), "two").await.unwrap();
    assert_eq!(ok.status(), 200);
    let new_tag = ok.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(new_tag, tag, "every write moves the ETag");
    // A rotation meanwhile moves it too: a PATCH made on the read before it is refused.
    rotate(&s, "A01").await;
    let stale = send(new_tag, "three").await.unwrap();
    assert_eq!(stale.status(), 412);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["type"], "urn:tidings:problem:precondition_failed");
    assert_eq!(app(&s, "A01").await["name"], "two");
    let any = send("*".into(), "four").await.unwrap();
    assert_eq!(any.status(), 200);
    assert_eq!(app(&s, "A01").await["name"], "four");
}

/// The windows are rebuilt from the store at start (and every few seconds when nodes
/// share it): the failures that disabled the app are still there after the operator's
/// enable, and must not count against it again.
#[tokio::test]
async fn an_enable_is_not_undone_by_attempts_made_before_it() {
    let s = Server::start_with(&[
        ("TIDINGS_HEALTH_MIN_EVENTS", "3"),
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", "[]"),
    ]);
    let failing = Receiver::with(Arc::new(|h: &Hit, _| {
        if h.is_verification() {
            Reply::default()
        } else {
            Reply::status(500)
        }
    }))
    .await;
    s.app_in_channel(json!({"id": "A01", "name": "A01", "request_url": failing.url, "bot_events": ["message.channels"]}))
        .await;
    for i in 0..3 {
        s.say(&format!("m{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app(&s, "A01").await["events_enabled"] != false {
        assert!(Instant::now() < deadline, "never disabled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, _) = s.admin("POST", "/apps/A01/events/enable", None).await;
    assert_eq!(st, 200);

    // A restart rebuilds the windows from the store, the three failures included.
    let s = s.restart();
    let ev = s.say("one more failure").await;
    s.wait_status(&ev, "failed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = app(&s, "A01").await;
    assert_eq!(
        a["events_enabled"], true,
        "one failure since the enable is below min_events: {a}"
    );
}
