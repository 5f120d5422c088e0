//! Publishing one event, inside one writer job: the planner (`tidings_core::plan`) decides
//! from the catalog and the directory what the event implies, and this writes it — the
//! directory change, the event and all its deliveries (the outbox) — in the same
//! transaction, so a 2xx means the event and every delivery it implies are durable, and a
//! refusal leaves nothing behind. No catalog or audience rule lives here.

use tidings_core::fanout::{AppSubscriptions, Authorization};
use tidings_core::ids::{self, IdKind};
use tidings_core::plan::{self, ChangeAt, DirectoryView, Disposition, Plan};
use tidings_core::publish::DirectoryChange;

use super::cache::{ConversationFacts, FanoutIndex, RateState, TeamGrants};
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

/// The directory as the planner reads it: the fan-out index over the writer's connection,
/// so every read is inside the publishing transaction.
struct View<'a, 'c> {
    c: &'a Conn<'c>,
    idx: &'a mut FanoutIndex,
    rate_window_secs: i64,
}

impl DirectoryView for View<'_, '_> {
    type Error = StoreError;

    fn conversation(
        &mut self,
        team: &str,
        id: &str,
    ) -> StoreResult<Option<std::sync::Arc<ConversationFacts>>> {
        self.idx.conversation(self.c, team, id)
    }

    fn user_in_team(
        &mut self,
        team: &str,
        enterprise: Option<&str>,
        user: &str,
    ) -> StoreResult<bool> {
        super::directory::user_in_team_id(self.c, team, enterprise, user)
    }

    fn app(&mut self, id: &str) -> StoreResult<Option<std::sync::Arc<AppSubscriptions>>> {
        self.idx.app(self.c, id)
    }

    fn grants(&mut self, team: &str, enterprise: Option<&str>) -> StoreResult<TeamGrants> {
        self.idx.grants(self.c, team, enterprise)
    }

    fn rate(&mut self, app: &str, team: &str, now: i64) -> StoreResult<&mut RateState> {
        self.idx.rate(self.c, app, team, now, self.rate_window_secs)
    }
}

fn refusal(r: plan::Refusal) -> PublishRefusal {
    match r {
        plan::Refusal::BadRequest { field, message } => PublishRefusal::bad_request(field, message),
        plan::Refusal::Unprocessable {
            code,
            field,
            message,
        } => PublishRefusal::unprocessable(code, field, message),
    }
}

/// Publishes one event; `Ok(Err(refusal))` for input the caller must fix. The planner
/// (`tidings_core::plan`) decides; this writes what it decided. What it counts for
/// insights (the event, its drops, or its refusal as too old) goes into `tally`.
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

    let (now_s, micros) = now_parts();
    let rules = plan::Rules {
        catalog: &policy.catalog,
        max_event_age_secs: policy.max_event_age_secs,
        max_future_skew_secs: policy.max_future_skew_secs,
        rate_max: policy.rate_max,
        rate_window_secs: policy.rate_window_secs,
    };
    let request = plan::Request {
        team_id: &team_id,
        enterprise_id: enterprise_id.as_deref(),
        event,
        event_time,
        app_id: app_id.as_deref(),
        now: now_s,
        now_micros: micros,
    };
    let mut view = View {
        c,
        idx: &mut *idx,
        rate_window_secs: policy.rate_window_secs,
    };
    let planned = match plan::plan(&rules, request, &mut view)? {
        Ok(p) => p,
        Err(refused) => {
            if let Some(kind) = &refused.too_old {
                tally.too_old(&team_id, kind, now_s);
            }
            return Ok(Err(refusal(refused.refusal)));
        }
    };
    write_plan(
        c,
        idx,
        planned,
        Written {
            team_id,
            enterprise_id,
            app_id,
            idempotency_key,
            created: now_s,
        },
        tally,
        fresh,
    )
}

/// What the request contributes to the rows a plan writes.
struct Written {
    team_id: String,
    enterprise_id: Option<String>,
    app_id: Option<String>,
    idempotency_key: Option<String>,
    created: i64,
}

