//! Request extractors for the operator API that turn every malformed input into a
//! problem+json naming the field: JSON bodies (with the path of the bad field), query
//! strings and pagination.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use tidings_store::PageRequest;

use crate::error::Problem;

/// Maximum nesting of a JSON body; deeper documents are refused before parsing.
pub const MAX_JSON_DEPTH: usize = 64;

/// A JSON body parsed into `T`, or a problem naming what is wrong with it.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(usize::MAX);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large(limit)
            } else {
                Problem::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(
            "the request body is empty; a JSON object is expected",
        ));
    }
    check_depth(bytes)?;
    require_object(bytes)?;
    // The common case, a body that fits, parses without tracking the path: tracking
    // copies every key it passes (a batch of 500 events is thousands of them). Only a
    // body that does not fit is parsed again, tracked, to name the field.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::bad_request(format!("the request body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            Problem::bad_request(format!("the request body does not fit: {inner}"))
        } else {
            Problem::invalid_field(&path, strip_position(&inner.to_string()))
        }
    })?;
    // What is left after the document (the fast path refused it too).
    de.end()
        .map_err(|e| Problem::bad_request(format!("the request body is not valid JSON: {e}")))?;
    Ok(v)
}

/// Every operator API body is a JSON object. serde would also read a struct from an
/// array of its fields (`[null]` as `{"label": null}`), so anything else is refused here,
/// once, for every endpoint: valid JSON of another kind is "not an object", the rest is
/// "not valid JSON".
fn require_object(bytes: &[u8]) -> Result<(), Problem> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(Problem::bad_request(
                "the request body must be a JSON object",
            )),
            Err(e) => Err(Problem::bad_request(format!(
                "the request body is not valid JSON: {e}"
            ))),
        },
    }
}

/// serde_json appends " at line 1 column 12"; the field name says more to a user.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Refuses documents nested deeper than [`MAX_JSON_DEPTH`] without parsing them. Runs on
/// every publish body (a batch is mostly event text), so the inside of a string is skipped
/// with `memchr` rather than walked byte by byte.
fn check_depth(bytes: &[u8]) -> Result<(), Problem> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // To the closing quote: past each backslash and the byte it escapes.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        None => return Ok(()), // unterminated: the parser says so
                        Some(k) if bytes[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k;
                            break;
                        }
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(Problem::bad_request(format!(
                        "the request body nests deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// An optional integer field that JSON may write as `5` or `5.0`: JSON Schema, and so the
/// OpenAPI document, counts a number with a zero fraction as an integer. Use with
/// `#[serde(default, deserialize_with = "whole_number")]` on an `Option<i64>`.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    // A number that is not an i64 (serde_json holds it as an f64) is taken only where f64 is
    // exact, up to 2^53: beyond it, -9223372036854775809 would round to i64::MIN.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (-EXACT..=EXACT).contains(&f) => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!(
            "{n} is not a whole number within a 64-bit integer"
        ))),
    }
}

/// Why a body could not be read by [`read_limited`].
#[derive(Debug, PartialEq)]
pub enum BodyError {
    /// Larger than the limit (declared, or as it arrived).
    TooLarge,
    /// The client's stream failed (or stalled: the edge answers 408 then).
    Unreadable,
}

/// Reads at most `limit` bytes of `body`. A declared `Content-Length` over the limit is
/// refused before anything is read.
pub async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// The configured body limit, put in request extensions so extractors can report it.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Query parameters parsed into `T`, or a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Parses a query string (without the `?`) into `T`, naming the offending parameter.
pub fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, Problem> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Problem::invalid_field(&path, e.into_inner().to_string())
    })
}

/// `?limit=&cursor=` for every list.
pub struct Paging(pub PageRequest);

#[derive(Deserialize)]
struct PagingQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parse_paging(parts.uri.query().unwrap_or("")).map(Paging)
    }
}

