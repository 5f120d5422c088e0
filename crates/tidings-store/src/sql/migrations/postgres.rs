//! The PostgreSQL schema, version by version (see [`super`]).

use crate::StoreResult;

pub fn migrate(_client: &mut postgres::Client) -> StoreResult<i64> {
    todo!("written next")
}
