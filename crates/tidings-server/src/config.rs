//! Configuration: one TOML file, every key overridable by `TIDINGS_<SECTION>_<KEY>`, and
//! defaults that are Slack's. Precedence: defaults < file < environment < command-line flags.
//!
//! Each section is a typed struct with its defaults beside it; `tidings.example.toml` at
//! the repository root is tested against these structs so the two cannot drift.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub delivery: DeliveryConfig,
    pub rate_limit: RateLimitConfig,
    pub health: HealthConfig,
    pub events: EventsConfig,
    pub socket_mode: SocketModeConfig,
    pub rtm: RtmConfig,
    pub database: DatabaseConfig,
    pub retention: RetentionConfig,
    pub oauth: OAuthConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Base URL Tidings puts in URLs it hands out; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// The operator token; generated into `<data_dir>/admin-token` when unset.
    pub admin_token: Option<String>,
    /// Where the SQLite database and the generated admin token live.
    pub data_dir: PathBuf,
    /// PostgreSQL URL; SQLite in `data_dir` when unset.
    pub database_url: Option<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// A client must send a request's whole head (request line and headers) within this
    /// time of its first byte; slower ones are disconnected.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A request must be answered within this time (408 beyond). Longer than
    /// `delivery.timeout`: verifying a Request URL happens inside a request.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// A connection with no request in progress is closed after this time.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long is cut (408).
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Open client connections at most (WebSockets included); more are closed at once.
    pub max_connections: u32,
    /// Largest request head (request line and headers), in bytes (at least 8192).
    pub max_header_bytes: usize,
    /// Most of a body read before its token is known: `/ui/login`, and Web API calls
    /// whose token is not in `Authorization` (413 beyond). Never more than
    /// `max_body_bytes`.
    pub max_unauthenticated_body_bytes: usize,
    /// `POST /admin/v1/events/batch` calls handled at once; more wait for a place (their
    /// bodies unread) up to `batch_queue_timeout`, then get 503 with Retry-After.
    pub max_concurrent_batches: u32,
    /// How long a batch call waits for one of the `max_concurrent_batches` places.
    #[serde(with = "duration")]
    pub batch_queue_timeout: Duration,
    /// On SIGTERM/SIGINT: how long attempts under way (and requests being answered) get
    /// to finish before what is left is handed back for the next start or another node.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// The most of a body read before its token is known: `max_unauthenticated_body_bytes`,
    /// or `max_body_bytes` when that is smaller.
    pub fn unauthenticated_body_limit(&self) -> usize {
        self.max_unauthenticated_body_bytes.min(self.max_body_bytes)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:3000".into(),
            public_url: None,
            admin_token: None,
            data_dir: PathBuf::from("./tidings-data"),
            database_url: None,
            max_body_bytes: 1_048_576,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_header_bytes: 65_536,
            max_unauthenticated_body_bytes: 65_536,
            max_concurrent_batches: 4,
            batch_queue_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub max_redirects: u32,
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    pub max_in_flight_per_app: u32,
    /// Request URLs may reach every special-purpose address (private, link-local,
    /// loopback…): the SSRF policy is off. Implies `allow_loopback_targets`.
    /// `None` is false.
    pub allow_private_targets: Option<bool>,
    /// Request URLs may reach loopback (127.0.0.0/8, `::1`). `None` means "decided by
    /// --dev": false normally, true under `--dev`.
    pub allow_loopback_targets: Option<bool>,
    /// After `POST /apps/{app}/webhook_secret/rotate`, the previous Standard Webhooks
    /// secret and key still sign deliveries (beside the new ones) for this long.
    #[serde(with = "duration")]
    pub webhook_secret_grace: Duration,
    /// A `429`/`503` with `Retry-After` pauses the app's deliveries at most this long.
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
    /// Back-pressure answers in a row (no success between) that an app may give without
    /// their counting as failed attempts (retry schedule, health rule); past it they count.
    pub retry_after_budget: u32,
    /// Bulk replay jobs re-queue at most this many deliveries per second (per node).
    pub redelivery_rate: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Duration::from_secs(3),
            max_redirects: 2,
            retry_schedule: vec![
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(300),
            ],
            max_in_flight_per_app: 64,
            allow_private_targets: None,
            allow_loopback_targets: None,
            webhook_secret_grace: Duration::from_secs(24 * 3600),
            max_retry_after: Duration::from_secs(600),
            retry_after_budget: 20,
            redelivery_rate: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub max_deliveries: u32,
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_deliveries: 30_000,
            window: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    #[serde(with = "duration")]
    pub window: Duration,
    pub min_success_ratio: f64,
    pub min_events: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            window: Duration::from_secs(3600),
            min_success_ratio: 0.05,
            min_events: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    #[serde(with = "duration")]
    pub max_event_age: Duration,
    #[serde(with = "duration")]
    pub max_future_skew: Duration,
    /// Operator-defined event types, added to the built-in catalog.
    pub custom: Vec<tidings_core::catalog::EventType>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_event_age: Duration::from_secs(72 * 3600),
            max_future_skew: Duration::from_secs(300),
            custom: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketModeConfig {
    #[serde(with = "duration")]
    pub ack_timeout: Duration,
    pub max_connections_per_app: u32,
    #[serde(with = "duration")]
    pub ticket_ttl: Duration,
    #[serde(with = "duration")]
    pub connection_lifetime: Duration,
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    #[serde(with = "duration")]
    pub hold_time: Duration,
}

impl Default for SocketModeConfig {
    fn default() -> Self {
        SocketModeConfig {
            ack_timeout: Duration::from_secs(3),
            max_connections_per_app: 10,
            ticket_ttl: Duration::from_secs(60),
            connection_lifetime: Duration::from_secs(3600),
            ping_interval: Duration::from_secs(10),
            hold_time: Duration::from_secs(2 * 3600),
        }
    }
}

/// The RTM API (`rtm.connect`, `rtm.start` and their WebSocket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmConfig {
    /// How long a URL from `rtm.connect` can be opened (it is single-use).
    #[serde(with = "duration")]
    pub url_ttl: Duration,
    /// Open RTM connections per token on this node at most; more get an `error` frame.
    pub max_connections_per_token: u32,
    /// A connection gets `goodbye` and is closed after this long.
    #[serde(with = "duration")]
    pub connection_lifetime: Duration,
    /// WebSocket pings to catch dead peers, this often.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// A write the client does not take within this time (it is not reading) drops it.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
}

