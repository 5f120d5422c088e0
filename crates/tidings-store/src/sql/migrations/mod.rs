//! Versioned schema migrations, one list per backend with the same versions: version N
//! means the same tables and columns on SQLite and PostgreSQL. Each migration runs once,
//! in order, inside one transaction with its `schema_migrations` row, so a crash
//! mid-migration leaves the previous version intact. Never edit a shipped migration: add
//! a new one.

pub mod postgres;
pub mod sqlite;
