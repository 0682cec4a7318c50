//! Signed checkpoints over the audit chain.
//!
//! # Signed message, version 1
//!
//! Ed25519 (RFC 8032, pure, verified with `verify_strict`) over these 116 bytes:
//!
//! | bytes | field                                                            |
//! |-------|------------------------------------------------------------------|
//! | 24    | ASCII `pcii-audit-checkpoint-v1`                                 |
//! | 4     | `version` (= 1), unsigned, big-endian                            |
//! | 8     | `seq`, last entry covered, signed, big-endian                    |
//! | 8     | `from_seq`, first entry covered, signed, big-endian              |
//! | 32    | `chain_head`: raw `entry_hash` of entry `seq`                    |
//! | 32    | `merkle_root`: RFC 6962 root over entries `from_seq..=seq`       |
//! | 8     | `at`, Unix seconds UTC, signed, big-endian                       |
//!
//! Hex fields in the JSON form are lowercase; the public key is the 32-byte Ed25519 key in hex.
//!
//! # Verified-through statement, version 1
//!
//! What a successful verify leaves for the next one to start from ([`VerifiedThrough`]): Ed25519, by the
//! same key, over these 122 bytes:
//!
//! | bytes | field                                                            |
//! |-------|------------------------------------------------------------------|
//! | 22    | ASCII `pcii-audit-verified-v1`                                   |
//! | 92    | the checkpoint's signed message above without its tag (`version` to `at`) |
//! | 8     | `verified_at`, Unix seconds UTC, signed, big-endian              |
//!
//! # Verify result, version 1
//!
//! What the auditor's page and the operator's alerts show as the last verify's result (`settings`, kept by the
//! verify that produced it): Ed25519, by the same key, over these 77 bytes, so that someone who can write the
//! database but not sign cannot turn a failed verify into a passed one there:
//!
//! | bytes | field                                                            |
//! |-------|------------------------------------------------------------------|
//! | 27    | ASCII `pcii-audit-verify-result-v1`                              |
//! | 8     | `at`, when the verify ran, Unix seconds UTC, signed, big-endian  |
//! | 1     | `ok`: 1 when the verify passed, else 0                           |
//! | 1     | 1 when the verify was incremental, else 0                        |
//! | 8     | the checkpoint it started after (0 for a full verify), signed, big-endian |
//! | 32    | SHA-256 of the summary's UTF-8 text                              |

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::chain::{parse_hash_hex, parse_lower_hex};

/// Version of the checkpoint format and signed message.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Domain-separation tag at the start of the signed message.
pub const CHECKPOINT_TAG: &[u8] = b"pcii-audit-checkpoint-v1";

/// A signed statement "entries `from_seq..=seq` have this Merkle root and entry `seq` has this
/// hash". An auditor keeps copies outside the portal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    /// Last entry covered.
    pub seq: i64,
    /// First entry of this checkpoint's range.
    pub from_seq: i64,
    /// `entry_hash` of entry `seq` (64 lowercase hex).
    pub chain_head: String,
    /// RFC 6962 root over the entry hashes of `from_seq..=seq` (64 lowercase hex).
    pub merkle_root: String,
    /// When it was signed, Unix seconds UTC.
    pub at: i64,
    /// Ed25519 public key, 64 lowercase hex.
    pub public_key: String,
    /// Ed25519 signature, 128 lowercase hex.
    pub signature: String,
}

/// Domain-separation tag at the start of the verified-through statement.
pub const VERIFIED_TAG: &[u8] = b"pcii-audit-verified-v1";
/// Domain-separation tag at the start of a verify result.
pub const RESULT_TAG: &[u8] = b"pcii-audit-verify-result-v1";

/// A verify's result as the portal shows it: when, passed or not, what it covered, and the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyResult<'a> {
    pub at: i64,
    pub ok: bool,
    /// The checkpoint an incremental verify started after; `None` for a full verify.
    pub after_checkpoint: Option<i64>,
    pub summary: &'a str,
}

