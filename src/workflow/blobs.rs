//! Blob bookkeeping that spans the store and the database: the start-up sweep.

use std::time::Duration;

use crate::config::Settings;
use crate::db::DbConn;
use crate::models::blob;
use crate::storage::{sweep_orphans, BlobStore};

/// Removes unfinished temporaries and blobs no row points to. Both only past a grace period: another
/// instance sharing the store may be writing one right now.
pub fn sweep_at_start(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    settings: &Settings,
) -> Result<usize, String> {
    let grace = Duration::from_secs(settings.blob_sweep_grace_minutes * 60);
    let temporaries = store.sweep_temporaries(grace).map_err(|e| e.to_string())?;
    let mut failure = None;
    let orphans = sweep_orphans(store, grace, &mut |name| {
        match blob::storage_name_in_use(conn, name) {
            Ok(in_use) => in_use,
            Err(e) => {
                // When in doubt, keep the blob.
                failure = Some(e.to_string());
                true
            }
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = failure {
        tracing::warn!(error = %e, "blob sweep could not check some blobs; they were kept");
    }
    if temporaries + orphans > 0 {
        tracing::info!(
            temporaries,
            orphans,
            "blob sweep removed unreferenced files"
        );
    }
    Ok(temporaries + orphans)
}
