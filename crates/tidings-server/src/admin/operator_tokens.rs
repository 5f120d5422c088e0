//! Operator API: publisher tokens (`tdk_pub_`), which may publish events and nothing else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::ids::{self, IdKind};
use tidings_core::token::{self, TokenKind};
use tidings_store::{NewOperatorToken, OperatorToken, Page};

use super::validate;
use crate::error::Problem;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPublisher {
    /// What the token is for.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    label: Option<String>,
}

/// A new publisher token: the record, and the token itself, shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedOperatorToken {
    #[serde(flatten)]
    record: OperatorToken,
    /// `tdk_pub_…`
    token: String,
}

/// `{id}` of a publisher token in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TokenPath {
    #[param(pattern = "^XT[A-Z0-9]{2,30}$")]
    id: String,
}

#[utoipa::path(
    post, path = "/publisher_tokens", operation_id = "create_publisher_token", tag = "operator",
    request_body = NewPublisher,
    responses((status = 201, description = "The token, shown once", body = CreatedOperatorToken,
               links(("RevokePublisherToken" = (operation_id = "revoke_publisher_token", parameters(("id" = "$response.body#/id"))))))),
)]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewPublisher>,
) -> Result<(StatusCode, Json<CreatedOperatorToken>), Problem> {
    let label = b.label.map(|l| validate::name("label", &l)).transpose()?;
    let text = token::generate(TokenKind::Publisher, None);
    let t = s
        .store
        .create_operator_token(NewOperatorToken {
            id: ids::generate(IdKind::AppToken),
            kind: TokenKind::Publisher.as_str().into(),
            label,
            token_hash: token::hash(&text),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOperatorToken {
            record: t,
            token: text,
        }),
    ))
}

/// Not paginated (few tokens): `next_cursor` is always `null`.
#[utoipa::path(
    get, path = "/publisher_tokens", operation_id = "list_publisher_tokens", tag = "operator",
    responses((status = 200, description = "Every publisher token, revoked ones included", body = Page<OperatorToken>)),
)]
pub async fn list(State(s): State<AppState>) -> Result<Json<Page<OperatorToken>>, Problem> {
    let items = s.store.list_operator_tokens().await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(
    delete, path = "/publisher_tokens/{id}", operation_id = "revoke_publisher_token", tag = "operator",
    params(TokenPath),
    responses((status = 200, description = "The token, revoked", body = OperatorToken)),
)]
pub async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OperatorToken>, Problem> {
    validate::path_id(IdKind::AppToken, "id", &id)?;
    Ok(Json(s.store.revoke_operator_token(&id).await?))
}
