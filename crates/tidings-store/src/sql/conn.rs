//! The SQL both backends speak. Every query in the store goes through [`Conn`], which runs
//! it on SQLite or PostgreSQL:
//!
//! - SQL is written once, in the common subset of the two dialects, with `?N` placeholders.
//!   On PostgreSQL each `?N` becomes `$N` cast to its parameter's type (`$N::int8`,
//!   `$N::text`, `$N::bytea`), so parameter types never depend on PostgreSQL's inference.
//! - Parameters are [`Param`]s, built by the [`params!`](crate::params) macro from Rust
//!   values; results are read from a [`Row`] with [`Row::get`].
//! - Integers are `i64` on both sides (`BIGINT` in the PostgreSQL schema); `SUM` over
//!   integers, which PostgreSQL answers as `numeric`, reads back as an integer too.
//! - Unique-key violations become [`StoreError::Conflict`]; a lost connection, a deadlock
//!   or a serialization failure becomes [`StoreError::Unavailable`] (safe to retry).
//!
//! Where the dialects truly differ, callers branch on [`Conn::dialect`].

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{StoreError, StoreResult};

/// Which database a [`Conn`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A query parameter: an integer, text or bytes, each possibly NULL (a typed NULL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
}

/// What SQL type a [`Param`] carries, known even when it is NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Blob,
}

impl Param<'_> {
    fn kind(&self) -> Kind {
        match self {
            Param::Int(_) => Kind::Int,
            Param::Text(_) => Kind::Text,
            Param::Blob(_) => Kind::Blob,
        }
    }
}

/// Rust values that can be query parameters.
pub trait ToParam {
    const KIND: Kind;
    fn to_param(&self) -> Param<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            const KIND: Kind = Kind::Int;
            fn to_param(&self) -> Param<'_> {
                Param::Int(Some(*self as i64))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, usize, u16, u8);

impl ToParam for bool {
    const KIND: Kind = Kind::Int;
    fn to_param(&self) -> Param<'_> {
        Param::Int(Some(*self as i64))
    }
}

impl ToParam for str {
    const KIND: Kind = Kind::Text;
    fn to_param(&self) -> Param<'_> {
        Param::Text(Some(self))
    }
}

impl ToParam for String {
    const KIND: Kind = Kind::Text;
    fn to_param(&self) -> Param<'_> {
        Param::Text(Some(self))
    }
}

impl ToParam for [u8] {
    const KIND: Kind = Kind::Blob;
    fn to_param(&self) -> Param<'_> {
        Param::Blob(Some(self))
    }
}

impl ToParam for Vec<u8> {
    const KIND: Kind = Kind::Blob;
    fn to_param(&self) -> Param<'_> {
        Param::Blob(Some(self))
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    const KIND: Kind = T::KIND;
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    const KIND: Kind = T::KIND;
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(v) => v.to_param(),
            None => match T::KIND {
                Kind::Int => Param::Int(None),
                Kind::Text => Param::Text(None),
                Kind::Blob => Param::Blob(None),
            },
        }
    }
}

/// Builds a `&[Param]` from values: `params![team_id, now, key]` (each by reference).
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[$crate::sql::conn::Param]
    };
    ($($x:expr),+ $(,)?) => {
        &[$($crate::sql::conn::ToParam::to_param(&$x)),+][..]
    };
}

/// A connection of either backend, borrowed for one job or one read.
#[derive(Clone, Copy)]
pub enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgConn),
}

/// A PostgreSQL connection with its prepared statements. Used from one thread at a time
/// (the writer's, or a reader's while it holds it); `RefCell` because `postgres::Client`
/// needs `&mut` for every call while the store's SQL functions share `&Conn`.
pub struct PgConn {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl PgConn {
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
        }
    }

    /// Whether the connection is gone (it is then replaced, never reused).
    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// Runs `op` with the (cached) prepared statement for `sql` and its arguments.
    fn call<R>(
        &self,
        sql: &str,
        params: &[Param],
        op: impl FnOnce(
            &mut postgres::Client,
            &postgres::Statement,
            &[&(dyn postgres::types::ToSql + Sync)],
        ) -> Result<R, postgres::Error>,
    ) -> StoreResult<R> {
        let st = self.statement(sql, params)?;
        let args: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        op(&mut self.client.borrow_mut(), &st, &args).map_err(|e| pg_error(e, sql))
    }

    fn statement(&self, sql: &str, params: &[Param]) -> StoreResult<postgres::Statement> {
        let text = pg_sql(sql, params);
        if let Some(st) = self.statements.borrow().get(&text) {
            return Ok(st.clone());
        }
        let st = self
            .client
            .borrow_mut()
            .prepare(&text)
            .map_err(|e| pg_error(e, &text))?;
        self.statements.borrow_mut().insert(text, st.clone());
        Ok(st)
    }
}

