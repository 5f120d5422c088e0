//! Web API parameters from wherever the client put them: query string, form body or JSON
//! body (Python sends booleans as 1/0, Node sends forms; both move `token` into the header).

use axum::http::{header, HeaderMap};
use std::collections::BTreeMap;

use tidings_core::token::TokenKind;
use tidings_store::TokenGrant;

use crate::error::SlackError;

/// Merged parameters (body wins over query) and where the token came from.
#[derive(Debug, Default)]
pub struct Params {
    values: BTreeMap<String, String>,
    header_token: Option<String>,
    /// `Authorization: Basic` credentials (`client_id`, `client_secret`), as Python's
    /// `oauth.v2.access` sends them.
    basic: Option<(String, String)>,
    /// A token already authenticated before the body was read, with its grant
    /// (`super::dispatch`), so it is not looked up twice.
    pub(crate) authenticated: Option<(String, (TokenKind, TokenGrant))>,
    /// The same for a configuration token (the manifest methods).
    pub(crate) config: Option<(String, tidings_store::manifests::ConfigToken)>,
}

/// The token in `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        })
        .filter(|t| !t.is_empty())
}

/// The credentials in `Authorization: Basic <base64(id:secret)>`, if any.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

impl Params {
    pub fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, SlackError> {
        let mut values = BTreeMap::new();
        if let Some(q) = query {
            values.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let trimmed = body.trim_ascii_start();
        if content_type.starts_with("application/json")
            || (content_type.is_empty() && trimmed.starts_with(b"{"))
        {
            if !trimmed.is_empty() {
                let v: serde_json::Value =
                    serde_json::from_slice(body).map_err(|_| SlackError::new("invalid_json"))?;
                let obj = v.as_object().ok_or(SlackError::new("invalid_json"))?;
                for (k, v) in obj {
                    let s = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => continue,
                        other => other.to_string(),
                    };
                    values.insert(k.clone(), s);
                }
            }
        } else if content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded")
            || content_type.starts_with("text/plain")
        {
            let text =
                std::str::from_utf8(body).map_err(|_| SlackError::new("invalid_form_data"))?;
            values.extend(form_urlencoded::parse(text.as_bytes()).into_owned());
        } else if content_type.starts_with("multipart/form-data") {
            // No method Tidings serves takes files; refuse rather than misread.
            return Err(SlackError::new("invalid_form_data"));
        } else if !body.is_empty() {
            return Err(SlackError::new("invalid_form_data"));
        }
        Ok(Params {
            values,
            header_token: bearer(headers),
            basic: basic(headers),
            authenticated: None,
            config: None,
        })
    }

    /// The token from the header, else from the `token` parameter.
    pub fn token(&self) -> Option<&str> {
        self.header_token.as_deref().or_else(|| {
            self.values
                .get("token")
                .map(String::as_str)
                .filter(|t| !t.is_empty())
        })
    }

    /// Whether the token came only as a parameter (an error for some methods).
    pub fn token_only_in_params(&self) -> bool {
        self.header_token.is_none() && self.values.contains_key("token")
    }

    /// Client credentials: from the form (Node) or HTTP Basic (Python).
    pub fn client_credentials(&self) -> Option<(String, String)> {
        match (self.get("client_id"), self.get("client_secret")) {
            (Some(i), Some(s)) if !i.is_empty() => Some((i.to_string(), s.to_string())),
            _ => self.basic.clone(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &str, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !ct.is_empty() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn form_json_and_query_all_carry_parameters() {
        let p = Params::parse(
            Some("a=1"),
            &headers("application/x-www-form-urlencoded", None),
            b"b=2&token=xoxb-1",
        )
        .unwrap();
        assert_eq!(
            (p.get("a"), p.get("b"), p.token()),
            (Some("1"), Some("2"), Some("xoxb-1"))
        );
        assert!(p.token_only_in_params());
        let p = Params::parse(
            None,
            &headers("application/json; charset=utf-8", Some("Bearer xoxp-9")),
            br#"{"limit": 5, "x": true}"#,
        )
        .unwrap();
        assert_eq!(
            (p.get("limit"), p.get("x"), p.token()),
            (Some("5"), Some("true"), Some("xoxp-9"))
        );
        assert!(!p.token_only_in_params());
    }

    #[test]
    fn the_header_token_wins_over_the_parameter() {
        let p = Params::parse(
            Some("token=xoxb-param"),
            &headers("", Some("Bearer xoxb-header")),
            b"",
        )
        .unwrap();
        assert_eq!(p.token(), Some("xoxb-header"));
    }

    #[test]
    fn malformed_bodies_get_slack_error_codes() {
        let e = Params::parse(None, &headers("application/json", None), b"{nope").unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = Params::parse(
            None,
            &headers("application/x-www-form-urlencoded", None),
            &[0xff, 0xfe],
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_form_data");
        let e = Params::parse(None, &headers("application/xml", None), b"<x/>").unwrap_err();
        assert_eq!(e.code, "invalid_form_data");
    }
}
