//! `/oauth/v2/authorize`: the consent page (GET) and its form (POST).
//!
//! GET takes `client_id`, `scope`, `user_scope`, `redirect_uri`, `state` and `team` as
//! both SDKs build them (Python unencoded, Node percent-encoded: the query is parsed
//! leniently). Everything that would make a redirect unsafe — an unknown `client_id`, a
//! `redirect_uri` not registered, unknown scopes — answers an error page, never a
//! redirect. Without a session the browser goes to the platform's `login_url` (or, with
//! `--dev`, to the user picker) and comes back here.
//!
//! POST carries the same fields plus the CSRF token bound to the session cookie and the
//! button pressed. `Allow` records a single-use code for what was allowed and redirects
//! to `redirect_uri?code=…&state=…`; the installation itself is written when the app
//! exchanges the code (`oauth.v2.access`), through the operator API's install, so a code
//! never exchanged — or refused — leaves nothing installed. `Cancel` redirects with
//! `error=access_denied`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tidings_core::token;
use tidings_store::oauth::{OAuthClient, OAuthGrant};
use tidings_store::App;

use super::page::{self, esc};
use super::session::{self, Person};
use super::{now, redirect, scopes};
use crate::state::AppState;

/// The authorize parameters, as sent.
#[derive(Debug, Default, Clone)]
struct Request {
    client_id: String,
    scope: String,
    user_scope: String,
    redirect_uri: Option<String>,
    state: String,
    team: Option<String>,
    csrf: Option<String>,
    decision: Option<String>,
}

impl Request {
    fn parse(raw: &[u8]) -> Request {
        let mut r = Request::default();
        for (k, v) in form_urlencoded::parse(raw) {
            let v = v.into_owned();
            match k.as_ref() {
                "client_id" => r.client_id = v,
                "scope" => r.scope = v,
                "user_scope" => r.user_scope = v,
                "redirect_uri" if !v.is_empty() => r.redirect_uri = Some(v),
                "state" => r.state = v,
                "team" if !v.is_empty() => r.team = Some(v),
                "csrf" => r.csrf = Some(v),
                "decision" => r.decision = Some(v),
                _ => {}
            }
        }
        r
    }
}

/// An authorize request that is safe to act on.
struct Checked {
    client: OAuthClient,
    app: App,
    redirect: String,
    bot_scopes: Vec<String>,
    user_scopes: Vec<String>,
}

fn bad(title: &str, detail: &str) -> Response {
    page::error(StatusCode::BAD_REQUEST, title, detail)
}

async fn check(s: &AppState, r: &Request) -> Result<Checked, Response> {
    let unavailable = |e: tidings_store::StoreError| {
        tracing::warn!(error = %e, "authorize: store unavailable");
        page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The server is busy; try again in a moment.",
        )
    };
    let client: OAuthClient = match s.store.oauth_client_by_id(&r.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(bad(
                "Unknown app",
                "The link names no app of this server (invalid client_id).",
            ))
        }
        Err(e) => return Err(unavailable(e)),
    };
    let app = match s.store.get_app(&client.app_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(bad("Unknown app", "The app of this link no longer exists.")),
        Err(e) => return Err(unavailable(e)),
    };
    let Some(redirect) = redirect::resolve(&client.redirect_urls, r.redirect_uri.as_deref()) else {
        return Err(bad(
            "Redirect URL not allowed",
            "The app asked to send you to an address it has not registered (bad_redirect_uri).",
        ));
    };
    let bot_scopes = scopes::parse(&r.scope).map_err(|u| {
        bad(
            "Unknown permission",
            &format!("The app asks for a scope this server does not know: {u}."),
        )
    })?;
    let user_scopes = scopes::parse(&r.user_scope).map_err(|u| {
        bad(
            "Unknown permission",
            &format!("The app asks for a scope this server does not know: {u}."),
        )
    })?;
    if bot_scopes.is_empty() && user_scopes.is_empty() {
        return Err(bad(
            "No permissions asked",
            "The app asks for no scope at all (invalid_scope).",
        ));
    }
    Ok(Checked {
        client,
        app,
        redirect,
        bot_scopes,
        user_scopes,
    })
}

