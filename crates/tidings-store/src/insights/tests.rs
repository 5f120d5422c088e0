use super::*;

#[test]
fn buckets_floor_and_ceil_in_utc() {
    assert_eq!(Granularity::Minute.floor(125), 120);
    assert_eq!(Granularity::Hour.floor(7_199), 3_600);
    assert_eq!(Granularity::Day.floor(86_399), 0);
    assert_eq!(Granularity::Day.floor(-1), -86_400);
    assert_eq!(Granularity::Hour.ceil(3_600), 3_600);
    assert_eq!(Granularity::Hour.ceil(3_601), 7_200);
}

#[test]
fn automatic_granularity_follows_the_range() {
    assert_eq!(Granularity::auto(3_600), Granularity::Minute);
    assert_eq!(Granularity::auto(86_400), Granularity::Hour);
    assert_eq!(Granularity::auto(30 * 86_400), Granularity::Day);
}

#[test]
fn a_range_must_be_ordered_and_not_too_many_buckets() {
    assert!(InsightRange::new(None, 10, 10, Granularity::Minute).is_err());
    assert!(InsightRange::new(None, 0, 30 * 86_400, Granularity::Minute).is_ok());
    let (field, e) = InsightRange::new(None, 0, 60 * 86_400, Granularity::Minute).unwrap_err();
    assert_eq!(field, "from");
    assert!(e.contains("coarser"), "{e}");
    assert!(InsightRange::new(None, 0, 60 * 86_400, Granularity::Hour).is_ok());
}

#[test]
fn ranges_at_the_ends_of_i64_are_refused_naming_the_field_not_overflowed() {
    for g in Granularity::ALL {
        let (field, e) = InsightRange::new(None, i64::MIN, 3_600, g).unwrap_err();
        assert_eq!(field, "from", "{e}");
        let (field, _) = InsightRange::new(None, 0, i64::MAX, g).unwrap_err();
        assert_eq!(field, "to");
        let (field, _) = InsightRange::new(None, -1, 60, g).unwrap_err();
        assert_eq!(field, "from");
        let (field, e) = InsightRange::new(None, 0, *super::TIMES.end(), g).unwrap_err();
        assert_eq!(
            field, "from",
            "a valid but huge range is too many buckets: {e}"
        );
    }
}

#[test]
fn user_spans_use_whole_days_inside_and_hours_around_them() {
    let day = 86_400;
    // 10:30 on day 1 to 05:10 on day 4: days 2 and 3 whole, hours 10..24 of day 1 and
    // 0..6 of day 4.
    let r = InsightRange::new(
        None,
        day + 10 * 3_600 + 1_800,
        4 * day + 5 * 3_600 + 600,
        Granularity::Hour,
    )
    .unwrap();
    assert_eq!(
        r.user_spans(),
        (2 * day, 4 * day, day + 10 * 3_600, 4 * day + 6 * 3_600)
    );
    // Inside one day: hours only, the day span empty.
    let r = InsightRange::new(None, 3_600, 3 * 3_600, Granularity::Minute).unwrap();
    let (df, dt, hf, ht) = r.user_spans();
    assert_eq!(df, dt);
    assert_eq!((hf, ht), (3_600, 3 * 3_600));
}

#[test]
fn latency_bins_and_quantiles() {
    assert_eq!(latency_bin(0), 0);
    assert_eq!(latency_bin(1), 0);
    assert_eq!(latency_bin(3), 2);
    assert_eq!(latency_bin(10_000), 12);
    assert_eq!(latency_bin(60_000), 13);
    let mut h = [0u64; LATENCY_BINS];
    assert_eq!(latency_quantile(&h, 0.5), None);
    h[latency_bin(4)] = 100; // all in (2, 5]
    let p50 = latency_quantile(&h, 0.5).unwrap();
    assert!((2.0..=5.0).contains(&p50), "{p50}");
    h[latency_bin(60_000)] = 1;
    assert_eq!(latency_quantile(&h, 1.0), Some(10_000.0));
    let p99 = latency_quantile(&h, 0.99).unwrap();
    assert!(p99 <= 5.0, "{p99}");
}

