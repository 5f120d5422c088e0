//! The browser dashboard under `/ui`: the login form, the session endpoints and the
//! embedded single-page app, which reads and acts through the operator API
//! (`/admin/v1`) with the session cookie. No data is rendered on the server.
//!
//! Every response here carries a strict Content-Security-Policy (only this origin's
//! scripts, no inline code), `X-Frame-Options: DENY` and `Referrer-Policy: same-origin`.

pub mod assets;
pub mod session;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tidings_core::token;

use crate::error::Problem;
use crate::extract::{read_limited, BodyError};
use crate::state::AppState;
use session::SessionKey;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Routes under `/ui`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(session_info))
        .route("/ui/assets/{*path}", get(asset))
        .route("/ui/vendor/{*path}", get(vendor))
        .route("/ui/{*page}", get(other_page))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn secure(s: &AppState) -> bool {
    s.public_url.starts_with("https://")
}

/// The app's shell, or the login form for someone without a session.
async fn index(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match session::current(&s, &headers).await {
        Some(_) => html(StatusCode::OK, assets::INDEX_HTML.to_string()),
        None => Redirect::to("/ui/login").into_response(),
    }
}

/// Any other page path: the app lives at `/ui/` (its pages are `#/…` routes).
async fn other_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match session::current(&s, &headers).await {
        Some(_) => Redirect::to("/ui/").into_response(),
        None => Redirect::to("/ui/login").into_response(),
    }
}

fn login_form(status: StatusCode, error: Option<&'static str>) -> Response {
    let message = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{e}</p>")
    });
    html(status, assets::LOGIN_HTML.replace("<!--error-->", &message))
}

async fn login_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if session::current(&s, &headers).await.is_some() {
        return Redirect::to("/ui/").into_response();
    }
    login_form(StatusCode::OK, None)
}

/// A browser's `Origin` on a form POST must be this server's own (against login CSRF);
/// a request without one (not a browser, or an old one) passes.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Signs in with the admin token from the form. Nobody is known yet, so at most
/// `server.max_unauthenticated_body_bytes` of the form are read.
async fn login(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if !same_origin(&headers) {
        return login_form(
            StatusCode::FORBIDDEN,
            Some("This sign-in did not come from this server's own page."),
        );
    }
    let limit = s.config.server.unauthenticated_body_limit();
    let body = match read_limited(&headers, body, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return login_form(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("That sign-in form is too large."),
            )
        }
        Err(BodyError::Unreadable) => {
            return login_form(
                StatusCode::BAD_REQUEST,
                Some("That sign-in form could not be read."),
            )
        }
    };
    let presented = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let hash = token::hash(&presented);
    if presented.is_empty()
        || !token::constant_time_eq(hash.as_bytes(), s.admin_token_hash.as_bytes())
    {
        tracing::info!("dashboard login refused: not the admin token");
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    let value = SessionKey::of(&s).issue(session::now());
    let mut res = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&value, secure(&s))) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// Ends the session on every node (the same cookie is refused from now on) and clears
/// the cookie. With a live session, the CSRF token must come along (so another site
/// cannot sign an operator out).
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session::current(&s, &headers).await {
        let presented = headers
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !SessionKey::of(&s).csrf_ok(cookie, presented) {
            return Problem::forbidden("logging out needs the session's X-CSRF-Token")
                .into_response();
        }
        if let Err(e) = session::end(&s, cookie).await {
            return Problem::from(e).into_response();
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(secure(&s))) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// The session's CSRF token, for the app to send as `X-CSRF-Token`.
async fn session_info(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match session::current(&s, &headers).await {
        Some(cookie) => Json(serde_json::json!({
            "csrf_token": SessionKey::of(&s).csrf(cookie),
        }))
        .into_response(),
        None => Problem::unauthorized("not signed in to the dashboard").into_response(),
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((a, etag)) = assets::get(path) else {
        return Problem::not_found(format!("no dashboard file /ui/{path}")).into_response();
    };
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let common = [
        (header::CACHE_CONTROL, "no-cache"),
        (header::ETAG, etag),
        (header::CONTENT_TYPE, a.content_type),
    ];
    if cached {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (StatusCode::OK, common, a.body).into_response()
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{path}"), &headers)
}

async fn vendor(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("vendor/{path}"), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_login_origin_must_be_this_host() {
        assert!(same_origin(&headers(&[(header::HOST, "127.0.0.1:3000")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://127.0.0.1:3000")
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "null")
        ])));
        assert!(!same_origin(&headers(&[(
            header::ORIGIN,
            "http://127.0.0.1:3000"
        )])));
    }
}
