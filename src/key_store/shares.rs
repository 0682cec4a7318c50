//! `shares` mode: the unlock key split k-of-n with Shamir secret sharing (vsss-rs, byte-wise over
//! GF(256), coefficients uniform over the whole field), each share age-encrypted to one custodian's own
//! X25519 recipient in `keys/shares/share-<id>.age`.
//!
//! `keys/shares/manifest.json` is public: the threshold, the unlock key's recipient, and for each share
//! its id, its custodian's recipient and the SHA-256 of the share. The digest lets the portal refuse a
//! wrong share the moment it is entered (and count it), instead of only after k were given; a share is
//! 75 uniformly random bytes, so its digest gives nothing away. Combined shares are accepted only when
//! the key they make has the recorded recipient.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::keyfile::{self, KeyFileError, UnlockKey};

/// Sub-directory of the key directory that holds the shares and their manifest.
pub const SHARES_DIR: &str = "shares";
/// The public description of the split (written last: the commit point of a conversion).
pub const MANIFEST_FILE: &str = "manifest.json";
/// How a share's text starts (what a custodian pastes after decrypting its file).
const SHARE_PREFIX: &str = "pcii-share-v1:";

/// Why a share, a split or a combination was refused. Never holds a share or a key.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("a threshold of {threshold} of {custodians} custodians is not possible: need 2 <= k <= n <= 255")]
    Threshold { threshold: usize, custodians: usize },
    #[error("custodian #{index} is not an age X25519 recipient (age1...)")]
    Custodian { index: usize },
    #[error("custodian #{index} is listed twice")]
    DuplicateCustodian { index: usize },
    #[error("that is not a share of this key store")]
    NotAShare,
    #[error("splitting the unlock key failed")]
    Split,
    #[error("the shares do not combine into this key store's unlock key")]
    Combine,
    #[error("encrypting a share to its custodian failed")]
    Encrypt,
    #[error("{}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// One share as the manifest records it (public).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestShare {
    pub id: u8,
    pub custodian: String,
    pub file: String,
    pub sha256: String,
}

/// The public description of a split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub threshold: usize,
    pub unlock_recipient: String,
    pub shares: Vec<ManifestShare>,
}

impl Manifest {
    pub fn path(keys_dir: &Path) -> PathBuf {
        keys_dir.join(SHARES_DIR).join(MANIFEST_FILE)
    }

    /// Reads `keys/shares/manifest.json`.
    pub fn read(keys_dir: &Path) -> Result<Manifest, ShareError> {
        let path = Manifest::path(keys_dir);
        let text = keyfile::read_private(&path)?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ShareError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if manifest.version != 1
            || manifest.threshold < 2
            || manifest.threshold > manifest.shares.len()
        {
            return Err(ShareError::Manifest {
                path,
                reason: "unsupported version or threshold".into(),
            });
        }
        Ok(manifest)
    }

    /// How many shares there are.
    pub fn custodians(&self) -> usize {
        self.shares.len()
    }
}

/// One decrypted share: its first byte is its id (the x coordinate). Zeroized on drop.
pub struct Share(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share(id {})", self.id())
    }
}

impl Share {
    pub fn id(&self) -> u8 {
        self.0[0]
    }

    /// The text a custodian holds (inside its age file) and pastes to unseal.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(SHARE_PREFIX.len() + 2 * self.0.len()));
        s.push_str(SHARE_PREFIX);
        s.push_str(&Zeroizing::new(hex::encode(&*self.0)));
        s
    }

    /// Parses pasted text and checks it against the manifest (id known, digest equal). Every refusal
    /// is the same [`ShareError::NotAShare`]: an attacker learns nothing about which part was wrong.
    pub fn parse(text: &str, manifest: &Manifest) -> Result<Share, ShareError> {
        let hex_part = text
            .trim()
            .strip_prefix(SHARE_PREFIX)
            .ok_or(ShareError::NotAShare)?;
        let bytes = Zeroizing::new(hex::decode(hex_part).map_err(|_| ShareError::NotAShare)?);
        if bytes.len() < 2 {
            return Err(ShareError::NotAShare);
        }
        let share = Share(bytes);
        let known = manifest
            .shares
            .iter()
            .find(|s| s.id == share.id())
            .ok_or(ShareError::NotAShare)?;
        let digest = hex::encode(Sha256::digest(&*share.0));
        if bool::from(digest.as_bytes().ct_eq(known.sha256.as_bytes())) {
            Ok(share)
        } else {
            Err(ShareError::NotAShare)
        }
    }
}