/// The `limit` and `cursor` of a query string (without the `?`), checked.
pub fn parse_paging(q: &str) -> Result<PageRequest, Problem> {
    let q: PagingQuery = parse_query(q)?;
    // An empty `cursor=` is the first page (as an empty `next_cursor` ends a listing); an
    // empty `limit=` is not a number.
    let limit = match q.limit.as_deref() {
        None => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| Problem::invalid_field("limit", "must be a whole number"))?,
        ),
    };
    PageRequest::parse(limit, q.cursor.as_deref()).map_err(|m| {
        let field = if m.starts_with("limit") {
            "limit"
        } else {
            "cursor"
        };
        Problem::invalid_field(field, m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: Option<u32>,
    }

    async fn paging(query: &str) -> Result<PageRequest, Problem> {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(format!("/admin/v1/teams?{query}"))
            .body(())
            .expect("a valid request")
            .into_parts();
        Paging::from_request_parts(&mut parts, &())
            .await
            .map(|p| p.0)
    }

    #[tokio::test]
    async fn an_empty_limit_is_refused_and_an_empty_cursor_is_the_first_page() {
        let p = paging("limit=").await.unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.errors[0].field, "limit");
        assert!(paging("cursor=").await.is_ok());
        assert!(paging("limit=5&cursor=").await.is_ok());
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let p = parse_json::<Body>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.errors[0].field, "name");
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_400s() {
        let p = parse_json::<Body>(br#"{"name": "x", "nmae": 1}"#).unwrap_err();
        assert!(p.detail.contains("nmae"), "{}", p.detail);
        let p = parse_json::<Body>(br#"{"name": "#).unwrap_err();
        assert!(p.detail.contains("not valid JSON"), "{}", p.detail);
        let p = parse_json::<Body>(b"").unwrap_err();
        assert!(p.detail.contains("empty"));
    }

    #[test]
    fn text_after_the_document_is_refused() {
        let p = parse_json::<Body>(br#"{"name": "x"} {"name": "y"}"#).unwrap_err();
        assert!(p.detail.contains("not valid JSON"), "{}", p.detail);
        assert!(parse_json::<Body>(b"{\"name\": \"x\"}\n ").is_ok());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_even_when_it_lists_the_fields() {
        // serde reads a struct from an array of its fields; the API takes objects only.
        for body in [r#"["x", 1]"#, "[null]", " 5", r#""x""#, "null"] {
            let p = parse_json::<Body>(body.as_bytes()).unwrap_err();
            assert_eq!(p.status, 400, "{body}");
            assert!(
                p.detail.contains("must be a JSON object"),
                "{body}: {}",
                p.detail
            );
        }
        let p = parse_json::<Body>(b"[nul").unwrap_err();
        assert!(p.detail.contains("not valid JSON"), "{}", p.detail);
        assert!(parse_json::<Body>(br#" {"name": "x"}"#).is_ok());
    }

    #[derive(Debug, Deserialize)]
    struct Times {
        #[serde(default, deserialize_with = "whole_number")]
        at: Option<i64>,
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let at = |body: &str| parse_json::<Times>(body.as_bytes()).map(|t| t.at);
        assert_eq!(at(r#"{"at": 5}"#).unwrap(), Some(5));
        assert_eq!(at(r#"{"at": -591.0}"#).unwrap(), Some(-591));
        assert_eq!(at(r#"{"at": null}"#).unwrap(), None);
        assert_eq!(at("{}").unwrap(), None);
        assert_eq!(
            at(r#"{"at": -9223372036854775808}"#).unwrap(),
            Some(i64::MIN)
        );
        assert_eq!(at(r#"{"at": 9007199254740992.0}"#).unwrap(), Some(1 << 53));
        for bad in [
            r#"{"at": 1.5}"#,
            r#"{"at": 9223372036854775808}"#,
            // Beyond i64: as an f64 it would round to i64::MIN.
            r#"{"at": -9223372036854775809}"#,
            r#"{"at": 1e300}"#,
            r#"{"at": "5"}"#,
        ] {
            let p = at(bad).unwrap_err();
            assert_eq!((p.status, p.errors[0].field.as_str()), (400, "at"), "{bad}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let p = parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert!(p.detail.contains("deeper"));
        // Brackets inside strings do not count.
        let s = format!("{{\"name\": \"{}\"}}", "[".repeat(100));
        assert!(parse_json::<Body>(s.as_bytes()).is_ok());
        // Nor after escaped quotes and backslashes inside them.
        let s = format!("{{\"name\": \"a\\\"{}\\\\\", \"n\": 1}}", "{".repeat(100));
        assert!(parse_json::<Body>(s.as_bytes()).is_ok(), "{s}");
        // A string that ends the body mid-escape is the parser's to refuse.
        for cut in [r#"{"name": "ab\"#, r#"{"name": "ab"#, r#"{"name": "\"#] {
            let p = parse_json::<Body>(cut.as_bytes()).unwrap_err();
            assert!(p.detail.contains("not valid JSON"), "{cut}: {}", p.detail);
        }
        // Depth counts again after a string closes.
        let deep = format!(
            "{{\"a\": \"x\\\"\", \"b\": {}{}}}",
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(parse_json::<serde_json::Value>(deep.as_bytes())
            .unwrap_err()
            .detail
            .contains("deeper"));
    }
}
