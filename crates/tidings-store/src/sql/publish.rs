//! Publishing one event, inside one writer job: validate it against the catalog and the
//! directory, apply the directory changes it implies, fan it out, and write the event with
//! all its deliveries (the outbox) — all in the same transaction, so a 2xx means the event
//! and every delivery it implies are durable, and a refusal leaves nothing behind.

use serde_json::Value;
use tidings_core::catalog::{Audience, EventType};
use tidings_core::fanout::{self, EventFacts};
use tidings_core::ids::{self, IdKind};
use tidings_core::policy;
use tidings_core::publish::{self as rules, DirectoryChange};

use super::cache::FanoutIndex;
use super::conn::Conn;
use super::now;
use crate::insights::{self, Settled, Tally};
use crate::model::*;
use crate::params;
use crate::{StoreError, StoreResult};

type Outcome = Result<Published, PublishRefusal>;

/// The pending deliveries a publish wrote, kept for the dispatcher (see
/// [`super::work`]), up to `room` of them; the apps of the rest are woken instead.
pub struct Fresh {
    pub rows: Vec<DueDelivery>,
    room: usize,
}

impl Fresh {
    pub fn with_room(room: usize) -> Fresh {
        Fresh {
            rows: Vec::new(),
            room,
        }
    }

    fn has_room(&self) -> bool {
        self.rows.len() < self.room
    }
}

fn refuse<T>(
    code: &'static str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> StoreResult<Result<T, PublishRefusal>> {
    Ok(Err(PublishRefusal::unprocessable(code, field, message)))
}

/// Now, in seconds and the microseconds within the second.
fn now_parts() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_micros())
}

