//! The HTTP sender: one signed POST of exact bytes to a Request URL, Slack's way
//! (SLACK-WIRE.md §1): a 2xx within the timeout (the whole exchange, redirects included)
//! is success; 301/302 are followed up to `max_redirects` re-sending the same POST and body
//! (a general-purpose client would turn it into a GET); failures are classified into the
//! six retry reasons; `X-Slack-No-Retry: 1` on a non-2xx is reported, and so are a
//! `429`/`503`'s `Retry-After` (read into a bounded delay, [`tidings_core::backpressure`])
//! and a `410 Gone`. Connections are
//! pooled per host with keep-alive, and every connection passes the SSRF policy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION, USER_AGENT};
use tidings_core::policy::FailureReason;
use tidings_core::signing;
use tidings_core::signing::standard;

use crate::ssrf;

/// What the sender needs from configuration.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub timeout: Duration,
    pub max_redirects: u32,
    /// Which special-purpose addresses Request URLs may reach (see [`ssrf`]).
    pub targets: ssrf::TargetPolicy,
    /// Idle connections kept per host: as many as the dispatcher may have in flight, so
    /// the connections of a busy moment are reused by the next one instead of being
    /// closed and opened again (apps often share a host, and each has its own lane).
    pub max_idle_per_host: usize,
    /// The longest a `Retry-After` delays an app (`delivery.max_retry_after`).
    pub max_retry_after: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct SendResult {
    /// The final response status, if a response came.
    pub status_code: Option<u16>,
    /// `None` on success.
    pub failure: Option<FailureReason>,
    /// The app answered a non-2xx with `X-Slack-No-Retry: 1`.
    pub no_retry: bool,
    pub latency: Duration,
    /// A human explanation of a failure (for logs and verification errors).
    pub detail: Option<String>,
    /// The start of the response body (for URL verification).
    pub body: Bytes,
    /// A `429` or `503` with `Retry-After`: the bounded delay it asks for.
    pub retry_after: Option<Duration>,
    /// The Request URL answered `410 Gone`.
    pub gone: bool,
}

impl SendResult {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// How a request is signed: the app's [`tidings_store::SigningScheme`] with its keys.
#[derive(Debug, Clone)]
pub enum Signer<'a> {
    /// `X-Slack-Request-Timestamp` and `X-Slack-Signature` with the signing secret.
    SlackV0(&'a str),
    /// `webhook-id` (stable across retries), `webhook-timestamp`, `webhook-signature`.
    Standard { id: &'a str, keys: standard::Keys },
}

impl<'a> Signer<'a> {
    /// The signer of `app`'s requests; `id` is the `webhook-id` (the delivery's id).
    pub fn for_app(app: &'a tidings_store::App, id: &'a str) -> Signer<'a> {
        match app.signing_scheme {
            tidings_store::SigningScheme::SlackV0 => Signer::SlackV0(&app.signing_secret),
            tidings_store::SigningScheme::StandardWebhooks => Signer::Standard {
                id,
                keys: app.webhook_keys(now_secs()),
            },
        }
    }

    /// The signature headers for `body` sent at `ts`.
    fn headers(&self, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        match self {
            Signer::SlackV0(secret) => vec![
                ("X-Slack-Request-Timestamp", ts.to_string()),
                ("X-Slack-Signature", signing::sign(secret, ts, body)),
            ],
            Signer::Standard { id, keys } => {
                let h = standard::sign(keys, id, ts, body);
                vec![
                    ("webhook-id", h.id),
                    ("webhook-timestamp", h.timestamp),
                    ("webhook-signature", h.signature),
                ]
            }
        }
    }
}

#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    cfg: SenderConfig,
}

/// How much of a response body is kept.
const BODY_KEEP: usize = 4096;

/// Request URLs parsed per thread, at most this many before the cache starts over.
const PARSED_URLS: usize = 4096;

/// Parses a Request URL, remembering it on this thread: every delivery to an app posts to
/// the same URL, and parsing it each time (host checks, IDNA) was about 1.5 % of the
/// server's samples under load. A clone is one allocation.
fn parse_url(url: &str) -> Result<url::Url, url::ParseError> {
    thread_local! {
        static PARSED: std::cell::RefCell<std::collections::HashMap<Box<str>, url::Url>> =
            std::cell::RefCell::default();
    }
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if let Some(u) = parsed.get(url) {
            return Ok(u.clone());
        }
        let u = url::Url::parse(url)?;
        if parsed.len() >= PARSED_URLS {
            parsed.clear();
        }
        parsed.insert(url.into(), u.clone());
        Ok(u)
    })
}

