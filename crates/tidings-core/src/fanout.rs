//! Fan-out: which installations of an app can see an event, and which one the delivery
//! carries in `authorizations` (ARCHITECTURE.md "Data flow", SLACK-WIRE.md §1.4, §7).
//!
//! Pure functions over plain views of the directory, so the store can call them inside its
//! publish transaction and `apps.event.authorizations.list` can recompute the same answer.
//!
//! Rules, for an event of catalog type K in team T:
//! - bot side: K allows bots, K is in the app's `bot_events`, the installation has a bot
//!   user and one of K's bot scopes, and the bot user can see the event — `team`: yes;
//!   `conversation`: it is a member; `user`: never (private actions are user-side only);
//!   `app`: only the app the publish names. `mention_only` types also need `<@bot>` in text.
//! - user side: K allows users, K is in `user_events`, the installation grants one of K's
//!   user scopes, and the installing user can see it — `team`: yes; `conversation`: member;
//!   `user`: the event's actor is the installing user; `app`: the named app.
//! - One delivery per app per team. Its authorization is the first visible one in this
//!   order: the bot installation, then user installations by user id (documented choice:
//!   deterministic, and bots see the most).

use serde::{Deserialize, Serialize};

use crate::catalog::{Audience, EventType};

/// An app's subscriptions, as fan-out needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSubscriptions {
    pub id: String,
    pub bot_events: Vec<String>,
    pub user_events: Vec<String>,
    pub events_enabled: bool,
}

/// One installation of an app that covers the event's team (team install, or org-wide
/// install of the team's enterprise).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub installation_id: String,
    /// `None` for org-wide installations.
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub is_enterprise_install: bool,
    pub installer_user_id: String,
    pub bot_user_id: Option<String>,
    pub bot_scopes: Vec<String>,
    pub user_scopes: Vec<String>,
}

/// An `authorizations[]` entry (SLACK-WIRE.md §1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Authorization {
    pub enterprise_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: String,
    pub is_bot: bool,
    pub is_enterprise_install: bool,
}

/// What fan-out needs to know about one published event.
#[derive(Debug, Clone)]
pub struct EventFacts<'a> {
    pub kind: &'a EventType,
    /// The audience in force: the catalog's, except a conversation event whose channel is
    /// absent (a reaction to a file) falls back to `Team`.
    pub audience: Audience,
    /// The acting user (catalog `user_field`), for `user` audience.
    pub actor: Option<&'a str>,
    /// The app an `app`-audience event is about.
    pub app_id: Option<&'a str>,
    /// User ids mentioned as `<@U…>` in the text, for `mention_only` types.
    pub mentions: &'a [String],
}

fn scope_ok(required: &[String], granted: &[String]) -> bool {
    required.is_empty() || required.iter().any(|r| granted.contains(r))
}

/// The user ids an event of `kind` mentions as `<@U…>` in its `text`: what a
/// `mention_only` type is seen by. Empty for other types. Publish and
/// `apps.event.authorizations.list` both take an event's facts from here.
pub fn event_mentions(kind: &EventType, event: &serde_json::Value) -> Vec<String> {
    if !kind.mention_only {
        return Vec::new();
    }
    event
        .get("text")
        .and_then(serde_json::Value::as_str)
        .map(mentions)
        .unwrap_or_default()
}

/// Every authorization of `app` that can see the event, in the documented order, without
/// duplicates (the bot user is shared by an app's installations in a team).
pub fn visible_authorizations(
    facts: &EventFacts<'_>,
    app: &AppSubscriptions,
    grants: &[Grant],
    is_member: &dyn Fn(&str) -> bool,
) -> Vec<Authorization> {
    let k = facts.kind;
    let named_app = facts.app_id == Some(app.id.as_str());
    let mut bots: Vec<Authorization> = Vec::new();
    let mut users: Vec<Authorization> = Vec::new();
    if k.bot && app.bot_events.contains(&k.name) {
        for g in grants {
            let Some(bot) = &g.bot_user_id else { continue };
            if !scope_ok(&k.bot_scopes, &g.bot_scopes) {
                continue;
            }
            let sees = match facts.audience {
                Audience::Team => true,
                Audience::Conversation => is_member(bot),
                Audience::User => false,
                Audience::App => named_app,
            };
            let mentioned = !k.mention_only || facts.mentions.iter().any(|m| m == bot);
            if sees && mentioned && !bots.iter().any(|a| a.user_id == *bot) {
                bots.push(authorization(g, bot, true));
            }
        }
    }
    if k.user && app.user_events.contains(&k.name) {
        for g in grants {
            if g.user_scopes.is_empty() || !scope_ok(&k.user_scopes, &g.user_scopes) {
                continue;
            }
            let u = &g.installer_user_id;
            let sees = match facts.audience {
                Audience::Team => true,
                Audience::Conversation => is_member(u),
                Audience::User => facts.actor == Some(u.as_str()),
                Audience::App => named_app,
            };
            if sees && !users.iter().any(|a| a.user_id == *u) {
                users.push(authorization(g, u, false));
            }
        }
    }
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    bots.extend(users);
    bots
}

fn authorization(g: &Grant, user: &str, is_bot: bool) -> Authorization {
    Authorization {
        enterprise_id: g.enterprise_id.clone(),
        team_id: g.team_id.clone(),
        user_id: user.to_string(),
        is_bot,
        is_enterprise_install: g.is_enterprise_install,
    }
}

/// The authorization a delivery to `app` carries, or `None` if the app gets no delivery.
pub fn delivery_authorization(
    facts: &EventFacts<'_>,
    app: &AppSubscriptions,
    grants: &[Grant],
    is_member: &dyn Fn(&str) -> bool,
) -> Option<Authorization> {
    visible_authorizations(facts, app, grants, is_member)
        .into_iter()
        .next()
}

/// User ids mentioned as `<@U123>` or `<@U123|name>` in message text (or `<@U123` at its
/// very end).
///
/// Linear in the text: after each `<@` only the id's own characters are read, never the
/// rest of the text in search of a `>` (which made a text of many `<@` quadratic).
pub fn mentions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<@") {
        rest = &rest[i + 2..];
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .count();
        let (id, after) = rest.split_at(len);
        if !id.is_empty() && matches!(after.bytes().next(), None | Some(b'>' | b'|')) {
            out.push(id.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests;
