//! The publish planner (HOT-PATH.md, station 1): from a publish request and a read-only
//! view of the directory, decide everything an event implies — which catalog type it is,
//! whether it is refused and why, the directory change it makes and when, which apps get a
//! delivery under which authorization, which are dropped (disabled app, rate limit) and
//! which rate-limit notices go out — as a [`Plan`] the store writes without a rule of its
//! own.
//!
//! No SQL and no I/O: the [`DirectoryView`] is implemented by the store over the writer's
//! connection (so its reads are inside the publishing transaction), and by plain maps in
//! the tests next to this file. The rate windows the view hands out are counted here, as
//! the deliveries are planned, exactly as the writer commits them.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::catalog::{Audience, Catalog, EventType};
use crate::fanout::{self, AppSubscriptions, Authorization, EventFacts, Grant};
use crate::ids::{self, IdKind};
use crate::policy::{self, RateState};
use crate::publish::{self as rules, DirectoryChange, TimeRefusal};

/// A conversation as the planner needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConversationFacts {
    /// The `channel_type` Slack puts on message events in it.
    pub channel_type: &'static str,
    pub members: HashSet<String>,
}

/// A team's active installations (team installs and org-wide installs of its
/// enterprise), grouped by app id in a stable order.
pub type TeamGrants = Arc<Vec<(String, Vec<Grant>)>>;

/// What the planner reads of the directory. Lookups may fail with the store's error, which
/// the planner passes through untouched.
pub trait DirectoryView {
    type Error;
    fn conversation(
        &mut self,
        team: &str,
        id: &str,
    ) -> Result<Option<Arc<ConversationFacts>>, Self::Error>;
    /// Whether `user` belongs to `team` (or to its enterprise).
    fn user_in_team(
        &mut self,
        team: &str,
        enterprise: Option<&str>,
        user: &str,
    ) -> Result<bool, Self::Error>;
    fn app(&mut self, id: &str) -> Result<Option<Arc<AppSubscriptions>>, Self::Error>;
    fn grants(&mut self, team: &str, enterprise: Option<&str>) -> Result<TeamGrants, Self::Error>;
    /// The rate window of (app, team) as of `now` (Unix seconds); the planner counts the
    /// deliveries it plans into it.
    fn rate(&mut self, app: &str, team: &str, now: i64) -> Result<&mut RateState, Self::Error>;
}

/// The publish rules in force.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub catalog: &'a Catalog,
    pub max_event_age_secs: i64,
    pub max_future_skew_secs: i64,
    /// Deliveries per app per team per `rate_window_secs`.
    pub rate_max: u32,
    pub rate_window_secs: i64,
}

/// One event to plan. The team is known to exist (its enterprise is given).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub team_id: &'a str,
    pub enterprise_id: Option<&'a str>,
    pub event: Map<String, Value>,
    pub event_time: Option<i64>,
    pub app_id: Option<&'a str>,
    /// Now, in Unix seconds and the microseconds within the second.
    pub now: i64,
    pub now_micros: u32,
}

/// Why an event is refused: a 400 (the request is malformed) or a 422 with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadRequest {
        field: String,
        message: String,
    },
    Unprocessable {
        code: &'static str,
        field: String,
        message: String,
    },
}

/// A refused event, and the catalog type it was counted under as too old (insights count
/// the events publishers sent past the age limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    pub too_old: Option<String>,
}

fn unprocessable<T>(
    code: &'static str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, Refused> {
    Err(Refused {
        refusal: Refusal::Unprocessable {
            code,
            field: field.into(),
            message: message.into(),
        },
        too_old: None,
    })
}

fn bad_request<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, Refused> {
    Err(Refused {
        refusal: Refusal::BadRequest {
            field: field.into(),
            message: message.into(),
        },
        too_old: None,
    })
}

/// What becomes of one planned delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Pending,
    /// Written as dropped with this reason (`app_disabled`, `rate_limited`).
    Dropped(&'static str),
}

/// One delivery of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDelivery {
    pub app_id: String,
    pub authorization: Authorization,
    pub disposition: Disposition,
    /// The minute (since the epoch) an `app_rate_limited` notice goes out for, to the same
    /// authorization, written before this delivery: the first drop of the minute.
    pub rate_notice: Option<i64>,
}

/// When the event's directory change is applied relative to its fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAt {
    /// So a joining member sees its own join.
    BeforeFanout,
    /// So a leaving member still sees its leave.
    AfterFanout,
}

/// Everything a published event implies, for the store to write.
#[derive(Debug, Clone)]
pub struct Plan<'c> {
    pub kind: &'c EventType,
    /// The inner event as stored and sent (`channel_type` and `event_ts` filled in).
    pub event: Value,
    pub event_time: i64,
    /// The conversation a conversation event is about.
    pub channel: Option<String>,
    /// The acting user (catalog `user_field`).
    pub actor: Option<String>,
    pub change: Option<(DirectoryChange, ChangeAt)>,
    /// One per app that gets the event, in the view's grant order.
    pub deliveries: Vec<PlannedDelivery>,
}

