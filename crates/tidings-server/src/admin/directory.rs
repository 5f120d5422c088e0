//! Operator API: enterprises, teams, users and conversations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tidings_core::ids::IdKind;
use tidings_store::{Conversation, ConversationKind, Enterprise, Page, Team, User};

use super::openapi::{ConversationPath, PageParams, TeamPath, PROBLEM_JSON};
use super::validate;
use crate::error::Problem;
use crate::extract::{ApiJson, Paging};
use crate::state::AppState;

type Created<T> = (StatusCode, Json<T>);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnterprise {
    /// Your own id for it; generated when absent.
    #[schema(pattern = "^E[A-Z0-9]{2,30}$")]
    id: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "Acme Holdings"
    )]
    name: String,
}

/// `GET /enterprises/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EnterprisePath {
    #[param(pattern = "^E[A-Z0-9]{2,30}$")]
    id: String,
}

#[utoipa::path(
    post, path = "/enterprises", operation_id = "create_enterprise", tag = "directory",
    request_body = NewEnterprise,
    responses(
        (status = 201, description = "The enterprise", body = Enterprise,
         links(("GetEnterprise" = (operation_id = "get_enterprise", parameters(("id" = "$response.body#/id")))))),
        (status = 409, description = "The id exists", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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

#[utoipa::path(
    get, path = "/enterprises", operation_id = "list_enterprises", tag = "directory",
    params(PageParams),
    responses((status = 200, description = "One page of enterprises", body = Page<Enterprise>)),
)]
pub async fn list_enterprises(
    State(s): State<AppState>,
    Paging(p): Paging,
) -> Result<Json<Page<Enterprise>>, Problem> {
    Ok(Json(s.store.list_enterprises(&p).await?))
}

#[utoipa::path(
    get, path = "/enterprises/{id}", operation_id = "get_enterprise", tag = "directory",
    params(EnterprisePath),
    responses((status = 200, description = "The enterprise", body = Enterprise)),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Your own id for it; generated when absent.
    #[schema(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    id: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "Acme"
    )]
    name: String,
    /// 1 to 21 lower-case letters, digits or dashes, not starting or ending with a dash.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,19}[a-z0-9])?$", example = "acme")]
    domain: String,
    /// The enterprise the team belongs to (it must exist).
    #[schema(pattern = "^E[A-Z0-9]{2,30}$")]
    enterprise_id: Option<String>,
}

#[utoipa::path(
    post, path = "/teams", operation_id = "create_team", tag = "directory",
    request_body = NewTeam,
    responses(
        (status = 201, description = "The team", body = Team,
         links(("GetTeam" = (operation_id = "get_team", parameters(("team" = "$response.body#/id")))), ("CreateUser" = (operation_id = "create_user", parameters(("team" = "$response.body#/id")))))),
        (status = 404, description = "The enterprise does not exist", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The id exists", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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

#[utoipa::path(
    get, path = "/teams", operation_id = "list_teams", tag = "directory",
    params(PageParams),
    responses((status = 200, description = "One page of teams", body = Page<Team>)),
)]
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

#[utoipa::path(
    get, path = "/teams/{team}", operation_id = "get_team", tag = "directory",
    params(TeamPath),
    responses((status = 200, description = "The team", body = Team)),
)]
pub async fn get_team(
    State(s): State<AppState>,
    Path(team): Path<String>,
) -> Result<Json<Team>, Problem> {
    Ok(Json(team_in_path(&s, &team).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Your own id for it (`U…` or `W…`); generated when absent.
    #[schema(pattern = "^[UW][A-Z0-9]{2,30}$", example = "U0ALICE")]
    id: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "alice"
    )]
    name: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    real_name: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

/// `{team}` and `{user}` in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct UserPath {
    #[param(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team: String,
    #[param(pattern = "^[UW][A-Z0-9]{2,30}$", example = "U0ALICE")]
    user: String,
}

