//! Operator API: enterprises, teams, users and conversations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tidings_core::ids::IdKind;
use tidings_store::{Conversation, ConversationKind, Enterprise, Page, Team, User};

use super::validate;
use crate::error::Problem;
use crate::extract::{ApiJson, Paging};
use crate::state::AppState;

type Created<T> = (StatusCode, Json<T>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnterprise {
    id: Option<String>,
    name: String,
}

pub async fn create_enterprise(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewEnterprise>,
) -> Result<Created<Enterprise>, Problem> {
    let e = Enterprise {
        id: validate::id_or_new(IdKind::Enterprise, b.id)?,
        name: validate::name("name", &b.name)?,
        created_at: 0,
    };
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_enterprise(e).await?),
    ))
}

pub async fn list_enterprises(
    State(s): State<AppState>,
    Paging(p): Paging,
) -> Result<Json<Page<Enterprise>>, Problem> {
    Ok(Json(s.store.list_enterprises(&p).await?))
}

pub async fn get_enterprise(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Enterprise>, Problem> {
    validate::path_id(IdKind::Enterprise, "id", &id)?;
    s.store
        .get_enterprise(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("enterprise {id} does not exist")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    id: Option<String>,
    name: String,
    domain: String,
    enterprise_id: Option<String>,
}

pub async fn create_team(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewTeam>,
) -> Result<Created<Team>, Problem> {
    if let Some(e) = &b.enterprise_id {
        validate::field_id(IdKind::Enterprise, "enterprise_id", e)?;
    }
    let t = Team {
        id: validate::id_or_new(IdKind::Team, b.id)?,
        name: validate::name("name", &b.name)?,
        domain: validate::domain(&b.domain)?,
        enterprise_id: b.enterprise_id,
        created_at: 0,
    };
    Ok((StatusCode::CREATED, Json(s.store.create_team(t).await?)))
}

pub async fn list_teams(
    State(s): State<AppState>,
    Paging(p): Paging,
) -> Result<Json<Page<Team>>, Problem> {
    Ok(Json(s.store.list_teams(&p).await?))
}

/// The team in the path, or 404.
pub async fn team_in_path(s: &AppState, team: &str) -> Result<Team, Problem> {
    validate::path_id(IdKind::Team, "team", team)?;
    s.store
        .get_team(team)
        .await?
        .ok_or_else(|| Problem::not_found(format!("team {team} does not exist")))
}

pub async fn get_team(
    State(s): State<AppState>,
    Path(team): Path<String>,
) -> Result<Json<Team>, Problem> {
    Ok(Json(team_in_path(&s, &team).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    id: Option<String>,
    name: String,
    real_name: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

pub async fn create_user(
    State(s): State<AppState>,
    Path(team): Path<String>,
    ApiJson(b): ApiJson<NewUser>,
) -> Result<Created<User>, Problem> {
    let team = team_in_path(&s, &team).await?;
    let u = User {
        id: validate::id_or_new(IdKind::User, b.id)?,
        team_id: Some(team.id),
        enterprise_id: None,
        name: validate::name("name", &b.name)?,
        real_name: b
            .real_name
            .map(|r| validate::name("real_name", &r))
            .transpose()?,
        is_admin: b.is_admin,
        is_bot: false,
        app_id: None,
        created_at: 0,
    };
    Ok((StatusCode::CREATED, Json(s.store.create_user(u).await?)))
}

pub async fn list_users(
    State(s): State<AppState>,
    Path(team): Path<String>,
    Paging(p): Paging,
) -> Result<Json<Page<User>>, Problem> {
    team_in_path(&s, &team).await?;
    Ok(Json(s.store.list_users(&team, &p).await?))
}

pub async fn get_user(
    State(s): State<AppState>,
    Path((team, user)): Path<(String, String)>,
) -> Result<Json<User>, Problem> {
    team_in_path(&s, &team).await?;
    validate::path_id(IdKind::User, "user", &user)?;
    s.store
        .get_user(&user)
        .await?
        .filter(|u| u.team_id.as_deref() == Some(team.as_str()))
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("user {user} does not exist in team {team}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConversation {
    name: String,
    kind: String,
    #[serde(default)]
    members: Vec<String>,
}

/// The conversation kind, checked against the id's prefix (C public, G private or mpim, D im).
fn conversation_kind(id: &str, kind: &str) -> Result<ConversationKind, Problem> {
    let k = ConversationKind::parse(kind).ok_or_else(|| {
        Problem::invalid_field("kind", "must be one of public, private, im, mpim")
    })?;
    let prefix_ok = match k {
        ConversationKind::Public => id.starts_with('C'),
        ConversationKind::Private => id.starts_with('G') || id.starts_with('C'),
        ConversationKind::Mpim => id.starts_with('G') || id.starts_with('C'),
        ConversationKind::Im => id.starts_with('D'),
    };
    if !prefix_ok {
        return Err(Problem::invalid_field(
            "kind",
            format!("a {kind} conversation cannot have the id {id}"),
        ));
    }
    Ok(k)
}

pub async fn put_conversation(
    State(s): State<AppState>,
    Path((team, channel)): Path<(String, String)>,
    ApiJson(b): ApiJson<PutConversation>,
) -> Result<(StatusCode, Json<Conversation>), Problem> {
    team_in_path(&s, &team).await?;
    validate::path_id(IdKind::Conversation, "channel", &channel)?;
    let kind = conversation_kind(&channel, &b.kind)?;
    for (i, m) in b.members.iter().enumerate() {
        validate::field_id(IdKind::User, &format!("members[{i}]"), m)?;
    }
    if kind == ConversationKind::Im && b.members.len() > 2 {
        return Err(Problem::invalid_field(
            "members",
            "an im has at most two members",
        ));
    }
    let c = Conversation {
        id: channel,
        team_id: team,
        name: validate::name("name", &b.name)?,
        kind,
        members: b.members,
        created_at: 0,
    };
    let (conv, created) = s.store.put_conversation(c).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conv)))
}

pub async fn get_conversation(
    State(s): State<AppState>,
    Path((team, channel)): Path<(String, String)>,
) -> Result<Json<Conversation>, Problem> {
    team_in_path(&s, &team).await?;
    validate::path_id(IdKind::Conversation, "channel", &channel)?;
    s.store
        .get_conversation(&team, &channel)
        .await?
        .map(Json)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "conversation {channel} does not exist in team {team}"
            ))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user: String,
}

pub async fn add_member(
    State(s): State<AppState>,
    Path((team, channel)): Path<(String, String)>,
    ApiJson(b): ApiJson<AddMember>,
) -> Result<Json<Conversation>, Problem> {
    team_in_path(&s, &team).await?;
    validate::path_id(IdKind::Conversation, "channel", &channel)?;
    validate::field_id(IdKind::User, "user", &b.user)?;
    Ok(Json(s.store.add_member(&team, &channel, &b.user).await?))
}

pub async fn remove_member(
    State(s): State<AppState>,
    Path((team, channel, user)): Path<(String, String, String)>,
) -> Result<Json<Conversation>, Problem> {
    team_in_path(&s, &team).await?;
    validate::path_id(IdKind::Conversation, "channel", &channel)?;
    validate::path_id(IdKind::User, "user", &user)?;
    Ok(Json(s.store.remove_member(&team, &channel, &user).await?))
}
