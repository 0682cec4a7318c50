//! Command-line operations that are more than a call into a service: key rotation and audit verification.

use std::path::Path;

use diesel::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use crate::audit::checkpoint::Checkpoint;
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::config::Settings;
use crate::db::schema::blobs;
use crate::db::{Db, DbConn};
use crate::storage::BlobStore;

fn open_db(settings: &Settings) -> Result<Db, String> {
    Db::open(&settings.database_url(), 2)
}

fn open_audit(settings: &Settings) -> Result<AuditLog, String> {
    let opened = crate::keys::open_all(settings)?;
    Ok(AuditLog::new(
        opened.audit_signer,
        settings.audit_checkpoint_every,
    ))
}

/// `keys list`: every identity with its creation time and how many blobs it encrypts.
pub fn keys_list(settings: &Settings) -> Result<(), String> {
    let opened = crate::keys::open_all(settings)?;
    let db = open_db(settings)?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let counts: Vec<(String, i64)> = blobs::table
        .group_by(blobs::key_id)
        .select((blobs::key_id, diesel::dsl::count_star()))
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    println!("{:<10} {:<27} {:>7}  key", "state", "created", "blobs");
    for k in opened.keyring.keys() {
        let n = counts
            .iter()
            .find(|(id, _)| *id == k.key_id)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let state = if k.current { "current" } else { "old" };
        println!("{state:<10} {:<27} {n:>7}  {}", k.created, k.key_id);
    }
    for e in opened.keyring.escrow_ids() {
        println!("{:<10} {:<27} {:>7}  {e}", "escrow", "-", "(all)");
    }
    let unknown: Vec<_> = counts
        .iter()
        .filter(|(id, _)| !opened.keyring.contains(id))
        .collect();
    for (id, n) in unknown {
        println!(
            "{:<10} {:<27} {n:>7}  {id}  (NOT IN THE KEY STORE: these blobs cannot be read)",
            "missing", "-"
        );
    }
    Ok(())
}

/// `keys rotate`: a new current identity, every blob re-encrypted to it, then old identities retired.
/// Resumable: a blob is switched over (row updated, then old file removed) one at a time, and a second run
/// continues with the blobs still on an old key instead of generating yet another identity.
pub fn keys_rotate(settings: &Settings) -> Result<(), String> {
    let opened = crate::keys::open_all(settings)?;
    let mut keyring = opened.keyring;
    let audit = AuditLog::new(opened.audit_signer, settings.audit_checkpoint_every);
    let db = open_db(settings)?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let store =
        crate::storage::fs::FsBlobStore::open(&settings.blob_dir()).map_err(|e| e.to_string())?;
    let actor = Actor::cli();

    let pending = |conn: &mut DbConn, current: &str| -> Result<i64, String> {
        blobs::table
            .filter(blobs::key_id.ne(current))
            .count()
            .get_result(conn)
            .map_err(|e| e.to_string())
    };
    let resuming = pending(&mut conn, keyring.current_key_id())? > 0 && keyring.keys().len() > 1;
    if resuming {
        println!(
            "resuming an interrupted rotation to {}",
            keyring.current_key_id()
        );
    } else {
        let new_id = keyring
            .rotate()
            .map_err(|e| format!("generating the new identity: {e}"))?;
        audit
            .record(
                &mut conn,
                &actor,
                Event::new("key.rotate", Outcome::Success).reason(format!("new identity {new_id}")),
            )
            .map_err(|e| e.to_string())?;
        println!("new identity {new_id}");
    }
    let current = keyring.current_key_id().to_string();
    let total = pending(&mut conn, &current)?;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} re-encrypting [{bar:40}] {pos}/{len} blobs ({eta} left)",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    loop {
        let batch: Vec<crate::models::blob::BlobRow> = blobs::table
            .filter(blobs::key_id.ne(&current))
            .order(blobs::id.asc())
            .limit(100)
            .select(crate::models::blob::BlobRow::as_select())
            .load(&mut conn)
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        for row in batch {
            let old = row.blob_ref().map_err(|e| e.to_string())?;
            let sealed = crate::crypto::stream::reseal(&store, &old, &keyring)
                .map_err(|e| format!("re-encrypting blob {}: {e}", row.id))?;
            let updated = diesel::update(
                blobs::table
                    .find(&row.id)
                    .filter(blobs::storage_name.eq(&row.storage_name)),
            )
            .set((
                blobs::storage_name.eq(&sealed.name),
                blobs::key_id.eq(&sealed.key_id),
                blobs::ciphertext_sha256.eq(hex::encode(sealed.ciphertext_sha256)),
                blobs::ciphertext_len.eq(sealed.ciphertext_len as i64),
            ))
            .execute(&mut conn)
            .map_err(|e| e.to_string())?;
            if updated == 1 {
                // The row points at the new ciphertext now; the old one is garbage.
                store
                    .delete(&old.name)
                    .map_err(|e| format!("removing the old ciphertext: {e}"))?;
            } else {
                // The blob went away meanwhile (destroyed): the new copy is not referenced.
                store.delete(&sealed.name).map_err(|e| e.to_string())?;
            }
            bar.inc(1);
        }
    }
    bar.finish();
    for k in keyring.keys().into_iter().filter(|k| !k.current) {
        // Checked again right before retiring: an instance that had not reloaded the key ring may have
        // stored a blob sealed to the old key meanwhile (it refuses to once the key is gone).
        let still_used: i64 = blobs::table
            .filter(blobs::key_id.eq(&k.key_id))
            .count()
            .get_result(&mut conn)
            .map_err(|e| e.to_string())?;
        if still_used > 0 {
            println!(
                "kept {}: {still_used} blob(s) sealed to it arrived during the rotation; run `keys rotate` again",
                k.key_id
            );
            continue;
        }
        keyring
            .retire(&k.key_id)
            .map_err(|e| format!("retiring {}: {e}", k.key_id))?;
        audit
            .record(
                &mut conn,
                &actor,
                Event::new("key.retire", Outcome::Success).reason(format!("identity {}", k.key_id)),
            )
            .map_err(|e| e.to_string())?;
        println!("retired {}", k.key_id);
    }
    println!("rotation complete: every blob is encrypted to {current}");
    Ok(())
}

