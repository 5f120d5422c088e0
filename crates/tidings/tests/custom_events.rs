//! Operator-defined event types from configuration, and `tidings publish` over NDJSON.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use support::{bin, Server, ADMIN};

const CUSTOM: &str = r#"
[[events.custom]]
name = "invoice_paid"
bot_scopes = ["invoices:read"]
bot = true
user = false
audience = "team"
user_field = "/user"
event_context = true
"#;

#[tokio::test]
async fn a_custom_event_type_is_subscribable_and_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tidings.toml");
    std::fs::write(&cfg, CUSTOM).unwrap();
    let dir = tmp.path().join("data");
    let s = Server::spawn(
        &dir,
        vec![("TIDINGS_ADMIN_TOKEN".into(), ADMIN.into())],
        &["--config", cfg.to_str().unwrap()],
    );
    let ws = s
        .workspace(&["invoice_paid"], &["invoices:read"], &[])
        .await;
    let (st, r) = s
        .admin("POST", "/events", Some(json!({"team_id": ws.team_id, "event": {"type": "invoice_paid", "user": ws.user_id, "amount": 42}})))
        .await;
    assert_eq!((st, r["deliveries"].as_u64()), (202, Some(1)), "{r}");
    let (_, ev) = s
        .admin(
            "GET",
            &format!("/events/{}", r["event_id"].as_str().unwrap()),
            None,
        )
        .await;
    let env = &ev["deliveries"][0]["envelope"];
    assert_eq!(env["event"]["amount"], 42);
    assert!(env["event_context"].as_str().unwrap().starts_with("4-"));
}

#[test]
fn a_bad_custom_event_type_stops_startup_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[[events.custom]]\nname = \"thing_moved\"\nbot = true\nuser = false\naudience = \"conversation\"\nevent_context = true\n").unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            tmp.path().join("d").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("thing_moved") && err.contains("channel_field"),
        "{err}"
    );
    let redefine = tmp.path().join("redefine.toml");
    std::fs::write(&redefine, "[[events.custom]]\nname = \"message.channels\"\nbot = true\nuser = true\naudience = \"team\"\nevent_context = true\n").unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            redefine.to_str().unwrap(),
            "--data-dir",
            tmp.path().join("d2").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("message.channels"));
}

#[tokio::test]
async fn the_cli_publishes_ndjson_in_batches_and_reports_refusals() {
    let s = Server::start();
    let ws = s
        .workspace(&["message.channels"], &["channels:history"], &[])
        .await;
    let (st, _) = s
        .admin("PUT", &format!("/teams/{}/conversations/C01", ws.team_id), Some(json!({"name": "general", "kind": "public", "members": [ws.user_id, ws.bot_user_id()]})))
        .await;
    assert_eq!(st, 201);
    let mut input = String::new();
    for i in 0..7 {
        input.push_str(&json!({"type": "message", "channel": "C01", "user": ws.user_id, "text": format!("m{i}")}).to_string());
        input.push('\n');
    }
    input.push_str("{\"type\": \"message\", \"channel\": \"C0NOPE\", \"user\": \"U1\"}\n");
    input.push_str("this is not json\n");
    let url = s.url.clone();
    let team = ws.team_id.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(bin())
            .args(["publish", "--team", &team, "--batch-size", "3"])
            .env("TIDINGS_URL", &url)
            .env("TIDINGS_ADMIN_TOKEN", ADMIN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refusals make the exit non-zero");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("Ev")).count(),
        7,
        "{stdout}"
    );
    assert!(
        stderr.contains("event 8:") && stderr.contains("C0NOPE"),
        "{stderr}"
    );
    assert!(
        stderr.contains("event 9:") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
    assert!(stderr.contains("published 7, refused 2"), "{stderr}");
    let (_, page) = s
        .admin(
            "GET",
            &format!("/apps/{}/deliveries?status=pending", ws.app_id),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
}