/// A result row of either backend.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as a `T`.
    pub fn get<T: FromCol>(&self, i: usize) -> StoreResult<T> {
        match self {
            Row::Sqlite(r) => T::from_sqlite(r, i),
            Row::Postgres(r) => T::from_pg(r, i),
        }
    }
}

/// Types a column can be read as.
pub trait FromCol: Sized {
    fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self>;
    fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self>;
}

fn column_error(i: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("column {i}: {e}"))
}

/// Any integer PostgreSQL may answer with: `int2/4/8`, `numeric` (from `SUM`), `bool`.
struct PgInt(Option<i64>);

impl<'a> postgres::types::FromSql<'a> for PgInt {
    fn from_sql(
        ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        let v = match *ty {
            Type::INT8 => i64::from_sql(ty, raw)?,
            Type::INT4 => i32::from_sql(ty, raw)? as i64,
            Type::INT2 => i16::from_sql(ty, raw)? as i64,
            Type::BOOL => bool::from_sql(ty, raw)? as i64,
            Type::NUMERIC => numeric_to_i64(raw)?,
            _ => return Err(format!("{ty} is not an integer").into()),
        };
        Ok(PgInt(Some(v)))
    }

    fn from_sql_null(
        _: &postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgInt(None))
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::NUMERIC
        )
    }
}

/// Decodes PostgreSQL's binary `numeric` (base-10000 digits) holding an integer.
fn numeric_to_i64(raw: &[u8]) -> Result<i64, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "numeric: truncated".into())
    };
    let (ndigits, weight, sign) = (word(0)?, word(1)?, word(2)? as u16);
    if sign == 0xC000 {
        return Err("numeric: NaN".into());
    }
    let mut v: i128 = 0;
    for d in 0..ndigits.max(0) as usize {
        let pos = weight as i32 - d as i32;
        if pos < 0 {
            break; // fractional digits: integers only here
        }
        v += word(4 + d)? as i128 * 10_000i128.pow(pos as u32);
    }
    if sign == 0x4000 {
        v = -v;
    }
    i64::try_from(v).map_err(|_| "numeric: out of range for i64".into())
}

impl FromCol for Option<i64> {
    fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
        r.get(i).map_err(|e| column_error(i, e))
    }
    fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
        r.try_get::<_, PgInt>(i)
            .map(|v| v.0)
            .map_err(|e| column_error(i, e))
    }
}

impl FromCol for i64 {
    fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
        r.get(i).map_err(|e| column_error(i, e))
    }
    fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
        Option::<i64>::from_pg(r, i)?.ok_or_else(|| column_error(i, "unexpected NULL"))
    }
}

macro_rules! narrow_int_col {
    ($($t:ty),*) => {$(
        impl FromCol for $t {
            fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
                <$t>::try_from(i64::from_sqlite(r, i)?).map_err(|e| column_error(i, e))
            }
            fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
                <$t>::try_from(i64::from_pg(r, i)?).map_err(|e| column_error(i, e))
            }
        }
        impl FromCol for Option<$t> {
            fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
                Option::<i64>::from_sqlite(r, i)?
                    .map(|v| <$t>::try_from(v).map_err(|e| column_error(i, e)))
                    .transpose()
            }
            fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
                Option::<i64>::from_pg(r, i)?
                    .map(|v| <$t>::try_from(v).map_err(|e| column_error(i, e)))
                    .transpose()
            }
        }
    )*};
}
narrow_int_col!(i32, u32, u64, usize, u16);

impl FromCol for bool {
    fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
        Ok(i64::from_sqlite(r, i)? != 0)
    }
    fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
        Ok(i64::from_pg(r, i)? != 0)
    }
}