impl VerifyResult<'_> {
    fn message(&self) -> [u8; 77] {
        use sha2::{Digest, Sha256};
        let mut m = [0u8; 77];
        m[..27].copy_from_slice(RESULT_TAG);
        m[27..35].copy_from_slice(&self.at.to_be_bytes());
        m[35] = u8::from(self.ok);
        m[36] = u8::from(self.after_checkpoint.is_some());
        m[37..45].copy_from_slice(&self.after_checkpoint.unwrap_or(0).to_be_bytes());
        m[45..].copy_from_slice(&Sha256::digest(self.summary.as_bytes()));
        m
    }

    /// Whether `signature` (128 lowercase hex) is `public_key`'s (64 lowercase hex) over this result.
    pub fn signed_by(&self, public_key: &str, signature: &str) -> bool {
        let (Some(key), Some(sig)) = (
            parse_lower_hex::<32>(public_key),
            parse_lower_hex::<64>(signature),
        ) else {
            return false;
        };
        VerifyingKey::from_bytes(&key).is_ok_and(|vk| {
            vk.verify_strict(&self.message(), &Signature::from_bytes(&sig))
                .is_ok()
        })
    }
}

/// What a successful verify established, kept (in the database) for the next verify to start from: the
/// entries up to `checkpoint.seq` were verified, trusting `checkpoint.public_key`, and `checkpoint` was the
/// last signed checkpoint they ended in. Signed by the portal's key, so that someone who can write the
/// database but not sign cannot move it forward over entries no verify read; putting an older one back only
/// makes the next verify read more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedThrough {
    pub checkpoint: Checkpoint,
    /// When the verify ran, Unix seconds UTC.
    pub verified_at: i64,
    /// Ed25519 over the verified-through statement (module documentation), 128 lowercase hex.
    pub signature: String,
}

fn verified_message(
    cp: &Checkpoint,
    head: &[u8; 32],
    root: &[u8; 32],
    verified_at: i64,
) -> [u8; 122] {
    let checkpoint = signed_message(cp.version, cp.seq, cp.from_seq, head, root, cp.at);
    let mut m = [0u8; 122];
    m[..22].copy_from_slice(VERIFIED_TAG);
    m[22..114].copy_from_slice(&checkpoint[CHECKPOINT_TAG.len()..]);
    m[114..].copy_from_slice(&verified_at.to_be_bytes());
    m
}

impl VerifiedThrough {
    /// Checks the checkpoint (form, key, signature) and the statement's signature, both under
    /// `trusted_public_key`.
    pub fn verify(&self, trusted_public_key: &str) -> Result<(), VerifyError> {
        self.checkpoint.verify_signature(Some(trusted_public_key))?;
        // verify_signature checked the form of every field, and that the key is the trusted one.
        let (Some(head), Some(root), Some(key)) = (
            self.checkpoint.chain_head_bytes(),
            self.checkpoint.merkle_root_bytes(),
            parse_lower_hex::<32>(&self.checkpoint.public_key),
        ) else {
            return Err(VerifyError::Malformed("checkpoint"));
        };
        let sig = parse_lower_hex::<64>(&self.signature)
            .ok_or(VerifyError::Malformed("signature is not 128 lowercase hex"))?;
        let vk = VerifyingKey::from_bytes(&key)
            .map_err(|_| VerifyError::Malformed("public_key is not an Ed25519 point"))?;
        vk.verify_strict(
            &verified_message(&self.checkpoint, &head, &root, self.verified_at),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| VerifyError::BadSignature)
    }
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("unsupported checkpoint version {0}")]
    UnsupportedVersion(u32),
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("signed by key {found}, not by the trusted key {trusted}")]
    UntrustedKey { found: String, trusted: String },
    #[error("signature does not verify")]
    BadSignature,
}

