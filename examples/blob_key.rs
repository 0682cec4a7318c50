//! Benchmark helper for `bench/export.sh`; not part of the portal: lets the `rage` CLI decrypt the very ciphertext a
//! download or an export reads, as a baseline.
//!
//! `blob_key ATTACHMENT_ID IDENTITY_FILE` finds the attachment's blob and its wrapped data key, unwraps the data key
//! with the key ring (age, the master identity), writes the data key's identity (in `age-keygen` format) to
//! IDENTITY_FILE (created, mode 0600; it must not exist) and prints the blob's path. The caller deletes the file.
//! Settings come from the environment like the portal's (`PCII_DATA_DIR`, `PCII_KEYS_DIR`, ...).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use diesel::prelude::*;
use zeroize::Zeroizing;

use pcii_portal::db::schema::attachments;
use pcii_portal::key_store::data_keys::blob_keys;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [attachment, identity_file] = args.as_slice() else {
        return Err("usage: blob_key ATTACHMENT_ID IDENTITY_FILE".into());
    };
    let figment = pcii_portal::figment();
    let settings = pcii_portal::config::load(&figment)?;
    let ring = pcii_portal::key_store::open_all(&settings)
        .map_err(|e| e.to_string())?
        .keyring;
    let db = pcii_portal::db::Db::open(&settings.database_url(), 2).map_err(|e| e.to_string())?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let blob_id: Option<String> = attachments::table
        .find(attachment)
        .select(attachments::blob_id)
        .first(&mut conn)
        .map_err(|e| format!("attachment {attachment}: {e}"))?;
    let blob_id = blob_id.ok_or("the attachment has no blob")?;
    let keys = blob_keys(&mut conn, &blob_id).map_err(|e| e.to_string())?;
    let row = keys
        .data_key
        .ok_or("the blob has no data key (from before data keys, or destroyed)")?;
    // The wrapped key is an age file whose plaintext is the data key's identity line.
    let decryptor = age::Decryptor::new(&row.wrapped[..]).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(ring.identities())
        .map_err(|e| e.to_string())?;
    let mut secret = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut secret).map_err(|e| e.to_string())?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(identity_file)
        .map_err(|e| format!("{identity_file}: {e}"))?;
    out.write_all(&secret)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        settings.blob_dir().join(&keys.blob.storage_name).display()
    );
    Ok(())
}
