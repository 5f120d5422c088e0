//! SQL for apps, app-level tokens, installations, operator tokens and token lookup.

use tidings_core::ids::{self, IdKind};

use super::conn::{Conn, Param, ToParam};
use super::directory::{exists, get_user, insert_user, require_team};
use super::{now, rows};
use crate::model::*;
use crate::params;
use crate::{StoreError, StoreResult};

pub fn get_app(c: &Conn, id: &str) -> StoreResult<Option<App>> {
    c.query_opt(
        &format!("SELECT {} FROM apps WHERE id = ?1", rows::APP),
        params![id],
        rows::app,
    )
}

fn require_app(c: &Conn, id: &str) -> StoreResult<App> {
    get_app(c, id)?.ok_or_else(|| StoreError::NotFound(format!("app {id} does not exist")))
}

pub fn create_app(c: &Conn, mut a: App) -> StoreResult<App> {
    if exists(c, "apps", &a.id)? {
        return Err(StoreError::Conflict(format!("app {} exists", a.id)));
    }
    a.created_at = now();
    a.version = 1;
    a.webhook_public_key = a
        .webhook_signing_key
        .as_deref()
        .and_then(tidings_core::signing::standard::public_key);
    c.execute(
        &format!(
            "INSERT INTO apps ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            rows::APP
        ),
        params![
            a.id,
            a.name,
            a.request_url,
            a.request_url_verified,
            a.socket_mode,
            rows::to_json(&a.bot_events),
            rows::to_json(&a.user_events),
            a.event_shape.as_str(),
            a.signing_secret,
            a.verification_token,
            a.events_enabled,
            a.disabled_reason,
            a.disabled_at,
            a.created_at,
            a.version,
            a.enabled_at_ms,
            a.signing_scheme.as_str(),
            a.webhook_secret,
            a.webhook_signing_key,
            a.webhook_previous_secret,
            a.webhook_previous_signing_key,
            a.webhook_previous_until,
            a.request_url_gone,
            a.request_url_gone_at
        ],
    )?;
    Ok(a)
}

/// Writes only the columns `u` names, and bumps the version, in one statement: two
/// writers changing different columns cannot undo each other. With guards, the row must
/// still match them (checked in the same statement, so no other write can come between):
/// otherwise nothing is written and the answer is `Stale`.
pub fn update_app(c: &Conn, id: &str, u: AppUpdate) -> StoreResult<App> {
    let bot_events = u.bot_events.as_deref().map(rows::to_json);
    let user_events = u.user_events.as_deref().map(rows::to_json);
    let mut sets: Vec<String> = vec!["version = version + 1".into()];
    let mut args: Vec<Param> = vec![id.to_param()];
    fn column<'a>(sets: &mut Vec<String>, args: &mut Vec<Param<'a>>, col: &str, p: Param<'a>) {
        args.push(p);
        sets.push(format!("{col} = ?{}", args.len()));
    }
    let mut set = |col: &str, p, args: &mut Vec<_>| column(&mut sets, args, col, p);
    if let Some(v) = &u.name {
        set("name", v.to_param(), &mut args);
    }
    if let Some(v) = &u.request_url {
        set("request_url", v.to_param(), &mut args);
    }
    if let Some(v) = &u.request_url_verified {
        set("request_url_verified", v.to_param(), &mut args);
    }
    if let Some(v) = &u.socket_mode {
        set("socket_mode", v.to_param(), &mut args);
    }
    if let Some(v) = &bot_events {
        set("bot_events", v.to_param(), &mut args);
    }
    if let Some(v) = &user_events {
        set("user_events", v.to_param(), &mut args);
    }
    if let Some(v) = &u.event_shape {
        set("event_shape", v.as_str().to_param(), &mut args);
    }
    if let Some(v) = &u.signing_secret {
        set("signing_secret", v.to_param(), &mut args);
    }
    if let Some(v) = &u.events_enabled {
        set("events_enabled", v.to_param(), &mut args);
    }
    if let Some(v) = &u.disabled_reason {
        set("disabled_reason", v.to_param(), &mut args);
    }
    if let Some(v) = &u.disabled_at {
        set("disabled_at", v.to_param(), &mut args);
    }
    if let Some(v) = &u.enabled_at_ms {
        set("enabled_at_ms", v.to_param(), &mut args);
    }
    if let Some(v) = &u.signing_scheme {
        set("signing_scheme", v.as_str().to_param(), &mut args);
    }
    if let Some(k) = &u.webhook_keys {
        set("webhook_secret", k.secret.to_param(), &mut args);
        set("webhook_signing_key", k.signing_key.to_param(), &mut args);
        set(
            "webhook_previous_secret",
            k.previous_secret.to_param(),
            &mut args,
        );
        set(
            "webhook_previous_signing_key",
            k.previous_signing_key.to_param(),
            &mut args,
        );
        set(
            "webhook_previous_until",
            k.previous_until.to_param(),
            &mut args,
        );
    }
    if let Some(v) = &u.request_url_gone {
        set("request_url_gone", v.to_param(), &mut args);
    }
    if let Some(v) = &u.request_url_gone_at {
        set("request_url_gone_at", v.to_param(), &mut args);
    }
    let mut guards = vec!["id = ?1".to_string()];
    if let Some(v) = &u.expect_version {
        args.push(v.to_param());
        guards.push(format!("version = ?{}", args.len()));
    }
    if let Some(v) = &u.expect_request_url {
        args.push(v.to_param());
        guards.push(format!("request_url IS NOT DISTINCT FROM ?{}", args.len()));
    }
    if let Some(v) = &u.expect_events_enabled {
        args.push(v.to_param());
        guards.push(format!("events_enabled = ?{}", args.len()));
    }
    let sql = format!(
        "UPDATE apps SET {} WHERE {}",
        sets.join(", "),
        guards.join(" AND ")
    );
    let n = c.execute(&sql, &args)?;
    if n == 0 {
        let now = require_app(c, id)?;
        return Err(StoreError::Stale(format!(
            "app {id} changed meanwhile (now at version {})",
            now.version
        )));
    }
    if let Some(o) = u.oauth {
        super::oauth::update_client(c, id, o)?;
    }
    require_app(c, id)
}

