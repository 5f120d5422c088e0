//! Log redaction: every log line (which quotes clients' bytes) and every URL passes through it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::redact;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = redact::text(s);
    let _ = redact::url(s);
    let _ = redact::is_secret_name(s);
});
