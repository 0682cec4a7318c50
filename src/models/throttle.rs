//! Throttle counters (`login_throttle`): failures counted per key in a window, and the time a key stays
//! locked. Keys are opaque here (`kind:hmac`, made by `auth::throttle`); the counting rules live there too.

use diesel::prelude::*;

use crate::db::schema::login_throttle;
use crate::db::DbConn;

/// One key's count: failures since `window_start`, and the time its lock ends (0 or past: not locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = login_throttle)]
pub struct Counter {
    pub failures: i64,
    pub window_start: i64,
    pub locked_until: i64,
}

#[derive(Insertable)]
#[diesel(table_name = login_throttle)]
pub struct NewCounter<'a> {
    pub throttle_key: &'a str,
    pub failures: i64,
    pub window_start: i64,
    pub locked_until: i64,
}

/// When the key's lock ends, if the key has a row.
pub fn locked_until(conn: &mut DbConn, key: &str) -> QueryResult<Option<i64>> {
    login_throttle::table
        .find(key)
        .select(login_throttle::locked_until)
        .first(conn)
        .optional()
}

pub fn find(conn: &mut DbConn, key: &str) -> QueryResult<Option<Counter>> {
    login_throttle::table
        .find(key)
        .select(Counter::as_select())
        .first(conn)
        .optional()
}

pub fn insert(conn: &mut DbConn, new: &NewCounter<'_>) -> QueryResult<()> {
    diesel::insert_into(login_throttle::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Overwrites an existing key's count.
pub fn update(conn: &mut DbConn, key: &str, counter: Counter) -> QueryResult<usize> {
    diesel::update(login_throttle::table.find(key))
        .set((
            login_throttle::failures.eq(counter.failures),
            login_throttle::window_start.eq(counter.window_start),
            login_throttle::locked_until.eq(counter.locked_until),
        ))
        .execute(conn)
}

pub fn delete(conn: &mut DbConn, key: &str) -> QueryResult<usize> {
    diesel::delete(login_throttle::table.find(key)).execute(conn)
}

/// Deletes the rows whose key starts with `key_prefix`, whose lock has ended by `now` and whose window
/// opened before `window_opened_before`. The prefix is matched with `LIKE`: it must hold no `%` or `_`.
pub fn delete_expired(
    conn: &mut DbConn,
    key_prefix: &str,
    now: i64,
    window_opened_before: i64,
) -> QueryResult<usize> {
    diesel::delete(
        login_throttle::table
            .filter(login_throttle::throttle_key.like(format!("{key_prefix}%")))
            .filter(login_throttle::locked_until.le(now))
            .filter(login_throttle::window_start.lt(window_opened_before)),
    )
    .execute(conn)
}
