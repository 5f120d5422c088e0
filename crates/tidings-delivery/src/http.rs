//! The HTTP sender: one signed POST of exact bytes to a Request URL, Slack's way
//! (SLACK-WIRE.md §1): a 2xx within the timeout (the whole exchange, redirects included)
//! is success; 301/302 are followed up to `max_redirects` re-sending the same POST and body
//! (a general-purpose client would turn it into a GET); failures are classified into the
//! six retry reasons; `X-Slack-No-Retry: 1` on a non-2xx is reported, and so are a
//! `429`/`503`'s `Retry-After` (read into a bounded delay, [`tidings_core::backpressure`])
//! and a `410 Gone`. Connections are
//! pooled per host with keep-alive, and every connection passes the SSRF policy.
//!
//! It drives hyper's pooled client (`hyper_util`'s) directly, with a request built from
//! parts parsed once per URL: a general-purpose client (reqwest, used here before)
//! re-parsed the URL, merged default headers, boxed its futures and wrapped a retry layer
//! around every request, about a tenth of the server's CPU per delivery under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    USER_AGENT,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
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

    /// Adds the signature headers for `body` sent at `ts`. A value that is not a valid
    /// header (an id with a control character) is an error, not a panic.
    fn sign_into(&self, ts: i64, body: &[u8], headers: &mut HeaderMap) -> Result<(), String> {
        match self {
            Signer::SlackV0(secret) => {
                put(headers, X_SLACK_REQUEST_TIMESTAMP, ts.to_string())?;
                put(headers, X_SLACK_SIGNATURE, signing::sign(secret, ts, body))
            }
            Signer::Standard { id, keys } => {
                let h = standard::sign(keys, id, ts, body);
                put(headers, WEBHOOK_ID, h.id)?;
                put(headers, WEBHOOK_TIMESTAMP, h.timestamp)?;
                put(headers, WEBHOOK_SIGNATURE, h.signature)
            }
        }
    }
}

/// Sets header `name` to `value`, refusing a value that is not a valid header.
fn put(headers: &mut HeaderMap, name: &'static str, value: String) -> Result<(), String> {
    let v = HeaderValue::try_from(value).map_err(|e| format!("cannot send header {name}: {e}"))?;
    headers.insert(HeaderName::from_static(name), v);
    Ok(())
}

/// Every header of one attempt but `Authorization` (which belongs to the URL, and a
/// redirect changes it): content type, user agent, signature, and the retry headers when
/// `retry` is `Some((number, reason))`. Built once per attempt, whatever its redirects.
fn attempt_headers(
    signer: &Signer<'_>,
    body: &[u8],
    retry: Option<(u32, &str)>,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    signer.sign_into(now_secs(), body, &mut headers)?;
    if let Some((n, reason)) = retry {
        headers.insert(X_SLACK_RETRY_NUM, HeaderValue::from(n));
        put(&mut headers, X_SLACK_RETRY_REASON, reason.to_string())?;
    }
    Ok(headers)
}

const X_SLACK_REQUEST_TIMESTAMP: &str = "x-slack-request-timestamp";
const X_SLACK_SIGNATURE: &str = "x-slack-signature";
const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";
const X_SLACK_RETRY_NUM: HeaderName = HeaderName::from_static("x-slack-retry-num");
const X_SLACK_RETRY_REASON: &str = "x-slack-retry-reason";
const USER_AGENT_VALUE: &str = concat!(
    "Tidings/",
    env!("CARGO_PKG_VERSION"),
    " (+Slack-compatible Events API)"
);

type Connector = hyper_rustls::HttpsConnector<HttpConnector<ssrf::GuardedResolver>>;

#[derive(Clone)]
pub struct HttpSender {
    client: Client<Connector, Full<Bytes>>,
    cfg: SenderConfig,
}

/// How long an unused connection stays in the pool. Under Node's `keepAliveTimeout` (5 s,
/// the default of the servers Bolt apps run on), so a request is never sent on a
/// connection the app's server is closing; and a connection the pool opened for a request
/// that got another one first, and so never carried one, is closed within it too, instead
/// of holding up the app server's graceful close (Node waits for such a socket until its
/// own header timeout: 3 minutes in the `@slack/bolt` browser test).
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// How much of a response body is kept.
const BODY_KEEP: usize = 4096;

/// Request URLs parsed per thread, at most this many before the cache starts over.
const PARSED_URLS: usize = 4096;

/// A Request URL as the sender uses it: the parsed URL (for the SSRF check and
/// redirects), the request target hyper sends to, and the `Authorization` a user and
/// password in the URL stand for.
#[derive(Clone)]
struct Target {
    url: url::Url,
    uri: Uri,
    basic_auth: Option<HeaderValue>,
}