#[test]
fn an_event_counts_under_its_team_type_and_the_rollups_at_every_granularity() {
    let mut t = Tally::default();
    t.event("T1", "message.channels", 3_700, Some("U1"));
    t.event("T1", "message.channels", 3_710, Some("U1"));
    t.event("T2", "reaction_added", 90, None);
    t.expand();
    let get = |g, team: &str, ty: &str, b| {
        t.events
            .get(&EventKey {
                g,
                team_id: team.into(),
                event_type: ty.into(),
                bucket: b,
            })
            .map(|a| a.events)
    };
    assert_eq!(
        get(Granularity::Minute, "T1", "message.channels", 3_660),
        Some(2)
    );
    assert_eq!(get(Granularity::Hour, "T1", ALL, 3_600), Some(2));
    assert_eq!(get(Granularity::Day, ALL, ALL, 0), Some(3));
    assert_eq!(get(Granularity::Minute, ALL, "reaction_added", 60), Some(1));
    // Users: hour and day sets only, deduplicated, under the four scopes.
    assert_eq!(t.users.len(), 2 * 4);
    assert!(t
        .users
        .iter()
        .all(|u| u.user_id == "U1" && u.g != Granularity::Minute));
}

#[test]
fn too_old_refusals_count_apart_from_events() {
    let mut t = Tally::default();
    t.too_old("T1", "message.channels", 120);
    t.expand();
    let a = t.events[&EventKey {
        g: Granularity::Minute,
        team_id: ALL.into(),
        event_type: ALL.into(),
        bucket: 120,
    }];
    assert_eq!((a.events, a.too_old), (0, 1));
    assert!(t.users.is_empty());
}

#[test]
fn attempts_and_endings_count_per_app() {
    let mut t = Tally::default();
    t.attempt("A1", 65, false, 3, None);
    t.attempt("A1", 70, true, 3_000, Some("timeout"));
    t.settled("A1", 70, Settled::GaveUp("timeout"));
    t.settled("A1", 70, Settled::Dropped("rate_limited"));
    let c = t.deliveries[&DeliveryKey {
        g: Granularity::Minute,
        bucket: 60,
        app_id: "A1".into(),
    }];
    assert_eq!((c.attempts, c.succeeded, c.failed, c.retries), (2, 1, 1, 1));
    assert_eq!((c.gave_up, c.dropped, c.delivered), (1, 1, 0));
    assert_eq!(c.latency.iter().sum::<u64>(), 2);
    let n = |kind, reason: &str| {
        t.reasons[&ReasonKey {
            delivery: DeliveryKey {
                g: Granularity::Day,
                bucket: 0,
                app_id: "A1".into(),
            },
            kind,
            reason: reason.into(),
        }]
    };
    assert_eq!(n(ReasonKind::Attempt, "timeout"), 1);
    assert_eq!(n(ReasonKind::Failed, "timeout"), 1);
    assert_eq!(n(ReasonKind::Dropped, "rate_limited"), 1);
}

#[test]
fn merging_tallies_adds_their_counts() {
    let mut a = Tally::default();
    a.event("T1", "x", 0, Some("U1"));
    let mut b = Tally::default();
    b.event("T1", "x", 0, Some("U2"));
    b.attempt("A1", 0, false, 1, None);
    a.merge(b);
    a.expand();
    let k = EventKey {
        g: Granularity::Day,
        team_id: "T1".into(),
        event_type: "x".into(),
        bucket: 0,
    };
    assert_eq!(a.events[&k].events, 2);
    assert_eq!(a.users.len(), 16);
    assert_eq!(a.deliveries.len(), 3);
}

#[test]
fn the_acting_user_comes_from_user_or_user_id() {
    use serde_json::json;
    assert_eq!(event_user(&json!({"user": "U1"})), Some("U1"));
    assert_eq!(event_user(&json!({"user": {"id": "U2"}})), Some("U2"));
    assert_eq!(event_user(&json!({"user_id": "U3"})), Some("U3"));
    assert_eq!(event_user(&json!({"channel": "C1"})), None);
}
