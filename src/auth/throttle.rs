//! Throttling of sign-in failures, password checks, registrations and reset requests.
//!
//! Sign-in failures are counted per (account, client address) and per client address, never per account
//! alone: a stranger who types someone's email five times locks out only itself, and the real user,
//! from an address that has not failed, still signs in. After `max_failures` in one window a key is locked,
//! and each further failure doubles the lock (progressive delay, at most an hour).
//!
//! A failure within one window after a lock ended continues the run that caused it, so the lock it sets is twice the
//! last one (callers refuse without counting while a key is locked, so a run is only ever continued after its lock);
//! a window later with no failure, the run is over and the count starts again.
//!
//! The table never holds what was typed: each key is an HMAC of the identifier under a key derived from
//! the portal's secret, and rows are forgotten once their window has closed and their lock ended a window ago.
//!
//! A "client address" here is the party behind it ([`network`]): an IPv4 address, or an IPv6 address's /64, since
//! whoever holds one address of a /64 can use all of them. Sign-in attempts and reset requests are also counted per
//! IPv6 /48 ([`site`]), whose 65,536 /64s one party can hold.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::DbConn;
use crate::error::AppResult;
use crate::models::throttle as model;

/// A lock never lasts longer than this.
const MAX_LOCK_SECS: i64 = 3600;

/// How many times an address's allowance the IPv6 /48 it is in gets ([`site`]).
pub const SITE_FACTOR: i64 = 16;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: i64,
    pub window_secs: i64,
}

impl Policy {
    /// Wrong current passwords typed by a signed-in person (a password change, removing a factor): as many as failed
    /// sign-ins, in the same window.
    pub fn current_password(s: &crate::config::Settings) -> Policy {
        Policy {
            max_failures: s.login_max_failures,
            window_secs: s.login_window_seconds,
        }
    }

    /// Current-password checks by a signed-in person, right or wrong (each one costs an argon2 run on the workers
    /// that every sign-in shares): a few a day are what a person needs, so a signed-in account — a stranger's
    /// fresh one included — cannot use the password form to keep the workers busy.
    pub const CURRENT_PASSWORD_CHECKS: Policy = Policy {
        max_failures: 10,
        window_secs: 3600,
    };

    /// This per-address limit counted over a whole IPv6 /48 ([`site`]): [`SITE_FACTOR`] times the allowance.
    pub fn for_site(self) -> Policy {
        Policy {
            max_failures: self.max_failures.saturating_mul(SITE_FACTOR),
            ..self
        }
    }
}

/// The HMAC key for throttle identifiers.
pub struct ThrottleKey([u8; 32]);

