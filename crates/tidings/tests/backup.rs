//! `tidings backup` / `tidings restore` on SQLite: a backup taken while events are being
//! published and delivered restores into a new data directory where a server finds every
//! event acknowledged before the backup began, with its pending delivery, and delivers
//! it; and bad input gets one clear line and leaves nothing behind.
//!
//! (PostgreSQL is backed up with pg_dump: `pg_backup.rs`.)

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver::Receiver;
use support::{bin, Server, ADMIN};

/// Events per publish call: small, so acknowledgements keep coming during the backup.
const BATCH: usize = 25;

#[tokio::test]
async fn a_backup_under_load_restores_every_acknowledged_event_and_pending_delivery() {
    let s = Server::start_sqlite_with(&[]);
    let live = Receiver::start().await;
    // LIVE's deliveries go out while the backup runs (the dispatcher writes outcomes);
    // PILE has no Request URL, so each event leaves a pending delivery for it.
    s.app_in_channel(json!({"id": "A0LIVE", "name": "live", "bot_events": ["message.channels"], "request_url": live.url}))
        .await;
    s.app_in_channel(json!({"id": "A0PILE", "name": "pile", "bot_events": ["message.channels"]}))
        .await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (url, acked, stop) = (s.url.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let c = Server::client();
            let mut b = 0;
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<Value> = (0..BATCH)
                    .map(|i| json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": format!("{b}-{i}")}}))
                    .collect();
                b += 1;
                let res = c
                    .post(format!("{url}/admin/v1/events/batch"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"events": events}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(res.status(), 200);
                let body: Value = res.json().await.expect("json");
                let mut a = acked.lock().unwrap();
                for r in body["results"].as_array().expect("results") {
                    a.push(r["event_id"].as_str().expect("accepted").to_string());
                }
            }
        })
    };
    wait_until(60, "2,000 events published", || {
        acked.lock().unwrap().len() >= 2000
    })
    .await;

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("tidings-backup.db");
    let before: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let (ok, stdout, stderr) = run(&[
        "backup",
        "--to",
        file.to_str().unwrap(),
        "--data-dir",
        s.data_dir.to_str().unwrap(),
    ])
    .await;
    let during = acked.lock().unwrap().len() - before.len();
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("backup: "), "{stdout}");
    print!("{stdout}");
    assert!(
        during > 0,
        "publishing went on while the backup ran: {stdout}"
    );
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    assert_eq!(mode(&file), 0o600);
    drop(s);

    let data = out.path().join("restored");
    let (ok, stdout, stderr) = run(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("restored "), "{stdout}");
    assert_eq!(mode(&data.join("tidings.db")), 0o600);

    let mut s2 = Server::spawn(
        &data,
        vec![
            ("TIDINGS_ADMIN_TOKEN".into(), ADMIN.into()),
            (
                "TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS".into(),
                "true".into(),
            ),
        ],
        &[],
    );
    for id in &before {
        let (st, ev) = s2.admin("GET", &format!("/events/{id}"), None).await;
        assert_eq!(st, 200, "event {id} acknowledged before the backup: {ev}");
    }
    let pending = pending_events(&s2, "A0PILE").await;
    let missing: Vec<&String> = before.difference(&pending).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events lack their pending delivery, e.g. {:?}",
        missing.len(),
        before.len(),
        missing.first()
    );

    // The restored server sends them once the app has somewhere to send to.
    let r2 = Receiver::start().await;
    let (st, app) = s2
        .admin(
            "PATCH",
            "/apps/A0PILE",
            Some(json!({"request_url": r2.url})),
        )
        .await;
    assert_eq!(st, 200, "{app}");
    r2.wait_for(120, "every restored pending delivery", |hits| {
        let got: HashSet<String> = hits
            .iter()
            .filter_map(|h| h.json()["event_id"].as_str().map(str::to_string))
            .collect();
        before.is_subset(&got)
    })
    .await;
    println!(
        "{} events acknowledged before the backup, {during} during it; all restored and delivered",
        before.len()
    );
    s2.kill();
}

#[tokio::test]
async fn backup_and_restore_refuse_bad_input_with_one_line() {
    let mut s = Server::start_sqlite_with(&[]);
    s.acme().await;
    let out = tempfile::tempdir().unwrap();
    let dir = s.data_dir.to_str().unwrap().to_string();

    // A target that cannot be written.
    let (ok, _, err) = run(&[
        "backup",
        "--to",
        "/nonexistent-dir/b.db",
        "--data-dir",
        &dir,
    ])
    .await;
    one_line_failure(ok, &err, "does not exist");

    // A good backup; a second one onto it needs --force.
    let file = out.path().join("b.db");
    let f = file.to_str().unwrap();
    let (ok, _, err) = run(&["backup", "--to", f, "--data-dir", &dir]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["backup", "--to", f, "--data-dir", &dir]).await;
    one_line_failure(ok, &err, "--force");

    // Never into the data directory of a running server, --force or not.
    let (ok, _, err) = run(&["restore", "--from", f, "--data-dir", &dir, "--force"]).await;
    one_line_failure(ok, &err, "open in a running server");

    // Not a SQLite file; a database of a newer Tidings.
    let junk = out.path().join("junk.db");
    std::fs::write(&junk, vec![1u8; 4096]).unwrap();
    let target = out.path().join("new");
    let t = target.to_str().unwrap();
    let (ok, _, err) = run(&["restore", "--from", junk.to_str().unwrap(), "--data-dir", t]).await;
    one_line_failure(ok, &err, "not a SQLite database");
    let newer = out.path().join("newer.db");
    std::fs::copy(&file, &newer).unwrap();
    sqlite(
        &newer,
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
    );
    let (ok, _, err) = run(&[
        "restore",
        "--from",
        newer.to_str().unwrap(),
        "--data-dir",
        t,
    ])
    .await;
    one_line_failure(ok, &err, "newer than this tidings knows");
    assert!(!target.exists(), "a refused restore makes nothing");

    // A restore over a stopped server's database needs --force and keeps the old one.
    s.kill();
    let (ok, _, err) = run(&["restore", "--from", f, "--data-dir", &dir]).await;
    one_line_failure(ok, &err, "--force");
    let (ok, stdout, err) = run(&["restore", "--from", f, "--data-dir", &dir, "--force"]).await;
    assert!(ok, "{err}");
    assert!(stdout.contains("is kept as"), "{stdout}");
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".before-restore-"))
        .count();
    assert_eq!(kept, 1);
}

/// Runs the CLI off the async threads: (success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin())
            .args(&args)
            .env_remove("TIDINGS_SERVER_DATABASE_URL")
            .env_remove("TIDINGS_SERVER_DATA_DIR")
            .output()
            .expect("running tidings");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn one_line_failure(ok: bool, err: &str, says: &str) {
    assert!(!ok, "it should have failed: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: ") && err.contains(says), "{err}");
}

/// The event ids of an app's pending deliveries (every page).
async fn pending_events(s: &Server, app: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/apps/{app}/deliveries?status=pending&limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, page) = s.admin("GET", &path, None).await;
        assert_eq!(st, 200, "{page}");
        for d in page["items"].as_array().expect("items") {
            ids.insert(d["event_id"].as_str().expect("event_id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

async fn wait_until(secs: u64, what: &str, cond: impl Fn() -> bool) {
    for _ in 0..secs * 20 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {secs} s: {what}");
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn sqlite(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}
