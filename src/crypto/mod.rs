//! Encryption at rest: the portal's age identities, private key files, and sealing/opening of
//! blobs.
//!
//! - [`keys::KeyRing`]: master identities in `<dir>/age-identities.txt` (last = current) plus escrow
//!   recipients; rotation and retirement.
//! - [`data_key`]: a submission's own data key, wrapped to the master and escrow recipients.
//! - [`keyfile`]: 0600 key files, refused when group/world accessible.
//! - [`stream`]: [`BlobSealer`] (pipelined upload encryption), [`seal_reader`], [`open_verified`],
//!   [`decrypt_to_async`], [`reseal`].

pub mod data_key;
pub mod keyfile;
pub mod keys;
pub mod stream;

pub use keyfile::KeyFileError;
pub use keys::{KeyInfo, KeyRing, KeyRingError};
pub use stream::{
    decrypt_to_async, open_verified, reseal, seal_reader, AsyncBlobReader, BlobRef, BlobSealer,
    Identities, Recipients, SealedBlob, VerifiedReader,
};
