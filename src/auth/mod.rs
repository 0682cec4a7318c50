//! Accounts and authentication, below the web layer: passwords, sessions, throttling, account changes.

pub mod accounts;
pub mod password;
pub mod sessions;
pub mod throttle;