impl Default for RtmConfig {
    fn default() -> Self {
        RtmConfig {
            url_ttl: Duration::from_secs(30),
            max_connections_per_token: 16,
            connection_lifetime: Duration::from_secs(8 * 3600),
            ping_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// PostgreSQL only (`server.database_url` set): how this node uses the shared database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connections this node opens at most: one for the writer, one for notifications,
    /// the rest for reads and delivery claims.
    pub max_connections: u32,
    /// How long a node holds the deliveries it claimed; a node that dies loses them after
    /// this and another node sends them. Longer than `delivery.timeout`.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How long opening a connection to PostgreSQL may take (unless `database_url` sets
    /// `connect_timeout`).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// How long a statement may run on PostgreSQL, and how long a call waits for the
    /// database to answer: past it, publish and `/readyz` answer 503.
    #[serde(with = "duration")]
    pub statement_timeout: Duration,
    /// CA certificates (PEM) trusted for PostgreSQL's certificate under
    /// `sslmode=verify-ca|verify-full`, when `database_url` names no `sslrootcert`;
    /// the system's roots when neither is set.
    pub ca_file: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 10,
            lease: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(1),
            ca_file: None,
        }
    }
}

/// How long what Tidings stores is kept (see `crate::retention`). An age of `"0"` keeps
/// that kind of row forever; `enabled = false` keeps everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub enabled: bool,
    /// Delivered deliveries (and their attempts), counted from delivery.
    #[serde(with = "age")]
    pub delivered: Duration,
    /// Failed and dropped deliveries (and their attempts), counted from when they ended.
    #[serde(with = "age")]
    pub failed: Duration,
    /// Events, counted from publication; an event goes only once none of its deliveries
    /// is left.
    #[serde(with = "age")]
    pub events: Duration,
    /// Minute insight rollups; hour and day rollups are kept.
    #[serde(with = "age")]
    pub minute_rollups: Duration,
    /// How often the pruner runs.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Rows one transaction deletes at most (per table).
    pub batch: u32,
    /// PostgreSQL: after a run that deleted rows, `VACUUM` the tables pruned, at most
    /// this often (`"0"` never: autovacuum's job alone). SQLite reuses freed pages itself.
    #[serde(with = "age")]
    pub vacuum_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        RetentionConfig {
            enabled: true,
            delivered: Duration::from_secs(7 * DAY),
            failed: Duration::from_secs(30 * DAY),
            events: Duration::from_secs(7 * DAY),
            minute_rollups: Duration::from_secs(2 * DAY),
            interval: Duration::from_secs(60),
            batch: 1000,
            vacuum_interval: Duration::from_secs(600),
        }
    }
}

