//! The records Tidings stores. They serialize to the shapes the operator API returns
//! (API.md), so a record read from the store is what a user sees.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enterprise {
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Team {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub enterprise_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    /// The user's team; `None` only for the bot user of an org-wide installation.
    pub team_id: Option<String>,
    /// Set for bot users of org-wide installations.
    pub enterprise_id: Option<String>,
    pub name: String,
    pub real_name: Option<String>,
    pub is_admin: bool,
    pub is_bot: bool,
    /// For bot users: the app they belong to.
    pub app_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConversationKind {
    Public,
    Private,
    Im,
    Mpim,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Public => "public",
            ConversationKind::Private => "private",
            ConversationKind::Im => "im",
            ConversationKind::Mpim => "mpim",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "private" => Some(Self::Private),
            "im" => Some(Self::Im),
            "mpim" => Some(Self::Mpim),
            _ => None,
        }
    }

    /// The `channel_type` Slack puts on message events in this kind of conversation.
    pub fn channel_type(self) -> &'static str {
        match self {
            ConversationKind::Public => "channel",
            ConversationKind::Private => "group",
            ConversationKind::Im => "im",
            ConversationKind::Mpim => "mpim",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub kind: ConversationKind,
    /// Member user ids, sorted.
    pub members: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventShape {
    /// `authorizations` + `event_context` (every app created after 2021-02-24 at Slack).
    #[default]
    Authorizations,
    /// Also `authed_users` / `authed_teams`, each truncated to one entry.
    Legacy,
}

impl EventShape {
    pub fn as_str(self) -> &'static str {
        match self {
            EventShape::Authorizations => "authorizations",
            EventShape::Legacy => "legacy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorizations" => Some(Self::Authorizations),
            "legacy" => Some(Self::Legacy),
            _ => None,
        }
    }
}

