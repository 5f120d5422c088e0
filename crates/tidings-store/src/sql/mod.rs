//! The SQL backends: SQLite (embedded, the default) and PostgreSQL (shared by several
//! nodes). Both run the same SQL functions through [`conn::Conn`], behind one store type,
//! [`SqlStore`]:
//!
//! - writes go to one writer thread per process with group commit ([`writer`]);
//! - reads borrow a connection from a small pool ([`pool`]);
//! - what differs per backend is how connections open ([`sqlite`], [`postgres`]), the
//!   schema's DDL ([`migrations`]), and the few statements that branch on the dialect.
//!
//! The domain's SQL lives in one module per concern: [`directory`], [`apps`], [`publish`]
//! (with the fan-out index in [`cache`]), [`events`], [`dispatch`], [`insights`].

mod app_cache;
mod apps;
pub mod backup;
mod cache;
pub mod cluster;
pub mod conn;
mod directory;
mod dispatch;
mod event_cache;
mod events;
mod insights;
mod lifecycle;
mod manifests;
pub mod migrations;
mod oauth;
mod outcomes;
pub mod owner_only;
pub mod pg_tls;
pub mod pool;
pub mod postgres;
mod publish;
mod queue_impl;
mod redeliveries;
pub mod retention;
mod rows;
mod rtm;
mod sessions;
pub mod sqlite;
mod store_impl;
mod wal;
mod work;
pub mod writer;

use std::sync::Arc;

use conn::Conn;
use pool::ReadPool;
use writer::Writer;

use crate::StoreResult;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Read connections of the store's backend.
#[derive(Clone)]
enum Readers {
    Sqlite(Arc<ReadPool<sqlite::Opener>>),
    Postgres(Arc<ReadPool<postgres::Opener>>),
}

/// The store over SQLite or PostgreSQL. Cheap to clone; all clones share the writer and
/// the read pool.
#[derive(Clone)]
pub struct SqlStore {
    writer: Writer,
    /// The fan-out index, used and invalidated only inside writer jobs.
    index: cache::Index,
    /// Insight counts of the batch in progress, flushed just before it commits.
    counter: insights::Counter,
    /// The `event_context` signing key (read once at open).
    context_key: Arc<Vec<u8>>,
    readers: Readers,
    description: Arc<str>,
    /// This process among the nodes sharing the database.
    node_id: Arc<str>,
    /// How long claimed deliveries stay this node's (ms); 0 on SQLite, where one process
    /// owns every delivery and claims are not written.
    lease_ms: i64,
    /// The batch in progress's delivery work (hand-over rows, apps to look at), rung to
    /// the engine on commit ([`work`]).
    work: work::Work,
    /// Apps as last committed, for `get_app` (off when nodes share the database).
    apps: app_cache::AppCache,
    /// Events recently read with due work, shared by the rows that carry them.
    events: event_cache::EventCache,
    /// Work signals from other nodes, forwarded to the work sink once it is set.
    signals: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<cluster::Signal>>>>,
    /// Revocations from every node (PostgreSQL), taken once by the server.
    revocations:
        Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<cluster::Revocation>>>>,
    /// How long a call waits for the database to answer (PostgreSQL's
    /// `statement_timeout`); `None` on SQLite.
    limit: Option<std::time::Duration>,
    /// Background threads (SQLite's checkpointer) run while a clone of this lives.
    _alive: Option<Arc<()>>,
}

impl SqlStore {
    /// What the store is, for the startup message ("SQLite ./tidings-data/tidings.db").
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Runs `f` in the next group commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// [`SqlStore::write`] for work that fails only before it writes (see
    /// [`Writer::write_lean`]).
    pub(crate) async fn write_lean<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write_lean(f).await
    }

    /// [`SqlStore::write`] for a change to the directory (teams, users, conversations,
    /// apps, installations): other nodes sharing the database drop their fan-out caches.
    pub(crate) async fn write_directory<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.writer
            .write(move |c| {
                let out = f(c)?;
                cluster::bump_directory(c)?;
                Ok(out)
            })
            .await
    }

    /// Flushes the writer (an empty job commits after everything queued before it) and
    /// closes the read pool (see [`crate::Store::close`]).
    pub(crate) async fn flush_and_close(&self) -> StoreResult<()> {
        let flushed = self.writer.write(|_| Ok(())).await;
        match &self.readers {
            Readers::Sqlite(p) => p.close(),
            Readers::Postgres(p) => p.close(),
        }
        flushed
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        match &self.readers {
            Readers::Sqlite(p) => p.read(f).await,
            Readers::Postgres(p) => p.read(f).await,
        }
    }

    /// Starts the writer on `first` and assembles the store (both backends' `open` end here).
    fn assemble<O: pool::Opener>(
        opener: O,
        first: O::Owned,
        readers: Readers,
        description: String,
        lease_ms: i64,
        signals: Option<tokio::sync::mpsc::UnboundedReceiver<cluster::Signal>>,
    ) -> StoreResult<SqlStore> {
        let context_key = events::context_key(&O::conn(&first))?;
        let index = cache::Index::default();
        let counter = insights::Counter::default();
        let work = work::Work::new(lease_ms > 0);
        let apps = app_cache::AppCache::new(lease_ms == 0);
        // Order matters: counts are written before the work signal; the app cache is
        // current before the engine hears of the work (it reads apps to send).
        let listeners: writer::Listeners = vec![
            Arc::new(cache::DirectoryWatch::new(index.clone())),
            Arc::new(counter.clone()),
            Arc::new(apps.clone()),
            Arc::new(work.clone()),
        ];
        let writer = Writer::start(opener, first, listeners)
            .map_err(|e| crate::StoreError::Internal(format!("cannot start the writer: {e}")))?;
        Ok(SqlStore {
            writer,
            index,
            counter,
            context_key: Arc::new(context_key),
            readers,
            description: description.into(),
            node_id: format!("n-{}", tidings_core::token::random_hex(6)).into(),
            lease_ms,
            work,
            apps,
            events: event_cache::EventCache::default(),
            signals: Arc::new(std::sync::Mutex::new(signals)),
            revocations: Arc::default(),
            limit: None,
            _alive: None,
        })
    }
}