/// The OAuth v2 install flow (`/oauth/v2/*`, `oauth.v2.access`; see `crate::oauth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// How long an access token lasts for apps with token rotation (Slack: 12 hours).
    #[serde(with = "duration")]
    pub access_token_ttl: Duration,
    /// How long the code the consent page hands out may be exchanged (Slack: 10 minutes).
    #[serde(with = "duration")]
    pub code_ttl: Duration,
    /// How long a configuration token (App Manifest API) lasts (Slack: 12 hours).
    #[serde(with = "duration")]
    pub config_token_ttl: Duration,
    /// Where the platform signs its users in: an authorize page without a session sends
    /// the browser to `login_url?return_to=<the authorize URL>`. Unset: only `--dev`'s
    /// user picker can sign someone in.
    pub login_url: Option<String>,
    /// The HS256 secret the platform signs its login assertions with (at least 32 bytes).
    pub login_secret: Option<String>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            access_token_ttl: Duration::from_secs(12 * 3600),
            code_ttl: Duration::from_secs(600),
            config_token_ttl: Duration::from_secs(12 * 3600),
            login_url: None,
            login_secret: None,
        }
    }
}

const SECTIONS: &[&str] = &[
    "oauth",
    "retention",
    "database",
    "server",
    "delivery",
    "rate_limit",
    "health",
    "events",
    "socket_mode",
    "rtm",
];

