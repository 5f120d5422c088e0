//! The catalog's field extraction on any inner event: the entry its `type` and
//! `channel_type` resolve to, audience, conversation, acting user, mentions, directory change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::catalog::Catalog;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    tidings_fuzz::event_fields(&Catalog::builtin(), &event);
});
