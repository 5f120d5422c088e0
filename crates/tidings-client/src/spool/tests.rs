use super::*;
use serde_json::json;

fn ev(n: u64) -> Value {
    json!({"team_id": "T01", "event": {"type": "message", "text": format!("event {n}")}})
}

fn texts(s: &Spool) -> Vec<String> {
    s.live()
        .map(|(_, v)| v["event"]["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn appended_events_survive_a_reopen_and_done_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
    let ids = s.append((0..3).map(ev).collect()).unwrap();
    s.sync().unwrap();
    s.done(&ids[..1]).unwrap();
    s.sync().unwrap();
    drop(s);
    let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(texts(&s), ["event 1", "event 2"]);
    let more = s.append(vec![ev(3)]).unwrap();
    assert!(more[0] > ids[2], "ids keep growing across reopens");
    let all: Vec<u64> = s.live().map(|(id, _)| id).collect();
    s.done(&all).unwrap();
    assert_eq!(
        s.stats().bytes,
        HEADER.len() as u64,
        "all done: cut back to the header"
    );
}

#[test]
fn a_torn_tail_is_cut_off_and_nothing_before_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
    s.append((0..3).map(ev).collect()).unwrap();
    s.sync().unwrap();
    let good = s.stats().bytes;
    drop(s);
    // A write cut short: the head of a record and part of its payload.
    let partial = &record(EVENT, br#"{"id":9,"body":{"team_id":"T01"}}"#)[..20];
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join("spool.log"))
        .unwrap();
    f.write_all(partial).unwrap();
    drop(f);
    let s = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(texts(&s), ["event 0", "event 1", "event 2"]);
    assert_eq!(s.stats().torn_bytes, 20);
    assert_eq!(
        std::fs::metadata(dir.path().join("spool.log"))
            .unwrap()
            .len(),
        good
    );
}

#[test]
fn a_last_record_that_fails_its_check_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
    s.append((0..3).map(ev).collect()).unwrap();
    s.sync().unwrap();
    drop(s);
    let path = dir.path().join("spool.log");
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len();
    data[n - 2] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    let s = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(texts(&s), ["event 0", "event 1"]);
    assert!(s.stats().torn_bytes > 0);
}

#[test]
fn a_file_that_is_not_a_spool_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.log");
    std::fs::write(&path, b"hello, not a spool").unwrap();
    let err = Spool::open(dir.path(), 1 << 20).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("spool header"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"hello, not a spool");
}

#[test]
fn an_unusable_directory_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Spool::open(&file.join("spool"), 1 << 20).err().unwrap();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[test]
fn a_full_spool_refuses_new_events_and_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 400).unwrap();
    let mut taken = Vec::new();
    let err = loop {
        match s.append(vec![ev(taken.len() as u64)]) {
            Ok(ids) => taken.extend(ids),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::SpoolFull { limit: 400, .. }), "{err}");
    assert!(s.stats().bytes <= 400);
    assert_eq!(s.live().count(), taken.len());
    // Done events make room again (compaction).
    s.done(&taken[..2]).unwrap();
    s.append(vec![ev(99)]).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = Spool::open(dir.path(), 400).unwrap();
    assert_eq!(s.live().count(), taken.len() - 1);
}

/// Run as a child process by the next test: appends and syncs forever, printing each id
/// once it is durable, until killed.
#[test]
#[ignore = "a helper run as a child process"]
fn spool_writer_child() {
    let Ok(dir) = std::env::var("SPOOL_CHILD_DIR") else {
        return;
    };
    let mut s = Spool::open(Path::new(&dir), 1 << 30).unwrap();
    let mut out = std::io::stdout();
    for n in 0.. {
        let ids = s.append((0..5).map(|k| ev(n * 5 + k)).collect()).unwrap();
        s.sync().unwrap();
        writeln!(out, "{}", ids[4]).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_spool_killed_mid_write_keeps_everything_it_synced() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spool::tests::spool_writer_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SPOOL_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut synced = 0u64;
    while synced < 2000 {
        let line = lines.next().unwrap().unwrap();
        if let Ok(id) = line.trim().parse::<u64>() {
            synced = id;
        }
    }
    child.kill().unwrap(); // SIGKILL, most likely in the middle of a write
    child.wait().unwrap();
    let s = Spool::open(dir.path(), 1 << 30).unwrap();
    let ids: Vec<u64> = s.live().map(|(id, _)| id).collect();
    assert!(ids.len() as u64 >= synced, "{} < {synced}", ids.len());
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "no gap");
}