pub fn create_app_token(c: &Conn, t: NewAppToken) -> StoreResult<AppToken> {
    require_app(c, &t.app_id)?;
    let created_at = now();
    c.execute(
        "INSERT INTO app_tokens (id, app_id, scopes, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![t.id, t.app_id, rows::to_json(&t.scopes), created_at],
    )?;
    c.execute(
        "INSERT INTO tokens (hash, kind, app_token_id, created_at) VALUES (?1, 'app', ?2, ?3)",
        params![t.token_hash, t.id, created_at],
    )?;
    Ok(AppToken {
        id: t.id,
        app_id: t.app_id,
        scopes: t.scopes,
        created_at,
        revoked_at: None,
    })
}

pub fn list_app_tokens(c: &Conn, app_id: &str) -> StoreResult<Vec<AppToken>> {
    require_app(c, app_id)?;
    c.query(
        &format!(
            "SELECT {} FROM app_tokens WHERE app_id = ?1 ORDER BY id",
            rows::APP_TOKEN
        ),
        params![app_id],
        rows::app_token,
    )
}

pub fn revoke_app_token(c: &Conn, app_id: &str, id: &str) -> StoreResult<AppToken> {
    let n = c.execute(
        "UPDATE app_tokens SET revoked_at = COALESCE(revoked_at, ?3) WHERE app_id = ?1 AND id = ?2",
        params![app_id, id, now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "token {id} does not exist for app {app_id}"
        )));
    }
    c.query_one(
        &format!("SELECT {} FROM app_tokens WHERE id = ?1", rows::APP_TOKEN),
        params![id],
        rows::app_token,
    )
}

pub fn get_installation(c: &Conn, id: &str) -> StoreResult<Option<Installation>> {
    c.query_opt(
        &format!(
            "SELECT {} FROM installations WHERE id = ?1",
            rows::INSTALLATION
        ),
        params![id],
        rows::installation,
    )
}

/// Lower-case letters, digits and dashes from the app's name, for its bot user's name.
fn bot_name(app: &App) -> String {
    let s: String = app
        .name
        .to_lowercase()
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "bot".into()
    } else {
        s
    }
}