/// Writes a plan: the directory change at its time, the event, its deliveries (with the
/// rate-limit notices before the drops that caused them), handing pending ones over.
fn write_plan(
    c: &Conn,
    idx: &mut FanoutIndex,
    plan: Plan<'_>,
    w: Written,
    tally: &mut Tally,
    fresh: &mut Fresh,
) -> StoreResult<Outcome> {
    let Written {
        team_id,
        enterprise_id,
        app_id,
        idempotency_key,
        created,
    } = w;
    let kind = plan.kind;
    if let Some((ch, ChangeAt::BeforeFanout)) = &plan.change {
        apply_change(c, idx, &team_id, ch)?;
    }

    let event_id = ids::sequential(IdKind::Event);
    let payload = serde_json::to_string(&plan.event)?;
    c.execute(
        "INSERT INTO events (id, team_id, enterprise_id, event_type, app_id, channel_id, actor_id, event_time, payload, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![event_id, team_id, enterprise_id, kind.name, app_id, plan.channel, plan.actor, plan.event_time, payload, idempotency_key, created],
    )
    .map_err(|e| match e {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("event id {event_id} collided; publish again"))
        }
        other => other,
    })?;

    // The event as the dispatcher reads it back, built for the first delivery handed over.
    let mut stored: Option<std::sync::Arc<StoredEvent>> = None;
    let count = plan.deliveries.len();
    let mut woken: Vec<String> = Vec::new();
    let mut counted = Tally::default();
    for d in plan.deliveries {
        if let Some(minute) = d.rate_notice {
            rate_notice(c, &d.app_id, &team_id, &d.authorization, minute, created)?;
        }
        let (status, reason) = match d.disposition {
            Disposition::Pending => (DeliveryStatus::Pending, None),
            Disposition::Dropped(r) => {
                counted.settled(&d.app_id, created, Settled::Dropped(r));
                (DeliveryStatus::Dropped, Some(r))
            }
        };
        // A rate-limited app has its notice pending.
        if reason == Some("rate_limited") {
            woken.push(d.app_id.clone());
        }
        let hand_over = status == DeliveryStatus::Pending && fresh.has_room();
        if status == DeliveryStatus::Pending && !hand_over {
            woken.push(d.app_id.clone());
        }
        let delivery_id = ids::sequential(IdKind::Delivery);
        let seq: i64 = c.insert_seq(
            "INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, reason, auth, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            params![
                delivery_id,
                event_id,
                d.app_id,
                team_id,
                kind.name,
                status.as_str(),
                reason,
                serde_json::to_string(&d.authorization)?,
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
                        app_id: app_id.clone(),
                        channel_id: plan.channel.clone(),
                        actor_id: plan.actor.clone(),
                        event_time: plan.event_time,
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
                    app_id: d.app_id,
                    team_id: team_id.clone(),
                    event_type: kind.name.clone(),
                    status,
                    reason: None,
                    authorization: d.authorization,
                    created_at: created,
                    attempts: Vec::new(),
                },
                event,
                attempts: 0,
                redeliver: false,
                lease: None,
            });
        }
    }

    if let Some((ch, ChangeAt::AfterFanout)) = &plan.change {
        apply_change(c, idx, &team_id, ch)?;
    }
    counted.event(
        &team_id,
        &kind.name,
        plan.event_time,
        insights::event_user(&plan.event),
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

/// Queues the `app_rate_limited` notice for `minute` (notices are not counted against the
/// limit).
fn rate_notice(
    c: &Conn,
    app_id: &str,
    team_id: &str,
    auth: &Authorization,
    minute: i64,
    now_secs: i64,
) -> StoreResult<()> {
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
    Ok(())
}

/// Applies a directory change implied by an event (the planner checked its references),
/// keeping the index in step.
fn apply_change(
    c: &Conn,
    idx: &mut FanoutIndex,
    team: &str,
    change: &DirectoryChange,
) -> StoreResult<()> {
    super::cluster::bump_directory(c)?;
    match change {
        DirectoryChange::CreateChannel { id, name, creator } => {
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
            c.execute(
                "INSERT INTO users (id, team_id, name, real_name, is_admin, is_bot, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING",
                params![id, team, name, real_name, is_bot, now()],
            )?;
        }
    }
    Ok(())
}

fn add_member(c: &Conn, team: &str, conv: &str, user: &str) -> StoreResult<()> {
    c.execute(
        "INSERT INTO conversation_members (team_id, conversation_id, user_id) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![team, conv, user],
    )?;
    Ok(())
}
