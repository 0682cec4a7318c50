//! Times are stored as Unix seconds (UTC) on both backends; these format and parse them for people.

use chrono::{DateTime, NaiveDate, Utc};

pub fn datetime(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

pub fn date(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

pub fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

/// Parses `YYYY-MM-DD` (as an `<input type=date>` sends it) to the Unix time of that day's midnight UTC.
pub fn parse_date(s: &str) -> Option<i64> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
}

pub const DAY: i64 = 86_400;

/// Whole days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: i64, to: i64) -> i64 {
    (to - from).div_euclid(DAY)
}
