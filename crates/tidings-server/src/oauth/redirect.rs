//! Which `redirect_uri` an app may send people back to, matched as Slack does: the
//! scheme, host and port of a registered redirect URL exactly, and its path or a
//! subdirectory of it. Anything else is refused before any redirect happens, so the
//! authorize endpoint cannot be used as an open redirect.

/// The parts of an absolute http(s) URL that matching compares.
#[derive(Debug, PartialEq)]
struct Parts<'a> {
    scheme: &'a str,
    authority: String,
    path: &'a str,
}

fn parts(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    if !scheme_ok {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(['@', '\\', ' ']) {
        return None;
    }
    let after = &rest[end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    let dots = path.split('/').any(|seg| seg == "." || seg == "..");
    if dots || path.contains('\\') || path.contains("//") {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    // The default port is the same place.
    for (s, p) in [("http", ":80"), ("https", ":443")] {
        if scheme.eq_ignore_ascii_case(s) && authority.ends_with(p) {
            authority.truncate(authority.len() - p.len());
        }
    }
    Some(Parts {
        scheme,
        authority,
        path: if path.is_empty() { "/" } else { path },
    })
}

/// Whether `redirect_uri` is allowed by the registered `url`.
pub fn allowed_by(url: &str, redirect_uri: &str) -> bool {
    let (Some(r), Some(u)) = (parts(redirect_uri), parts(url)) else {
        return false;
    };
    if redirect_uri.contains('#') {
        return false;
    }
    let base = u.path.trim_end_matches('/');
    r.scheme.eq_ignore_ascii_case(u.scheme)
        && r.authority == u.authority
        && (r.path.trim_end_matches('/') == base || r.path.starts_with(&format!("{base}/")))
}

/// What a registered redirect URL must look like (the operator API documents it):
/// http(s), a host name or address, an optional port, and a path of plain segments.
pub const REGISTRATION_PATTERN: &str =
    "^https?://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$";

/// Whether a URL is acceptable as a registered redirect URL: exactly
/// [`REGISTRATION_PATTERN`], at most 2048 characters.
pub fn valid_registration(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let label =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let seg_ok = |(i, seg): (usize, &&str)| {
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"_~-".contains(&b);
        (seg.is_empty() && i + 1 == segs.len())
            || (seg.bytes().next().is_some_and(plain) && seg.bytes().all(|b| plain(b) || b == b'.'))
    };
    url.len() <= 2048
        && host.split('.').all(label)
        && port_ok
        && segs.iter().enumerate().all(seg_ok)
}

/// The redirect target for an authorize request: the one named, if registered; without
/// one, the first registered URL. `None`: refuse (an error page, never a redirect).
pub fn resolve(registered: &[String], requested: Option<&str>) -> Option<String> {
    match requested {
        Some(r) => registered
            .iter()
            .any(|u| allowed_by(u, r))
            .then(|| r.to_string()),
        None => registered.first().cloned(),
    }
}

/// `base` with `params` added to its query string.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_url_or_a_subdirectory_of_it_is_allowed() {
        let u = "http://localhost:3000/slack/oauth_redirect";
        assert!(allowed_by(u, u));
        assert!(allowed_by(
            u,
            "http://localhost:3000/slack/oauth_redirect/more?x=1"
        ));
        assert!(allowed_by("https://a.example", "https://a.example:443/cb"));
    }

    #[test]
    fn other_hosts_ports_schemes_and_tricks_are_refused() {
        let u = "http://localhost:3000/slack/oauth_redirect";
        for bad in [
            "http://localhost:3001/slack/oauth_redirect",
            "https://localhost:3000/slack/oauth_redirect",
            "http://evil.example/slack/oauth_redirect",
            "http://localhost:3000/slack/oauth_redirectx",
            "http://localhost:3000/slack/oauth_redirect/../../x",
            "http://localhost:3000@evil.example/slack/oauth_redirect",
            "http://localhost:3000/slack/oauth_redirect#frag",
            "javascript:alert(1)",
            "//evil.example/slack/oauth_redirect",
            "http://localhost:3000\\@evil.example/slack/oauth_redirect",
        ] {
            assert!(!allowed_by(u, bad), "{bad}");
        }
    }

    #[test]
    fn without_a_redirect_uri_the_first_registered_url_is_used() {
        let reg = vec![
            "http://a.example/cb".to_string(),
            "http://b.example/cb".into(),
        ];
        assert_eq!(resolve(&reg, None).as_deref(), Some("http://a.example/cb"));
        assert_eq!(resolve(&[], None), None);
        assert_eq!(resolve(&reg, Some("http://c.example/cb")), None);
    }

    #[test]
    fn registrations_are_plain_http_urls() {
        for ok in [
            "http://localhost:3000/slack/oauth_redirect",
            "https://a.example",
            "https://a.example/",
            "http://a/b.c/d/",
        ] {
            assert!(valid_registration(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "http://a//b",
            "http://a/../b",
            "http://a/.x",
            "http://a:123456/",
            "http://a b/",
            "http://u@a/",
            "http://a/#f",
            "ftp://a/",
            "http://a/?q=1",
            "http://",
        ] {
            assert!(!valid_registration(bad), "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_appended_encoded() {
        assert_eq!(
            with_query("http://a/cb?x=1", &[("code", "a b"), ("state", "s&t")]),
            "http://a/cb?x=1&code=a+b&state=s%26t"
        );
    }
}
