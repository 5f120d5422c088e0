//! SQL for the directory: enterprises, teams, users, conversations and their members.
//! Plain functions on a connection; the async glue and the writer live in `mod.rs`.

use super::conn::{Conn, Param, Row};
use super::{now, rows};
use crate::model::*;
use crate::params;
use crate::{Page, PageRequest, StoreError, StoreResult};

pub fn exists(c: &Conn, table: &str, id: &str) -> StoreResult<bool> {
    Ok(c.query_opt(
        &format!("SELECT 1 FROM {table} WHERE id = ?1"),
        params![id],
        |_| Ok(()),
    )?
    .is_some())
}

/// Fetches up to `limit + 1` rows after the cursor key, ordered by `key_col`.
pub fn page<T>(
    c: &Conn,
    sql_base: &str,
    key_col: &str,
    extra: &[Param],
    page: &PageRequest,
    map: impl Fn(&Row) -> StoreResult<T>,
    key: impl Fn(&T) -> String,
) -> StoreResult<Page<T>> {
    let has_where = sql_base.to_ascii_uppercase().contains(" WHERE ");
    let n = extra.len();
    let sql = format!(
        "{sql_base} {} ({key_col} > ?{} OR ?{} IS NULL) ORDER BY {key_col} LIMIT ?{}",
        if has_where { "AND" } else { "WHERE" },
        n + 1,
        n + 1,
        n + 2
    );
    let mut args: Vec<Param> = extra.to_vec();
    args.push(Param::Text(page.after.as_deref()));
    args.push(Param::Int(Some(page.limit as i64 + 1)));
    let rows = c.query(&sql, &args, map)?;
    Ok(Page::from_rows(rows, page.limit, key))
}

pub fn create_enterprise(c: &Conn, mut e: Enterprise) -> StoreResult<Enterprise> {
    if exists(c, "enterprises", &e.id)? {
        return Err(StoreError::Conflict(format!("enterprise {} exists", e.id)));
    }
    e.created_at = now();
    c.execute(
        "INSERT INTO enterprises (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![e.id, e.name, e.created_at],
    )?;
    Ok(e)
}

pub fn get_enterprise(c: &Conn, id: &str) -> StoreResult<Option<Enterprise>> {
    c.query_opt(
        &format!("SELECT {} FROM enterprises WHERE id = ?1", rows::ENTERPRISE),
        params![id],
        rows::enterprise,
    )
}

pub fn create_team(c: &Conn, mut t: Team) -> StoreResult<Team> {
    if exists(c, "teams", &t.id)? {
        return Err(StoreError::Conflict(format!("team {} exists", t.id)));
    }
    let domain_taken = c.query_opt(
        "SELECT id FROM teams WHERE domain = ?1",
        params![t.domain],
        |r| r.get::<String>(0),
    )?;
    if let Some(other) = domain_taken {
        return Err(StoreError::Conflict(format!(
            "domain {:?} is taken by team {other}",
            t.domain
        )));
    }
    if let Some(e) = &t.enterprise_id {
        if !exists(c, "enterprises", e)? {
            return Err(StoreError::NotFound(format!(
                "enterprise {e} does not exist"
            )));
        }
    }
    t.created_at = now();
    c.execute(
        "INSERT INTO teams (id, name, domain, enterprise_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![t.id, t.name, t.domain, t.enterprise_id, t.created_at],
    )?;
    Ok(t)
}

pub fn get_team(c: &Conn, id: &str) -> StoreResult<Option<Team>> {
    c.query_opt(
        &format!("SELECT {} FROM teams WHERE id = ?1", rows::TEAM),
        params![id],
        rows::team,
    )
}

pub fn require_team(c: &Conn, id: &str) -> StoreResult<Team> {
    get_team(c, id)?.ok_or_else(|| StoreError::NotFound(format!("team {id} does not exist")))
}

pub fn insert_user(c: &Conn, u: &User) -> StoreResult<()> {
    c.execute(
        &format!(
            "INSERT INTO users ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rows::USER
        ),
        params![
            u.id,
            u.team_id,
            u.enterprise_id,
            u.name,
            u.real_name,
            u.is_admin,
            u.is_bot,
            u.app_id,
            u.created_at
        ],
    )?;
    Ok(())
}

pub fn create_user(c: &Conn, mut u: User) -> StoreResult<User> {
    if let Some(team) = &u.team_id {
        require_team(c, team)?;
    }
    if exists(c, "users", &u.id)? {
        return Err(StoreError::Conflict(format!("user {} exists", u.id)));
    }
    u.created_at = now();
    insert_user(c, &u)?;
    Ok(u)
}

