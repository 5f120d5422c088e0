//! The dashboard's session cookie and CSRF token: the `Cookie` header read, the value
//! verified against the key, the CSRF token compared.
#![no_main]

use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tidings_server::ui::session::{self, SessionKey};

fuzz_target!(|data: &[u8]| {
    let [cookie, csrf] = tidings_fuzz::lines::<2>(data);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        headers.insert(header::COOKIE, v);
    }
    let key = SessionKey::derive(b"fuzz store secret", "fuzz admin token hash");
    if let Some(value) = session::cookie(&headers) {
        assert!(!key.verify(value, 0), "a cookie nobody signed verified");
        let _ = session::id(value);
        if let Ok(presented) = std::str::from_utf8(csrf) {
            let _ = key.csrf_ok(value, presented);
        }
    }
});