/// Plans one event. `Ok(Err(_))` is a refusal for the caller to answer; `Err(_)` is the
/// view's own failure.
pub fn plan<'c, V: DirectoryView>(
    rules: &Rules<'c>,
    req: Request<'_>,
    view: &mut V,
) -> Result<Result<Plan<'c>, Refused>, V::Error> {
    Planner { rules, req, view }.run()
}

struct Planner<'r, 'c, 'q, V> {
    rules: &'r Rules<'c>,
    req: Request<'q>,
    view: &'r mut V,
}

/// `?` for the view's errors inside a function answering `Result<Result<_, Refused>, E>`.
macro_rules! refused {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        }
    };
}

impl<'c, V: DirectoryView> Planner<'_, 'c, '_, V> {
    fn run(self) -> Result<Result<Plan<'c>, Refused>, V::Error> {
        let Planner { rules, req, view } = self;
        let team = req.team_id;
        let enterprise = req.enterprise_id;
        let mut event = Value::Object(req.event);

        // Which catalog entry: by inner type, and for messages by channel type, derived
        // from the conversation when the event does not say.
        let inner_type = match event.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => {
                return Ok(bad_request(
                    "event.type",
                    "is required and must be a string",
                ))
            }
        };
        let declared_channel_type = event
            .get("channel_type")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut kind = rules
            .catalog
            .resolve(&inner_type, declared_channel_type.as_deref());
        let mut derived_channel_type = None;
        if kind.is_none() && declared_channel_type.is_none() {
            if let Some(ch) = event.get("channel").and_then(Value::as_str) {
                if let Some(conv) = view.conversation(team, ch)? {
                    kind = rules.catalog.resolve(&inner_type, Some(conv.channel_type));
                    derived_channel_type = Some(conv.channel_type);
                } else if rules.catalog.iter().any(|k| k.inner_type == inner_type) {
                    return Ok(unprocessable(
                        "unknown_channel",
                        "event.channel",
                        format!("conversation {ch} does not exist in team {team}"),
                    ));
                }
            }
        }
        let Some(kind) = kind else {
            return Ok(unprocessable(
                "unknown_event_type",
                "event.type",
                format!("{inner_type:?} is not an event type in the catalog"),
            ));
        };
        if let (Some(ct), Some(_)) = (derived_channel_type, &kind.channel_type) {
            event["channel_type"] = ct.into();
        }

        let event_time = req.event_time.unwrap_or(req.now);
        if let Err(r) = rules::check_event_time(
            event_time,
            req.now,
            rules.max_event_age_secs,
            rules.max_future_skew_secs,
        ) {
            let message = match r {
                TimeRefusal::TooOld => "is older than the maximum event age",
                TimeRefusal::InFuture => "is too far in the future",
            };
            return Ok(Err(Refused {
                refusal: Refusal::Unprocessable {
                    code: r.code(),
                    field: "event_time".into(),
                    message: message.into(),
                },
                too_old: (r == TimeRefusal::TooOld).then(|| kind.name.clone()),
            }));
        }

        // References: the conversation, the acting user, the app.
        let (audience, channel) = rules::audience(kind, &event);
        let channel = channel.map(str::to_string);
        let conversation = match (&channel, audience) {
            (Some(ch), Audience::Conversation) => match view.conversation(team, ch)? {
                Some(conv) => Some(conv),
                None => {
                    let ptr = kind.channel_field.as_deref().unwrap_or("/channel");
                    return Ok(unprocessable(
                        "unknown_channel",
                        rules::pointer_field(ptr),
                        format!("conversation {ch} does not exist in team {team}"),
                    ));
                }
            },
            _ => None,
        };
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
            return Ok(unprocessable(
                "missing_user",
                user_field,
                "this event is a private action of one user and must name them",
            ));
        }
        if let Some(u) = &actor {
            if inner_type != "team_join" && !view.user_in_team(team, enterprise, u)? {
                return Ok(unprocessable(
                    "unknown_user",
                    user_field,
                    format!("user {u} is not a member of team {team}"),
                ));
            }
        }
        let app = match (req.app_id, audience) {
            (Some(a), _) => match view.app(a)? {
                Some(app) => Some(app),
                None => {
                    return Ok(unprocessable(
                        "unknown_app",
                        "app_id",
                        format!("app {a} does not exist"),
                    ))
                }
            },
            (None, Audience::App) => {
                return Ok(unprocessable(
                    "missing_app",
                    "app_id",
                    "an app event must name the app it is about",
                ))
            }
            (None, _) => None,
        };

        let change = match rules::directory_change(&inner_type, &event) {
            Ok(ch) => ch,
            Err((field, message)) => return Ok(bad_request(field, message)),
        };
        if let Some(ch) = &change {
            refused!(check_change(view, team, enterprise, ch)?);
        }

        if event.get("event_ts").is_none() {
            event["event_ts"] = rules::event_ts(event_time, req.now_micros).into();
        }
        let mentions = fanout::event_mentions(kind, &event);
        let facts = EventFacts {
            kind,
            audience,
            actor: actor.as_deref(),
            app_id: app.as_ref().map(|a| a.id.as_str()),
            mentions: &mentions,
        };
        // A change applied before fan-out may make a member of the event's conversation.
        let joined = change
            .as_ref()
            .filter(|ch| ch.before_fanout())
            .and_then(DirectoryChange::added_member)
            .filter(|(conv, _)| channel.as_deref() == Some(*conv));
        let is_member = |u: &str| {
            conversation
                .as_ref()
                .is_some_and(|cv| cv.members.contains(u))
                || joined.is_some_and(|(_, j)| j == u)
        };

        let mut deliveries = Vec::new();
        let grants = view.grants(team, enterprise)?;
        for (app_id, app_grants) in grants.iter() {
            let Some(subs) = view.app(app_id)? else {
                continue;
            };
            let Some(authorization) =
                fanout::delivery_authorization(&facts, &subs, app_grants, &is_member)
            else {
                continue;
            };
            let (disposition, rate_notice) = if !subs.events_enabled {
                (Disposition::Dropped("app_disabled"), None)
            } else {
                match count_delivery(rules, view.rate(app_id, team, req.now)?, req.now) {
                    RateVerdict::Allowed => (Disposition::Pending, None),
                    RateVerdict::Limited { notice } => {
                        (Disposition::Dropped("rate_limited"), notice)
                    }
                }
            };
            deliveries.push(PlannedDelivery {
                app_id: app_id.clone(),
                authorization,
                disposition,
                rate_notice,
            });
        }

        let change = change.map(|ch| {
            let at = if ch.before_fanout() {
                ChangeAt::BeforeFanout
            } else {
                ChangeAt::AfterFanout
            };
            (ch, at)
        });
        Ok(Ok(Plan {
            kind,
            event,
            event_time,
            channel,
            actor,
            change,
            deliveries,
        }))
    }
}

