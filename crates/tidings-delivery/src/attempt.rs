//! One attempt as typed stages, the same for both transports:
//! [`prepare`] (the envelope and retry headers, once per delivery) → send over a
//! [`crate::transport::Transport`] → [`conclude`] (what follows: delivered, a retry on
//! Slack's schedule, or failed). Prepare and conclude are pure: the clock and the
//! schedule come in as arguments, so the retry rules are table-tested here.

use std::time::Duration;

use bytes::Bytes;
use tidings_core::catalog::Catalog;
use tidings_core::policy::{self, FailureReason};
use tidings_store::{App, Attempt, AttemptOutcome, DueDelivery, NextStep};

use crate::transport::{Prepared, Tried};

/// The envelope `row` sends to `app`, with its retry headers.
pub fn prepare(
    catalog: &Catalog,
    key: &[u8],
    schedule: &[Duration],
    row: &DueDelivery,
    app: &App,
) -> Result<Prepared, String> {
    let body = crate::envelope::for_delivery(catalog, key, &row.event, &row.delivery, app)?;
    Ok(Prepared {
        body: Bytes::from(body),
        retry_num: policy::retry_num(schedule, row.attempts, row.redeliver),
        retry_reason: row
            .delivery
            .reason
            .clone()
            .unwrap_or_else(|| FailureReason::UnknownError.as_str().into()),
    })
}

/// What follows an attempt made over `transport` that ended at `now_ms`: delivered; a
/// retry on the schedule (not after an operator's redelivery, nor when the app said
/// `X-Slack-No-Retry`); or failed once the schedule is spent.
pub fn conclude(
    schedule: &[Duration],
    row: &DueDelivery,
    transport: &str,
    tried: &Tried,
    now_ms: i64,
) -> AttemptOutcome {
    let latency_ms = tried.latency.as_millis() as i64;
    let attempt = Attempt {
        at: now_ms - latency_ms,
        transport: transport.to_string(),
        status_code: tried.status_code,
        reason: tried.failure.map(str::to_string),
        latency_ms,
        retry_num: policy::retry_num(schedule, row.attempts, row.redeliver),
    };
    let next = match tried.failure {
        None => NextStep::Delivered,
        Some(reason) if row.redeliver || tried.no_retry => NextStep::Failed {
            reason: reason.into(),
        },
        Some(reason) => match policy::retry_delay(schedule, row.attempts + 1) {
            Some(d) => NextStep::Retry {
                at_ms: now_ms + d.as_millis() as i64,
                reason: reason.into(),
            },
            None => NextStep::Failed {
                reason: reason.into(),
            },
        },
    };
    AttemptOutcome {
        seq: row.delivery.seq,
        lease: row.lease,
        attempt: Some(attempt),
        next,
    }
}

/// The delivery's envelope cannot be built (a bug, logged): it fails without an attempt.
pub fn unbuildable(row: &DueDelivery, e: &str) -> AttemptOutcome {
    tracing::error!(delivery = %row.delivery.id, error = %e, "cannot build the envelope");
    AttemptOutcome {
        seq: row.delivery.seq,
        lease: row.lease,
        attempt: None,
        next: NextStep::Failed {
            reason: FailureReason::UnknownError.as_str().into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::row;

    fn slack() -> Vec<Duration> {
        vec![
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(300),
        ]
    }

    fn tried(failure: Option<&'static str>, no_retry: bool) -> Tried {
        Tried {
            status_code: None,
            failure,
            latency: Duration::from_millis(7),
            no_retry,
            retry_after: None,
            gone: false,
        }
    }

    /// (attempts made before, redelivered, failure, no-retry, next step, retry number)
    type Case = (u32, bool, Option<&'static str>, bool, NextStep, u32);

    #[test]
    fn each_attempt_leads_where_slacks_schedule_says() {
        let s = slack();
        let fail = Some("http_error");
        let cases: Vec<Case> = vec![
            (0, false, None, false, NextStep::Delivered, 0),
            (
                0,
                false,
                fail,
                false,
                NextStep::Retry {
                    at_ms: 10_000,
                    reason: "http_error".into(),
                },
                0,
            ),
            (
                1,
                false,
                fail,
                false,
                NextStep::Retry {
                    at_ms: 70_000,
                    reason: "http_error".into(),
                },
                1,
            ),
            (
                2,
                false,
                fail,
                false,
                NextStep::Retry {
                    at_ms: 310_000,
                    reason: "http_error".into(),
                },
                2,
            ),
            (
                3,
                false,
                fail,
                false,
                NextStep::Failed {
                    reason: "http_error".into(),
                },
                3,
            ),
            // A take-over at the last retry: one more send, still numbered as the last.
            (
                4,
                false,
                fail,
                false,
                NextStep::Failed {
                    reason: "http_error".into(),
                },
                3,
            ),
            (
                0,
                false,
                fail,
                true,
                NextStep::Failed {
                    reason: "http_error".into(),
                },
                0,
            ),
            (
                2,
                true,
                fail,
                false,
                NextStep::Failed {
                    reason: "http_error".into(),
                },
                0,
            ),
        ];
        for (made, redeliver, failure, no_retry, next, retry_num) in cases {
            let mut r = row(1, "A1");
            r.attempts = made;
            r.redeliver = redeliver;
            let o = conclude(&s, &r, "http", &tried(failure, no_retry), 10_000);
            assert_eq!(o.next, next, "{made} {redeliver} {failure:?} {no_retry}");
            let a = o.attempt.expect("an attempt was made");
            assert_eq!(a.retry_num, retry_num, "{made} {redeliver}");
            assert_eq!((a.at, a.latency_ms), (9_993, 7));
        }
    }
}
