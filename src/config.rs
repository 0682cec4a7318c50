//! Typed settings: defaults, then `Rocket.toml` (or the file named by `PCII_CONFIG`), then `PCII_` variables.

use std::path::{Path, PathBuf};

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::{Figment, Profile};
use serde::{Deserialize, Serialize};

/// Every setting of the portal, with its default. The README's configuration table mirrors this struct.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where the SQLite database and the blob store live.
    pub data_dir: PathBuf,
    /// Where the age identities, Rocket's secret key and the audit signing key live.
    pub keys_dir: PathBuf,
    /// `postgres://...` for PostgreSQL (feature `postgres`); anything else is a SQLite path.
    /// Empty means `<data_dir>/pcii.sqlite3`.
    pub database_url: String,
    pub db_pool_size: u32,
    /// The origin browsers use to reach the portal (e.g. `https://pcii.example.gov`); used for the
    /// Origin check and the setup link. Empty means `http://<address>:<port>`.
    pub public_origin: String,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Failed logins allowed per account and per client address within `login_window_seconds`.
    pub login_max_failures: i64,
    pub login_window_seconds: i64,
    pub setup_link_minutes: i64,
    /// `text` (human-readable) or `json`.
    pub log_format: String,
    pub max_file_bytes: u64,
    pub max_submission_bytes: u64,
    pub max_files: u32,
    /// age recipients (public keys only) every blob is also encrypted to, so a lost server key loses nothing.
    pub escrow_recipients: Vec<String>,
    /// An audit checkpoint is signed every this many entries.
    pub audit_checkpoint_every: i64,
    /// Orphaned blobs younger than this are left alone by the sweep (another instance may be about to commit).
    pub blob_sweep_grace_minutes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            keys_dir: PathBuf::from("keys"),
            database_url: String::new(),
            db_pool_size: 8,
            public_origin: String::new(),
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            login_max_failures: 5,
            login_window_seconds: 60,
            setup_link_minutes: 60,
            log_format: "text".into(),
            max_file_bytes: 2 << 30,
            max_submission_bytes: 4 << 30,
            max_files: 50,
            escrow_recipients: Vec::new(),
            audit_checkpoint_every: 1000,
            blob_sweep_grace_minutes: 60,
        }
    }
}

/// The ASVS floor for argon2id (SECURITY.md); configuration may raise it, never lower it.
pub const ARGON2_MIN_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_MIN_ITERATIONS: u32 = 2;

impl Settings {
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            self.data_dir
                .join("pcii.sqlite3")
                .to_string_lossy()
                .into_owned()
        } else {
            self.database_url.clone()
        }
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.argon2_memory_kib < ARGON2_MIN_MEMORY_KIB
            || self.argon2_iterations < ARGON2_MIN_ITERATIONS
        {
            return Err(format!(
                "argon2 parameters below the floor (m >= {ARGON2_MIN_MEMORY_KIB} KiB, t >= {ARGON2_MIN_ITERATIONS})"
            ));
        }
        if self.argon2_parallelism == 0 {
            return Err("argon2_parallelism must be at least 1".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log_format must be `text` or `json`, not `{}`",
                self.log_format
            ));
        }
        if self.session_idle_minutes <= 0 || self.session_absolute_hours <= 0 {
            return Err("session timeouts must be positive".into());
        }
        if self.login_max_failures < 1 || self.login_window_seconds < 1 {
            return Err("login throttling settings must be positive".into());
        }
        if self.max_files == 0 || self.max_file_bytes == 0 || self.max_submission_bytes == 0 {
            return Err("upload limits must be positive".into());
        }
        if self.audit_checkpoint_every < 1 {
            return Err("audit_checkpoint_every must be at least 1".into());
        }
        Ok(())
    }
}

/// The figment every entry point reads: Rocket's own settings and ours, from one place.
pub fn figment() -> Figment {
    let file = std::env::var("PCII_CONFIG").unwrap_or_else(|_| "Rocket.toml".into());
    Figment::from(rocket::Config::default())
        .merge(Serialized::defaults(Settings::default()))
        // Rocket trusts X-Real-IP by default; address-keyed throttling must not be dodgeable.
        .merge(("ip_header", false))
        .merge(("log_level", rocket::config::LogLevel::Off))
        // No `Server: Rocket` header: nothing to fingerprint.
        .merge(("ident", false))
        .merge(Toml::file(file).nested())
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

pub fn load(figment: &Figment) -> Result<Settings, String> {
    let settings: Settings = figment
        .extract()
        .map_err(|e| format!("configuration: {e}"))?;
    settings.validate()?;
    Ok(settings)
}

/// Resolves a path setting against the current directory, for messages that name where things live.
pub fn display_path(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}
