//! Operator authentication: `Authorization: Bearer <admin token>` for everything, or a
//! publisher token for the publish endpoints only, or the dashboard's session cookie (an
//! admin) with its CSRF token on every call that is not a GET or HEAD.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tidings_core::token::{self, TokenKind};

use crate::error::Problem;
use crate::state::AppState;
use crate::ui::session;

/// Who is calling, put in request extensions for handlers that care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Admin,
    Publisher,
}

/// Paths (relative to `/admin/v1`) a publisher token may POST to (publishing, and its dry run).
const PUBLISH_PATHS: &[&str] = &["/events", "/events/batch", "/events/validate"];

pub fn bearer(req_headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = req_headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

pub async fn require_operator(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(presented) = bearer(req.headers()) else {
        // Headers and method, not the request: its body is not `Sync`.
        let (headers, method) = (req.headers().clone(), req.method().clone());
        return match dashboard_session(&state, &headers, &method).await {
            Ok(()) => {
                req.extensions_mut().insert(Operator::Admin);
                next.run(req).await
            }
            Err(p) => p.into_response(),
        };
    };
    let hash = token::hash(presented);
    let operator = if token::constant_time_eq(hash.as_bytes(), state.admin_token_hash.as_bytes()) {
        Operator::Admin
    } else if TokenKind::of(presented) == Some(TokenKind::Publisher) {
        match state.store.authenticate(&hash).await {
            Ok(Some(g)) if g.kind == "publisher" && !g.revoked => Operator::Publisher,
            Ok(_) => return Problem::unauthorized("the token is not valid").into_response(),
            Err(e) => return Problem::from(e).into_response(),
        }
    } else {
        return Problem::unauthorized("the token is not valid").into_response();
    };
    if operator == Operator::Publisher
        && !(req.method() == Method::POST && PUBLISH_PATHS.contains(&req.uri().path()))
    {
        return Problem::forbidden("publisher tokens may only publish events").into_response();
    }
    req.extensions_mut().insert(operator);
    next.run(req).await
}

/// A request without a bearer token: accepted with a live dashboard session cookie, and,
/// unless it only reads, the CSRF token bound to that cookie.
async fn dashboard_session(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    method: &Method,
) -> Result<(), Problem> {
    let Some(cookie) = session::current(state, headers).await else {
        return Err(Problem::unauthorized(
            "missing Authorization: Bearer <admin token>",
        ));
    };
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let presented = headers
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if session::SessionKey::of(state).csrf_ok(cookie, presented) {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "a dashboard session must send its CSRF token in X-CSRF-Token (from GET /ui/session)",
        ))
    }
}

pub async fn not_found(req: Request) -> Problem {
    Problem::not_found(format!(
        "no operator API route {} {}",
        req.method(),
        req.uri().path()
    ))
}
