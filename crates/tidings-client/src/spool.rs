//! [`Spool`]: the events handed to the client and not yet acknowledged, in one append-only
//! file (`<dir>/spool.log`).
//!
//! Format: the 8-byte header `TSPOOL01`, then records `[kind u8][len u32 LE][check 4]
//! [payload]`, `check` being the first 4 bytes of SHA-256 over kind, len and payload. An
//! `event` record (kind 1) holds `{"id", "body"}`; a `done` record (kind 2) holds the ids
//! (u64 LE) of events acknowledged, refused or dropped. Appends are written at once and
//! made durable by [`Spool::sync`], which the client calls once per group of appends.
//!
//! On open the file is replayed: the first record that is incomplete or fails its check,
//! and everything after it, is a torn tail (a write cut short by a crash): it is cut off
//! and counted, and every record before it is kept. A file whose header is wrong is not a
//! spool: opening fails with [`Error::Corrupt`] and the file is left untouched.
//!
//! Bounded: an append that would take the file past `max_bytes` first compacts (rewrites
//! the live events to a new file, renamed over the old one), and if still too large is
//! refused with [`Error::SpoolFull`] — the events already spooled are kept, the new ones
//! are not taken. When every event is done the file is truncated back to its header, and a
//! file over 64 MiB holding at most 10,000 live events is compacted.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;

const HEADER: &[u8; 8] = b"TSPOOL01";
const EVENT: u8 = 1;
const DONE: u8 = 2;
const RECORD_HEAD: usize = 9;
/// A spool at least this large with at most [`COMPACT_LIVE`] live events is compacted.
const COMPACT_AT: u64 = 64 << 20;
const COMPACT_LIVE: usize = 10_000;

/// What the spool holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// The file's size.
    pub bytes: u64,
    /// Events not yet done.
    pub events: u64,
    /// Bytes of torn tail cut off when the spool was opened.
    pub torn_bytes: u64,
}

pub struct Spool {
    path: PathBuf,
    file: File,
    bytes: u64,
    max_bytes: u64,
    next_id: u64,
    live: BTreeMap<u64, Value>,
    torn_bytes: u64,
}

fn check(kind: u8, payload: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(RECORD_HEAD + payload.len());
    r.push(kind);
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&check(kind, payload));
    r.extend_from_slice(payload);
    r
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("spool.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| Error::io(&path, e))?;
        if data.is_empty() {
            file.write_all(HEADER).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            sync_dir(dir);
            data.extend_from_slice(HEADER);
        } else if data.len() < HEADER.len() || &data[..HEADER.len()] != HEADER {
            return Err(Error::Corrupt {
                path,
                reason:
                    "it does not start with the spool header TSPOOL01 (not a tidings-client spool?)"
                        .into(),
            });
        }
        let mut s = Spool {
            path,
            file,
            bytes: 0,
            max_bytes,
            next_id: 1,
            live: BTreeMap::new(),
            torn_bytes: 0,
        };
        let good = s.replay(&data);
        if good < data.len() {
            s.torn_bytes = (data.len() - good) as u64;
            tracing::warn!(spool = %s.path.display(), bytes = s.torn_bytes, "cut off a torn tail");
            s.file
                .set_len(good as u64)
                .and_then(|()| s.file.sync_all())
                .map_err(|e| Error::io(&s.path, e))?;
        }
        s.bytes = good as u64;
        Ok(s)
    }

    /// Reads the records; returns where the good ones end.
    fn replay(&mut self, data: &[u8]) -> usize {
        let mut at = HEADER.len();
        while at < data.len() {
            let Some(head) = data.get(at..at + RECORD_HEAD) else {
                break;
            };
            let kind = head[0];
            let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let Some(payload) = data.get(at + RECORD_HEAD..at + RECORD_HEAD + len) else {
                break;
            };
            if head[5..9] != check(kind, payload) {
                break;
            }
            match kind {
                EVENT => {
                    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
                        break;
                    };
                    let (Some(id), Some(body)) = (v["id"].as_u64(), v.get("body")) else {
                        break;
                    };
                    self.next_id = self.next_id.max(id.saturating_add(1));
                    self.live.insert(id, body.clone());
                }
                DONE => {
                    for c in payload.chunks_exact(8) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        let id = u64::from_le_bytes(b);
                        self.live.remove(&id);
                    }
                }
                _ => break,
            }
            at += RECORD_HEAD + len;
        }
        at
    }

    /// Appends events (written, not yet durable: call [`Spool::sync`]); their ids, in order.
    pub fn append(&mut self, bodies: Vec<Value>) -> Result<Vec<u64>, Error> {
        let mut buf = Vec::new();
        let mut ids = Vec::with_capacity(bodies.len());
        let mut staged = Vec::with_capacity(bodies.len());
        for body in bodies {
            let id = self.next_id + ids.len() as u64;
            let payload = serde_json::to_vec(&json!({"id": id, "body": body}))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            buf.extend_from_slice(&record(EVENT, &payload));
            ids.push(id);
            staged.push((id, body));
        }
        if self.bytes + buf.len() as u64 > self.max_bytes {
            self.compact()?;
            if self.bytes + buf.len() as u64 > self.max_bytes {
                return Err(Error::SpoolFull {
                    bytes: self.bytes,
                    limit: self.max_bytes,
                });
            }
        }
        self.write(&buf)?;
        self.next_id += ids.len() as u64;
        self.live.extend(staged);
        Ok(ids)
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), Error> {
        if let Err(e) = self.file.write_all(buf) {
            // Cut off whatever part was written, so the file stays a clean sequence.
            let _ = self.file.set_len(self.bytes);
            return Err(Error::io(&self.path, e));
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Makes every append so far durable (one fsync for the group).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Marks events done (acknowledged, refused and kept aside, or dropped); when none is
    /// left the file is cut back to its header.
    pub fn done(&mut self, ids: &[u64]) -> Result<(), Error> {
        let ids: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.live.remove(id).is_some())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        if self.live.is_empty() {
            return self.truncate();
        }
        let payload: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        let rec = record(DONE, &payload);
        self.write(&rec)?;
        // Under a steady stream the spool is seldom empty: once it is large and holds few
        // live events, rewriting those is cheap and keeps the file (and a replay) small.
        if self.bytes > COMPACT_AT && self.live.len() <= COMPACT_LIVE {
            self.compact()?;
        }
        Ok(())
    }

    fn truncate(&mut self) -> Result<(), Error> {
        self.file
            .set_len(HEADER.len() as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.bytes = HEADER.len() as u64;
        Ok(())
    }

    /// Rewrites the live events to a new file and renames it over the spool.
    fn compact(&mut self) -> Result<(), Error> {
        if self.live.is_empty() {
            return self.truncate();
        }
        let tmp = self.path.with_extension("compact");
        let mut buf = HEADER.to_vec();
        for (id, body) in &self.live {
            let payload = serde_json::to_vec(&json!({"id": id, "body": body}))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            buf.extend_from_slice(&record(EVENT, &payload));
        }
        if buf.len() as u64 >= self.bytes {
            return Ok(());
        }
        let io = |e| Error::io(&tmp, e);
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&buf).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir);
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        self.bytes = buf.len() as u64;
        Ok(())
    }

    /// The events not yet done, oldest first.
    pub fn live(&self) -> impl Iterator<Item = (u64, &Value)> {
        self.live.iter().map(|(id, v)| (*id, v))
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes: self.bytes,
            events: self.live.len() as u64,
            torn_bytes: self.torn_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes a file's creation or rename in `dir` durable (best effort: not every platform
/// can fsync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
