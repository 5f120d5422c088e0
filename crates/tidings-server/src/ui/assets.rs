//! The dashboard's static files, embedded in the binary at build time (no build step and
//! no files to install): HTML, CSS, the ES modules of the single-page app, and the vendored
//! Chart.js. Each is served with its content type and an ETag, revalidated on every load
//! (`no-cache`) so an upgraded binary is picked up at once.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// Path under `/ui/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!("../../ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/ui/assets/` and `/ui/vendor/`. The pages (`index.html`, `login.html`)
/// are served by their own handlers, behind the login check.
pub static ASSETS: &[Asset] = &[
    asset!("assets/style.css", "text/css; charset=utf-8"),
    asset!("assets/favicon.svg", "image/svg+xml"),
    asset!("assets/app.js", JS),
    asset!("assets/api.js", JS),
    asset!("assets/dom.js", JS),
    asset!("assets/charts.js", JS),
    asset!("assets/overview.js", JS),
    asset!("assets/apps.js", JS),
    asset!("assets/app_detail.js", JS),
    asset!("assets/app_installs.js", JS),
    asset!("assets/app_replay.js", JS),
    asset!("assets/events.js", JS),
    asset!("assets/key_events.js", JS),
    asset!("vendor/chart.umd.js", JS),
];

/// The single-page app's shell.
pub const INDEX_HTML: &str = include_str!("../../ui/index.html");
/// The login form; `<!--error-->` is where a fixed error message goes.
pub const LOGIN_HTML: &str = include_str!("../../ui/login.html");

/// The asset at `path` (relative to `/ui/`) and its ETag.
pub fn get(path: &str) -> Option<(&'static Asset, &'static str)> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..16]))
            .collect()
    });
    let i = ASSETS.iter().position(|a| a.path == path)?;
    Some((&ASSETS[i], etags.get(i)?.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_with_an_etag_and_js_is_javascript() {
        for a in ASSETS {
            let (found, etag) = get(a.path).unwrap();
            assert_eq!(found.path, a.path);
            assert_eq!(etag.len(), 18);
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            if a.path.ends_with(".js") {
                assert_eq!(a.content_type, JS);
            }
        }
        assert!(get("assets/nope.js").is_none());
        assert!(get("../Cargo.toml").is_none());
    }

    #[test]
    fn pages_load_no_inline_script() {
        for page in [INDEX_HTML, LOGIN_HTML] {
            for (i, _) in page.match_indices("<script") {
                let tag = &page[i..page[i..].find('>').map_or(page.len(), |e| i + e)];
                assert!(tag.contains("src="), "inline script: {tag}");
            }
            for (i, _) in page.match_indices(" on") {
                let attr: String = page[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                let rest = &page[i + 1 + attr.len()..];
                assert!(!rest.starts_with('='), "inline event handler {attr}");
            }
            assert!(!page.contains("style="), "no inline styles");
        }
    }
}