impl ThrottleKey {
    /// Derived from the portal's secret (so every instance sharing `keys/` computes the same keys).
    pub fn derive(secret: &[u8]) -> ThrottleKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"pcii-portal throttle key v1");
        ThrottleKey(mac.finalize().into_bytes().into())
    }

    /// `kind:` followed by the hex HMAC of the parts (each length-prefixed, so parts cannot run together).
    fn key(&self, kind: &str, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(kind.as_bytes());
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        format!("{kind}:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Sign-in failures for one account from one client network (see [`network`]).
    pub fn login_account_address(&self, email: &str, addr: &str) -> String {
        let email = crate::models::account::normalize_email(email);
        self.key("login-aa", &[&email, &network(addr)])
    }

    /// Sign-in failures from one client network, whatever the account.
    pub fn login_address(&self, addr: &str) -> String {
        self.key("login-a", &[&network(addr)])
    }

    /// Sign-in attempts from one client network, right or wrong.
    pub fn login_attempts(&self, addr: &str) -> String {
        self.key("login-rate", &[&network(addr)])
    }

    /// Sign-in attempts from the IPv6 /48 an address is in ([`site`]; none for IPv4), right or wrong.
    pub fn login_attempts_site(&self, addr: &str) -> Option<String> {
        site(addr).map(|site| self.key("login-rate48", &[&site]))
    }

    /// Wrong current passwords typed by one signed-in account.
    pub fn password_check(&self, user_id: &str) -> String {
        self.key("pwcheck", &[user_id])
    }

    /// Current-password checks by one signed-in account, right or wrong ([`Policy::CURRENT_PASSWORD_CHECKS`]).
    pub fn password_checks_made(&self, user_id: &str) -> String {
        self.key("pwcheck-rate", &[user_id])
    }

    /// Wrong second-factor answers (codes, recovery codes, passkey assertions) for one account, from anywhere: a
    /// code is six digits, so guessing is bounded per account, whoever guesses.
    pub fn second_factor_account(&self, user_id: &str) -> String {
        self.key("2fa-acct", &[user_id])
    }

    /// Wrong second-factor answers from one client network, whatever the account.
    pub fn second_factor_address(&self, addr: &str) -> String {
        self.key("2fa-addr", &[&network(addr)])
    }

    /// Registrations from one client network (see [`network`]).
    pub fn registration(&self, addr: &str) -> String {
        self.key("register", &[&network(addr)])
    }

    /// Registrations from every address together.
    pub fn registrations_overall(&self) -> String {
        self.key("register-all", &[])
    }

    /// Password-reset requests from one client network.
    pub fn password_reset(&self, addr: &str) -> String {
        self.key("reset", &[&network(addr)])
    }

    /// Password-reset requests from the IPv6 /48 an address is in ([`site`]; none for IPv4).
    pub fn password_reset_site(&self, addr: &str) -> Option<String> {
        site(addr).map(|site| self.key("reset48", &[&site]))
    }

    /// An authorized user's access requests for numbers that are not validated PCII's.
    pub fn access_request_misses(&self, user_id: &str) -> String {
        self.key("ar-miss", &[user_id])
    }
}

/// What one party is taken to control of a client address: an IPv4 address itself, an IPv6 address's /64 (the
/// least a subscriber or a host is given, so its addresses are one network). An IPv4-mapped IPv6 address counts as
/// its IPv4 address; anything else unparsable as itself.
pub fn network(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => addr.to_string(),
    }
}

/// The IPv6 /48 an address is in (none for IPv4, an IPv4-mapped address, or anything unparsable): a site's
/// routing prefix, which a tunnel broker or a hosting plan hands out for free. Its 65,536 /64s are as many
/// [`network`]s, so the limits that guard shared work (sign-in attempts, which cost an argon2 run each; reset
/// requests) also count the /48 as one, with [`SITE_FACTOR`] times the allowance.
pub fn site(addr: &str) -> Option<String> {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
        _ => None,
    }
}

/// A per-address limit and, for an IPv6 address, the same over its /48 ([`site`], [`Policy::for_site`]): the
/// limits to give [`allow_all`].
pub fn per_address_and_site<'a>(
    per_address: &'a str,
    per_site: Option<&'a str>,
    policy: Policy,
) -> Vec<(&'a str, Policy)> {
    let mut limits = vec![(per_address, policy)];
    limits.extend(per_site.map(|key| (key, policy.for_site())));
    limits
}

/// True while the key is locked.
pub fn is_locked(conn: &mut DbConn, key: &str, now: i64) -> AppResult<bool> {
    let until = model::locked_until(conn, key)?;
    Ok(until.is_some_and(|u| u > now))
}

/// Counts one failure; locks the key once `max_failures` fall in one window, and each failure after that lock (within
/// a window of its end) doubles the lock, up to an hour. Returns how many failures the run now holds.
pub fn record_failure(conn: &mut DbConn, key: &str, policy: Policy, now: i64) -> AppResult<i64> {
    count(conn, key, policy, now, now - policy.window_secs, true)
}

