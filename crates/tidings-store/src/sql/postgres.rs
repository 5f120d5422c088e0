//! The PostgreSQL backend: several Tidings nodes share one database.
//!
//! Each node has its own writer (group commit, as on SQLite) and a pool of read
//! connections, both sized by `database.max_connections`. Connections time out fast when
//! the server cannot be reached, so a publish fails with 503 rather than hanging, and are
//! reopened when PostgreSQL comes back. Migrations run under an advisory lock, so nodes
//! starting together apply each migration once.

use super::conn::{pg_error, Conn, PgConn};
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
}

/// Opens connections from a parsed configuration.
#[derive(Clone)]
pub struct Opener {
    config: postgres::Config,
}

impl Opener {
    pub fn new(url: &str) -> StoreResult<Opener> {
        let mut config: postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!("database_url is not a PostgreSQL URL: {e}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(3));
        }
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("tidings");
        }
        Ok(Opener { config })
    }

    /// A plain client (for LISTEN, and for tests that set up schemas).
    pub fn client(&self) -> StoreResult<postgres::Client> {
        self.config
            .connect(postgres::NoTls)
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))
    }
}

impl pool::Opener for Opener {
    type Owned = PgConn;

    fn open(&self) -> StoreResult<PgConn> {
        Ok(PgConn::new(self.client()?))
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
    let opener = Opener::new(&options.url)?;
    let first = PgConn::new(opener.client()?);
    migrations::postgres::migrate(&first)?;
    let readers = ReadPool::new(opener.clone(), options.max_connections.saturating_sub(2));
    let (tx, signals) = tokio::sync::mpsc::unbounded_channel();
    super::cluster::listen(opener.clone(), tx);
    SqlStore::assemble(
        opener,
        first,
        Readers::Postgres(readers),
        format!("PostgreSQL {}", redact(&options.url)),
        options.lease.as_millis() as i64,
        Some(signals),
    )
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

/// Maps a driver error outside a query (connecting, transaction control).
pub fn error(e: postgres::Error) -> StoreError {
    pg_error(e, "")
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
