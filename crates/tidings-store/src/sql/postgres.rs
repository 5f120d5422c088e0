//! The PostgreSQL backend: several Tidings nodes share one database.
//!
//! Each node has its own writer (group commit, as on SQLite) and a pool of read
//! connections, both sized by `database.max_connections`. Connections time out fast when
//! the server cannot be reached, so a publish fails with 503 rather than hanging, and are
//! reopened when PostgreSQL comes back. Migrations run under an advisory lock, so nodes
//! starting together apply each migration once. TLS follows the URL's `sslmode` (see
//! [`super::pg_tls`]).

use super::conn::{Conn, PgConn};
use super::pg_tls;
use super::pool::{self, ReadPool};
use super::{migrations, Readers, SqlStore};
use crate::{StoreError, StoreResult};

/// How the PostgreSQL backend is set up.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?options=...`
    pub url: String,
    /// Connections this node opens at most: one writer, one listening for work
    /// signals, the rest for reads and claims.
    pub max_connections: usize,
    /// How long claimed deliveries stay this node's.
    pub lease: std::time::Duration,
    /// How long opening a connection may take (unless the URL sets `connect_timeout`).
    pub connect_timeout: std::time::Duration,
    /// How long one statement may run on the server, and how long a store call waits
    /// for the database to answer before failing with `Unavailable` (a 503).
    pub statement_timeout: std::time::Duration,
    /// CA certificates (PEM) that sign PostgreSQL's certificate, when the URL's
    /// `sslrootcert` names none (`[database] ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Opens connections from a parsed configuration.
#[derive(Clone)]
pub struct Opener {
    config: postgres::Config,
    /// `None`: plain text (`sslmode=disable`).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ssl_mode: pg_tls::SslMode,
    /// The URL sets `connect_timeout` itself.
    url_connect_timeout: bool,
    /// `SET statement_timeout` on the connections the store works on (ms).
    statement_timeout_ms: Option<u128>,
}

impl Opener {
    /// Connections time out after `connect` (unless the URL says otherwise), and the
    /// store's own connections cancel a statement after `statement` on the server.
    pub fn with_timeouts(
        mut self,
        connect: std::time::Duration,
        statement: std::time::Duration,
    ) -> Opener {
        if !self.url_connect_timeout {
            self.config.connect_timeout(connect);
        }
        self.statement_timeout_ms = Some(statement.as_millis());
        self
    }

    /// Applies the statement timeout to a connection the store works on.
    fn limit(&self, c: &PgConn) -> StoreResult<()> {
        match self.statement_timeout_ms {
            Some(ms) => Conn::Postgres(c).batch(&format!("SET statement_timeout = {ms}")),
            None => Ok(()),
        }
    }

    pub fn new(url: &str) -> StoreResult<Opener> {
        Opener::with_ca_file(url, None)
    }

    /// As [`Opener::new`], with `ca_file` trusted when the URL names no `sslrootcert`.
    pub fn with_ca_file(url: &str, ca_file: Option<&std::path::Path>) -> StoreResult<Opener> {
        let (url, tls) = pg_tls::split_url(url, ca_file)?;
        let mut config: postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!("database_url is not a PostgreSQL URL: {e}"))
        })?;
        config.ssl_mode(tls.mode.driver_mode());
        let url_connect_timeout = config.get_connect_timeout().is_some();
        if !url_connect_timeout {
            config.connect_timeout(std::time::Duration::from_secs(3));
        }
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("tidings");
        }
        Ok(Opener {
            config,
            tls: pg_tls::connector(&tls)?,
            ssl_mode: tls.mode,
            url_connect_timeout,
            statement_timeout_ms: None,
        })
    }

    /// A client of its own (for LISTEN, and for tests that set up schemas).
    pub fn client(&self) -> StoreResult<postgres::Client> {
        let connected = match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        };
        connected.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL: {}",
                pg_tls::describe(&e, self.ssl_mode)
            ))
        })
    }
}

impl pool::Opener for Opener {
    type Owned = PgConn;

    fn open(&self) -> StoreResult<PgConn> {
        let c = PgConn::new(self.client()?);
        self.limit(&c)?;
        Ok(c)
    }

