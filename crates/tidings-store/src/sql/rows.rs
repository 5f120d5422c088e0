//! Row ↔ record mapping for both SQL backends, kept in one place so every query selects
//! the same columns in the same order.

use super::conn::Row;
use crate::model::*;
use crate::StoreResult;

pub fn json_list(s: String) -> StoreResult<Vec<String>> {
    Ok(serde_json::from_str(&s)?)
}

pub fn to_json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub const ENTERPRISE: &str = "id, name, created_at";
pub fn enterprise(r: &Row) -> StoreResult<Enterprise> {
    Ok(Enterprise {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

pub const TEAM: &str = "id, name, domain, enterprise_id, created_at";
pub fn team(r: &Row) -> StoreResult<Team> {
    Ok(Team {
        id: r.get(0)?,
        name: r.get(1)?,
        domain: r.get(2)?,
        enterprise_id: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub const USER: &str =
    "id, team_id, enterprise_id, name, real_name, is_admin, is_bot, app_id, created_at";
pub fn user(r: &Row) -> StoreResult<User> {
    Ok(User {
        id: r.get(0)?,
        team_id: r.get(1)?,
        enterprise_id: r.get(2)?,
        name: r.get(3)?,
        real_name: r.get(4)?,
        is_admin: r.get(5)?,
        is_bot: r.get(6)?,
        app_id: r.get(7)?,
        created_at: r.get(8)?,
    })
}

pub const APP: &str = "id, name, request_url, request_url_verified, socket_mode, bot_events, \
    user_events, event_shape, signing_secret, verification_token, events_enabled, \
    disabled_reason, disabled_at, created_at, version, enabled_at_ms, signing_scheme, \
    webhook_secret, webhook_signing_key, webhook_previous_secret, webhook_previous_signing_key, \
    webhook_previous_until, request_url_gone, request_url_gone_at";
pub fn app(r: &Row) -> StoreResult<App> {
    let shape: String = r.get(7)?;
    let scheme: String = r.get(16)?;
    let signing_key: Option<String> = r.get(18)?;
    Ok(App {
        id: r.get(0)?,
        name: r.get(1)?,
        request_url: r.get(2)?,
        request_url_verified: r.get(3)?,
        socket_mode: r.get(4)?,
        bot_events: json_list(r.get(5)?)?,
        user_events: json_list(r.get(6)?)?,
        event_shape: EventShape::parse(&shape).unwrap_or_default(),
        signing_secret: r.get(8)?,
        verification_token: r.get(9)?,
        events_enabled: r.get(10)?,
        disabled_reason: r.get(11)?,
        disabled_at: r.get(12)?,
        created_at: r.get(13)?,
        version: r.get(14)?,
        enabled_at_ms: r.get(15)?,
        signing_scheme: SigningScheme::parse(&scheme).unwrap_or_default(),
        webhook_secret: r.get(17)?,
        webhook_public_key: signing_key
            .as_deref()
            .and_then(tidings_core::signing::standard::public_key),
        webhook_signing_key: signing_key,
        webhook_previous_secret: r.get(19)?,
        webhook_previous_signing_key: r.get(20)?,
        webhook_previous_until: r.get(21)?,
        request_url_gone: r.get(22)?,
        request_url_gone_at: r.get(23)?,
    })
}

pub const APP_TOKEN: &str = "id, app_id, scopes, created_at, revoked_at";
pub fn app_token(r: &Row) -> StoreResult<AppToken> {
    Ok(AppToken {
        id: r.get(0)?,
        app_id: r.get(1)?,
        scopes: json_list(r.get(2)?)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

pub const INSTALLATION: &str = "id, app_id, team_id, enterprise_id, installer_user_id, \
    bot_user_id, bot_id, bot_scopes, user_scopes, created_at, revoked_at";
/// What fan-out needs of an installation: the one mapping from installation to grant,
/// used by publish (through the fan-out index) and `apps.event.authorizations.list`.
pub fn grant(i: Installation) -> tidings_core::fanout::Grant {
    tidings_core::fanout::Grant {
        installation_id: i.id,
        team_id: i.team_id,
        enterprise_id: i.enterprise_id,
        is_enterprise_install: i.is_enterprise_install,
        installer_user_id: i.installer_user_id,
        bot_user_id: i.bot_user_id,
        bot_scopes: i.bot_scopes,
        user_scopes: i.user_scopes,
    }
}

pub fn installation(r: &Row) -> StoreResult<Installation> {
    let team_id: Option<String> = r.get(2)?;
    let enterprise_id: Option<String> = r.get(3)?;
    Ok(Installation {
        id: r.get(0)?,
        app_id: r.get(1)?,
        is_enterprise_install: team_id.is_none() && enterprise_id.is_some(),
        team_id,
        enterprise_id,
        installer_user_id: r.get(4)?,
        bot_user_id: r.get(5)?,
        bot_id: r.get(6)?,
        bot_scopes: json_list(r.get(7)?)?,
        user_scopes: json_list(r.get(8)?)?,
        created_at: r.get(9)?,
        revoked_at: r.get(10)?,
    })
}

pub const OPERATOR_TOKEN: &str = "id, kind, label, created_at, revoked_at";
pub fn operator_token(r: &Row) -> StoreResult<OperatorToken> {
    Ok(OperatorToken {
        id: r.get(0)?,
        kind: r.get(1)?,
        label: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}
