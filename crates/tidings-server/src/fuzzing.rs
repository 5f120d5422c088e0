//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never in the binary):
//! the parsers the handlers run on a client's bytes, reachable without a server, a store or
//! an async runtime. Each calls exactly what the handler calls, in the same order.

use axum::http::HeaderMap;
use tidings_store::insights::InsightRange;
use tidings_store::PublishRequest;

use crate::error::{Problem, SlackError};
use crate::extract::parse_json;
use crate::webapi::params::Params;

/// `POST /admin/v1/events`: the body parsed and shape-checked into what the store publishes.
pub fn publish_request(body: &[u8], max_event_bytes: usize) -> Result<PublishRequest, Problem> {
    parse_json::<crate::admin::events::PublishBody>(body)
        .and_then(|b| crate::admin::events::request(b, max_event_bytes))
}

/// `POST /admin/v1/events/batch`: the body parsed, then each event on its own as
/// [`publish_request`] does it.
pub fn publish_batch(
    body: &[u8],
    max_event_bytes: usize,
) -> Result<Vec<Result<PublishRequest, Problem>>, Problem> {
    let b = parse_json::<crate::admin::events::BatchBody>(body)?;
    Ok(b.events
        .iter()
        .map(|v| publish_request(v.get().as_bytes(), max_event_bytes))
        .collect())
}

/// `GET /admin/v1/insights/events?…`: the query string read into a checked range.
pub fn insights_events_range(query: &str) -> Result<InsightRange, Problem> {
    crate::admin::insights::events_query_range(query)
}

/// `GET /admin/v1/insights/deliveries?…`: the query string read into a checked range.
pub fn insights_deliveries_range(query: &str) -> Result<InsightRange, Problem> {
    crate::admin::insights::deliveries_query_range(query)
}

/// A Web API call's parameters (`/api/{method}`), from its query, headers and body, and the
/// token they carry.
pub fn webapi_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, SlackError> {
    let p = Params::parse(query, headers, body)?;
    let _ = (p.token(), p.token_only_in_params());
    Ok(p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}
