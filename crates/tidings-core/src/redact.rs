//! Keeping secrets out of logs: [`text`] rewrites a log line (text or JSON format, from our
//! code or a library's, at any level) with every secret it can recognise replaced by
//! `[redacted]`; [`url`] does the same for one URL before it becomes a log field.
//!
//! What is recognised:
//! - tokens by their prefix (`xoxb-`, `xoxp-`, `xapp-`, `tdk_admin_`, `tdk_pub_`, `whsec_`…),
//!   keeping the prefix so a reader still sees which kind it was;
//! - a URL's userinfo password (`https://user:[redacted]@host`);
//! - the value of any `name=value`, `name="value"` or JSON `"name": "value"` whose name
//!   looks like a secret: its last word is `token`, `secret`, `password`, `key`, `sig`,
//!   `signature`, `ticket`, `code` (alone), `cookie`, `session`, `csrf`, `auth`… — which
//!   covers query strings (`?token=`), tracing's own `field=value` output and JSON logs;
//! - `Bearer …`/`Basic …` credentials;
//! - a bare 32-hex-digit word (the shape of a signing secret).
//!
//! The writer that applies [`text`] to every line lives with the logging setup (the
//! binary); this module is pure so it can be tested line by line.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What replaces a secret.
pub const MARK: &str = "[redacted]";

fn re(pattern: &str) -> Regex {
    // The patterns are constants below; a typo is caught by the first unit test.
    Regex::new(pattern).unwrap_or_else(|e| panic!("redaction pattern {pattern:?}: {e}"))
}

static TOKENS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?P<p>xox[abeoprs]-|xapp-|tdk_admin_|tdk_pub_|whsec_)[A-Za-z0-9_\-.~+/=]+")
});
static USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?P<s>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:"'<>\\]*):[^\s/?#@"'<>\\]+@"#)
});
/// Colour codes tracing's text format puts around a field's `=` on a terminal.
const ANSI: &str = r"(?:\x1b\[[0-9;]*m)*";
/// `name="value"`, `name: "value"`, `"name":"value"` (Debug-quoted fields, JSON).
static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(?P<pre>{ANSI})(?P<k>[A-Za-z0-9_.\-]+)(?P<sep>\\?"?{ANSI}\s*[:=]{ANSI}\s*\\?")(?P<v>(?:[^"\\]|\\[^"])*)(?P<end>\\?")"#
    ))
});
/// `name=value` up to a delimiter (query strings, tracing's text fields).
static BARE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(?P<pre>{ANSI})(?P<k>[A-Za-z0-9_.\-]+)(?P<sep>{ANSI}={ANSI})(?P<v>(?:[^\s&;,"'?#=)}}\[\]<>\\\x1b]|\[redacted\])+)"#
    ))
});
static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?P<s>bearer|basic)(?P<sp>\s+)[A-Za-z0-9_\-.~+/=:]{8,}"));
static HEX32: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9a-fA-F]{32}\b"));

/// Last words of a parameter or field name that mark its value as secret.
const SECRET_WORDS: &[&str] = &[
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwd",
    "pwd",
    "pass",
    "key",
    "apikey",
    "sig",
    "signature",
    "ticket",
    "assertion",
    "credential",
    "credentials",
    "cookie",
    "session",
    "csrf",
    "auth",
    "authorization",
];

/// Whether a parameter or field called `name` holds a secret: its last word (split on
/// `_`, `-`, `.`) is one of [`SECRET_WORDS`], or it is OAuth's `code`.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit(['_', '-', '.']).next().unwrap_or("");
    lower == "code" || SECRET_WORDS.contains(&last)
}

/// A log line with every recognised secret replaced by [`MARK`].
pub fn text(line: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(line);
    // A line with nothing to redact stays borrowed: no copy for most lines.
    let mut apply = |re: &Regex, f: &dyn Fn(&Captures<'_>) -> String| {
        let changed = match re.replace_all(&out, |c: &Captures<'_>| f(c)) {
            Cow::Owned(s) if s != *out => Some(s),
            _ => None,
        };
        if let Some(s) = changed {
            out = Cow::Owned(s);
        }
    };
    apply(&TOKENS, &|c| format!("{}{MARK}", &c["p"]));
    apply(&USERINFO, &|c| format!("{}:{MARK}@", &c["s"]));
    apply(&QUOTED, &|c| {
        if is_secret_name(&c["k"]) && !c["v"].is_empty() {
            format!("{}{}{}{MARK}{}", &c["pre"], &c["k"], &c["sep"], &c["end"])
        } else {
            c[0].to_string()
        }
    });
    apply(&BARE, &|c| {
        // A value the token rule already redacted (`xoxb-[redacted]`) keeps its prefix.
        if is_secret_name(&c["k"]) && !c["v"].ends_with(MARK) {
            format!("{}{}{}{MARK}", &c["pre"], &c["k"], &c["sep"])
        } else {
            c[0].to_string()
        }
    });
    apply(&SCHEME, &|c| format!("{}{}{MARK}", &c["s"], &c["sp"]));
    apply(&HEX32, &|_| MARK.to_string());
    out
}

