//! WebAuthn passkeys and security keys as a second factor: the relying party, its registration and
//! authentication ceremonies, and the account's list of passkeys.
//!
//! A ceremony's state (its challenge and, for authentication, the allowed credentials) stays on the server, in
//! the session row, until the browser answers; each answer consumes it, so a challenge is never accepted twice.
//! The browser side is `static/webauthn.js`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::models::account::User;
use crate::models::passkey::{self, NewPasskey, PasskeyRow};

/// The name authenticators and browsers show for the portal.
pub const RP_NAME: &str = "PCII Portal";
/// The longest name of a passkey, in characters.
pub const NAME_MAX_CHARS: usize = 60;
/// How many passkeys one account may hold: the list is sent with every sign-in and kept in its state.
pub const MAX_PER_ACCOUNT: i64 = 20;
/// A browser's answer is a few kilobytes; anything much larger is not one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long a ceremony's challenge is answerable, from when its page was made: the default idle timeout of a
/// session (a page left longer has usually lost its session too), well below a session's hours. A sign-in or
/// step-up answered later is refused like a wrong answer (and counted so); a registration reads as expired.
pub const CEREMONY_SECS: i64 = 30 * 60;
/// Two pages of one session rarely race for its ceremony state; after this many lost races, give up.
const STATE_ATTEMPTS: usize = 3;

/// The relying party: built once at start from the portal's public origin.
#[derive(Debug, Clone)]
pub struct Passkeys {
    webauthn: Webauthn,
}

/// A passkey as its owner sees it (never the credential).
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// What an authentication answer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It verified: the passkey's name.
    Verified(String),
    /// Wrong, mismatched, unreadable, late, or no ceremony to answer.
    Refused,
    /// Correctly signed, but with a signature counter at or below the one stored: the WebAuthn sign that the key
    /// may have been copied (two authenticators holding it, each counting on its own). The caller removes it.
    PossibleClone { id: String, name: String },
}

/// What a registration answer turned out to be.
#[derive(Debug, Clone)]
pub enum Registered {
    /// It verified and the passkey is stored.
    Added(PasskeyInfo),
    /// Unreadable, not a registration, or refused by the WebAuthn checks.
    Refused,
}

/// The signature counter of a stored credential (webauthn-rs's serialised `Passkey`), 0 when it has none.
fn stored_counter(credential_json: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(credential_json)
        .ok()
        .and_then(|v| v["cred"]["counter"].as_u64())
        .unwrap_or(0)
}

/// How many times a use is recorded again when another use of the same passkey changed it meanwhile.
const RECORD_ATTEMPTS: usize = 3;

impl From<PasskeyRow> for PasskeyInfo {
    fn from(row: PasskeyRow) -> PasskeyInfo {
        PasskeyInfo {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }
    }
}

