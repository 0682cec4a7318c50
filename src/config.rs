//! Typed settings: defaults, then `Rocket.toml` (or the file named by `PCII_CONFIG`), then `PCII_` variables.

use std::path::{Path, PathBuf};

use figment::Figment;
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
    /// SQLite: how long a write waits for another's lock before the request is answered 503 "try again".
    pub database_busy_timeout_ms: u64,
    /// Below this much free space where `data_dir` lives, `/healthz` says `degraded` and uploads are refused (507).
    pub min_free_disk_mib: u64,
    /// `/healthz` answers from its last check for this long (ms), one check at a time: a flood of it then costs
    /// the database and the blob store one check per interval, not one per request.
    pub healthz_cache_ms: u64,
    /// The origin browsers use to reach the portal (e.g. `https://pcii.example.gov`); used for the
    /// Origin check and the setup link. Empty means `http://<address>:<port>`.
    pub public_origin: String,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Threads that hash and check passwords (0: one per core); requests queue for them, and past
    /// 32 waiting per thread a sign-in is answered 503 "busy" at once.
    pub password_hash_workers: u32,
    /// Failed logins allowed per account and per client address within `login_window_seconds`.
    pub login_max_failures: i64,
    pub login_window_seconds: i64,
    /// Sign-in attempts (right or wrong) allowed per client address per minute; past it, 429 without a check.
    pub login_attempts_per_minute: i64,
    pub setup_link_minutes: i64,
    /// `text` (human-readable) or `json`.
    pub log_format: String,
    pub max_file_bytes: u64,
    pub max_submission_bytes: u64,
    pub max_files: u32,
    /// What one organisation's drafts may hold together: how many, and how many bytes of files. Drafts are never
    /// sent to anyone, so without a cap one account could fill the disk (or the bucket) with them.
    pub max_drafts_per_organisation: u32,
    pub max_draft_bytes_per_organisation: u64,
    /// What an organisation the Program Office has not verified yet may have sent and still held (not returned or
    /// destroyed): how many submissions, and how many bytes of files. Self-registration is open, so without a cap
    /// one account could fill the disk (and the officers' queue) by sending; a verified organisation is not capped.
    pub max_unverified_sent_per_organisation: u32,
    pub max_unverified_sent_bytes_per_organisation: u64,
    /// The same bytes over every organisation not verified yet: each registration makes one, so a per-organisation
    /// cap alone only slows a flood of them down.
    pub max_unverified_sent_bytes_total: u64,
    /// Messages one side of a submission's thread may write in it (the organisation's members together, or the
    /// Program Office's officers together): a thread is carried whole in the submission's package, so without a cap
    /// one member could make every package, and the disk, as large as it liked.
    pub max_messages_per_side: u32,
    /// Forms with files received at once: in all (past it, 503) and per account (past it, 429).
    pub max_concurrent_uploads: u32,
    pub max_uploads_per_account: u32,
    /// Files, packages and audit exports being sent at once, in all and per account: each holds a connection, a
    /// thread and up to a megabyte of plaintext while the client reads (503 / 429 beyond).
    pub max_concurrent_downloads: u32,
    pub max_downloads_per_account: u32,
    /// While a file or package is being sent, whether its reader may still read it is decided again every this
    /// many seconds (0: before every piece); once not (a grant revoked or expired, the account disabled, the
    /// content destroyed), the download is cut off.
    pub access_recheck_seconds: u64,
    /// age recipients (public keys only) every data key is also wrapped to, so a lost master key loses nothing.
    pub escrow_recipients: Vec<String>,
    /// How the secrets under `keys_dir` rest: `file` (in clear; a loud warning at start), `passphrase`
    /// (encrypted under an age scrypt passphrase) or `shares` (k-of-n custodians' shares; the portal
    /// starts sealed until k are entered at `/unseal`). See README, "Protecting the master key".
    pub master_key_protection: String,
    /// `passphrase` mode: a file that holds the passphrase (e.g. a systemd credential). Empty means
    /// the passphrase is asked on the terminal. Never the passphrase itself in configuration.
    pub master_key_passphrase_file: PathBuf,
    /// An audit checkpoint is signed every this many entries.
    pub audit_checkpoint_every: i64,
    /// Where sealed files go: empty for `<data_dir>/blobs`, or `s3://bucket/prefix` for an S3 bucket (several
    /// instances share one). Credentials: `s3_credentials_file`, else the standard `AWS_*` variables.
    pub blob_store: String,
    /// The S3 endpoint, e.g. `http://127.0.0.1:8333`; empty: AWS's, from the region (or `AWS_ENDPOINT`).
    pub s3_endpoint: String,
    /// Empty: `AWS_REGION`, else `us-east-1`.
    pub s3_region: String,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted stores need; false: virtual-hosted.
    pub s3_path_style: bool,
    /// An AWS shared-credentials file (profile `AWS_PROFILE` or `default`); empty: the `AWS_*` variables.
    pub s3_credentials_file: PathBuf,
    /// Orphaned blobs younger than this are left alone by the sweep (another instance may be about to commit).
    pub blob_sweep_grace_minutes: u64,
    /// The blob sweep (deletion queue, temporaries, orphans) runs this often while the server runs; 0: at start only.
    pub blob_sweep_interval_seconds: u64,
    /// SMTP server for outgoing mail; empty means messages are written to `<data_dir>/outbox/` as `.eml` files.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (default), `tls` (implicit TLS, port 465) or `none` (loopback test servers only).
    pub smtp_security: String,
    pub smtp_username: String,
    /// Prefer `smtp_password_file` (or `PCII_SMTP_PASSWORD` in the environment) to a password in a file
    /// under version control.
    pub smtp_password: Secret,
    pub smtp_password_file: PathBuf,
    /// The sender of every message, e.g. `PCII Program Office <pcii@example.gov>`.
    pub mail_from: String,
    /// How long an invitation link lives.
    pub invitation_days: i64,
    /// How long an email-confirmation link lives.
    pub email_verification_hours: i64,
    /// How long a password-reset link lives.
    pub password_reset_minutes: i64,
    /// A self-registration whose address is still not confirmed this many days after it was made is removed, with
    /// the organisation made for it, when nothing else refers to them (`auth::unconfirmed`).
    pub unconfirmed_account_days: i64,
    /// A grant of a staff role needs a second administrator's approval while two or more are active.
    pub two_person_rule: bool,
    /// A decision, grant, dissemination record, export, destruction, role approval or factor change needs a second
    /// factor used within this many minutes; otherwise it is asked for again.
    pub step_up_minutes: i64,
    /// Wrong second-factor answers allowed per account (and four times as many per client address) within
    /// `second_factor_window_seconds`; then locked, the lock doubling with each failure soon after one ends.
    pub second_factor_max_failures: i64,
    pub second_factor_window_seconds: i64,
    /// Registrations and password-reset requests allowed per client address per hour (for registrations, an
    /// IPv6 address counts by its /64: one subscriber's network).
    pub registrations_per_hour: i64,
    /// Registrations allowed per hour from all addresses together: each makes an organisation before its address
    /// is confirmed, so many networks at once must not make them without end. Once reached, registration waits an
    /// hour for everyone.
    pub registrations_per_hour_total: i64,
    pub password_resets_per_hour: i64,
    /// How often the portal looks for mail it owes (defect notices, cure reminders, grants, training and NDAs about
    /// to lapse, access requests); 0: never.
    pub notification_interval_seconds: u64,
    /// The Program Office as the help pages name it, and how people reach it (shown on `/help/contact`; empty
    /// values are left out).
    pub office_name: String,
    pub office_email: String,
    pub office_phone: String,
    pub office_hours: String,
    pub office_address: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            keys_dir: PathBuf::from("keys"),
            database_url: String::new(),
            db_pool_size: 8,
            database_busy_timeout_ms: crate::db::DEFAULT_BUSY_TIMEOUT_MS,
            min_free_disk_mib: 256,
            healthz_cache_ms: 1000,
            public_origin: String::new(),
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_hash_workers: 0,
            login_max_failures: 5,
            login_window_seconds: 60,
            login_attempts_per_minute: 30,
            setup_link_minutes: 60,
            log_format: "text".into(),
            max_file_bytes: 2 << 30,
            max_submission_bytes: 4 << 30,
            max_files: 50,
            max_drafts_per_organisation: 100,
            max_draft_bytes_per_organisation: 40 << 30,
            max_unverified_sent_per_organisation: 50,
            max_unverified_sent_bytes_per_organisation: 20 << 30,
            max_unverified_sent_bytes_total: 100 << 30,
            max_messages_per_side: 500,
            max_concurrent_uploads: 64,
            max_uploads_per_account: 4,
            max_concurrent_downloads: 64,
            max_downloads_per_account: 8,
            access_recheck_seconds: 5,
            escrow_recipients: Vec::new(),
            master_key_protection: "file".into(),
            master_key_passphrase_file: PathBuf::new(),
            audit_checkpoint_every: 1000,
            blob_store: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_path_style: true,
            s3_credentials_file: PathBuf::new(),
            blob_sweep_grace_minutes: 60,
            blob_sweep_interval_seconds: 300,
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: String::new(),
            smtp_password: Secret::default(),
            smtp_password_file: PathBuf::new(),
            mail_from: "PCII Portal <pcii-portal@localhost>".into(),
            invitation_days: 7,
            email_verification_hours: 48,
            password_reset_minutes: 30,
            unconfirmed_account_days: 7,
            two_person_rule: true,
            step_up_minutes: 15,
            second_factor_max_failures: 5,
            second_factor_window_seconds: 300,
            registrations_per_hour: 10,
            registrations_per_hour_total: 100,
            password_resets_per_hour: 5,
            notification_interval_seconds: 300,
            office_name: "PCII Program Office".into(),
            office_email: String::new(),
            office_phone: String::new(),
            office_hours: String::new(),
            office_address: String::new(),
        }
    }
}

