//! A full disk (issue 26), with a real filesystem: the SQLite data directory lives on a
//! size-limited tmpfs (`mount -t tmpfs -o size=…`, which needs root, as CI has), a filler
//! file takes nearly all of its space, and publishing goes on until the disk is full.
//! Publish must then answer 503 (the writer refuses, nothing half-written), recover once
//! the filler is deleted, and every event it acknowledged must still be there after a
//! SIGKILL and restart. Where mounting is not permitted the test says so and does not run.
//!
//! SQLite only: it is about the embedded database's own disk (PostgreSQL's disk is the
//! database server's business), so it runs the same in a PostgreSQL run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::{Server, ADMIN};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the filesystem of `path` with a file, leaving about `leave` bytes free.
fn fill(path: &Path, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let free = fs_free(path.parent().expect("parent"));
        if free <= leave {
            break;
        }
        let n = (free - leave).min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

fn fs_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// One message with a 16 KB text; (status, event id when acknowledged).
async fn publish_big(s: &Server, i: usize) -> (u16, Option<String>) {
    let text = format!("{i}:{}", "x".repeat(16 * 1024));
    let res = Server::client()
        .post(format!("{}/admin/v1/events", s.url))
        .bearer_auth(ADMIN)
        .json(&json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": text}}))
        .send()
        .await
        .expect("publish");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let id = body["event_id"].as_str().map(str::to_string);
    (status, id.filter(|_| status == 202))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_tmpfs_publish_answers_503_recovers_when_space_returns_and_loses_nothing() {
    let fs = match Tmpfs::mount("24m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("full disk on tmpfs: cannot mount a tmpfs here ({e}); not run");
            return;
        }
    };
    let data = fs.dir.join("data");
    let mut env = vec![("TIDINGS_ADMIN_TOKEN".to_string(), ADMIN.to_string())];
    env.push((
        "TIDINGS_DELIVERY_ALLOW_LOOPBACK_TARGETS".into(),
        "true".into(),
    ));
    let s = Server::spawn(&data, env.clone(), &[]);
    // The app has no Request URL: its deliveries stay pending, so nothing is pruned.
    s.app_in_channel(json!({"id": "A01", "name": "pile", "bot_events": ["message.channels"]}))
        .await;
    assert_eq!(publish_big(&s, 0).await.0, 202);
    let filler = fs.dir.join("filler");
    fill(&filler, 1024 * 1024);
    let mut acked: Vec<String> = Vec::new();
    let mut refused = None;
    for i in 1..2000 {
        match publish_big(&s, i).await {
            (202, Some(id)) => acked.push(id),
            (st, _) => {
                refused = Some(st);
                break;
            }
        }
    }
    assert_eq!(refused, Some(503), "a full disk must answer 503");
    // Still full: refused again, and reads still answer. A failed write can give a few
    // pages back (its rollback, a WAL checkpoint), so one more publish may fit; what must
    // hold is that the full disk keeps refusing and that whatever was acknowledged is kept.
    let mut refused_again = false;
    for i in 0..200 {
        match publish_big(&s, 5000 + i).await {
            (202, Some(id)) => acked.push(id),
            (503, _) => {
                refused_again = true;
                break;
            }
            (st, _) => panic!("a full disk answered {st}, not 503"),
        }
    }
    assert!(refused_again, "a full disk must keep answering 503");
    assert_eq!(s.admin("GET", "/apps/A01", None).await.0, 200);
    // Space returns: publishing works again without a restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let mut recovered = None;
    for i in 0..50 {
        if let (202, Some(id)) = publish_big(&s, 6000 + i).await {
            recovered = Some(id);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    acked.push(recovered.expect("publish did not recover once space returned"));
    // Nothing acknowledged is lost, even across a crash.
    let s = s.restart();
    for id in &acked {
        let (st, ev) = s.admin("GET", &format!("/events/{id}"), None).await;
        assert_eq!(st, 200, "acknowledged event {id} lost: {ev}");
        assert_eq!(ev["deliveries"][0]["status"], "pending", "{ev}");
    }
}

/// `tidings backup` with its output on a filesystem that fills up mid-copy, or that is
/// mounted read-only: one clear line, a non-zero exit, and no file left behind (the copy
/// goes to a temporary file that is removed on failure). Real tmpfs mounts, as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_onto_a_full_or_read_only_tmpfs_fails_with_one_line_and_leaves_nothing() {
    let small = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("backup onto a full tmpfs: cannot mount a tmpfs here ({e}); not run");
            return;
        }
    };
    let s = Server::start_sqlite_with(&[]);
    s.app_in_channel(json!({"id": "A01", "name": "pile", "bot_events": ["message.channels"]}))
        .await;
    // About 3 MB of events: more than the 1 MB filesystem holds.
    for i in 0..200 {
        assert_eq!(publish_big(&s, i).await.0, 202);
    }
    let dir = s.data_dir.to_str().expect("utf-8").to_string();
    let to = small.dir.join("b.db");
    let err = backup_fails(&["--to", to.to_str().expect("utf-8"), "--data-dir", &dir]);
    assert!(err.contains("full") || err.contains("No space"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&small.dir)
        .expect("read_dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(left.is_empty(), "a failed backup left {left:?}");

    let ro = Tmpfs::mount("1m").expect("a second tmpfs");
    let out = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ro.dir)
        .output()
        .expect("remount");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let to = ro.dir.join("b.db");
    let err = backup_fails(&["--to", to.to_str().expect("utf-8"), "--data-dir", &dir]);
    assert!(err.contains("Read-only"), "{err}");
    assert!(!to.exists());
}

/// Runs `tidings backup ARGS`, which must fail with one line on stderr; returns it.
fn backup_fails(args: &[&str]) -> String {
    let out = Command::new(support::bin())
        .arg("backup")
        .args(args)
        .env_remove("TIDINGS_SERVER_DATABASE_URL")
        .output()
        .expect("tidings backup");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "the backup should have failed: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}