/// Publishes one event; `Ok(Err(refusal))` for input the caller must fix. What it counts
/// for insights (the event, its drops, or its refusal as too old) goes into `tally`.
pub fn publish_one(
    c: &Conn,
    idx: &mut FanoutIndex,
    policy: &PublishPolicy,
    req: PublishRequest,
    tally: &mut Tally,
    fresh: &mut Fresh,
) -> StoreResult<Outcome> {
    let PublishRequest {
        team_id,
        event,
        event_time,
        idempotency_key,
        app_id,
    } = req;
    let mut event = Value::Object(event);

    let Some(enterprise_id) = idx.team(c, &team_id)? else {
        return refuse(
            "unknown_team",
            "team_id",
            format!("team {team_id} does not exist"),
        );
    };

    if let Some(key) = &idempotency_key {
        let first: Option<String> = c.query_opt(
            "SELECT id FROM events WHERE team_id = ?1 AND idempotency_key = ?2",
            params![team_id, key],
            |r| r.get(0),
        )?;
        if let Some(event_id) = first {
            let n: i64 = c.query_one(
                "SELECT COUNT(*) FROM deliveries WHERE event_id = ?1",
                params![event_id],
                |r| r.get(0),
            )?;
            return Ok(Ok(Published {
                event_id,
                deliveries: n as usize,
                duplicate: true,
                apps: Vec::new(),
            }));
        }
    }

    // Which catalog entry: by inner type, and for messages by channel type, derived from
    // the conversation when the event does not say.
    let inner_type = match event.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => {
            return Ok(Err(PublishRefusal::bad_request(
                "event.type",
                "is required and must be a string",
            )))
        }
    };
    let declared_channel_type = event
        .get("channel_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut kind: Option<&EventType> = policy
        .catalog
        .resolve(&inner_type, declared_channel_type.as_deref());
    let mut derived_channel_type = None;
    if kind.is_none() && declared_channel_type.is_none() {
        if let Some(ch) = event.get("channel").and_then(Value::as_str) {
            if let Some(conv) = idx.conversation(c, &team_id, ch)? {
                let ct = conv.kind.channel_type();
                kind = policy.catalog.resolve(&inner_type, Some(ct));
                derived_channel_type = Some(ct);
            } else if policy.catalog.iter().any(|k| k.inner_type == inner_type) {
                return refuse(
                    "unknown_channel",
                    "event.channel",
                    format!("conversation {ch} does not exist in team {team_id}"),
                );
            }
        }
    }
    let Some(kind) = kind else {
        return refuse(
            "unknown_event_type",
            "event.type",
            format!("{inner_type:?} is not an event type in the catalog"),
        );
    };
    if let (Some(ct), Some(_)) = (derived_channel_type, &kind.channel_type) {
        event["channel_type"] = ct.into();
    }

    let (now_s, micros) = now_parts();
    let event_time = event_time.unwrap_or(now_s);
    if let Err(r) = rules::check_event_time(
        event_time,
        now_s,
        policy.max_event_age_secs,
        policy.max_future_skew_secs,
    ) {
        if r == rules::TimeRefusal::TooOld {
            tally.too_old(&team_id, &kind.name, now_s);
        }
        let msg = match r {
            rules::TimeRefusal::TooOld => "is older than the maximum event age",
            rules::TimeRefusal::InFuture => "is too far in the future",
        };
        return refuse(r.code(), "event_time", msg);
    }

    // References: the conversation, the acting user, the app.
    let (audience, channel) = rules::audience(kind, &event);
    let channel = channel.map(str::to_string);
    if let (Audience::Conversation, Some(ch)) = (audience, &channel) {
        if idx.conversation(c, &team_id, ch)?.is_none() {
            let field = rules::pointer_field(kind.channel_field.as_deref().unwrap_or("/channel"));
            return refuse(
                "unknown_channel",
                field,
                format!("conversation {ch} does not exist in team {team_id}"),
            );
        }
    }
    let actor = kind
        .user_field
        .as_deref()
        .and_then(|p| rules::pointer_str(&event, p))
        .map(str::to_string);
    let user_field = kind
        .user_field
        .as_deref()
        .map(rules::pointer_field)
        .unwrap_or_else(|| "event.user".into());
    if audience == Audience::User && actor.is_none() {
        return refuse(
            "missing_user",
            user_field,
            "this event is a private action of one user and must name them",
        );
    }
    if let Some(u) = &actor {
        if inner_type != "team_join"
            && !super::directory::user_in_team_id(c, &team_id, enterprise_id.as_deref(), u)?
        {
            return refuse(
                "unknown_user",
                user_field,
                format!("user {u} is not a member of team {team_id}"),
            );
        }
    }
    let app = match (&app_id, audience) {
        (Some(a), _) => match idx.app(c, a)? {
            Some(app) => Some(app),
            None => return refuse("unknown_app", "app_id", format!("app {a} does not exist")),
        },
        (None, Audience::App) => {
            return refuse(
                "missing_app",
                "app_id",
                "an app event must name the app it is about",
            )
        }
        (None, _) => None,
    };

    let change = match rules::directory_change(&inner_type, &event) {
        Ok(ch) => ch,
        Err((field, msg)) => return Ok(Err(PublishRefusal::bad_request(field, msg))),
    };
    if let Some(ch) = &change {
        if ch.before_fanout() {
            if let Err(r) = apply_change(c, idx, &team_id, enterprise_id.as_deref(), ch)? {
                return Ok(Err(r));
            }
        }
    }

    if event.get("event_ts").is_none() {
        event["event_ts"] = rules::event_ts(event_time, micros).into();
    }
    let mentions = fanout::event_mentions(kind, &event);
    let facts = EventFacts {
        kind,
        audience,
        actor: actor.as_deref(),
        app_id: app.as_ref().map(|a| a.subs.id.as_str()),
        mentions: &mentions,
    };

    let event_id = ids::sequential(IdKind::Event);
    let payload = serde_json::to_string(&event)?;
    let created = now();
    c.execute(
        "INSERT INTO events (id, team_id, enterprise_id, event_type, app_id, channel_id, actor_id, event_time, payload, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![event_id, team_id, enterprise_id, kind.name, app_id, channel, actor, event_time, payload, idempotency_key, created],
    )
    .map_err(|e| match e {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("event id {event_id} collided; publish again"))
        }
        other => other,
    })?;

    let conversation = match (&channel, audience) {
        (Some(ch), Audience::Conversation) => idx.conversation(c, &team_id, ch)?,
        _ => None,
    };
    let is_member = |u: &str| {
        conversation
            .as_ref()
            .is_some_and(|cv| cv.members.contains(u))
    };
    let grants = idx.grants(c, &team_id, enterprise_id.as_deref())?;
    // The event as the dispatcher reads it back, built for the first delivery handed over.
    let app_id_of_event = app_id.clone();
    let mut stored: Option<std::sync::Arc<StoredEvent>> = None;
    let mut count = 0;
    let mut woken: Vec<String> = Vec::new();
    let mut counted = Tally::default();
    for (app_id, app_grants) in grants.iter() {
        let Some(entry) = idx.app(c, app_id)? else {
            continue;
        };
        let Some(auth) =
            fanout::delivery_authorization(&facts, &entry.subs, app_grants, &is_member)
        else {
            continue;
        };
        let (status, reason) = if !entry.subs.events_enabled {
            (DeliveryStatus::Dropped, Some("app_disabled"))
        } else if rate_limited(c, idx, policy, app_id, &team_id, &auth, created)? {
            // The app_rate_limited notice (if one was queued) is pending for this app.
            woken.push(app_id.clone());
            (DeliveryStatus::Dropped, Some("rate_limited"))
        } else {
            (DeliveryStatus::Pending, None)
        };
        if let Some(r) = reason {
            counted.settled(app_id, created, Settled::Dropped(r));
        }
        let hand_over = status == DeliveryStatus::Pending && fresh.has_room();
        if status == DeliveryStatus::Pending && !hand_over {
            woken.push(app_id.clone());
        }
        let delivery_id = ids::sequential(IdKind::Delivery);
        let seq: i64 = c.insert_seq(
            "INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, reason, auth, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            params![
                delivery_id,
                event_id,
                app_id,
                team_id,
                kind.name,
                status.as_str(),
                reason,
                serde_json::to_string(&auth)?,
                created * 1000,
                created
            ],
        )?;
        if hand_over {
            let event = stored
                .get_or_insert_with(|| {
                    std::sync::Arc::new(StoredEvent {
                        id: event_id.clone(),
                        team_id: team_id.clone(),
                        enterprise_id: enterprise_id.clone(),
                        event_type: kind.name.clone(),
                        app_id: app_id_of_event.clone(),
                        channel_id: channel.clone(),
                        actor_id: actor.clone(),
                        event_time,
                        payload: payload.clone(),
                        idempotency_key: idempotency_key.clone(),
                        created_at: created,
                    })
                })
                .clone();
            fresh.rows.push(DueDelivery {
                delivery: Delivery {
                    id: delivery_id,
                    seq,
                    event_id: event_id.clone(),
                    app_id: app_id.clone(),
                    team_id: team_id.clone(),
                    event_type: kind.name.clone(),
                    status,
                    reason: None,
                    authorization: auth,
                    created_at: created,
                    attempts: Vec::new(),
                },
                event,
                attempts: 0,
                redeliver: false,
                lease: None,
            });
        }
        count += 1;
    }

    if let Some(ch) = &change {
        if !ch.before_fanout() {
            if let Err(r) = apply_change(c, idx, &team_id, enterprise_id.as_deref(), ch)? {
                return Ok(Err(r));
            }
        }
    }
    counted.event(
        &team_id,
        &kind.name,
        event_time,
        insights::event_user(&event),
    );
    tally.merge(counted);
    woken.sort();
    woken.dedup();
    Ok(Ok(Published {
        event_id,
        deliveries: count,
        duplicate: false,
        apps: woken,
    }))
}