pub fn install(c: &Conn, i: NewInstallation) -> StoreResult<Installation> {
    let app = require_app(c, &i.app_id)?;
    // Where the installation lives: a team (possibly in an enterprise) or a whole org.
    let (team_id, enterprise_id) = match (&i.team_id, &i.enterprise_id) {
        (Some(t), e) => {
            let team = require_team(c, t)?;
            if let Some(e) = e {
                if team.enterprise_id.as_deref() != Some(e.as_str()) {
                    return Err(StoreError::Invalid(format!(
                        "team {t} is not part of enterprise {e}"
                    )));
                }
            }
            (Some(team.id), team.enterprise_id)
        }
        (None, Some(e)) => {
            if !exists(c, "enterprises", e)? {
                return Err(StoreError::NotFound(format!(
                    "enterprise {e} does not exist"
                )));
            }
            (None, Some(e.clone()))
        }
        (None, None) => {
            return Err(StoreError::Invalid(
                "an installation needs team_id, or enterprise_id for an org-wide install".into(),
            ))
        }
    };
    let installer = get_user(c, &i.installer_user_id)?
        .filter(|u| !u.is_bot)
        .ok_or_else(|| {
            StoreError::NotFound(format!("user {} does not exist", i.installer_user_id))
        })?;
    let installer_ok = match (&team_id, &installer.team_id) {
        (Some(t), Some(ut)) => t == ut,
        (None, Some(ut)) => require_team(c, ut)?.enterprise_id == enterprise_id,
        _ => false,
    };
    if !installer_ok {
        return Err(StoreError::Invalid(format!(
            "user {} cannot install here: not a member of {}",
            installer.id,
            team_id
                .as_deref()
                .or(enterprise_id.as_deref())
                .unwrap_or("?")
        )));
    }

    // The bot user is shared by the app's installations in one team (or org).
    let mut bot = None;
    if !i.bot_scopes.is_empty() {
        let existing: Option<(String, String)> = c.query_opt(
            "SELECT bot_user_id, bot_id FROM installations
             WHERE app_id = ?1 AND team_id IS NOT DISTINCT FROM ?2
               AND (?2 IS NOT NULL OR enterprise_id IS NOT DISTINCT FROM ?3)
               AND bot_user_id IS NOT NULL
             ORDER BY created_at, id LIMIT 1",
            params![app.id, team_id, enterprise_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        bot = Some(match existing {
            Some(b) => b,
            None => {
                let user = User {
                    id: ids::generate(IdKind::User),
                    team_id: team_id.clone(),
                    enterprise_id: if team_id.is_none() {
                        enterprise_id.clone()
                    } else {
                        None
                    },
                    name: bot_name(&app),
                    real_name: Some(app.name.clone()),
                    is_admin: false,
                    is_bot: true,
                    app_id: Some(app.id.clone()),
                    created_at: now(),
                };
                insert_user(c, &user)?;
                (user.id, ids::generate(IdKind::Bot))
            }
        });
    }

    // Re-installing by the same installer replaces that installation's tokens and scopes.
    let previous: Option<String> = c.query_opt(
        "SELECT id FROM installations WHERE app_id = ?1 AND team_id IS NOT DISTINCT FROM ?2
           AND (?2 IS NOT NULL OR enterprise_id IS NOT DISTINCT FROM ?3)
           AND installer_user_id = ?4 AND revoked_at IS NULL",
        params![app.id, team_id, enterprise_id, installer.id],
        |r| r.get(0),
    )?;
    let (bot_user_id, bot_id) = bot.unzip();
    let id = match previous {
        Some(prev) => {
            c.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE installation_id = ?1 AND revoked_at IS NULL",
                params![prev, now()],
            )?;
            // Only while it is still installed: an uninstall that committed since the
            // read above (another node) is not undone by writing over it.
            let n = c.execute(
                "UPDATE installations SET bot_user_id = ?2, bot_id = ?3, bot_scopes = ?4, user_scopes = ?5
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![
                    prev,
                    bot_user_id,
                    bot_id,
                    rows::to_json(&i.bot_scopes),
                    rows::to_json(&i.user_scopes)
                ],
            )?;
            if n == 0 {
                return Err(StoreError::Stale(format!(
                    "installation {prev} was uninstalled meanwhile; install again"
                )));
            }
            prev
        }
        None => {
            if exists(c, "installations", &i.id)? {
                return Err(StoreError::Conflict(format!(
                    "installation {} exists",
                    i.id
                )));
            }
            c.execute(
                &format!(
                    "INSERT INTO installations ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL)",
                    rows::INSTALLATION
                ),
                params![
                    i.id,
                    app.id,
                    team_id,
                    enterprise_id,
                    installer.id,
                    bot_user_id,
                    bot_id,
                    rows::to_json(&i.bot_scopes),
                    rows::to_json(&i.user_scopes),
                    now()
                ],
            )?;
            i.id.clone()
        }
    };
    let add_token = |hash: &str, kind: &str| {
        c.execute(
            "INSERT INTO tokens (hash, kind, installation_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, kind, id, now()],
        )
    };
    if let (Some(h), Some(_)) = (&i.bot_token_hash, &bot_user_id) {
        add_token(h, "bot")?;
    }
    if let Some(h) = &i.user_token_hash {
        if !i.user_scopes.is_empty() {
            add_token(h, "user")?;
        }
    }
    get_installation(c, &id)?.ok_or_else(|| StoreError::Internal("installation vanished".into()))
}

/// Whether another live installation of the app remains in the team.
pub fn others_in_team(c: &Conn, app_id: &str, team_id: &str, except: &str) -> StoreResult<bool> {
    let n: i64 = c.query_one(
        "SELECT COUNT(*) FROM installations
         WHERE app_id = ?1 AND team_id = ?2 AND id <> ?3 AND revoked_at IS NULL",
        params![app_id, team_id, except],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

pub fn uninstall(c: &Conn, app_id: &str, id: &str) -> StoreResult<Installation> {
    let inst = get_installation(c, id)?
        .filter(|i| i.app_id == app_id)
        .ok_or_else(|| {
            StoreError::NotFound(format!("installation {id} does not exist for app {app_id}"))
        })?;
    if inst.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "installation {id} is already uninstalled"
        )));
    }
    let t = now();
    // Guarded like the check above, in the statement: a concurrent uninstall (another
    // node) keeps its time, and this one answers as if it came second.
    let n = c.execute(
        "UPDATE installations SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, t],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "installation {id} is already uninstalled"
        )));
    }
    c.execute(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE installation_id = ?1",
        params![id, t],
    )?;
    get_installation(c, id)?.ok_or_else(|| StoreError::Internal("installation vanished".into()))
}

