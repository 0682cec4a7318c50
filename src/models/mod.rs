//! Diesel models: one file per table family, read structs apart from insertables, and the queries on them.

pub mod access_request;
pub mod account;
pub mod account_token;
pub mod attachment;
pub mod blob;
pub mod blob_deletion;
pub mod data_key;
pub mod destruction;
pub mod event;
pub mod grant;
pub mod invitation;
pub mod lease;
pub mod notice;
pub mod notification;
pub mod organisation;
pub mod passkey;
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