/// The references a directory change makes must exist, and the ids it creates must be
/// well-formed.
fn check_change<V: DirectoryView>(
    view: &mut V,
    team: &str,
    enterprise: Option<&str>,
    change: &DirectoryChange,
) -> Result<Result<(), Refused>, V::Error> {
    let not_member = |field: &str, u: &str| {
        unprocessable(
            "unknown_user",
            field,
            format!("user {u} is not a member of team {team}"),
        )
    };
    Ok(match change {
        DirectoryChange::CreateChannel { id, creator, .. } => {
            if ids::check(IdKind::Conversation, id).is_err() {
                bad_request(
                    "event.channel.id",
                    format!("{id:?} is not a conversation id"),
                )
            } else if let Some(u) = creator {
                if view.user_in_team(team, enterprise, u)? {
                    Ok(())
                } else {
                    not_member("event.channel.creator", u)
                }
            } else {
                Ok(())
            }
        }
        DirectoryChange::Join { channel, user } => {
            if !view.user_in_team(team, enterprise, user)? {
                not_member("event.user", user)
            } else if view.conversation(team, channel)?.is_none() {
                unprocessable(
                    "unknown_channel",
                    "event.channel",
                    format!("conversation {channel} does not exist in team {team}"),
                )
            } else {
                Ok(())
            }
        }
        DirectoryChange::AddUser { id, .. } => {
            if ids::check(IdKind::User, id).is_err() {
                bad_request("event.user.id", format!("{id:?} is not a user id"))
            } else {
                Ok(())
            }
        }
        DirectoryChange::RenameChannel { .. }
        | DirectoryChange::DeleteChannel { .. }
        | DirectoryChange::Leave { .. } => Ok(()),
    })
}

enum RateVerdict {
    Allowed,
    /// Over the limit; `notice` is the minute to send `app_rate_limited` for, the first
    /// time in that minute.
    Limited {
        notice: Option<i64>,
    },
}

/// Counts one delivery against (app, team)'s window, or refuses it past the limit.
fn count_delivery(rules: &Rules<'_>, state: &mut RateState, now: i64) -> RateVerdict {
    let minute = policy::minute_of(now);
    let window = policy::window_minutes(std::time::Duration::from_secs(
        rules.rate_window_secs.max(60) as u64,
    ));
    if policy::rate_allows(state.window.total(minute, window), rules.rate_max) {
        state.window.add(minute, 1);
        return RateVerdict::Allowed;
    }
    let notice = (state.notified_minute != Some(minute)).then(|| {
        state.notified_minute = Some(minute);
        minute
    });
    RateVerdict::Limited { notice }
}

#[cfg(test)]
mod tests;
