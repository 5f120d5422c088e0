//! What one delivery's HTTP exchange costs the sender, counted in instructions so two
//! builds can be compared on a noisy machine:
//!
//! ```text
//! cargo build --release -p tidings-delivery --example sender_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/sender_cost 20000 2>&1 | grep refs
//! ```
//!
//! It posts `N` (default 20,000) signed 1.3 KB envelopes, 64 at a time, through
//! [`HttpSender`] to a minimal keep-alive HTTP/1.1 receiver on 127.0.0.1 in the same
//! process, and prints requests per second. The receiver's share is the same for every
//! build, so the difference between two builds' instruction totals, divided by `N`, is the
//! difference in what the sender costs per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tidings_delivery::http::Signer;
use tidings_delivery::ssrf::TargetPolicy;
use tidings_delivery::{HttpSender, SenderConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IN_FLIGHT: u64 = 64;

/// Answers every request on a connection with an empty 200, keeping it open.
async fn serve(mut s: tokio::net::TcpStream) {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // A request is its head and `content-length` bytes of body.
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + len);
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| format!("N must be a number: {e}"))?,
        None => 20_000,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/events",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(serve(s));
        }
    });
    let sender = HttpSender::new(SenderConfig {
        timeout: Duration::from_secs(3),
        max_redirects: 2,
        targets: TargetPolicy {
            allow_loopback: true,
            allow_private: false,
        },
        max_idle_per_host: IN_FLIGHT as usize,
        max_retry_after: Duration::from_secs(60),
    })?;
    let body = Bytes::from(format!(
        r#"{{"token":"verificationtoken0123456789","team_id":"T000000","api_app_id":"A000000","event":{{"type":"message","channel":"C000000","user":"U000000","text":"hello","pad":"{}","event_ts":"1700000000.000100","channel_type":"channel"}},"type":"event_callback","event_id":"Ev00000000001","event_time":1700000000}}"#,
        "x".repeat(1000)
    ));
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (sender, url, body) = (sender.clone(), url.clone(), body.clone());
        let (next, failed) = (next.clone(), failed.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = sender
                    .post(&url, body.clone(), &Signer::SlackV0("secret"), None)
                    .await;
                if !r.ok() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{n} requests in {secs:.2} s: {:.0}/s, {} failed",
        n as f64 / secs,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
