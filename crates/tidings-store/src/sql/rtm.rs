//! SQL for RTM connections: where a new connection starts reading (the app's newest
//! delivery) and the inner events of the deliveries made for an app in a workspace since
//! then. RTM reads the deliveries publish already wrote (same fan-out, scopes and
//! visibility as the Events API) and writes nothing: it never changes a delivery's status.

use super::conn::Conn;
use crate::model::{RtmEvent, RtmScope};
use crate::{params, StoreResult};

/// The newest delivery `seq` of the app (0 when it has none).
pub fn watermark(c: &Conn, app_id: &str) -> StoreResult<i64> {
    c.query_one(
        "SELECT COALESCE(MAX(seq), 0) FROM deliveries WHERE app_id = ?1",
        params![app_id],
        |r| r.get(0),
    )
}

/// Up to `limit` inner events of the app's deliveries in `scope` after `after_seq`,
/// oldest first. Deliveries dropped at publish (rate limited, app disabled) and
/// `app_rate_limited` notices are left out, as the Events API never sends them either.
pub fn events_after(
    c: &Conn,
    app_id: &str,
    scope: &RtmScope,
    after_seq: i64,
    limit: usize,
) -> StoreResult<Vec<RtmEvent>> {
    let (filter, value) = match scope {
        RtmScope::Team(t) => ("d.team_id = ?3", t.clone()),
        RtmScope::Enterprise(e) => ("e.enterprise_id = ?3", e.clone()),
    };
    let sql = format!(
        "SELECT d.seq, e.id, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.app_id = ?1 AND d.seq > ?2 AND {filter}
           AND d.status <> 'dropped' AND e.event_type <> 'app_rate_limited'
         ORDER BY d.seq LIMIT ?4"
    );
    c.query(&sql, params![app_id, after_seq, value, limit as i64], |r| {
        Ok(RtmEvent {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            payload: r.get(2)?,
        })
    })
}