impl HttpSender {
    pub fn new(cfg: SenderConfig) -> Result<HttpSender, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(ssrf::resolver(cfg.targets))
            .connect_timeout(cfg.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(cfg.max_idle_per_host)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpSender { client, cfg })
    }

    /// POSTs `body` to `url`, signed by `signer`, with retry headers when
    /// `retry` is `Some((number, reason))`.
    pub async fn post(
        &self,
        url: &str,
        body: Bytes,
        signer: &Signer<'_>,
        retry: Option<(u32, &str)>,
    ) -> SendResult {
        let start = Instant::now();
        let fail = |reason, detail, status| failed(start, reason, detail, status);
        let exchange = self.exchange(url, body, signer, retry, start);
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => fail(
                FailureReason::HttpTimeout,
                format!("no response within {}", humanize(self.cfg.timeout)),
                None,
            ),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        body: Bytes,
        signer: &Signer<'_>,
        retry: Option<(u32, &str)>,
        start: Instant,
    ) -> SendResult {
        let fail = |reason, detail, status| failed(start, reason, detail, status);
        let mut target = match parse_url(url) {
            Ok(u) => u,
            Err(e) => {
                return fail(
                    FailureReason::ConnectionFailed,
                    format!("invalid URL {url}: {e}"),
                    None,
                )
            }
        };
        let ts = now_secs();
        let signature = signer.headers(ts, &body);
        let mut redirects = 0;
        loop {
            if let Err(why) = ssrf::check_url(&target, self.cfg.targets) {
                let url = tidings_core::redact::url(target.as_str());
                tracing::warn!(url = %url, reason = %why, "delivery target refused");
                return fail(FailureReason::ConnectionFailed, why, None);
            }
            let mut req = self
                .client
                .post(target.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(
                    USER_AGENT,
                    concat!(
                        "Tidings/",
                        env!("CARGO_PKG_VERSION"),
                        " (+Slack-compatible Events API)"
                    ),
                )
                .body(body.clone());
            for (name, value) in &signature {
                req = req.header(*name, value.as_str());
            }
            if let Some((n, reason)) = retry {
                req = req
                    .header("X-Slack-Retry-Num", n.to_string())
                    .header("X-Slack-Retry-Reason", reason);
            }
            let res = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let (reason, detail) = classify(&e);
                    return fail(reason, detail, None);
                }
            };
            let status = res.status();
            if status == reqwest::StatusCode::MOVED_PERMANENTLY
                || status == reqwest::StatusCode::FOUND
            {
                redirects += 1;
                if redirects > self.cfg.max_redirects {
                    return fail(
                        FailureReason::TooManyRedirects,
                        format!("more than {} redirects", self.cfg.max_redirects),
                        Some(status.as_u16()),
                    );
                }
                let next = res
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| target.join(l).ok());
                match next {
                    Some(n) => {
                        target = n;
                        continue;
                    }
                    None => {
                        return fail(
                            FailureReason::HttpError,
                            format!("HTTP {status} without a usable Location"),
                            Some(status.as_u16()),
                        )
                    }
                }
            }
            let retry_after = if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            {
                res.headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .map(|v| retry_after(v.to_str().unwrap_or(""), self.cfg.max_retry_after))
            } else {
                None
            };
            let no_retry = res
                .headers()
                .get("x-slack-no-retry")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "1");
            let body = read_some(res).await;
            let ok = status.is_success();
            return SendResult {
                status_code: Some(status.as_u16()),
                failure: (!ok).then_some(FailureReason::HttpError),
                no_retry: !ok && no_retry,
                latency: start.elapsed(),
                detail: (!ok).then(|| format!("HTTP {}", status.as_u16())),
                body,
                retry_after,
                gone: status == reqwest::StatusCode::GONE,
            };
        }
    }

    /// Sends a signed `url_verification` and checks that the answer echoes the challenge
    /// in one of the three accepted forms (SLACK-WIRE.md §1.2).
    pub async fn verify(
        &self,
        url: &str,
        verification_token: &str,
        signer: &Signer<'_>,
    ) -> Result<(), String> {
        let challenge = tidings_core::token::random_secret();
        let body = Bytes::from(tidings_core::envelope::url_verification(
            verification_token,
            &challenge,
        ));
        let r = self.post(url, body, signer, None).await;
        if let Some(reason) = r.failure {
            let mut msg = format!("{}: {}", reason.as_str(), r.detail.unwrap_or_default());
            if !r.body.is_empty() {
                msg.push_str(&format!("; body: {}", excerpt(&r.body)));
            }
            return Err(msg);
        }
        if echoes(&r.body, &challenge) {
            Ok(())
        } else {
            Err(format!(
                "HTTP {} but the answer did not echo the challenge (as text, challenge=…, or {{\"challenge\": …}}); body: {}",
                r.status_code.unwrap_or(0),
                excerpt(&r.body)
            ))
        }
    }
}

