//! Officers' free text — defect lists, decision reasons, grant and revocation reasons, dissemination details, and
//! the notices that quote them — sealed with the submission's data key: it quotes the content, so it is kept like
//! the content and destroyed with it. A copy of the database shows that a text exists, never its words.
//!
//! A sealed text is stored, in the text column it always had, as `age:<data key id>:<base64 age file>`. Text
//! written before sealing is stored as it was until `keys convert` seals it. The audit entry of the act binds the
//! text by the SHA-256 of its ciphertext ([`Sealed::digest`]): an auditor can tell that a reason was given and
//! that the stored one is the one recorded, without reading it.

use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::data_key::DataKey;
use crate::crypto::keys::KeyRing;
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::key_store::data_keys::WrappedKey;
use crate::models::data_key;
use crate::services::Services;

const PREFIX: &str = "age:";
/// What is shown where a sealed text's data key is gone.
pub const DESTROYED: &str = "[This text quoted the submission and was destroyed with it.]";
/// Longest sealed text read back (officers' texts are at most a few thousand characters).
const TEXT_MAX: u64 = 1024 * 1024;

/// A text as stored, and the digest the audit entry records.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub stored: String,
    /// Hex SHA-256 of the age ciphertext.
    pub digest: String,
}

impl Sealed {
    /// How an audit entry refers to the text.
    pub fn audit_ref(&self) -> String {
        format!("sealed, sha256 {}", &self.digest)
    }
}

/// Seals texts to one submission's current data key (only its public half is used).
pub struct Sealer {
    key_id: String,
    recipient: age::x25519::Recipient,
}

impl Sealer {
    /// The submission's current data key; a submission from before data keys gets `spare` as its data key now
    /// (in the caller's transaction, under the audit head lock: see `WrappedKey::insert_current`).
    pub fn for_submission(
        tx: &mut DbConn,
        submission_id: &str,
        spare: &WrappedKey,
        keys: &std::sync::RwLock<crate::crypto::keys::KeyRing>,
        now: i64,
    ) -> AppResult<Sealer> {
        let key_id = match data_key::current_of(tx, submission_id)? {
            Some(k) => k,
            None => {
                spare.insert_current(tx, submission_id, now, keys)?;
                spare.key_id.clone()
            }
        };
        Sealer::to_key(&key_id)
    }

    /// Seals to the data key `key_id` (public).
    pub fn to_key(key_id: &str) -> AppResult<Sealer> {
        let recipient = age::x25519::Recipient::from_str(key_id)
            .map_err(|_| AppError::Internal("a data key id does not parse".into()))?;
        Ok(Sealer {
            key_id: key_id.to_owned(),
            recipient,
        })
    }

    pub fn seal(&self, text: &str) -> AppResult<Sealed> {
        let ciphertext = age::encrypt(&self.recipient, text.as_bytes())
            .map_err(|_| AppError::Internal("sealing a text failed".into()))?;
        Ok(Sealed {
            digest: hex::encode(Sha256::digest(&ciphertext)),
            stored: format!(
                "{PREFIX}{}:{}",
                self.key_id,
                base64::engine::general_purpose::STANDARD.encode(&ciphertext)
            ),
        })
    }
}

/// The data key a stored text is sealed to; `None` for text stored in clear (from before sealing).
pub fn sealed_to(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix(PREFIX)?;
    let (key_id, _) = rest.split_once(':')?;
    key_id.starts_with("age1").then_some(key_id)
}

/// The unwrapped data keys of some submissions, to open their sealed texts for a page that is allowed to show
/// them. Keys live as long as the value (zeroized when dropped).
#[derive(Default)]
pub struct Texts {
    keys: HashMap<String, DataKey>,
}

impl Texts {
    /// Opens nothing: every sealed text reads as [`DESTROYED`] (or use only for clear text).
    pub fn none() -> Texts {
        Texts::default()
    }

    /// Unwraps the data keys of `submission_ids` (call only where the page may show these submissions' texts).
    pub async fn load(services: &Services, submission_ids: Vec<String>) -> AppResult<Texts> {
        if submission_ids.is_empty() {
            return Ok(Texts::none());
        }
        let rows = services
            .db
            .run(move |c| Ok(data_key::of_submissions(c, &submission_ids)?))
            .await?;
        let keys = services.current_keys();
        tokio::task::spawn_blocking(move || {
            let ring = keys.read().unwrap_or_else(|p| p.into_inner());
            Texts::unwrap_rows(&ring, rows)
        })
        .await
        .map_err(|_| AppError::Internal("unwrapping data keys failed".into()))?
    }