pub fn get_user(c: &Conn, id: &str) -> StoreResult<Option<User>> {
    c.query_opt(
        &format!("SELECT {} FROM users WHERE id = ?1", rows::USER),
        params![id],
        rows::user,
    )
}

/// Whether `user` may belong to conversations of `team`: a user of the team, or a bot user
/// installed there (team install, or org-wide install of the team's enterprise).
pub fn user_in_team(c: &Conn, team: &Team, user: &str) -> StoreResult<bool> {
    user_in_team_id(c, &team.id, team.enterprise_id.as_deref(), user)
}

/// [`user_in_team`] by ids, for callers that hold no `Team`.
pub fn user_in_team_id(
    c: &Conn,
    team: &str,
    enterprise: Option<&str>,
    user: &str,
) -> StoreResult<bool> {
    Ok(c
        .query_opt(
            "SELECT 1 FROM users WHERE id = ?1 AND (team_id = ?2 OR (team_id IS NULL AND enterprise_id IS NOT NULL AND enterprise_id = ?3))",
            params![user, team, enterprise],
            |_| Ok(()),
        )?
        .is_some())
}

pub fn get_conversation(c: &Conn, team: &str, id: &str) -> StoreResult<Option<Conversation>> {
    let head = c.query_opt(
        "SELECT id, team_id, name, kind, created_at FROM conversations WHERE team_id = ?1 AND id = ?2",
        params![team, id],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<i64>(4)?,
            ))
        },
    )?;
    let Some((id, team_id, name, kind, created_at)) = head else {
        return Ok(None);
    };
    let members = c.query(
        "SELECT user_id FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2 ORDER BY user_id",
        params![team_id, id],
        |r| r.get::<String>(0),
    )?;
    Ok(Some(Conversation {
        kind: ConversationKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("conversation kind {kind:?}")))?,
        id,
        team_id,
        name,
        members,
        created_at,
    }))
}

fn check_members(c: &Conn, team: &Team, members: &[String]) -> StoreResult<()> {
    for m in members {
        if !user_in_team(c, team, m)? {
            return Err(StoreError::NotFound(format!(
                "user {m} is not a member of team {}",
                team.id
            )));
        }
    }
    Ok(())
}

pub fn put_conversation(c: &Conn, mut conv: Conversation) -> StoreResult<(Conversation, bool)> {
    let team = require_team(c, &conv.team_id)?;
    conv.members.sort();
    conv.members.dedup();
    check_members(c, &team, &conv.members)?;
    let existing = get_conversation(c, &conv.team_id, &conv.id)?;
    let created = existing.is_none();
    conv.created_at = existing.map(|e| e.created_at).unwrap_or_else(now);
    c.execute(
        "INSERT INTO conversations (team_id, id, name, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (team_id, id) DO UPDATE SET name = excluded.name, kind = excluded.kind",
        params![conv.team_id, conv.id, conv.name, conv.kind.as_str(), conv.created_at],
    )?;
    c.execute(
        "DELETE FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2",
        params![conv.team_id, conv.id],
    )?;
    for m in &conv.members {
        c.execute(
            "INSERT INTO conversation_members (team_id, conversation_id, user_id) VALUES (?1, ?2, ?3)",
            params![conv.team_id, conv.id, m],
        )?;
    }
    Ok((conv, created))
}

fn require_conversation(c: &Conn, team: &str, id: &str) -> StoreResult<Conversation> {
    get_conversation(c, team, id)?.ok_or_else(|| {
        StoreError::NotFound(format!("conversation {id} does not exist in team {team}"))
    })
}

pub fn add_member(c: &Conn, team: &str, conv: &str, user: &str) -> StoreResult<Conversation> {
    let t = require_team(c, team)?;
    require_conversation(c, team, conv)?;
    check_members(c, &t, &[user.to_string()])?;
    c.execute(
        "INSERT INTO conversation_members (team_id, conversation_id, user_id) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![team, conv, user],
    )?;
    require_conversation(c, team, conv)
}

pub fn remove_member(c: &Conn, team: &str, conv: &str, user: &str) -> StoreResult<Conversation> {
    require_team(c, team)?;
    require_conversation(c, team, conv)?;
    let n = c.execute(
        "DELETE FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2 AND user_id = ?3",
        params![team, conv, user],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "user {user} is not a member of {conv}"
        )));
    }
    require_conversation(c, team, conv)
}
