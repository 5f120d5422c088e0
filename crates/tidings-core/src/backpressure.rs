//! A receiver's back-pressure: what a `429` or `503` with `Retry-After` asks for, as a
//! bounded delay (RFC 9110 §10.2.3: delta-seconds or an HTTP-date). Whatever the header
//! says, the answer is a delay between [`MIN_DELAY`] and the configured cap, and a name
//! for the decision, which the caller logs and counts.

use std::time::Duration;

/// The shortest delay a `Retry-After` leads to (a date in the past, `0`).
pub const MIN_DELAY: Duration = Duration::from_secs(1);
/// The delay for a value that is neither delta-seconds nor an HTTP-date (negative,
/// garbage): the receiver asked to wait, just not how long.
pub const INVALID_DELAY: Duration = Duration::from_secs(5);

/// How a `Retry-After` value was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Delta-seconds, honoured.
    Seconds,
    /// An HTTP-date, honoured.
    Date,
    /// More than the cap: the cap.
    Capped,
    /// A date in the past, or zero: [`MIN_DELAY`].
    Past,
    /// Negative or unreadable: [`INVALID_DELAY`].
    Invalid,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Seconds => "seconds",
            Decision::Date => "date",
            Decision::Capped => "capped",
            Decision::Past => "past",
            Decision::Invalid => "invalid",
        }
    }
}

/// The delay a `Retry-After` value asks for, read at `now` (Unix seconds), bounded by
/// `cap` (itself at least [`MIN_DELAY`]).
pub fn delay(value: &str, now: i64, cap: Duration) -> (Duration, Decision) {
    let cap = cap.max(MIN_DELAY);
    let v = value.trim();
    let (secs, how) = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: delta-seconds (a value too long for u64 is surely past the cap).
        (v.parse::<u64>().unwrap_or(u64::MAX), Decision::Seconds)
    } else if let Ok(at) = httpdate::parse_http_date(v) {
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        (at.saturating_sub(now).max(0) as u64, Decision::Date)
    } else {
        return (INVALID_DELAY.min(cap), Decision::Invalid);
    };
    if secs == 0 {
        (MIN_DELAY, Decision::Past)
    } else if Duration::from_secs(secs) > cap {
        (cap, Decision::Capped)
    } else {
        (Duration::from_secs(secs).max(MIN_DELAY), how)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(600);
    /// Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example date).
    const DATE_SECS: i64 = 784111777;

    #[test]
    fn every_value_becomes_a_bounded_delay_with_a_named_decision() {
        let s = Duration::from_secs;
        let cases: Vec<(&str, i64, Duration, Decision)> = vec![
            ("120", 0, s(120), Decision::Seconds),
            (" 7 ", 0, s(7), Decision::Seconds),
            ("0", 0, MIN_DELAY, Decision::Past),
            ("86400", 0, CAP, Decision::Capped),
            ("99999999999999999999999", 0, CAP, Decision::Capped),
            ("-5", 0, INVALID_DELAY, Decision::Invalid),
            ("soon", 0, INVALID_DELAY, Decision::Invalid),
            ("", 0, INVALID_DELAY, Decision::Invalid),
            ("1.5", 0, INVALID_DELAY, Decision::Invalid),
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                DATE_SECS - 30,
                s(30),
                Decision::Date,
            ),
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                DATE_SECS + 30,
                MIN_DELAY,
                Decision::Past,
            ),
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                DATE_SECS - 100_000,
                CAP,
                Decision::Capped,
            ),
        ];
        for (value, now, want, how) in cases {
            assert_eq!(delay(value, now, CAP), (want, how), "{value:?} at {now}");
        }
    }

    #[test]
    fn a_cap_below_the_minimum_is_the_minimum() {
        assert_eq!(
            delay("30", 0, Duration::ZERO),
            (MIN_DELAY, Decision::Capped)
        );
    }
}
