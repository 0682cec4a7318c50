//! Second factors: an authenticator app (TOTP, RFC 6238), ten single-use recovery codes, and passkeys (in
//! [`super::passkeys`]). Who must have one, how one is enrolled, checked, removed and reset.
//!
//! - Staff (officers, authorized users, auditors, administrators) must; a submitter must when its organisation
//!   requires it. A session that signed in with the password alone reaches nothing of its role until the account's
//!   factor is used (or, with none enrolled, until one is).
//! - A TOTP code is accepted once: the account keeps the highest time step used, and a code of that step or an
//!   earlier one is refused (one conditional update, so two requests racing with one code cannot both pass).
//! - No secret rests in clear: the TOTP seed is sealed to the master identity (`key_store::account_secrets`);
//!   recovery codes carry 79 random bits each and are kept as SHA-256 digests.
//! - An app being enrolled belongs to the session that started it and lasts [`ENROLMENT_SECS`]: another session of
//!   the account (someone else who knows the password) is never shown its seed, and a setup it starts replaces the
//!   pending one. A password change or reset drops it.
//! - Wrong answers are throttled per account and per client address; enrolment, use, failure, recovery-code use,
//!   removal and reset are audited, never a code or secret.

use std::sync::RwLock;

use rand::Rng;
use sha2::{Digest, Sha256};
use totp_rs::{Builder, Totp};
use zeroize::Zeroizing;

use super::passkeys::{Registered, Verdict};
use super::sessions::{self, FactorUsed, NewToken};
use super::throttle::{self, Policy, ThrottleKey};
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::config::Settings;
use crate::crypto::keys::KeyRing;
use crate::db::DbConn;
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::key_store::account_secrets;
use crate::models::account::User;
use crate::models::second_factor as model;

pub const RECOVERY_CODE_COUNT: usize = 10;
const ISSUER: &str = "PCII Portal";
const SEED_BYTES: usize = 20;
/// How long an authenticator-app setup may wait for its confirming code.
pub const ENROLMENT_SECS: i64 = 15 * 60;

/// Deletes the authenticator-app enrolments past their [`ENROLMENT_SECS`] at `now` (housekeeping of what can no
/// longer be confirmed, so not audited); how many.
pub fn delete_lapsed_enrolments(conn: &mut DbConn, now: i64) -> AppResult<usize> {
    Ok(model::delete_enrolments_begun_before(
        conn,
        now - ENROLMENT_SECS,
    )?)
}
/// Recovery codes: 16 characters of a 31-character alphabet without look-alikes (79 bits), in groups of four.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Where a session stands with its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Signed in: a factor was used in this session, or the account needs none and has none.
    Complete,
    /// The password was right, the account has a factor, and this session has not used it yet.
    Pending,
    /// The account must have a factor and has none: only enrolment (and signing out) is open to it.
    MustEnrol,
}

/// Whether the account must have a second factor: staff always; a submitter when its organisation says so.
pub fn required(role: Role, organisation_requires: bool) -> bool {
    role != Role::Submitter || organisation_requires
}

pub fn stage(second_factor_at: Option<i64>, has_factor: bool, required: bool) -> Stage {
    match (second_factor_at, has_factor, required) {
        // Whatever the session gave once: a factor removed since, then required, is enrolled again first.
        (_, false, true) => Stage::MustEnrol,
        (Some(_), true, _) => Stage::Complete,
        (None, true, _) => Stage::Pending,
        (_, false, false) => Stage::Complete,
    }
}

/// Whether a session's last use of a factor is recent enough for an act that needs a fresh one.
pub fn fresh(second_factor_at: Option<i64>, now: i64, step_up_minutes: i64) -> bool {
    second_factor_at.is_some_and(|at| now - at <= step_up_minutes * 60)
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub account: Policy,
    pub address: Policy,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Limits {
        Limits {
            account: Policy {
                max_failures: s.second_factor_max_failures,
                window_secs: s.second_factor_window_seconds,
            },
            address: Policy {
                max_failures: s.second_factor_max_failures * 4,
                window_secs: s.second_factor_window_seconds,
            },
        }
    }
}

/// What the services below need to check an answer: the log, the key ring (TOTP seeds are sealed to it), the
/// throttle's key and limits.
pub struct Checker<'a> {
    pub audit: &'a AuditLog,
    pub ring: &'a RwLock<KeyRing>,
    pub keys: &'a ThrottleKey,
    pub limits: Limits,
}

// ---- TOTP ----

fn totp(seed: &[u8], account: &str) -> AppResult<Totp> {
    // The otpauth label may not hold a colon; an email address seldom does, but may.
    let label = account.replace(':', "_");
    Builder::new()
        .with_secret(seed.to_vec())
        .with_account_name(label)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| AppError::Internal(format!("TOTP parameters: {e}")))
}

