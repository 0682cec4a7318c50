//! A submission's data key: an age X25519 identity of its own, to which its content documents and
//! attachments (and nothing else) are sealed.
//!
//! At rest a data key exists only *wrapped*: its secret, age-encrypted to the key ring's current master
//! identity and to every escrow recipient. Opening a blob unwraps the data key first; the unwrapped key
//! lives in memory only (age's identity zeroizes its secret when dropped, and every buffer that held the
//! secret text is zeroized). Deleting the wrapped copies makes every copy of the submission's blobs —
//! on the disk, in a backup, anywhere — unreadable to every key the portal and the escrow holders have.
//! Its public half (the recipient string, `age1...`) is the key id recorded with each blob; sealing a
//! new blob needs only that, never the secret.

use std::io::{self, Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::x25519;
use zeroize::Zeroizing;

use super::keys::KeyRing;
use super::stream::{Identities, Recipients};

/// Largest wrapped key accepted (an X25519 secret in Bech32 is 74 bytes; the age header per recipient
/// about 250).
const WRAPPED_MAX: u64 = 64 * 1024;

/// Why a wrapped data key could not be opened. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    /// None of the key ring's identities opens it (its master key was retired, or it is not ours).
    #[error("no master identity in the key ring opens this data key")]
    NoMasterKey,
    /// The wrapped key is damaged.
    #[error("the wrapped data key is damaged: {0}")]
    Damaged(&'static str),
    /// Encrypting failed.
    #[error("wrapping the data key failed: {0}")]
    Wrap(String),
}

/// An unwrapped data key, in memory only.
pub struct DataKey {
    identity: x25519::Identity,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> DataKey {
        DataKey {
            identity: x25519::Identity::generate(),
        }
    }

    /// The public half: the key id recorded with every blob sealed to this key.
    pub fn key_id(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// Whom to seal this submission's blobs to.
    pub fn recipients(&self) -> Recipients {
        Recipients::data_key(&self.identity.to_public())
    }

    /// The secret, age-encrypted to the ring's current master identity and to each escrow recipient.
    pub fn wrap(&self, ring: &KeyRing) -> Result<Vec<u8>, DataKeyError> {
        let recipients = ring.encryption_recipients();
        let encryptor = age::Encryptor::with_recipients(
            recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(|e| DataKeyError::Wrap(e.to_string()))?;
        let mut out = Vec::with_capacity(512);
        let secret = self.identity.to_string();
        let write = || -> io::Result<()> {
            let mut w = encryptor.wrap_output(&mut out)?;
            w.write_all(secret.expose_secret().as_bytes())?;
            w.finish()?;
            Ok(())
        };
        write().map_err(|e| DataKeyError::Wrap(e.to_string()))?;
        Ok(out)
    }

    /// Opens a wrapped data key with the ring's master identities.
    pub fn unwrap(wrapped: &[u8], ring: &KeyRing) -> Result<DataKey, DataKeyError> {
        Self::unwrap_with(wrapped, ring)
    }

    /// Opens a wrapped data key with any identities (the ring, or an escrow identity in an emergency).
    pub fn unwrap_with(
        wrapped: &[u8],
        identities: &dyn Identities,
    ) -> Result<DataKey, DataKeyError> {
        let decryptor =
            age::Decryptor::new(wrapped).map_err(|_| DataKeyError::Damaged("header"))?;
        let mut reader = decryptor
            .decrypt(identities.identities().into_iter())
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => DataKeyError::NoMasterKey,
                _ => DataKeyError::Damaged("does not decrypt"),
            })?;
        let mut secret = Zeroizing::new(Vec::with_capacity(128));
        (&mut reader)
            .take(WRAPPED_MAX)
            .read_to_end(&mut secret)
            .map_err(|_| DataKeyError::Damaged("does not decrypt"))?;
        let text = std::str::from_utf8(&secret).map_err(|_| DataKeyError::Damaged("not text"))?;
        let identity = x25519::Identity::from_str(text.trim())
            .map_err(|_| DataKeyError::Damaged("not an age identity"))?;
        Ok(DataKey { identity })
    }
}

impl Identities for DataKey {
    fn identities(&self) -> Vec<&dyn age::Identity> {
        vec![&self.identity]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_to_the_master_and_the_escrow_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let (escrow, _) = KeyRing::load_or_generate(&tmp.path().join("escrow"), &[]).unwrap();
        let (ring, _) = KeyRing::load_or_generate(
            &tmp.path().join("keys"),
            &[escrow.current_key_id().to_owned()],
        )
        .unwrap();
        let (stranger, _) = KeyRing::load_or_generate(&tmp.path().join("other"), &[]).unwrap();

        let key = DataKey::generate();
        let wrapped = key.wrap(&ring).unwrap();
        let secret = key.identity.to_string();
        assert!(!String::from_utf8_lossy(&wrapped).contains(secret.expose_secret()));
        assert_eq!(
            DataKey::unwrap(&wrapped, &ring).unwrap().key_id(),
            key.key_id()
        );
        assert_eq!(
            DataKey::unwrap_with(&wrapped, &escrow).unwrap().key_id(),
            key.key_id()
        );
        assert!(matches!(
            DataKey::unwrap(&wrapped, &stranger),
            Err(DataKeyError::NoMasterKey)
        ));
        let mut damaged = wrapped.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(
            DataKey::unwrap(&damaged, &ring),
            Err(DataKeyError::Damaged(_))
        ));
    }
}
