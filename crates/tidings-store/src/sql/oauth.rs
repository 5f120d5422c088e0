//! SQL of the OAuth v2 install flow: app OAuth clients, consent codes, token expiry and
//! refresh tokens, and login assertions already used. Kept apart from `apps` (whose
//! install it calls, so an OAuth install is written exactly as the operator API's).
//!
//! A code is redeemed and its installation written in one job: a refused or failed
//! exchange burns nothing and installs nothing, and two nodes redeeming one code cannot
//! both succeed (the `used_at IS NULL` guard in the statement).

use super::conn::Conn;
use super::{apps, rows};
use crate::model::{Installation, NewInstallation};
use crate::oauth::*;
use crate::{params, StoreError, StoreResult};

const CLIENT: &str =
    "app_id, client_id, client_secret_hash, redirect_urls, token_rotation_enabled, org_deploy_enabled";

fn client(r: &super::conn::Row) -> StoreResult<OAuthClient> {
    Ok(OAuthClient {
        app_id: r.get(0)?,
        client_id: r.get(1)?,
        client_secret_hash: r.get(2)?,
        redirect_urls: rows::json_list(r.get(3)?)?,
        token_rotation_enabled: r.get::<i64>(4)? != 0,
        org_deploy_enabled: r.get::<i64>(5)? != 0,
    })
}

pub fn get_client(c: &Conn, app_id: &str) -> StoreResult<Option<OAuthClient>> {
    c.query_opt(
        &format!("SELECT {CLIENT} FROM oauth_clients WHERE app_id = ?1"),
        params![app_id],
        client,
    )
}

pub fn client_by_id(c: &Conn, client_id: &str) -> StoreResult<Option<OAuthClient>> {
    c.query_opt(
        &format!("SELECT {CLIENT} FROM oauth_clients WHERE client_id = ?1"),
        params![client_id],
        client,
    )
}

/// Creates the app's client, or gives the existing one a new secret (its `client_id`
/// stays).
pub fn put_secret(
    c: &Conn,
    app_id: &str,
    client_id: &str,
    secret_hash: &str,
) -> StoreResult<OAuthClient> {
    if apps::get_app(c, app_id)?.is_none() {
        return Err(StoreError::NotFound(format!("app {app_id} does not exist")));
    }
    let n = c.execute(
        "UPDATE oauth_clients SET client_secret_hash = ?2 WHERE app_id = ?1",
        params![app_id, secret_hash],
    )?;
    if n == 0 {
        c.execute(
            &format!("INSERT INTO oauth_clients ({CLIENT}) VALUES (?1, ?2, ?3, '[]', 0, 0)"),
            params![app_id, client_id, secret_hash],
        )?;
    }
    get_client(c, app_id)?.ok_or_else(|| StoreError::Internal("oauth client vanished".into()))
}

pub fn update_client(c: &Conn, app_id: &str, u: OAuthClientUpdate) -> StoreResult<OAuthClient> {
    if get_client(c, app_id)?.is_none() {
        return Err(StoreError::NotFound(format!(
            "app {app_id} has no OAuth client"
        )));
    }
    if let Some(urls) = &u.redirect_urls {
        c.execute(
            "UPDATE oauth_clients SET redirect_urls = ?2 WHERE app_id = ?1",
            params![app_id, rows::to_json(urls)],
        )?;
    }
    if let Some(v) = u.token_rotation_enabled {
        c.execute(
            "UPDATE oauth_clients SET token_rotation_enabled = ?2 WHERE app_id = ?1",
            params![app_id, i64::from(v)],
        )?;
    }
    if let Some(v) = u.org_deploy_enabled {
        c.execute(
            "UPDATE oauth_clients SET org_deploy_enabled = ?2 WHERE app_id = ?1",
            params![app_id, i64::from(v)],
        )?;
    }
    get_client(c, app_id)?.ok_or_else(|| StoreError::Internal("oauth client vanished".into()))
}