/// What the person copies into an authenticator app: the secret as text (base32, in groups of four), the otpauth
/// URI, and that URI as a QR code (an SVG drawn here, as a `data:` URI for an `<img>`).
pub struct TotpSetup {
    pub secret_text: Zeroizing<String>,
    pub qr_data_uri: Zeroizing<String>,
}

fn setup_of(seed: &[u8], account: &str) -> AppResult<TotpSetup> {
    use base64::Engine;
    let t = totp(seed, account)?;
    let uri = Zeroizing::new(
        t.to_url()
            .map_err(|e| AppError::Internal(format!("TOTP URI: {e}")))?,
    );
    let base32 = Zeroizing::new(t.secret().to_base32());
    let grouped = base32
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| AppError::Internal(format!("QR code: {e}")))?;
    let svg = Zeroizing::new(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(220, 220)
            .quiet_zone(true)
            .build(),
    );
    let qr = Zeroizing::new(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg.as_bytes())
    ));
    Ok(TotpSetup {
        secret_text: Zeroizing::new(grouped),
        qr_data_uri: qr,
    })
}

fn ring_read(ring: &RwLock<KeyRing>) -> std::sync::RwLockReadGuard<'_, KeyRing> {
    ring.read().unwrap_or_else(|p| p.into_inner())
}

fn opened(ring: &RwLock<KeyRing>, stored: &str) -> AppResult<Zeroizing<Vec<u8>>> {
    account_secrets::open(&ring_read(ring), stored)
        .map_err(|e| AppError::Internal(format!("opening a TOTP secret: {e}")))
}

/// Starts (or restarts) enrolling an authenticator app: a new seed, sealed and kept as the account's pending
/// enrolment, for this session only, until a code from it confirms it. The account's current factor, if any, stays
/// until then.
///
/// Sealed and stored under the audit chain-head lock, as a new data key is: `keys rotate` retires an identity only
/// under that lock once nothing is sealed to it, so the identity file as read here stands until this commits; one
/// changed on disk since this process read it is read again ([`KeyRing::as_on_disk`]), so an enrolment begun across
/// a rotation is never sealed to the identity just retired.
pub fn begin_totp(
    conn: &mut DbConn,
    ring: &RwLock<KeyRing>,
    user: &User,
    session_hash: &str,
    now: i64,
) -> AppResult<TotpSetup> {
    let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
    rand::rngs::OsRng.fill(&mut seed[..]);
    conn.transaction(|tx| {
        crate::audit::log::lock_head(tx)?;
        let sealed = ring_read(ring)
            .as_on_disk(|ring| account_secrets::seal(ring, &seed[..]))
            .map_err(|e| AppError::Internal(format!("reading the changed key ring: {e}")))?
            .map_err(|e| AppError::Internal(format!("sealing a TOTP secret: {e}")))?;
        model::put_enrolment(
            tx,
            &user.id,
            &sealed.stored,
            &sealed.master_key_id,
            session_hash,
            now,
        )?;
        Ok::<_, AppError>(())
    })?;
    setup_of(&seed[..], &user.email)
}

/// The account's pending enrolment if this session started it and it has not expired: anything else is nobody's
/// to see or confirm.
fn own_enrolment(
    conn: &mut DbConn,
    user: &User,
    session_hash: &str,
    now: i64,
) -> AppResult<Option<model::TotpEnrolment>> {
    Ok(model::find_enrolment(conn, &user.id)?
        .filter(|e| e.session_hash == session_hash && e.created_at > now - ENROLMENT_SECS))
}

/// This session's pending enrolment shown again (after a wrong code, a reload), if there is one.
pub fn pending_totp(
    conn: &mut DbConn,
    ring: &RwLock<KeyRing>,
    user: &User,
    session_hash: &str,
    now: i64,
) -> AppResult<Option<TotpSetup>> {
    match own_enrolment(conn, user, session_hash, now)? {
        Some(e) => Ok(Some(setup_of(
            &opened(ring, &e.secret_sealed)?,
            &user.email,
        )?)),
        None => Ok(None),
    }
}

/// Drops the account's pending authenticator-app setup, whichever session started it (its password has changed:
/// whoever started it may have known the old one).
pub fn forget_pending_totp(conn: &mut DbConn, user_id: &str) -> AppResult<()> {
    model::delete_enrolment(conn, user_id)?;
    Ok(())
}

/// A code as an authenticator app shows it (six digits, spaces allowed), or `None`: anything else is not worth
/// opening the sealed seed for.
fn app_code(code: &str) -> Option<String> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

