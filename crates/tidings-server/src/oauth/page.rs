//! The few server-rendered pages of the install flow: plain HTML, every value escaped.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around already-escaped `body`.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>body{{font-family:sans-serif;max-width:36rem;margin:3rem auto;\
         padding:0 1rem}}button{{font-size:1rem;padding:.5rem 1.5rem;margin-right:1rem}}\
         li{{margin:.3rem 0}}code{{background:#eee}}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// An error page: what went wrong, and no way onward (never a redirect).
pub fn error(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!("<h1>{}</h1><p>{}</p>", esc(title), esc(detail));
    let mut res = (status, Html(layout(title, &body))).into_response();
    no_store(&mut res);
    res
}

/// Pages with secrets or per-person content are not cached or framed.
pub fn no_store(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "x-frame-options",
        axum::http::HeaderValue::from_static("DENY"),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            super::esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