impl FromCol for Option<bool> {
    fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
        Ok(Option::<i64>::from_sqlite(r, i)?.map(|v| v != 0))
    }
    fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
        Ok(Option::<i64>::from_pg(r, i)?.map(|v| v != 0))
    }
}

macro_rules! plain_col {
    ($($t:ty),*) => {$(
        impl FromCol for $t {
            fn from_sqlite(r: &rusqlite::Row, i: usize) -> StoreResult<Self> {
                r.get(i).map_err(|e| column_error(i, e))
            }
            fn from_pg(r: &postgres::Row, i: usize) -> StoreResult<Self> {
                r.try_get(i).map_err(|e| column_error(i, e))
            }
        }
    )*};
}
plain_col!(String, Option<String>, Vec<u8>, Option<Vec<u8>>);

impl<'a> Conn<'a> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Rows changed on this connection since it opened (SQLite; `None` on PostgreSQL).
    pub fn total_changes(&self) -> Option<u64> {
        match self {
            Conn::Sqlite(c) => Some(c.total_changes()),
            Conn::Postgres(_) => None,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param]) -> StoreResult<usize> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql).map_err(sqlite_error)?;
                st.execute(rusqlite::params_from_iter(params.iter().map(SqliteParam)))
                    .map_err(sqlite_error)
            }
            Conn::Postgres(c) => c
                .call(sql, params, |client, st, args| client.execute(st, args))
                .map(|n| n as usize),
        }
    }

    /// Inserts one row into a table keyed by `seq` and returns the row's `seq`. SQLite runs
    /// the plain INSERT and reads the rowid back: a `RETURNING` clause makes it open a
    /// statement journal and copy every page the insert touches into it first.
    pub fn insert_seq(&self, sql: &str, params: &[Param]) -> StoreResult<i64> {
        match self {
            Conn::Sqlite(c) => {
                self.execute(sql, params)?;
                Ok(c.last_insert_rowid())
            }
            Conn::Postgres(_) => {
                self.query_one(&format!("{sql} RETURNING seq"), params, |r| r.get(0))
            }
        }
    }

    /// Runs a query and maps every row.
    pub fn query<T>(
        &self,
        sql: &str,
        params: &[Param],
        mut f: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql).map_err(sqlite_error)?;
                let mut rows = st
                    .query(rusqlite::params_from_iter(params.iter().map(SqliteParam)))
                    .map_err(sqlite_error)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(sqlite_error)? {
                    out.push(f(&Row::Sqlite(r))?);
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let rows = c.call(sql, params, |client, st, args| client.query(st, args))?;
                rows.iter().map(|r| f(&Row::Postgres(r))).collect()
            }
        }
    }

    /// The first row, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        // Only the first row is read; the rest (if any) are ignored, as `query_row` does.
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql).map_err(sqlite_error)?;
                let mut rows = st
                    .query(rusqlite::params_from_iter(params.iter().map(SqliteParam)))
                    .map_err(sqlite_error)?;
                match rows.next().map_err(sqlite_error)? {
                    Some(r) => f(&Row::Sqlite(r)).map(Some),
                    None => Ok(None),
                }
            }
            Conn::Postgres(c) => {
                let rows = c.call(sql, params, |client, st, args| client.query(st, args))?;
                rows.first().map(|r| f(&Row::Postgres(r))).transpose()
            }
        }
    }

    /// The first row; an error if there is none.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Internal(format!("no row returned by: {sql}")))
    }

    /// Runs one or more statements without parameters (DDL, transaction control).
    pub fn batch(&self, sql: &str) -> StoreResult<()> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_error),
            Conn::Postgres(c) => c
                .client
                .borrow_mut()
                .batch_execute(sql)
                .map_err(|e| pg_error(e, sql)),
        }
    }
}

struct SqliteParam<'p, 'a>(&'p Param<'a>);

impl rusqlite::ToSql for SqliteParam<'_, '_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Param::Int(Some(v)) => ValueRef::Integer(*v),
            Param::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            Param::Blob(Some(b)) => ValueRef::Blob(b),
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => ValueRef::Null,
        }))
    }
}

