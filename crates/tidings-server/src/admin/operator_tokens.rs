//! Operator API: publisher tokens (`tdk_pub_`), which may publish events and nothing else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tidings_core::ids::{self, IdKind};
use tidings_core::token::{self, TokenKind};
use tidings_store::{NewOperatorToken, OperatorToken};

use super::validate;
use crate::error::Problem;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewPublisher {
    label: Option<String>,
}

pub async fn create(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewPublisher>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
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
    let mut v = serde_json::to_value(&t).map_err(|e| Problem::bad_request(e.to_string()))?;
    v["token"] = text.into();
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list(State(s): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    let items = s.store.list_operator_tokens().await?;
    Ok(Json(
        serde_json::json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn revoke(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OperatorToken>, Problem> {
    validate::path_id(IdKind::AppToken, "id", &id)?;
    Ok(Json(s.store.revoke_operator_token(&id).await?))
}
