//! SQL for reading events and deliveries, the server secret for `event_context`, and the
//! on-demand audience of an event for `apps.event.authorizations.list`.

use tidings_core::catalog::Catalog;
use tidings_core::fanout::{self, Authorization, EventFacts, Grant};
use tidings_core::publish as rules;

use super::conn::{Conn, Row};
use super::rows;
use crate::model::*;
use crate::params;
use crate::{Page, PageRequest, StoreError, StoreResult};

/// The `event_context` signing key, created on first use. Several processes may start at
/// once on one database: each offers a key, the first one stored wins, and all read that.
pub fn context_key(c: &Conn) -> StoreResult<Vec<u8>> {
    let read = || {
        c.query_opt(
            "SELECT value FROM settings WHERE key = 'event_context_key'",
            params![],
            |r| r.get::<String>(0),
        )
    };
    let hexed = match read()? {
        Some(v) => v,
        None => {
            c.execute(
                "INSERT INTO settings (key, value) VALUES ('event_context_key', ?1)
                 ON CONFLICT (key) DO NOTHING",
                params![tidings_core::token::random_hex(32)],
            )?;
            read()?
                .ok_or_else(|| StoreError::Internal("settings.event_context_key vanished".into()))?
        }
    };
    hex::decode(hexed).map_err(|e| StoreError::Internal(format!("settings.event_context_key: {e}")))
}

const EVENT: &str = "id, team_id, enterprise_id, event_type, app_id, channel_id, actor_id, event_time, payload, idempotency_key, created_at";
/// [`EVENT`] qualified with the alias `e`, for joins.
pub const EVENT_COLUMNS_E: &str = "e.id, e.team_id, e.enterprise_id, e.event_type, e.app_id, e.channel_id, e.actor_id, e.event_time, e.payload, e.idempotency_key, e.created_at";

fn event(r: &Row) -> StoreResult<StoredEvent> {
    map_event(r, 0)
}

/// An event from the columns starting at `o`.
pub fn map_event(r: &Row, o: usize) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        id: r.get(o)?,
        team_id: r.get(o + 1)?,
        enterprise_id: r.get(o + 2)?,
        event_type: r.get(o + 3)?,
        app_id: r.get(o + 4)?,
        channel_id: r.get(o + 5)?,
        actor_id: r.get(o + 6)?,
        event_time: r.get(o + 7)?,
        payload: r.get(o + 8)?,
        idempotency_key: r.get(o + 9)?,
        created_at: r.get(o + 10)?,
    })
}

pub fn get_event(c: &Conn, id: &str) -> StoreResult<Option<StoredEvent>> {
    c.query_opt(
        &format!("SELECT {EVENT} FROM events WHERE id = ?1"),
        params![id],
        event,
    )
}

const DELIVERY: &str =
    "seq, id, event_id, app_id, team_id, event_type, status, reason, auth, created_at";

/// The delivery columns qualified with a table alias.
pub fn delivery_columns(alias: &str) -> String {
    DELIVERY
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn map_delivery(r: &Row) -> StoreResult<Delivery> {
    let status: String = r.get(6)?;
    let auth: String = r.get(8)?;
    Ok(Delivery {
        seq: r.get(0)?,
        id: r.get(1)?,
        event_id: r.get(2)?,
        app_id: r.get(3)?,
        team_id: r.get(4)?,
        event_type: r.get(5)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        reason: r.get(7)?,
        authorization: serde_json::from_str(&auth)?,
        created_at: r.get(9)?,
        attempts: Vec::new(),
    })
}

/// A delivery's attempts, in order (`?1`: its seq). Read through the attempt log's primary
/// key, its one index (see migration 13's test).
pub(crate) const ATTEMPTS_OF_DELIVERY: &str = "SELECT at, transport, status_code, reason, latency_ms, retry_num FROM delivery_attempts WHERE delivery_seq = ?1 ORDER BY n";

fn with_attempts(c: &Conn, mut list: Vec<Delivery>) -> StoreResult<Vec<Delivery>> {
    for d in &mut list {
        d.attempts = c.query(ATTEMPTS_OF_DELIVERY, params![d.seq], |r| {
            Ok(Attempt {
                at: r.get(0)?,
                transport: r.get(1)?,
                status_code: r.get(2)?,
                reason: r.get(3)?,
                latency_ms: r.get(4)?,
                retry_num: r.get(5)?,
            })
        })?;
    }
    Ok(list)
}

pub fn event_deliveries(c: &Conn, event_id: &str) -> StoreResult<Vec<Delivery>> {
    let list = c.query(
        &format!("SELECT {DELIVERY} FROM deliveries WHERE event_id = ?1 ORDER BY seq"),
        params![event_id],
        map_delivery,
    )?;
    with_attempts(c, list)
}

pub fn get_delivery(c: &Conn, id: &str) -> StoreResult<Option<Delivery>> {
    let d = c.query_opt(
        &format!("SELECT {DELIVERY} FROM deliveries WHERE id = ?1"),
        params![id],
        map_delivery,
    )?;
    Ok(with_attempts(c, d.into_iter().collect())?.pop())
}

/// An app's deliveries, newest first, filtered; the cursor is the last `seq` seen.
pub fn list_deliveries(
    c: &Conn,
    app_id: &str,
    f: &DeliveryFilter,
    page: &PageRequest,
) -> StoreResult<Page<Delivery>> {
    let before: Option<i64> = match &page.after {
        Some(k) => Some(
            k.parse()
                .map_err(|_| StoreError::Invalid("cursor is not valid".into()))?,
        ),
        None => None,
    };
    let rows = c.query(
        &format!(
            "SELECT {DELIVERY} FROM deliveries
             WHERE app_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR team_id = ?3)
               AND (?4 IS NULL OR event_type = ?4) AND (?5 IS NULL OR created_at >= ?5)
               AND (?6 IS NULL OR created_at <= ?6) AND (?7 IS NULL OR seq < ?7)
             ORDER BY seq DESC LIMIT ?8"
        ),
        params![
            app_id,
            f.status.map(DeliveryStatus::as_str),
            f.team_id,
            f.event_type,
            f.since,
            f.until,
            before,
            page.limit as i64 + 1
        ],
        map_delivery,
    )?;
    let page = Page::from_rows(rows, page.limit, |d| d.seq.to_string());
    Ok(Page {
        items: with_attempts(c, page.items)?,
        next_cursor: page.next_cursor,
    })
}

