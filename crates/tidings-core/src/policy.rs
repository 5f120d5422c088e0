//! Delivery policies as pure functions of (state, clock): Slack's retry schedule, the
//! failure reasons, the per-app-per-team rate limit and the health (auto-disable) rule.
//! Every number comes from configuration; the defaults are Slack's.

use std::collections::VecDeque;
use std::time::Duration;

/// Why an attempt failed (SLACK-WIRE.md §1.7); also sent as `X-Slack-Retry-Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    HttpTimeout,
    TooManyRedirects,
    ConnectionFailed,
    SslError,
    HttpError,
    UnknownError,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::HttpTimeout => "http_timeout",
            FailureReason::TooManyRedirects => "too_many_redirects",
            FailureReason::ConnectionFailed => "connection_failed",
            FailureReason::SslError => "ssl_error",
            FailureReason::HttpError => "http_error",
            FailureReason::UnknownError => "unknown_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::HttpTimeout,
            Self::TooManyRedirects,
            Self::ConnectionFailed,
            Self::SslError,
            Self::HttpError,
            Self::UnknownError,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// When to try again after a failed attempt: `schedule[i]` is the delay before retry
/// `i + 1`; `attempts_made` counts attempts so far, the first included. `None` once the
/// schedule is spent (the delivery is then `failed`).
pub fn retry_delay(schedule: &[Duration], attempts_made: u32) -> Option<Duration> {
    let i = attempts_made.checked_sub(1)? as usize;
    schedule.get(i).copied()
}

/// The `X-Slack-Retry-Num` (and Socket Mode `retry_attempt`) of the next attempt after
/// `attempts_made`: 0 for a first attempt or an operator's redelivery, and never more than
/// the schedule has retries. A take-over of a lease at the last retry counts one attempt
/// more than Slack ever sends (its result is unknown): the number stays at the last
/// retry's.
pub fn retry_num(schedule: &[Duration], attempts_made: u32, redeliver: bool) -> u32 {
    if redeliver {
        return 0;
    }
    attempts_made.min(u32::try_from(schedule.len()).unwrap_or(u32::MAX))
}

/// Counts per minute over a sliding window of whole minutes. Old minutes fall off as
/// newer ones are added or read, so memory is bounded by the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteWindow {
    /// (minute since epoch, count), ascending.
    buckets: VecDeque<(i64, u64)>,
}

impl MinuteWindow {
    pub fn add(&mut self, minute: i64, n: u64) {
        match self.buckets.iter_mut().rev().find(|(m, _)| *m == minute) {
            Some((_, c)) => *c += n,
            None => {
                let pos = self
                    .buckets
                    .iter()
                    .position(|(m, _)| *m > minute)
                    .unwrap_or(self.buckets.len());
                self.buckets.insert(pos, (minute, n));
            }
        }
    }

    /// The total over the `window_minutes` minutes ending with `now_minute`, dropping
    /// minutes older than that.
    pub fn total(&mut self, now_minute: i64, window_minutes: i64) -> u64 {
        let oldest = now_minute - window_minutes + 1;
        while self.buckets.front().is_some_and(|(m, _)| *m < oldest) {
            self.buckets.pop_front();
        }
        self.buckets
            .iter()
            .filter(|(m, _)| *m <= now_minute)
            .map(|(_, c)| c)
            .sum()
    }
}

/// Minute number of a Unix time in seconds.
pub fn minute_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(60)
}

/// Whole minutes in a window (at least one).
pub fn window_minutes(window: Duration) -> i64 {
    (window.as_secs() as i64 / 60).max(1)
}

/// Whether one more delivery fits under the rate limit, given how many the window holds.
/// An (app, team) pair's rate window: deliveries per minute, and the last minute an
/// `app_rate_limited` notice went out.
#[derive(Debug, Default, Clone)]
pub struct RateState {
    pub window: MinuteWindow,
    pub notified_minute: Option<i64>,
}

pub fn rate_allows(delivered_in_window: u64, max_deliveries: u32) -> bool {
    delivered_in_window < u64::from(max_deliveries)
}

/// The health rule: disable an app whose attempts in the window succeeded less than
/// `min_success_ratio`, when it received at least `min_events` events in it.
pub fn should_disable(
    successes: u64,
    failures: u64,
    events: u64,
    min_success_ratio: f64,
    min_events: u32,
) -> bool {
    let attempts = successes + failures;
    events >= u64::from(min_events)
        && attempts > 0
        && (successes as f64) < min_success_ratio * attempts as f64
}

/// A duration in the largest unit that states it exactly: "90s", "5m", "72h", "1500ms".
/// The same form configuration durations are written in.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack() -> Vec<Duration> {
        vec![
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(300),
        ]
    }

    #[test]
    fn the_retry_number_never_passes_the_schedule() {
        let s = slack();
        // (attempts made, redelivered) -> X-Slack-Retry-Num
        for (made, redeliver, want) in [
            (0, false, 0),
            (1, false, 1),
            (3, false, 3),
            (4, false, 3), // a take-over at the last retry
            (9, false, 3),
            (2, true, 0),
        ] {
            assert_eq!(retry_num(&s, made, redeliver), want, "{made} {redeliver}");
        }
        assert_eq!(retry_num(&[], 2, false), 0);
    }

    #[test]
    fn three_retries_at_zero_one_and_five_minutes_then_none() {
        let s = slack();
        assert_eq!(retry_delay(&s, 1), Some(Duration::ZERO));
        assert_eq!(retry_delay(&s, 2), Some(Duration::from_secs(60)));
        assert_eq!(retry_delay(&s, 3), Some(Duration::from_secs(300)));
        assert_eq!(retry_delay(&s, 4), None);
        assert_eq!(retry_delay(&s, 0), None);
    }

    #[test]
    fn reasons_round_trip_through_their_wire_names() {
        for r in [
            "http_timeout",
            "too_many_redirects",
            "connection_failed",
            "ssl_error",
            "http_error",
            "unknown_error",
        ] {
            assert_eq!(FailureReason::parse(r).unwrap().as_str(), r);
        }
        assert_eq!(FailureReason::parse("timeout"), None);
    }

    #[test]
    fn a_minute_window_forgets_what_slid_out() {
        let mut w = MinuteWindow::default();
        w.add(100, 5);
        w.add(130, 7);
        w.add(159, 1);
        assert_eq!(w.total(159, 60), 13);
        assert_eq!(w.total(160, 60), 8, "minute 100 slid out");
        assert_eq!(w.total(220, 60), 0);
        w.add(221, 2);
        w.add(219, 3);
        assert_eq!(w.total(221, 60), 5);
    }

    #[test]
    fn the_rate_limit_allows_exactly_the_maximum() {
        assert!(rate_allows(29_999, 30_000));
        assert!(!rate_allows(30_000, 30_000));
    }

    #[test]
    fn apps_are_disabled_only_past_95_percent_failures_with_enough_volume() {
        assert!(should_disable(49, 951, 1000, 0.05, 1000));
        assert!(
            !should_disable(50, 950, 1000, 0.05, 1000),
            "exactly 5 % success is healthy"
        );
        assert!(
            !should_disable(0, 999, 999, 0.05, 1000),
            "below the minimum volume"
        );
        assert!(!should_disable(0, 0, 5000, 0.05, 1000));
    }
}
