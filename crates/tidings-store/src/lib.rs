//! Persistence for Tidings: the [`Store`] trait every backend implements, the records it
//! stores, versioned migrations, and the two backends behind [`SqlStore`]: embedded SQLite
//! and shared PostgreSQL.
//!
//! The trait speaks in domain operations (create a team, install an app, publish events
//! with their deliveries), never in SQL, so callers do not know which backend runs. Every write is atomic: an operation that fails leaves nothing behind.

mod error;
pub mod insights;
pub mod manifests;
pub mod model;
pub mod oauth;
mod page;
pub mod queue;
pub mod redeliveries;
pub mod sql;

pub use error::{StoreError, StoreResult};
pub use model::*;
pub use page::{Cursor, Page, PageRequest, DEFAULT_LIMIT, MAX_LIMIT};
pub use queue::{DeliveryQueue, WorkNotice, WorkSink};
pub use sql::postgres::PgOptions;
pub use sql::retention::{Pruned, Retention};
pub use sql::SqlStore;

use async_trait::async_trait;

/// Everything Tidings keeps. Implementations must be safe to share between tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round-trip to the backing database (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    // --- directory -------------------------------------------------------------------
    async fn create_enterprise(&self, e: Enterprise) -> StoreResult<Enterprise>;
    async fn get_enterprise(&self, id: &str) -> StoreResult<Option<Enterprise>>;
    async fn list_enterprises(&self, page: &PageRequest) -> StoreResult<Page<Enterprise>>;

    /// Creates a team; `Conflict` if the id exists, `NotFound` if its enterprise does not.
    async fn create_team(&self, t: Team) -> StoreResult<Team>;
    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>>;
    async fn list_teams(&self, page: &PageRequest) -> StoreResult<Page<Team>>;

    /// Creates a (human) user in a team.
    async fn create_user(&self, u: User) -> StoreResult<User>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<User>>;
    /// The team's users, bot users included.
    async fn list_users(&self, team_id: &str, page: &PageRequest) -> StoreResult<Page<User>>;

    /// Creates or replaces a conversation and its member list; the bool says "created".
    async fn put_conversation(&self, c: Conversation) -> StoreResult<(Conversation, bool)>;
    async fn get_conversation(&self, team_id: &str, id: &str) -> StoreResult<Option<Conversation>>;
    async fn add_member(
        &self,
        team_id: &str,
        conversation: &str,
        user: &str,
    ) -> StoreResult<Conversation>;
    async fn remove_member(
        &self,
        team_id: &str,
        conversation: &str,
        user: &str,
    ) -> StoreResult<Conversation>;

    // --- apps --------------------------------------------------------------------------
    async fn create_app(&self, app: App) -> StoreResult<App>;
    /// Writes the columns the update names (and only those), bumping the app's version;
    /// `Stale` (nothing written) when a guard no longer holds, `NotFound` without the app.
    /// There is no whole-row write: a writer that read the app cannot put back what
    /// another changed meanwhile.
    async fn update_app(&self, id: &str, update: AppUpdate) -> StoreResult<App>;
    async fn get_app(&self, id: &str) -> StoreResult<Option<App>>;
    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>>;

    async fn create_app_token(&self, t: NewAppToken) -> StoreResult<AppToken>;
    async fn list_app_tokens(&self, app_id: &str) -> StoreResult<Vec<AppToken>>;
    /// Revokes an app-level token; on PostgreSQL its commit also signals every node to
    /// close the Socket Mode connections the token opened ([`Store::take_revocations`]).
    async fn revoke_app_token(&self, app_id: &str, token_id: &str) -> StoreResult<AppToken>;

    /// Installs an app (or re-installs it for the same installer, replacing that
    /// installation's tokens and scopes). The bot user is shared by every installation of
    /// the app in the same team (or enterprise, for org-wide installs).
    async fn install(&self, i: NewInstallation) -> StoreResult<Installation>;
    async fn get_installation(&self, id: &str) -> StoreResult<Option<Installation>>;
    async fn list_installations(
        &self,
        app_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<Installation>>;
    /// Uninstalls: the installation and its tokens are revoked (kept for `token_revoked`),
    /// and in the same transaction, before the revocation, its lifecycle events are
    /// published to the app (`tokens_revoked`; `app_uninstalled` when nothing of the app
    /// is left in the team; see [`tidings_core::lifecycle`]). An org-wide installation
    /// has no team to publish in.
    async fn uninstall(
        &self,
        app_id: &str,
        installation_id: &str,
        policy: &PublishPolicy,
    ) -> StoreResult<Installation>;

    // --- OAuth v2 installs (sql::oauth) -------------------------------------------------
    /// The app's OAuth client, if it has one.
    async fn oauth_client(&self, app_id: &str) -> StoreResult<Option<oauth::OAuthClient>>;
    /// The OAuth client with this `client_id`.
    async fn oauth_client_by_id(&self, client_id: &str) -> StoreResult<Option<oauth::OAuthClient>>;
    /// Creates the app's OAuth client (with `client_id`), or replaces its secret's hash.
    async fn put_oauth_secret(
        &self,
        app_id: &str,
        client_id: &str,
        secret_hash: &str,
    ) -> StoreResult<oauth::OAuthClient>;
    async fn update_oauth_client(
        &self,
        app_id: &str,
        update: oauth::OAuthClientUpdate,
    ) -> StoreResult<oauth::OAuthClient>;
    /// Records what the consent page allowed, under the code's hash.
    async fn put_oauth_grant(&self, code_hash: &str, grant: oauth::OAuthGrant) -> StoreResult<()>;
    /// Redeems a code once and installs what it grants, in one transaction.
    async fn exchange_oauth_code(
        &self,
        x: oauth::CodeExchange,
    ) -> StoreResult<Result<(Installation, oauth::OAuthGrant), oauth::OAuthRefusal>>;
    /// Uses a refresh token once for a new access token.
    async fn refresh_oauth_token(
        &self,
        x: oauth::Refresh,
    ) -> StoreResult<Result<oauth::Refreshed, oauth::OAuthRefusal>>;
    /// Replaces a live long-lived token of the app with a rotating one (`oauth.v2.exchange`);
    /// `None` when it is not a live token of the app. The old token stops working.
    async fn exchange_oauth_token(
        &self,
        old_hash: &str,
        app_id: &str,
        access: oauth::IssuedToken,
    ) -> StoreResult<Option<oauth::Refreshed>>;
    /// When a token (by hash) expires; `None`: never.
    async fn token_expires_at(&self, token_hash: &str) -> StoreResult<Option<i64>>;
    /// `auth.revoke` of one side (`bot`/`user`; `user_id` the token's user) of an
    /// installation of `app_id`, in one transaction: the side's tokens are revoked and its
    /// `tokens_revoked` published; when no live token is left the installation is
    /// uninstalled too (`app_uninstalled` when it was the app's last in the team; no second
    /// `tokens_revoked`). Each event is published once and commits with the change.
    /// Answers the live tokens left (0: uninstalled); `Conflict` if already uninstalled.
    async fn revoke_installation_side(
        &self,
        app_id: &str,
        installation_id: &str,
        kind: &str,
        user_id: &str,
        policy: &PublishPolicy,
    ) -> StoreResult<i64>;
    /// Records a login assertion's id until `expires_at`; false if already used.
    async fn use_login_assertion(&self, id: &str, expires_at: i64) -> StoreResult<bool>;

    // --- App Manifest API (sql::manifests) ----------------------------------------------
    /// Stores a configuration token pair for a user of a team (`NotFound` unless the user
    /// is a human member of the team).
    async fn create_config_token(
        &self,
        t: manifests::NewConfigToken,
    ) -> StoreResult<manifests::ConfigToken>;
    /// The configuration token whose access token has this hash, expired or not.
    async fn config_token(&self, access_hash: &str) -> StoreResult<Option<manifests::ConfigToken>>;
    /// Uses a refresh token once for a new pair (same team and user; the ids and hashes
    /// of `new` are used, its team and user ignored); `None` when it is unknown or used.
    async fn rotate_config_token(
        &self,
        refresh_hash: &str,
        new: manifests::NewConfigToken,
    ) -> StoreResult<Option<manifests::ConfigToken>>;
    /// The users who own the app (created it with a configuration token).
    async fn app_owners(&self, app_id: &str) -> StoreResult<Vec<String>>;
    /// Every `(app_id, user_id)` ownership, by app then user (for the dashboard's list).
    async fn list_app_owners(&self) -> StoreResult<Vec<(String, String)>>;
    /// The manifest the app was last applied from, if any.
    async fn app_manifest(&self, app_id: &str) -> StoreResult<Option<manifests::StoredManifest>>;
    /// Records the manifest an app was applied from (and its new owner, on create).
    async fn put_app_manifest(
        &self,
        app_id: &str,
        manifest: &str,
        owner: Option<&str>,
    ) -> StoreResult<()>;
    /// Marks the app deleted through the Manifest API and drops its owners.
    async fn mark_app_deleted(&self, app_id: &str) -> StoreResult<()>;

    // --- operator tokens and authentication --------------------------------------------
    async fn create_operator_token(&self, t: NewOperatorToken) -> StoreResult<OperatorToken>;
    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorToken>>;
    async fn revoke_operator_token(&self, id: &str) -> StoreResult<OperatorToken>;

    /// What a presented token (by its hash) may do; revoked tokens are returned with
    /// `revoked = true` so callers can answer `token_revoked` rather than `invalid_auth`.
    async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<TokenGrant>>;

    // --- events and deliveries ---------------------------------------------------------
    /// Publishes events, each atomically with every delivery it implies: validated against
    /// the catalog and the directory, its directory changes applied, fanned out, stored.
    /// Results come back in request order; a refused event writes nothing and does not
    /// affect the others.
    async fn publish(
        &self,
        policy: &PublishPolicy,
        requests: Vec<PublishRequest>,
    ) -> StoreResult<Vec<Result<Published, PublishRefusal>>>;

    /// A dry run of [`Store::publish`] for one event: the same checks, directory changes
    /// and fan-out inside a savepoint that is always rolled back, so nothing is kept. Gives
    /// what publish would store (the event and its deliveries, under throwaway ids) or the
    /// refusal it would answer. Rate windows are read, not counted.
    async fn preview_publish(
        &self,
        policy: &PublishPolicy,
        request: PublishRequest,
    ) -> StoreResult<Result<Preview, PublishRefusal>>;

    /// The secret `event_context` handles are signed with (shared by all nodes).
    fn event_context_key(&self) -> Vec<u8>;

    async fn get_event(&self, id: &str) -> StoreResult<Option<StoredEvent>>;
    async fn event_deliveries(&self, event_id: &str) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<Delivery>>;
    /// The catch-up feed: an app's deliveries with their events, oldest first.
    async fn feed(&self, app_id: &str, q: &FeedQuery) -> StoreResult<Vec<(Delivery, StoredEvent)>>;
    /// An app's deliveries, newest first.
    async fn list_deliveries(
        &self,
        app_id: &str,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Delivery>>;

    // --- RTM (reads the deliveries publish wrote; writes nothing) -----------------------
    /// The app's newest delivery `seq`, where a new RTM connection starts reading.
    async fn rtm_watermark(&self, app_id: &str) -> StoreResult<i64>;
    /// Up to `limit` inner events of the app's deliveries in `scope` after `after_seq`,
    /// oldest first (dropped deliveries and `app_rate_limited` notices left out).
    async fn rtm_events_after(
        &self,
        app_id: &str,
        scope: &RtmScope,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<RtmEvent>>;

    // --- the delivery engine -----------------------------------------------------------
    /// The store as the delivery engine sees it (see [`queue`]).
    fn delivery_queue(&self) -> std::sync::Arc<dyn DeliveryQueue>;
    /// Shutting down: waits until every write queued before it is committed (the group
    /// commit flushed), then closes the read pool: reads after it fail with `Unavailable`.
    async fn close(&self) -> StoreResult<()>;
    /// Makes every pending delivery of the app due now (its Request URL was verified).
    async fn wake_app(&self, app_id: &str) -> StoreResult<()>;
    /// One new attempt now, outside the retry budget.
    async fn redeliver(&self, id: &str) -> StoreResult<Delivery>;
    /// [`Store::redeliver`] for every matching delivery of the app; returns how many.
    async fn redeliver_many(&self, app_id: &str, filter: &DeliveryFilter) -> StoreResult<usize>;
    /// Creates a bulk replay job, counting the deliveries it covers (`done` at once when
    /// none match).
    async fn create_redelivery(
        &self,
        job: redeliveries::NewRedelivery,
    ) -> StoreResult<redeliveries::Redelivery>;
    async fn get_redelivery(&self, id: &str) -> StoreResult<Option<redeliveries::Redelivery>>;
    /// The app's jobs, newest first (at most `limit`).
    async fn list_redeliveries(
        &self,
        app_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<redeliveries::Redelivery>>;
    /// Ids of the jobs still running.
    async fn running_redeliveries(&self) -> StoreResult<Vec<String>>;
    /// Re-queues the job's next `limit` deliveries (by `seq`) in one transaction with its
    /// cursor; the job as committed, `None` when unknown or done.
    async fn advance_redelivery(
        &self,
        id: &str,
        limit: usize,
    ) -> StoreResult<Option<redeliveries::Redelivery>>;
    /// Attempt counts per app and minute since `since_ms`.
    async fn attempt_tallies(&self, since_ms: i64) -> StoreResult<Vec<AttemptTally>>;
    /// How many deliveries are pending.
    async fn pending_count(&self) -> StoreResult<u64>;

    // --- insights ----------------------------------------------------------------------
    /// Marks an event type as a key event; the bool says whether it was newly marked.
    async fn put_key_event(&self, event_type: &str) -> StoreResult<(insights::KeyEvent, bool)>;
    /// Unmarks a key event; false if it was not marked.
    async fn delete_key_event(&self, event_type: &str) -> StoreResult<bool>;
    async fn list_key_events(&self) -> StoreResult<Vec<insights::KeyEvent>>;
    /// Event counts, distinct users and series per type over a range (scope: a team).
    async fn event_insights(
        &self,
        range: &insights::InsightRange,
    ) -> StoreResult<insights::EventInsights>;
    /// Delivery counts per app over a range (scope: an app).
    async fn delivery_insights(
        &self,
        range: &insights::InsightRange,
    ) -> StoreResult<insights::DeliveryInsights>;

    // --- nodes sharing one database (PostgreSQL) ----------------------------------------
    /// This process's id among the nodes sharing the store.
    fn node_id(&self) -> String;
    /// Whether other nodes may share this store (PostgreSQL): deliveries are then claimed
    /// with leases and the health rule reads every node's attempts.
    fn is_shared(&self) -> bool;
    /// Registers this node or renews its heartbeat.
    async fn heartbeat(&self, public_url: &str) -> StoreResult<()>;
    /// Records a Socket Mode connection opened on this node with app-level token
    /// `app_token_id`.
    async fn socket_opened(
        &self,
        connection_id: &str,
        app_id: &str,
        app_token_id: &str,
    ) -> StoreResult<()>;
    async fn socket_closed(&self, connection_id: &str) -> StoreResult<()>;
    /// The app's Socket Mode connections open on other live nodes.
    async fn remote_socket_connections(&self, app_id: &str) -> StoreResult<usize>;
    /// Connections opened with this app-level token still open on other live nodes.
    async fn remote_token_sockets(&self, app_token_id: &str) -> StoreResult<usize>;

    // --- revocation --------------------------------------------------------------------
    /// Revocations heard from every node (PostgreSQL); `None` on SQLite, or once taken.
    fn take_revocations(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<sql::cluster::Revocation>>;
    /// `(app, token)` of the app-level tokens revoked at or after `since` (Unix seconds).
    async fn revoked_app_tokens(&self, since: i64) -> StoreResult<Vec<(String, String)>>;

    // --- dashboard sessions ------------------------------------------------------------
    /// Ends a dashboard session (`id`: a hash of its cookie) until `expires_at`.
    async fn end_session(&self, id: &str, expires_at: i64) -> StoreResult<()>;
    /// Whether a dashboard session was ended.
    async fn session_ended(&self, id: &str) -> StoreResult<bool>;

    // --- retention -----------------------------------------------------------------------
    /// Deletes one batch of what is older than `retention` keeps, as of `now` (Unix
    /// seconds): finished deliveries with their attempts, events with no delivery left,
    /// minute rollups; never a pending delivery or its event. Call again while
    /// [`Pruned::more`] (see `sql::retention`).
    async fn prune(&self, retention: Retention, now: i64) -> StoreResult<Pruned>;
    /// After pruning that deleted `pruned`: PostgreSQL `VACUUM`s the tables it deleted
    /// from (outside a transaction, under the pruner's advisory lock); the tables
    /// vacuumed, none on SQLite or while another node holds the lock.
    async fn vacuum_pruned(&self, pruned: Pruned) -> StoreResult<Vec<&'static str>>;

    /// Every installation of the app that can see the event now (for
    /// `apps.event.authorizations.list`); `None` if the event or app does not exist.
    async fn event_audience(
        &self,
        catalog: &tidings_core::catalog::Catalog,
        event_id: &str,
        app_id: &str,
    ) -> StoreResult<Option<Vec<tidings_core::fanout::Authorization>>>;
}
