//! Second factors: TOTP factors and enrolments (their secrets sealed, see `key_store::account_secrets`), recovery
//! codes (as digests) and the session's record of when it last used a factor. Passkeys are in `passkey`.

use diesel::prelude::*;

use crate::db::schema::{passkeys, recovery_codes, sessions, totp_enrolments, totp_factors};
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = totp_factors)]
pub struct TotpFactor {
    pub user_id: String,
    pub secret_sealed: String,
    pub master_key_id: String,
    /// The highest RFC 6238 time step accepted so far.
    pub last_step: i64,
    pub created_at: i64,
}

pub fn find_totp(conn: &mut DbConn, user_id: &str) -> QueryResult<Option<TotpFactor>> {
    totp_factors::table
        .find(user_id)
        .select(TotpFactor::as_select())
        .first(conn)
        .optional()
}

/// Makes `secret_sealed` the account's authenticator (replacing any other), with `step` already used.
pub fn put_totp(
    conn: &mut DbConn,
    user_id: &str,
    secret_sealed: &str,
    master_key_id: &str,
    step: i64,
    now: i64,
) -> QueryResult<()> {
    diesel::delete(totp_factors::table.find(user_id)).execute(conn)?;
    diesel::insert_into(totp_factors::table)
        .values((
            totp_factors::user_id.eq(user_id),
            totp_factors::secret_sealed.eq(secret_sealed),
            totp_factors::master_key_id.eq(master_key_id),
            totp_factors::last_step.eq(step),
            totp_factors::created_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Records `step` as used if it is later than every step used before and the authenticator's seed is still
/// `secret_sealed`, the one the code was checked against (one set up again meanwhile is another seed): 1 if so, 0
/// if not, in one conditional update, so two requests racing with one code cannot both win.
pub fn use_step(
    conn: &mut DbConn,
    user_id: &str,
    secret_sealed: &str,
    step: i64,
) -> QueryResult<usize> {
    diesel::update(
        totp_factors::table
            .find(user_id)
            .filter(totp_factors::secret_sealed.eq(secret_sealed))
            .filter(totp_factors::last_step.lt(step)),
    )
    .set(totp_factors::last_step.eq(step))
    .execute(conn)
}

pub fn delete_totp(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(totp_enrolments::table.find(user_id)).execute(conn)?;
    diesel::delete(totp_factors::table.find(user_id)).execute(conn)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = totp_enrolments)]
pub struct TotpEnrolment {
    pub user_id: String,
    pub secret_sealed: String,
    pub master_key_id: String,
    pub created_at: i64,
    /// The token hash of the session that started it: no other session may see or confirm it.
    pub session_hash: String,
}

/// Makes this the account's one pending enrolment (replacing any other, whichever session started it).
pub fn put_enrolment(
    conn: &mut DbConn,
    user_id: &str,
    secret_sealed: &str,
    master_key_id: &str,
    session_hash: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::delete(totp_enrolments::table.find(user_id)).execute(conn)?;
    diesel::insert_into(totp_enrolments::table)
        .values((
            totp_enrolments::user_id.eq(user_id),
            totp_enrolments::secret_sealed.eq(secret_sealed),
            totp_enrolments::master_key_id.eq(master_key_id),
            totp_enrolments::created_at.eq(now),
            totp_enrolments::session_hash.eq(session_hash),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn find_enrolment(conn: &mut DbConn, user_id: &str) -> QueryResult<Option<TotpEnrolment>> {
    totp_enrolments::table
        .find(user_id)
        .select(TotpEnrolment::as_select())
        .first(conn)
        .optional()
}

/// Deletes the enrolments begun at or before `before` (past their time: none can be confirmed any more). Their
/// sealed secrets would otherwise stay, and keep the master identity they are sealed to from being retired.
pub fn delete_enrolments_begun_before(conn: &mut DbConn, before: i64) -> QueryResult<usize> {
    diesel::delete(totp_enrolments::table.filter(totp_enrolments::created_at.le(before)))
        .execute(conn)
}

pub fn delete_enrolment(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(totp_enrolments::table.find(user_id)).execute(conn)
}

// ---- sealed secrets, for key rotation ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretTable {
    Factor,
    Enrolment,
}

#[derive(Debug, Clone)]
pub struct SealedSecretRow {
    pub table: SecretTable,
    pub user_id: String,
    pub stored: String,
    pub master_key_id: String,
}

pub fn secrets_not_sealed_to(
    conn: &mut DbConn,
    master_key_id: &str,
) -> QueryResult<Vec<SealedSecretRow>> {
    let factors: Vec<(String, String, String)> = totp_factors::table
        .filter(totp_factors::master_key_id.ne(master_key_id))
        .select((
            totp_factors::user_id,
            totp_factors::secret_sealed,
            totp_factors::master_key_id,
        ))
        .load(conn)?;
    let enrolments: Vec<(String, String, String)> = totp_enrolments::table
        .filter(totp_enrolments::master_key_id.ne(master_key_id))
        .select((
            totp_enrolments::user_id,
            totp_enrolments::secret_sealed,
            totp_enrolments::master_key_id,
        ))
        .load(conn)?;
    let row = |table| {
        move |(user_id, stored, master_key_id)| SealedSecretRow {
            table,
            user_id,
            stored,
            master_key_id,
        }
    };
    Ok(factors
        .into_iter()
        .map(row(SecretTable::Factor))
        .chain(enrolments.into_iter().map(row(SecretTable::Enrolment)))
        .collect())
}

/// Stores a re-sealed secret if the row still holds the secret it was read with (a new authenticator confirmed
/// meanwhile may be sealed to the same old key: it is not overwritten with the old secret).
pub fn reseal(
    conn: &mut DbConn,
    row: &SealedSecretRow,
    stored: &str,
    master_key_id: &str,
) -> QueryResult<usize> {
    match row.table {
        SecretTable::Factor => diesel::update(
            totp_factors::table
                .find(&row.user_id)
                .filter(totp_factors::master_key_id.eq(&row.master_key_id))
                .filter(totp_factors::secret_sealed.eq(&row.stored)),
        )
        .set((
            totp_factors::secret_sealed.eq(stored),
            totp_factors::master_key_id.eq(master_key_id),
        ))
        .execute(conn),
        SecretTable::Enrolment => diesel::update(
            totp_enrolments::table
                .find(&row.user_id)
                .filter(totp_enrolments::master_key_id.eq(&row.master_key_id))
                .filter(totp_enrolments::secret_sealed.eq(&row.stored)),
        )
        .set((
            totp_enrolments::secret_sealed.eq(stored),
            totp_enrolments::master_key_id.eq(master_key_id),
        ))
        .execute(conn),
    }
}

pub fn count_sealed_to(conn: &mut DbConn, master_key_id: &str) -> QueryResult<i64> {
    let factors: i64 = totp_factors::table
        .filter(totp_factors::master_key_id.eq(master_key_id))
        .count()
        .get_result(conn)?;
    let enrolments: i64 = totp_enrolments::table
        .filter(totp_enrolments::master_key_id.eq(master_key_id))
        .count()
        .get_result(conn)?;
    Ok(factors + enrolments)
}

// ---- recovery codes ----

/// Replaces every recovery code of the account (used or not) with these digests.
pub fn replace_recovery_codes(
    conn: &mut DbConn,
    user_id: &str,
    digests: &[String],
    now: i64,
) -> QueryResult<()> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
        .execute(conn)?;
    for digest in digests {
        diesel::insert_into(recovery_codes::table)
            .values((
                recovery_codes::id.eq(crate::db::new_id()),
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_sha256.eq(digest),
                recovery_codes::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Marks the unused code with this digest used: 1 if it was there and unused, else 0 (one conditional update, so
/// a code works once even when two requests race).
pub fn use_recovery_code(
    conn: &mut DbConn,
    user_id: &str,
    digest: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::code_sha256.eq(digest))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(now))
    .execute(conn)
}

/// Whether this digest is one of the account's codes that was already used.
pub fn recovery_code_used(conn: &mut DbConn, user_id: &str, digest: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::code_sha256.eq(digest))
            .filter(recovery_codes::used_at.is_not_null()),
    ))
    .get_result(conn)
}

pub fn recovery_codes_left(conn: &mut DbConn, user_id: &str) -> QueryResult<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
}

pub fn delete_recovery_codes(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)
}

// ---- what an account has, and what its session did ----

/// Whether the account has a confirmed second factor (an authenticator app or a passkey).
pub fn has_factor(conn: &mut DbConn, user_id: &str) -> QueryResult<bool> {
    let totp: bool =
        diesel::select(diesel::dsl::exists(totp_factors::table.find(user_id))).get_result(conn)?;
    if totp {
        return Ok(true);
    }
    diesel::select(diesel::dsl::exists(
        passkeys::table.filter(passkeys::user_id.eq(user_id)),
    ))
    .get_result(conn)
}

/// Records that the session used a second factor at `at`.
pub fn mark_session(conn: &mut DbConn, token_hash: &str, at: i64) -> QueryResult<usize> {
    diesel::update(sessions::table.find(token_hash))
        .set(sessions::second_factor_at.eq(Some(at)))
        .execute(conn)
}
