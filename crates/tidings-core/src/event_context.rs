//! The `event_context` handle (SLACK-WIRE.md §1.3): opaque to apps, unforgeable, bound to
//! one event and one app. Shape: `4-` + unpadded base64url of compact JSON
//! `{"et","tid","aid","cid","eid","sig"}` — the first four as in Slack's real values, plus
//! the event id and an HMAC-SHA256 (truncated to 128 bits) over the others with a server
//! secret, so a client cannot mint or alter one.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What an `event_context` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventContext {
    /// Event type (subscription name).
    #[serde(rename = "et")]
    pub event_type: String,
    #[serde(rename = "tid")]
    pub team_id: String,
    /// The app the envelope was made for.
    #[serde(rename = "aid")]
    pub app_id: String,
    #[serde(rename = "cid", default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(rename = "eid")]
    pub event_id: String,
}

#[derive(Serialize, Deserialize)]
struct Signed {
    #[serde(flatten)]
    ctx: EventContext,
    sig: String,
}

fn mac(ctx: &EventContext, key: &[u8]) -> String {
    mac_parts(
        [
            ctx.event_type.as_str(),
            ctx.team_id.as_str(),
            ctx.app_id.as_str(),
            ctx.channel_id.as_deref().unwrap_or(""),
            ctx.event_id.as_str(),
        ],
        key,
    )
}

fn mac_parts(parts: [&str; 5], key: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        m.update(&(part.len() as u32).to_be_bytes());
        m.update(part.as_bytes());
    }
    hex::encode(&m.finalize().into_bytes()[..16])
}

/// The handle for `ctx`, signed with `key`.
pub fn encode(ctx: &EventContext, key: &[u8]) -> String {
    encode_parts(
        &ctx.event_type,
        &ctx.team_id,
        &ctx.app_id,
        ctx.channel_id.as_deref(),
        &ctx.event_id,
        key,
    )
}

/// [`encode`] from borrowed parts: made once per delivery, so it copies nothing it does
/// not send. The JSON is the same as [`Signed`]'s (its fields, then `sig`).
pub fn encode_parts(
    event_type: &str,
    team_id: &str,
    app_id: &str,
    channel_id: Option<&str>,
    event_id: &str,
    key: &[u8],
) -> String {
    #[derive(Serialize)]
    struct SignedRef<'a> {
        et: &'a str,
        tid: &'a str,
        aid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cid: Option<&'a str>,
        eid: &'a str,
        sig: &'a str,
    }
    let sig = mac_parts(
        [
            event_type,
            team_id,
            app_id,
            channel_id.unwrap_or(""),
            event_id,
        ],
        key,
    );
    let signed = SignedRef {
        et: event_type,
        tid: team_id,
        aid: app_id,
        cid: channel_id,
        eid: event_id,
        sig: &sig,
    };
    let json = serde_json::to_vec(&signed).unwrap_or_default();
    let mut out = String::with_capacity(2 + json.len() * 4 / 3 + 4);
    out.push_str("4-");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(json, &mut out);
    out
}

/// The context inside a handle, if it is one of ours and untouched.
pub fn decode(handle: &str, key: &[u8]) -> Option<EventContext> {
    let b64 = handle.strip_prefix("4-")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    let signed: Signed = serde_json::from_slice(&bytes).ok()?;
    let expected = mac(&signed.ctx, key);
    crate::token::constant_time_eq(expected.as_bytes(), signed.sig.as_bytes()).then_some(signed.ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EventContext {
        EventContext {
            event_type: "message.channels".into(),
            team_id: "T1".into(),
            app_id: "A1".into(),
            channel_id: Some("C1".into()),
            event_id: "Ev123".into(),
        }
    }

    #[test]
    fn the_borrowed_encoding_is_the_signed_structs_json() {
        for c in [
            ctx(),
            EventContext {
                channel_id: None,
                ..ctx()
            },
        ] {
            let signed = Signed {
                sig: mac(&c, b"k"),
                ctx: c.clone(),
            };
            let json = serde_json::to_vec(&signed).unwrap();
            let expected = format!(
                "4-{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
            );
            assert_eq!(encode(&c, b"k"), expected);
        }
    }

    #[test]
    fn a_handle_round_trips_with_the_right_key() {
        let h = encode(&ctx(), b"k");
        assert!(h.starts_with("4-"));
        assert!(!h.contains('='));
        assert_eq!(decode(&h, b"k"), Some(ctx()));
    }

    #[test]
    fn forged_or_altered_handles_are_refused() {
        let h = encode(&ctx(), b"k");
        assert_eq!(decode(&h, b"other key"), None);
        let mut altered = ctx();
        altered.app_id = "A2".into();
        let forged = encode(&altered, b"guess");
        assert_eq!(decode(&forged, b"k"), None);
        for junk in ["", "4-", "4-!!!", "1-app_mention-T111-C111", "EC123ABC456"] {
            assert_eq!(decode(junk, b"k"), None, "{junk}");
        }
    }
}
