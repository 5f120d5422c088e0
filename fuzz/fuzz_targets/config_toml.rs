//! The configuration: TOML text, then `TIDINGS_*` environment overrides (after a NUL byte,
//! one `NAME=value` a line), checked; then the catalog built with its custom event types,
//! as start-up does, and every duration put through the arithmetic the server does with it
//! (Unix seconds and milliseconds as i64, added to now).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tidings_core::catalog::Catalog;
use tidings_server::config::Config;

/// Now, in milliseconds, at the end of this century: durations are added to it.
const NOW_MS: i64 = 4_102_444_800_000;

fn durations(c: &Config) -> Vec<(&'static str, Duration)> {
    let mut v = vec![
        ("delivery.timeout", c.delivery.timeout),
        ("rate_limit.window", c.rate_limit.window),
        ("health.window", c.health.window),
        ("events.max_event_age", c.events.max_event_age),
        ("events.max_future_skew", c.events.max_future_skew),
        ("socket_mode.ack_timeout", c.socket_mode.ack_timeout),
        ("socket_mode.ticket_ttl", c.socket_mode.ticket_ttl),
        (
            "socket_mode.connection_lifetime",
            c.socket_mode.connection_lifetime,
        ),
        ("socket_mode.ping_interval", c.socket_mode.ping_interval),
        ("socket_mode.hold_time", c.socket_mode.hold_time),
        ("database.lease", c.database.lease),
    ];
    v.extend(
        c.delivery
            .retry_schedule
            .iter()
            .map(|d| ("delivery.retry_schedule", *d)),
    );
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(cfg) = Config::parse(Some(toml), "config fuzz.toml", env) else {
        return;
    };
    let _ = cfg.public_url(None);
    for (key, d) in durations(&cfg) {
        let ms = i64::try_from(d.as_millis()).ok();
        assert!(
            ms.and_then(|ms| NOW_MS.checked_add(ms)).is_some()
                && ms.and_then(|ms| NOW_MS.checked_sub(ms)).is_some(),
            "{key} = {d:?} does not fit the server's i64 millisecond arithmetic"
        );
    }
    if let Ok(catalog) = Catalog::with_custom(cfg.events.custom.clone()) {
        for t in &cfg.events.custom {
            assert!(catalog.get(&t.name).is_some());
        }
    }
});