/// Why a signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("the signing key seed must be 64 hex characters")]
    BadSeed,
    #[error("key file {path} is accessible by group or others (mode {mode:o}); it must be 0600")]
    Permissions { path: String, mode: u32 },
    #[error("key file I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn signed_message(
    version: u32,
    seq: i64,
    from_seq: i64,
    chain_head: &[u8; 32],
    merkle_root: &[u8; 32],
    at: i64,
) -> [u8; 116] {
    let mut m = [0u8; 116];
    m[..24].copy_from_slice(CHECKPOINT_TAG);
    m[24..28].copy_from_slice(&version.to_be_bytes());
    m[28..36].copy_from_slice(&seq.to_be_bytes());
    m[36..44].copy_from_slice(&from_seq.to_be_bytes());
    m[44..76].copy_from_slice(chain_head);
    m[76..108].copy_from_slice(merkle_root);
    m[108..116].copy_from_slice(&at.to_be_bytes());
    m
}

impl Checkpoint {
    /// `chain_head` as raw bytes, if well formed.
    pub fn chain_head_bytes(&self) -> Option<[u8; 32]> {
        parse_hash_hex(&self.chain_head)
    }

    /// `merkle_root` as raw bytes, if well formed.
    pub fn merkle_root_bytes(&self) -> Option<[u8; 32]> {
        parse_hash_hex(&self.merkle_root)
    }