/// A URL fit for a log field: its password and its secret-looking query values redacted.
pub fn url(u: &str) -> Cow<'_, str> {
    text(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_secrets_never_reach_a_log_line() {
        let line =
            "GET /oauth/v2/login?assertion=eyJhbGciOi.eyJzdWIi.c2ln&return_to=/x code=1.2.abc \
                    rotated xoxe.xoxb-1-S3cret refresh xoxe-1-R3fresh csrf=Tok3n";
        let r = text(line);
        for secret in ["eyJhbGciOi", "1.2.abc", "S3cret", "R3fresh", "Tok3n"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert!(r.contains("return_to=/x"), "{r}");
    }

    #[test]
    fn tokens_keep_their_prefix_only() {
        let line = "auth ok for xoxb-AbC_123-xyz and xapp-1-A01-s3cr3t, admin tdk_admin_test_token_0123456789 pub tdk_pub_abc whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let r = text(line);
        for secret in [
            "AbC_123",
            "s3cr3t",
            "test_token_0123456789",
            "tdk_pub_abc",
            "MfKQ9r8",
        ] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert!(
            r.contains("xoxb-[redacted]") && r.contains("tdk_admin_[redacted]"),
            "{r}"
        );
    }

    #[test]
    fn a_urls_password_and_secret_query_values_are_redacted() {
        let cases = [
            (
                "https://bob:hunter2@example.com:8443/slack/events?token=abc&x=1&Signature=zz&code=c0de&status_code=500",
                "https://bob:[redacted]@example.com:8443/slack/events?token=[redacted]&x=1&Signature=[redacted]&code=[redacted]&status_code=500",
            ),
            (
                "http://127.0.0.1:3100/events?api_key=k1&sig=s1#frag",
                "http://127.0.0.1:3100/events?api_key=[redacted]&sig=[redacted]#frag",
            ),
            (
                "http://user@example.com/a?b=c",
                "http://user@example.com/a?b=c",
            ),
            ("/link/?ticket=T1cK3t&app_id=A01", "/link/?ticket=[redacted]&app_id=A01"),
            (
                "/api/auth.test?token=xoxb-1-S3cret&x=[1]",
                "/api/auth.test?token=xoxb-[redacted]&x=[1]",
            ),
            ("http://host:8080/path", "http://host:8080/path"),
        ];
        for (raw, want) in cases {
            assert_eq!(url(raw), want, "{raw}");
        }
    }

    #[test]
    fn tracing_text_and_json_fields_named_like_secrets_are_redacted() {
        let cases = [
            (
                r#"INFO request URL verification failed app=A01 url=http://u:pw1@h/x?password=pw2 reason=http_error: HTTP 500"#,
                r#"INFO request URL verification failed app=A01 url=http://u:[redacted]@h/x?password=[redacted] reason=http_error: HTTP 500"#,
            ),
            (
                r#"DEBUG request{method=POST uri=/api/auth.test?token=xyz123 version=HTTP/1.1}: started"#,
                r#"DEBUG request{method=POST uri=/api/auth.test?token=[redacted] version=HTTP/1.1}: started"#,
            ),
            (
                r#"{"level":"INFO","fields":{"signing_secret":"abc","url":"http://h/?client_secret=q&a=1","n":"5"}}"#,
                r#"{"level":"INFO","fields":{"signing_secret":"[redacted]","url":"http://h/?client_secret=[redacted]&a=1","n":"5"}}"#,
            ),
            (
                r#"TRACE body={"type":"url_verification","token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"c"}"#,
                r#"TRACE body={"type":"url_verification","token":"[redacted]","challenge":"c"}"#,
            ),
            (
                r#"TRACE frame="{\"token\": \"Jhj5dZrVaK7ZwHHjRyZWjbDl\"}""#,
                r#"TRACE frame="{\"token\": \"[redacted]\"}""#,
            ),
            (
                "headers: authorization: Bearer abcdefgh12345678, Basic dXNlcjpwYXNz",
                "headers: authorization: Bearer [redacted], Basic [redacted]",
            ),
            (
                "secret 0123456789abcdef0123456789abcdef seen, hash 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef kept",
                "secret [redacted] seen, hash 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef kept",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(text(raw), want, "{raw}");
        }
    }

    #[test]
    fn colour_codes_around_the_equals_sign_do_not_hide_a_field() {
        let raw = "\x1b[3mtoken\x1b[0m\x1b[2m=\x1b[0mabc123 \x1b[3mapp\x1b[0m\x1b[2m=\x1b[0mA01 \x1b[3msecret\x1b[0m\x1b[2m=\x1b[0m\"q\"";
        let want = "\x1b[3mtoken\x1b[0m\x1b[2m=\x1b[0m[redacted] \x1b[3mapp\x1b[0m\x1b[2m=\x1b[0mA01 \x1b[3msecret\x1b[0m\x1b[2m=\x1b[0m\"[redacted]\"";
        assert_eq!(text(raw), want);
    }

    #[test]
    fn ordinary_lines_are_left_alone_and_not_copied() {
        for line in [
            "INFO tidings listening on http://127.0.0.1:3000",
            "WARN delivery failed app=A01 status_code=500 retry_num=1 event_type=message.channels",
            "INFO missing Authorization: Bearer <admin token>",
            "INFO key_event=true token_id=At01 app_token_id=At02",
        ] {
            assert!(matches!(text(line), Cow::Borrowed(_)), "{line}");
        }
    }

    #[test]
    fn secret_names_are_judged_by_their_last_word() {
        for name in [
            "token",
            "access_token",
            "X-Slack-Signature",
            "client_secret",
            "api.key",
            "code",
            "Password",
            "ticket",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "status_code",
            "token_id",
            "key_event",
            "app",
            "url",
            "challenge",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
