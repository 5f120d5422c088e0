//! PostgreSQL for tests: when `TIDINGS_TEST_DATABASE_URL` is set, every server a test
//! starts gets a schema of its own in that database ([`Schema`], dropped when the test is
//! done), so tests run in parallel and each sees an empty store.

pub use tidings_store::sql::postgres::TestSchema as Schema;

/// The database tests use, if any.
pub fn url() -> Option<String> {
    std::env::var("TIDINGS_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}