/// Counts a delivery against (app, team)'s rate window; past the limit, answers true and
/// queues one `app_rate_limited` notice for the minute (notices are not counted).
fn rate_limited(
    c: &Conn,
    idx: &mut FanoutIndex,
    policy: &PublishPolicy,
    app_id: &str,
    team_id: &str,
    auth: &tidings_core::fanout::Authorization,
    now_secs: i64,
) -> StoreResult<bool> {
    let minute = policy::minute_of(now_secs);
    let window = policy::window_minutes(std::time::Duration::from_secs(
        policy.rate_window_secs.max(60) as u64,
    ));
    let state = idx.rate(c, app_id, team_id, now_secs, policy.rate_window_secs)?;
    if policy::rate_allows(state.window.total(minute, window), policy.rate_max) {
        state.window.add(minute, 1);
        return Ok(false);
    }
    if state.notified_minute != Some(minute) {
        state.notified_minute = Some(minute);
        let notice_id = ids::sequential(IdKind::Event);
        let payload = serde_json::json!({"minute_rate_limited": minute * 60}).to_string();
        c.execute(
            "INSERT INTO events (id, team_id, event_type, app_id, event_time, payload, created_at)
             VALUES (?1, ?2, 'app_rate_limited', ?3, ?4, ?5, ?4)",
            params![notice_id, team_id, app_id, now_secs, payload],
        )?;
        c.execute(
            "INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, auth, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'app_rate_limited', 'pending', ?5, ?6, ?7, ?7)",
            params![ids::sequential(IdKind::Delivery), notice_id, app_id, team_id, serde_json::to_string(auth)?, now_secs * 1000, now_secs],
        )?;
        tracing::warn!(
            app = app_id,
            team = team_id,
            minute = minute * 60,
            "app rate limited"
        );
        metrics::counter!("tidings_rate_limited_minutes_total").increment(1);
    }
    Ok(true)
}

