//! Field checks shared by the operator API's handlers: each returns a problem naming the
//! field, so handlers stay a few lines.

use tidings_core::ids::{self, IdKind};

use crate::error::Problem;

/// The id to use: the one supplied (checked for shape) or a fresh one.
pub fn id_or_new(kind: IdKind, supplied: Option<String>) -> Result<String, Problem> {
    match supplied {
        Some(id) => {
            ids::check(kind, &id).map_err(|m| Problem::invalid_field("id", m))?;
            Ok(id)
        }
        None => Ok(ids::generate(kind)),
    }
}

/// A path segment that must be an id of `kind`.
pub fn path_id(kind: IdKind, name: &str, id: &str) -> Result<(), Problem> {
    ids::check(kind, id).map_err(|m| Problem::invalid_field(name, m))
}

/// An id in a body field.
pub fn field_id(kind: IdKind, field: &str, id: &str) -> Result<(), Problem> {
    ids::check(kind, id).map_err(|m| Problem::invalid_field(field, m))
}

/// A non-empty name of at most 255 characters, trimmed.
pub fn name(field: &str, value: &str) -> Result<String, Problem> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Problem::invalid_field(field, "must not be empty"));
    }
    if v.chars().count() > 255 {
        return Err(Problem::invalid_field(
            field,
            "must be at most 255 characters",
        ));
    }
    Ok(v.to_string())
}

/// A workspace domain: 1–21 lower-case letters, digits or dashes, as at Slack.
pub fn domain(value: &str) -> Result<String, Problem> {
    let ok = (1..=21).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(Problem::invalid_field(
            "domain",
            "must be 1 to 21 lower-case letters, digits or dashes, not starting or ending with a dash",
        ))
    }
}

/// Most scopes one list may hold: Slack defines about 150 in all.
pub const MAX_SCOPES: usize = 256;

/// An OAuth scope list: each like `channels:history`, no duplicates (the first of each
/// kept, in order), at most [`MAX_SCOPES`]. Linear: a set remembers what was seen, since
/// the list is the client's and a body may hold tens of thousands of entries.
pub fn scopes(field: &str, list: &[String]) -> Result<Vec<String>, Problem> {
    if list.len() > MAX_SCOPES {
        return Err(Problem::invalid_field(
            field,
            format!("at most {MAX_SCOPES} scopes, got {}", list.len()),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-".contains(&b));
        if !ok {
            return Err(Problem::invalid_field(
                field,
                format!("{s:?} is not a valid scope"),
            ));
        }
        if seen.insert(s.as_str()) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// A Request URL: absolute http(s), at most 2048 characters (as the OpenAPI document's
/// `maxLength` counts them).
pub fn request_url(value: &str) -> Result<String, Problem> {
    let bad = |m: &str| Problem::invalid_field("request_url", m);
    if value.chars().count() > 2048 {
        return Err(bad("must be at most 2048 characters"));
    }
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| bad("must be an absolute http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("must name a host"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_follow_slacks_rules() {
        assert!(domain("acme-eng").is_ok());
        for bad in ["", "Acme", "-acme", "a_b", "abcdefghijklmnopqrstuv"] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_urls_must_be_absolute_http() {
        assert!(request_url("https://example.com/slack/events").is_ok());
        assert!(request_url("http://127.0.0.1:3100/slack/events").is_ok());
        for bad in ["ftp://x", "example.com", "http://", "https:///path"] {
            assert!(request_url(bad).is_err(), "{bad}");
        }
        // 2048 characters, as JSON Schema's maxLength counts them, whatever their bytes.
        let long = format!("https://example.com/{}", "é".repeat(2048 - 20));
        assert_eq!(long.chars().count(), 2048);
        assert!(request_url(&long).is_ok());
        assert!(request_url(&format!("{long}é")).is_err());
    }

    #[test]
    fn scopes_are_deduplicated_and_checked() {
        let v = scopes("bot_scopes", &["chat:write".into(), "chat:write".into()]).unwrap();
        assert_eq!(v, vec!["chat:write"]);
        assert!(scopes("bot_scopes", &["Chat Write".into()]).is_err());
    }

    #[test]
    fn scope_lists_are_bounded_and_checked_in_linear_time() {
        let many: Vec<String> = (0..60_000).map(|i| format!("s{i}:read")).collect();
        let p = scopes("bot_scopes", &many).unwrap_err();
        assert_eq!((p.status, p.errors[0].field.as_str()), (400, "bot_scopes"));
        assert!(p.detail.contains("at most 256"), "{}", p.detail);
        let most: Vec<String> = (0..MAX_SCOPES).map(|i| format!("s{i}:read")).collect();
        assert_eq!(scopes("bot_scopes", &most).unwrap(), most);
        let repeated = vec!["chat:write".to_string(); MAX_SCOPES];
        assert_eq!(scopes("bot_scopes", &repeated).unwrap(), vec!["chat:write"]);
    }
}