/// How deliveries over HTTP are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SigningScheme {
    /// Slack's `X-Slack-Signature` `v0` with the `signing_secret`.
    #[default]
    SlackV0,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1`
    /// with the `webhook_secret`, `v1a` ed25519 verified with the `webhook_public_key`).
    StandardWebhooks,
}

impl SigningScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningScheme::SlackV0 => "slack_v0",
            SigningScheme::StandardWebhooks => "standard_webhooks",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "slack_v0" => Some(Self::SlackV0),
            "standard_webhooks" => Some(Self::StandardWebhooks),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    pub id: String,
    pub name: String,
    pub request_url: Option<String>,
    pub request_url_verified: bool,
    pub socket_mode: bool,
    pub bot_events: Vec<String>,
    pub user_events: Vec<String>,
    pub event_shape: EventShape,
    pub signing_secret: String,
    pub verification_token: String,
    pub events_enabled: bool,
    pub disabled_reason: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub disabled_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
    /// Bumped by every write to the row: what compare-and-swap writes
    /// ([`AppUpdate::expect_version`]) and the operator API's `ETag` compare. Not part of
    /// the JSON body.
    #[serde(skip)]
    pub version: i64,
    /// When an operator last re-enabled events (Unix milliseconds): the health rule counts
    /// no attempt from before it. Not part of the JSON body.
    #[serde(skip)]
    pub enabled_at_ms: Option<Timestamp>,
    /// How HTTP deliveries are signed: `slack_v0` (default) or `standard_webhooks`.
    #[serde(default)]
    pub signing_scheme: SigningScheme,
    /// The Standard Webhooks secret (`whsec_…`): `v1` signatures.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// The ed25519 public key (`whpk_…`) that verifies `v1a` signatures.
    #[serde(default)]
    pub webhook_public_key: Option<String>,
    /// Until when (Unix seconds) the secret and key replaced by the last rotation still
    /// sign too (`delivery.webhook_secret_grace`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub webhook_previous_until: Option<Timestamp>,
    /// The ed25519 signing key (`whsk_…`). Never shown.
    #[serde(skip)]
    pub webhook_signing_key: Option<String>,
    /// The secret replaced by the last rotation. Never shown.
    #[serde(skip)]
    pub webhook_previous_secret: Option<String>,
    /// The signing key replaced by the last rotation. Never shown.
    #[serde(skip)]
    pub webhook_previous_signing_key: Option<String>,
    /// Why deliveries to the Request URL stopped: it answered `410 Gone`. The app needs a
    /// new Request URL; setting one clears this.
    #[serde(default)]
    pub request_url_gone: Option<String>,
    /// When the Request URL answered `410 Gone` (Unix seconds).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub request_url_gone_at: Option<Timestamp>,
}

impl App {
    /// The Standard Webhooks keys a delivery sent at `now` (Unix seconds) is signed with:
    /// the current ones, and the previous ones until the rotation's grace period ends.
    pub fn webhook_keys(&self, now: Timestamp) -> tidings_core::signing::standard::Keys {
        let mut k = tidings_core::signing::standard::Keys::default();
        k.secrets.extend(self.webhook_secret.clone());
        k.signing_keys.extend(self.webhook_signing_key.clone());
        if self
            .webhook_previous_until
            .is_some_and(|until| now <= until)
        {
            k.secrets.extend(self.webhook_previous_secret.clone());
            k.signing_keys
                .extend(self.webhook_previous_signing_key.clone());
        }
        k
    }
}

/// A column-scoped change to an app: only the `Some` fields are written, so two writers
/// changing different fields cannot undo each other. Every write bumps the app's
/// `version`. The `expect_*` guards make it a compare-and-swap: when the row no longer
/// matches one, nothing is written and the store answers [`crate::StoreError::Stale`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppUpdate {
    /// Write only if the app is still at this version (a decision made on what was read).
    pub expect_version: Option<i64>,
    /// Write only if the Request URL is still this one (`Some(None)`: still none).
    pub expect_request_url: Option<Option<String>>,
    /// Write only if `events_enabled` is still this.
    pub expect_events_enabled: Option<bool>,
    pub name: Option<String>,
    pub request_url: Option<Option<String>>,
    pub request_url_verified: Option<bool>,
    pub socket_mode: Option<bool>,
    pub bot_events: Option<Vec<String>>,
    pub user_events: Option<Vec<String>>,
    pub event_shape: Option<EventShape>,
    pub signing_secret: Option<String>,
    pub events_enabled: Option<bool>,
    pub disabled_reason: Option<Option<String>>,
    pub disabled_at: Option<Option<Timestamp>>,
    pub enabled_at_ms: Option<Option<Timestamp>>,
    /// OAuth settings written in the same transaction, under the same guards (the app's
    /// OAuth client must exist).
    pub oauth: Option<crate::oauth::OAuthClientUpdate>,
    pub signing_scheme: Option<SigningScheme>,
    /// Standard Webhooks keys, all written together (a rotation or a first switch).
    pub webhook_keys: Option<WebhookKeys>,
    pub request_url_gone: Option<Option<String>>,
    pub request_url_gone_at: Option<Option<Timestamp>>,
}

/// An app's Standard Webhooks secrets and keys, current and previous.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookKeys {
    pub secret: String,
    pub signing_key: String,
    pub previous_secret: Option<String>,
    pub previous_signing_key: Option<String>,
    pub previous_until: Option<Timestamp>,
}

impl AppUpdate {
    /// Whether it changes nothing (it still bumps the version).
    pub fn is_empty(&self) -> bool {
        let AppUpdate {
            expect_version: _,
            expect_request_url: _,
            expect_events_enabled: _,
            name,
            request_url,
            request_url_verified,
            socket_mode,
            bot_events,
            user_events,
            event_shape,
            signing_secret,
            events_enabled,
            disabled_reason,
            disabled_at,
            enabled_at_ms,
            oauth,
            signing_scheme,
            webhook_keys,
            request_url_gone,
            request_url_gone_at,
        } = self;
        name.is_none()
            && request_url.is_none()
            && request_url_verified.is_none()
            && socket_mode.is_none()
            && bot_events.is_none()
            && user_events.is_none()
            && event_shape.is_none()
            && signing_secret.is_none()
            && events_enabled.is_none()
            && disabled_reason.is_none()
            && disabled_at.is_none()
            && enabled_at_ms.is_none()
            && oauth.is_none()
            && signing_scheme.is_none()
            && webhook_keys.is_none()
            && request_url_gone.is_none()
            && request_url_gone_at.is_none()
    }
}

/// An app-level (`xapp-`) token as listed; the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppToken {
    pub id: String,
    pub app_id: String,
    pub scopes: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewAppToken {
    pub id: String,
    pub app_id: String,
    pub scopes: Vec<String>,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Installation {
    pub id: String,
    pub app_id: String,
    /// `None` for an org-wide installation.
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub is_enterprise_install: bool,
    pub installer_user_id: String,
    /// The app's bot user in this team (or org); `None` when no bot scopes were granted.
    pub bot_user_id: Option<String>,
    pub bot_id: Option<String>,
    pub bot_scopes: Vec<String>,
    pub user_scopes: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub revoked_at: Option<Timestamp>,
}

/// What an install call asks for. Token hashes are made by the caller, which alone sees
/// the tokens; `None` when the side has no scopes.
#[derive(Debug, Clone)]
pub struct NewInstallation {
    pub id: String,
    pub app_id: String,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub installer_user_id: String,
    pub bot_scopes: Vec<String>,
    pub user_scopes: Vec<String>,
    pub bot_token_hash: Option<String>,
    pub user_token_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorToken {
    pub id: String,
    /// `admin` or `publisher`.
    pub kind: String,
    pub label: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewOperatorToken {
    pub id: String,
    pub kind: String,
    pub label: Option<String>,
    pub token_hash: String,
}

/// What a presented token stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenGrant {
    /// `bot`, `user`, `app`, `admin` or `publisher`.
    pub kind: String,
    pub revoked: bool,
    pub app_id: Option<String>,
    pub installation_id: Option<String>,
    /// For app-level and operator tokens: the token's own id.
    pub token_id: Option<String>,
    /// The acting user: bot user for bot tokens, installer for user tokens.
    pub user_id: Option<String>,
    pub bot_id: Option<String>,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub is_enterprise_install: bool,
    pub scopes: Vec<String>,
}

/// One event to publish, as the operator API received it (shape-checked, not yet
/// validated against the directory).
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub team_id: String,
    /// The inner event (a JSON object with a `type`).
    pub event: serde_json::Map<String, serde_json::Value>,
    pub event_time: Option<i64>,
    pub idempotency_key: Option<String>,
    pub app_id: Option<String>,
}

/// Rules for publishing that come from configuration.
#[derive(Debug, Clone)]
pub struct PublishPolicy {
    pub catalog: std::sync::Arc<tidings_core::catalog::Catalog>,
    pub max_event_age_secs: i64,
    pub max_future_skew_secs: i64,
    /// Deliveries per app per team per `rate_window_secs` (Slack: 30,000 per hour).
    pub rate_max: u32,
    pub rate_window_secs: i64,
}

/// A stored event and what it led to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Published {
    pub event_id: String,
    pub deliveries: usize,
    pub duplicate: bool,
    /// Apps that got a pending delivery (for waking the dispatcher).
    #[serde(skip)]
    pub apps: Vec<String>,
}

/// What publishing one event would store ([`crate::Store::preview_publish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The event as it would be stored (its id is not kept anywhere).
    pub event: StoredEvent,
    /// Its deliveries, in fan-out order (ids not kept either).
    pub deliveries: Vec<Delivery>,
    /// The idempotency key was used before: publish would answer this earlier event id
    /// with `duplicate: true` and deliver nothing new.
    pub duplicate_of: Option<String>,
}