pub fn create_operator_token(c: &Conn, t: NewOperatorToken) -> StoreResult<OperatorToken> {
    let created_at = now();
    c.execute(
        "INSERT INTO operator_tokens (id, kind, label, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![t.id, t.kind, t.label, created_at],
    )?;
    c.execute(
        "INSERT INTO tokens (hash, kind, operator_token_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![t.token_hash, t.kind, t.id, created_at],
    )?;
    Ok(OperatorToken {
        id: t.id,
        kind: t.kind,
        label: t.label,
        created_at,
        revoked_at: None,
    })
}

pub fn list_operator_tokens(c: &Conn) -> StoreResult<Vec<OperatorToken>> {
    c.query(
        &format!(
            "SELECT {} FROM operator_tokens ORDER BY id",
            rows::OPERATOR_TOKEN
        ),
        params![],
        rows::operator_token,
    )
}

pub fn revoke_operator_token(c: &Conn, id: &str) -> StoreResult<OperatorToken> {
    let n = c.execute(
        "UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![id, now()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("token {id} does not exist")));
    }
    c.query_one(
        &format!(
            "SELECT {} FROM operator_tokens WHERE id = ?1",
            rows::OPERATOR_TOKEN
        ),
        params![id],
        rows::operator_token,
    )
}

/// A `tokens` row: kind, revoked_at, installation, app token, operator token.
type TokenRow = (
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub fn authenticate(c: &Conn, hash: &str) -> StoreResult<Option<TokenGrant>> {
    let row: Option<TokenRow> = c.query_opt(
        "SELECT kind, revoked_at, installation_id, app_token_id, operator_token_id FROM tokens WHERE hash = ?1",
        params![hash],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let Some((kind, revoked_at, inst_id, app_token_id, op_id)) = row else {
        return Ok(None);
    };
    let mut g = TokenGrant {
        kind: kind.clone(),
        revoked: revoked_at.is_some(),
        app_id: None,
        installation_id: None,
        token_id: None,
        user_id: None,
        bot_id: None,
        team_id: None,
        enterprise_id: None,
        is_enterprise_install: false,
        scopes: Vec::new(),
    };
    match kind.as_str() {
        "bot" | "user" => {
            let inst = inst_id
                .as_deref()
                .map(|id| get_installation(c, id))
                .transpose()?
                .flatten()
                .ok_or_else(|| StoreError::Internal("token without installation".into()))?;
            g.revoked |= inst.revoked_at.is_some();
            g.app_id = Some(inst.app_id.clone());
            g.installation_id = Some(inst.id.clone());
            g.team_id = inst.team_id.clone();
            g.enterprise_id = inst.enterprise_id.clone();
            g.is_enterprise_install = inst.is_enterprise_install;
            if kind == "bot" {
                g.user_id = inst.bot_user_id;
                g.bot_id = inst.bot_id;
                g.scopes = inst.bot_scopes;
            } else {
                g.user_id = Some(inst.installer_user_id);
                g.scopes = inst.user_scopes;
            }
        }
        "app" => {
            let t = c
                .query_opt(
                    &format!("SELECT {} FROM app_tokens WHERE id = ?1", rows::APP_TOKEN),
                    params![app_token_id.unwrap_or_default()],
                    rows::app_token,
                )?
                .ok_or_else(|| StoreError::Internal("app token row missing".into()))?;
            g.revoked |= t.revoked_at.is_some();
            g.app_id = Some(t.app_id);
            g.token_id = Some(t.id);
            g.scopes = t.scopes;
        }
        _ => {
            let t = c
                .query_opt(
                    &format!(
                        "SELECT {} FROM operator_tokens WHERE id = ?1",
                        rows::OPERATOR_TOKEN
                    ),
                    params![op_id.unwrap_or_default()],
                    rows::operator_token,
                )?
                .ok_or_else(|| StoreError::Internal("operator token row missing".into()))?;
            g.revoked |= t.revoked_at.is_some();
            g.token_id = Some(t.id);
        }
    }
    Ok(Some(g))
}

#[cfg(test)]
mod tests;