/// Counts one failure or attempt. The run goes on while the window is open or the lock ended after
/// `lock_ended_after`; otherwise it restarts at one. A count past the limit locks the key for a window, or, when it
/// `doubles`, for a window doubled once per count past the limit (up to an hour).
fn count(
    conn: &mut DbConn,
    key: &str,
    policy: Policy,
    now: i64,
    lock_ended_after: i64,
    doubles: bool,
) -> AppResult<i64> {
    // Each step is one statement, so requests counting the same key at once (a flood from one address) neither
    // collide on its row nor lose a count.
    model::insert_if_absent(conn, key, now)?;
    let window_opened_after = now - policy.window_secs;
    if !model::count_in_window(conn, key, window_opened_after, lock_ended_after)?
        && !model::restart_window(conn, key, now, window_opened_after, lock_ended_after)?
    {
        // Another request restarted the run between the two statements: this one counts in it.
        model::count_in_window(conn, key, window_opened_after, lock_ended_after)?;
    }
    let failures = model::find(conn, key)?.map_or(1, |c| c.failures);
    if failures >= policy.max_failures {
        let doublings = if doubles {
            (failures - policy.max_failures).min(12) as u32
        } else {
            0
        };
        let until = now + (policy.window_secs.saturating_mul(1 << doublings)).min(MAX_LOCK_SECS);
        model::lock_until(conn, key, until)?;
    }
    let kind = key.split(':').next().unwrap_or(key);
    forget_expired(conn, kind, now, policy.window_secs)?;
    Ok(failures)
}

/// A rate limit on an action that is counted whether or not it succeeds (registrations, reset requests):
/// `false` when the key is locked; otherwise the attempt is counted and `true`.
pub fn allow(conn: &mut DbConn, key: &str, policy: Policy, now: i64) -> AppResult<bool> {
    allow_all(conn, &[(key, policy)], now)
}

/// Several rate limits on one action (per network and over all): `false`, nothing counted, when any key is
/// locked; otherwise the attempt is counted under every key, and `true` unless a count went past its limit (requests
/// at once can all find a key unlocked just before the last allowed one locks it: those past the limit are refused).
/// A rate limit does not double, not even for requests past the limit counted at once: its lock is one window, and
/// once it has ended the count starts again, so the next attempt is allowed.
pub fn allow_all(conn: &mut DbConn, limits: &[(&str, Policy)], now: i64) -> AppResult<bool> {
    for (key, _) in limits {
        if is_locked(conn, key, now)? {
            return Ok(false);
        }
    }
    let mut within = true;
    for (key, policy) in limits {
        within &= count(conn, key, *policy, now, now, false)? <= policy.max_failures;
    }
    Ok(within)
}

pub fn clear(conn: &mut DbConn, key: &str) -> AppResult<()> {
    model::delete(conn, key)?;
    Ok(())
}

/// How often a kind's finished rows are forgotten ([`forget_expired`]).
const FORGET_EVERY_SECS: i64 = 60;