fn step_of(seed: &[u8], account: &str, code: &str, now: i64) -> AppResult<Option<i64>> {
    let Some(code) = app_code(code).filter(|_| now >= 0) else {
        return Ok(None);
    };
    Ok(totp(seed, account)?
        .check(&code, now as u64)
        .map(|s| s as i64))
}

pub enum Enrolled {
    /// Confirmed. The recovery codes, when this enrolment made the account's first set (shown once).
    Done {
        recovery_codes: Option<Vec<Zeroizing<String>>>,
        /// The session's new token, when this enrolment raised it to the full sign-in.
        renewed: Option<NewToken>,
    },
    WrongCode,
    Throttled,
    /// Nothing is being enrolled (the page was stale).
    NothingPending,
}

fn throttle_keys(c: &Checker<'_>, actor: &Actor, user_id: &str) -> (String, String) {
    let addr = actor.client_addr.as_deref().unwrap_or("unknown");
    (
        c.keys.second_factor_account(user_id),
        c.keys.second_factor_address(addr),
    )
}

fn locked(conn: &mut DbConn, keys: &(String, String), now: i64) -> AppResult<bool> {
    Ok(throttle::is_locked(conn, &keys.0, now)? || throttle::is_locked(conn, &keys.1, now)?)
}

fn record_failure(
    conn: &mut DbConn,
    c: &Checker<'_>,
    keys: &(String, String),
    now: i64,
) -> AppResult<()> {
    throttle::record_failure(conn, &keys.0, c.limits.account, now)?;
    throttle::record_failure(conn, &keys.1, c.limits.address, now)?;
    Ok(())
}

/// Confirms the pending authenticator app with a code from it. It replaces any earlier one; the session that
/// confirmed it counts as having used a factor now; the account's first enrolment also makes its recovery codes.
pub fn confirm_totp(
    conn: &mut DbConn,
    c: &Checker<'_>,
    actor: &Actor,
    user: &User,
    session_hash: &str,
    code: &str,
    now: i64,
) -> AppResult<Enrolled> {
    let keys = throttle_keys(c, actor, &user.id);
    let Some(pending) = own_enrolment(conn, user, session_hash, now)? else {
        return Ok(Enrolled::NothingPending);
    };
    let throttled = || {
        Event::new("mfa.failed", Outcome::Refused)
            .object("account", &user.id)
            .reason("enrolment: throttled")
    };
    if locked(conn, &keys, now)? {
        c.audit.record(conn, actor, throttled())?;
        return Ok(Enrolled::Throttled);
    }
    let step = step_of(
        &opened(c.ring, &pending.secret_sealed)?,
        &user.email,
        code,
        now,
    )?;
    let Some(step) = step else {
        return c.audit.fact(conn, actor, |tx| {
            // Checked again inside the transaction, as in `check`.
            if locked(tx, &keys, now)? {
                return Ok((Enrolled::Throttled, throttled()));
            }
            record_failure(tx, c, &keys, now)?;
            let event = Event::new("mfa.failed", Outcome::Failure)
                .object("account", &user.id)
                .reason("enrolment: wrong authenticator code");
            Ok((Enrolled::WrongCode, event))
        });
    };
    c.audit.fact_if(conn, actor, |tx| {
        if locked(tx, &keys, now)? {
            return Ok((Enrolled::Throttled, Some(throttled())));
        }
        // Read again under the write lock: a password change or reset meanwhile deletes the pending setup and ends
        // the session that began it, and then nothing is enrolled.
        let still = own_enrolment(tx, user, session_hash, now)?
            .is_some_and(|e| e.secret_sealed == pending.secret_sealed);
        let used = if still {
            sessions::factor_used(tx, session_hash, now)?
        } else {
            None
        };
        let Some(used) = used else {
            return Ok((Enrolled::NothingPending, None));
        };
        model::put_totp(
            tx,
            &user.id,
            &pending.secret_sealed,
            &pending.master_key_id,
            step,
            now,
        )?;
        model::delete_enrolment(tx, &user.id)?;
        throttle::clear(tx, &keys.0)?;
        let recovery_codes = if model::recovery_codes_left(tx, &user.id)? == 0 {
            Some(new_recovery_codes(tx, &user.id, now)?)
        } else {
            None
        };
        let mut reason = "authenticator app".to_string();
        if recovery_codes.is_some() {
            reason.push_str(&format!("; {RECOVERY_CODE_COUNT} recovery codes issued"));
        }
        let event = Event::new("mfa.enrolled", Outcome::Success)
            .object("account", &user.id)
            .reason(reason);
        Ok((
            Enrolled::Done {
                recovery_codes,
                renewed: renewed(used),
            },
            Some(event),
        ))
    })
}

