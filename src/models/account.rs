//! Accounts, organisations and sessions.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{organisations, sessions, users};
use crate::db::DbConn;

/// One role per account (PCII.md, "The people").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Submitter,
    Officer,
    AuthorizedUser,
    Auditor,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Submitter,
        Role::Officer,
        Role::AuthorizedUser,
        Role::Auditor,
        Role::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Officer => "officer",
            Role::AuthorizedUser => "authorized_user",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Submitter => "Submitter",
            Role::Officer => "PCII officer",
            Role::AuthorizedUser => "Authorized user",
            Role::Auditor => "Auditor",
            Role::Administrator => "Administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s || (s == "admin" && *r == Role::Administrator))
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub organisation_id: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
    pub training_completed_at: Option<i64>,
    pub nda_signed_at: Option<i64>,
    pub nda_reference: Option<String>,
    pub created_at: i64,
    pub password_changed_at: i64,
}

impl User {
    pub fn role(&self) -> Role {
        // The column has a CHECK constraint; an unknown value can only come from tampering, so fail closed.
        Role::parse(&self.role).unwrap_or(Role::Submitter)
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: &'a str,
    pub organisation_id: Option<&'a str>,
    pub password_hash: &'a str,
    pub disabled: bool,
    pub created_at: i64,
    pub password_changed_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = organisations)]
pub struct Organisation {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub token_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Emails are compared case-insensitively: stored trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn find_by_email(conn: &mut DbConn, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(normalize_email(email)))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<User> {
    users::table.find(id).select(User::as_select()).first(conn)
}

pub fn any_administrator(conn: &mut DbConn) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table
            .filter(users::role.eq(Role::Administrator.as_str()))
            .filter(users::disabled.eq(false)),
    ))
    .get_result(conn)
}

pub fn organisation_name(conn: &mut DbConn, id: &str) -> QueryResult<String> {
    organisations::table
        .find(id)
        .select(organisations::name)
        .first(conn)
}

/// Every organisation, by name (for pickers and filters).
pub fn organisations(conn: &mut DbConn) -> QueryResult<Vec<Organisation>> {
    organisations::table
        .order((organisations::name.asc(), organisations::id.asc()))
        .select(Organisation::as_select())
        .load(conn)
}

/// Finds an organisation by name (case-insensitive match on the trimmed name) or creates it.
pub fn find_or_create_organisation(conn: &mut DbConn, name: &str, now: i64) -> QueryResult<String> {
    let name = name.trim();
    let all: Vec<(String, String)> = organisations::table
        .select((organisations::id, organisations::name))
        .load(conn)?;
    if let Some((id, _)) = all
        .into_iter()
        .find(|(_, n)| n.to_lowercase() == name.to_lowercase())
    {
        return Ok(id);
    }
    let id = crate::db::new_id();
    diesel::insert_into(organisations::table)
        .values((
            organisations::id.eq(&id),
            organisations::name.eq(name),
            organisations::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(id)
}

pub fn delete_sessions_of(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

/// One row of the administrators' account list.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub role_label: &'static str,
    pub organisation: Option<String>,
    pub disabled: bool,
    pub training_completed_at: Option<i64>,
    pub nda_signed_at: Option<i64>,
    pub created_at: i64,
}

pub const ACCOUNTS_PER_PAGE: i64 = 50;

/// Accounts, newest first, one page at a time, with their organisation's name (one query).
pub fn list_accounts(
    conn: &mut DbConn,
    role: Option<Role>,
    page: i64,
) -> QueryResult<(Vec<AccountRow>, i64)> {
    let mut q = users::table
        .left_join(organisations::table)
        .select((User::as_select(), organisations::name.nullable()))
        .order((users::created_at.desc(), users::id.asc()))
        .into_boxed();
    let mut count = users::table.count().into_boxed();
    if let Some(r) = role {
        q = q.filter(users::role.eq(r.as_str()));
        count = count.filter(users::role.eq(r.as_str()));
    }
    let total: i64 = count.get_result(conn)?;
    let rows: Vec<(User, Option<String>)> = q
        .limit(ACCOUNTS_PER_PAGE)
        .offset(page.max(0) * ACCOUNTS_PER_PAGE)
        .load(conn)?;
    let rows = rows
        .into_iter()
        .map(|(u, org)| AccountRow {
            role_label: u.role().label(),
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            role: u.role,
            organisation: org,
            disabled: u.disabled,
            training_completed_at: u.training_completed_at,
            nda_signed_at: u.nda_signed_at,
            created_at: u.created_at,
        })
        .collect();
    Ok((rows, total))
}
