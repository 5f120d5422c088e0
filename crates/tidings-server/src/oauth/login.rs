//! The login hand-off (API.md, OAuth): the platform, which owns its users' logins, signs
//! a short-lived HS256 assertion with `[oauth] login_secret` and sends the browser to
//! `GET /oauth/v2/login?assertion=<JWT>&return_to=<authorize URL>`. Tidings verifies it
//! (the `jsonwebtoken` crate), refuses an assertion seen before, sets the session cookie
//! and follows `return_to`, only ever to one of its own paths.
//!
//! With `--dev`, `GET /oauth/v2/dev_login` instead lists the workspace's people to pick
//! from, so local development needs no platform.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::now;
use super::page::{self, esc};
use super::session::{self, Person};
use crate::state::AppState;

/// How far ahead an assertion may expire: it is a hand-off, not a credential.
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    team_id: String,
    exp: i64,
    #[serde(default)]
    enterprise_id: Option<String>,
    #[serde(default)]
    org_admin: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    assertion: Option<String>,
    return_to: Option<String>,
}

/// Why an assertion was refused (shown on the error page; never the assertion itself).
#[derive(Debug, PartialEq)]
pub enum Refused {
    Expired,
    TooLong,
    Invalid,
}

/// Verifies an assertion's signature and times; answers its person and expiry.
pub fn verify(secret: &str, assertion: &str, now: i64) -> Result<(Person, i64), Refused> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "sub"]);
    let data =
        jsonwebtoken::decode::<Claims>(assertion, &DecodingKey::from_secret(secret.as_bytes()), &v)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Refused::Expired,
                _ => Refused::Invalid,
            })?;
    let c = data.claims;
    if c.exp > now + MAX_ASSERTION_LIFETIME {
        return Err(Refused::TooLong);
    }
    if c.sub.is_empty() || c.team_id.is_empty() {
        return Err(Refused::Invalid);
    }
    Ok((
        Person {
            user_id: c.sub,
            team_id: c.team_id,
            enterprise_id: c.enterprise_id,
            org_admin: c.org_admin,
        },
        c.exp,
    ))
}

/// The path to follow after login: a path of this server (absolute URLs only under
/// `public_url`), else `None`.
pub fn own_path(public_url: &str, return_to: &str) -> Option<String> {
    let path = match return_to.strip_prefix(public_url) {
        Some(rest) if rest.starts_with('/') => rest,
        Some(_) => return None,
        None => return_to,
    };
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control());
    ok.then(|| path.to_string())
}

fn with_session(s: &AppState, person: &Person, to: &str) -> Response {
    let value = session::Key::of(s).issue(person, now());
    let mut res = Redirect::to(to).into_response();
    let secure = s.public_url.starts_with("https://");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&value, secure)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    page::no_store(&mut res);
    res
}

/// `GET /oauth/v2/login`.
pub async fn login(State(s): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let Some(secret) = s.config.oauth.login_secret.as_deref() else {
        return page::error(
            StatusCode::NOT_FOUND,
            "Sign-in is not set up",
            "This server has no [oauth] login_secret, so it accepts no login assertions.",
        );
    };
    let (Some(assertion), Some(return_to)) = (q.assertion, q.return_to) else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The sign-in link needs both assertion and return_to.",
        );
    };
    let Some(to) = own_path(&s.public_url, &return_to) else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "return_to must be a page of this server.",
        );
    };
    let now = now();
    let (person, exp) = match verify(secret, &assertion, now) {
        Ok(p) => p,
        Err(r) => {
            tracing::info!(reason = ?r, "login assertion refused");
            let detail = match r {
                Refused::Expired => "The sign-in assertion has expired. Sign in again.",
                Refused::TooLong => {
                    "The sign-in assertion is valid for too long (at most 5 minutes)."
                }
                Refused::Invalid => "The sign-in assertion is not valid.",
            };
            return page::error(StatusCode::UNAUTHORIZED, "Sign-in failed", detail);
        }
    };
    let id = tidings_core::token::hash(&assertion);
    match s.store.use_login_assertion(&id, exp).await {
        Ok(true) => {}
        Ok(false) => {
            return page::error(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                "This sign-in assertion was used already. Sign in again.",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a login assertion");
            return page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                "Try again in a moment.",
            );
        }
    }
    with_session(&s, &person, &to)
}

#[derive(Deserialize)]
pub struct DevQuery {
    user: Option<String>,
    return_to: Option<String>,
}