/// A new set of recovery codes, to be shown once.
pub type RecoveryCodes = Vec<Zeroizing<String>>;

/// Registers a passkey from the browser's answer to the ceremony this session began. Like a confirmed app: the
/// session counts as having used a factor now, and the account's first factor brings its recovery codes.
#[allow(clippy::too_many_arguments)]
pub fn enrol_passkey(
    conn: &mut DbConn,
    audit: &AuditLog,
    passkeys: &super::passkeys::Passkeys,
    actor: &Actor,
    user: &User,
    session_hash: &str,
    name: &str,
    response_json: &str,
    now: i64,
) -> AppResult<(Option<RecoveryCodes>, Option<NewToken>)> {
    let enrolled = audit.fact(conn, actor, |tx| {
        let registered =
            passkeys.finish_registration(tx, user, session_hash, name, response_json, now)?;
        let Registered::Added(added) = registered else {
            // Recorded, and the ceremony used up, as a wrong code at an app's setup is.
            let event = Event::new("mfa.failed", Outcome::Failure)
                .object("account", &user.id)
                .reason("enrolment: a passkey answer that did not verify");
            return Ok((None, event));
        };
        let used = sessions::factor_used(tx, session_hash, now)?.ok_or_else(sign_in_expired)?;
        let recovery_codes = if model::recovery_codes_left(tx, &user.id)? == 0 {
            Some(new_recovery_codes(tx, &user.id, now)?)
        } else {
            None
        };
        let mut reason = format!("passkey \"{}\"", added.name);
        if recovery_codes.is_some() {
            reason.push_str(&format!("; {RECOVERY_CODE_COUNT} recovery codes issued"));
        }
        let event = Event::new("mfa.enrolled", Outcome::Success)
            .object("account", &user.id)
            .reason(reason);
        Ok((Some((recovery_codes, renewed(used))), event))
    })?;
    enrolled.ok_or_else(|| AppError::Invalid("The passkey could not be added. Try again.".into()))
}

// ---- recovery codes ----

fn recovery_digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(normal.as_bytes()))
}

fn new_recovery_code() -> Zeroizing<String> {
    let mut rng = rand::rngs::OsRng;
    let raw: Zeroizing<Vec<u8>> = Zeroizing::new(
        (0..16)
            .map(|_| RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())])
            .collect(),
    );
    Zeroizing::new(
        raw.chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("-"),
    )
}

fn new_recovery_codes(
    tx: &mut DbConn,
    user_id: &str,
    now: i64,
) -> AppResult<Vec<Zeroizing<String>>> {
    let codes: Vec<Zeroizing<String>> = (0..RECOVERY_CODE_COUNT)
        .map(|_| new_recovery_code())
        .collect();
    let digests: Vec<String> = codes.iter().map(|c| recovery_digest(c)).collect();
    model::replace_recovery_codes(tx, user_id, &digests, now)?;
    Ok(codes)
}

/// A new set of ten recovery codes; the old set, used or not, stops working in the same transaction.
pub fn regenerate_recovery_codes(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user: &User,
    now: i64,
) -> AppResult<Vec<Zeroizing<String>>> {
    audit.fact(conn, actor, |tx| {
        if !model::has_factor(tx, &user.id)? {
            return Err(AppError::Conflict(
                "Recovery codes stand in for a second factor: enrol an authenticator app or a passkey first.".into(),
            ));
        }
        let codes = new_recovery_codes(tx, &user.id, now)?;
        let event = Event::new("mfa.recovery_codes_regenerated", Outcome::Success)
            .object("account", &user.id)
            .reason(format!(
                "{RECOVERY_CODE_COUNT} new codes; the earlier set no longer works"
            ));
        Ok((codes, event))
    })
}

pub fn recovery_codes_left(conn: &mut DbConn, user_id: &str) -> AppResult<i64> {
    Ok(model::recovery_codes_left(conn, user_id)?)
}

// ---- checking an answer ----

/// Why a factor is asked for: to finish signing in, or again before an act that needs a recent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignIn,
    StepUp,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign-in",
            Purpose::StepUp => "step-up",
        }
    }
}

/// What the person answered: a code typed (six digits from the app, or a recovery code), or a passkey's signed
/// answer (checked by the caller with [`super::passkeys`], which reports whether it verified).
pub enum Answer<'a> {
    Code(&'a str),
    Passkey(super::passkeys::Verdict),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    AuthenticatorApp,
    RecoveryCode { left: i64 },
    Passkey { name: String },
}

/// The session's new token, when recording a factor's use raised it to the full sign-in.
fn renewed(used: FactorUsed) -> Option<NewToken> {
    match used {
        FactorUsed::Renewed(token) => Some(token),
        FactorUsed::Marked => None,
    }
}