/// vsss-rs 6 takes a rand_core 0.10 generator: this one draws from the OS generator (the same source as
/// `rand::rngs::OsRng`).
struct OsRng010;

impl rand_core_010::TryRng for OsRng010 {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::RngCore::next_u32(&mut rand::rngs::OsRng))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::RngCore::next_u64(&mut rand::rngs::OsRng))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, dst);
        Ok(())
    }
}

impl rand_core_010::TryCryptoRng for OsRng010 {}

/// A split ready to be written: the manifest and, per share, its file name and its ciphertext.
pub struct Split {
    pub manifest: Manifest,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Splits `key` k-of-n, one share per custodian (in the order given), each encrypted to its custodian.
pub fn split(
    key: &UnlockKey,
    threshold: usize,
    custodians: &[String],
) -> Result<Split, ShareError> {
    let n = custodians.len();
    if threshold < 2 || threshold > n || n > 255 {
        return Err(ShareError::Threshold {
            threshold,
            custodians: n,
        });
    }
    let mut recipients: Vec<age::x25519::Recipient> = Vec::with_capacity(n);
    for (i, c) in custodians.iter().enumerate() {
        let r = age::x25519::Recipient::from_str(c.trim())
            .map_err(|_| ShareError::Custodian { index: i + 1 })?;
        if recipients.contains(&r) {
            return Err(ShareError::DuplicateCustodian { index: i + 1 });
        }
        recipients.push(r);
    }
    let secret = key.to_secret();
    let raw = vsss_rs::Gf256::split_bytes(threshold, n, secret.as_bytes(), OsRng010)
        .map_err(|_| ShareError::Split)?;
    let shares: Vec<Share> = raw.into_iter().map(|v| Share(Zeroizing::new(v))).collect();
    let mut files = Vec::with_capacity(n);
    let mut entries = Vec::with_capacity(n);
    for (share, recipient) in shares.iter().zip(&recipients) {
        let file = format!("share-{}.age", share.id());
        let ciphertext =
            age::encrypt(recipient, share.to_text().as_bytes()).map_err(|_| ShareError::Encrypt)?;
        entries.push(ManifestShare {
            id: share.id(),
            custodian: recipient.to_string(),
            file: file.clone(),
            sha256: hex::encode(Sha256::digest(&*share.0)),
        });
        files.push((file, ciphertext));
    }
    Ok(Split {
        manifest: Manifest {
            version: 1,
            threshold,
            unlock_recipient: key.recipient(),
            shares: entries,
        },
        files,
    })
}

/// Combines shares (already checked by [`Share::parse`]) into the unlock key; refused unless the key is
/// the one the manifest records.
pub fn combine(manifest: &Manifest, shares: &[Share]) -> Result<UnlockKey, ShareError> {
    if shares.len() < manifest.threshold {
        return Err(ShareError::Combine);
    }
    let mut inputs: Vec<Vec<u8>> = shares.iter().map(|s| s.0.to_vec()).collect();
    let combined = vsss_rs::Gf256::combine_bytes(&inputs).map(Zeroizing::new);
    for v in &mut inputs {
        zeroize::Zeroize::zeroize(v);
    }
    let combined = combined.map_err(|_| ShareError::Combine)?;
    let text = std::str::from_utf8(&combined).map_err(|_| ShareError::Combine)?;
    let key = UnlockKey::from_secret(text).ok_or(ShareError::Combine)?;
    if key.recipient() == manifest.unlock_recipient {
        Ok(key)
    } else {
        Err(ShareError::Combine)
    }
}

/// What offering one more share did.
#[derive(Debug)]
pub enum Offered {
    /// Accepted: `have` of the `need` shares are in.
    Accepted { have: usize, need: usize },
    /// This share was given already.
    Duplicate { have: usize, need: usize },
    /// The k-th share: the unlock key.
    Complete(UnlockKey),
}

/// Collects shares until the threshold is reached (the unseal page and the CLI use it alike).
pub struct Collector {
    manifest: Manifest,
    shares: Vec<Share>,
}

impl Collector {
    pub fn new(manifest: Manifest) -> Collector {
        Collector {
            manifest,
            shares: Vec::new(),
        }
    }

    pub fn have(&self) -> usize {
        self.shares.len()
    }

    pub fn need(&self) -> usize {
        self.manifest.threshold
    }