    /// Checks the form of every field and the signature. When `trusted_public_key` is given,
    /// the checkpoint's key must also be that key (otherwise anyone could sign a checkpoint
    /// with a key of their own).
    pub fn verify_signature(&self, trusted_public_key: Option<&str>) -> Result<(), VerifyError> {
        if self.version != CHECKPOINT_VERSION {
            return Err(VerifyError::UnsupportedVersion(self.version));
        }
        if self.from_seq < 1 || self.from_seq > self.seq {
            return Err(VerifyError::Malformed("from_seq must be between 1 and seq"));
        }
        let head = self
            .chain_head_bytes()
            .ok_or(VerifyError::Malformed("chain_head is not 64 lowercase hex"))?;
        let root = self.merkle_root_bytes().ok_or(VerifyError::Malformed(
            "merkle_root is not 64 lowercase hex",
        ))?;
        let key = parse_lower_hex::<32>(&self.public_key)
            .ok_or(VerifyError::Malformed("public_key is not 64 lowercase hex"))?;
        let sig = parse_lower_hex::<64>(&self.signature)
            .ok_or(VerifyError::Malformed("signature is not 128 lowercase hex"))?;
        if let Some(trusted) = trusted_public_key {
            let trusted_bytes = parse_lower_hex::<32>(trusted.trim()).ok_or(
                VerifyError::Malformed("trusted public key is not 64 lowercase hex"),
            )?;
            if trusted_bytes != key {
                return Err(VerifyError::UntrustedKey {
                    found: self.public_key.clone(),
                    trusted: trusted.trim().to_owned(),
                });
            }
        }
        let vk = VerifyingKey::from_bytes(&key)
            .map_err(|_| VerifyError::Malformed("public_key is not an Ed25519 point"))?;
        let msg = signed_message(self.version, self.seq, self.from_seq, &head, &root, self.at);
        vk.verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// Holds the portal's Ed25519 checkpoint signing key. `Debug` shows only the public key.
pub struct CheckpointSigner {
    key: SigningKey,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// From the 32-byte seed in hex (surrounding whitespace ignored, either case).
    pub fn from_seed_hex(seed_hex: &str) -> Result<Self, SigningKeyError> {
        let mut seed = [0u8; 32];
        let res = hex::decode_to_slice(seed_hex.trim(), &mut seed);
        let out = match res {
            Ok(()) => Ok(Self {
                key: SigningKey::from_bytes(&seed),
            }),
            Err(_) => Err(SigningKeyError::BadSeed),
        };
        seed.zeroize();
        out
    }

    /// A fresh key from the OS CSPRNG, with its seed in hex (store it 0600, never log it).
    pub fn generate() -> (Self, String) {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let mut seed = key.to_bytes();
        let seed_hex = hex::encode(seed);
        seed.zeroize();
        (Self { key }, seed_hex)
    }

    /// The public key, 64 lowercase hex: what auditors pin.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Signs a checkpoint for entries `from_seq..=seq` with the given chain head and Merkle root.
    pub fn sign(
        &self,
        seq: i64,
        from_seq: i64,
        chain_head: &[u8; 32],
        merkle_root: &[u8; 32],
        at: i64,
    ) -> Checkpoint {
        let msg = signed_message(
            CHECKPOINT_VERSION,
            seq,
            from_seq,
            chain_head,
            merkle_root,
            at,
        );
        let sig = self.key.sign(&msg);
        Checkpoint {
            version: CHECKPOINT_VERSION,
            seq,
            from_seq,
            chain_head: hex::encode(chain_head),
            merkle_root: hex::encode(merkle_root),
            at,
            public_key: self.public_key_hex(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

impl CheckpointSigner {
    /// States that a verify found the entries up to `checkpoint` intact, trusting this key; `None` when the
    /// checkpoint is not this key's (a statement under this key could not vouch for it) or is malformed.
    pub fn sign_verified(
        &self,
        checkpoint: &Checkpoint,
        verified_at: i64,
    ) -> Option<VerifiedThrough> {
        if checkpoint.public_key != self.public_key_hex() {
            return None;
        }
        let head = checkpoint.chain_head_bytes()?;
        let root = checkpoint.merkle_root_bytes()?;
        let sig = self
            .key
            .sign(&verified_message(checkpoint, &head, &root, verified_at));
        Some(VerifiedThrough {
            checkpoint: checkpoint.clone(),
            verified_at,
            signature: hex::encode(sig.to_bytes()),
        })
    }

    /// Signs a verify's result (128 lowercase hex).
    pub fn sign_result(&self, result: &VerifyResult<'_>) -> String {
        hex::encode(self.key.sign(&result.message()).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed_hex(&"11".repeat(32)).unwrap()
    }

    #[test]
    fn sign_and_verify() {
        let s = signer();
        let cp = s.sign(10, 1, &[1; 32], &[2; 32], 1_700_000_000);
        assert_eq!(cp.public_key, s.public_key_hex());
        cp.verify_signature(None).unwrap();
        cp.verify_signature(Some(&s.public_key_hex())).unwrap();
        let json = serde_json::to_string(&cp).unwrap();
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        back.verify_signature(Some(&s.public_key_hex())).unwrap();
    }

    #[test]
    fn every_signed_field_is_bound() {
        let s = signer();
        let cp = s.sign(10, 1, &[1; 32], &[2; 32], 1_700_000_000);
        let mut sig = cp.signature.clone().into_bytes();
        sig[5] = if sig[5] == b'0' { b'1' } else { b'0' };
        let variants = vec![
            Checkpoint {
                seq: 11,
                ..cp.clone()
            },
            Checkpoint {
                from_seq: 2,
                ..cp.clone()
            },
            Checkpoint {
                at: 1,
                ..cp.clone()
            },
            Checkpoint {
                chain_head: hex::encode([3u8; 32]),
                ..cp.clone()
            },
            Checkpoint {
                merkle_root: hex::encode([3u8; 32]),
                ..cp.clone()
            },
            Checkpoint {
                signature: String::from_utf8(sig).unwrap(),
                ..cp.clone()
            },
        ];
        for v in variants {
            assert_eq!(
                v.verify_signature(None),
                Err(VerifyError::BadSignature),
                "{v:?}"
            );
        }
        assert_eq!(
            Checkpoint {
                version: 2,
                ..cp.clone()
            }
            .verify_signature(None),
            Err(VerifyError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Checkpoint {
                signature: cp.signature.to_uppercase(),
                ..cp.clone()
            }
            .verify_signature(None),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn trusted_key_must_match() {
        let s = signer();
        let (other, _) = CheckpointSigner::generate();
        let cp = other.sign(10, 1, &[1; 32], &[2; 32], 0);
        cp.verify_signature(None).unwrap();
        assert!(matches!(
            cp.verify_signature(Some(&s.public_key_hex())),
            Err(VerifyError::UntrustedKey { .. })
        ));
    }

    #[test]
    fn verified_through_is_bound_to_the_checkpoint_and_the_key() {
        let s = signer();
        let cp = s.sign(10, 1, &[1; 32], &[2; 32], 1_700_000_000);
        let v = s.sign_verified(&cp, 1_700_000_100).unwrap();
        v.verify(&s.public_key_hex()).unwrap();
        let json = serde_json::to_string(&v).unwrap();
        let back: VerifiedThrough = serde_json::from_str(&json).unwrap();
        back.verify(&s.public_key_hex()).unwrap();
        // Moved forward onto another checkpoint signed by the same key: the statement does not cover it.
        let later = s.sign(20, 11, &[3; 32], &[4; 32], 1_700_000_050);
        let moved = VerifiedThrough {
            checkpoint: later.clone(),
            ..v.clone()
        };
        assert_eq!(
            moved.verify(&s.public_key_hex()),
            Err(VerifyError::BadSignature)
        );
        // A checkpoint's own signature is no statement (different message).
        let forged = VerifiedThrough {
            checkpoint: later.clone(),
            verified_at: 0,
            signature: later.signature.clone(),
        };
        assert_eq!(
            forged.verify(&s.public_key_hex()),
            Err(VerifyError::BadSignature)
        );
        // Another key: its checkpoints are refused, and it cannot state anything about ours.
        let (other, _) = CheckpointSigner::generate();
        assert!(matches!(
            v.verify(&other.public_key_hex()),
            Err(VerifyError::UntrustedKey { .. })
        ));
        assert!(other.sign_verified(&cp, 0).is_none());
        // Every field is bound, the time too.
        let retimed = VerifiedThrough {
            verified_at: 5,
            ..v.clone()
        };
        assert_eq!(
            retimed.verify(&s.public_key_hex()),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_verify_result_is_bound_to_every_field_and_the_key() {
        let s = signer();
        let result = VerifyResult {
            at: 1_700_000_000,
            ok: false,
            after_checkpoint: Some(40),
            summary: "from checkpoint #40: entry #51: entry_hash does not match its contents",
        };
        let sig = s.sign_result(&result);
        assert_eq!(sig.len(), 128);
        assert!(result.signed_by(&s.public_key_hex(), &sig));
        // Turned into a pass, retimed, made full, moved to another checkpoint, or reworded: no longer signed.
        for changed in [
            VerifyResult { ok: true, ..result },
            VerifyResult {
                at: 1_700_000_001,
                ..result
            },
            VerifyResult {
                after_checkpoint: None,
                ..result
            },
            VerifyResult {
                after_checkpoint: Some(0),
                ..result
            },
            VerifyResult {
                after_checkpoint: Some(41),
                ..result
            },
            VerifyResult {
                summary: "from checkpoint #40: 11 entries (#41..#51)",
                ..result
            },
        ] {
            assert!(!changed.signed_by(&s.public_key_hex(), &sig), "{changed:?}");
        }
        // Another key's signature, or not a signature at all.
        let (other, _) = CheckpointSigner::generate();
        assert!(!result.signed_by(&s.public_key_hex(), &other.sign_result(&result)));
        assert!(!result.signed_by(&other.public_key_hex(), &sig));
        assert!(!result.signed_by(&s.public_key_hex(), ""));
        assert!(!result.signed_by(&s.public_key_hex(), &sig.to_uppercase()));
        assert!(!result.signed_by("not a key", &sig));
        // A checkpoint's signature is no result's.
        let cp = s.sign(40, 1, &[1; 32], &[2; 32], 1_700_000_000);
        assert!(!result.signed_by(&s.public_key_hex(), &cp.signature));
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let seed = "ab".repeat(32);
        let s = CheckpointSigner::from_seed_hex(&seed).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&seed), "{dbg}");
        assert!(!dbg.to_lowercase().contains("abababab"), "{dbg}");
        assert!(dbg.contains(&s.public_key_hex()));
        let (g, g_seed) = CheckpointSigner::generate();
        assert!(!format!("{g:?}").contains(&g_seed));
        assert_eq!(
            CheckpointSigner::from_seed_hex(&g_seed)
                .unwrap()
                .public_key_hex(),
            g.public_key_hex()
        );
        assert!(matches!(
            CheckpointSigner::from_seed_hex("abc"),
            Err(SigningKeyError::BadSeed)
        ));
    }
}