/// Records what the consent page allowed under the code's hash; sweeps expired codes.
pub fn put_grant(c: &Conn, code_hash: &str, g: &OAuthGrant, now: i64) -> StoreResult<()> {
    c.execute(
        "DELETE FROM oauth_codes WHERE expires_at < ?1",
        params![now],
    )?;
    c.execute(
        "INSERT INTO oauth_codes (code_hash, app_id, redirect_uri, team_id, enterprise_id, user_id,
            bot_scopes, user_scopes, expires_at, used_at) VALUES (?1, ?2, ?3, ?4, ?9, ?5, ?6, ?7, ?8, NULL)",
        params![
            code_hash,
            g.app_id,
            g.redirect_uri,
            g.team_id,
            g.user_id,
            rows::to_json(&g.bot_scopes),
            rows::to_json(&g.user_scopes),
            g.expires_at,
            g.enterprise_id
        ],
    )?;
    Ok(())
}

type CodeRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

/// Redeems a code once and installs what it grants (see the module doc).
pub fn exchange_code(
    c: &Conn,
    x: CodeExchange,
) -> StoreResult<Result<(Installation, OAuthGrant), OAuthRefusal>> {
    let row: Option<CodeRow> = c.query_opt(
        "SELECT app_id, redirect_uri, team_id, enterprise_id, user_id, bot_scopes, user_scopes,
            expires_at, used_at
         FROM oauth_codes WHERE code_hash = ?1",
        params![x.code_hash],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        },
    )?;
    let Some((
        app_id,
        redirect_uri,
        team_id,
        enterprise_id,
        user_id,
        bot,
        user,
        expires_at,
        used_at,
    )) = row
    else {
        return Ok(Err(OAuthRefusal::InvalidCode));
    };
    if app_id != x.app_id || used_at.is_some() || expires_at < x.now {
        return Ok(Err(OAuthRefusal::InvalidCode));
    }
    if redirect_uri.is_some() && redirect_uri != x.redirect_uri {
        return Ok(Err(OAuthRefusal::BadRedirectUri));
    }
    let n = c.execute(
        "UPDATE oauth_codes SET used_at = ?2 WHERE code_hash = ?1 AND used_at IS NULL",
        params![x.code_hash, x.now],
    )?;
    if n == 0 {
        return Ok(Err(OAuthRefusal::InvalidCode));
    }
    let grant = OAuthGrant {
        app_id,
        redirect_uri,
        team_id,
        enterprise_id,
        user_id,
        bot_scopes: rows::json_list(bot)?,
        user_scopes: rows::json_list(user)?,
        expires_at,
    };
    let inst = apps::install(
        c,
        NewInstallation {
            id: x.installation_id,
            app_id: grant.app_id.clone(),
            team_id: grant.team_id.clone(),
            enterprise_id: grant.enterprise_id.clone(),
            installer_user_id: grant.user_id.clone(),
            bot_scopes: grant.bot_scopes.clone(),
            user_scopes: grant.user_scopes.clone(),
            bot_token_hash: Some(x.bot.hash.clone()),
            user_token_hash: Some(x.user.hash.clone()),
        },
    )?;
    if inst.bot_user_id.is_some() && !grant.bot_scopes.is_empty() {
        track(c, &inst.id, "bot", &x.bot, x.now)?;
    }
    if !grant.user_scopes.is_empty() {
        track(c, &inst.id, "user", &x.user, x.now)?;
    }
    Ok(Ok((inst, grant)))
}

/// Records a token's expiry and its refresh token, if it has them.
fn track(
    c: &Conn,
    installation_id: &str,
    kind: &str,
    t: &IssuedToken,
    now: i64,
) -> StoreResult<()> {
    if let Some(at) = t.expires_at {
        c.execute(
            "INSERT INTO token_expiry (token_hash, expires_at) VALUES (?1, ?2)",
            params![t.hash, at],
        )?;
    }
    if let Some(r) = &t.refresh_hash {
        c.execute(
            "INSERT INTO refresh_tokens (hash, installation_id, kind, created_at, used_at)
             VALUES (?1, ?2, ?3, ?4, NULL)",
            params![r, installation_id, kind, now],
        )?;
    }
    Ok(())
}

