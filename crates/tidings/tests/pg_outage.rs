//! PostgreSQL going away and coming back, for real: the server reaches the database
//! through a TCP relay on 127.0.0.1 that the test cuts (every connection dropped, new
//! ones refused) and restores. While it is cut, publishing fails fast with 503 and a clear
//! error, never a 2xx, and `/readyz` says so; once restored, everything resumes and every
//! event acknowledged before the cut is delivered.
//!
//! Runs when `TIDINGS_TEST_DATABASE_URL` is set (see `cluster.rs`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::pg::Schema;
use support::receiver::Receiver;
use support::Server;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay to PostgreSQL that can be cut and restored.
struct Relay {
    addr: std::net::SocketAddr,
    target: String,
    state: Arc<Mutex<RelayState>>,
}

#[derive(Default)]
struct RelayState {
    cut: bool,
    links: Vec<JoinHandle<()>>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = Relay {
            addr,
            target: target.to_string(),
            state: Arc::default(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        let (state, target) = (self.state.clone(), self.target.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                state.lock().unwrap().links.push(link);
            }
        });
        self.state.lock().unwrap().accept = Some(accept);
    }

    /// Drops every connection and stops listening (new connections are refused).
    fn cut(&self) {
        let mut st = self.state.lock().unwrap();
        st.cut = true;
        if let Some(a) = st.accept.take() {
            a.abort();
        }
        for l in st.links.drain(..) {
            l.abort();
        }
    }

    /// Listens again on the same port.
    async fn restore(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.state.lock().unwrap().cut = false;
        self.serve(listener);
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    let hp = rest.split('/').next().unwrap();
    if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:5432")
    }
}

// Multi-threaded: the relay must keep serving while the test thread waits for the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_fails_fast_while_postgres_is_unreachable_and_nothing_is_lost() {
    let Some(base) = support::pg::url() else {
        eprintln!(
            "postgres outage: needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run on SQLite"
        );
        return;
    };
    let schema = Schema::create(&base);
    let target = host_port(&base);
    let relay = Relay::start(&target).await;
    let via_relay = schema.url().replacen(&target, &relay.addr.to_string(), 1);
    let s = Server::start_with(&[
        ("TIDINGS_SERVER_DATABASE_URL", via_relay.as_str()),
        (
            "TIDINGS_DELIVERY_RETRY_SCHEDULE",
            r#"["0s","200ms","400ms"]"#,
        ),
    ]);
    let r = Receiver::start().await;
    s.app_in_channel(
        json!({"id": "A01", "name": "a", "bot_events": ["message.channels"], "request_url": r.url}),
    )
    .await;
    let first = s.say("before the outage").await;
    s.wait_status(&first, "delivered").await;

    // Events acknowledged just before the cut: some are still to be delivered.
    let mut acked = Vec::new();
    for i in 0..30 {
        acked.push(s.say(&format!("just before {i}")).await);
    }
    relay.cut();

    let started = Instant::now();
    let (status, body) = s
        .admin(
            "POST",
            "/events",
            Some(json!({"team_id": "T01", "event": {"type": "message", "channel": "C01", "user": "U01", "text": "during"}})),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        status, 503,
        "a publish during the outage is refused: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("PostgreSQL")),
        "the error says what is wrong: {body}"
    );
    assert!(took < Duration::from_secs(10), "failed fast, in {took:?}");
    let ready = Server::client()
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.restore().await;
    let mut ready = false;
    for _ in 0..100 {
        let res = Server::client()
            .get(format!("{}/readyz", s.url))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz recovers once PostgreSQL is back");
    let after = s.say("after the outage").await;
    acked.push(after);
    r.wait_for(30, "every acknowledged event after the outage", |hits| {
        let got: std::collections::HashSet<String> = hits
            .iter()
            .filter_map(|h| h.json()["event_id"].as_str().map(str::to_string))
            .collect();
        acked.iter().all(|e| got.contains(e))
    })
    .await;
    drop(s);
    drop(schema);
}
