//! Login throttling per account and per client address: a few failures per window, then an exponential lock.

use diesel::prelude::*;

use crate::db::schema::login_throttle;
use crate::db::DbConn;

/// A lock never lasts longer than this.
const MAX_LOCK_SECS: i64 = 3600;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: i64,
    pub window_secs: i64,
}

pub fn account_key(email: &str) -> String {
    format!("account:{}", crate::models::account::normalize_email(email))
}

pub fn address_key(addr: &str) -> String {
    format!("address:{addr}")
}

/// True while the key is locked.
pub fn is_locked(conn: &mut DbConn, key: &str, now: i64) -> QueryResult<bool> {
    let until: Option<i64> = login_throttle::table
        .find(key)
        .select(login_throttle::locked_until)
        .first(conn)
        .optional()?;
    Ok(until.is_some_and(|u| u > now))
}

/// Counts one failure; locks the key once `max_failures` fall in one window, doubling the lock each time after.
pub fn record_failure(conn: &mut DbConn, key: &str, policy: Policy, now: i64) -> QueryResult<()> {
    let row: Option<(i64, i64, i64)> = login_throttle::table
        .find(key)
        .select((
            login_throttle::failures,
            login_throttle::window_start,
            login_throttle::locked_until,
        ))
        .first(conn)
        .optional()?;
    let (failures, window_start) = match row {
        Some((f, start, until)) if now - start <= policy.window_secs || until > now => {
            (f + 1, start)
        }
        _ => (1, now),
    };
    let locked_until = if failures >= policy.max_failures {
        let doublings = (failures - policy.max_failures).min(12) as u32;
        now + (policy.window_secs.saturating_mul(1 << doublings)).min(MAX_LOCK_SECS)
    } else {
        0
    };
    if row.is_some() {
        diesel::update(login_throttle::table.find(key))
            .set((
                login_throttle::failures.eq(failures),
                login_throttle::window_start.eq(window_start),
                login_throttle::locked_until.eq(locked_until),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(login_throttle::table)
            .values((
                login_throttle::throttle_key.eq(key),
                login_throttle::failures.eq(failures),
                login_throttle::window_start.eq(window_start),
                login_throttle::locked_until.eq(locked_until),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn clear(conn: &mut DbConn, key: &str) -> QueryResult<()> {
    diesel::delete(login_throttle::table.find(key)).execute(conn)?;
    Ok(())
}
