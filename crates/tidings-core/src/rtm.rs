//! RTM frames (OAUTH-RTM-WIRE.md §B3): `hello`, `goodbye`, `pong` replies to JSON pings,
//! `error` frames and replies to client messages Tidings does not serve. Pure builders and
//! one parser; the connections live in the server.

use serde_json::{json, Map, Value};

/// Why the server sends an `error` frame (its `error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtmError {
    /// The URL's 30 s passed before it was opened (Slack's code 1).
    UrlExpired,
    /// The URL is unknown, or was opened already (it is single-use).
    UrlUnknown,
    /// The token the URL was issued for was revoked, expired or uninstalled.
    TokenRevoked,
    /// The token already has the most connections allowed.
    TooManyConnections,
    /// A client frame was not a JSON object with a `type`.
    BadMessage,
}

impl RtmError {
    pub fn code(self) -> u32 {
        match self {
            RtmError::UrlExpired => 1,
            RtmError::UrlUnknown => 3,
            RtmError::TokenRevoked => 4,
            RtmError::TooManyConnections => 5,
            RtmError::BadMessage => 6,
        }
    }

    pub fn msg(self) -> &'static str {
        match self {
            RtmError::UrlExpired => "Socket URL has expired",
            RtmError::UrlUnknown => "Socket URL is unknown or was already used",
            RtmError::TokenRevoked => "The token was revoked or has expired",
            RtmError::TooManyConnections => "Too many connections for this token",
            RtmError::BadMessage => "Message is not a JSON object with a type",
        }
    }
}

/// The first frame on a new connection.
pub fn hello() -> String {
    json!({"type": "hello"}).to_string()
}

/// Sent before the server closes the connection; clients reconnect with `rtm.connect`.
pub fn goodbye() -> String {
    json!({"type": "goodbye"}).to_string()
}

/// `{"type":"error","error":{"code","msg"}}`.
pub fn error(e: RtmError) -> String {
    json!({"type": "error", "error": {"code": e.code(), "msg": e.msg()}}).to_string()
}

/// What the server answers to one client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A frame to send back.
    Send(String),
    /// Nothing (for example `typing`, or a message without an `id` to reply to).
    Nothing,
}

/// The answer to a client text frame: a `pong` echoing the ping's other fields, an error
/// reply for messages with an `id` Tidings does not serve, an `error` frame for garbage.
pub fn reply(frame: &str) -> Reply {
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(frame) else {
        return Reply::Send(error(RtmError::BadMessage));
    };
    let Some(kind) = m.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return Reply::Send(error(RtmError::BadMessage));
    };
    let id = m.remove("id");
    match kind.as_str() {
        "ping" => {
            m.insert("type".into(), "pong".into());
            if let Some(id) = id {
                m.insert("reply_to".into(), id);
            }
            Reply::Send(Value::Object(m).to_string())
        }
        "typing" => Reply::Nothing,
        _ => match id {
            Some(id) => {
                let mut r = Map::new();
                r.insert("ok".into(), false.into());
                r.insert("reply_to".into(), id);
                r.insert(
                    "error".into(),
                    json!({"code": 2, "msg": format!("message type {kind} is not served over RTM here; use the Web API")}),
                );
                Reply::Send(Value::Object(r).to_string())
            }
            None => Reply::Nothing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(r: Reply) -> Value {
        match r {
            Reply::Send(s) => serde_json::from_str(&s).unwrap(),
            Reply::Nothing => Value::Null,
        }
    }

    #[test]
    fn ping_gets_a_pong_replying_to_its_id_and_echoing_extra_fields() {
        let p = parsed(reply(
            r#"{"type":"ping","id":7,"time":1403299273342,"x":"y"}"#,
        ));
        assert_eq!(
            p,
            json!({"type":"pong","reply_to":7,"time":1403299273342u64,"x":"y"})
        );
    }

    #[test]
    fn garbage_gets_an_error_frame_with_code_and_msg() {
        for bad in ["nope", "[1]", r#"{"id":1}"#] {
            let p = parsed(reply(bad));
            assert_eq!(p["type"], "error");
            assert_eq!(p["error"]["code"], 6);
            assert!(p["error"]["msg"].is_string());
        }
    }

    #[test]
    fn unserved_message_with_id_gets_a_failed_reply_and_typing_gets_nothing() {
        let p = parsed(reply(
            r#"{"type":"message","id":3,"channel":"C1","text":"hi"}"#,
        ));
        assert_eq!(p["ok"], false);
        assert_eq!(p["reply_to"], 3);
        assert_eq!(p["error"]["code"], 2);
        assert_eq!(
            reply(r#"{"type":"typing","id":4,"channel":"C1"}"#),
            Reply::Nothing
        );
    }

    #[test]
    fn error_frames_have_slacks_shape() {
        let e: Value = serde_json::from_str(&error(RtmError::UrlExpired)).unwrap();
        assert_eq!(
            e,
            json!({"type":"error","error":{"code":1,"msg":"Socket URL has expired"}})
        );
    }
}