/// The session that answered ended meanwhile (a password reset, "end my other sessions"): nothing is used up.
fn sign_in_expired() -> AppError {
    AppError::Conflict("Your sign-in expired. Sign in again.".into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The answer passed. At sign-in, the session's new token: the session was replaced in the same transaction, so
    /// the one issued after the password alone ended with it.
    Passed(Method, Option<NewToken>),
    Failed,
    Throttled,
    /// A passkey answered with a counter that did not move forward (it may have been copied): refused, the passkey
    /// removed from the account, and sessions ended as `ended` says.
    PasskeyRemoved {
        ended: Ended,
    },
}

/// Which sessions a copied passkey ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The account's other sessions (at sign-in: this one has not given its factor yet).
    Others,
    /// Every session of the account, this one too (at a step-up: this one is signed in, and may be the copy's).
    All,
    /// Every session, and the password voided with the recovery codes: it was the account's last factor.
    AllAndPassword,
}

impl Checked {
    /// Whether the session that gave this answer has ended (no new ceremony can be begun on it).
    pub fn signed_out(&self) -> bool {
        matches!(
            self,
            Checked::PasskeyRemoved {
                ended: Ended::All | Ended::AllAndPassword
            }
        )
    }
}

/// Checks an answer for the account and, when it passes, records in the same transaction that the session
/// `session_hash` used a factor now (and uses up the code). Throttled and audited either way.
#[allow(clippy::too_many_arguments)]
pub fn check(
    conn: &mut DbConn,
    c: &Checker<'_>,
    actor: &Actor,
    user: &User,
    session_hash: &str,
    answer: Answer<'_>,
    purpose: Purpose,
    now: i64,
) -> AppResult<Checked> {
    let keys = throttle_keys(c, actor, &user.id);
    let throttled = || {
        Event::new("mfa.failed", Outcome::Refused)
            .object("account", &user.id)
            .reason(format!("{}: throttled", purpose.as_str()))
    };
    // The lock bounds guessing, and a passkey's signed answer cannot be guessed: one that verified passes a lock,
    // so that whoever holds only the password cannot lock the owner of a passkey out with wrong codes; so does one
    // signed with a counter that went back (it is no guess: the passkey is removed whatever the lock).
    let guessable = matches!(answer, Answer::Code(_) | Answer::Passkey(Verdict::Refused));
    if guessable && locked(conn, &keys, now)? {
        c.audit.record(conn, actor, throttled())?;
        return Ok(Checked::Throttled);
    }
    // The seed is opened (an age decryption) before the transaction, not while the audit head is locked.
    let totp = model::find_totp(conn, &user.id)?;
    // The step comes with the seed it was checked against: spent only on that one.
    let step = match (&answer, &totp) {
        (Answer::Code(code), Some(f)) if app_code(code).is_some() => {
            step_of(&opened(c.ring, &f.secret_sealed)?, &user.email, code, now)?
                .map(|step| (f.secret_sealed.as_str(), step))
        }
        _ => None,
    };
    let result = c.audit.fact(conn, actor, |tx| {
        // Checked again inside the transaction (facts are serialised): answers sent in parallel all pass the
        // read above, and without this each would be checked, however many the limit allows.
        if guessable && locked(tx, &keys, now)? {
            return Ok((Checked::Throttled, throttled()));
        }
        if let Answer::Passkey(Verdict::PossibleClone { id, name }) = &answer {
            // The WebAuthn sign of a copied key: two authenticators signing with it, each counting on its own. It
            // no longer counts as a factor; the account's other factors (or a reset) remain.
            // Whoever holds the copy may have signed in with it already: the account's other sessions end, and at a
            // step-up this one too (it is signed in, and the one whose counter is behind may be the copy's). When
            // it was the last factor, whoever holds the copy may know the password too, and an account left with
            // none would enrol a new factor for whoever signs in next: as in a factor reset, the recovery codes and
            // every session go and the password is voided; the person chooses a new one through the link mailed to
            // the account's address, then enrols again.
            super::passkeys::remove(tx, &user.id, id)?;
            let last = !model::has_factor(tx, &user.id)?;
            let (ended, what) = if last {
                let reset = delete_all(tx, &user.id)?;
                let n = crate::models::session::delete_all_of(tx, &user.id)?;
                crate::models::account::set_password(tx, &user.id, super::password::VOIDED, now)?;
                (
                    Ended::AllAndPassword,
                    format!("it was the last factor: {reset}; {n} session(s) ended; password voided"),
                )
            } else if purpose == Purpose::StepUp {
                let n = crate::models::session::delete_all_of(tx, &user.id)?;
                (Ended::All, format!("{n} session(s) ended, this one too"))
            } else {
                let n = crate::models::session::delete_others(tx, &user.id, session_hash)?;
                (Ended::Others, format!("{n} other session(s) ended"))
            };
            // The person learns of it by mail (sent once this commits; a notification round retries it), before
            // the next sign-in: it may not be the person who used the copy.
            crate::workflow::pending_mail::enqueue_to_account(
                tx,
                crate::workflow::notifications::Kind::PasskeyRemoved,
                &user.id,
                // The account's second factors, or, once its password was voided, where to choose a new one.
                if last {
                    "/password/forgot"
                } else {
                    "/account/security"
                },
                now,
            )?;
            let event = Event::new("mfa.passkey_possible_clone", Outcome::Refused)
                .object("account", &user.id)
                .reason(format!(
                    "{}: passkey \"{name}\" signed with a counter at or below the one stored (it may have \
                     been copied); removed; {what}",
                    purpose.as_str()
                ));
            return Ok((Checked::PasskeyRemoved { ended }, event));
        }
        let passed = match &answer {
            Answer::Passkey(Verdict::Verified(name)) => Some(Method::Passkey { name: name.clone() }),
            Answer::Passkey(_) => None,
            Answer::Code(_) if step.is_some() => {
                // Later than every step used before, or it is a replay; and on the seed it was checked against (an
                // authenticator set up again meanwhile does not take the old one's codes).
                let (seed, step) = step.unwrap_or_default();
                (model::use_step(tx, &user.id, seed, step)? == 1).then_some(Method::AuthenticatorApp)
            }
            Answer::Code(code) => {
                let digest = recovery_digest(code);
                if model::use_recovery_code(tx, &user.id, &digest, now)? == 1 {
                    Some(Method::RecoveryCode {
                        left: model::recovery_codes_left(tx, &user.id)?,
                    })
                } else {
                    None
                }
            }
        };
        let Some(method) = passed else {
            record_failure(tx, c, &keys, now)?;
            let reason = match &answer {
                Answer::Code(_) if step.is_some() => {
                    "an authenticator code already used".to_string()
                }
                Answer::Code(code)
                    if model::recovery_code_used(tx, &user.id, &recovery_digest(code))? =>
                {
                    "a recovery code already used".to_string()
                }
                Answer::Code(_) => "a wrong code".to_string(),
                Answer::Passkey { .. } => "a passkey answer that did not verify".to_string(),
            };
            let event = Event::new("mfa.failed", Outcome::Failure)
                .object("account", &user.id)
                .reason(format!("{}: {reason}", purpose.as_str()));
            return Ok((Checked::Failed, event));
        };
        // At sign-in the session is raised to the full sign-in on a new token in this transaction; a step-up marks
        // a session that holds it already.
        let renewed_token = match purpose {
            Purpose::SignIn => {
                renewed(sessions::factor_used(tx, session_hash, now)?.ok_or_else(sign_in_expired)?)
            }
            Purpose::StepUp => {
                model::mark_session(tx, session_hash, now)?;
                None
            }
        };
        throttle::clear(tx, &keys.0)?;
        let event = match &method {
            Method::RecoveryCode { left } => Event::new("mfa.recovery_code_used", Outcome::Success)
                .object("account", &user.id)
                .reason(format!(
                    "{}: {left} recovery code(s) left",
                    purpose.as_str()
                )),
            Method::AuthenticatorApp => Event::new("mfa.verified", Outcome::Success)
                .object("account", &user.id)
                .reason(format!("{}: authenticator app", purpose.as_str())),
            Method::Passkey { name } => Event::new("mfa.verified", Outcome::Success)
                .object("account", &user.id)
                .reason(format!("{}: passkey \"{name}\"", purpose.as_str())),
        };
        Ok((Checked::Passed(method, renewed_token), event))
    })?;
    Ok(result)
}