impl Target {
    /// Credentials in the URL (`https://user:pass@host/`) become a Basic `Authorization`
    /// header, marked sensitive, and leave the request target, so no connection pool
    /// key or log line carries them.
    fn parse(url: &str) -> Result<Target, String> {
        let url = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut bare = url.clone();
        let mut basic_auth = None;
        if !url.username().is_empty() || url.password().is_some() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or(""))
            );
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut value = HeaderValue::try_from(format!("Basic {token}"))
                .map_err(|e| format!("cannot send the URL's credentials: {e}"))?;
            value.set_sensitive(true);
            basic_auth = Some(value);
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
        }
        let uri = bare.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
        Ok(Target {
            url,
            uri,
            basic_auth,
        })
    }
}

/// Parses a Request URL, remembering it on this thread: every delivery to an app posts to
/// the same URL, and parsing it each time (host checks, IDNA) was about 1.5 % of the
/// server's samples under load. A clone is one allocation and a few reference counts.
fn parse_url(url: &str) -> Result<Target, String> {
    thread_local! {
        static PARSED: std::cell::RefCell<std::collections::HashMap<Box<str>, Target>> =
            std::cell::RefCell::default();
    }
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if let Some(t) = parsed.get(url) {
            return Ok(t.clone());
        }
        let t = Target::parse(url)?;
        if parsed.len() >= PARSED_URLS {
            parsed.clear();
        }
        parsed.insert(url.into(), t.clone());
        Ok(t)
    })
}

