//! Accounts and authentication, below the web layer: passwords, sessions, throttling, account changes.
//!
//! Nothing here reads a clock: every rule that depends on time (expiries, throttles, timestamps) takes `now`,
//! in Unix seconds, from its caller, which reads the portal's [`crate::clock::Clock`].

pub mod accounts;
pub mod invitations;
pub mod login;
pub mod membership;
pub mod passkeys;
pub mod password;
pub mod registration;
pub mod second_factor;
pub mod sessions;
pub mod throttle;
pub mod unconfirmed;
