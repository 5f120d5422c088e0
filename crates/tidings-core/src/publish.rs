//! Publish-time rules that need no storage: the event-age window, `event_ts`, reading the
//! catalog's JSON pointers out of an inner event, the audience actually in force, and the
//! directory changes an event implies (API.md "Published events also keep the directory
//! current").

use serde_json::Value;

use crate::catalog::{Audience, EventType};

/// Why an event time is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRefusal {
    /// 422 `event_too_old`.
    TooOld,
    /// 422 `event_in_future`.
    InFuture,
}

impl TimeRefusal {
    pub fn code(self) -> &'static str {
        match self {
            TimeRefusal::TooOld => "event_too_old",
            TimeRefusal::InFuture => "event_in_future",
        }
    }
}

/// Checks `event_time` against now: at most `max_age_secs` old, `max_skew_secs` ahead.
pub fn check_event_time(
    event_time: i64,
    now: i64,
    max_age_secs: i64,
    max_skew_secs: i64,
) -> Result<(), TimeRefusal> {
    // Saturating: `event_time` is the client's, and `i64::MIN` is very old, not (after
    // wrapping) far in the future.
    if now.saturating_sub(event_time) > max_age_secs {
        Err(TimeRefusal::TooOld)
    } else if event_time.saturating_sub(now) > max_skew_secs {
        Err(TimeRefusal::InFuture)
    } else {
        Ok(())
    }
}

/// An `event_ts` for an event without one: its second plus a microsecond part.
pub fn event_ts(event_time: i64, micros: u32) -> String {
    format!("{event_time}.{:06}", micros % 1_000_000)
}

/// The string at a catalog JSON pointer, if present.
pub fn pointer_str<'a>(event: &'a Value, pointer: &str) -> Option<&'a str> {
    event.pointer(pointer).and_then(Value::as_str)
}

/// The API field name for a pointer into the inner event: `/item/channel` → `event.item.channel`.
pub fn pointer_field(pointer: &str) -> String {
    format!("event{}", pointer.replace('/', "."))
}

/// The audience in force and the conversation it is about: a conversation event whose
/// channel is absent (a reaction to a file) falls back to the whole team.
pub fn audience<'a>(kind: &EventType, event: &'a Value) -> (Audience, Option<&'a str>) {
    match (kind.audience, kind.channel_field.as_deref()) {
        (Audience::Conversation, Some(ptr)) => match pointer_str(event, ptr) {
            Some(c) => (Audience::Conversation, Some(c)),
            None => (Audience::Team, None),
        },
        (a, _) => (a, None),
    }
}

/// A directory change implied by an event.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryChange {
    /// `channel_created`: a public conversation with its creator as member.
    CreateChannel {
        id: String,
        name: String,
        creator: Option<String>,
    },
    /// `channel_rename`.
    RenameChannel { id: String, name: String },
    /// `channel_deleted`.
    DeleteChannel { id: String },
    /// `member_joined_channel`.
    Join { channel: String, user: String },
    /// `member_left_channel`, `channel_left`, `group_left`.
    Leave { channel: String, user: String },
    /// `team_join`: the user object.
    AddUser {
        id: String,
        name: String,
        real_name: Option<String>,
        is_bot: bool,
    },
}

impl DirectoryChange {
    /// Whether the change is applied before fan-out (so a joining member sees its own join)
    /// or after it (so a leaving member still sees its leave).
    pub fn before_fanout(&self) -> bool {
        !matches!(
            self,
            DirectoryChange::Leave { .. } | DirectoryChange::DeleteChannel { .. }
        )
    }
}

impl DirectoryChange {
    /// The (conversation, user) membership the change adds, if any.
    pub fn added_member(&self) -> Option<(&str, &str)> {
        match self {
            DirectoryChange::Join { channel, user } => Some((channel, user)),
            DirectoryChange::CreateChannel {
                id,
                creator: Some(u),
                ..
            } => Some((id, u)),
            _ => None,
        }
    }
}

/// Whether events of this inner type change the directory (channels, members, users).
pub fn changes_directory(inner_type: &str) -> bool {
    matches!(
        inner_type,
        "channel_created"
            | "channel_rename"
            | "channel_deleted"
            | "member_joined_channel"
            | "member_left_channel"
            | "channel_left"
            | "group_left"
            | "team_join"
    )
}