/// TLS as reqwest's `rustls-tls` set it up: ring, the webpki roots, HTTP/1.1.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl HttpSender {
    pub fn new(cfg: SenderConfig) -> Result<HttpSender, String> {
        let mut http = HttpConnector::new_with_resolver(ssrf::resolver(cfg.targets));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(cfg.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(https);
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
            Ok(t) => t,
            Err(e) => {
                return fail(
                    FailureReason::ConnectionFailed,
                    format!("invalid URL {url}: {e}"),
                    None,
                )
            }
        };
        let headers = match attempt_headers(signer, &body, retry) {
            Ok(h) => h,
            Err(e) => return fail(FailureReason::UnknownError, e, None),
        };
        let mut redirects = 0;
        loop {
            if let Err(why) = ssrf::check_url(&target.url, self.cfg.targets) {
                let url = tidings_core::redact::url(target.url.as_str());
                tracing::warn!(url = %url, reason = %why, "delivery target refused");
                return fail(FailureReason::ConnectionFailed, why, None);
            }
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = target.uri.clone();
            *req.headers_mut() = headers.clone();
            if let Some(auth) = &target.basic_auth {
                req.headers_mut().insert(AUTHORIZATION, auth.clone());
            }
            let res = match self.client.request(req).await {
                Ok(r) => r,
                Err(e) => {
                    let (reason, detail) = classify(&e);
                    return fail(reason, detail, None);
                }
            };
            let status = res.status();
            if status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::FOUND {
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
                    .and_then(|l| target.url.join(l).ok())
                    .and_then(|u| Target::parse(u.as_str()).ok());
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
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
            {
                res.headers()
                    .get(RETRY_AFTER)
                    .map(|v| retry_after(v.to_str().unwrap_or(""), self.cfg.max_retry_after))
            } else {
                None
            };
            let no_retry = res
                .headers()
                .get("x-slack-no-retry")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "1");
            let body = read_some(res.into_body()).await;
            let ok = status.is_success();
            return SendResult {
                status_code: Some(status.as_u16()),
                failure: (!ok).then_some(FailureReason::HttpError),
                no_retry: !ok && no_retry,
                latency: start.elapsed(),
                detail: (!ok).then(|| format!("HTTP {}", status.as_u16())),
                body,
                retry_after,
                gone: status == StatusCode::GONE,
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

/// The start of a response body (at most [`BODY_KEEP`] bytes); the rest is not read.
async fn read_some(mut body: hyper::body::Incoming) -> Bytes {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let room = BODY_KEEP.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= BODY_KEEP {
            break;
        }
    }
    Bytes::from(out)
}

/// Maps a transport error to a retry reason and an explanation.
fn classify(e: &hyper_util::client::legacy::Error) -> (FailureReason, String) {
    let mut chain = e.to_string();
    let mut tls = false;
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        tls |= is_tls(s);
        src = s.source();
    }
    let lower = chain.to_lowercase();
    let reason = if lower.contains("timed out") || lower.contains("timeout") {
        FailureReason::HttpTimeout
    } else if tls
        || lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
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

/// Whether `e` is a TLS failure: a rustls error, itself or inside I/O errors (the TLS
/// stream and the connector each wrap it in one, and an I/O error's `source` skips the
/// error it carries).
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<rustls::Error>() {
            return true;
        }
        cur = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
    }
    false
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

    fn sender() -> HttpSender {
        HttpSender::new(SenderConfig {
            timeout: Duration::from_secs(2),
            max_redirects: 2,
            targets: ssrf::TargetPolicy {
                allow_loopback: true,
                allow_private: false,
            },
            max_idle_per_host: 4,
            max_retry_after: Duration::from_secs(60),
        })
        .expect("client")
    }

    /// A listener on 127.0.0.1 that answers every connection with `answer` and closes it.
    async fn answering(answer: &'static [u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            }
        });
        port
    }

    /// A listener on 127.0.0.1 for one keep-alive exchange: it answers the first request
    /// with an empty 200, then reports that request's head and how long the client kept
    /// the connection open after the answer.
    async fn one_exchange() -> (u16, tokio::sync::oneshot::Receiver<(String, Duration)>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.expect("read");
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            // The next read ends when the client closes the connection.
            let answered = std::time::Instant::now();
            let _ = s.read(&mut buf).await;
            let _ = tx.send((head, answered.elapsed()));
        });
        (port, rx)
    }

    #[tokio::test]
    async fn https_to_a_server_that_does_not_speak_tls_fails_as_ssl_error() {
        let port = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let url = format!("https://127.0.0.1:{port}/events");
        let r = sender()
            .post(&url, Bytes::from_static(b"{}"), &Signer::SlackV0("s"), None)
            .await;
        assert_eq!(r.failure, Some(FailureReason::SslError), "{:?}", r.detail);
    }

    #[tokio::test]
    async fn a_plain_answer_is_read_with_its_status_and_body_start() {
        let port = answering(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\nx-slack-no-retry: 1\r\ncontent-length: 4\r\n\r\nbusy",
        )
        .await;
        let url = format!("http://127.0.0.1:{port}/events");
        let r = sender()
            .post(
                &url,
                Bytes::from_static(b"{}"),
                &Signer::SlackV0("s"),
                Some((1, "http_timeout")),
            )
            .await;
        assert_eq!(r.status_code, Some(503));
        assert_eq!(r.failure, Some(FailureReason::HttpError));
        assert!(r.no_retry);
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(&r.body[..], b"busy");
    }

    #[tokio::test]
    async fn credentials_in_the_url_arrive_as_basic_auth_and_not_in_the_request_line() {
        let (port, exchange) = one_exchange().await;
        let url = format!("http://hooks:s3cret@127.0.0.1:{port}/events?x=1");
        let r = sender()
            .post(&url, Bytes::from_static(b"{}"), &Signer::SlackV0("s"), None)
            .await;
        assert!(r.ok(), "{:?}", r.detail);
        let (head, _) = exchange.await.expect("the request");
        assert!(head.starts_with("POST /events?x=1 HTTP/1.1\r\n"), "{head}");
        // base64("hooks:s3cret")
        assert!(
            head.contains("authorization: Basic aG9va3M6czNjcmV0\r\n"),
            "{head}"
        );
        assert!(!head.contains("s3cret"), "{head}");
    }

    #[tokio::test]
    async fn an_unused_connection_is_closed_after_the_pool_idle_time() {
        let (port, exchange) = one_exchange().await;
        let url = format!("http://127.0.0.1:{port}/events");
        // Kept until the end: dropping the client would close its pool at once.
        let client = sender();
        let r = client
            .post(&url, Bytes::from_static(b"{}"), &Signer::SlackV0("s"), None)
            .await;
        assert!(r.ok(), "{:?}", r.detail);
        let (_, idle) = tokio::time::timeout(POOL_IDLE * 4, exchange)
            .await
            .expect("the client closed the idle connection")
            .expect("the server saw it");
        assert!(
            idle >= POOL_IDLE,
            "closed after {idle:?}, before the idle time"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_as_connection_failed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let url = format!("http://127.0.0.1:{port}/events");
        let r = sender()
            .post(&url, Bytes::from_static(b"{}"), &Signer::SlackV0("s"), None)
            .await;
        assert_eq!(
            r.failure,
            Some(FailureReason::ConnectionFailed),
            "{:?}",
            r.detail
        );
    }

    #[test]
    fn remembered_urls_parse_as_fresh_ones_and_bad_ones_stay_errors() {
        for _ in 0..2 {
            let t = parse_url("https://Example.COM:8443/a/../events?x=1").expect("valid");
            assert_eq!(t.url.as_str(), "https://example.com:8443/events?x=1");
            assert_eq!(t.uri.to_string(), "https://example.com:8443/events?x=1");
            assert!(parse_url("http://").is_err());
        }
        let t = parse_url("https://ho%6Fks:p%40ss@example.com/x").expect("valid");
        assert_eq!(
            t.uri.to_string(),
            "https://example.com/x",
            "no credentials in the target"
        );
        let auth = t.basic_auth.expect("credentials become a header");
        assert!(auth.is_sensitive());
        // base64("hooks:p@ss")
        assert_eq!(auth.to_str().expect("ascii"), "Basic aG9va3M6cEBzcw==");
        for n in 0..PARSED_URLS + 10 {
            let url = format!("http://127.0.0.1/{n}");
            assert_eq!(parse_url(&url).expect("valid").url.as_str(), url);
        }
    }
}
