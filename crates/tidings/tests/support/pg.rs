//! PostgreSQL for tests: when `TIDINGS_TEST_DATABASE_URL` is set, every server a test
//! starts gets a schema of its own in that database (created here, dropped when the test
//! is done), so tests run in parallel and each sees an empty store.

use std::sync::atomic::{AtomicU64, Ordering};

/// The database tests use, if any.
pub fn url() -> Option<String> {
    std::env::var("TIDINGS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// A schema that lives as long as the value (dropped with its tables after).
pub struct Schema {
    base: String,
    pub name: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Schema {
    pub fn create(base: &str) -> Schema {
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        run(base, format!("CREATE SCHEMA {name}"))
            .unwrap_or_else(|e| panic!("TIDINGS_TEST_DATABASE_URL {base}: {e}"));
        Schema {
            base: base.to_string(),
            name,
        }
    }

    /// The database URL whose connections use this schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = run(
            &self.base,
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs SQL on its own thread: the blocking driver must not run on a test's runtime.
fn run(base: &str, sql: String) -> Result<(), String> {
    let base = base.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&base, postgres::NoTls)
            .map_err(|e| format!("cannot connect: {e}"))?;
        c.batch_execute(&sql).map_err(|e| format!("{sql}: {e}"))
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}
