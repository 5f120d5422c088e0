//! `POST /admin/v1/events` and `/events/batch`: a publisher's body parsed, shape-checked,
//! then read by the catalog as publishing reads it; `event_time` checked and `event_ts` made.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::catalog::Catalog;
use tidings_core::publish;

const MAX_EVENT_BYTES: usize = 4096;

fn check(catalog: &Catalog, r: tidings_store::PublishRequest) {
    assert!(r
        .event
        .get("type")
        .is_some_and(serde_json::Value::is_string));
    if let Some(t) = r.event_time {
        let _ = publish::check_event_time(t, 1_700_000_000, 72 * 3600, 300);
        let _ = publish::check_event_time(t, t, i64::MAX, i64::MAX);
        let ts = publish::event_ts(t, 999_999);
        assert!(ts.ends_with(".999999"), "{ts}");
    }
    tidings_fuzz::event_fields(catalog, &serde_json::Value::Object(r.event));
}

fuzz_target!(|data: &[u8]| {
    let catalog = Catalog::builtin();
    if let Ok(r) = tidings_server::fuzzing::publish_request(data, MAX_EVENT_BYTES) {
        check(&catalog, r);
    }
    if let Ok(results) = tidings_server::fuzzing::publish_batch(data, MAX_EVENT_BYTES) {
        for r in results.into_iter().flatten() {
            check(&catalog, r);
        }
    }
});