/// Why an event was not published: a status, a machine code and the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRefusal {
    pub status: u16,
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl PublishRefusal {
    pub fn unprocessable(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PublishRefusal {
            status: 422,
            code,
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        PublishRefusal {
            status: 400,
            code: "invalid_field",
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A published event as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredEvent {
    pub id: String,
    pub team_id: String,
    pub enterprise_id: Option<String>,
    pub event_type: String,
    pub app_id: Option<String>,
    pub channel_id: Option<String>,
    pub actor_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub event_time: Timestamp,
    /// The inner event as sent (JSON object text).
    #[serde(skip)]
    pub payload: String,
    pub idempotency_key: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    Dropped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dropped => "dropped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            "dropped" => Some(Self::Dropped),
            _ => None,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// Milliseconds since the epoch.
    pub at: i64,
    /// `http` or `socket`.
    pub transport: String,
    pub status_code: Option<u16>,
    pub reason: Option<String>,
    pub latency_ms: i64,
    pub retry_num: u32,
}

/// One event for one app in one team.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: String,
    #[serde(skip)]
    pub seq: i64,
    pub event_id: String,
    pub app_id: String,
    pub team_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub reason: Option<String>,
    pub authorization: tidings_core::fanout::Authorization,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
    pub attempts: Vec<Attempt>,
}

/// One page of the catch-up feed (`tidings.events.list`).
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    /// Deliveries created at or after this (Unix seconds).
    pub oldest: Timestamp,
    /// Only deliveries after this one (its `seq`: the cursor).
    pub after: Option<i64>,
    pub team_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub limit: usize,
}

/// Filters for a delivery listing.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub team_id: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A pending delivery the dispatcher may send now, with its event.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    /// Shared by the deliveries of one event that a publish hands to the dispatcher.
    pub event: std::sync::Arc<StoredEvent>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Set by an operator's redeliver: one attempt outside the retry budget.
    pub redeliver: bool,
    /// The lease token this node claimed the delivery with, when nodes share the store
    /// (`None` on one node): its outcome is written only while the token still holds.
    pub lease: Option<i64>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Delivered,
    /// Try again at this time (ms since the epoch); `reason` is why this attempt failed
    /// (sent as `X-Slack-Retry-Reason` with the retry).
    Retry {
        at_ms: i64,
        reason: String,
    },
    /// No more attempts.
    Failed {
        reason: String,
    },
    /// Not sent, and will not be (app disabled, rate limited).
    Dropped {
        reason: String,
    },
}

/// One attempt's record and its consequence, written together.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub seq: i64,
    /// `None` when no attempt was made (a drop decided before sending).
    pub attempt: Option<Attempt>,
    pub next: NextStep,
    /// The lease token of the claim the attempt was made under ([`DueDelivery::lease`]):
    /// when set, the outcome is written only if the delivery still carries that token,
    /// so a node that lost its lease to another changes nothing.
    pub lease: Option<i64>,
}

/// Per-app attempt counts in one minute (for rebuilding the health rule after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptTally {
    pub app_id: String,
    pub minute: i64,
    pub successes: u64,
    pub failures: u64,
    /// First attempts: events the app received.
    pub events: u64,
}

/// Which of an app's deliveries an RTM connection receives: those for the workspace its
/// token belongs to, or for an org-wide install every workspace of the enterprise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmScope {
    Team(String),
    Enterprise(String),
}

/// One inner event for an RTM connection: its delivery's `seq` (the connection's read
/// position), the event id and the inner event's JSON as published.
#[derive(Debug, Clone, PartialEq)]
pub struct RtmEvent {
    pub seq: i64,
    pub event_id: String,
    pub payload: String,
}
