//! Accounts and authentication, below the web layer: passwords, sessions, throttling, account changes.

pub mod accounts;
pub mod invitations;
pub mod login;
pub mod membership;
pub mod password;
pub mod registration;
pub mod sessions;
pub mod throttle;
