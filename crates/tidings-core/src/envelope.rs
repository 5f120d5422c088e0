//! The bodies Tidings sends (SLACK-WIRE.md §1.2, §1.3, §1.5): `event_callback`,
//! `url_verification` and `app_rate_limited`. Built from typed structs so the field order
//! and types are fixed, with the inner event embedded as raw JSON (never re-parsed).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::fanout::Authorization;

/// Everything an `event_callback` envelope is made of.
#[derive(Debug, Clone)]
pub struct EventCallbackParts<'a> {
    pub verification_token: &'a str,
    pub team_id: &'a str,
    pub enterprise_id: Option<&'a str>,
    pub app_id: &'a str,
    /// The inner event as stored (JSON object text).
    pub event: &'a RawValue,
    pub event_id: &'a str,
    pub event_time: i64,
    pub authorization: &'a Authorization,
    pub event_context: Option<&'a str>,
    /// Also send `authed_users` / `authed_teams` (apps on the legacy event shape).
    pub legacy: bool,
}

#[derive(Serialize)]
struct EventCallback<'a> {
    token: &'a str,
    team_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    enterprise_id: Option<&'a str>,
    context_team_id: &'a str,
    context_enterprise_id: Option<&'a str>,
    api_app_id: &'a str,
    event: &'a RawValue,
    #[serde(rename = "type")]
    kind: &'static str,
    event_id: &'a str,
    event_time: i64,
    authorizations: [&'a Authorization; 1],
    is_ext_shared_channel: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authed_users: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authed_teams: Option<[&'a str; 1]>,
}

/// The `event_callback` body, serialized once.
pub fn event_callback(p: &EventCallbackParts<'_>) -> Vec<u8> {
    let body = EventCallback {
        token: p.verification_token,
        team_id: p.team_id,
        enterprise_id: p.enterprise_id,
        context_team_id: p.team_id,
        context_enterprise_id: p.enterprise_id,
        api_app_id: p.app_id,
        event: p.event,
        kind: "event_callback",
        event_id: p.event_id,
        event_time: p.event_time,
        authorizations: [p.authorization],
        is_ext_shared_channel: false,
        event_context: p.event_context,
        authed_users: p.legacy.then_some([p.authorization.user_id.as_str()]),
        authed_teams: p.legacy.then_some([p.team_id]),
    };
    // Sized once: the event is most of it, and growing a Vec by doubling copied it ~8 times.
    let mut out = Vec::with_capacity(p.event.get().len() + 640);
    match serde_json::to_writer(&mut out, &body) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// The `url_verification` body.
pub fn url_verification(verification_token: &str, challenge: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "token": verification_token,
        "challenge": challenge,
        "type": "url_verification",
    }))
    .unwrap_or_default()
}

/// The `app_rate_limited` body; `minute` is epoch seconds rounded down to the minute.
pub fn app_rate_limited(
    verification_token: &str,
    team_id: &str,
    minute: i64,
    app_id: &str,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "token": verification_token,
        "type": "app_rate_limited",
        "team_id": team_id,
        "minute_rate_limited": minute,
        "api_app_id": app_id,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn auth() -> Authorization {
        Authorization {
            enterprise_id: None,
            team_id: Some("T1".into()),
            user_id: "U0BOT".into(),
            is_bot: true,
            is_enterprise_install: false,
        }
    }

    #[test]
    fn an_event_callback_has_every_field_with_the_right_type() {
        let event = RawValue::from_string(
            r#"{"type":"reaction_added","user":"U1","event_ts":"1.2"}"#.into(),
        )
        .unwrap();
        let a = auth();
        let body = event_callback(&EventCallbackParts {
            verification_token: "vt",
            team_id: "T1",
            enterprise_id: None,
            app_id: "A1",
            event: &event,
            event_id: "Ev1",
            event_time: 1700000001,
            authorization: &a,
            event_context: Some("4-xyz"),
            legacy: false,
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "token": "vt", "team_id": "T1", "context_team_id": "T1", "context_enterprise_id": null,
                "api_app_id": "A1", "event": {"type": "reaction_added", "user": "U1", "event_ts": "1.2"},
                "type": "event_callback", "event_id": "Ev1", "event_time": 1700000001,
                "authorizations": [{"enterprise_id": null, "team_id": "T1", "user_id": "U0BOT", "is_bot": true, "is_enterprise_install": false}],
                "is_ext_shared_channel": false, "event_context": "4-xyz"
            })
        );
    }

    #[test]
    fn legacy_apps_also_get_single_entry_authed_lists_and_grid_events_an_enterprise() {
        let event = RawValue::from_string(r#"{"type":"team_join"}"#.into()).unwrap();
        let a = auth();
        let body = event_callback(&EventCallbackParts {
            verification_token: "vt",
            team_id: "T1",
            enterprise_id: Some("E1"),
            app_id: "A1",
            event: &event,
            event_id: "Ev1",
            event_time: 1,
            authorization: &a,
            event_context: None,
            legacy: true,
        });
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["authed_users"], json!(["U0BOT"]));
        assert_eq!(v["authed_teams"], json!(["T1"]));
        assert_eq!(v["enterprise_id"], "E1");
        assert_eq!(v["context_enterprise_id"], "E1");
        assert!(v.get("event_context").is_none());
    }

    #[test]
    fn verification_and_rate_limit_bodies_match_slack() {
        let v: Value = serde_json::from_slice(&url_verification("vt", "ch")).unwrap();
        assert_eq!(
            v,
            json!({"token": "vt", "challenge": "ch", "type": "url_verification"})
        );
        let v: Value =
            serde_json::from_slice(&app_rate_limited("vt", "T1", 1518467820, "A1")).unwrap();
        assert_eq!(v["minute_rate_limited"], 1518467820);
        assert_eq!(v["type"], "app_rate_limited");
    }
}