#[utoipa::path(
    post, path = "/teams/{team}/users", operation_id = "create_user", tag = "directory",
    params(TeamPath),
    request_body = NewUser,
    responses(
        (status = 201, description = "The user", body = User,
         links(("GetUser" = (operation_id = "get_user", parameters(("team" = "$response.body#/team_id"), ("user" = "$response.body#/id")))))),
        (status = 409, description = "The id exists", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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

#[utoipa::path(
    get, path = "/teams/{team}/users", operation_id = "list_users", tag = "directory",
    params(TeamPath, PageParams),
    responses((status = 200, description = "One page of the team's users, bot users included", body = Page<User>)),
)]
pub async fn list_users(
    State(s): State<AppState>,
    Path(team): Path<String>,
    Paging(p): Paging,
) -> Result<Json<Page<User>>, Problem> {
    team_in_path(&s, &team).await?;
    Ok(Json(s.store.list_users(&team, &p).await?))
}

#[utoipa::path(
    get, path = "/teams/{team}/users/{user}", operation_id = "get_user", tag = "directory",
    params(UserPath),
    responses((status = 200, description = "The user", body = User)),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConversation {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "general"
    )]
    name: String,
    /// `public` needs a `C` id, `private` and `mpim` a `C` or `G` id, `im` a `D` id (422
    /// otherwise).
    #[schema(value_type = ConversationKind)]
    kind: String,
    /// Member user ids (they must exist in the team); an `im` has at most two.
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = "^[UW][A-Z0-9]{2,30}$")]
    members: Vec<String>,
}

/// The conversation kind, checked against the id's prefix (C public, G private or mpim, D im):
/// a kind that is not one of the four is malformed (400); one that does not fit the id is a
/// well-formed request refused (422 `kind_mismatch`), as no schema of the body alone can say.
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
        let m = format!("a {kind} conversation cannot have the id {id}");
        return Err(
            Problem::unprocessable("kind_mismatch", format!("kind: {m}")).with_field("kind", m),
        );
    }
    Ok(k)
}

#[utoipa::path(
    put, path = "/teams/{team}/conversations/{channel}", operation_id = "put_conversation",
    tag = "directory",
    params(ConversationPath),
    request_body = PutConversation,
    responses(
        (status = 200, description = "The conversation, replaced", body = Conversation),
        (status = 201, description = "The conversation, created", body = Conversation,
         links(("GetConversation" = (operation_id = "get_conversation", parameters(("team" = "$response.body#/team_id"), ("channel" = "$response.body#/id")))))),
        (status = 404, description = "The team does not exist, or a member is not in it",
         body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`kind_mismatch`: the kind does not fit the id; \
         `too_many_members`: an im with more than two", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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
        let m = "an im has at most two members";
        return Err(
            Problem::unprocessable("too_many_members", format!("members: {m}"))
                .with_field("members", m),
        );
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

#[utoipa::path(
    get, path = "/teams/{team}/conversations/{channel}", operation_id = "get_conversation",
    tag = "directory",
    params(ConversationPath),
    responses((status = 200, description = "The conversation with its members", body = Conversation)),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(pattern = "^[UW][A-Z0-9]{2,30}$", example = "U0ALICE")]
    user: String,
}

/// `{team}`, `{channel}` and `{user}` in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct MemberPath {
    #[param(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team: String,
    #[param(pattern = "^[CGD][A-Z0-9]{2,30}$", example = "C0GENERAL")]
    channel: String,
    #[param(pattern = "^[UW][A-Z0-9]{2,30}$", example = "U0ALICE")]
    user: String,
}

#[utoipa::path(
    post, path = "/teams/{team}/conversations/{channel}/members", operation_id = "add_member",
    tag = "directory",
    params(ConversationPath),
    request_body = AddMember,
    responses(
        (status = 200, description = "The conversation with its members", body = Conversation),
        (status = 404, description = "The team, the conversation or the user does not exist",
         body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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

#[utoipa::path(
    delete, path = "/teams/{team}/conversations/{channel}/members/{user}",
    operation_id = "remove_member", tag = "directory",
    params(MemberPath),
    responses((status = 200, description = "The conversation with its members", body = Conversation)),
)]
pub async fn remove_member(
    State(s): State<AppState>,
    Path((team, channel, user)): Path<(String, String, String)>,
) -> Result<Json<Conversation>, Problem> {
    team_in_path(&s, &team).await?;
    validate::path_id(IdKind::Conversation, "channel", &channel)?;
    validate::path_id(IdKind::User, "user", &user)?;
    Ok(Json(s.store.remove_member(&team, &channel, &user).await?))
}