impl postgres::types::ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Int(Some(v)) => v.to_sql(ty, out),
            Param::Text(Some(s)) => s.to_sql(ty, out),
            Param::Blob(Some(b)) => b.to_sql(ty, out),
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => {
                Ok(postgres::types::IsNull::Yes)
            }
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// Rewrites `?N` (and bare `?`) placeholders as `$N::type`, leaving quoted text alone.
pub fn pg_sql(sql: &str, params: &[Param]) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 1usize;
    let mut quote: Option<char> = None;
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            out.push(ch);
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '\'' | '"' => {
                quote = Some(ch);
                out.push(ch);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = if digits.is_empty() {
                    let n = next_bare;
                    next_bare += 1;
                    n
                } else {
                    digits.parse().unwrap_or(0)
                };
                out.push('$');
                out.push_str(&n.to_string());
                match params.get(n.wrapping_sub(1)).map(Param::kind) {
                    Some(Kind::Int) => out.push_str("::int8"),
                    Some(Kind::Text) => out.push_str("::text"),
                    Some(Kind::Blob) => out.push_str("::bytea"),
                    None => {}
                }
            }
            _ => out.push(ch),
        }
    }
    out
}

/// SQLite errors in the store's terms.
pub fn sqlite_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        {
            return StoreError::Conflict(e.to_string());
        }
    }
    StoreError::from(e)
}

/// PostgreSQL errors in the store's terms.
pub fn pg_error(e: postgres::Error, sql: &str) -> StoreError {
    use postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_string());
        }
        if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || code.code().starts_with("08")
        {
            return StoreError::Unavailable(format!("PostgreSQL: {}", db.message()));
        }
        let statement: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        return StoreError::Internal(format!(
            "PostgreSQL: {} ({}) in: {}",
            db.message(),
            code.code(),
            statement.chars().take(300).collect::<String>()
        ));
    }
    // No server error: the connection failed or closed.
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_typed_dollar_parameters() {
        let p = [
            Param::Text(Some("T1")),
            Param::Int(None),
            Param::Blob(Some(b"x")),
        ];
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c > ?2 OR ?2 IS NULL AND d = ?3", &p),
            "SELECT a FROM t WHERE b = $1::text AND c > $2::int8 OR $2::int8 IS NULL AND d = $3::bytea"
        );
    }

    #[test]
    fn question_marks_inside_quotes_are_left_alone() {
        let p = [Param::Int(Some(1))];
        assert_eq!(
            pg_sql("SELECT '?1', \"a?\" FROM t WHERE x = ?", &p),
            "SELECT '?1', \"a?\" FROM t WHERE x = $1::int8"
        );
    }

    #[test]
    fn params_macro_keeps_the_type_of_a_null() {
        let none: Option<String> = None;
        let n: Option<i64> = None;
        let p = params![none, n, 5u32, "x", true];
        assert_eq!(
            p,
            &[
                Param::Text(None),
                Param::Int(None),
                Param::Int(Some(5)),
                Param::Text(Some("x")),
                Param::Int(Some(1))
            ]
        );
    }

    #[test]
    fn numeric_integers_decode() {
        // 123456789 = [1][2345][6789] in base 10000, weight 2, positive.
        let mut raw = Vec::new();
        for w in [3i16, 2, 0, 0, 1, 2345, 6789] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_to_i64(&raw).unwrap(), 123_456_789);
        let zero: Vec<u8> = [0i16, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric_to_i64(&zero).unwrap(), 0);
        let mut neg = Vec::new();
        for w in [1i16, 0, 0x4000u16 as i16, 0, 42] {
            neg.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_to_i64(&neg).unwrap(), -42);
    }

    #[test]
    fn sqlite_reads_and_writes_through_conn() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let conn = Conn::Sqlite(&c);
        conn.batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, b BLOB)")
            .unwrap();
        let blob = vec![1u8, 2];
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            params!["a", 7i64, blob],
        )
        .unwrap();
        let dup = conn.execute("INSERT INTO t VALUES (?1, ?2, NULL)", params!["a", 1i64]);
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
        let got: (String, i64, Vec<u8>) = conn
            .query_one("SELECT k, v, b FROM t", params![], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(got, ("a".into(), 7, vec![1, 2]));
        let none: Option<i64> = conn
            .query_opt("SELECT v FROM t WHERE k = ?1", params!["zz"], |r| r.get(0))
            .unwrap();
        assert_eq!(none, None);
    }
}
