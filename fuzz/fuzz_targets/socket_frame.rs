//! Socket Mode frames from a client: the ack envelope (`{"envelope_id", "payload"?}`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::socket_mode::ack_envelope_id;

fuzz_target!(|data: &[u8]| {
    // The connection hands over text frames only (binary frames are ignored).
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(id) = ack_envelope_id(frame) {
        assert!(!id.is_empty());
    }
});
