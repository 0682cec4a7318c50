//! The portal's own authentication secrets (a TOTP seed per account), sealed to the current master identity only.
//!
//! Stored as `age:<master key id>:<base64 of the age file>`, so a copy of the database holds no usable seed unless
//! the master key comes with it (and in `passphrase` or `shares` mode it never rests in clear). `keys rotate`
//! re-seals them to the new master identity before retiring the old one, like the data keys.

use std::io::{Read, Write};

use base64::Engine;
use zeroize::Zeroizing;

use crate::crypto::keys::KeyRing;
use crate::db::DbConn;
use crate::models::second_factor;

use super::KeyStoreError;

const PREFIX: &str = "age:";
/// A seed is 20 bytes; anything much longer is not one of ours.
const OPENED_MAX: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no master identity in the key ring opens this secret (key {0})")]
    NoMasterKey(String),
    #[error("the sealed secret is damaged")]
    Damaged,
    #[error("sealing the secret failed: {0}")]
    Seal(String),
}

/// A secret sealed to the ring's current master identity, and that identity's key id.
pub struct SealedSecret {
    pub stored: String,
    pub master_key_id: String,
}

pub fn seal(ring: &KeyRing, secret: &[u8]) -> Result<SealedSecret, SecretError> {
    let recipient = ring.master_recipient();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| SecretError::Seal(e.to_string()))?;
    let mut out = Vec::with_capacity(256);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SecretError::Seal(e.to_string()))?;
    w.write_all(secret)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| SecretError::Seal(e.to_string()))?;
    let master_key_id = ring.current_key_id().to_string();
    let stored = format!(
        "{PREFIX}{master_key_id}:{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    );
    Ok(SealedSecret {
        stored,
        master_key_id,
    })
}

pub fn open(ring: &KeyRing, stored: &str) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let (key_id, body) = stored
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or(SecretError::Damaged)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| SecretError::Damaged)?;
    let decryptor = age::Decryptor::new(&bytes[..]).map_err(|_| SecretError::Damaged)?;
    let mut reader = decryptor.decrypt(ring.identities()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => SecretError::NoMasterKey(key_id.to_string()),
        _ => SecretError::Damaged,
    })?;
    let mut secret = Zeroizing::new(Vec::with_capacity(32));
    (&mut reader)
        .take(OPENED_MAX)
        .read_to_end(&mut secret)
        .map_err(|_| SecretError::Damaged)?;
    Ok(secret)
}

/// Re-seals every account secret not sealed to the ring's current identity; returns how many. One conditional
/// update per secret: one re-sealed meanwhile (or deleted) is left alone. A secret the ring cannot open (damaged,
/// or sealed to an identity no longer in the ring) is left as it is and reported to `unopenable` (its account's
/// id, why), as a data key is: one such secret stopped every rotation, and each retry generated another identity.
/// It still counts as sealed to its identity, so that identity is kept while it is there.
pub fn reseal_all(
    ring: &KeyRing,
    conn: &mut DbConn,
    unopenable: &mut dyn FnMut(&str, &SecretError),
) -> Result<u64, KeyStoreError> {
    let current = ring.current_key_id().to_string();
    let db = super::rotation::db;
    let rows = second_factor::secrets_not_sealed_to(conn, &current).map_err(db)?;
    let mut done = 0;
    for row in rows {
        let opened = match open(ring, &row.stored) {
            Ok(opened) => opened,
            Err(e) => {
                unopenable(&row.user_id, &e);
                continue;
            }
        };
        let sealed = seal(ring, &opened).map_err(|source| KeyStoreError::ResealSecret {
            user_id: row.user_id.clone(),
            source,
        })?;
        second_factor::reseal(conn, &row, &sealed.stored, &sealed.master_key_id).map_err(db)?;
        done += 1;
    }
    Ok(done)
}

/// How many account secrets are sealed to `master_key_id`.
pub fn count_sealed_to(conn: &mut DbConn, master_key_id: &str) -> Result<i64, KeyStoreError> {
    second_factor::count_sealed_to(conn, master_key_id).map_err(super::rotation::db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_to_the_master_only_and_opens_after_rotation_until_retired() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut ring, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let sealed = seal(&ring, b"twenty bytes of seed").unwrap();
        assert!(sealed
            .stored
            .starts_with(&format!("age:{}:", ring.current_key_id())));
        assert!(!sealed.stored.contains("twenty"));
        assert_eq!(
            &open(&ring, &sealed.stored).unwrap()[..],
            b"twenty bytes of seed"
        );
        let old = ring.current_key_id().to_string();
        ring.rotate().unwrap();
        assert_eq!(
            &open(&ring, &sealed.stored).unwrap()[..],
            b"twenty bytes of seed"
        );
        ring.retire(&old).unwrap();
        assert!(matches!(
            open(&ring, &sealed.stored),
            Err(SecretError::NoMasterKey(_))
        ));
        assert!(matches!(
            open(&ring, "age:x:%%%"),
            Err(SecretError::Damaged)
        ));
    }
}
