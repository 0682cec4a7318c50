//! Tamper-evident audit log: hash-chained entries, signed checkpoints, verification and
//! auditor exports.
//!
//! * [`chain`]: the entry, its escaping, the canonical encoding and hash, the Merkle tree.
//! * [`checkpoint`]: Ed25519-signed checkpoints and the portal's signing key.
//! * [`verify`]: the streaming chain verifier.
//! * [`export`]: the zip export and its offline verification.
//! * [`log`]: appending entries and checkpoints inside the caller's transaction; verifying the stored chain
//!   and recording that it did.
//! * [`stored`]: verifying the stored chain, in full or from the last verified checkpoint, read in parallel.
//! * [`store`]: the log's tables, read and written here only.

pub mod actions;
pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod log;
pub mod refusals;
pub mod store;
pub mod stored;
pub mod verify;

pub use chain::{
    chain_next, compute_entry_hash, escape_field, merkle_root, parse_hash_hex, AuditEntry,
    ChainError, MerkleBuilder, NewEntryFields, CHAIN_VERSION, GENESIS_HASH,
};
pub use checkpoint::{Checkpoint, CheckpointSigner, SigningKeyError, VerifiedThrough, VerifyError};
pub use export::{
    export_length, verify_export, write_export, write_export_at, write_export_of_len, ExportError,
    ExportManifest, ExportWriter, Named, Names,
};
pub use stored::{Scope, Start, Verdict};
pub use verify::{ChainVerifier, Prehashed, Problem, Summary};
