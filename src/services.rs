//! The services the work runs on — database, audit log, keys, blobs, mail, clock — in one value that
//! workflow, auth and exports take instead of reaching for globals. Nothing here knows HTTP.

use std::sync::Arc;

use crate::audit::log::AuditLog;
use crate::audit::refusals::RefusalTally;
use crate::auth::passkeys::Passkeys;
use crate::auth::password::Hasher;
use crate::auth::throttle::ThrottleKey;
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::keys::KeyRing;
use crate::db::Db;
use crate::mail::Mailer;
use crate::storage::BlobStore;

/// Everything the work needs, built once at start and shared: the web layer manages it, workflow and
/// auth take it, the CLI builds its own.
pub struct Services {
    pub settings: Settings,
    pub db: Db,
    pub audit: AuditLog,
    pub hasher: Hasher,
    pub keys: Arc<std::sync::RwLock<KeyRing>>,
    pub blobs: Arc<dyn BlobStore>,
    pub mailer: Arc<Mailer>,
    /// Keys the throttle's hashes of what was typed (emails, addresses), so the table holds no identifier.
    pub throttle_key: Arc<ThrottleKey>,
    pub clock: Clock,
    /// The WebAuthn relying party; `None` when the portal's origin cannot have passkeys (an IP address: WebAuthn
    /// needs a host name, `localhost` included). TOTP and recovery codes work regardless.
    pub passkeys: Option<Arc<Passkeys>>,
    /// Anonymous refusals folded per address, route and minute (see `audit::refusals`).
    pub refusals: Arc<RefusalTally>,
    /// Files, packages and exports being sent (see `workflow::documents::download_slot`).
    pub downloads: Arc<crate::slots::Slots>,
    /// One verify of the audit log at a time on this instance: each holds two reader connections and both
    /// cores while it runs, so a second one (a double click, a script) waits its turn by being refused.
    pub verifies: Arc<crate::slots::Slots>,
}

impl Services {
    /// The key ring, reloaded first when the identity file changed on disk (a `keys rotate` by the CLI
    /// or another instance), so that new blobs are sealed to the current key and not to one about to be
    /// retired. Call it before sealing.
    pub fn current_keys(&self) -> Arc<std::sync::RwLock<KeyRing>> {
        // Reloaded by the ring itself: it knows how its file rests (clear, or sealed to the unlock key).
        let fresh = match self.keys.read() {
            Ok(ring) if ring.changed_on_disk() => Some(ring.reload()),
            _ => None,
        };
        if let Some(fresh) = fresh {
            match fresh {
                Ok(fresh) => {
                    let mut ring = self.keys.write().unwrap_or_else(|p| p.into_inner());
                    *ring = fresh;
                    tracing::info!("reloaded the age key ring after it changed on disk");
                }
                Err(e) => tracing::error!(error = %e, "reloading the changed key ring failed"),
            }
        }
        self.keys.clone()
    }
}