/// The catch-up feed: an app's deliveries with their events, oldest first (by `seq`, the
/// order they were written), from `oldest` (Unix seconds) and after `after` (a seq).
pub fn feed(c: &Conn, app_id: &str, q: &FeedQuery) -> StoreResult<Vec<(Delivery, StoredEvent)>> {
    c.query(
        &format!(
            "SELECT {}, {EVENT_COLUMNS_E} FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.app_id = ?1 AND d.created_at >= ?2 AND d.seq > ?3
               AND (?4 IS NULL OR d.team_id = ?4) AND (?5 IS NULL OR d.status = ?5)
             ORDER BY d.seq LIMIT ?6",
            delivery_columns("d")
        ),
        params![
            app_id,
            q.oldest,
            q.after.unwrap_or(0),
            q.team_id,
            q.status.map(DeliveryStatus::as_str),
            q.limit as i64
        ],
        |r| Ok((map_delivery(r)?, map_event(r, 10)?)),
    )
}

/// Every installation of `app_id` that can see the event now, in fan-out order; `None`
/// when the event or the app does not exist.
pub fn audience(
    c: &Conn,
    catalog: &Catalog,
    event_id: &str,
    app_id: &str,
) -> StoreResult<Option<Vec<Authorization>>> {
    let Some(ev) = get_event(c, event_id)? else {
        return Ok(None);
    };
    let Some(app) = super::apps::get_app(c, app_id)? else {
        return Ok(None);
    };
    let Some(kind) = catalog.get(&ev.event_type) else {
        return Ok(Some(Vec::new()));
    };
    let payload: serde_json::Value = serde_json::from_str(&ev.payload)?;
    let (audience, channel) = rules::audience(kind, &payload);
    let members: std::collections::HashSet<String> = match channel {
        Some(ch) => c
            .query(
                "SELECT user_id FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2",
                params![ev.team_id, ch],
                |r| r.get::<String>(0),
            )?
            .into_iter()
            .collect(),
        None => Default::default(),
    };
    let grants: Vec<Grant> = c
        .query(
            &format!(
                "SELECT {} FROM installations WHERE app_id = ?1 AND revoked_at IS NULL
                   AND (team_id = ?2 OR (team_id IS NULL AND ?3 IS NOT NULL AND enterprise_id = ?3)) ORDER BY id",
                rows::INSTALLATION
            ),
            params![app_id, ev.team_id, ev.enterprise_id],
            rows::installation,
        )?
        .into_iter()
        .map(rows::grant)
        .collect();
    let text_mentions = fanout::event_mentions(kind, &payload);
    let facts = EventFacts {
        kind,
        audience,
        actor: ev.actor_id.as_deref(),
        app_id: ev.app_id.as_deref(),
        mentions: &text_mentions,
    };
    let subs = fanout::AppSubscriptions {
        id: app.id,
        bot_events: app.bot_events,
        user_events: app.user_events,
        events_enabled: app.events_enabled,
    };
    Ok(Some(fanout::visible_authorizations(
        &facts,
        &subs,
        &grants,
        &|u| members.contains(u),
    )))
}
