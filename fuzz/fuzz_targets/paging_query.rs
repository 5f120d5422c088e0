//! `?limit=&cursor=` on every operator list (`extract::parse_paging`), and any query string
//! read into typed parameters (`extract::parse_query`).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use tidings_server::extract::{parse_paging, parse_query};

#[derive(Deserialize)]
#[allow(dead_code)]
struct Typed {
    team_id: Option<String>,
    limit: Option<u32>,
    from: Option<i64>,
    include_deleted: Option<bool>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    match parse_paging(q) {
        Ok(p) => assert!((1..=tidings_store::MAX_LIMIT).contains(&p.limit)),
        Err(p) => assert_eq!(p.status, 400),
    }
    let _ = parse_query::<BTreeMap<String, String>>(q);
    let _ = parse_query::<Typed>(q);
});
