//! An uninstall's or a one-side revocation's lifecycle events, published inside its own
//! writer job (before the installation is revoked, so it still authorizes them): the
//! events come from [`tidings_core::lifecycle`], and each goes through the same publish as
//! any other.
//! The job's side effects (insight counts, hand-overs, apps to wake) are gathered in
//! [`Effects`] and applied only once the whole job has succeeded.

use serde_json::{Map, Value};
use tidings_core::lifecycle::{self, SideRevoked, Uninstalled};

use super::apps;
use super::cache::FanoutIndex;
use super::conn::Conn;
use super::publish::{self, Fresh};
use crate::insights::Tally;
use crate::model::{PublishPolicy, PublishRequest};
use crate::{StoreError, StoreResult};

/// What a job's publishes leave for after its commit.
pub struct Effects {
    pub tally: Tally,
    pub fresh: Fresh,
    pub apps: Vec<String>,
}

impl Effects {
    pub fn new(room: usize) -> Effects {
        Effects {
            tally: Tally::default(),
            fresh: Fresh::with_room(room),
            apps: Vec::new(),
        }
    }
}

/// Publishes installation `id`'s lifecycle events to app `app_id`. A refusal (the team is
/// gone) writes nothing and is logged; the uninstall goes on.
pub fn uninstall_events(
    c: &Conn,
    idx: &mut FanoutIndex,
    policy: &PublishPolicy,
    app_id: &str,
    id: &str,
    effects: &mut Effects,
) -> StoreResult<()> {
    let inst = apps::get_installation(c, id)?
        .filter(|i| i.app_id == app_id)
        .ok_or_else(|| {
            StoreError::NotFound(format!("installation {id} does not exist for app {app_id}"))
        })?;
    if inst.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "installation {id} is already uninstalled"
        )));
    }
    // Org-wide installs have no single team to publish in.
    let Some(team_id) = inst.team_id.clone() else {
        return Ok(());
    };
    let facts = Uninstalled {
        bot_user: inst
            .bot_user_id
            .as_deref()
            .filter(|_| !inst.bot_scopes.is_empty()),
        oauth_user: (!inst.user_scopes.is_empty()).then_some(inst.installer_user_id.as_str()),
        last_in_team: !apps::others_in_team(c, app_id, &team_id, id)?,
    };
    publish_events(
        c,
        idx,
        policy,
        (app_id, id, &team_id),
        lifecycle::on_uninstall(&facts),
        effects,
    )
}

/// `auth.revoke` of one side (`bot`/`user`, the token's user `user_id`) of installation
/// `id`, as one job: the side's tokens and refresh tokens are revoked, its
/// `tokens_revoked` is published, and when no live token of the installation is left it
/// is uninstalled too, with `app_uninstalled` when it was the app's last in the team (no
/// second `tokens_revoked`). Returns the live tokens left (0: uninstalled).
#[allow(clippy::too_many_arguments)]
pub fn revoke_side_events(
    c: &Conn,
    idx: &mut FanoutIndex,
    policy: &PublishPolicy,
    app_id: &str,
    id: &str,
    side: &str,
    user_id: &str,
    effects: &mut Effects,
) -> StoreResult<i64> {
    let inst = apps::get_installation(c, id)?
        .filter(|i| i.app_id == app_id)
        .ok_or_else(|| {
            StoreError::NotFound(format!("installation {id} does not exist for app {app_id}"))
        })?;
    if inst.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "installation {id} is already uninstalled"
        )));
    }
    let left = super::oauth::revoke_side(c, id, side, super::now())?;
    if let Some(team_id) = inst.team_id.as_deref() {
        let facts = SideRevoked {
            bot_user: (side == "bot").then_some(user_id),
            oauth_user: (side == "user").then_some(user_id),
            uninstalls: left == 0,
            last_in_team: !apps::others_in_team(c, app_id, team_id, id)?,
        };
        let events = lifecycle::on_side_revoked(&facts);
        publish_events(c, idx, policy, (app_id, id, team_id), events, effects)?;
    }
    if left == 0 {
        apps::uninstall(c, app_id, id)?;
    }
    Ok(left)
}

/// Publishes lifecycle events to `(app, installation, team)`. A refusal (the team is
/// gone) writes nothing and is logged; the change they report goes on.
fn publish_events(
    c: &Conn,
    idx: &mut FanoutIndex,
    policy: &PublishPolicy,
    (app_id, id, team_id): (&str, &str, &str),
    events: Vec<Map<String, Value>>,
    effects: &mut Effects,
) -> StoreResult<()> {
    for event in events {
        let req = PublishRequest {
            team_id: team_id.to_string(),
            event,
            event_time: None,
            idempotency_key: None,
            app_id: Some(app_id.to_string()),
        };
        match publish::publish_one(c, idx, policy, req, &mut effects.tally, &mut effects.fresh)? {
            Ok(p) => effects.apps.extend(p.apps),
            Err(r) => {
                tracing::warn!(app = app_id, installation = id, refusal = ?r, "lifecycle event not published")
            }
        }
    }
    Ok(())
}
