//! Who is at the authorize page: a signed, stateless cookie naming the platform's user
//! (set by the login hand-off or `--dev`'s picker), and the CSRF token of the consent
//! form, bound to that cookie.
//!
//! The value is `v1.<expiry>.<claims>.<mac>`: claims are base64url JSON, the mac is
//! HMAC-SHA256 over the first three parts with a key derived from the store's shared
//! secret, so every node accepts every other node's cookies. The cookie is `HttpOnly`
//! and `SameSite=Lax` (the platform's redirect back to Tidings is a top-level GET that
//! must carry it), scoped to `/oauth/`.

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tidings_core::token::constant_time_eq;

use crate::state::AppState;

pub const COOKIE_NAME: &str = "tidings_oauth";
/// How long the session lasts: an hour, enough to finish one install.
pub const TTL_SECS: i64 = 3600;

/// The person the platform vouched for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub user_id: String,
    pub team_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_id: Option<String>,
    #[serde(default)]
    pub org_admin: bool,
}

pub struct Key([u8; 32]);

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail; the fallback keeps it total.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl Key {
    pub fn derive(store_secret: &[u8]) -> Key {
        Key(mac(store_secret, &[b"tidings-oauth-session\0"]))
    }

    pub fn of(s: &AppState) -> Key {
        Key::derive(&s.store.event_context_key())
    }

    /// A cookie value for `p`, valid until `now + TTL_SECS`.
    pub fn issue(&self, p: &Person, now: i64) -> String {
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(p).unwrap_or_default());
        let body = format!("v1.{}.{claims}", now + TTL_SECS);
        let tag = URL_SAFE_NO_PAD.encode(mac(&self.0, &[body.as_bytes()]));
        format!("{body}.{tag}")
    }

    /// The person of a cookie value this key signed that has not expired at `now`.
    pub fn verify(&self, value: &str, now: i64) -> Option<Person> {
        let (body, tag) = value.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(expiry), Some(claims), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !constant_time_eq(&tag, &mac(&self.0, &[body.as_bytes()])) {
            return None;
        }
        if now >= expiry.parse::<i64>().ok()? {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
    }

    /// The consent form's CSRF token for one cookie value.
    pub fn csrf(&self, cookie_value: &str) -> String {
        URL_SAFE_NO_PAD.encode(mac(&self.0, &[b"csrf", cookie_value.as_bytes()]))
    }

    pub fn csrf_ok(&self, cookie_value: &str, presented: &str) -> bool {
        constant_time_eq(self.csrf(cookie_value).as_bytes(), presented.as_bytes())
    }
}

/// The session cookie's value in the request, if any (not yet verified).
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    crate::ui::session::cookie_named(headers, COOKIE_NAME)
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/oauth/; Max-Age={TTL_SECS}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Person {
        Person {
            user_id: "U1".into(),
            team_id: "T1".into(),
            enterprise_id: None,
            org_admin: false,
        }
    }

    #[test]
    fn a_session_names_its_person_until_it_expires() {
        let k = Key::derive(b"secret");
        let v = k.issue(&alice(), 100);
        assert_eq!(k.verify(&v, 101), Some(alice()));
        assert_eq!(k.verify(&v, 100 + TTL_SECS), None);
    }

    #[test]
    fn a_forged_or_foreign_session_is_refused() {
        let k = Key::derive(b"secret");
        let v = k.issue(&alice(), 100);
        assert_eq!(Key::derive(b"other").verify(&v, 101), None);
        let mut forged = alice();
        forged.user_id = "U2".into();
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let mut p: Vec<&str> = v.split('.').collect();
        p[2] = &claims;
        assert_eq!(k.verify(&p.join("."), 101), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let k = Key::derive(b"secret");
        let a = k.issue(&alice(), 100);
        let b = k.issue(&alice(), 200);
        assert!(k.csrf_ok(&a, &k.csrf(&a)));
        assert!(!k.csrf_ok(&b, &k.csrf(&a)));
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_lax() {
        let c = set_cookie("v", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
    }
}
