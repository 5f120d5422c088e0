//! SQL of the App Manifest API: configuration tokens (issued, looked up, rotated once),
//! app owners and stored manifests. A rotation is one guarded statement (`rotated_at IS
//! NULL`), so two nodes rotating one refresh token cannot both succeed.

use super::conn::Conn;
use super::{apps, directory};
use crate::manifests::*;
use crate::{params, StoreError, StoreResult};

const TOKEN: &str = "id, team_id, user_id, expires_at, created_at";

fn token(r: &super::conn::Row) -> StoreResult<ConfigToken> {
    Ok(ConfigToken {
        id: r.get(0)?,
        team_id: r.get(1)?,
        user_id: r.get(2)?,
        expires_at: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// Stores a new pair; `NotFound` unless the user is a (human) member of the team.
pub fn create_token(c: &Conn, t: NewConfigToken, now: i64) -> StoreResult<ConfigToken> {
    let user = directory::get_user(c, &t.user_id)?;
    match user {
        Some(u) if u.team_id.as_deref() == Some(t.team_id.as_str()) && !u.is_bot => {}
        _ => {
            return Err(StoreError::NotFound(format!(
                "user {} is not a member of team {}",
                t.user_id, t.team_id
            )))
        }
    }
    insert(c, &t, now)
}

fn insert(c: &Conn, t: &NewConfigToken, now: i64) -> StoreResult<ConfigToken> {
    c.execute(
        "INSERT INTO config_tokens (id, team_id, user_id, access_hash, refresh_hash, expires_at,
            created_at, rotated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
        params![
            t.id,
            t.team_id,
            t.user_id,
            t.access_hash,
            t.refresh_hash,
            t.expires_at,
            now
        ],
    )?;
    Ok(ConfigToken {
        id: t.id.clone(),
        team_id: t.team_id.clone(),
        user_id: t.user_id.clone(),
        expires_at: t.expires_at,
        created_at: now,
    })
}

/// The pair whose access token has this hash (expired or not: the caller decides).
pub fn by_access(c: &Conn, access_hash: &str) -> StoreResult<Option<ConfigToken>> {
    c.query_opt(
        &format!("SELECT {TOKEN} FROM config_tokens WHERE access_hash = ?1"),
        params![access_hash],
        token,
    )
}

/// Uses a refresh token once: the new pair (same team and user) replaces it; `None`
/// when the refresh token is unknown or was used already.
pub fn rotate(
    c: &Conn,
    refresh_hash: &str,
    mut new: NewConfigToken,
    now: i64,
) -> StoreResult<Option<ConfigToken>> {
    let owner: Option<(String, String)> = c.query_opt(
        "UPDATE config_tokens SET rotated_at = ?2 WHERE refresh_hash = ?1 AND rotated_at IS NULL
         RETURNING team_id, user_id",
        params![refresh_hash, now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((team_id, user_id)) = owner else {
        return Ok(None);
    };
    new.team_id = team_id;
    new.user_id = user_id;
    insert(c, &new, now).map(Some)
}

/// The users who own the app, in id order.
pub fn owners(c: &Conn, app_id: &str) -> StoreResult<Vec<String>> {
    c.query(
        "SELECT user_id FROM app_owners WHERE app_id = ?1 ORDER BY user_id",
        params![app_id],
        |r| r.get(0),
    )
}

/// Every ownership, by app then user.
pub fn all_owners(c: &Conn) -> StoreResult<Vec<(String, String)>> {
    c.query(
        "SELECT app_id, user_id FROM app_owners ORDER BY app_id, user_id",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

pub fn add_owner(c: &Conn, app_id: &str, user_id: &str, now: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO app_owners (app_id, user_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id, user_id) DO NOTHING",
        params![app_id, user_id, now],
    )?;
    Ok(())
}

pub fn get_manifest(c: &Conn, app_id: &str) -> StoreResult<Option<StoredManifest>> {
    c.query_opt(
        "SELECT app_id, manifest, deleted_at FROM app_manifests WHERE app_id = ?1",
        params![app_id],
        |r| {
            Ok(StoredManifest {
                app_id: r.get(0)?,
                manifest: r.get(1)?,
                deleted: r.get::<Option<i64>>(2)?.is_some(),
            })
        },
    )
}

/// Records the manifest the app was (re)applied from, and the owner who applied it
/// when the app was created by a developer; one transaction.
pub fn put_manifest(
    c: &Conn,
    app_id: &str,
    manifest: &str,
    owner: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    if apps::get_app(c, app_id)?.is_none() {
        return Err(StoreError::NotFound(format!("app {app_id} does not exist")));
    }
    let n = c.execute(
        "UPDATE app_manifests SET manifest = ?2, updated_at = ?3 WHERE app_id = ?1",
        params![app_id, manifest, now],
    )?;
    if n == 0 {
        c.execute(
            "INSERT INTO app_manifests (app_id, manifest, updated_at, deleted_at)
             VALUES (?1, ?2, ?3, NULL)",
            params![app_id, manifest, now],
        )?;
    }
    if let Some(user) = owner {
        add_owner(c, app_id, user, now)?;
    }
    Ok(())
}

/// Marks the app deleted (the Manifest API no longer finds it); its owners are removed.
pub fn mark_deleted(c: &Conn, app_id: &str, now: i64) -> StoreResult<()> {
    let n = c.execute(
        "UPDATE app_manifests SET deleted_at = ?2 WHERE app_id = ?1",
        params![app_id, now],
    )?;
    if n == 0 {
        c.execute(
            "INSERT INTO app_manifests (app_id, manifest, updated_at, deleted_at)
             VALUES (?1, '{}', ?2, ?2)",
            params![app_id, now],
        )?;
    }
    c.execute("DELETE FROM app_owners WHERE app_id = ?1", params![app_id])?;
    Ok(())
}