    fn conn(c: &PgConn) -> Conn<'_> {
        Conn::Postgres(c)
    }

    fn usable(c: &PgConn) -> bool {
        !c.is_closed()
    }
}

/// Connects, migrates (under an advisory lock) and starts the writer. Blocking: call it
/// from a blocking context (the `postgres` driver runs its own small runtime).
pub fn open(options: &PgOptions) -> StoreResult<SqlStore> {
    let opener = Opener::with_ca_file(&options.url, options.ca_file.as_deref())?
        .with_timeouts(options.connect_timeout, options.statement_timeout);
    let first = PgConn::new(opener.client()?);
    migrations::postgres::migrate(&first)?;
    // Migrations may take long; everything after them is bounded.
    opener.limit(&first)?;
    let tls = tls_in_use(&first, opener.ssl_mode)?;
    let readers = ReadPool::with_limit(
        opener.clone(),
        options.max_connections.saturating_sub(2),
        options.statement_timeout,
    );
    let (tx, signals) = tokio::sync::mpsc::unbounded_channel();
    let (revoked_tx, revocations) = tokio::sync::mpsc::unbounded_channel();
    super::cluster::listen(
        opener.clone(),
        super::cluster::Listeners {
            work: tx,
            revocations: revoked_tx,
        },
    );
    let store = SqlStore::assemble(
        opener,
        first,
        Readers::Postgres(readers),
        format!("PostgreSQL {} ({tls})", redact(&options.url)),
        options.lease.as_millis() as i64,
        Some(signals),
    )?;
    let mut store = store;
    store.writer = store.writer.with_stall_limit(options.statement_timeout);
    store.limit = Some(options.statement_timeout);
    *store.revocations.lock().unwrap_or_else(|p| p.into_inner()) = Some(revocations);
    Ok(store)
}

/// Whether the connection is encrypted, as the server sees it, for the startup message
/// ("TLS, sslmode=verify-full"); `prefer` is encrypted only when the server offers TLS.
fn tls_in_use(c: &PgConn, mode: pg_tls::SslMode) -> StoreResult<String> {
    let ssl: String = Conn::Postgres(c).query_one(
        "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)::text",
        crate::params![],
        |r| r.get(0),
    )?;
    let what = if ssl == "true" { "TLS" } else { "no TLS" };
    Ok(format!("{what}, sslmode={}", mode.as_str()))
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..s + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A throwaway schema in a PostgreSQL database, dropped with its tables when the value
/// is: each test (and each test server) stores in its own, so tests run in parallel. The
/// database comes from `TIDINGS_TEST_DATABASE_URL`. Blocking calls run on a thread of
/// their own, so it can be made and dropped inside an async test.
pub struct TestSchema {
    base: String,
    pub name: String,
}

impl TestSchema {
    /// A new schema in the database `TIDINGS_TEST_DATABASE_URL` names, if it is set.
    pub fn from_env() -> Option<TestSchema> {
        let base = std::env::var("TIDINGS_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        Some(TestSchema::create(&base))
    }

    /// A new schema in `base`; panics with the reason when it cannot be made (tests only).
    pub fn create(base: &str) -> TestSchema {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        run_off_runtime(base, format!("CREATE SCHEMA {name}"))
            .unwrap_or_else(|e| panic!("TIDINGS_TEST_DATABASE_URL {base}: {e}"));
        TestSchema {
            base: base.to_string(),
            name,
        }
    }

    /// The database URL whose connections use this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.name)
    }

    /// Opens connections to this schema.
    pub fn opener(&self) -> Opener {
        Opener::new(&self.url()).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = run_off_runtime(
            &self.base,
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs SQL on its own connection and thread (the blocking driver must not run on an
/// async runtime's thread).
fn run_off_runtime(base: &str, sql: String) -> Result<(), String> {
    let base = base.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&base, postgres::NoTls)
            .map_err(|e| format!("cannot connect: {e}"))?;
        c.batch_execute(&sql).map_err(|e| format!("{sql}: {e}"))
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://tid:secret@db:5432/x"),
            "postgres://tid:***@db:5432/x"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