    /// [`Texts::load`] on a connection, for the CLI's conversions.
    pub fn load_blocking(
        conn: &mut DbConn,
        ring: &KeyRing,
        submission_ids: &[String],
    ) -> AppResult<Texts> {
        let rows = data_key::of_submissions(conn, submission_ids)?;
        Texts::unwrap_rows(ring, rows)
    }

    fn unwrap_rows(ring: &KeyRing, rows: Vec<data_key::DataKeyRow>) -> AppResult<Texts> {
        let mut keys = HashMap::new();
        for row in rows {
            let key = DataKey::unwrap(&row.wrapped, ring).map_err(|e| {
                tracing::error!(key_id = %row.key_id, error = %e, "a data key does not unwrap");
                AppError::Internal("a data key does not unwrap".into())
            })?;
            keys.insert(row.key_id, key);
        }
        Ok(Texts { keys })
    }

    /// The text: decrypted if sealed to a key held here, as stored if in clear (from before sealing), and
    /// [`DESTROYED`] if its data key is gone (or not loaded).
    pub fn open(&self, stored: &str) -> String {
        self.try_open(stored)
            .unwrap_or_else(|| DESTROYED.to_owned())
    }

    /// [`Texts::open`] for an optional column.
    pub fn open_opt(&self, stored: Option<&str>) -> Option<String> {
        stored.map(|s| self.open(s))
    }

    /// `None` when the text is sealed to a key not held here.
    pub fn try_open(&self, stored: &str) -> Option<String> {
        let Some(key_id) = sealed_to(stored) else {
            return Some(stored.to_owned());
        };
        let key = self.keys.get(key_id)?;
        let encoded = &stored[PREFIX.len() + key_id.len() + 1..];
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decryptor = age::Decryptor::new(&ciphertext[..]).ok()?;
        let mut reader = decryptor
            .decrypt(crate::crypto::stream::Identities::identities(key).into_iter())
            .ok()?;
        let mut out = Zeroizing::new(Vec::new());
        // One byte over the cap: a text that ends within it ended at age's verified final chunk.
        (&mut reader)
            .take(TEXT_MAX + 1)
            .read_to_end(&mut out)
            .ok()?;
        if out.len() as u64 > TEXT_MAX {
            return None;
        }
        String::from_utf8(out.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_text_opens_with_its_data_key_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (ring, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let key = WrappedKey::generate(&ring).unwrap();
        let sealed = Sealer::to_key(&key.key_id)
            .unwrap()
            .seal("MARKER-defect list")
            .unwrap();
        assert!(!sealed.stored.contains("MARKER"));
        assert_eq!(sealed_to(&sealed.stored), Some(key.key_id.as_str()));
        assert_eq!(sealed.digest.len(), 64);
        let mut texts = Texts::none();
        assert_eq!(texts.open(&sealed.stored), DESTROYED);
        assert_eq!(
            texts.open("written in clear before"),
            "written in clear before"
        );
        texts.keys.insert(
            key.key_id.clone(),
            DataKey::unwrap(&key.wrapped, &ring).unwrap(),
        );
        assert_eq!(texts.open(&sealed.stored), "MARKER-defect list");
    }

    #[test]
    fn a_text_over_its_cap_opens_as_nothing_not_as_its_beginning() {
        let tmp = tempfile::tempdir().unwrap();
        let (ring, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let key = WrappedKey::generate(&ring).unwrap();
        let sealer = Sealer::to_key(&key.key_id).unwrap();
        let mut texts = Texts::none();
        texts.keys.insert(
            key.key_id.clone(),
            DataKey::unwrap(&key.wrapped, &ring).unwrap(),
        );
        let at_cap = "x".repeat(TEXT_MAX as usize);
        let sealed = sealer.seal(&at_cap).unwrap();
        assert_eq!(texts.try_open(&sealed.stored).as_deref(), Some(&at_cap[..]));
        let over = sealer.seal(&format!("{at_cap}y")).unwrap();
        assert_eq!(texts.try_open(&over.stored), None);
    }
}
