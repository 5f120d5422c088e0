//! The two error shapes at the edge, each rendered in exactly one place:
//! [`Problem`] — RFC 9457 `application/problem+json` for the operator API — and
//! [`SlackError`] — `{"ok": false, "error": "…"}` with HTTP 200 for the Slack Web API.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tidings_store::StoreError;

/// One field-level complaint inside a problem.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field at fault: a body path (`members[2]`, `event.type`) or a parameter name.
    pub field: String,
    pub message: String,
}

/// An operator API error: `{"type","title","status","detail","errors"}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(
    description = "An RFC 9457 problem (`application/problem+json`); `type` is \
                   `urn:tidings:problem:<code>`, so scripts can match on the code."
)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "urn:tidings:problem:not_found")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem whose `type` is `urn:tidings:problem:<code>`, so scripts can match on it.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:tidings:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 412: an `If-Match` that does not name the current version.
    pub fn precondition_failed(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            detail,
        )
    }

    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn too_large(limit: usize) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// A 400 naming one invalid field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{field}: {message}"),
        );
        p.errors.push(FieldError {
            field: field.to_string(),
            message,
        });
        p
    }

    /// Same as [`Problem::invalid_field`] with another status and code (e.g. 422).
    pub fn with_field(mut self, field: &str, message: impl Into<String>) -> Problem {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.into(),
        });
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound(m) => Problem::not_found(m),
            StoreError::Conflict(m) | StoreError::Stale(m) => Problem::conflict(m),
            StoreError::Invalid(m) => Problem::unprocessable("invalid", m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            StoreError::Refused(r) => Problem::from(r),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "store error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<tidings_store::PublishRefusal> for Problem {
    fn from(r: tidings_store::PublishRefusal) -> Problem {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        Problem::new(status, r.code, format!("{}: {}", r.field, r.message))
            .with_field(&r.field, r.message)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

/// A Slack Web API error. Always HTTP 200 (the SDKs treat other statuses as transport
/// failures), except `ratelimited`, which is 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackError {
    pub code: &'static str,
    /// For `missing_scope`: the scope needed and the scopes the token has.
    pub needed: Option<String>,
    pub provided: Option<String>,
    pub retry_after: Option<u64>,
}

impl SlackError {
    pub fn new(code: &'static str) -> SlackError {
        SlackError {
            code,
            needed: None,
            provided: None,
            retry_after: None,
        }
    }

    pub fn missing_scope(needed: &str, provided: &[String]) -> SlackError {
        SlackError {
            needed: Some(needed.to_string()),
            provided: Some(provided.join(",")),
            ..SlackError::new("missing_scope")
        }
    }
}

impl From<StoreError> for SlackError {
    fn from(e: StoreError) -> SlackError {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                SlackError::new("service_unavailable")
            }
            other => {
                tracing::error!(error = %other, "store error in Web API");
                SlackError::new("internal_error")
            }
        }
    }
}

impl IntoResponse for SlackError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"ok": false, "error": self.code});
        if let Some(n) = &self.needed {
            body["needed"] = n.clone().into();
        }
        if let Some(p) = &self.provided {
            body["provided"] = p.clone().into();
        }
        let status = if self.retry_after.is_some() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        };
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
