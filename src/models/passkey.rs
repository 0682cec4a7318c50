//! Passkeys (WebAuthn credentials) and the WebAuthn ceremony state a session keeps. Every query on `passkeys` is
//! scoped by the account; the credential itself is opaque JSON here (the `auth::passkeys` module reads it).

use diesel::prelude::*;

use crate::db::schema::{passkeys, sessions};
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = passkeys)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// Base64url (no padding) of the credential id, as authenticators return it.
    pub credential_id: String,
    /// The serialised `webauthn_rs::prelude::Passkey`: public key, counter, backup state.
    pub credential: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = passkeys)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewPasskey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub credential_id: &'a str,
    pub credential: &'a str,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub fn insert(conn: &mut DbConn, new: &NewPasskey<'_>) -> QueryResult<()> {
    diesel::insert_into(passkeys::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// The account's passkeys, the oldest first.
pub fn list_of(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<PasskeyRow>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .order((passkeys::created_at.asc(), passkeys::id.asc()))
        .select(PasskeyRow::as_select())
        .load(conn)
}

/// The account's credential ids (base64url), for excluding them from a new registration.
pub fn credential_ids_of(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<String>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .select(passkeys::credential_id)
        .load(conn)
}

pub fn count_of(conn: &mut DbConn, user_id: &str) -> QueryResult<i64> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .count()
        .get_result(conn)
}

/// Whether any account holds this credential id (they are unique across the portal).
pub fn credential_id_exists(conn: &mut DbConn, credential_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        passkeys::table.filter(passkeys::credential_id.eq(credential_id)),
    ))
    .get_result(conn)
}

/// The account's passkey with this credential id; another account's credential is not found.
pub fn find_by_credential_id(
    conn: &mut DbConn,
    user_id: &str,
    credential_id: &str,
) -> QueryResult<Option<PasskeyRow>> {
    passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .filter(passkeys::credential_id.eq(credential_id))
        .select(PasskeyRow::as_select())
        .first(conn)
        .optional()
}

/// Records a use of the passkey, with its updated credential (counter, backup state) when it changed, only if
/// its stored credential is still `read` (a compare-and-set: two uses finishing at once cannot both store a
/// counter checked against the same older one). Returns the rows changed (0: it changed meanwhile, or is gone).
pub fn record_use(
    conn: &mut DbConn,
    id: &str,
    read: &str,
    credential: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    let row = passkeys::table
        .filter(passkeys::id.eq(id))
        .filter(passkeys::credential.eq(read));
    match credential {
        Some(credential) => diesel::update(row)
            .set((
                passkeys::credential.eq(credential),
                passkeys::last_used_at.eq(now),
            ))
            .execute(conn),
        None => diesel::update(row)
            .set(passkeys::last_used_at.eq(now))
            .execute(conn),
    }
}

/// Removes the account's passkey with this id and returns its name; another account's id removes nothing.
pub fn delete_of(conn: &mut DbConn, user_id: &str, id: &str) -> QueryResult<Option<String>> {
    let scoped = passkeys::table
        .filter(passkeys::user_id.eq(user_id))
        .filter(passkeys::id.eq(id));
    let Some(name) = scoped
        .select(passkeys::name)
        .first::<String>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let deleted = diesel::delete(scoped).execute(conn)?;
    Ok((deleted > 0).then_some(name))
}

pub fn delete_all_of(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(user_id))).execute(conn)
}

/// The session's WebAuthn ceremony state: `None` when there is no such session, `Some(None)` when it has none.
pub fn ceremony_state(conn: &mut DbConn, token_hash: &str) -> QueryResult<Option<Option<String>>> {
    sessions::table
        .find(token_hash)
        .select(sessions::webauthn_state)
        .first(conn)
        .optional()
}

/// Replaces the session's ceremony state only if it still is `expected`, so that two requests of one session
/// never both consume the same challenge (a compare-and-swap; works alike on SQLite and PostgreSQL). Returns
/// whether it was replaced.
pub fn swap_ceremony_state(
    conn: &mut DbConn,
    token_hash: &str,
    expected: Option<&str>,
    new: Option<&str>,
) -> QueryResult<bool> {
    let session = sessions::table.filter(sessions::token_hash.eq(token_hash));
    let updated = match expected {
        Some(old) => diesel::update(session.filter(sessions::webauthn_state.eq(old)))
            .set(sessions::webauthn_state.eq(new))
            .execute(conn)?,
        None => diesel::update(session.filter(sessions::webauthn_state.is_null()))
            .set(sessions::webauthn_state.eq(new))
            .execute(conn)?,
    };
    Ok(updated == 1)
}