impl Passkeys {
    /// The relying party of `public_origin` (e.g. `http://localhost:8000` or `https://pcii.example.gov`): its id
    /// is the origin's host, so credentials registered here work on that host only.
    pub fn new(public_origin: &str) -> AppResult<Passkeys> {
        let unusable = |why: &str| {
            AppError::Internal(format!(
                "passkeys: the public origin {public_origin:?} {why}"
            ))
        };
        let url = Url::parse(public_origin.trim())
            .map_err(|e| unusable(&format!("is not a URL ({e})")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(unusable(
                "must start with https:// (or http:// for localhost)",
            ));
        }
        let Some(rp_id) = url.domain() else {
            return Err(match url.host_str() {
                Some(_) => unusable(
                    "has an IP address for its host, which WebAuthn does not accept as a relying-party id: \
                     set public_origin to a host name (for local use, http://localhost:<port>) and open \
                     the portal by that name",
                ),
                None => unusable("has no host"),
            });
        };
        if url.scheme() == "http" && !is_localhost(rp_id) {
            tracing::warn!(
                origin = public_origin,
                "browsers offer passkeys only on https:// pages (or http://localhost): passkeys will not work \
                 at this public origin"
            );
        }
        // The origin alone: a path or a trailing slash in the setting must not change what browsers are matched to.
        let origin = Url::parse(&url.origin().ascii_serialization())
            .map_err(|e| unusable(&format!("has no usable origin ({e})")))?;
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .and_then(|b| b.rp_name(RP_NAME).build())
            .map_err(|e| unusable(&format!("cannot be a WebAuthn relying party ({e})")))?;
        Ok(Passkeys { webauthn })
    }

    /// Options JSON for `navigator.credentials.create` (a `CreationChallengeResponse`), excluding the account's
    /// existing credentials; the ceremony state is saved in the session row `session_hash`.
    pub fn begin_registration(
        &self,
        conn: &mut DbConn,
        user: &User,
        session_hash: &str,
        now: i64,
    ) -> AppResult<String> {
        let exclude: Vec<CredentialID> = passkey::credential_ids_of(conn, &user.id)?
            .iter()
            .filter_map(|id| URL_SAFE_NO_PAD.decode(id).ok())
            .map(CredentialID::from)
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user_handle(&user.id)?,
                &user.email,
                &user.display_name,
                Some(exclude),
            )
            .map_err(|e| AppError::Internal(format!("starting a passkey registration: {e}")))?;
        change_state(conn, session_hash, |s| {
            s.registration = Some(state.clone());
            s.registration_at = Some(now);
        })?
        .ok_or_else(session_ended)?;
        to_json(&options, "passkey registration options")
    }

    /// Verifies the browser's answer (a `RegisterPublicKeyCredential` as JSON) against the saved state and
    /// stores the credential under `name`. An answer that does not verify is [`Registered::Refused`], not an
    /// error, so that the caller's transaction commits the state's consumption (and its audit entry): the
    /// challenge is answerable once. Does not audit: the caller does, in its own transaction.
    pub fn finish_registration(
        &self,
        conn: &mut DbConn,
        user: &User,
        session_hash: &str,
        name: &str,
        response_json: &str,
        now: i64,
    ) -> AppResult<Registered> {
        let name = valid_name(name)?;
        let state = change_state(conn, session_hash, |s| {
            (s.registration.take(), s.registration_at.take())
        })?
        .and_then(|(state, at)| state.filter(|_| answerable(at, now)))
        .ok_or_else(|| {
            AppError::Invalid(
                "This request to add a passkey has expired or was already used. Try again.".into(),
            )
        })?;
        if passkey::count_of(conn, &user.id)? >= MAX_PER_ACCOUNT {
            return Err(AppError::Invalid(format!(
                "An account can have at most {MAX_PER_ACCOUNT} passkeys. Remove one first."
            )));
        }
        let Some(response) = parse_response::<RegisterPublicKeyCredential>(response_json) else {
            return Ok(registration_refused("the answer is not a registration"));
        };
        match self.webauthn.finish_passkey_registration(&response, &state) {
            Ok(key) => store(conn, user, name, &key, now).map(Registered::Added),
            Err(e) => Ok(registration_refused(&e.to_string())),
        }
    }

    /// Options JSON for `navigator.credentials.get` (a `RequestChallengeResponse`) for the account's passkeys,
    /// the state saved in the session; `None` when the account has no passkey.
    pub fn begin_authentication(
        &self,
        conn: &mut DbConn,
        user_id: &str,
        session_hash: &str,
        now: i64,
    ) -> AppResult<Option<String>> {
        let keys: Vec<Passkey> = passkey::list_of(conn, user_id)?
            .iter()
            .filter_map(stored_key)
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(|e| AppError::Internal(format!("starting a passkey authentication: {e}")))?;
        change_state(conn, session_hash, |s| {
            s.authentication = Some(state.clone());
            s.authentication_at = Some(now);
        })?
        .ok_or_else(session_ended)?;
        to_json(&options, "passkey authentication options").map(Some)
    }