/// Uses a refresh token once: a new access token (and refresh token) for the same side
/// of the same live installation. The access tokens issued before stay valid until they
/// expire, so nothing in flight breaks.
pub fn refresh(c: &Conn, x: Refresh) -> StoreResult<Result<Refreshed, OAuthRefusal>> {
    let row: Option<(String, String, Option<i64>)> = c.query_opt(
        "SELECT installation_id, kind, used_at FROM refresh_tokens WHERE hash = ?1",
        params![x.refresh_hash],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((inst_id, kind, used_at)) = row else {
        return Ok(Err(OAuthRefusal::InvalidRefreshToken));
    };
    let inst = apps::get_installation(c, &inst_id)?;
    let Some(inst) = inst.filter(|i| i.app_id == x.app_id && i.revoked_at.is_none()) else {
        return Ok(Err(OAuthRefusal::InvalidRefreshToken));
    };
    if used_at.is_some() {
        return Ok(Err(OAuthRefusal::InvalidRefreshToken));
    }
    let n = c.execute(
        "UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
        params![x.refresh_hash, x.now],
    )?;
    if n == 0 {
        return Ok(Err(OAuthRefusal::InvalidRefreshToken));
    }
    let access = if kind == "bot" { &x.bot } else { &x.user };
    c.execute(
        "INSERT INTO tokens (hash, kind, installation_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![access.hash, kind, inst.id, x.now],
    )?;
    track(c, &inst.id, &kind, access, x.now)?;
    Ok(Ok(Refreshed {
        installation: inst,
        kind,
    }))
}

/// When the token (by hash) expires, if it does.
pub fn token_expires_at(c: &Conn, hash: &str) -> StoreResult<Option<i64>> {
    c.query_opt(
        "SELECT expires_at FROM token_expiry WHERE token_hash = ?1",
        params![hash],
        |r| r.get(0),
    )
}

/// Revokes every live token of one side (`bot` or `user`) of an installation, and its
/// refresh tokens; answers how many live tokens of the installation remain.
pub fn revoke_side(c: &Conn, installation_id: &str, kind: &str, now: i64) -> StoreResult<i64> {
    c.execute(
        "UPDATE tokens SET revoked_at = ?3
         WHERE installation_id = ?1 AND kind = ?2 AND revoked_at IS NULL",
        params![installation_id, kind, now],
    )?;
    c.execute(
        "UPDATE refresh_tokens SET used_at = ?3
         WHERE installation_id = ?1 AND kind = ?2 AND used_at IS NULL",
        params![installation_id, kind, now],
    )?;
    c.query_one(
        "SELECT COUNT(*) FROM tokens WHERE installation_id = ?1 AND revoked_at IS NULL",
        params![installation_id],
        |r| r.get(0),
    )
}

/// Records a login assertion's id until it expires; false if it was used already.
pub fn use_assertion(c: &Conn, id: &str, expires_at: i64, now: i64) -> StoreResult<bool> {
    c.execute(
        "DELETE FROM oauth_assertions WHERE expires_at < ?1",
        params![now],
    )?;
    let n = c.execute(
        "INSERT INTO oauth_assertions (id, expires_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
        params![id, expires_at],
    )?;
    Ok(n == 1)
}

/// `oauth.v2.exchange`: replaces a live long-lived token of the app (by hash) with a
/// rotating one; answers the installation and the side, or `None` when the token is not
/// a live token of one of the app's live installations.
pub fn exchange_token(
    c: &Conn,
    old_hash: &str,
    app_id: &str,
    access: &IssuedToken,
    now: i64,
) -> StoreResult<Option<Refreshed>> {
    let row: Option<(String, Option<String>, Option<i64>)> = c.query_opt(
        "SELECT kind, installation_id, revoked_at FROM tokens WHERE hash = ?1",
        params![old_hash],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((kind, Some(inst_id), None)) = row else {
        return Ok(None);
    };
    if kind != "bot" && kind != "user" {
        return Ok(None);
    }
    let Some(inst) = apps::get_installation(c, &inst_id)?
        .filter(|i| i.app_id == app_id && i.revoked_at.is_none())
    else {
        return Ok(None);
    };
    let n = c.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE hash = ?1 AND revoked_at IS NULL",
        params![old_hash, now],
    )?;
    if n == 0 {
        return Ok(None);
    }
    c.execute(
        "INSERT INTO tokens (hash, kind, installation_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![access.hash, kind, inst.id, now],
    )?;
    track(c, &inst.id, &kind, access, now)?;
    Ok(Some(Refreshed {
        installation: inst,
        kind,
    }))
}
