//! Web API parameters (`/api/{method}`) from query string, form or JSON body, and the token
//! in the `Authorization` header or the parameters. Input: the Content-Type line, the
//! Authorization line, the query line (empty: none), then the body.
#![no_main]

use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [ct, auth, query, body] = tidings_fuzz::lines::<4>(data);
    let mut headers = HeaderMap::new();
    for (name, v) in [(header::CONTENT_TYPE, ct), (header::AUTHORIZATION, auth)] {
        if let (false, Ok(v)) = (v.is_empty(), HeaderValue::from_bytes(v)) {
            headers.insert(name, v);
        }
    }
    let query = std::str::from_utf8(query).ok().filter(|q| !q.is_empty());
    match tidings_server::fuzzing::webapi_params(query, &headers, body) {
        Ok(_) => {}
        Err(e) => assert!(
            matches!(e.code, "invalid_json" | "invalid_form_data"),
            "{}",
            e.code
        ),
    }
});