/// The signed-in person, if the request carries a live session: `(cookie, person)`.
fn person(s: &AppState, headers: &HeaderMap) -> Option<(String, Person)> {
    let value = session::cookie(headers)?;
    let p = session::Key::of(s).verify(value, now())?;
    Some((value.to_string(), p))
}

/// Where to send someone without a session: the platform's login, or the dev picker.
fn sign_in(s: &AppState, query: &str) -> Response {
    let here = format!("/oauth/v2/authorize?{query}");
    if let Some(login) = &s.config.oauth.login_url {
        let absolute = format!("{}{here}", s.public_url);
        return Redirect::to(&redirect::with_query(login, &[("return_to", &absolute)]))
            .into_response();
    }
    if s.dev {
        return Redirect::to(&redirect::with_query(
            "/oauth/v2/dev_login",
            &[("return_to", &here)],
        ))
        .into_response();
    }
    page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is not set up",
        "This server has no [oauth] login_url, so nobody can be signed in to install apps.",
    )
}

/// Where the install goes: the person's team, or — for an app with `org_deploy_enabled`
/// and a person the platform vouches for as an org admin of the team's enterprise — the
/// whole organization. Answers (enterprise id for an org-wide install, the place's name).
async fn place(
    s: &AppState,
    c: &Checked,
    p: &Person,
    team: Option<&str>,
) -> Result<(Option<String>, String), Response> {
    let t = may_install(s, p, team).await?;
    let org = c.client.org_deploy_enabled
        && p.org_admin
        && p.enterprise_id.is_some()
        && t.enterprise_id == p.enterprise_id;
    if !org {
        return Ok((None, t.name));
    }
    let e = t.enterprise_id.unwrap_or_default();
    match s.store.get_enterprise(&e).await {
        Ok(Some(ent)) => Ok((
            Some(ent.id),
            format!("{} (every workspace of the organization)", ent.name),
        )),
        _ => Err(page::error(
            StatusCode::FORBIDDEN,
            "Cannot install here",
            "Your organization is not known to this server.",
        )),
    }
}

/// The person may install in their team: a member (not a bot) of it, and of the team the
/// link names, if any.
async fn may_install(
    s: &AppState,
    p: &Person,
    team: Option<&str>,
) -> Result<tidings_store::Team, Response> {
    let forbidden = |d: &str| page::error(StatusCode::FORBIDDEN, "Cannot install here", d);
    if team.is_some_and(|t| t != p.team_id) {
        return Err(forbidden(
            "The link is for another workspace than the one you are signed in to.",
        ));
    }
    match s.store.get_user(&p.user_id).await {
        Ok(Some(u)) if !u.is_bot && u.team_id.as_deref() == Some(p.team_id.as_str()) => {
            match s.store.get_team(&p.team_id).await {
                Ok(Some(t)) => Ok(t),
                _ => Err(forbidden("Your workspace is not known to this server.")),
            }
        }
        _ => Err(forbidden("You are not a member of this workspace.")),
    }
}

