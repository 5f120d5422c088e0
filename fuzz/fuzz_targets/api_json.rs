//! The operator API's JSON body reader (`extract::parse_json`): the depth check, then
//! serde with the path of the bad field, into a document and into a typed body with
//! `whole_number` integers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use tidings_server::extract::{parse_json, MAX_JSON_DEPTH};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Body {
    name: Option<String>,
    #[serde(default, deserialize_with = "tidings_server::extract::whole_number")]
    at: Option<i64>,
    tags: Option<Vec<String>>,
    nested: Option<serde_json::Value>,
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_json::<serde_json::Value>(data) {
        Ok(v) => assert!(
            depth(&v) <= MAX_JSON_DEPTH,
            "a document deeper than the limit passed"
        ),
        Err(p) => assert_eq!(p.status, 400),
    }
    if let Err(p) = parse_json::<Body>(data) {
        assert_eq!(p.status, 400);
    }
});