/// The directory change an inner event implies, or an error naming the missing field.
pub fn directory_change(
    inner_type: &str,
    event: &Value,
) -> Result<Option<DirectoryChange>, (String, String)> {
    let need = |ptr: &str| -> Result<String, (String, String)> {
        pointer_str(event, ptr).map(str::to_string).ok_or_else(|| {
            (
                pointer_field(ptr),
                "is required for this event type".to_string(),
            )
        })
    };
    if !changes_directory(inner_type) {
        return Ok(None);
    }
    Ok(Some(match inner_type {
        "channel_created" => DirectoryChange::CreateChannel {
            id: need("/channel/id")?,
            name: need("/channel/name")?,
            creator: pointer_str(event, "/channel/creator").map(str::to_string),
        },
        "channel_rename" => DirectoryChange::RenameChannel {
            id: need("/channel/id")?,
            name: need("/channel/name")?,
        },
        "channel_deleted" => DirectoryChange::DeleteChannel {
            id: need("/channel")?,
        },
        "member_joined_channel" => DirectoryChange::Join {
            channel: need("/channel")?,
            user: need("/user")?,
        },
        "member_left_channel" | "channel_left" | "group_left" => DirectoryChange::Leave {
            channel: need("/channel")?,
            user: need("/user")?,
        },
        "team_join" => DirectoryChange::AddUser {
            id: need("/user/id")?,
            name: need("/user/name")?,
            real_name: pointer_str(event, "/user/real_name").map(str::to_string),
            is_bot: event
                .pointer("/user/is_bot")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    #[test]
    fn the_72_hour_and_5_minute_rules() {
        let now = 1_000_000;
        assert_eq!(check_event_time(now, now, 72 * 3600, 300), Ok(()));
        assert_eq!(
            check_event_time(now - 72 * 3600, now, 72 * 3600, 300),
            Ok(())
        );
        assert_eq!(
            check_event_time(now - 72 * 3600 - 1, now, 72 * 3600, 300),
            Err(TimeRefusal::TooOld)
        );
        assert_eq!(
            check_event_time(now + 301, now, 72 * 3600, 300),
            Err(TimeRefusal::InFuture)
        );
        assert_eq!(
            check_event_time(i64::MIN, now, 72 * 3600, 300),
            Err(TimeRefusal::TooOld),
            "the oldest time there is, not a wrapped-around future"
        );
        assert_eq!(
            check_event_time(i64::MAX, now, 72 * 3600, 300),
            Err(TimeRefusal::InFuture)
        );
        assert_eq!(
            check_event_time(-1, i64::MAX, i64::MAX, 0),
            Ok(()),
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn event_ts_has_six_fraction_digits() {
        assert_eq!(event_ts(1700000000, 42), "1700000000.000042");
    }

    #[test]
    fn a_reaction_to_a_file_falls_back_to_the_team() {
        let c = Catalog::builtin();
        let k = c.get("reaction_added").unwrap();
        let on_msg = json!({"item": {"type": "message", "channel": "C1"}});
        assert_eq!(audience(k, &on_msg), (Audience::Conversation, Some("C1")));
        let on_file = json!({"item": {"type": "file", "file": "F1"}});
        assert_eq!(audience(k, &on_file), (Audience::Team, None));
    }

    #[test]
    fn directory_events_name_their_changes_and_missing_fields() {
        let e = json!({"channel": {"id": "C9", "name": "new", "creator": "U1"}});
        assert_eq!(
            directory_change("channel_created", &e).unwrap(),
            Some(DirectoryChange::CreateChannel {
                id: "C9".into(),
                name: "new".into(),
                creator: Some("U1".into())
            })
        );
        let err = directory_change("member_joined_channel", &json!({"channel": "C1"})).unwrap_err();
        assert_eq!(err.0, "event.user");
        assert_eq!(directory_change("message", &json!({})).unwrap(), None);
        assert!(!DirectoryChange::Leave {
            channel: "C".into(),
            user: "U".into()
        }
        .before_fanout());
    }
}