/// A secret setting: read like a string, never printed (`{:?}` of the settings shows `[redacted]`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// The ASVS floor for argon2id (SECURITY.md); configuration may raise it, never lower it.
pub const ARGON2_MIN_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_MIN_ITERATIONS: u32 = 2;

impl Settings {
    /// A session's idle and absolute timeouts, in seconds.
    pub fn session_timeouts(&self) -> (i64, i64) {
        (
            self.session_idle_minutes * 60,
            self.session_absolute_hours * 3600,
        )
    }

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

    pub fn s3_options(&self) -> crate::storage::s3::S3Options {
        crate::storage::s3::S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            credentials_file: self.s3_credentials_file.clone(),
        }
    }

    /// Where messages go when no SMTP server is configured.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(dir) = self.passphrase_file_beside_what_it_protects() {
            return Err(format!(
                "master_key_passphrase_file must not be under {dir}: a copy of that directory would hold the \
                 passphrase beside the key it seals (hand it over as a systemd credential, see deploy/systemd/)"
            ));
        }
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
        if self.setup_link_minutes < 1 || self.db_pool_size < 1 || self.database_busy_timeout_ms < 1
        {
            return Err(
                "setup_link_minutes, db_pool_size and database_busy_timeout_ms must be positive"
                    .into(),
            );
        }
        if self.password_hash_workers > 256 {
            return Err("password_hash_workers must be at most 256 (0: one per core)".into());
        }
        if self.login_max_failures < 1
            || self.login_window_seconds < 1
            || self.login_attempts_per_minute < 1
        {
            return Err("login throttling settings must be positive".into());
        }
        if self.max_files == 0
            || self.max_file_bytes == 0
            || self.max_submission_bytes == 0
            || self.max_drafts_per_organisation == 0
            || self.max_draft_bytes_per_organisation == 0
            || self.max_unverified_sent_per_organisation == 0
            || self.max_unverified_sent_bytes_per_organisation == 0
            || self.max_unverified_sent_bytes_total == 0
            || self.max_messages_per_side == 0
            || self.max_concurrent_uploads == 0
            || self.max_uploads_per_account == 0
            || self.max_concurrent_downloads == 0
            || self.max_downloads_per_account == 0
        {
            return Err("upload and download limits must be positive".into());
        }
        if !matches!(self.smtp_security.as_str(), "starttls" | "tls" | "none") {
            return Err(format!(
                "smtp_security must be `starttls`, `tls` or `none`, not `{}`",
                self.smtp_security
            ));
        }
        if self.invitation_days < 1
            || self.email_verification_hours < 1
            || self.password_reset_minutes < 1
            || self.registrations_per_hour < 1
            || self.registrations_per_hour_total < 1
            || self.password_resets_per_hour < 1
        {
            return Err("link lifetimes and per-hour limits must be positive".into());
        }
        // An upload may last the grace less five minutes, and a re-encryption's new copy waits out the gap
        // between being stored and being recorded within it: a few minutes of grace would sweep them. 0 is kept
        // for clearing a stopped store's orphans at start (with a warning, `grace_warnings`).
        if (1..MIN_SWEEP_GRACE_MINUTES).contains(&self.blob_sweep_grace_minutes) {
            return Err(format!(
                "blob_sweep_grace_minutes must be at least {MIN_SWEEP_GRACE_MINUTES} (or 0, only to sweep a stopped \
                 store's orphans at start), not {}",
                self.blob_sweep_grace_minutes
            ));
        }
        if self.unconfirmed_account_days < 1 {
            return Err("unconfirmed_account_days must be at least 1".into());
        }
        // Never remove an account while its first confirmation link still works.
        if self.unconfirmed_account_days.saturating_mul(24) < self.email_verification_hours {
            return Err(format!(
                "unconfirmed_account_days ({} days) must be at least as long as email_verification_hours ({} hours)",
                self.unconfirmed_account_days, self.email_verification_hours
            ));
        }
        if self.step_up_minutes < 1
            || self.second_factor_max_failures < 1
            || self.second_factor_window_seconds < 1
        {
            return Err(
                "step_up_minutes and the second-factor throttle settings must be positive".into(),
            );
        }
        if !matches!(
            self.master_key_protection.as_str(),
            "file" | "passphrase" | "shares"
        ) {
            return Err(format!(
                "master_key_protection must be `file`, `passphrase` or `shares`, not `{}`",
                self.master_key_protection
            ));
        }
        if !self.blob_store.is_empty()
            && crate::storage::s3::S3Location::parse(&self.blob_store).is_none()
        {
            // Not repeated: a value such as s3://KEY:SECRET@bucket holds credentials, and this goes to the journal.
            return Err(
                "blob_store must be empty (files under data_dir) or s3://bucket[/prefix]; credentials go in \
                 s3_credentials_file or the standard AWS variables"
                    .into(),
            );
        }
        // Durations are turned into seconds by multiplication and added to times: a value meant as "never" (the
        // largest number) would wrap in a release build (every session expired at once, every link dead on arrival)
        // or panic in a debug one. A year is more than any of them needs.
        const YEAR_SECS: i128 = 366 * 24 * 3600;
        for (name, value, unit_secs) in [
            (
                "session_idle_minutes",
                i128::from(self.session_idle_minutes),
                60,
            ),
            (
                "session_absolute_hours",
                i128::from(self.session_absolute_hours),
                3600,
            ),
            ("step_up_minutes", i128::from(self.step_up_minutes), 60),
            (
                "setup_link_minutes",
                i128::from(self.setup_link_minutes),
                60,
            ),
            ("invitation_days", i128::from(self.invitation_days), 86_400),
            (
                "email_verification_hours",
                i128::from(self.email_verification_hours),
                3600,
            ),
            (
                "password_reset_minutes",
                i128::from(self.password_reset_minutes),
                60,
            ),
            (
                "unconfirmed_account_days",
                i128::from(self.unconfirmed_account_days),
                86_400,
            ),
            (
                "login_window_seconds",
                i128::from(self.login_window_seconds),
                1,
            ),
            (
                "second_factor_window_seconds",
                i128::from(self.second_factor_window_seconds),
                1,
            ),
            (
                "blob_sweep_grace_minutes",
                i128::from(self.blob_sweep_grace_minutes),
                60,
            ),
            (
                "blob_sweep_interval_seconds",
                i128::from(self.blob_sweep_interval_seconds),
                1,
            ),
            (
                "access_recheck_seconds",
                i128::from(self.access_recheck_seconds),
                1,
            ),
            (
                "notification_interval_seconds",
                i128::from(self.notification_interval_seconds),
                1,
            ),
        ] {
            if value * unit_secs > YEAR_SECS {
                return Err(format!(
                    "{name} must be at most a year ({} in its unit), not {value}",
                    YEAR_SECS / unit_secs
                ));
            }
        }
        if self.audit_checkpoint_every < 1 {
            return Err("audit_checkpoint_every must be at least 1".into());
        }
        if let Some(problem) = origin_problem(&self.public_origin) {
            return Err(format!("public_origin {problem}"));
        }
        let password_given =
            !self.smtp_password.0.is_empty() || !self.smtp_password_file.as_os_str().is_empty();
        if password_given && self.smtp_username.trim().is_empty() {
            return Err(
                "an SMTP password is set (smtp_password or smtp_password_file) but no smtp_username: the mail \
                 server would be asked without credentials"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Rocket's own configuration keys (Rocket 0.5's `Config`), which the portal passes through to it.
const ROCKET_CONFIG_KEYS: &[&str] = &[
    "address",
    "port",
    "workers",
    "max_blocking",
    "ident",
    "ip_header",
    "limits",
    "tls",
    "secret_key",
    "temp_dir",
    "keep_alive",
    "shutdown",
    "log_level",
    "cli_colors",
    "profile",
    // `PCII_LOG`, the tracing filter, read by `logging` itself.
    "log",
];

/// Keys set in the configuration (file or `PCII_` variables) that nothing reads: a typo, or a setting of another
/// version. Each is said at start, so that a setting that does nothing is never silent.
pub fn unused_keys(figment: &Figment) -> Vec<String> {
    let known: Vec<String> = match figment::value::Value::serialize(Settings::default()) {
        Ok(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let Ok(set) = figment.extract::<figment::value::Dict>() else {
        return Vec::new();
    };
    set.keys()
        .filter(|k| !known.contains(k) && !ROCKET_CONFIG_KEYS.contains(&k.as_str()))
        .map(|k| {
            format!(
                "configuration key `{k}` is not a setting of this portal and is ignored (a typo?)"
            )
        })
        .collect()
}

/// The least `blob_sweep_grace_minutes` a running portal takes (0 aside).
pub const MIN_SWEEP_GRACE_MINUTES: u64 = 10;

/// What start-up warns of about the sweep: with no grace, every unreferenced blob is removed at once.
pub fn grace_warnings(settings: &Settings) -> Vec<String> {
    if settings.blob_sweep_grace_minutes == 0 {
        vec!["blob_sweep_grace_minutes is 0: every stored file no row names yet is swept at once, those of uploads \
              and of a `keys rotate --data-keys` in progress included (an upload's window is 0 too); use it only to \
              clear a stopped store's orphans, then start again with the default"
            .to_string()]
    } else {
        Vec::new()
    }
}

/// What start-up warns of about the mail route: implicit TLS on the submission port (587) or STARTTLS on the
/// implicit-TLS port (465) fails at the first send, a day later as "mail waits", not at start.
pub fn mail_warnings(settings: &Settings) -> Vec<String> {
    if settings.smtp_host.trim().is_empty() {
        // The outbox is the embedded default's mail; with the master key sealed, the operator meant a copy of the
        // disk to disclose nothing, and the outbox's links (invitations, resets, confirmations) are live
        // credentials in clear under `data/`.
        return match settings.master_key_protection.as_str() {
            "file" => Vec::new(),
            mode => vec![format!(
                "the master key is sealed (`{mode}`) but mail is written to {} (no smtp_host): the invitation, \
                 reset and confirmation links in it are live credentials in clear, which a copy of the disk holds; \
                 set smtp_host, or deliver and delete the files promptly",
                settings.outbox_dir().display()
            )],
        };
    }
    match (settings.smtp_security.as_str(), settings.smtp_port) {
        ("tls", 587) => vec![
            "smtp_security is `tls` (implicit TLS) on port 587, where servers expect STARTTLS: \
                              every send is likely to fail; use `starttls`, or port 465"
                .to_string(),
        ],
        ("starttls", 465) => vec![
            "smtp_security is `starttls` on port 465, where servers expect implicit TLS: \
                                   every send is likely to fail; use `tls`, or port 587"
                .to_string(),
        ],
        _ => Vec::new(),
    }
}

/// Why the portal may not start listening as configured, if it may not: beyond this machine without an https://
/// `public_origin` (none, or an `http://` one naming this machine), it would be served in plain HTTP across the
/// network — the session cookie without `Secure`, no HSTS, mailed links in clear — which an `http://`
/// `public_origin` beyond this machine is refused for too ([`origin_problem`]).
pub fn exposure_problem(figment: &Figment) -> Option<String> {
    let address = figment.extract_inner::<std::net::IpAddr>("address").ok()?;
    let origin: String = figment.extract_inner("public_origin").unwrap_or_default();
    (!address.is_loopback() && !origin.trim().starts_with("https://")).then(|| {
        format!(
            "listening on {address}, beyond this machine, without an https:// `public_origin`: the portal would be \
             served in clear across the network. End TLS at a reverse proxy (deploy/nginx) and set `public_origin` to the \
             https:// address people use, or listen on 127.0.0.1"
        )
    })
}

/// What start-up warns of about how the portal is reached: trusting a proxy's client-address header (`ip_header`)
/// while listening beyond this machine lets whoever connects directly, not through the proxy, choose its own
/// address for every per-address limit; and behind a proxy (an https:// `public_origin` served from this machine)
/// without that header every client is the proxy's loopback address, so each per-address limit is one limit shared
/// by everyone: one stranger's wrong passwords would lock sign-in for all.
pub fn exposure_warnings(figment: &Figment) -> Vec<String> {
    let Ok(address) = figment.extract_inner::<std::net::IpAddr>("address") else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    if address.is_loopback() {
        let origin: String = figment.extract_inner("public_origin").unwrap_or_default();
        // `ip_header = false` (the portal's default) extracts as no string.
        let header = figment.extract_inner::<String>("ip_header").ok();
        if origin.trim().starts_with("https://") && header.is_none() {
            warnings.push(format!(
                "serving {} from {address} (behind a proxy) without `ip_header`: every client arrives as the                  proxy's address, so each per-address limit (sign-in, registration, password reset) is one limit                  shared by everyone, and one stranger's wrong passwords lock sign-in for all; set `ip_header` to                  the header the proxy sets (deploy/nginx sets X-Real-IP)",
                origin.trim()
            ));
        }
        return warnings;
    }
    if let Ok(header) = figment.extract_inner::<String>("ip_header") {
        warnings.push(format!(
            "trusting the client address in `{header}` while listening on {address}, beyond this machine: whoever \
             reaches the portal directly, not through the proxy, chooses its own address for every per-address limit; \
             listen on 127.0.0.1 (or firewall the port) so that only the proxy reaches it"
        ));
    }
    warnings
}

/// What is wrong with `public_origin` (empty: derived from the address), if anything: it is `https://host[:port]`
/// — or `http://` on this machine (localhost, a loopback address) — with no path, query or user. Anything else
/// silently drops the `Secure` and `__Host-` cookie attributes and HSTS, and mails links in clear.
fn origin_problem(origin: &str) -> Option<&'static str> {
    let origin = origin.trim();
    if origin.is_empty() {
        return None;
    }
    let Some((scheme, rest)) = origin.trim_end_matches('/').split_once("://") else {
        return Some("must be https://host[:port] (the address people type, with its scheme)");
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Some("must be https://host[:port], with no path, query or user");
    }
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.split(':').next().unwrap_or_default(),
    };
    let this_machine = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match scheme {
        "https" => None,
        "http" if this_machine => None,
        "http" => Some(
            "must be https:// beyond this machine (over http the session cookie loses `Secure`, HSTS is not sent \
             and mailed links cross the network in clear); TLS ends at the proxy (deploy/nginx)",
        ),
        _ => Some("must be https://host[:port]"),
    }
}

/// A configuration that does not extract, said without the values it refuses: a secret typed in the wrong place
/// (an all-digit SMTP password read as a number) would otherwise be printed to the journal.
fn describe_extraction_error(e: figment::Error) -> String {
    use figment::error::Kind;
    e.into_iter()
        .map(|e| match &e.kind {
            Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => format!(
                "configuration: `{}` is not valid: expected {expected} (the value is not repeated here)",
                e.path.join(".")
            ),
            _ => format!("configuration: {e}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn load(figment: &Figment) -> Result<Settings, String> {
    let settings: Settings = figment.extract().map_err(describe_extraction_error)?;
    settings.validate()?;
    Ok(settings)
}

/// The origin browsers use: `public_origin`, or `http://<address>:<port>` when it is not set.
pub fn origin(figment: &Figment, settings: &Settings) -> String {
    if settings.public_origin.is_empty() {
        let address: String = figment
            .extract_inner("address")
            .unwrap_or_else(|_| "127.0.0.1".into());
        let port: u16 = figment.extract_inner("port").unwrap_or(8000);
        format!("http://{address}:{port}")
    } else {
        settings.public_origin.trim_end_matches('/').to_string()
    }
}

/// Resolves a path setting against the current directory, for messages that name where things live.
pub fn display_path(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

impl Settings {
    /// The setting (`keys_dir` or `data_dir`) under whose directory `master_key_passphrase_file` lies, if it does.
    fn passphrase_file_beside_what_it_protects(&self) -> Option<&'static str> {
        if self.master_key_passphrase_file.as_os_str().is_empty() {
            return None;
        }
        // Resolved where they exist (symlinks, `..`), as given otherwise.
        let resolved = |p: &Path| {
            std::path::absolute(p)
                .map(|p| p.canonicalize().unwrap_or(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let file = resolved(&self.master_key_passphrase_file);
        [("keys_dir", &self.keys_dir), ("data_dir", &self.data_dir)]
            .into_iter()
            .filter(|(_, dir)| !dir.as_os_str().is_empty())
            .find(|(_, dir)| file.starts_with(resolved(dir)))
            .map(|(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn a_sealed_master_key_with_mail_in_the_outbox_is_warned_of() {
        let settings = |mode: &str, smtp_host: &str| Settings {
            master_key_protection: mode.into(),
            smtp_host: smtp_host.into(),
            ..Settings::default()
        };
        assert!(mail_warnings(&settings("file", "")).is_empty());
        assert!(mail_warnings(&settings("passphrase", "smtp.example.gov")).is_empty());
        for mode in ["passphrase", "shares"] {
            let w = mail_warnings(&settings(mode, ""));
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].contains("live credentials") && w[0].contains("outbox"),
                "{w:?}"
            );
        }
    }

    #[test]
    fn a_passphrase_file_under_the_keys_or_the_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |file: PathBuf| Settings {
            data_dir: dir.path().join("data"),
            keys_dir: dir.path().join("keys"),
            master_key_passphrase_file: file,
            ..Settings::default()
        };
        assert_eq!(settings(PathBuf::new()).validate(), Ok(()));
        assert_eq!(
            settings(dir.path().join("elsewhere/pass")).validate(),
            Ok(())
        );
        // A directory whose name begins like the data's is not under it.
        assert_eq!(settings(dir.path().join("data2/pass")).validate(), Ok(()));
        for (file, named) in [
            (dir.path().join("keys/passphrase"), "keys_dir"),
            (dir.path().join("data/x/../passphrase"), "data_dir"),
        ] {
            let refused = settings(file).validate().unwrap_err();
            assert!(refused.contains(&format!("under {named}")), "{refused}");
        }
    }

    #[test]
    fn exposure_is_warned_of_beyond_loopback_only() {
        let figment = |address: &str, ip_header: Option<&str>, origin: &str| {
            let mut figment = Figment::from(Serialized::defaults(Settings::default()))
                .merge(("address", address))
                .merge(("ip_header", false))
                .merge(("public_origin", origin));
            if let Some(h) = ip_header {
                figment = figment.merge(("ip_header", h));
            }
            figment
        };
        let origin = "https://pcii.example.gov";
        assert!(exposure_warnings(&figment("127.0.0.1", Some("X-Real-IP"), "")).is_empty());
        assert!(exposure_warnings(&figment("127.0.0.1", Some("X-Real-IP"), origin)).is_empty());
        assert!(exposure_warnings(&figment("127.0.0.1", None, "")).is_empty());
        assert!(exposure_warnings(&figment("127.0.0.1", None, "http://localhost:8000")).is_empty());
        // Behind a proxy without the client's address: every per-address limit would be shared by everyone.
        for address in ["127.0.0.1", "::1"] {
            let w = exposure_warnings(&figment(address, None, origin));
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].contains("`ip_header`") && w[0].contains("shared by everyone"));
        }
        assert!(exposure_warnings(&figment("0.0.0.0", None, origin)).is_empty());
        let w = exposure_warnings(&figment("0.0.0.0", Some("X-Real-IP"), origin));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("X-Real-IP") && w[0].contains("chooses its own address"));
        // Without `public_origin` beyond this machine it would be plain HTTP on the network: refused, not warned.
        assert_eq!(exposure_problem(&figment("127.0.0.1", None, "")), None);
        assert_eq!(exposure_problem(&figment("::1", None, "")), None);
        assert_eq!(exposure_problem(&figment("0.0.0.0", None, origin)), None);
        for address in ["0.0.0.0", "::", "192.0.2.10"] {
            for origin in ["", "http://localhost:8000"] {
                let problem = exposure_problem(&figment(address, None, origin)).expect("refused");
                assert!(
                    problem.contains("public_origin") && problem.contains(address),
                    "{problem}"
                );
            }
        }
    }

    #[test]
    fn a_key_nothing_reads_is_named_and_known_ones_are_not() {
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(("smtp_hots", "mail.example"))
            .merge(("data_dir", "elsewhere"))
            .merge(("port", 9000));
        let unused = unused_keys(&figment);
        assert_eq!(unused.len(), 1, "{unused:?}");
        assert!(unused[0].contains("`smtp_hots`"));
    }

    #[test]
    fn out_of_range_values_are_refused_at_start() {
        for bad in [
            Settings {
                setup_link_minutes: -5,
                ..Settings::default()
            },
            Settings {
                db_pool_size: 0,
                ..Settings::default()
            },
            Settings {
                login_window_seconds: 0,
                ..Settings::default()
            },
            Settings {
                unconfirmed_account_days: 0,
                ..Settings::default()
            },
            Settings {
                unconfirmed_account_days: 2,
                email_verification_hours: 49,
                ..Settings::default()
            },
            Settings {
                blob_sweep_grace_minutes: 1,
                ..Settings::default()
            },
            Settings {
                blob_sweep_grace_minutes: MIN_SWEEP_GRACE_MINUTES - 1,
                ..Settings::default()
            },
            // "Never" as the largest number would wrap once turned into seconds.
            Settings {
                session_absolute_hours: i64::MAX,
                ..Settings::default()
            },
            Settings {
                step_up_minutes: i64::MAX,
                ..Settings::default()
            },
            Settings {
                access_recheck_seconds: u64::MAX,
                ..Settings::default()
            },
            Settings {
                invitation_days: 367,
                ..Settings::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(Settings::default().validate().is_ok());
        let refused = Settings {
            session_absolute_hours: i64::MAX,
            ..Settings::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            refused.contains("session_absolute_hours must be at most a year (8784"),
            "{refused}"
        );
        // A year is allowed.
        let year = Settings {
            session_absolute_hours: 8784,
            invitation_days: 366,
            ..Settings::default()
        };
        assert!(year.validate().is_ok());
        // 0 starts, with a warning; the least grace otherwise starts without one.
        let none = Settings {
            blob_sweep_grace_minutes: 0,
            ..Settings::default()
        };
        assert!(none.validate().is_ok());
        assert_eq!(grace_warnings(&none).len(), 1);
        let least = Settings {
            blob_sweep_grace_minutes: MIN_SWEEP_GRACE_MINUTES,
            ..Settings::default()
        };
        assert!(least.validate().is_ok());
        assert!(grace_warnings(&least).is_empty());
    }

    #[test]
    fn a_tls_mode_on_the_other_mode_s_port_is_warned_of() {
        let with = |security: &str, port: u16| Settings {
            smtp_host: "mail.example".into(),
            smtp_security: security.into(),
            smtp_port: port,
            ..Settings::default()
        };
        assert_eq!(mail_warnings(&with("tls", 587)).len(), 1);
        assert_eq!(mail_warnings(&with("starttls", 465)).len(), 1);
        assert!(mail_warnings(&with("starttls", 587)).is_empty());
        assert!(mail_warnings(&with("tls", 465)).is_empty());
        assert!(
            mail_warnings(&Settings::default()).is_empty(),
            "no SMTP host"
        );
    }

    #[test]
    fn refusals_do_not_repeat_values_that_may_be_secrets() {
        let base = || Figment::from(Serialized::defaults(Settings::default()));
        let e = load(&base().merge(("smtp_password", 20240917123456u64))).unwrap_err();
        assert!(
            e.contains("smtp_password") && !e.contains("20240917123456"),
            "{e}"
        );
        let e =
            load(&base().merge(("blob_store", "s3://AKIAMARKER:SecretMarker@bucket"))).unwrap_err();
        assert!(e.contains("blob_store") && !e.contains("Marker"), "{e}");
    }

    #[test]
    fn public_origin_is_https_or_this_machine_and_a_password_needs_a_user() {
        for ok in [
            "",
            "https://pcii.example.gov",
            "https://pcii.example.gov:8443/",
            "http://localhost:8000",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
        ] {
            assert_eq!(origin_problem(ok), None, "{ok}");
        }
        for bad in [
            "http://pcii.example.gov",
            "pcii.example.gov",
            "https://pcii.example.gov/portal",
            "https://user@pcii.example.gov",
            "ftp://pcii.example.gov",
        ] {
            assert!(origin_problem(bad).is_some(), "{bad}");
        }
        let s = Settings {
            smtp_password: Secret("p".into()),
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().contains("smtp_username"));
        let s = Settings {
            smtp_password: Secret("p".into()),
            smtp_username: "portal".into(),
            ..Settings::default()
        };
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_smtp_password_is_read_from_the_environment_but_never_printed() {
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(("smtp_password", "hunter2-MARKER"));
        let s: Settings = figment.extract().unwrap();
        assert_eq!(s.smtp_password.0, "hunter2-MARKER");
        assert!(!format!("{s:?}").contains("hunter2-MARKER"));
    }
}
