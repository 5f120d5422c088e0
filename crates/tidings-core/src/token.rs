//! Token formats and hashing.
//!
//! Every token is its kind's prefix followed by 256 bits of randomness (43 base62-ish
//! characters). Tokens are shown once, at creation; the store keeps only their SHA-256.
//! A fast hash is right here: the secret has 256 bits of entropy, so there is nothing to
//! brute-force, and authentication sits on every Web API call.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The kinds of token Tidings issues, by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `xoxb-`: an installation's bot token.
    Bot,
    /// `xoxp-`: an installing user's token.
    User,
    /// `xapp-`: an app-level token (Socket Mode, authorizations.list).
    App,
    /// `tdk_admin_`: the operator token.
    Admin,
    /// `tdk_pub_`: a publisher token (may only publish events).
    Publisher,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Bot => "xoxb-",
            TokenKind::User => "xoxp-",
            TokenKind::App => "xapp-",
            TokenKind::Admin => "tdk_admin_",
            TokenKind::Publisher => "tdk_pub_",
        }
    }

    /// The kind a presented token claims by its prefix.
    pub fn of(token: &str) -> Option<TokenKind> {
        // Rotating access tokens are the kind's token behind `xoxe.` (`xoxe.xoxb-1-…`).
        let token = token.strip_prefix(ROTATING_PREFIX).unwrap_or(token);
        [
            TokenKind::Bot,
            TokenKind::User,
            TokenKind::App,
            TokenKind::Admin,
            TokenKind::Publisher,
        ]
        .into_iter()
        .find(|k| token.starts_with(k.prefix()))
    }

    /// Stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Bot => "bot",
            TokenKind::User => "user",
            TokenKind::App => "app",
            TokenKind::Admin => "admin",
            TokenKind::Publisher => "publisher",
        }
    }
}

/// What rotating access tokens start with, before their kind's prefix.
pub const ROTATING_PREFIX: &str = "xoxe.";

/// A rotating access token of this kind, as Slack shapes them: `xoxe.xoxb-1-…`.
pub fn generate_rotating(kind: TokenKind) -> String {
    format!("{ROTATING_PREFIX}{}1-{}", kind.prefix(), random_secret())
}

/// A refresh token, as Slack shapes them: `xoxe-1-…` (not itself a credential for any
/// method: only `oauth.v2.access` takes it).
pub fn generate_refresh() -> String {
    format!("xoxe-1-{}", random_secret())
}

/// 256 random bits as URL-safe text.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new token of this kind. `xapp-` tokens embed the app id the way Slack's do
/// (`xapp-1-A…-…`), which helps people tell them apart; the secret part is still 256 bits.
pub fn generate(kind: TokenKind, app_id: Option<&str>) -> String {
    match (kind, app_id) {
        (TokenKind::App, Some(app)) => format!("xapp-1-{app}-{}", random_secret()),
        _ => format!("{}{}", kind.prefix(), random_secret()),
    }
}

/// The stored form of a token: lower-case hex SHA-256.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random shared secret (signing secrets, verification tokens): 32 hex chars like Slack's
/// signing secrets when `bytes` is 16.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Constant-time equality for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_prefix_and_256_bits() {
        let t = generate(TokenKind::Bot, None);
        assert!(t.starts_with("xoxb-"));
        assert_eq!(t.len(), "xoxb-".len() + 43);
        assert_eq!(TokenKind::of(&t), Some(TokenKind::Bot));
        let a = generate(TokenKind::App, Some("A0123456789"));
        assert!(a.starts_with("xapp-1-A0123456789-"));
        assert_eq!(TokenKind::of(&a), Some(TokenKind::App));
    }

    #[test]
    fn rotating_tokens_keep_their_kind_and_refresh_tokens_have_none() {
        let t = generate_rotating(TokenKind::Bot);
        assert!(t.starts_with("xoxe.xoxb-1-"));
        assert_eq!(TokenKind::of(&t), Some(TokenKind::Bot));
        assert_eq!(
            TokenKind::of(&generate_rotating(TokenKind::User)),
            Some(TokenKind::User)
        );
        assert_eq!(TokenKind::of(&generate_refresh()), None);
    }

    #[test]
    fn two_tokens_differ_and_hash_differently() {
        let a = generate(TokenKind::User, None);
        let b = generate(TokenKind::User, None);
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn unknown_prefixes_have_no_kind() {
        assert_eq!(TokenKind::of("xoxc-123"), None);
        assert_eq!(TokenKind::of(""), None);
        assert_eq!(TokenKind::of("tdk_pub_x"), Some(TokenKind::Publisher));
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
