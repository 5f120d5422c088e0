//! The CLI wraps the operator API: commands against a real server, `--json` output, and
//! one-line errors with a non-zero exit.

mod support;

use std::process::Command;

use support::{bin, Server, ADMIN};

fn cli(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
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

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn the_cli_creates_a_workspace_and_installs_an_app() {
    let s = Server::start();
    let s = tokio::task::spawn_blocking(move || {
        let (ok, out, err) = cli(
            &s,
            &[
                "teams", "create", "--name", "Acme", "--domain", "acme", "--json",
            ],
        );
        assert!(ok, "{err}");
        let team = json(&out)["id"].as_str().unwrap().to_string();
        let (ok, out, _) = cli(
            &s,
            &[
                "users", "create", "--team", &team, "--name", "alice", "--json",
            ],
        );
        assert!(ok);
        let user = json(&out)["id"].as_str().unwrap().to_string();
        let (ok, out, err) = cli(
            &s,
            &[
                "apps",
                "create",
                "--name",
                "Bot",
                "--bot-events",
                "message.channels,app_mention",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        let app = json(&out)["id"].as_str().unwrap().to_string();
        let (ok, out, err) = cli(
            &s,
            &[
                "install",
                "--app",
                &app,
                "--team",
                &team,
                "--installer",
                &user,
                "--bot-scopes",
                "channels:history,app_mentions:read",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        let inst = json(&out);
        assert!(inst["bot_token"].as_str().unwrap().starts_with("xoxb-"));
        let (ok, out, _) = cli(&s, &["apps", "list"]);
        assert!(ok);
        assert!(
            out.lines().next().unwrap().starts_with("ID"),
            "a table with a header: {out}"
        );
        assert!(out.contains(&app));
        let (ok, out, _) = cli(&s, &["apps", "show", &app]);
        assert!(ok);
        assert!(out.contains("message.channels,app_mention"), "{out}");
        let (ok, out, err) = cli(&s, &["apps", "update", &app, "--name", "Renamed", "--json"]);
        assert!(ok, "{err}");
        assert_eq!(json(&out)["name"], "Renamed");
        s
    })
    .await
    .unwrap();
    drop(s);
}

#[tokio::test]
async fn cli_errors_are_one_line_and_exit_non_zero() {
    let s = Server::start();
    tokio::task::spawn_blocking(move || {
        let (ok, _, err) = cli(&s, &["teams", "show", "T0MISSING"]);
        assert!(!ok);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: 404"), "{err}");
        let (ok, _, err) = cli(
            &s,
            &["apps", "create", "--name", "x", "--bot-events", "nope"],
        );
        assert!(!ok);
        assert!(err.contains("nope"), "{err}");
        let out = Command::new(bin())
            .args(["teams", "list"])
            .env("TIDINGS_URL", "http://127.0.0.1:9")
            .env("TIDINGS_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: cannot reach"), "{err}");
    })
    .await
    .unwrap();
}

#[test]
fn serve_with_a_bad_config_exits_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[delivery]\ntimeout = \"soon\"\n").unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            tmp.path().join("d").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("soon"), "{err}");
    let out = Command::new(bin())
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}

#[test]
fn version_names_the_version_and_the_commit() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rest = line
        .strip_prefix(concat!("tidings ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `tidings VERSION (COMMIT DATE)`: {line}"));
    // Built from a git checkout (as tests are), the stamp is the short commit and its date.
    let head = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(h) if h.status.success() && std::env::var_os("TIDINGS_BUILD_COMMIT").is_none() => {
            let (commit, date) = rest.split_once(' ').unwrap_or((rest, ""));
            assert_eq!(commit, String::from_utf8_lossy(&h.stdout).trim(), "{line}");
            let d: Vec<&str> = date.split('-').collect();
            assert!(
                d.len() == 3 && d.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
                "a YYYY-MM-DD date: {line}"
            );
        }
        _ => assert!(!rest.is_empty(), "{line}"),
    }
}

#[tokio::test]
async fn cli_publish_names_the_refusal_code_and_exits_non_zero() {
    let s = Server::start();
    s.acme().await;
    let s = tokio::task::spawn_blocking(move || {
        let (ok, _, err) = cli(
            &s,
            &[
                "publish",
                "--team",
                "T01",
                "--event-time",
                "1000",
                r#"{"type": "message", "channel": "C01", "user": "U01", "text": "old"}"#,
            ],
        );
        assert!(!ok);
        assert!(err.contains("422 event_too_old: event_time"), "{err}");
        let (ok, out, err) = cli(
            &s,
            &[
                "publish",
                "--team",
                "T01",
                r#"{"type": "message", "channel": "C01", "user": "U01", "text": "now"}"#,
            ],
        );
        assert!(ok, "{err}");
        assert!(out.starts_with("Ev"), "{out}");
        s
    })
    .await
    .unwrap();
    drop(s);
}

#[tokio::test]
async fn the_cli_shows_changes_and_rotates_an_apps_oauth_client() {
    let s = Server::start();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = cli(
            &s,
            &[
                "apps",
                "create",
                "--name",
                "Oauth",
                "--id",
                "A0CLI",
                "--bot-events",
                "message.channels",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        let created = json(&out);
        let client_id = created["client_id"].as_str().unwrap().to_string();
        assert!(created["client_secret"]
            .as_str()
            .is_some_and(|x| x.len() == 32));
        let (ok, out, err) = cli(
            &s,
            &[
                "apps",
                "oauth",
                "A0CLI",
                "--redirect-urls",
                "http://localhost:3000/slack/oauth_redirect",
                "--token-rotation-enabled",
                "true",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        let c = json(&out);
        assert_eq!(c["client_id"], client_id.as_str());
        assert_eq!(c["token_rotation_enabled"], true);
        assert!(c["install_url"]
            .as_str()
            .unwrap()
            .contains(&format!("client_id={client_id}")));
        let (ok, out, err) = cli(&s, &["apps", "client-secret", "A0CLI", "--json"]);
        assert!(ok, "{err}");
        let r = json(&out);
        assert_ne!(r["client_secret"], created["client_secret"]);
        let (ok, _, err) = cli(
            &s,
            &[
                "apps",
                "oauth",
                "A0CLI",
                "--redirect-urls",
                "javascript:alert(1)",
            ],
        );
        assert!(!ok);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("redirect_urls"), "{err}");
    })
    .await
    .unwrap();
}