    /// Verifies the browser's answer (a `PublicKeyCredential` as JSON) against the saved state, which is consumed
    /// whatever the outcome. On success records the use (counter, backup state, time) and returns the passkey's
    /// name. A wrong, mismatched or unreadable answer, or no saved state, is [`Verdict::Refused`]: a failed attempt
    /// for the caller to audit and throttle; a counter that did not move forward is [`Verdict::PossibleClone`]
    /// (nothing recorded here). Only database faults are errors.
    pub fn finish_authentication(
        &self,
        conn: &mut DbConn,
        user_id: &str,
        session_hash: &str,
        response_json: &str,
        now: i64,
    ) -> AppResult<Verdict> {
        let Some((Some(state), at)) = change_state(conn, session_hash, |s| {
            (s.authentication.take(), s.authentication_at.take())
        })?
        else {
            return Ok(Verdict::Refused);
        };
        if !answerable(at, now) {
            tracing::info!(
                "passkey authentication refused: its challenge is older than the ceremony's time"
            );
            return Ok(Verdict::Refused);
        }
        let Some(response) = parse_response::<PublicKeyCredential>(response_json) else {
            tracing::info!("passkey authentication refused: the answer is not an assertion");
            return Ok(Verdict::Refused);
        };
        let result = match self
            .webauthn
            .finish_passkey_authentication(&response, &state)
        {
            Ok(result) => result,
            // Signed by the key, with a counter at or below the one stored when the ceremony began.
            Err(WebauthnError::CredentialPossibleCompromise) => {
                let credential_id = URL_SAFE_NO_PAD.encode(response.get_credential_id());
                return Ok(
                    match passkey::find_by_credential_id(conn, user_id, &credential_id)? {
                        Some(row) => Verdict::PossibleClone {
                            id: row.id,
                            name: row.name,
                        },
                        None => Verdict::Refused,
                    },
                );
            }
            Err(e) => {
                tracing::info!(error = %e, "passkey authentication refused");
                return Ok(Verdict::Refused);
            }
        };
        let credential_id = URL_SAFE_NO_PAD.encode(result.cred_id());
        // The ceremony's state holds the credential as it was when the page was made; another use may have moved
        // the counter since. Checked again against the stored one, and stored only if that is still what was read.
        for _ in 0..RECORD_ATTEMPTS {
            // Scoped by the account: the state allowed only its credentials, and a removed one no longer counts.
            let Some(row) = passkey::find_by_credential_id(conn, user_id, &credential_id)? else {
                return Ok(Verdict::Refused);
            };
            let (counter, stored) = (u64::from(result.counter()), stored_counter(&row.credential));
            if (counter > 0 || stored > 0) && counter <= stored {
                return Ok(Verdict::PossibleClone {
                    id: row.id,
                    name: row.name,
                });
            }
            // The counter and backup state move with each use; an unchanged credential is not rewritten.
            let mut updated = None;
            if let Some(mut key) = stored_key(&row) {
                if key.update_credential(&result) == Some(true) {
                    updated = Some(to_json(&key, "a passkey credential")?);
                }
            }
            if passkey::record_use(conn, &row.id, &row.credential, updated.as_deref(), now)? == 1 {
                return Ok(Verdict::Verified(row.name));
            }
        }
        Err(AppError::Unavailable(
            "database: a passkey's use kept changing while it was recorded".into(),
        ))
    }
}

/// The account's passkeys, the oldest first.
pub fn list(conn: &mut DbConn, user_id: &str) -> AppResult<Vec<PasskeyInfo>> {
    Ok(passkey::list_of(conn, user_id)?
        .into_iter()
        .map(PasskeyInfo::from)
        .collect())
}

/// Removes one of the account's passkeys (another account's id removes nothing); returns its name if removed.
pub fn remove(conn: &mut DbConn, user_id: &str, passkey_id: &str) -> AppResult<Option<String>> {
    Ok(passkey::delete_of(conn, user_id, passkey_id)?)
}

/// Deletes every passkey of an account (a reset of its factors). Returns how many.
pub fn remove_all(conn: &mut DbConn, user_id: &str) -> AppResult<usize> {
    Ok(passkey::delete_all_of(conn, user_id)?)
}