// ---- what an account has; removal and reset ----

#[derive(Debug, Clone, serde::Serialize)]
pub struct Factors {
    pub authenticator_app: bool,
    pub authenticator_app_since: Option<i64>,
    pub recovery_codes_left: i64,
    pub passkeys: Vec<super::passkeys::PasskeyInfo>,
}

impl Factors {
    pub fn any(&self) -> bool {
        self.authenticator_app || !self.passkeys.is_empty()
    }
}

pub fn factors(conn: &mut DbConn, user_id: &str) -> AppResult<Factors> {
    let totp = model::find_totp(conn, user_id)?;
    Ok(Factors {
        authenticator_app: totp.is_some(),
        authenticator_app_since: totp.map(|t| t.created_at),
        recovery_codes_left: model::recovery_codes_left(conn, user_id)?,
        passkeys: super::passkeys::list(conn, user_id)?,
    })
}

/// A factor the person removes from their own account.
#[derive(Debug, Clone)]
pub enum Removal {
    AuthenticatorApp,
    Passkey { id: String },
}

/// Removes one of the person's own factors. The caller has checked the current password and a fresh factor. An
/// account that must have a factor keeps at least one: the last cannot be removed (enrol another first).
pub fn remove_own(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user: &User,
    must_have_one: bool,
    removal: Removal,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        removal_in(tx, user, must_have_one, &removal)
    })
}

