//! Socket Mode frames (SLACK-WIRE.md §2): `hello`, `events_api` envelopes, `disconnect`,
//! and reading acks. Pure builders and parsers; the connections live in the delivery crate
//! and the server.

use serde::Serialize;
use serde_json::value::RawValue;

/// Why a connection is being closed (`disconnect.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// A refresh is coming soon.
    Warning,
    /// Reconnect now: this connection is being recycled.
    RefreshRequested,
    /// Socket Mode was turned off for the app.
    LinkDisabled,
    /// The app already has the most connections allowed.
    TooManyWebsockets,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Warning => "warning",
            DisconnectReason::RefreshRequested => "refresh_requested",
            DisconnectReason::LinkDisabled => "link_disabled",
            DisconnectReason::TooManyWebsockets => "too_many_websockets",
        }
    }
}

/// The first frame on a new connection.
pub fn hello(
    app_id: &str,
    num_connections: usize,
    host: &str,
    started: &str,
    connection_time_secs: u64,
) -> String {
    serde_json::json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": host,
            "started": started,
            "build_number": 1,
            "approximate_connection_time": connection_time_secs,
        },
        "connection_info": {"app_id": app_id},
    })
    .to_string()
}

/// A `disconnect` frame.
pub fn disconnect(reason: DisconnectReason, host: &str) -> String {
    serde_json::json!({"type": "disconnect", "reason": reason.as_str(), "debug_info": {"host": host}}).to_string()
}

#[derive(Serialize)]
struct EventsApi<'a> {
    envelope_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    accepts_response_payload: bool,
    retry_attempt: u32,
    retry_reason: &'a str,
    payload: &'a RawValue,
}

/// An `events_api` envelope carrying exactly the HTTP body as `payload`. `retry_attempt`
/// is 0 on the first delivery; redeliveries of un-acked envelopes say `"timeout"`.
pub fn events_api(envelope_id: &str, payload: &RawValue, retry_attempt: u32) -> String {
    serde_json::to_string(&EventsApi {
        envelope_id,
        kind: "events_api",
        accepts_response_payload: false,
        retry_attempt,
        retry_reason: if retry_attempt == 0 { "" } else { "timeout" },
        payload,
    })
    .unwrap_or_default()
}

/// The `envelope_id` an ack frame acknowledges (`{"envelope_id", "payload"?}`), if it is one.
pub fn ack_envelope_id(frame: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    v.as_object()?
        .get("envelope_id")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn hello_carries_what_the_sdks_read() {
        let v: Value =
            serde_json::from_str(&hello("A1", 2, "tidings", "2026-01-01 00:00:00.000", 3600))
                .unwrap();
        assert_eq!(v["type"], "hello");
        assert_eq!(v["num_connections"], 2);
        assert_eq!(v["debug_info"]["approximate_connection_time"], 3600);
        assert_eq!(v["connection_info"]["app_id"], "A1");
    }

    #[test]
    fn an_envelope_wraps_the_http_body_and_says_why_it_is_retried() {
        let body =
            RawValue::from_string(r#"{"type":"event_callback","event_id":"Ev1"}"#.into()).unwrap();
        let v: Value = serde_json::from_str(&events_api("e-1", &body, 0)).unwrap();
        assert_eq!(
            v,
            json!({"envelope_id": "e-1", "type": "events_api", "accepts_response_payload": false,
                   "retry_attempt": 0, "retry_reason": "", "payload": {"type": "event_callback", "event_id": "Ev1"}})
        );
        let v: Value = serde_json::from_str(&events_api("e-2", &body, 2)).unwrap();
        assert_eq!(
            (v["retry_attempt"].as_u64(), v["retry_reason"].as_str()),
            (Some(2), Some("timeout"))
        );
    }

    #[test]
    fn acks_with_or_without_payload_are_read_and_junk_is_not() {
        assert_eq!(
            ack_envelope_id(r#"{"envelope_id":"e-1"}"#).as_deref(),
            Some("e-1")
        );
        assert_eq!(
            ack_envelope_id(r#"{"envelope_id":"e-1","payload":{}}"#).as_deref(),
            Some("e-1")
        );
        for junk in [
            "",
            "nope",
            "[]",
            r#"{"envelope_id":5}"#,
            r#"{"envelope_id":""}"#,
        ] {
            assert_eq!(ack_envelope_id(junk), None, "{junk}");
        }
        assert_eq!(
            disconnect(DisconnectReason::TooManyWebsockets, "h"),
            r#"{"debug_info":{"host":"h"},"reason":"too_many_websockets","type":"disconnect"}"#
        );
    }
}
