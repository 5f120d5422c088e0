//! The seam between the store and the delivery engine: [`DeliveryQueue`], the dozen
//! operations the dispatcher needs (the store *is* the queue), and the [`WorkNotice`]
//! the store rings after every commit that made work.
//!
//! The engine sees this trait, not [`crate::Store`]: what it can do to the data is the
//! list below, and its unit tests run against an in-memory queue. The store implements it
//! for both backends ([`crate::SqlStore`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{App, AttemptOutcome, DueDelivery};
use crate::StoreResult;

/// What a commit (or another node's commit) means for the delivery engine: rows it may
/// take straight away, and apps whose pending work changed and must be looked at.
#[derive(Debug, Default)]
pub struct WorkNotice {
    /// Pending deliveries the commit wrote, handed over so they need not be read back
    /// (one node only; the engine may decline them: they are pending in the store).
    pub handed_over: Vec<DueDelivery>,
    /// Apps with new or re-enabled work above what was handed over (a redelivery, a
    /// verified URL, an opened socket, a publish past the hand-over limit, another
    /// node's commit).
    pub apps: Vec<String>,
    /// Notices may have been missed (another node's signals were not heard): look at
    /// every app.
    pub everything: bool,
}

impl WorkNotice {
    /// Whether the notice says nothing.
    pub fn is_empty(&self) -> bool {
        self.handed_over.is_empty() && self.apps.is_empty() && !self.everything
    }
}

/// Where work notices go: the engine's doorbell. Called on the writer thread right after
/// a commit (before any caller hears "done"), and from the task that hears other nodes;
/// it must not block.
pub type WorkSink = Arc<dyn Fn(WorkNotice) + Send + Sync>;

/// The delivery engine's view of the store.
#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Registers the engine's doorbell (once; later calls are ignored).
    fn set_work_sink(&self, sink: WorkSink);
    /// Whether other nodes share this store: deliveries are then claimed with leases.
    fn is_shared(&self) -> bool;
    /// How long a claim lasts, where deliveries are claimed with leases.
    fn lease(&self) -> Option<Duration>;
    /// The secret `event_context` handles are signed with.
    fn event_context_key(&self) -> Vec<u8>;
    /// An app as last committed.
    async fn get_app(&self, id: &str) -> StoreResult<Option<App>>;
    /// Apps with pending deliveries and when the earliest is due (ms since the epoch).
    async fn pending_apps(&self) -> StoreResult<Vec<(String, i64)>>;
    /// How many deliveries are pending.
    async fn pending_count(&self) -> StoreResult<u64>;
    /// Up to `limit` of an app's pending deliveries due by `now_ms`, earliest first,
    /// skipping the `exclude`d (in flight) ones and, with `below`, every one whose seq is
    /// not below it (the dispatcher holds those: see its lanes' fence); and when the next
    /// pending one neither skipped nor returned is due (`now_ms` when the limit was
    /// reached), in one read. `below` is ignored where deliveries are claimed with leases
    /// (nothing is handed over there).
    async fn due_deliveries(
        &self,
        app_id: &str,
        now_ms: i64,
        limit: usize,
        exclude: Vec<i64>,
        below: Option<i64>,
    ) -> StoreResult<(Vec<DueDelivery>, Option<i64>)>;
    /// Records attempts and their consequences (batched with other writes; on a shared
    /// store, in a transaction of their own). An outcome whose lease token no longer
    /// holds (another node took the delivery over) is skipped and changes nothing.
    async fn record_outcomes(&self, outcomes: Vec<AttemptOutcome>) -> StoreResult<()>;
    /// Extends this node's leases on deliveries it claimed and has not concluded (those
    /// another node took over are left alone); returns how many were extended.
    async fn renew_leases(&self, seqs: Vec<i64>) -> StoreResult<usize>;
    /// Moves held deliveries' next attempt to `until_ms` without counting an attempt,
    /// giving their leases back. Each is `(seq, lease token)`, fenced like
    /// [`DeliveryQueue::record_outcomes`]: one another node took over is left alone.
    /// Returns how many were moved.
    async fn postpone(&self, held: Vec<(i64, Option<i64>)>, until_ms: i64) -> StoreResult<usize>;
    /// Shutting down: gives back deliveries this node claimed and will not finish, at once
    /// and without waiting for their leases. `unsent` were never sent (no attempt is
    /// counted); `unknown` were being sent (counted as an attempt of unknown result, as a
    /// take-over is). On SQLite they stay pending for the next start the same way.
    async fn hand_back(&self, unsent: Vec<i64>, unknown: Vec<i64>) -> StoreResult<usize>;
    /// Fails, as `connection_failed`, the app's pending deliveries created at or before
    /// `created_before` (Unix seconds): Socket Mode deliveries held past the hold time.
    async fn expire_held(&self, app_id: &str, created_before: i64) -> StoreResult<usize>;
    /// The app's Socket Mode connections open on other live nodes.
    async fn remote_socket_connections(&self, app_id: &str) -> StoreResult<usize>;
}