    pub fn custodians(&self) -> usize {
        self.manifest.custodians()
    }

    /// Offers pasted text. A wrong share is an error (the caller counts and audits it).
    pub fn offer(&mut self, text: &str) -> Result<Offered, ShareError> {
        let share = Share::parse(text, &self.manifest)?;
        let need = self.need();
        if self.shares.iter().any(|s| s.id() == share.id()) {
            return Ok(Offered::Duplicate {
                have: self.have(),
                need,
            });
        }
        self.shares.push(share);
        if self.shares.len() < need {
            return Ok(Offered::Accepted {
                have: self.have(),
                need,
            });
        }
        let result = combine(&self.manifest, &self.shares);
        // Whatever happened, these shares are not kept: the key (or nothing) is what remains.
        self.shares.clear();
        result.map(Offered::Complete)
    }
}

/// Reads a custodian's decrypted share from a file (the CLI's `--share-file`). 0600 like any key file.
pub fn read_share_file(path: &Path) -> Result<Zeroizing<String>, ShareError> {
    Ok(keyfile::read_private(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn custodians(n: usize) -> (Vec<age::x25519::Identity>, Vec<String>) {
        let ids: Vec<_> = (0..n).map(|_| age::x25519::Identity::generate()).collect();
        let recipients = ids.iter().map(|i| i.to_public().to_string()).collect();
        (ids, recipients)
    }

    fn decrypt(id: &age::x25519::Identity, ct: &[u8]) -> Zeroizing<String> {
        let plain = keyfile::open_with(id, ct).unwrap();
        Zeroizing::new(String::from_utf8(plain.to_vec()).unwrap())
    }

    #[test]
    fn two_of_three_round_trip_any_pair() {
        let key = UnlockKey::generate();
        let (ids, recipients) = custodians(3);
        let split = split(&key, 2, &recipients).unwrap();
        assert_eq!(split.manifest.unlock_recipient, key.recipient());
        let texts: Vec<_> = split
            .files
            .iter()
            .zip(&ids)
            .map(|((_, ct), id)| decrypt(id, ct))
            .collect();
        // No share opens with another custodian's identity.
        assert!(keyfile::open_with(&ids[1], &split.files[0].1).is_err());
        for (a, b) in [(0, 1), (0, 2), (2, 1)] {
            let mut c = Collector::new(split.manifest.clone());
            assert!(matches!(
                c.offer(&texts[a]).unwrap(),
                Offered::Accepted { have: 1, need: 2 }
            ));
            assert!(matches!(
                c.offer(&texts[a]).unwrap(),
                Offered::Duplicate { have: 1, .. }
            ));
            match c.offer(&texts[b]).unwrap() {
                Offered::Complete(k) => assert_eq!(k.recipient(), key.recipient()),
                other => panic!("{other:?}"),
            }
        }
        // One share alone does not hold the secret in any readable form.
        let secret = key.to_secret();
        for t in &texts {
            assert!(!t.contains(&secret[16..]));
        }
    }

    #[test]
    fn wrong_and_tampered_shares_are_refused_without_content() {
        let key = UnlockKey::generate();
        let (ids, recipients) = custodians(3);
        let split = split(&key, 2, &recipients).unwrap();
        let good = decrypt(&ids[0], &split.files[0].1);
        let mut c = Collector::new(split.manifest.clone());
        // A share of another split with the same shape.
        let other = super::split(&UnlockKey::generate(), 2, &recipients).unwrap();
        let foreign = decrypt(&ids[0], &other.files[0].1);
        let mut flipped = good.to_string();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        for bad in [
            foreign.as_str(),
            flipped.as_str(),
            "",
            "pcii-share-v1:zz",
            "hello",
        ] {
            let err = c.offer(bad).unwrap_err();
            assert!(matches!(err, ShareError::NotAShare), "{err}");
            assert!(!format!("{err:?}").contains(&good[20..]));
        }
        assert_eq!(c.have(), 0);
        assert!(matches!(
            super::split(&key, 1, &recipients),
            Err(ShareError::Threshold { .. })
        ));
        assert!(matches!(
            super::split(&key, 4, &recipients),
            Err(ShareError::Threshold { .. })
        ));
        let secret_line = ids[0].to_string().expose_secret().to_owned();
        assert!(matches!(
            super::split(
                &key,
                2,
                &[recipients[0].clone(), secret_line, recipients[1].clone()]
            ),
            Err(ShareError::Custodian { index: 2 })
        ));
    }
}