pub fn count(conn: &mut DbConn, user_id: &str) -> AppResult<i64> {
    Ok(passkey::count_of(conn, user_id)?)
}

/// The ceremonies a session has begun and not finished: a registration on the security page and a sign-in may
/// both be pending.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CeremonyState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration: Option<PasskeyRegistration>,
    /// When the registration began (webauthn-rs keeps no time in its state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authentication: Option<PasskeyAuthentication>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authentication_at: Option<i64>,
}

/// Whether a ceremony begun at `at` may still be answered at `now` (one with no time, saved by an older version,
/// may not: the person starts it again).
fn answerable(at: Option<i64>, now: i64) -> bool {
    at.is_some_and(|at| (at..=at.saturating_add(CEREMONY_SECS)).contains(&now))
}

impl CeremonyState {
    /// A state that cannot be read (written by another version of webauthn-rs) is as good as none.
    fn parse(column: Option<&str>) -> CeremonyState {
        column
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }

    fn column(&self) -> AppResult<Option<String>> {
        if self.registration.is_none() && self.authentication.is_none() {
            return Ok(None);
        }
        to_json(self, "the WebAuthn ceremony state").map(Some)
    }
}

/// Applies `change` to the session's ceremony state and saves the result, unless another request of the session
/// changed the state in between (then reads it again). `None` when there is no such session.
fn change_state<R>(
    conn: &mut DbConn,
    session_hash: &str,
    mut change: impl FnMut(&mut CeremonyState) -> R,
) -> AppResult<Option<R>> {
    for _ in 0..STATE_ATTEMPTS {
        let Some(stored) = passkey::ceremony_state(conn, session_hash)? else {
            return Ok(None);
        };
        let mut state = CeremonyState::parse(stored.as_deref());
        let result = change(&mut state);
        let new = state.column()?;
        if new == stored
            || passkey::swap_ceremony_state(conn, session_hash, stored.as_deref(), new.as_deref())?
        {
            return Ok(Some(result));
        }
    }
    Err(AppError::Conflict(
        "Another page is using a passkey at the same time. Try again.".into(),
    ))
}

/// Saves a verified new credential under the account.
fn store(
    conn: &mut DbConn,
    user: &User,
    name: String,
    key: &Passkey,
    now: i64,
) -> AppResult<PasskeyInfo> {
    let already = || AppError::Invalid("This passkey is already registered.".into());
    let credential_id = URL_SAFE_NO_PAD.encode(key.cred_id());
    // Credential ids are unique across the portal: one credential never answers for two accounts.
    if passkey::credential_id_exists(conn, &credential_id)? {
        return Err(already());
    }
    let info = PasskeyInfo {
        id: crate::db::new_id(),
        name,
        created_at: now,
        last_used_at: None,
    };
    let credential = to_json(key, "a passkey credential")?;
    passkey::insert(
        conn,
        &NewPasskey {
            id: &info.id,
            user_id: &user.id,
            name: &info.name,
            credential_id: &credential_id,
            credential: &credential,
            created_at: now,
            last_used_at: None,
        },
    )
    .map_err(|e| match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => already(),
        other => other.into(),
    })?;
    Ok(info)
}

/// The stored credential of a row; a row that cannot be read is left out (and said to the operator) rather than
/// locking its owner out of the other passkeys.
fn stored_key(row: &PasskeyRow) -> Option<Passkey> {
    match serde_json::from_str(&row.credential) {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::error!(passkey = %row.id, error = %e, "a stored passkey credential cannot be read");
            None
        }
    }
}

/// The WebAuthn user handle: the account id's 128 bits as a UUID, stable for the account's life.
fn user_handle(user_id: &str) -> AppResult<Uuid> {
    hex::decode(user_id)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| {
            AppError::Internal(format!(
                "account id {user_id:?} is not 32 hex digits: no WebAuthn user handle"
            ))
        })
}