/// Applies a directory change implied by an event, keeping the index in step.
fn apply_change(
    c: &Conn,
    idx: &mut FanoutIndex,
    team: &str,
    enterprise: Option<&str>,
    change: &DirectoryChange,
) -> StoreResult<Result<(), PublishRefusal>> {
    super::cluster::bump_directory(c)?;
    let user_ok = |u: &str| super::directory::user_in_team_id(c, team, enterprise, u);
    match change {
        DirectoryChange::CreateChannel { id, name, creator } => {
            if ids::check(IdKind::Conversation, id).is_err() {
                return Ok(Err(PublishRefusal::bad_request(
                    "event.channel.id",
                    format!("{id:?} is not a conversation id"),
                )));
            }
            if let Some(u) = creator {
                if !user_ok(u)? {
                    return refuse(
                        "unknown_user",
                        "event.channel.creator",
                        format!("user {u} is not a member of team {team}"),
                    );
                }
            }
            c.execute(
                "INSERT INTO conversations (team_id, id, name, kind, created_at) VALUES (?1, ?2, ?3, 'public', ?4)
                 ON CONFLICT (team_id, id) DO UPDATE SET name = excluded.name",
                params![team, id, name, now()],
            )?;
            if let Some(u) = creator {
                add_member(c, team, id, u)?;
            }
            idx.invalidate_conversation(team, id);
        }
        DirectoryChange::RenameChannel { id, name } => {
            c.execute(
                "UPDATE conversations SET name = ?3 WHERE team_id = ?1 AND id = ?2",
                params![team, id, name],
            )?;
        }
        DirectoryChange::DeleteChannel { id } => {
            c.execute(
                "DELETE FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2",
                params![team, id],
            )?;
            c.execute(
                "DELETE FROM conversations WHERE team_id = ?1 AND id = ?2",
                params![team, id],
            )?;
            idx.invalidate_conversation(team, id);
        }
        DirectoryChange::Join { channel, user } => {
            if !user_ok(user)? {
                return refuse(
                    "unknown_user",
                    "event.user",
                    format!("user {user} is not a member of team {team}"),
                );
            }
            if idx.conversation(c, team, channel)?.is_none() {
                return refuse(
                    "unknown_channel",
                    "event.channel",
                    format!("conversation {channel} does not exist in team {team}"),
                );
            }
            add_member(c, team, channel, user)?;
            idx.invalidate_conversation(team, channel);
        }
        DirectoryChange::Leave { channel, user } => {
            c.execute(
                "DELETE FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
                params![team, channel, user],
            )?;
            idx.invalidate_conversation(team, channel);
        }
        DirectoryChange::AddUser {
            id,
            name,
            real_name,
            is_bot,
        } => {
            if ids::check(IdKind::User, id).is_err() {
                return Ok(Err(PublishRefusal::bad_request(
                    "event.user.id",
                    format!("{id:?} is not a user id"),
                )));
            }
            c.execute(
                "INSERT INTO users (id, team_id, name, real_name, is_admin, is_bot, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING",
                params![id, team, name, real_name, is_bot, now()],
            )?;
        }
    }
    Ok(Ok(()))
}

fn add_member(c: &Conn, team: &str, conv: &str, user: &str) -> StoreResult<()> {
    c.execute(
        "INSERT INTO conversation_members (team_id, conversation_id, user_id) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![team, conv, user],
    )?;
    Ok(())
}
