//! RTM frames from a client (`{"type":"ping","id":N,…}`, messages, garbage): the server's
//! answer is nothing, or one JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::rtm::{reply, Reply};

fuzz_target!(|data: &[u8]| {
    // The connection hands over text frames only (binary frames get an error frame).
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    if let Reply::Send(answer) = reply(frame) {
        let v: serde_json::Value = serde_json::from_str(&answer).expect("the answer is JSON");
        assert!(v.is_object());
    }
});
