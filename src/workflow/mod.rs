//! Workflow rules: the PCII lifecycle, who may move a submission where, and what each step records.

pub mod access;
pub mod access_requests;
pub mod blobs;
pub mod cases;
pub mod content;
pub mod custody;
pub mod decisions;
pub mod destruction;
pub mod documents;
pub mod intake;
pub mod lifecycle;
pub mod messages;
pub mod notifications;
pub mod operations;
pub mod package;
pub mod pending_mail;
pub mod sealed_text;
pub mod unconfirmed_purge;
