//! `/admin/v1/insights/*` range parameters (`from`, `to`, `granularity`): the query string
//! read and checked into a range, then the bucket and distinct-user spans computed from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_store::insights::{InsightRange, MAX_BUCKETS};

fn check(r: &InsightRange) {
    let (from, to) = (r.bucket_from(), r.bucket_to());
    let g = r.granularity.secs();
    assert!(from <= r.from && r.to <= to && from < to);
    assert_eq!((from % g, to % g), (0, 0));
    assert!((to - from) / g <= MAX_BUCKETS);
    let (df, dt, hf, ht) = r.user_spans();
    assert!(hf <= df && df <= dt && dt <= ht, "{:?}", (df, dt, hf, ht));
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    for r in [
        tidings_server::fuzzing::insights_events_range(q),
        tidings_server::fuzzing::insights_deliveries_range(q),
    ] {
        match r {
            Ok(r) => check(&r),
            Err(p) => assert!(p.status == 400 || p.status == 422, "{}", p.status),
        }
    }
});