/// `GET /oauth/v2/dev_login` (only with `--dev`): pick a person, or sign in as `user`.
pub async fn dev_login(State(s): State<AppState>, Query(q): Query<DevQuery>) -> Response {
    if !s.dev {
        return page::error(
            StatusCode::NOT_FOUND,
            "Not found",
            "This page exists only with --dev.",
        );
    }
    let return_to = q.return_to.unwrap_or_else(|| "/oauth/v2/dev_login".into());
    let Some(to) = own_path(&s.public_url, &return_to) else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "return_to must be a page of this server.",
        );
    };
    if let Some(user) = q.user {
        return match s.store.get_user(&user).await {
            Ok(Some(u)) if !u.is_bot && u.team_id.is_some() => {
                let person = Person {
                    user_id: u.id,
                    team_id: u.team_id.unwrap_or_default(),
                    enterprise_id: None,
                    org_admin: u.is_admin,
                };
                with_session(&s, &person, &to)
            }
            _ => page::error(StatusCode::NOT_FOUND, "Sign-in failed", "No such person."),
        };
    }
    let mut items = String::new();
    let first = tidings_store::PageRequest {
        limit: 100,
        after: None,
    };
    let teams = match s.store.list_teams(&first).await {
        Ok(t) => t.items,
        Err(_) => Vec::new(),
    };
    for t in teams {
        let users = match s.store.list_users(&t.id, &first).await {
            Ok(u) => u.items,
            Err(_) => Vec::new(),
        };
        for u in users.into_iter().filter(|u| !u.is_bot) {
            let href = super::redirect::with_query(
                "/oauth/v2/dev_login",
                &[("user", &u.id), ("return_to", &to)],
            );
            items.push_str(&format!(
                "<li><a href=\"{}\">{} ({})</a> in {}</li>",
                esc(&href),
                esc(&u.name),
                esc(&u.id),
                esc(&t.name)
            ));
        }
    }
    let body =
        format!("<h1>Sign in as</h1><p>Development mode: pick a person.</p><ul>{items}</ul>");
    let mut res = Html(page::layout("Sign in", &body)).into_response();
    page::no_store(&mut res);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn sign(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_signed_assertion_names_its_person() {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let t = sign(
            serde_json::json!({"sub":"U1","team_id":"T1","exp":now + 100,"org_admin":true}),
            Algorithm::HS256,
            SECRET,
        );
        let (p, exp) = verify(SECRET, &t, now).unwrap();
        assert_eq!(
            (p.user_id.as_str(), p.team_id.as_str(), p.org_admin, exp),
            ("U1", "T1", true, now + 100)
        );
    }

    #[test]
    fn forged_expired_and_long_lived_assertions_are_refused() {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let c = serde_json::json!({"sub":"U1","team_id":"T1","exp":now + 60});
        assert_eq!(
            verify(
                SECRET,
                &sign(
                    c.clone(),
                    Algorithm::HS256,
                    "another secret of 32 characters!"
                ),
                now
            )
            .unwrap_err(),
            Refused::Invalid
        );
        assert_eq!(
            verify(SECRET, &sign(c, Algorithm::HS384, SECRET), now).unwrap_err(),
            Refused::Invalid
        );
        let old = serde_json::json!({"sub":"U1","team_id":"T1","exp":now - 1});
        assert_eq!(
            verify(SECRET, &sign(old, Algorithm::HS256, SECRET), now).unwrap_err(),
            Refused::Expired
        );
        let long = serde_json::json!({"sub":"U1","team_id":"T1","exp":now + 3600});
        assert_eq!(
            verify(SECRET, &sign(long, Algorithm::HS256, SECRET), now).unwrap_err(),
            Refused::TooLong
        );
        let no_team = serde_json::json!({"sub":"U1","exp":now + 60});
        assert_eq!(
            verify(SECRET, &sign(no_team, Algorithm::HS256, SECRET), now).unwrap_err(),
            Refused::Invalid
        );
        assert_eq!(
            verify(SECRET, "not.a.jwt", now).unwrap_err(),
            Refused::Invalid
        );
    }

    #[test]
    fn return_to_is_followed_only_to_own_paths() {
        let base = "http://127.0.0.1:3000";
        assert_eq!(
            own_path(base, "/oauth/v2/authorize?x=1").as_deref(),
            Some("/oauth/v2/authorize?x=1")
        );
        assert_eq!(
            own_path(base, "http://127.0.0.1:3000/oauth/v2/authorize").as_deref(),
            Some("/oauth/v2/authorize")
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "http://127.0.0.1:30000/x",
            "oauth",
        ] {
            assert_eq!(own_path(base, bad), None, "{bad}");
        }
    }
}
