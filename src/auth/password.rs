//! argon2id password hashing with the parameters from config, the password policy, and a dummy hash for
//! unknown accounts so that timing does not reveal which emails exist.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::Settings;

pub const MIN_CHARS: usize = 12;
/// Input is capped before hashing so a huge password cannot burn CPU.
pub const MAX_BYTES: usize = 256;

static COMMON: &str = include_str!("common-passwords.txt");

#[derive(Debug, Clone)]
pub struct Hasher {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist.
    dummy: String,
}

impl Hasher {
    pub fn new(settings: &Settings) -> Result<Hasher, String> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("argon2 parameters: {e}"))?;
        let mut h = Hasher {
            params,
            dummy: String::new(),
        };
        h.dummy = h
            .hash(&crate::db::new_id())
            .map_err(|e| format!("argon2: {e}"))?;
        Ok(h)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        if password.len() > MAX_BYTES {
            return Err(argon2::password_hash::Error::Password);
        }
        let salt = SaltString::generate(&mut OsRng);
        Ok(self
            .argon2()
            .hash_password(password.as_bytes(), &salt)?
            .to_string())
    }

    /// Verifies `password` against `stored` (or the dummy hash when `stored` is None). A password over the cap
    /// is still run against the dummy hash so the refusal takes the same time.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let over_cap = password.len() > MAX_BYTES;
        let candidate = if over_cap { "" } else { password };
        let target = if over_cap {
            &self.dummy
        } else {
            stored.unwrap_or(&self.dummy)
        };
        let ok = match PasswordHash::new(target) {
            Ok(parsed) => self
                .argon2()
                .verify_password(candidate.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        ok && stored.is_some() && !over_cap
    }

    /// True when a stored hash was made with other parameters than the configured ones (re-hash at login).
    pub fn needs_rehash(&self, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(h) => {
                h.algorithm != argon2::Algorithm::Argon2id.ident()
                    // Compare the costs only: a parsed hash also carries its output length.
                    || Params::try_from(&h)
                        .map(|p| {
                            (p.m_cost(), p.t_cost(), p.p_cost())
                                != (self.params.m_cost(), self.params.t_cost(), self.params.p_cost())
                        })
                        .unwrap_or(true)
            }
            Err(_) => true,
        }
    }
}

/// The policy of SECURITY.md: 12+ characters, at most 256 bytes, no composition rules, not a common password.
pub fn check_policy(password: &str, email: &str) -> Result<(), String> {
    if password.len() > MAX_BYTES {
        return Err(format!("Use at most {MAX_BYTES} bytes."));
    }
    if password.chars().count() < MIN_CHARS {
        return Err(format!(
            "Use at least {MIN_CHARS} characters. A few unrelated words make a good password."
        ));
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|l| !l.starts_with('#') && l == lower) {
        return Err(
            "This password is on a list of commonly used passwords. Choose another.".into(),
        );
    }
    let first = lower.chars().next().unwrap_or(' ');
    if lower.chars().all(|c| c == first) {
        return Err("This password repeats one character. Choose another.".into());
    }
    if !email.is_empty() && lower.contains(&email.to_lowercase()) {
        return Err("The password must not contain your email address.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_short_common_and_overlong() {
        assert!(check_policy("short", "").is_err());
        assert!(check_policy("qwerty123456", "").is_err());
        assert!(check_policy("aaaaaaaaaaaaaaaa", "").is_err());
        assert!(check_policy(&"x".repeat(300), "").is_err());
        assert!(check_policy("correct horse battery staple", "").is_ok());
    }

    #[test]
    fn hash_and_verify() {
        let h = Hasher::new(&Settings::default()).unwrap();
        let stored = h.hash("correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse battery staple", Some(&stored)));
        assert!(!h.verify("wrong horse battery staple", Some(&stored)));
        assert!(!h.verify("correct horse battery staple", None));
        assert!(!h.needs_rehash(&stored));
    }
}