/// The removal itself, inside the caller's transaction: what [`remove_own`] records.
fn removal_in(
    tx: &mut DbConn,
    user: &User,
    must_have_one: bool,
    removal: &Removal,
) -> AppResult<((), Event)> {
    let before = factors(tx, &user.id)?;
    let left = usize::from(before.authenticator_app) + before.passkeys.len();
    if must_have_one && left <= 1 {
        return Err(AppError::Conflict(
            "Your account must keep a second factor. Add another one before removing this one."
                .into(),
        ));
    }
    let what = match removal {
        Removal::AuthenticatorApp => {
            if model::delete_totp(tx, &user.id)? == 0 {
                return Err(AppError::NotFound);
            }
            "authenticator app".to_string()
        }
        Removal::Passkey { id } => match super::passkeys::remove(tx, &user.id, id)? {
            Some(name) => format!("passkey \"{name}\""),
            None => return Err(AppError::NotFound),
        },
    };
    // Recovery codes stand in for a factor: with none left, they go too.
    if !model::has_factor(tx, &user.id)? {
        model::delete_recovery_codes(tx, &user.id)?;
    }
    let event = Event::new("mfa.removed", Outcome::Success)
        .object("account", &user.id)
        .reason(what);
    Ok(((), event))
}

pub enum RemovalResult {
    Removed,
    WrongPassword,
    Throttled,
}

/// [`remove_own`] after checking the person's current password (wrong ones throttled like a password change's).
#[allow(clippy::too_many_arguments)]
pub fn remove_own_with_password(
    db: &crate::db::Db,
    audit: &AuditLog,
    hasher: &super::password::Hasher,
    keys: &ThrottleKey,
    policy: Policy,
    actor: &Actor,
    user: &User,
    must_have_one: bool,
    password: &str,
    removal: Removal,
    now: i64,
) -> AppResult<RemovalResult> {
    let key = keys.password_check(&user.id);
    let refused = |reason: &str| {
        Event::new("mfa.removed", Outcome::Refused)
            .object("account", &user.id)
            .reason(reason.to_string())
    };
    // Every check counts, right or wrong, as a password change's do (an argon2 run each).
    // Bound first: a connection taken in the `if let` itself would be held through its block, beside the next.
    let refusal =
        super::login::current_password_check_refused(&mut *db.get()?, keys, &user.id, now)?;
    if let Some(reason) = refusal {
        audit.record(&mut *db.get()?, actor, refused(reason))?;
        return Ok(RemovalResult::Throttled);
    }
    // Checked with no connection held.
    let password_ok = hasher.verify(password, Some(&user.password_hash))?;
    let conn = &mut db.get()?;
    if !password_ok {
        return audit.fact(conn, actor, |tx| {
            // Checked again inside the transaction: a parallel request may have set the lock meanwhile.
            if throttle::is_locked(tx, &key, now)? {
                return Ok((RemovalResult::Throttled, refused("throttled")));
            }
            throttle::record_failure(tx, &key, policy, now)?;
            Ok((RemovalResult::WrongPassword, refused("wrong password")))
        });
    }
    audit.fact(conn, actor, |tx| {
        // Again inside the transaction: guesses sent in parallel all passed the read above, and the right
        // password among them must not count once the wrong ones have locked the form.
        if throttle::is_locked(tx, &key, now)? {
            return Ok((RemovalResult::Throttled, refused("throttled")));
        }
        // The password was checked against the hash read with the request: one changed or reset since (which
        // also ends this session) is no longer the account's, and the account must still be enabled.
        let current = crate::models::account::find(tx, &user.id)?;
        if current.disabled || current.password_hash != user.password_hash {
            return Ok((
                RemovalResult::WrongPassword,
                refused("the password changed during the request"),
            ));
        }
        let ((), event) = removal_in(tx, user, must_have_one, &removal)?;
        Ok((RemovalResult::Removed, event))
    })
}

/// What an account has and owes: whether it has a second factor, and whether it must (staff, or a member of an
/// organisation that requires one). Read from the database each time, so a reset or a new requirement holds at once.
#[derive(Debug, Clone, Copy)]
pub struct Obligation {
    pub has_factor: bool,
    pub required: bool,
}

