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

/// Creates the key's row with no failures, unless it exists (a concurrent request may have made it: its
/// unique-key refusal is rolled back to a savepoint, so the caller's transaction goes on).
pub fn insert_if_absent(conn: &mut DbConn, key: &str, now: i64) -> QueryResult<()> {
    let inserted = conn.transaction(|tx| {
        insert(
            tx,
            &NewCounter {
                throttle_key: key,
                failures: 0,
                window_start: now,
                locked_until: 0,
            },
        )
    });
    match inserted {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(()),
        other => other,
    }
}

/// Adds one failure in one statement when the key's run goes on: its window opened at or after
/// `window_opened_after`, or its lock ends after `lock_ended_after` (so a failure soon after a lock ended continues
/// the run that caused it). No count is lost to a concurrent request. Returns whether it did (`false`: the run is
/// over, see [`restart_window`]).
pub fn count_in_window(
    conn: &mut DbConn,
    key: &str,
    window_opened_after: i64,
    lock_ended_after: i64,
) -> QueryResult<bool> {
    use login_throttle::dsl as t;
    diesel::update(
        t::login_throttle.find(key).filter(
            t::window_start
                .ge(window_opened_after)
                .or(t::locked_until.gt(lock_ended_after)),
        ),
    )
    .set(t::failures.eq(t::failures + 1))
    .execute(conn)
    .map(|n| n > 0)
}

/// Sets a row's time (a marker's: when a kind was last cleaned), whatever it held.
pub fn stamp(conn: &mut DbConn, key: &str, now: i64) -> QueryResult<usize> {
    use login_throttle::dsl as t;
    diesel::update(t::login_throttle.find(key))
        .set((t::failures.eq(1), t::window_start.eq(now)))
        .execute(conn)
}

/// Starts a new window holding this one failure, if the key's run is still over (the arguments as
/// [`count_in_window`]'s): `false` when a concurrent count restarted it first (then count in that window).
pub fn restart_window(
    conn: &mut DbConn,
    key: &str,
    now: i64,
    window_opened_after: i64,
    lock_ended_after: i64,
) -> QueryResult<bool> {
    use login_throttle::dsl as t;
    diesel::update(
        t::login_throttle.find(key).filter(
            t::window_start
                .lt(window_opened_after)
                .and(t::locked_until.le(lock_ended_after)),
        ),
    )
    .set((t::failures.eq(1), t::window_start.eq(now)))
    .execute(conn)
    .map(|n| n > 0)
}

/// Extends the key's lock to `until` (never shortens one a concurrent request set longer).
pub fn lock_until(conn: &mut DbConn, key: &str, until: i64) -> QueryResult<usize> {
    use login_throttle::dsl as t;
    diesel::update(
        t::login_throttle
            .find(key)
            .filter(t::locked_until.lt(until)),
    )
    .set(t::locked_until.eq(until))
    .execute(conn)
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

/// Deletes the rows whose key starts with `key_prefix`, whose lock ended by `lock_ended_by` and whose window
/// opened before `window_opened_before`. The prefix is matched with `LIKE`: it must hold no `%` or `_`.
pub fn delete_expired(
    conn: &mut DbConn,
    key_prefix: &str,
    lock_ended_by: i64,
    window_opened_before: i64,
) -> QueryResult<usize> {
    diesel::delete(
        login_throttle::table
            .filter(login_throttle::throttle_key.like(format!("{key_prefix}%")))
            .filter(login_throttle::locked_until.le(lock_ended_by))
            .filter(login_throttle::window_start.lt(window_opened_before)),
    )
    .execute(conn)
}