impl Config {
    /// Loads the file (if any), then applies `TIDINGS_*` overrides from `env`.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
                Config::parse(Some(&text), &format!("config {}", path.display()), env)
            }
            None => Config::parse(None, "configuration", env),
        }
    }

    /// Parses config file text (if any; `what` names it in errors), then applies
    /// `TIDINGS_*` overrides from `env` and validates the result.
    pub fn parse(
        text: Option<&str>,
        what: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let mut doc: toml::Table = match text {
            Some(text) => text
                .parse::<toml::Table>()
                .map_err(|e| format!("{what} is not valid TOML: {e}"))?,
            None => toml::Table::new(),
        };
        apply_env(&mut doc, env)?;
        let cfg: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| format!("{what}: {}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        s.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "server.listen {:?} is not an address like 127.0.0.1:3000",
                s.listen
            )
        })?;
        if s.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        self.validate_edge()?;
        if let Some(t) = &s.admin_token {
            if t.len() < 16 {
                return Err("server.admin_token must be at least 16 characters".into());
            }
        }
        if let Some(u) = &s.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "server.public_url {u:?} must start with http:// or https://"
                ));
            }
        }
        if self.delivery.redelivery_rate == 0 {
            return Err("delivery.redelivery_rate must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.health.min_success_ratio) {
            return Err("health.min_success_ratio must be between 0 and 1".into());
        }
        if self.delivery.max_in_flight_per_app == 0 {
            return Err("delivery.max_in_flight_per_app must be at least 1".into());
        }
        if let Some(u) = &s.database_url {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(
                    "server.database_url must start with postgres:// or postgresql://".into(),
                );
            }
            // [database] only matters on PostgreSQL; SQLite users never see these errors.
            if self.database.max_connections < 3 {
                return Err(
                    "database.max_connections must be at least 3 (writer, notifications, reads)"
                        .into(),
                );
            }
            if self.database.connect_timeout.is_zero() || self.database.statement_timeout.is_zero()
            {
                return Err(
                    "database.connect_timeout and database.statement_timeout must be longer than 0s"
                        .into(),
                );
            }
            if self.database.lease <= self.delivery.timeout {
                return Err(format!(
                    "database.lease ({}) must be longer than delivery.timeout ({})",
                    duration::format(self.database.lease),
                    duration::format(self.delivery.timeout)
                ));
            }
        }
        if self.socket_mode.max_connections_per_app == 0 {
            return Err("socket_mode.max_connections_per_app must be at least 1".into());
        }
        let rtm = &self.rtm;
        if rtm.max_connections_per_token == 0 {
            return Err("rtm.max_connections_per_token must be at least 1".into());
        }
        if rtm.url_ttl.is_zero()
            || rtm.connection_lifetime.is_zero()
            || rtm.write_timeout.is_zero()
            || rtm.ping_interval < Duration::from_millis(100)
        {
            return Err("rtm.url_ttl, rtm.connection_lifetime and rtm.write_timeout must be longer than 0s, rtm.ping_interval at least 100ms".into());
        }
        let r = &self.retention;
        if !(1..=100_000).contains(&r.batch) {
            return Err("retention.batch must be between 1 and 100000".into());
        }
        if r.interval < Duration::from_millis(100) {
            return Err("retention.interval must be at least 100ms".into());
        }
        if !r.vacuum_interval.is_zero() && r.vacuum_interval < Duration::from_secs(1) {
            return Err("retention.vacuum_interval must be 0 (never) or at least 1s".into());
        }
        self.validate_oauth()
    }

    /// The `[oauth]` section.
    fn validate_oauth(&self) -> Result<(), String> {
        let o = &self.oauth;
        if o.access_token_ttl < Duration::from_secs(1)
            || o.code_ttl < Duration::from_secs(1)
            || o.config_token_ttl < Duration::from_secs(1)
        {
            return Err(
                "oauth.access_token_ttl, oauth.code_ttl and oauth.config_token_ttl must be at least 1s"
                    .into(),
            );
        }
        if let Some(u) = &o.login_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "oauth.login_url {u:?} must start with http:// or https://"
                ));
            }
            if o.login_secret.is_none() {
                return Err("oauth.login_url needs oauth.login_secret".into());
            }
        }
        if let Some(k) = &o.login_secret {
            if k.len() < 32 {
                return Err("oauth.login_secret must be at least 32 characters".into());
            }
        }
        Ok(())
    }

    /// The `[server]` limits that protect the listener (see `crate::edge`).
    fn validate_edge(&self) -> Result<(), String> {
        let s = &self.server;
        for (name, d) in [
            ("header_read_timeout", s.header_read_timeout),
            ("request_timeout", s.request_timeout),
            ("idle_timeout", s.idle_timeout),
            ("body_read_timeout", s.body_read_timeout),
        ] {
            if d < Duration::from_millis(100) {
                return Err(format!(
                    "server.{name} ({}) must be at least 100ms",
                    duration::format(d)
                ));
            }
        }
        if s.request_timeout <= self.delivery.timeout {
            return Err(format!(
                "server.request_timeout ({}) must be longer than delivery.timeout ({}): \
                 verifying a Request URL happens inside a request",
                duration::format(s.request_timeout),
                duration::format(self.delivery.timeout)
            ));
        }
        if s.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        if s.max_header_bytes < 8192 {
            return Err("server.max_header_bytes must be at least 8192".into());
        }
        if s.max_unauthenticated_body_bytes < 1024 {
            return Err("server.max_unauthenticated_body_bytes must be at least 1024".into());
        }
        if s.max_concurrent_batches == 0 {
            return Err("server.max_concurrent_batches must be at least 1".into());
        }
        if s.batch_queue_timeout > s.request_timeout {
            return Err(format!(
                "server.batch_queue_timeout ({}) must not be longer than server.request_timeout ({})",
                duration::format(s.batch_queue_timeout),
                duration::format(s.request_timeout)
            ));
        }
        Ok(())
    }

    /// `public_url` or `http://<listen>`, without a trailing slash.
    pub fn public_url(&self, bound: Option<std::net::SocketAddr>) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!(
                "http://{}",
                bound
                    .map(|a| a.to_string())
                    .unwrap_or(self.server.listen.clone())
            ),
        }
    }
}

/// Applies `TIDINGS_<SECTION>_<KEY>=value` (and the `TIDINGS_ADMIN_TOKEN` alias) onto the
/// document. Values are read as TOML when they parse (numbers, booleans, arrays), else as
/// strings. A known section with an unknown key is an error, so typos do not pass silently.
fn apply_env(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("TIDINGS_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let (section, key) = if rest == "admin_token" {
            ("server", "admin_token".to_string())
        } else {
            let Some(section) = SECTIONS
                .iter()
                .filter(|s| rest.starts_with(&format!("{s}_")))
                .max_by_key(|s| s.len())
            else {
                continue; // TIDINGS_URL and friends belong to the CLI.
            };
            (*section, rest[section.len() + 1..].to_string())
        };
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw.clone()));
        let table = doc
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("config section [{section}] is not a table"))?;
        table.insert(key, value);
        tracing::debug!(env = %name, "config override from environment");
    }
    Ok(())
}