/// A failed attempt that started at `start`.
fn failed(
    start: Instant,
    reason: FailureReason,
    detail: String,
    status: Option<u16>,
) -> SendResult {
    SendResult {
        status_code: status,
        failure: Some(reason),
        no_retry: false,
        latency: start.elapsed(),
        detail: Some(detail),
        body: Bytes::new(),
        retry_after: None,
        gone: false,
    }
}

/// A `Retry-After` value as a bounded delay; a value not taken as it is (capped, in the
/// past, unreadable) is logged and counted with the decision.
fn retry_after(value: &str, cap: Duration) -> Duration {
    use tidings_core::backpressure::{delay, Decision};
    let (d, how) = delay(value, now_secs(), cap);
    metrics::counter!("tidings_delivery_retry_after_total", "decision" => how.as_str())
        .increment(1);
    if !matches!(how, Decision::Seconds | Decision::Date) {
        let value: String = value.chars().take(64).collect();
        tracing::info!(value = %value, decision = how.as_str(), delay_ms = d.as_millis() as u64,
            "Retry-After not taken as sent: bounded");
    }
    d
}

/// Whether a verification answer carries the challenge: bare text, a form, or JSON.
pub fn echoes(body: &[u8], challenge: &str) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text == challenge {
        return true;
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if v.get("challenge").and_then(|c| c.as_str()).map(str::trim) == Some(challenge) {
            return true;
        }
    }
    form_urlencoded::parse(text.as_bytes()).any(|(k, v)| k == "challenge" && v.trim() == challenge)
}

fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if s.is_empty() {
        "(empty)".into()
    } else {
        s
    }
}

async fn read_some(mut res: reqwest::Response) -> Bytes {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = BODY_KEEP.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= BODY_KEEP {
            break;
        }
    }
    Bytes::from(out)
}

/// Maps a transport error to a retry reason and an explanation.
fn classify(e: &reqwest::Error) -> (FailureReason, String) {
    let mut chain = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_lowercase();
    let reason = if e.is_timeout() {
        FailureReason::HttpTimeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        FailureReason::SslError
    } else if e.is_connect() || lower.contains("dns") || lower.contains("ssrf") {
        FailureReason::ConnectionFailed
    } else {
        FailureReason::UnknownError
    };
    if lower.contains("ssrf") {
        let reason = tidings_core::redact::text(&chain);
        tracing::warn!(reason = %reason, "delivery target refused");
    }
    (reason, chain)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_accepted_as_text_form_or_json() {
        assert!(echoes(b"abc", "abc"));
        assert!(echoes(b" abc\n", "abc"));
        assert!(echoes(b"challenge=abc", "abc"));
        assert!(echoes(br#"{"challenge":"abc"}"#, "abc"));
        assert!(!echoes(b"", "abc"));
        assert!(!echoes(br#"{"challenge":"abd"}"#, "abc"));
        assert!(!echoes(b"ok", "abc"));
    }

    #[test]
    fn remembered_urls_parse_as_fresh_ones_and_bad_ones_stay_errors() {
        for _ in 0..2 {
            let u = parse_url("https://Example.COM:8443/a/../events?x=1").expect("valid");
            assert_eq!(u.as_str(), "https://example.com:8443/events?x=1");
            assert!(parse_url("http://").is_err());
        }
        for n in 0..PARSED_URLS + 10 {
            let url = format!("http://127.0.0.1/{n}");
            assert_eq!(parse_url(&url).expect("valid").as_str(), url);
        }
    }
}
