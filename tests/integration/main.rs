//! The integration tests, in one binary: each module was a file of its own under `tests/`, and each file was a
//! binary linking the whole crate. `cargo test --test integration <module>::` runs one module.

mod common;

mod access_requests;
mod audit;
mod audit_chain;
mod audit_people;
mod backup;
mod blob_store;
mod cases;
mod cli;
mod conflict_of_interest;
mod content_access;
mod faults;
mod hardening;
mod help;
mod identity;
mod intake;
mod key_custody;
mod key_protection;
mod keys_rotate;
mod lease;
mod lifecycle;
mod log_hygiene;
mod messages;
mod notifications;
mod officer_forms;
mod officer_queue;
mod operations;
mod organisations;
mod registration;
mod second_factor;
mod sessions;
mod setup;
mod signin;
mod smtp;
mod submission_form;
mod submitter_home;
mod uploads;
mod web_security;
