//! The dispatcher's rules in paused tokio time, against an in-memory queue and a scripted
//! transport: retries on the schedule, holds while an app has no transport, pacing of an
//! unreachable endpoint, and the per-app in-flight limit. Time moves only when every task
//! waits, so the times asserted are exact, not raced.

use std::sync::Arc;
use std::time::Duration;

use tidings_core::catalog::Catalog;
use tidings_store::{DeliveryStatus, WorkNotice};

use super::{DispatchConfig, Dispatcher, Parts};
use crate::clock::{Clock, TokioClock};
use crate::testing::{app, row, MemQueue, Script};

const T0: i64 = 1_700_000_000_000;

fn config(schedule: &[u64], per_app: usize) -> DispatchConfig {
    DispatchConfig {
        retry_schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
        max_in_flight_per_app: per_app,
        max_in_flight_total: 1_000,
        hold_recheck: Duration::from_secs(5),
        socket_hold_time: Duration::from_secs(60),
        retry_after_budget: 3,
    }
}

struct Rig {
    clock: Arc<dyn Clock>,
    queue: Arc<MemQueue>,
    script: Arc<Script>,
    _dispatcher: Arc<Dispatcher>,
}

/// A running dispatcher with app A1 (Socket Mode with `socket`), whose sends take
/// `latency` and answer `answer(seq)`.
fn rig(
    cfg: DispatchConfig,
    socket: bool,
    latency: Duration,
    answer: impl Fn(i64) -> Option<&'static str> + Send + Sync + 'static,
) -> Rig {
    let clock: Arc<dyn Clock> = TokioClock::starting_at(T0);
    let queue = MemQueue::new(clock.clone());
    queue.put_app(app("A1", socket));
    let script = Script::new(clock.clone(), latency, answer);
    let parts = Parts {
        queue: queue.clone(),
        catalog: Arc::new(Catalog::builtin()),
        http: script.clone(),
        socket: script.clone(),
        on_attempt: Arc::new(|_: &str, _: bool, _: bool| {}),
        on_gone: Arc::new(|_: &str, _: &str| {}),
        clock: clock.clone(),
    };
    let dispatcher = Dispatcher::new(parts, cfg);
    dispatcher.spawn();
    Rig {
        clock,
        queue,
        script,
        _dispatcher: dispatcher,
    }
}

impl Rig {
    /// Publishes deliveries `seqs` of A1 and rings as the store does.
    fn publish(&self, seqs: impl IntoIterator<Item = i64>) {
        let rows: Vec<_> = seqs.into_iter().map(|s| row(s, "A1")).collect();
        self.queue.publish(&rows);
        self.queue.ring(WorkNotice {
            handed_over: rows,
            ..WorkNotice::default()
        });
    }

    /// Lets virtual time run until `done` holds (checked every virtual 10 ms), for at
    /// most `limit` of it.
    async fn until(&self, limit: Duration, done: impl Fn(&Rig) -> bool) {
        let end = self.clock.now_ms() + limit.as_millis() as i64;
        while !done(self) && self.clock.now_ms() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_delivery_is_retried_on_the_schedule_then_fails() {
    let r = rig(config(&[1, 60, 300], 8), false, Duration::ZERO, |_| {
        Some("http_error")
    });
    r.publish([1]);
    r.until(Duration::from_secs(600), |r| {
        r.queue.status(1) != DeliveryStatus::Pending
    })
    .await;
    assert_eq!(r.queue.status(1), DeliveryStatus::Failed);
    let seen = r.script.seen();
    let offsets: Vec<i64> = seen.iter().map(|s| (s.at_ms - T0) / 1000).collect();
    assert_eq!(
        offsets,
        vec![0, 1, 61, 361],
        "first try, then 1 s, 60 s, 300 s later"
    );
    let nums: Vec<u32> = seen.iter().map(|s| s.retry_num).collect();
    assert_eq!(nums, vec![0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_delivers() {
    let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = tries.clone();
    let r = rig(config(&[0, 60], 8), false, Duration::ZERO, move |_| {
        // The first attempt fails, the second succeeds.
        (t.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0).then_some("http_timeout")
    });
    r.publish([1]);
    r.until(Duration::from_secs(10), |r| {
        r.queue.status(1) != DeliveryStatus::Pending
    })
    .await;
    assert_eq!(r.queue.status(1), DeliveryStatus::Delivered);
    assert_eq!(r.script.seen().len(), 2, "an immediate retry, then done");
}

#[tokio::test(start_paused = true)]
async fn a_held_delivery_waits_for_its_transport_and_goes_when_the_doorbell_rings() {
    let r = rig(config(&[0], 8), true, Duration::ZERO, |_| None);
    r.script
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    r.publish([1, 2]);
    // Held: nothing is sent and nothing fails while the connection is missing.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(r.script.seen().is_empty());
    assert_eq!(r.queue.pending(), 2);
    // A socket opens: the store rings for the app.
    r.script
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let at = r.clock.now_ms();
    r.queue.ring(WorkNotice {
        apps: vec!["A1".into()],
        ..WorkNotice::default()
    });
    r.until(Duration::from_secs(1), |r| r.queue.pending() == 0)
        .await;
    assert_eq!(r.queue.status(1), DeliveryStatus::Delivered);
    assert_eq!(r.queue.status(2), DeliveryStatus::Delivered);
    assert!(
        r.script.seen().iter().all(|s| s.at_ms == at),
        "sent at the ring, not at the next recheck"
    );
}

#[tokio::test(start_paused = true)]
async fn a_socket_mode_delivery_held_past_the_hold_time_fails() {
    let r = rig(config(&[0], 8), true, Duration::ZERO, |_| None);
    r.script
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    r.publish([1]);
    r.until(Duration::from_secs(120), |r| r.queue.pending() == 0)
        .await;
    assert_eq!(r.queue.status(1), DeliveryStatus::Failed);
    assert!(r.script.seen().is_empty(), "never sent");
    let waited = r.clock.now_ms() - T0;
    assert!(
        (60_000..=70_000).contains(&waited),
        "failed at the first recheck past the 60 s hold, after {waited} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_endpoint_is_paced() {
    let r = rig(
        config(&[3600], 64),
        false,
        Duration::from_millis(10),
        |_| Some("connection_failed"),
    );
    r.publish(1..=2_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tried = r.script.seen().len();
    // Unpaced, 64 at a time every 10 ms would try all 2,000 in about 0.3 s. Paced after
    // the first failures: at most `PROBES` per `PACE_MS`.
    let paced_most = 64 + crate::lane::PROBES * (1000 / crate::lane::PACE_MS as usize) + 64;
    assert!(tried > 0 && tried <= paced_most, "{tried} attempts in 1 s");
    assert!(
        r.queue.pending() == 2_000,
        "first attempts failed: retries in an hour"
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_never_has_more_attempts_under_way_than_its_limit() {
    let r = rig(config(&[0], 5), false, Duration::from_millis(50), |_| None);
    r.publish(1..=200);
    r.until(Duration::from_secs(60), |r| r.queue.pending() == 0)
        .await;
    assert_eq!(r.queue.pending(), 0, "all delivered");
    let most = r.script.most_busy.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 5, "the lane fills to its width and no further");
}
