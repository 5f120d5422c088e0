//! Standard Webhooks signing (<https://www.standardwebhooks.com>), the per-app option
//! beside Slack's v0: headers `webhook-id`, `webhook-timestamp` and `webhook-signature`,
//! the last a space-separated list of `v1,<base64 HMAC-SHA256>` (key: the base64-decoded
//! part of a `whsec_` secret) and `v1a,<base64 ed25519>` (key: a `whsk_` signing key,
//! whose `whpk_` public key is shown for the app), all over `id.timestamp.body`.
//! During a rotation's grace period the previous secret and key sign too, so a receiver
//! holding either the old or the new one verifies every delivery.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of a symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of an ed25519 signing (private) key.
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// Prefix of an ed25519 public key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// A new `whsec_` secret: 32 random bytes, base64.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{SECRET_PREFIX}{}", B64.encode(b))
}

/// A new `whsk_` ed25519 signing key (its 32-byte seed, base64).
pub fn new_signing_key() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{SIGNING_KEY_PREFIX}{}", B64.encode(b))
}

fn signing_key(key: &str) -> Option<SigningKey> {
    let raw = B64
        .decode(key.strip_prefix(SIGNING_KEY_PREFIX).unwrap_or(key))
        .ok()?;
    let seed: [u8; 32] = raw.try_into().ok()?;
    Some(SigningKey::from_bytes(&seed))
}

/// The `whpk_` public key of a `whsk_` signing key; `None` when it is not one.
pub fn public_key(signing: &str) -> Option<String> {
    let k = signing_key(signing)?;
    Some(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        B64.encode(k.verifying_key().to_bytes())
    ))
}

fn content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(id.len() + body.len() + 24);
    m.extend_from_slice(id.as_bytes());
    m.push(b'.');
    m.extend_from_slice(timestamp.to_string().as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

/// `v1,<base64>` for a `whsec_` secret; `None` when the secret is not base64.
pub fn v1(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = B64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()?;
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(&content(id, timestamp, body));
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// `v1a,<base64>` for a `whsk_` signing key; `None` when the key is not one.
pub fn v1a(signing: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let k = signing_key(signing)?;
    let sig = k.sign(&content(id, timestamp, body));
    Some(format!("v1a,{}", B64.encode(sig.to_bytes())))
}

/// The keys one delivery is signed with: the current ones, and the previous ones while
/// a rotation's grace period lasts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keys {
    /// `whsec_` secrets, current first.
    pub secrets: Vec<String>,
    /// `whsk_` signing keys, current first.
    pub signing_keys: Vec<String>,
}

/// The three header values of one signed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Headers {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

/// Signs `body` as message `id` sent at `timestamp` (Unix seconds) with every key.
pub fn sign(keys: &Keys, id: &str, timestamp: i64, body: &[u8]) -> Headers {
    let mut sigs: Vec<String> = keys
        .secrets
        .iter()
        .filter_map(|s| v1(s, id, timestamp, body))
        .collect();
    sigs.extend(
        keys.signing_keys
            .iter()
            .filter_map(|k| v1a(k, id, timestamp, body)),
    );
    Headers {
        id: id.to_string(),
        timestamp: timestamp.to_string(),
        signature: sigs.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn v1_matches_the_specs_reference_example() {
        // The example in the Standard Webhooks specification (and its libraries' tests).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            v1(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        // The Rust reference library's test_sign vector (24-byte secret).
        assert_eq!(
            v1(
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            )
            .as_deref(),
            Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
        );
    }

    #[test]
    fn v1a_verifies_with_the_public_key_and_not_with_another() {
        let k = new_signing_key();
        let sig = v1a(&k, "msg_1", 10, b"{}").unwrap();
        let pk = public_key(&k).unwrap();
        let pk: [u8; 32] = B64
            .decode(pk.strip_prefix(PUBLIC_KEY_PREFIX).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let vk = VerifyingKey::from_bytes(&pk).unwrap();
        let raw: [u8; 64] = B64
            .decode(sig.strip_prefix("v1a,").unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let s = Signature::from_bytes(&raw);
        assert!(vk.verify(b"msg_1.10.{}", &s).is_ok());
        assert!(vk.verify(b"msg_1.11.{}", &s).is_err());
    }

    #[test]
    fn a_rotation_signs_with_old_and_new_keys() {
        let keys = Keys {
            secrets: vec![new_secret(), new_secret()],
            signing_keys: vec![new_signing_key(), new_signing_key()],
        };
        let h = sign(&keys, "d1", 5, b"x");
        let parts: Vec<&str> = h.signature.split(' ').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], v1(&keys.secrets[0], "d1", 5, b"x").unwrap());
        assert_eq!(parts[1], v1(&keys.secrets[1], "d1", 5, b"x").unwrap());
        assert!(parts[2].starts_with("v1a,") && parts[3].starts_with("v1a,"));
        assert_eq!((h.id.as_str(), h.timestamp.as_str()), ("d1", "5"));
    }

    #[test]
    fn malformed_keys_sign_nothing() {
        assert_eq!(v1("whsec_***", "m", 1, b""), None);
        assert_eq!(v1a("whsk_c2hvcnQ=", "m", 1, b""), None);
        assert_eq!(public_key("nope!"), None);
    }
}