/// Serde for durations written as "3s", "1m", "72h".
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// The longest duration a setting takes: 100 years (of 365.25 days, as "100y" reads).
    /// The server adds durations to now in i64 milliseconds and seconds; a longer one would
    /// overflow there (a retry due in the past, every event "too old").
    pub const MAX: Duration = Duration::from_secs(3_155_760_000);

    pub fn parse(s: &str) -> Result<Duration, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("{s:?} is not a duration like \"3s\", \"1m\" or \"72h\": {e}"))?;
        if d > MAX {
            return Err(format!("{s:?} is longer than 100 years"));
        }
        Ok(d)
    }

    /// The largest unit that states the duration exactly ("90s", "5m", "72h").
    pub fn format(d: Duration) -> String {
        tidings_core::policy::format_duration(d)
    }
}

/// Serde for retention ages: a duration, or `0` (also unquoted) for "kept forever".
pub mod age {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::duration::serialize(d, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Age {
            Text(String),
            Number(i64),
        }
        match Age::deserialize(d)? {
            Age::Text(s) => super::duration::parse(&s).map_err(serde::de::Error::custom),
            Age::Number(0) => Ok(Duration::ZERO),
            Age::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} is not an age: write a duration like \"7d\", or 0 to keep forever"
            ))),
        }
    }
}

