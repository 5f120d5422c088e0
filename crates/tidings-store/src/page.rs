//! Keyset pagination shared by every list: `limit` + opaque `cursor` in, `items` +
//! `next_cursor` out. The cursor encodes the last key seen, so pages stay stable while
//! records are added.

use base64::Engine;
use serde::Serialize;

/// The largest page any list returns.
pub const MAX_LIMIT: u32 = 1000;
/// The page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 100;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// The last key of the previous page.
    pub after: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// An opaque cursor: `v1:` + key, base64url. Opaque so the encoding can change.
pub struct Cursor;

impl Cursor {
    pub fn encode(key: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
    }

    /// The key inside a cursor, or `None` if it is not one of ours.
    pub fn decode(cursor: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        text.strip_prefix("v1:")
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    }
}

impl PageRequest {
    /// Builds a request from raw `limit` / `cursor` parameters.
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<PageRequest, String> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => l as u32,
            Some(l) => return Err(format!("limit must be between 1 and {MAX_LIMIT}, got {l}")),
        };
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(Cursor::decode(c).ok_or_else(|| "cursor is not valid".to_string())?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in key order: the extra row only
    /// tells that there is a next page.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| Cursor::encode(&key(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_foreign_text() {
        let c = Cursor::encode("T123");
        assert_eq!(Cursor::decode(&c).as_deref(), Some("T123"));
        assert_eq!(Cursor::decode("not-a-cursor!"), None);
        assert_eq!(
            Cursor::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v2:x")),
            None
        );
    }

    #[test]
    fn limits_outside_one_to_a_thousand_are_refused() {
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(1001), None).is_err());
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 100);
        assert!(PageRequest::parse(None, Some("zz")).is_err());
    }

    #[test]
    fn a_page_with_an_extra_row_has_a_next_cursor() {
        let p = Page::from_rows(vec!["a", "b", "c"], 2, |s| s.to_string());
        assert_eq!(p.items, vec!["a", "b"]);
        assert_eq!(
            Cursor::decode(p.next_cursor.as_deref().unwrap()).as_deref(),
            Some("b")
        );
        let last = Page::from_rows(vec!["a"], 2, |s| s.to_string());
        assert!(last.next_cursor.is_none());
    }
}
