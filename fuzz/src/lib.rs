//! What several fuzz targets share: reading an inner event the way publishing does (the
//! catalog's field extraction), and splitting one input into the parts of a request.

use serde_json::Value;
use tidings_core::catalog::{Audience, Catalog};
use tidings_core::{fanout, publish};

/// Everything publishing reads from an inner event before it touches the store, in the
/// order `tidings_store::sql::publish` reads it: the catalog entry (by `type`, declared or
/// derived `channel_type`), the audience and its conversation, the acting user, the
/// mentions, the directory change and the insights user.
pub fn event_fields(catalog: &Catalog, event: &Value) {
    let _ = tidings_store::insights::event_user(event);
    if let Some(text) = event.get("text").and_then(Value::as_str) {
        for m in fanout::mentions(text) {
            assert!(!m.is_empty() && text.contains(m.as_str()), "mention {m:?}");
        }
    }
    let Some(inner_type) = event.get("type").and_then(Value::as_str) else {
        return;
    };
    let declared = event.get("channel_type").and_then(Value::as_str);
    let derived = ["channel", "group", "im", "mpim"].map(Some);
    for ct in std::iter::once(declared).chain(derived) {
        let Some(kind) = catalog.resolve(inner_type, ct) else {
            continue;
        };
        let (audience, channel) = publish::audience(kind, event);
        if audience == Audience::Conversation {
            assert!(
                channel.is_some(),
                "a conversation audience names its conversation"
            );
        }
        for p in [&kind.channel_field, &kind.user_field]
            .into_iter()
            .flatten()
        {
            let _ = publish::pointer_str(event, p);
            assert!(publish::pointer_field(p).starts_with("event."));
        }
    }
    match publish::directory_change(inner_type, event) {
        Ok(Some(_)) => assert!(publish::changes_directory(inner_type)),
        Ok(None) => {}
        Err((field, _)) => assert!(field.starts_with("event.")),
    }
}

/// Splits `data` at the first `n - 1` newlines into `n` parts (the last keeps the rest; parts
/// that are missing are empty).
pub fn lines<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for slot in out.iter_mut().take(N - 1) {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                *slot = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out[N - 1] = rest;
    out
}