/// Serde for lists of durations.
pub mod duration_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| super::duration::format(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| super::duration::parse(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_slacks() {
        let c = Config::load(None, vec![]).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:3000");
        assert_eq!(c.delivery.timeout, Duration::from_secs(3));
        assert_eq!(c.rate_limit.max_deliveries, 30_000);
        assert_eq!(c.health.min_events, 1000);
        assert_eq!(c.events.max_event_age, Duration::from_secs(72 * 3600));
        assert_eq!(c.socket_mode.max_connections_per_app, 10);
    }

    #[test]
    fn the_example_config_states_every_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tidings.example.toml");
        let from_file = Config::load(Some(std::path::Path::new(path)), vec![]).unwrap();
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn env_overrides_reach_nested_sections() {
        let c = Config::load(
            None,
            env(&[
                ("TIDINGS_RATE_LIMIT_MAX_DELIVERIES", "100"),
                ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["0s","2s"]"#),
                ("TIDINGS_SOCKET_MODE_ACK_TIMEOUT", "500ms"),
                ("TIDINGS_SERVER_LISTEN", "127.0.0.1:0"),
                ("TIDINGS_ADMIN_TOKEN", "tdk_admin_0123456789abcdef"),
                ("TIDINGS_URL", "http://ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rate_limit.max_deliveries, 100);
        assert_eq!(
            c.delivery.retry_schedule,
            vec![Duration::ZERO, Duration::from_secs(2)]
        );
        assert_eq!(c.socket_mode.ack_timeout, Duration::from_millis(500));
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(
            c.server.admin_token.as_deref(),
            Some("tdk_admin_0123456789abcdef")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::load(None, env(&[("TIDINGS_SERVER_LISTN", "x")])).unwrap_err();
        assert!(e.contains("listn"), "{e}");
        let e = Config::load(None, env(&[("TIDINGS_DELIVERY_TIMEOUT", "soon")])).unwrap_err();
        assert!(e.contains("soon"), "{e}");
        let e = Config::load(None, env(&[("TIDINGS_SERVER_LISTEN", "nowhere")])).unwrap_err();
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn edge_limits_are_checked() {
        let bad = |k: &str, v: &str| Config::load(None, env(&[(k, v)])).unwrap_err();
        assert!(bad("TIDINGS_SERVER_IDLE_TIMEOUT", "0s").contains("server.idle_timeout"));
        assert!(bad("TIDINGS_SERVER_HEADER_READ_TIMEOUT", "soon").contains("soon"));
        let e = bad("TIDINGS_SERVER_REQUEST_TIMEOUT", "2s");
        assert!(e.contains("delivery.timeout"), "{e}");
        assert!(bad("TIDINGS_SERVER_MAX_CONNECTIONS", "0").contains("server.max_connections"));
        assert!(bad("TIDINGS_SERVER_MAX_CONNECTIONS", "-1").contains("-1"));
        assert!(bad("TIDINGS_SERVER_MAX_HEADER_BYTES", "100").contains("8192"));
        let e = bad("TIDINGS_SERVER_MAX_UNAUTHENTICATED_BODY_BYTES", "100");
        assert!(e.contains("server.max_unauthenticated_body_bytes"), "{e}");
        let e = bad("TIDINGS_SERVER_MAX_CONCURRENT_BATCHES", "0");
        assert!(e.contains("server.max_concurrent_batches"), "{e}");
        let c = Config::load(None, env(&[("TIDINGS_SERVER_IDLE_TIMEOUT", "500ms")])).unwrap();
        assert_eq!(c.server.idle_timeout, Duration::from_millis(500));
    }

    #[test]
    fn database_settings_are_checked_only_with_a_database_url() {
        // SQLite: [database] is unused, so a long delivery timeout is fine.
        let slow = [
            ("TIDINGS_DELIVERY_TIMEOUT", "60s"),
            ("TIDINGS_SERVER_REQUEST_TIMEOUT", "2m"),
        ];
        assert!(Config::load(None, env(&slow)).is_ok());
        let pg = ("TIDINGS_SERVER_DATABASE_URL", "postgres://db/x");
        let e = Config::load(None, env(&[pg, slow[0], slow[1]])).unwrap_err();
        assert!(e.contains("database.lease (30s)"), "{e}");
        let e =
            Config::load(None, env(&[pg, ("TIDINGS_DATABASE_MAX_CONNECTIONS", "2")])).unwrap_err();
        assert!(e.contains("database.max_connections"), "{e}");
        let e = Config::load(
            None,
            env(&[("TIDINGS_SERVER_DATABASE_URL", "mysql://db/x")]),
        )
        .unwrap_err();
        assert!(e.contains("postgres://"), "{e}");
        assert!(Config::load(None, env(&[pg])).is_ok());
    }

    #[test]
    fn durations_longer_than_a_century_are_refused() {
        // 300 million years is 9.5e18 ms: past i64::MAX, it wrapped to a retry due in the past.
        for (key, value) in [
            ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["0s", "300000000y"]"#),
            ("TIDINGS_EVENTS_MAX_EVENT_AGE", "300000000000y"),
            ("TIDINGS_SOCKET_MODE_HOLD_TIME", "101y"),
        ] {
            let e = Config::load(None, env(&[(key, value)])).unwrap_err();
            assert!(e.contains("longer than 100 years"), "{key}: {e}");
        }
        let c = Config::load(None, env(&[("TIDINGS_EVENTS_MAX_EVENT_AGE", "100y")])).unwrap();
        assert_eq!(c.events.max_event_age, duration::MAX);
    }

    #[test]
    fn retention_ages_of_zero_keep_forever_and_bad_settings_are_named() {
        let c = Config::load(
            None,
            env(&[
                ("TIDINGS_RETENTION_DELIVERED", "0"),
                ("TIDINGS_RETENTION_FAILED", "2s"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retention.delivered, Duration::ZERO);
        assert_eq!(c.retention.failed, Duration::from_secs(2));
        assert_eq!(c.retention.events, Duration::from_secs(7 * 86_400));
        let e = Config::load(None, env(&[("TIDINGS_RETENTION_BATCH", "0")])).unwrap_err();
        assert!(e.contains("retention.batch"), "{e}");
        let e = Config::load(None, env(&[("TIDINGS_RETENTION_INTERVAL", "1ms")])).unwrap_err();
        assert!(e.contains("retention.interval"), "{e}");
        let e =
            Config::load(None, env(&[("TIDINGS_RETENTION_VACUUM_INTERVAL", "10ms")])).unwrap_err();
        assert!(e.contains("retention.vacuum_interval"), "{e}");
        let c = Config::load(None, env(&[("TIDINGS_RETENTION_VACUUM_INTERVAL", "0")])).unwrap();
        assert!(c.retention.vacuum_interval.is_zero());
        assert_eq!(
            Config::default().retention.vacuum_interval,
            Duration::from_secs(600)
        );
        let e = Config::load(None, env(&[("TIDINGS_RETENTION_KEEP", "1d")])).unwrap_err();
        assert!(e.contains("keep"), "{e}");
    }

    #[test]
    fn durations_format_in_their_largest_exact_unit() {
        assert_eq!(duration::format(Duration::from_secs(3)), "3s");
        assert_eq!(duration::format(Duration::from_secs(60)), "1m");
        assert_eq!(duration::format(Duration::from_secs(72 * 3600)), "72h");
        assert_eq!(duration::format(Duration::from_millis(1500)), "1500ms");
    }
}