/// Forgets the rows of one kind whose window has closed and whose lock ended a window ago: they would count
/// nothing any more (a failure after them starts a new run).
///
/// Garbage collection, not a rule (a closed window counts nothing whether or not its row is gone), and it reads every
/// row of the kind (the key's prefix is matched with `LIKE`, which no index serves), whose number whoever is
/// throttled can grow: so it runs for a kind at most once a minute, not on every counted attempt. When it last ran is
/// a row of the table itself (`~forgotten:<kind>`, matched by no kind's prefix), so that every instance sharing the
/// database shares it.
pub fn forget_expired(
    conn: &mut DbConn,
    kind: &str,
    now: i64,
    window_secs: i64,
) -> AppResult<usize> {
    let marker = format!("~forgotten:{kind}");
    if let Some(last) = model::find(conn, &marker)? {
        // (A clock set back runs it at once rather than waiting for the old time to come round again.)
        let at = last.window_start;
        if (at..at.saturating_add(FORGET_EVERY_SECS)).contains(&now) {
            return Ok(0);
        }
    }
    model::insert_if_absent(conn, &marker, now)?;
    model::stamp(conn, &marker, now)?;
    Ok(model::delete_expired(
        conn,
        &format!("{kind}:"),
        now - window_secs,
        now - window_secs,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hide_the_identifier_and_depend_on_the_secret() {
        let a = ThrottleKey::derive(b"secret one");
        let b = ThrottleKey::derive(b"secret two");
        let k = a.login_account_address("Ann@Example.com", "10.0.0.1");
        assert!(!k.contains("ann") && !k.contains("10.0.0.1"));
        assert_eq!(k, a.login_account_address("ann@example.com", "10.0.0.1"));
        assert_ne!(k, b.login_account_address("ann@example.com", "10.0.0.1"));
        assert_ne!(k, a.login_account_address("ann@example.com", "10.0.0.2"));
        // Length prefixes: ("ab", "c") and ("a", "bc") are different keys.
        assert_ne!(a.key("x", &["ab", "c"]), a.key("x", &["a", "bc"]));
    }

    #[test]
    fn an_ipv6_address_counts_by_its_64_and_an_ipv4_address_by_itself() {
        assert_eq!(network("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            network("2001:DB8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(network("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(network("198.51.100.7"), "198.51.100.7");
        assert_eq!(network("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(network("unknown"), "unknown");
        let k = ThrottleKey::derive(b"secret");
        assert_eq!(
            k.registration("2001:db8:1:2::1"),
            k.registration("2001:db8:1:2:a:b:c:d")
        );
        assert_ne!(
            k.registration("198.51.100.7"),
            k.registration("198.51.100.8")
        );
        assert_ne!(k.registration("unknown"), k.registrations_overall());
        // Every address-keyed limit counts an IPv6 /64 as one party, so rotating addresses within it buys nothing.
        let (a, b) = ("2001:db8:1:2::1", "2001:db8:1:2:a:b:c:d");
        assert_eq!(k.login_attempts(a), k.login_attempts(b));
        assert_eq!(k.login_address(a), k.login_address(b));
        assert_eq!(
            k.login_account_address("ann@acme.example", a),
            k.login_account_address("Ann@acme.example", b)
        );
        assert_eq!(k.second_factor_address(a), k.second_factor_address(b));
        assert_eq!(k.password_reset(a), k.password_reset(b));
        assert_ne!(
            k.login_attempts("198.51.100.7"),
            k.login_attempts("198.51.100.8")
        );
    }

    #[test]
    fn an_ipv6_address_s_48_is_its_site_and_ipv4_has_none() {
        assert_eq!(site("2001:db8:1:2::1").as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(
            site("2001:DB8:1:ffff::9").as_deref(),
            Some("2001:db8:1::/48")
        );
        assert_eq!(site("198.51.100.7"), None);
        assert_eq!(site("::ffff:198.51.100.7"), None);
        assert_eq!(site("unknown"), None);
        let k = ThrottleKey::derive(b"secret");
        let (a, b) = ("2001:db8:1:2::1", "2001:db8:1:3::1");
        assert_ne!(k.login_attempts(a), k.login_attempts(b));
        assert_eq!(k.login_attempts_site(a), k.login_attempts_site(b));
        assert_eq!(k.password_reset_site(a), k.password_reset_site(b));
        assert_ne!(
            k.login_attempts_site(a),
            k.login_attempts_site("2001:db8:2::1")
        );
        assert_eq!(k.login_attempts_site("198.51.100.7"), None);
        // A site's keys are kinds of their own: the once-a-minute clean-up of one kind never matches the other's.
        let site_key = k.login_attempts_site(a).unwrap();
        assert!(site_key.starts_with("login-rate48:"), "{site_key}");
        let limits = per_address_and_site(
            "x",
            Some(&site_key),
            Policy {
                max_failures: 3,
                window_secs: 60,
            },
        );
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[1].1.max_failures, 3 * SITE_FACTOR);
        assert_eq!(
            per_address_and_site(
                "x",
                None,
                Policy {
                    max_failures: 3,
                    window_secs: 60
                }
            )
            .len(),
            1
        );
    }
}
