//! pcii-portal: intake, validation and need-to-know access for Protected Critical Infrastructure Information.
//!
//! Layers point one way: `web` (routes, guards, templates) → `workflow`/`auth`/`audit` (rules) →
//! `models`/`storage`/`crypto` (diesel, blob store, age) → `db`.

/// `Debug` for a type that holds protected words (a submission's text, a file's name as sent, an officer's
/// reason or note): its name only, so that no `{:?}`, `dbg!` or failed assertion can print them into a log. A test
/// that compares such values sees `Content { .. }` on failure, not the words.
macro_rules! debug_without_words {
    ($name:ident) => {
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), " { .. }"))
            }
        }
    };
}

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod export;
pub mod key_store;
pub mod logging;
pub mod mail;
pub mod models;
pub mod services;
pub mod slots;
pub mod storage;
pub mod streaming;
pub mod time;
pub mod web;
pub mod workers;
pub mod workflow;

use std::sync::Arc;

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::{Figment, Profile};
use rocket::{Build, Rocket};

use crate::audit::log::AuditLog;
use crate::auth::password::Hasher;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::Db;
use crate::services::Services;
use crate::storage::BlobStore;

/// The figment every entry point reads: Rocket's own settings and ours (`config::Settings`), from one place:
/// defaults, then `Rocket.toml` (or the file named by `PCII_CONFIG`), then `PCII_` variables.
/// Rocket's keys that `ROCKET_` variables may set (not its secret key, which the key store provides, nor its log
/// level, which tracing replaces).
const ROCKET_KEYS: [&str; 10] = [
    "address",
    "port",
    "workers",
    "max_blocking",
    "keep_alive",
    "limits",
    "ip_header",
    "temp_dir",
    "shutdown",
    "tls",
];

