//! Diesel models: one file per table family, read structs apart from insertables, and the queries on them.

pub mod account;
pub mod account_token;
pub mod blob;
pub mod invitation;
pub mod organisation;
pub mod queue;
pub mod sectors;
pub mod session;
pub mod settings;
pub mod setup_token;
pub mod submission;
pub mod throttle;
