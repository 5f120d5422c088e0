//! Durability of the directory: everything created survives SIGKILL and a restart.

mod support;

use serde_json::json;
use support::Server;

#[tokio::test]
async fn records_and_tokens_survive_sigkill_and_restart() {
    let s = Server::start();
    let ws = s
        .workspace(
            &["message.channels"],
            &["channels:history"],
            &["stars:read"],
        )
        .await;
    let (st, _) = s
        .admin(
            "PUT",
            &format!("/teams/{}/conversations/C0KEEP", ws.team_id),
            Some(json!({"name": "keep", "kind": "public", "members": [ws.user_id]})),
        )
        .await;
    assert_eq!(st, 201);
    let bot = ws.bot_token().to_string();
    let s = s.restart();
    let (_, b) = s.api("auth.test", Some(&bot), &[]).await;
    assert_eq!(
        b["ok"], true,
        "the bot token still authenticates after SIGKILL: {b}"
    );
    let (st, app) = s.admin("GET", &format!("/apps/{}", ws.app_id), None).await;
    assert_eq!(
        (st, &app["bot_events"]),
        (200, &json!(["message.channels"]))
    );
    let (st, c) = s
        .admin(
            "GET",
            &format!("/teams/{}/conversations/C0KEEP", ws.team_id),
            None,
        )
        .await;
    assert_eq!((st, &c["members"]), (200, &json!([ws.user_id])));
}

#[tokio::test]
async fn a_generated_admin_token_is_private_and_reused_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Server::spawn(&dir, vec![], &[]);
    assert!(
        s.stdout_lines
            .iter()
            .any(|l| l.starts_with("admin token:") && l.contains("generated")),
        "{:?}",
        s.stdout_lines
    );
    let path = dir.join("admin-token");
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.starts_with("tdk_admin_"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (st, _) = s
        .admin_as(
            &token,
            "POST",
            "/teams",
            Some(json!({"name": "A", "domain": "a"})),
        )
        .await;
    assert_eq!(st, 201);
    drop(s);
    let s = Server::spawn(&dir, vec![], &[]);
    assert!(
        s.stdout_lines.iter().any(|l| l.contains("existing")),
        "{:?}",
        s.stdout_lines
    );
    let (st, teams) = s.admin_as(&token, "GET", "/teams", None).await;
    assert_eq!((st, teams["items"].as_array().unwrap().len()), (200, 1));
}

#[tokio::test]
async fn dev_mode_seeds_a_demo_workspace_whose_tokens_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Server::spawn(&dir, vec![], &["--dev"]);
    let line = s
        .stdout_lines
        .iter()
        .find(|l| l.trim_start().starts_with("bot token:"))
        .expect("bot token printed")
        .clone();
    let bot = line.split_whitespace().last().unwrap().to_string();
    let (_, b) = s.api("auth.test", Some(&bot), &[]).await;
    assert_eq!(b["ok"], true, "{b}");
    assert_eq!(b["team_id"], "T0DEMO0001");
    drop(s);
    let s = Server::spawn(&dir, vec![], &["--dev"]);
    assert!(
        s.stdout_lines.iter().any(|l| l.contains(&bot)),
        "the same credentials are printed again"
    );
}