pub fn figment() -> Figment {
    let file = std::env::var("PCII_CONFIG").unwrap_or_else(|_| "Rocket.toml".into());
    Figment::from(rocket::Config::default())
        .merge(Serialized::defaults(Settings::default()))
        // Rocket trusts X-Real-IP by default; address-keyed throttling must not be dodgeable.
        .merge(("ip_header", false))
        .merge(("log_level", rocket::config::LogLevel::Off))
        // No `Server: Rocket` header: nothing to fingerprint.
        .merge(("ident", false))
        // On SIGTERM (systemd's stop) uploads in flight get a minute to finish (Rocket's default is 2 s), then
        // 5 s more to close; what is still running then is cut, and its temporaries swept at the next start.
        .merge(("shutdown.grace", 60))
        .merge(("shutdown.mercy", 5))
        .merge(Toml::file(file).nested())
        // Rocket's own keys answer to `ROCKET_` too, as in every Rocket application (`PCII_` wins when both are set).
        .merge(Env::prefixed("ROCKET_").only(&ROCKET_KEYS).global())
        .merge(
            Env::prefixed("PCII_")
                .ignore(&["PROFILE", "CONFIG"])
                .global(),
        )
        .select(Profile::from_env_or(
            "PCII_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// What start-up did, for the caller to tell the operator about (the setup link, generated keys).
pub struct Startup {
    pub generated_keys: Vec<String>,
    pub setup_token: Option<String>,
    pub swept_blobs: usize,
    /// Where mail goes, for the start banner.
    pub mail_route: String,
}

/// Opens keys, database and blob store, applies migrations, sweeps orphaned blobs, and issues a setup link
/// when no administrator exists. The returned Rocket is ready to launch (or to drive with a local client).
pub fn build(figment: Figment) -> Result<(Rocket<Build>, Startup), String> {
    build_with_clock(figment, Clock::system())
}

/// [`build`] with the clock every rule reads; tests pass one they can advance. Opens the keys without
/// asking anyone (`file`, or `passphrase` with a passphrase file); see [`build_unlocked`].
pub fn build_with_clock(
    figment: Figment,
    clock: Clock,
) -> Result<(Rocket<Build>, Startup), String> {
    let settings = config::load(&figment)?;
    check_configuration(&figment)?;
    let at_rest =
        key_store::protection::unlock_non_interactive(&settings).map_err(|e| e.to_string())?;
    build_unlocked(figment, clock, at_rest)
}

/// What the configuration asks for and this build cannot do, refused; what nothing reads, named. Run first by every
/// way the portal starts (`serve`, before any passphrase is asked or the sealed portal opens; [`build_with_clock`]),
/// so that no setting is silently ignored.
pub fn check_configuration(figment: &Figment) -> Result<(), String> {
    for warning in config::unused_keys(figment) {
        tracing::warn!("{warning}");
        eprintln!("warning: {warning}");
    }
    // This build has no TLS listener (Rocket's `tls` feature is off): a `tls` setting would be silently ignored and
    // the portal served in clear. TLS ends at a reverse proxy; `public_origin = "https://..."` says so to the portal.
    if figment.find_value("tls").is_ok() {
        return Err("`tls` is configured, but this build serves plain HTTP only: end TLS at a reverse proxy \
                    (see README, \"Behind a reverse proxy\") and remove the `tls` setting"
            .into());
    }
    if let Some(problem) = config::exposure_problem(figment) {
        return Err(problem);
    }
    Ok(())
}

/// [`build_with_clock`] with the key store's secret files resting as `at_rest` says: in clear, or sealed
/// to an unlock key that was unlocked already (a passphrase typed at start, or shares given at `/unseal`).
pub fn build_unlocked(
    figment: Figment,
    clock: Clock,
    at_rest: crypto::keyfile::AtRest,
) -> Result<(Rocket<Build>, Startup), String> {
    let settings = config::load(&figment)?;
    let opened = key_store::open_unlocked(&settings, &at_rest).map_err(|e| e.to_string())?;
    create_private_dir(&settings.data_dir)?;
    let db = Db::open_with(
        &settings.database_url(),
        settings.db_pool_size,
        settings.database_busy_timeout_ms,
    )
    .map_err(|e| e.to_string())?;
    let blobs: Arc<dyn BlobStore> = storage::open_configured(&settings).map_err(|e| {
        let what = if settings.blob_store.is_empty() {
            settings.blob_dir().display().to_string()
        } else {
            settings.blob_store.clone()
        };
        format!("opening the blob store {what}: {e}")
    })?;
    let audit = AuditLog::new(opened.audit_signer, settings.audit_checkpoint_every)
        .with_clock(clock.clone());
    let hasher = Hasher::new(&settings)?;
    let origin = config::origin(&figment, &settings);
    let mailer = mail::Mailer::from_settings(&settings, &origin)?;
    let passkeys = match auth::passkeys::Passkeys::new(&origin) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::warn!(origin = %origin, error = %e, "passkeys are off on this origin (authenticator apps and recovery codes still work)");
            None
        }
    };
    let throttle_key = auth::throttle::ThrottleKey::derive(opened.cookie_secret.as_bytes());

    let mut conn = db.get().map_err(|e| e.to_string())?;
    if !opened.generated.is_empty() {
        key_store::record_generated(&mut conn, &audit, &opened.generated)
            .map_err(|e| e.to_string())?;
    }
    if let Some(entry) = opened.unrecorded_protection {
        key_store::record_protection(&mut conn, &audit, &settings.keys_dir, entry)
            .map_err(|e| e.to_string())?;
    }
    let swept = workflow::blobs::sweep_at_start(&mut conn, blobs.as_ref(), &audit, &settings)
        .map_err(|e| format!("sweeping the blob store: {e}"))?;
    let swept_blobs = swept.deleted + swept.temporaries + swept.orphans;
    workflow::notifications::clear_lease_at_start(&mut conn)
        .map_err(|e| format!("clearing the notification lease: {e}"))?;
    workflow::unconfirmed_purge::clear_lease_at_start(&mut conn)
        .map_err(|e| format!("clearing the unconfirmed-registration purge's lease: {e}"))?;
    let setup_token = auth::accounts::issue_setup_token(
        &mut conn,
        &audit,
        settings.setup_link_minutes,
        clock.now(),
    )
    .map_err(|e| format!("issuing the setup link: {e}"))?;
    drop(conn);

    let figment = figment.merge(("secret_key", opened.cookie_secret.as_str()));
    let settings_downloads = (
        settings.max_concurrent_downloads,
        settings.max_downloads_per_account,
    );
    let state = Services {
        settings,
        db,
        audit,
        hasher,
        keys: Arc::new(std::sync::RwLock::new(opened.keyring)),
        blobs,
        mailer: Arc::new(mailer),
        throttle_key: Arc::new(throttle_key),
        clock,
        passkeys,
        refusals: Arc::new(audit::refusals::RefusalTally::new(
            audit::refusals::WINDOW_SECS,
        )),
        downloads: slots::Slots::new(settings_downloads.0, settings_downloads.1),
        verifies: slots::Slots::new(1, 1),
    };
    let mail_route = state.mailer.describe();
    let uploads = web::multipart::UploadSlots::new(
        state.settings.max_concurrent_uploads,
        state.settings.max_uploads_per_account,
    );
    let public_origin = state.settings.public_origin.clone();
    let rocket = web::mount(
        rocket::custom(figment).manage(state).manage(uploads),
        &public_origin,
    );
    Ok((
        rocket,
        Startup {
            generated_keys: opened.generated,
            setup_token,
            swept_blobs,
            mail_route,
        },
    ))
}

/// The data directory holds the database and the (encrypted) blobs: readable by the portal's user alone.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating the data directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn on_sigterm_requests_in_flight_get_a_minute_by_default() {
        let figment = super::figment();
        assert_eq!(figment.extract_inner::<u32>("shutdown.grace").unwrap(), 60);
        assert_eq!(figment.extract_inner::<u32>("shutdown.mercy").unwrap(), 5);
        // Set as Rocket's own keys are, e.g. PCII_SHUTDOWN='{grace=12,mercy=2}'.
        let set = super::figment().merge(("shutdown", rocket::figment::util::map!["grace" => 12]));
        assert_eq!(set.extract_inner::<u32>("shutdown.grace").unwrap(), 12);
    }
}
