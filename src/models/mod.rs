//! Diesel models: one file per table family, read structs apart from insertables, and the queries on them.

pub mod account;
pub mod audit;
pub mod blob;
pub mod queue;
pub mod sectors;
pub mod settings;
pub mod submission;
