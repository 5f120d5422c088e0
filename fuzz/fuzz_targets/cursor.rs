//! Opaque handles clients send back: list cursors (`?cursor=` on every operator list and
//! `apps.event.authorizations.list`) and `event_context` handles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::event_context;
use tidings_store::{Cursor, PageRequest};

const KEY: &[u8] = b"fuzz event_context key, 32 bytes";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(key) = Cursor::decode(s) {
        assert_eq!(
            Cursor::decode(&Cursor::encode(&key)).as_deref(),
            Some(key.as_str())
        );
    }
    if !s.is_empty() {
        assert_eq!(Cursor::decode(&Cursor::encode(s)).as_deref(), Some(s));
    }
    let _ = PageRequest::parse(None, Some(s));
    if let Some(ctx) = event_context::decode(s, KEY) {
        let again = event_context::encode(&ctx, KEY);
        assert_eq!(event_context::decode(&again, KEY), Some(ctx));
    }
});