/// `GET /oauth/v2/authorize`: the consent page.
pub async fn show(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let r = Request::parse(query.as_bytes());
    let c = match check(&s, &r).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let Some((cookie, p)) = person(&s, &headers) else {
        return sign_in(&s, &query);
    };
    let team_name = match place(&s, &c, &p, r.team.as_deref()).await {
        Ok((_, n)) => n,
        Err(page) => return page,
    };
    let csrf = session::Key::of(&s).csrf(&cookie);
    let list = |scopes: &[String]| -> String {
        scopes
            .iter()
            .map(|sc| {
                format!(
                    "<li>{} <code>{}</code></li>",
                    esc(scopes::describe(sc).unwrap_or(sc)),
                    esc(sc)
                )
            })
            .collect()
    };
    let mut body = format!(
        "<h1>{} is asking for permission to access {}</h1><p>Signed in as <b>{}</b>.</p>",
        esc(&c.app.name),
        esc(&team_name),
        esc(&p.user_id)
    );
    if !c.bot_scopes.is_empty() {
        body.push_str(&format!(
            "<h2>What will {} be able to do?</h2><ul>{}</ul>",
            esc(&c.app.name),
            list(&c.bot_scopes)
        ));
    }
    if !c.user_scopes.is_empty() {
        body.push_str(&format!(
            "<h2>What will {} be able to do on your behalf?</h2><ul>{}</ul>",
            esc(&c.app.name),
            list(&c.user_scopes)
        ));
    }
    let hidden =
        |k: &str, v: &str| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v));
    let mut form = String::from("<form method=\"post\" action=\"/oauth/v2/authorize\">");
    form.push_str(&hidden("client_id", &r.client_id));
    form.push_str(&hidden("scope", &c.bot_scopes.join(",")));
    form.push_str(&hidden("user_scope", &c.user_scopes.join(",")));
    if let Some(u) = &r.redirect_uri {
        form.push_str(&hidden("redirect_uri", u));
    }
    form.push_str(&hidden("state", &r.state));
    if let Some(t) = &r.team {
        form.push_str(&hidden("team", t));
    }
    form.push_str(&hidden("csrf", &csrf));
    form.push_str("<button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button>");
    form.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button></form>",
    );
    body.push_str(&form);
    let mut res = Html(page::layout(&format!("Install {}", c.app.name), &body)).into_response();
    page::no_store(&mut res);
    res
}

/// `POST /oauth/v2/authorize`: the consent form.
pub async fn decide(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let r = Request::parse(&body);
    let c = match check(&s, &r).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let forbidden = |d: &str| page::error(StatusCode::FORBIDDEN, "Install refused", d);
    let Some((cookie, p)) = person(&s, &headers) else {
        return forbidden("Your sign-in has ended. Start the install again from the app.");
    };
    let csrf_ok = r
        .csrf
        .as_deref()
        .is_some_and(|t| session::Key::of(&s).csrf_ok(&cookie, t));
    if !csrf_ok {
        return forbidden(
            "The form did not come from this page (CSRF check failed). Start again from the app.",
        );
    }
    let org = match place(&s, &c, &p, r.team.as_deref()).await {
        Ok((org, _)) => org,
        Err(page) => return page,
    };
    match r.decision.as_deref() {
        Some("allow") => {}
        Some("cancel") => {
            return Redirect::to(&redirect::with_query(
                &c.redirect,
                &[("error", "access_denied"), ("state", &r.state)],
            ))
            .into_response()
        }
        _ => return bad("Nothing chosen", "Choose Allow or Cancel."),
    }
    let code = new_code();
    let grant = OAuthGrant {
        app_id: c.app.id.clone(),
        redirect_uri: r.redirect_uri.clone(),
        team_id: if org.is_some() {
            None
        } else {
            Some(p.team_id.clone())
        },
        enterprise_id: org,
        user_id: p.user_id.clone(),
        bot_scopes: c.bot_scopes,
        user_scopes: c.user_scopes,
        expires_at: now() + s.config.oauth.code_ttl.as_secs() as i64,
    };
    if let Err(e) = s.store.put_oauth_grant(&token::hash(&code), grant).await {
        tracing::warn!(error = %e, "authorize: cannot record a code");
        return page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The server is busy; try again in a moment.",
        );
    }
    tracing::info!(app = %c.app.id, team = %p.team_id, user = %p.user_id, "install allowed; code issued");
    let mut res = Redirect::to(&redirect::with_query(
        &c.redirect,
        &[("code", &code), ("state", &r.state)],
    ))
    .into_response();
    page::no_store(&mut res);
    res
}

/// A code shaped like Slack's (`<digits>.<digits>.<hex>`), with 256 random bits.
fn new_code() -> String {
    let mut n = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut n);
    format!(
        "{}.{}.{}",
        now(),
        u64::from_le_bytes(n) % 10_000_000_000_000,
        token::random_hex(32)
    )
}