/// Reads a checkpoint file kept outside the portal: one checkpoint or an array of them.
pub fn read_kept_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if let Ok(one) = serde_json::from_str::<Checkpoint>(&text) {
        return Ok(vec![one]);
    }
    serde_json::from_str::<Vec<Checkpoint>>(&text)
        .map_err(|e| format!("{} is not a checkpoint file: {e}", path.display()))
}

pub fn audit_verify_live(settings: &Settings, kept: Option<&Path>) -> Result<(), String> {
    let db = open_db(settings)?;
    let audit = open_audit(settings)?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let kept = kept
        .map(read_kept_checkpoints)
        .transpose()?
        .unwrap_or_default();
    let result = audit
        .verify_and_record(&mut conn, &Actor::cli(), &kept)
        .map_err(|e| e.to_string())?;
    match result {
        Ok(s) => {
            println!(
                "audit log intact: {} entries (#{}..#{}), chain head {}, {} checkpoint(s) checked",
                s.count, s.first_seq, s.last_seq, s.chain_head, s.checkpoints_checked
            );
            Ok(())
        }
        Err(p) => Err(format!("audit log NOT intact: {p}")),
    }
}

pub fn audit_verify_export(path: &Path, kept: Option<&Path>) -> Result<(), String> {
    match crate::audit::export::verify_export(path, kept) {
        Ok(s) => {
            println!(
                "export intact: {} entries (#{}..#{}), chain head {}, {} checkpoint(s) checked",
                s.count, s.first_seq, s.last_seq, s.chain_head, s.checkpoints_checked
            );
            Ok(())
        }
        Err(p) => Err(format!("export NOT intact: {p}")),
    }
}

/// `audit checkpoint`: signs a checkpoint of the current head now.
pub fn audit_checkpoint(settings: &Settings) -> Result<(), String> {
    let db = open_db(settings)?;
    let audit = open_audit(settings)?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let cp = audit
        .checkpoint_now(&mut conn, &Actor::cli())
        .map_err(|e| e.to_string())?;
    match cp {
        Some(cp) => println!(
            "{}",
            serde_json::to_string_pretty(&cp).map_err(|e| e.to_string())?
        ),
        None => println!("nothing new to checkpoint"),
    }
    Ok(())
}
