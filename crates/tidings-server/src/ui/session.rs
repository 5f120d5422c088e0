//! The dashboard's login session: a signed cookie and the CSRF token bound to it.
//!
//! The cookie value is `v1.<expiry>.<nonce>.<mac>`: expiry in Unix seconds, 128 random bits,
//! and HMAC-SHA256 over the first three parts. A login stores nothing, so every node
//! sharing a database accepts every other node's cookies. A logout ends the session for
//! good: the hash of its cookie is recorded in the store (shared by all nodes) until the
//! cookie would have expired, and a recorded cookie is refused. The key is derived from
//! the store's secret (`event_context_key`, shared by all nodes) *and* the admin token's
//! hash, so rotating the admin token ends every session.
//!
//! The CSRF token is HMAC(key, "csrf" + cookie value): the SPA reads it from
//! `GET /ui/session` and sends it as `X-CSRF-Token` on every state-changing call.

use axum::http::header::COOKIE;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tidings_core::token::constant_time_eq;

use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "tidings_session";
/// Header carrying the CSRF token on state-changing calls made with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts: 12 hours.
pub const TTL_SECS: i64 = 43_200;

const VERSION: &str = "v1";

/// The key that signs sessions and derives CSRF tokens.
pub struct SessionKey([u8; 32]);

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it total.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl SessionKey {
    /// The key from the store's shared secret and the admin token's hash.
    pub fn derive(store_secret: &[u8], admin_token_hash: &str) -> SessionKey {
        SessionKey(mac(
            store_secret,
            &[b"tidings-ui-session\0", admin_token_hash.as_bytes()],
        ))
    }

    /// This server's key.
    pub fn of(s: &AppState) -> SessionKey {
        SessionKey::derive(&s.store.event_context_key(), &s.admin_token_hash)
    }

    /// A new cookie value valid until `now + TTL_SECS`.
    pub fn issue(&self, now: i64) -> String {
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        self.issue_with(now + TTL_SECS, &URL_SAFE_NO_PAD.encode(nonce))
    }

    fn issue_with(&self, expiry: i64, nonce: &str) -> String {
        let body = format!("{VERSION}.{expiry}.{nonce}");
        let tag = URL_SAFE_NO_PAD.encode(mac(&self.0, &[body.as_bytes()]));
        format!("{body}.{tag}")
    }

    /// Whether `value` is a cookie this key signed that has not expired at `now` (whether
    /// it was logged out is the store's to say: see [`current`]).
    pub fn verify(&self, value: &str, now: i64) -> bool {
        let Some((body, tag)) = value.rsplit_once('.') else {
            return false;
        };
        let mut parts = body.split('.');
        let (Some(VERSION), Some(expiry), Some(_nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expiry) = expiry.parse::<i64>() else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let want = mac(&self.0, &[body.as_bytes()]);
        constant_time_eq(&tag, &want) && now < expiry
    }

    /// The CSRF token bound to one cookie value.
    pub fn csrf(&self, cookie_value: &str) -> String {
        URL_SAFE_NO_PAD.encode(mac(&self.0, &[b"csrf", cookie_value.as_bytes()]))
    }

    /// Whether `presented` is the CSRF token of `cookie_value`.
    pub fn csrf_ok(&self, cookie_value: &str, presented: &str) -> bool {
        constant_time_eq(self.csrf(cookie_value).as_bytes(), presented.as_bytes())
    }
}

/// The session cookie's value in the request, if any (not yet verified).
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE_NAME)
}

/// The value of cookie `name` in the request, if any and not empty (not verified); also
/// the OAuth flow's session cookie ([`crate::oauth::session`]).
pub fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The verified session cookie of the request, if it carries a live one: signed by this
/// key, not expired, not logged out.
pub async fn current<'h>(s: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    let value = cookie(headers)?;
    if !SessionKey::of(s).verify(value, now()) {
        return None;
    }
    match s.store.session_ended(&id(value)).await {
        Ok(false) => Some(value),
        Ok(true) => None,
        Err(e) => {
            // Fail closed: the operator signs in again with the admin token.
            tracing::warn!(error = %e, "cannot check whether a dashboard session was ended");
            None
        }
    }
}

/// Ends the session of a verified cookie value on every node, until it would expire.
pub async fn end(s: &AppState, value: &str) -> Result<(), tidings_store::StoreError> {
    let expiry = expiry(value).unwrap_or_else(|| now() + TTL_SECS);
    s.store.end_session(&id(value), expiry).await
}

/// How a session is named in the store: the hash of its cookie, never the cookie itself.
pub fn id(value: &str) -> String {
    tidings_core::token::hash(value)
}

/// The expiry written in a cookie value.
fn expiry(value: &str) -> Option<i64> {
    value.split('.').nth(1)?.parse().ok()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `Set-Cookie` for a new session (`Secure` when the server is reached over https).
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={TTL_SECS}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::derive(b"store secret", "admin hash")
    }

    #[test]
    fn an_issued_cookie_verifies_until_it_expires() {
        let k = key();
        let c = k.issue(1_000);
        assert!(k.verify(&c, 1_000));
        assert!(k.verify(&c, 1_000 + TTL_SECS - 1));
        assert!(!k.verify(&c, 1_000 + TTL_SECS), "expired");
        assert_ne!(k.issue(1_000), c, "each login gets its own nonce");
    }

    #[test]
    fn tampered_cookies_are_refused() {
        let k = key();
        let c = k.issue(1_000);
        // A later expiry with the old tag.
        let (body, tag) = c.rsplit_once('.').unwrap();
        let nonce = body.split('.').nth(2).unwrap();
        let longer = format!("v1.{}.{nonce}.{tag}", 1_000 + TTL_SECS * 100);
        assert!(!k.verify(&longer, 2_000));
        // One flipped character in the tag, or no tag at all.
        let mut flipped = c.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(!k.verify(&String::from_utf8(flipped).unwrap(), 2_000));
        assert!(!k.verify(body, 2_000));
        for junk in [
            "",
            ".",
            "v1...",
            "v2.9999999999.n.t",
            "a.b.c.d.e",
            "v1.x.n.AAAA",
        ] {
            assert!(!k.verify(junk, 2_000), "{junk:?}");
        }
    }

    #[test]
    fn another_key_refuses_the_cookie() {
        let c = key().issue(1_000);
        assert!(!SessionKey::derive(b"other store", "admin hash").verify(&c, 1_000));
        assert!(
            !SessionKey::derive(b"store secret", "rotated admin").verify(&c, 1_000),
            "rotating the admin token ends sessions"
        );
        assert!(
            SessionKey::derive(b"store secret", "admin hash").verify(&c, 1_000),
            "another node with the same secrets accepts it"
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_cookie() {
        let k = key();
        let (a, b) = (k.issue(1_000), k.issue(1_000));
        assert!(k.csrf_ok(&a, &k.csrf(&a)));
        assert!(!k.csrf_ok(&a, &k.csrf(&b)));
        assert!(!k.csrf_ok(&a, ""));
        assert!(!SessionKey::derive(b"x", "y").csrf_ok(&a, &k.csrf(&a)));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            "a=1; tidings_session=v1.2.3.4 ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("v1.2.3.4"));
        h.insert(COOKIE, "tidings_session=".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn a_session_is_named_by_a_hash_and_knows_its_expiry() {
        let c = key().issue(1_000);
        assert_eq!(expiry(&c), Some(1_000 + TTL_SECS));
        assert_eq!(expiry("junk"), None);
        assert_ne!(id(&c), c);
        assert_eq!(id(&c).len(), 64);
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("v", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(set_cookie("v", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
