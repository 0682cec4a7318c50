//! Diesel models: one file per table family, read structs apart from insertables, and the queries on them.

pub mod access_request;
pub mod account;
pub mod account_token;
pub mod attachment;
pub mod blob;
pub mod blob_deletion;
pub mod case_note;
pub mod data_key;
pub mod destruction;
pub mod event;
pub mod grant;
pub mod invitation;
pub mod lease;
pub mod merge_proposal;
pub mod message;
pub mod notice;
pub mod notification;
pub mod organisation;
pub mod passkey;
pub mod pending_mail;
pub mod people;
pub mod queue;
pub mod second_factor;
pub mod sectors;
pub mod session;
pub mod settings;
pub mod setup_token;
pub mod submission;
pub mod text_cell;
pub mod throttle;
pub mod unconfirmed;

/// A list kept to its first rows (the oldest or newest, as its query orders them), with how many there are in all, so
/// that the page showing it can say when it is cut.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Capped<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

/// A durable queue at a glance, for the operator: how many wait, since when, and the most tries any has had.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueSummary {
    pub count: i64,
    /// When the oldest waiting item was queued (Unix seconds).
    pub oldest_at: Option<i64>,
    pub most_attempts: i64,
}