/// The name trimmed, or why it is refused.
fn valid_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
        return Err(AppError::Invalid(format!(
            "Name the passkey in 1 to {NAME_MAX_CHARS} characters."
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::Invalid(
            "The passkey's name cannot contain control characters.".into(),
        ));
    }
    Ok(name.to_string())
}

fn parse_response<T: serde::de::DeserializeOwned>(json: &str) -> Option<T> {
    if json.len() > MAX_RESPONSE_BYTES {
        return None;
    }
    serde_json::from_str(json).ok()
}

fn registration_refused(why: &str) -> Registered {
    tracing::info!(reason = why, "passkey registration refused");
    Registered::Refused
}

fn session_ended() -> AppError {
    AppError::Gone("Your session has ended. Sign in again.".into())
}

fn to_json<T: Serialize>(value: &T, what: &str) -> AppResult<String> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(format!("serialising {what}: {e}")))
}

/// Hosts browsers treat as a secure context over plain http.
fn is_localhost(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    use super::*;
    use crate::domain::Role;
    use crate::models::account::{self, NewUser};
    use crate::models::session::{self, NewSession};

    const NOW: i64 = 1_800_000_000;

    /// A stored credential as webauthn-rs writes it (an ES256 key; no attestation), under `cred_id`.
    fn credential_json(cred_id: &str) -> String {
        let x = "wn5_bfwXgxX8Bt9jLP6MG-YRXgWFHGgpkEWrlaEayPM";
        let y = "j3u3nBiyFfh1n6JFqzS8_Bo7Bi9nXBM6dWf5ANsIX8Q";
        format!(
            r#"{{"cred":{{"cred_id":"{cred_id}","cred":{{"type_":"ES256","key":{{"EC_EC2":{{"curve":"SECP256R1","x":"{x}","y":"{y}"}}}}}},"counter":0,"transports":null,"user_verified":true,"backup_eligible":false,"backup_state":false,"registration_policy":"required","extensions":{{}},"attestation":{{"data":"None","metadata":"None"}},"attestation_format":"none"}}}}"#
        )
    }

    /// Well-formed answers that no authenticator signed: they parse, and fail verification.
    const FORGED_ASSERTION: &str = r#"{"id":"AAEC","rawId":"AAEC","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA","userHandle":null},"clientExtensionResults":{}}"#;
    const FORGED_ATTESTATION: &str = r#"{"id":"AAEC","rawId":"AAEC","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA","transports":["usb"]},"clientExtensionResults":{"credProps":{"rk":false}}}"#;

    #[test]
    fn the_answers_the_browser_script_sends_are_read() {
        // The script's shapes (static/webauthn.js): these must fail verification, not parsing.
        assert!(parse_response::<PublicKeyCredential>(FORGED_ASSERTION).is_some());
        assert!(parse_response::<RegisterPublicKeyCredential>(FORGED_ATTESTATION).is_some());
        let with_user_handle =
            FORGED_ASSERTION.replace(r#""userHandle":null"#, r#""userHandle":"AAEC""#);
        assert!(parse_response::<PublicKeyCredential>(&with_user_handle).is_some());
        assert!(
            parse_response::<PublicKeyCredential>(&" ".repeat(MAX_RESPONSE_BYTES + 1)).is_none()
        );
    }

    struct Fixture {
        conn: DbConn,
        passkeys: Passkeys,
        alice: User,
        bob: User,
    }

    const ALICE_SESSION: &str = "alice-session-hash";

    fn fixture() -> Fixture {
        let sqlite = diesel::sqlite::SqliteConnection::establish(":memory:").unwrap();
        let mut conn = DbConn::Sqlite(sqlite);
        conn.batch_execute("PRAGMA foreign_keys = ON;").unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        let alice = user(&mut conn, "alice@example.com");
        let bob = user(&mut conn, "bob@example.com");
        session::insert(
            &mut conn,
            &NewSession {
                token_hash: ALICE_SESSION,
                user_id: &alice.id,
                csrf_token: "csrf",
                created_at: NOW,
                last_seen_at: NOW,
                public_id: None,
                client_addr: None,
                user_agent: None,
                second_factor_at: None,
            },
        )
        .unwrap();
        Fixture {
            conn,
            passkeys: Passkeys::new("http://localhost:8000").unwrap(),
            alice,
            bob,
        }
    }

    fn user(conn: &mut DbConn, email: &str) -> User {
        let id = crate::db::new_id();
        account::insert(
            conn,
            &NewUser {
                id: &id,
                email,
                display_name: "Someone",
                role: Role::Submitter,
                organisation_id: None,
                password_hash: "x",
                disabled: false,
                created_at: NOW,
                password_changed_at: NOW,
                org_admin: false,
                email_verified_at: Some(NOW),
                agency: None,
            },
        )
        .unwrap();
        account::find(conn, &id).unwrap()
    }

    fn add_stored_passkey(conn: &mut DbConn, user_id: &str, name: &str, cred_id: &str) -> String {
        let id = crate::db::new_id();
        passkey::insert(
            conn,
            &NewPasskey {
                id: &id,
                user_id,
                name,
                credential_id: cred_id,
                credential: &credential_json(cred_id),
                created_at: NOW,
                last_used_at: None,
            },
        )
        .unwrap();
        id
    }

    fn state_of(conn: &mut DbConn) -> Option<serde_json::Value> {
        passkey::ceremony_state(conn, ALICE_SESSION)
            .unwrap()
            .unwrap()
            .map(|json| serde_json::from_str(&json).unwrap())
    }

    #[test]
    fn the_relying_party_is_the_origins_host_name() {
        for origin in [
            "http://localhost:8000",
            "https://pcii.example.gov",
            "https://pcii.example.gov/",
        ] {
            assert!(Passkeys::new(origin).is_ok(), "{origin}");
        }
    }

    #[test]
    fn an_ip_address_origin_is_refused_with_a_reason() {
        for origin in ["http://127.0.0.1:8000", "https://[::1]:8443"] {
            let Err(AppError::Internal(message)) = Passkeys::new(origin) else {
                panic!("{origin} was accepted");
            };
            assert!(message.contains("IP address"), "{message}");
            assert!(message.contains("localhost"), "{message}");
        }
        assert!(Passkeys::new("ftp://pcii.example.gov").is_err());
        assert!(Passkeys::new("not a url").is_err());
    }

    #[test]
    fn registration_options_name_the_portal_and_exclude_existing_passkeys() {
        let mut f = fixture();
        add_stored_passkey(&mut f.conn, &f.alice.id, "Old key", "AAECAwQ");
        let options = f
            .passkeys
            .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
            .unwrap();
        let options: serde_json::Value = serde_json::from_str(&options).unwrap();
        let public_key = &options["publicKey"];
        assert_eq!(public_key["rp"]["id"], "localhost");
        assert_eq!(public_key["rp"]["name"], RP_NAME);
        assert_eq!(public_key["user"]["name"], "alice@example.com");
        let handle = URL_SAFE_NO_PAD
            .decode(public_key["user"]["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(hex::encode(handle), f.alice.id);
        assert_eq!(public_key["excludeCredentials"][0]["id"], "AAECAwQ");
        assert!(public_key["challenge"].is_string());
        assert!(state_of(&mut f.conn).unwrap()["registration"].is_object());
    }

    #[test]
    fn a_forged_or_garbled_registration_is_refused_and_consumes_the_state() {
        let mut f = fixture();
        for answer in ["not json", FORGED_ATTESTATION] {
            f.passkeys
                .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
                .unwrap();
            let refused = f.passkeys.finish_registration(
                &mut f.conn,
                &f.alice,
                ALICE_SESSION,
                "My key",
                answer,
                NOW,
            );
            assert!(matches!(refused, Ok(Registered::Refused)), "{answer}");
            assert_eq!(state_of(&mut f.conn), None, "{answer}");
        }
        let again = f.passkeys.finish_registration(
            &mut f.conn,
            &f.alice,
            ALICE_SESSION,
            "My key",
            FORGED_ATTESTATION,
            NOW,
        );
        let Err(AppError::Invalid(message)) = again else {
            panic!("a registration without state was not refused");
        };
        assert!(message.contains("expired"), "{message}");
        assert_eq!(count(&mut f.conn, &f.alice.id).unwrap(), 0);
    }

    /// A challenge is answerable for the ceremony's time only: after it the registration reads as expired (before
    /// the answer is looked at) and the authentication as a failed answer, and either state is consumed.
    #[test]
    fn a_ceremony_answered_after_its_time_is_refused() {
        let mut f = fixture();
        let late = NOW + CEREMONY_SECS + 1;
        f.passkeys
            .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
            .unwrap();
        let refused = f.passkeys.finish_registration(
            &mut f.conn,
            &f.alice,
            ALICE_SESSION,
            "My key",
            FORGED_ATTESTATION,
            late,
        );
        let Err(AppError::Invalid(message)) = refused else {
            panic!("a late registration was not refused");
        };
        assert!(message.contains("expired"), "{message}");
        // In time, the same answer gets as far as being checked (and refused as forged, not as expired).
        f.passkeys
            .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
            .unwrap();
        let refused = f.passkeys.finish_registration(
            &mut f.conn,
            &f.alice,
            ALICE_SESSION,
            "My key",
            FORGED_ATTESTATION,
            NOW + CEREMONY_SECS,
        );
        assert!(
            matches!(refused, Ok(Registered::Refused)),
            "a forged registration was not refused as one"
        );
        add_stored_passkey(&mut f.conn, &f.alice.id, "Old key", "AAECAwQ");
        f.passkeys
            .begin_authentication(&mut f.conn, &f.alice.id, ALICE_SESSION, NOW)
            .unwrap()
            .unwrap();
        assert!(state_of(&mut f.conn).unwrap()["authentication_at"].is_i64());
        let answered = f
            .passkeys
            .finish_authentication(&mut f.conn, &f.alice.id, ALICE_SESSION, "{}", late)
            .unwrap();
        assert_eq!(answered, Verdict::Refused);
        assert_eq!(state_of(&mut f.conn), None);
    }

    #[test]
    fn a_bad_name_is_refused_before_the_state_is_used() {
        let mut f = fixture();
        f.passkeys
            .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
            .unwrap();
        for name in ["   ", &"k".repeat(NAME_MAX_CHARS + 1), "a\u{7}b"] {
            let refused = f.passkeys.finish_registration(
                &mut f.conn,
                &f.alice,
                ALICE_SESSION,
                name,
                FORGED_ATTESTATION,
                NOW,
            );
            assert!(matches!(refused, Err(AppError::Invalid(_))), "{name:?}");
        }
        assert!(state_of(&mut f.conn).unwrap()["registration"].is_object());
        assert_eq!(
            valid_name(&format!("  {}  ", "é".repeat(NAME_MAX_CHARS))).unwrap(),
            "é".repeat(NAME_MAX_CHARS)
        );
    }

    #[test]
    fn authentication_without_a_passkey_offers_nothing() {
        let mut f = fixture();
        let options = f
            .passkeys
            .begin_authentication(&mut f.conn, &f.alice.id, ALICE_SESSION, NOW)
            .unwrap();
        assert_eq!(options, None);
        assert_eq!(state_of(&mut f.conn), None);
    }

    #[test]
    fn authentication_options_allow_the_accounts_passkeys_and_keep_a_pending_registration() {
        let mut f = fixture();
        add_stored_passkey(&mut f.conn, &f.alice.id, "Laptop", "AAECAwQ");
        add_stored_passkey(&mut f.conn, &f.bob.id, "Bob's", "BQYHCAk");
        f.passkeys
            .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
            .unwrap();
        let options = f
            .passkeys
            .begin_authentication(&mut f.conn, &f.alice.id, ALICE_SESSION, NOW)
            .unwrap()
            .unwrap();
        let options: serde_json::Value = serde_json::from_str(&options).unwrap();
        let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0]["id"], "AAECAwQ");
        assert_eq!(options["publicKey"]["rpId"], "localhost");
        let state = state_of(&mut f.conn).unwrap();
        assert!(state["registration"].is_object());
        assert!(state["authentication"].is_object());
    }

    #[test]
    fn a_failed_authentication_is_none_and_the_challenge_is_used_up() {
        let mut f = fixture();
        add_stored_passkey(&mut f.conn, &f.alice.id, "Laptop", "AAECAwQ");
        let no_state = f
            .passkeys
            .finish_authentication(
                &mut f.conn,
                &f.alice.id,
                ALICE_SESSION,
                FORGED_ASSERTION,
                NOW,
            )
            .unwrap();
        assert_eq!(no_state, Verdict::Refused);
        f.passkeys
            .begin_registration(&mut f.conn, &f.alice, ALICE_SESSION, NOW)
            .unwrap();
        for answer in ["{garbage", "", FORGED_ASSERTION] {
            f.passkeys
                .begin_authentication(&mut f.conn, &f.alice.id, ALICE_SESSION, NOW)
                .unwrap()
                .unwrap();
            let outcome = f
                .passkeys
                .finish_authentication(&mut f.conn, &f.alice.id, ALICE_SESSION, answer, NOW)
                .unwrap();
            assert_eq!(outcome, Verdict::Refused, "{answer}");
            let state = state_of(&mut f.conn).unwrap();
            assert!(state.get("authentication").is_none(), "{answer}");
            // The other ceremony is left alone.
            assert!(state["registration"].is_object(), "{answer}");
        }
        assert_eq!(
            list(&mut f.conn, &f.alice.id).unwrap()[0].last_used_at,
            None
        );
    }

    #[test]
    fn an_unknown_session_has_no_state_to_finish_and_none_to_begin() {
        let mut f = fixture();
        add_stored_passkey(&mut f.conn, &f.alice.id, "Laptop", "AAECAwQ");
        let outcome = f
            .passkeys
            .finish_authentication(
                &mut f.conn,
                &f.alice.id,
                "no-such-session",
                FORGED_ASSERTION,
                NOW,
            )
            .unwrap();
        assert_eq!(outcome, Verdict::Refused);
        let begun =
            f.passkeys
                .begin_authentication(&mut f.conn, &f.alice.id, "no-such-session", NOW);
        assert!(matches!(begun, Err(AppError::Gone(_))));
    }

    #[test]
    fn removing_is_scoped_by_the_account() {
        let mut f = fixture();
        let laptop = add_stored_passkey(&mut f.conn, &f.alice.id, "Laptop", "AAECAwQ");
        add_stored_passkey(&mut f.conn, &f.alice.id, "Phone", "CgsMDQ4");
        add_stored_passkey(&mut f.conn, &f.bob.id, "Bob's", "BQYHCAk");
        assert_eq!(remove(&mut f.conn, &f.bob.id, &laptop).unwrap(), None);
        assert_eq!(count(&mut f.conn, &f.alice.id).unwrap(), 2);
        assert_eq!(
            remove(&mut f.conn, &f.alice.id, &laptop)
                .unwrap()
                .as_deref(),
            Some("Laptop")
        );
        assert_eq!(remove(&mut f.conn, &f.alice.id, &laptop).unwrap(), None);
        let names: Vec<String> = list(&mut f.conn, &f.alice.id)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["Phone"]);
        assert_eq!(remove_all(&mut f.conn, &f.alice.id).unwrap(), 1);
        assert_eq!(count(&mut f.conn, &f.alice.id).unwrap(), 0);
        assert_eq!(count(&mut f.conn, &f.bob.id).unwrap(), 1);
    }

    #[test]
    fn user_handles_are_the_account_ids_bits() {
        let id = crate::db::new_id();
        assert_eq!(user_handle(&id).unwrap().simple().to_string(), id);
        assert!(user_handle("not-hex").is_err());
    }
}
