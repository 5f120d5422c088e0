//! Tests of the Socket Mode hub: tickets, rotation, acks, limits, ending connections.

use super::*;

fn hub(max: usize) -> SocketHub {
    SocketHub::new(SocketConfig {
        ack_timeout: Duration::from_secs(3),
        max_connections_per_app: max,
        ticket_ttl: Duration::from_millis(200),
    })
}

#[test]
fn tickets_are_single_use_expire_and_belong_to_one_app() {
    let h = hub(10);
    let t = h.issue_ticket("A1", "At1", false);
    assert!(h.redeem(&t, Some("A2")).is_none(), "another app's id");
    let t = h.issue_ticket("A1", "At1", true);
    assert!(h.redeem(&t, Some("A1")).unwrap().debug_reconnects);
    assert!(h.redeem(&t, Some("A1")).is_none(), "used");
    let t = h.issue_ticket("A1", "At1", false);
    std::thread::sleep(Duration::from_millis(250));
    assert!(h.redeem(&t, None).is_none(), "expired");
}

#[tokio::test]
async fn envelopes_are_spread_over_connections_and_acks_complete_them() {
    let h = hub(10);
    let mut a = h.register("A1", "At1").unwrap();
    let mut b = h.register("A1", "At1").unwrap();
    assert_eq!(b.num_connections, 2);
    let w1 = h.send("A1", "e1", "one".into()).unwrap();
    let w2 = h.send("A1", "e2", "two".into()).unwrap();
    assert_eq!(a.outbound.recv().await, Some(Outbound::Text("one".into())));
    assert_eq!(b.outbound.recv().await, Some(Outbound::Text("two".into())));
    assert!(!h.ack("A2", "e1"), "another app cannot ack");
    assert!(h.ack("A1", "e1"));
    assert!(w1.await.is_ok());
    assert!(!h.ack("A1", "e1"), "twice");
    let listed = h.list("A1");
    assert_eq!(
        listed
            .iter()
            .map(|c| (c.id, c.pending_acks))
            .collect::<Vec<_>>(),
        vec![(a.id, 0), (b.id, 1)],
        "oldest first, with the envelope b has not acked"
    );
    assert!(listed.iter().all(|c| c.opened_at > 0));
    h.unregister("A1", b.id);
    assert_eq!(h.list("A1").len(), 1);
    assert!(h.list("A2").is_empty());
    assert!(
        w2.await.is_err(),
        "closing a connection fails its pending envelopes"
    );
}

#[tokio::test]
async fn a_connection_told_to_go_away_gets_envelopes_only_when_it_is_the_last() {
    let h = hub(10);
    let mut old = h.register("A1", "At1").unwrap();
    let mut new = h.register("A1", "At1").unwrap();
    h.going_away("A1", old.id);
    for e in ["e1", "e2", "e3"] {
        let _wait = h.send("A1", e, e.into()).unwrap();
        assert_eq!(new.outbound.recv().await, Some(Outbound::Text(e.into())));
    }
    assert!(old.outbound.try_recv().is_err(), "nothing on the old one");
    h.unregister("A1", new.id);
    let _wait = h.send("A1", "e4", "e4".into()).unwrap();
    assert_eq!(old.outbound.recv().await, Some(Outbound::Text("e4".into())));
}

#[tokio::test]
async fn ending_a_token_ends_its_connections_only_and_fails_their_envelopes() {
    let h = hub(10);
    let mut a = h.register("A1", "At1").unwrap();
    let mut b = h.register("A1", "At2").unwrap();
    let w1 = h.send("A1", "e1", "one".into()).unwrap();
    assert_eq!(a.outbound.recv().await, Some(Outbound::Text("one".into())));
    assert_eq!(h.tokens_in_use().len(), 2);
    let ended = h.end_token("A1", "At1", "bye");
    assert_eq!(ended.count(), 1);
    assert_eq!(a.ending.ended().await, "bye");
    assert!(
        a.ending.writing().await.is_none(),
        "no more envelopes on it"
    );
    assert!(w1.await.is_err(), "its un-acked envelope failed at once");
    ended.settled().await;
    for e in ["e2", "e3"] {
        let _wait = h.send("A1", e, e.into()).unwrap();
        assert_eq!(b.outbound.recv().await, Some(Outbound::Text(e.into())));
    }
    assert!(
        b.ending.writing().await.is_some(),
        "the other token's stays"
    );
    assert_eq!(
        h.tokens_in_use(),
        vec![("A1".to_string(), "At2".to_string())]
    );
    assert_eq!(h.end_token("A1", "At1", "bye").count(), 0, "once");
    assert_eq!(h.close_app("A1", "off".into()).count(), 1);
    assert_eq!(b.ending.ended().await, "off");
    assert_eq!(
        h.send("A1", "e4", "x".into()).err(),
        Some(SendError::NoConnection)
    );
}

#[tokio::test]
async fn settled_waits_for_a_write_in_progress() {
    let h = hub(10);
    let r = h.register("A1", "At1").unwrap();
    let writing = r.ending.writing().await.expect("open");
    let ended = h.end_token("A1", "At1", "bye");
    let settle = tokio::spawn(ended.settled());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!settle.is_finished(), "the write in progress is waited for");
    drop(writing);
    tokio::time::timeout(Duration::from_secs(1), settle)
        .await
        .expect("settled once the write ended")
        .unwrap();
}

#[test]
fn the_connection_limit_is_enforced_and_no_connection_is_an_error() {
    let h = hub(1);
    let r = h.register("A1", "At1").unwrap();
    assert!(h.register("A1", "At1").is_none());
    h.unregister("A1", r.id);
    assert_eq!(h.connections("A1"), 0);
    assert_eq!(
        h.send("A1", "e", "x".into()).err(),
        Some(SendError::NoConnection)
    );
}