impl Obligation {
    pub fn of(conn: &mut DbConn, user: &User) -> AppResult<Obligation> {
        let organisation_requires = match &user.organisation_id {
            Some(org) => crate::models::organisation::requires_second_factor(conn, org)?,
            None => false,
        };
        Ok(Obligation {
            has_factor: model::has_factor(conn, &user.id)?,
            required: required(user.role(), organisation_requires),
        })
    }

    /// Where a session stands that last used a factor at `second_factor_at`.
    pub fn stage(self, second_factor_at: Option<i64>) -> Stage {
        stage(second_factor_at, self.has_factor, self.required)
    }
}

/// The stage a session opened with the password alone starts at: where signing in goes next.
pub fn stage_after_password(conn: &mut DbConn, user: &User) -> AppResult<Stage> {
    Ok(Obligation::of(conn, user)?.stage(None))
}

/// An organisation's administrator requires (or stops requiring) a second factor of every member. Members without
/// one are sent to enrol at their next request.
pub fn set_organisation_requirement(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    organisation_id: &str,
    require: bool,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        // The administrator as it stands now (not as the request's guard read it before a slow body).
        super::membership::still_administrator(tx, actor, organisation_id)?;
        crate::models::organisation::set_requires_second_factor(tx, organisation_id, require)?;
        let event = Event::new("organisation.second_factor_requirement", Outcome::Success)
            .object("organisation", organisation_id)
            .reason(if require {
                "required"
            } else {
                "no longer required"
            });
        Ok(((), event))
    })
}

/// Deletes every second factor of an account (its app, passkeys, recovery codes, a pending enrolment). Part of
/// a reset that two administrators agreed on, or of the host's `user reset-factors`; the caller ends the sessions
/// and audits. Returns a summary for the audit entry.
pub fn delete_all(tx: &mut DbConn, user_id: &str) -> AppResult<String> {
    let app = model::delete_totp(tx, user_id)?;
    let passkeys = super::passkeys::remove_all(tx, user_id)?;
    let codes = model::delete_recovery_codes(tx, user_id)?;
    Ok(format!(
        "second factors reset: {} authenticator app, {passkeys} passkey(s), {codes} recovery code(s)",
        app
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages() {
        assert_eq!(stage(Some(1), true, true), Stage::Complete);
        assert_eq!(stage(None, true, false), Stage::Pending);
        assert_eq!(stage(None, false, true), Stage::MustEnrol);
        assert_eq!(stage(None, false, false), Stage::Complete);
        assert_eq!(stage(Some(1), false, false), Stage::Complete);
        assert_eq!(stage(Some(1), false, true), Stage::MustEnrol);
        assert!(required(Role::Officer, false));
        assert!(!required(Role::Submitter, false));
        assert!(required(Role::Submitter, true));
        assert!(fresh(Some(100), 100 + 15 * 60, 15));
        assert!(!fresh(Some(100), 101 + 15 * 60, 15));
        assert!(!fresh(None, 0, 15));
    }

    #[test]
    fn codes_check_by_time_step() {
        let seed = [7u8; SEED_BYTES];
        let t = totp(&seed, "o@example.gov").unwrap();
        let now = 1_800_000_000i64;
        let code = t.generate(now as u64).to_string();
        assert_eq!(
            step_of(&seed, "o@example.gov", &code, now).unwrap(),
            Some(now / 30)
        );
        // One step of skew either way, not two.
        assert!(step_of(&seed, "o@example.gov", &code, now + 30)
            .unwrap()
            .is_some());
        assert!(step_of(&seed, "o@example.gov", &code, now + 90)
            .unwrap()
            .is_none());
        assert!(step_of(&seed, "o@example.gov", "12345", now)
            .unwrap()
            .is_none());
        assert!(step_of(&seed, "o@example.gov", "abcdef", now)
            .unwrap()
            .is_none());
    }

    #[test]
    fn recovery_codes_are_80_bits_and_normalised() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(
            recovery_digest(&code),
            recovery_digest(&code.to_uppercase().replace('-', " "))
        );
        assert_ne!(
            recovery_digest(&code),
            recovery_digest(&new_recovery_code())
        );
        // 31 letters, 16 of them: more than 79 bits.
        assert!((16.0 * (RECOVERY_ALPHABET.len() as f64).log2()) > 79.0);
    }

    #[test]
    fn the_setup_shows_the_secret_and_a_qr_code() {
        let seed = [9u8; SEED_BYTES];
        let s = setup_of(&seed, "a:b@example.gov").unwrap();
        assert_eq!(s.secret_text.replace(' ', "").len(), 32);
        assert!(s.qr_data_uri.starts_with("data:image/svg+xml;base64,"));
    }
}
