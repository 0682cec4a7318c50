//! Organisations as the Program Office and each organisation's administrator see them: members, the
//! officers' list, verification and merging of duplicates. Every member query takes the organisation's id:
//! a member of another organisation is not found, exactly like an id that does not exist.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{invitations, notices, organisations, submissions, users};
use crate::db::DbConn;
use crate::domain::Role;
use crate::models::account::{Organisation, User};
use crate::models::invitation::{AWAITING_APPROVAL, SENT};

diesel::define_sql_function! {
    /// SQL `lower()`, for a case-insensitive name filter on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

pub const ORGANISATIONS_PER_PAGE: i64 = 50;

/// An organisation by id, merged or not (the officers' page shows merged duplicates too).
pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Organisation> {
    organisations::table
        .find(id)
        .select(Organisation::as_select())
        .first(conn)
}

/// Whether the organisation requires a second factor of every member (false for one that does not exist).
pub fn requires_second_factor(conn: &mut DbConn, id: &str) -> QueryResult<bool> {
    Ok(organisations::table
        .find(id)
        .select(organisations::require_second_factor)
        .first(conn)
        .optional()?
        .unwrap_or(false))
}

pub fn set_requires_second_factor(
    conn: &mut DbConn,
    id: &str,
    required: bool,
) -> QueryResult<usize> {
    diesel::update(organisations::table.find(id))
        .set(organisations::require_second_factor.eq(required))
        .execute(conn)
}

/// One member of an organisation, as its administrator and the Program Office see it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub id: String,
    pub display_name: String,
    pub email: String,
    pub org_admin: bool,
    pub email_verified: bool,
    pub disabled: bool,
    pub role_label: &'static str,
    pub joined_at: i64,
}

/// The accounts of one organisation, by name: its company's people, and with `staff` also the officers
/// recorded as belonging to it (for conflicts of interest; the Program Office sees those, the company not).
pub fn members(
    conn: &mut DbConn,
    organisation_id: &str,
    staff: bool,
) -> QueryResult<Vec<MemberRow>> {
    let mut q = users::table
        .filter(users::organisation_id.eq(organisation_id))
        .order((users::display_name.asc(), users::id.asc()))
        .select(User::as_select())
        .into_boxed();
    if !staff {
        q = q.filter(users::role.eq(Role::Submitter));
    }
    let list: Vec<User> = q.load(conn)?;
    Ok(list
        .into_iter()
        .map(|u| MemberRow {
            role_label: u.role().label(),
            org_admin: u.org_admin,
            email_verified: u.email_verified(),
            disabled: u.disabled,
            joined_at: u.created_at,
            id: u.id,
            display_name: u.display_name,
            email: u.email,
        })
        .collect())
}

/// A member of this organisation by id; `None` for an id of another organisation or none at all.
pub fn member(
    conn: &mut DbConn,
    organisation_id: &str,
    user_id: &str,
) -> QueryResult<Option<User>> {
    users::table
        .find(user_id)
        .filter(users::organisation_id.eq(organisation_id))
        .filter(users::role.eq(Role::Submitter))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// The company's people in an organisation (not officers recorded against it).
pub fn member_count(conn: &mut DbConn, organisation_id: &str) -> QueryResult<i64> {
    users::table
        .filter(users::organisation_id.eq(organisation_id))
        .filter(users::role.eq(Role::Submitter))
        .count()
        .get_result(conn)
}

/// The organisation's submissions the Program Office has received: drafts are the company's alone, so an officer is
/// not told how many it has.
pub fn sent_submission_count(conn: &mut DbConn, organisation_id: &str) -> QueryResult<i64> {
    submissions::table
        .filter(submissions::organisation_id.eq(organisation_id))
        .filter(submissions::status.ne(crate::domain::Status::Draft))
        .count()
        .get_result(conn)
}

/// Takes a member out of its organisation: no organisation, no administrator role, disabled, and every
/// session gone. Scoped: the count is 0 for an id outside the organisation.
pub fn remove_member(
    conn: &mut DbConn,
    organisation_id: &str,
    user_id: &str,
) -> QueryResult<usize> {
    let n = diesel::update(
        users::table
            .find(user_id)
            .filter(users::organisation_id.eq(organisation_id)),
    )
    .set((
        users::organisation_id.eq(None::<String>),
        users::org_admin.eq(false),
        users::disabled.eq(true),
    ))
    .execute(conn)?;
    if n == 1 {
        crate::models::session::delete_all_of(conn, user_id)?;
    }
    Ok(n)
}

/// Grants or withdraws the organisation-administrator role of a member (scoped to the organisation).
pub fn set_org_admin(
    conn: &mut DbConn,
    organisation_id: &str,
    user_id: &str,
    org_admin: bool,
) -> QueryResult<usize> {
    diesel::update(
        users::table
            .find(user_id)
            .filter(users::organisation_id.eq(organisation_id)),
    )
    .set(users::org_admin.eq(org_admin))
    .execute(conn)
}

/// One row of the officers' organisation list.
#[derive(Debug, Clone, Serialize)]
pub struct OrganisationRow {
    #[serde(flatten)]
    pub organisation: Organisation,
    pub verified: bool,
    pub members: i64,
    pub submissions: i64,
}

/// The officers' filter: a name substring (any case) and the verified state.
#[derive(Debug, Clone, Default)]
pub struct OrganisationFilter {
    pub name: String,
    /// `Some(true)`: verified only; `Some(false)`: not verified (and not merged away).
    pub verified: Option<bool>,
}

/// `%s%`, lower-cased, with LIKE's wildcards escaped by `\` (use with `.escape('\\')`).
pub(crate) fn like_pattern(s: &str) -> String {
    let mut out = String::from("%");
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Organisations by name, one page at a time, with their member and submission counts.
pub fn list(
    conn: &mut DbConn,
    filter: &OrganisationFilter,
    page: i64,
) -> QueryResult<(Vec<OrganisationRow>, i64)> {
    let mut q = organisations::table
        .select(Organisation::as_select())
        .order((organisations::name.asc(), organisations::id.asc()))
        .into_boxed();
    let mut count = organisations::table.count().into_boxed();
    let name = filter.name.trim();
    if !name.is_empty() {
        let pattern = like_pattern(name);
        q = q.filter(
            lower(organisations::name)
                .like(pattern.clone())
                .escape('\\'),
        );
        count = count.filter(lower(organisations::name).like(pattern).escape('\\'));
    }
    match filter.verified {
        Some(true) => {
            q = q.filter(organisations::verified_at.is_not_null());
            count = count.filter(organisations::verified_at.is_not_null());
        }
        Some(false) => {
            q = q
                .filter(organisations::verified_at.is_null())
                .filter(organisations::merged_into.is_null());
            count = count
                .filter(organisations::verified_at.is_null())
                .filter(organisations::merged_into.is_null());
        }
        None => {}
    }
    let total: i64 = count.get_result(conn)?;
    let list: Vec<Organisation> = q
        .limit(ORGANISATIONS_PER_PAGE)
        .offset(page.max(0) * ORGANISATIONS_PER_PAGE)
        .load(conn)?;
    let mut rows = Vec::with_capacity(list.len());
    for o in list {
        rows.push(OrganisationRow {
            verified: o.verified_at.is_some(),
            members: member_count(conn, &o.id)?,
            submissions: sent_submission_count(conn, &o.id)?,
            organisation: o,
        });
    }
    Ok((rows, total))
}

/// At most this many organisations answer a name typed into an officer's queue filter or search.
pub const NAME_MATCHES_MAX: i64 = 100;

/// The organisations an officer's filter names: by id (the links of pages made before the filter took names) or
/// by any part of the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameMatches {
    /// These organisations (none when nothing matches), at most `NAME_MATCHES_MAX`.
    Ids(Vec<String>),
    /// Every organisation: the text filters nothing.
    Every,
    /// More than `NAME_MATCHES_MAX`, and not every one.
    TooMany,
}

/// What a typed organisation filter matches: the organisation with exactly this id, or else the organisations
/// (not merged away: their submissions moved with the merge) whose name holds the text, in any case, with LIKE's
/// wildcards taken literally. Bounded: one row for the id, one for "does any organisation not match", and at
/// most `NAME_MATCHES_MAX` + 1 ids, however many organisations there are.
pub fn matching(conn: &mut DbConn, text: &str) -> QueryResult<NameMatches> {
    let text = text.trim();
    let by_id: Option<String> = organisations::table
        .find(text)
        .select(organisations::id)
        .first(conn)
        .optional()?;
    if let Some(id) = by_id {
        return Ok(NameMatches::Ids(vec![id]));
    }
    let pattern = like_pattern(text);
    let unmatched: Option<String> = organisations::table
        .filter(organisations::merged_into.is_null())
        .filter(
            lower(organisations::name)
                .not_like(pattern.clone())
                .escape('\\'),
        )
        .select(organisations::id)
        .first(conn)
        .optional()?;
    if unmatched.is_none() {
        return Ok(NameMatches::Every);
    }
    let ids: Vec<String> = organisations::table
        .filter(organisations::merged_into.is_null())
        .filter(lower(organisations::name).like(pattern).escape('\\'))
        .order(organisations::id.asc())
        .select(organisations::id)
        .limit(NAME_MATCHES_MAX + 1)
        .load(conn)?;
    Ok(if ids.len() as i64 > NAME_MATCHES_MAX {
        NameMatches::TooMany
    } else {
        NameMatches::Ids(ids)
    })
}

/// The organisations that were merged into this one.
pub fn merged_from(conn: &mut DbConn, organisation_id: &str) -> QueryResult<Vec<Organisation>> {
    organisations::table
        .filter(organisations::merged_into.eq(organisation_id))
        .order(organisations::merged_at.asc())
        .select(Organisation::as_select())
        .load(conn)
}

/// Records how the Program Office verified that an organisation is who it says it is.
pub fn verify(
    conn: &mut DbConn,
    organisation_id: &str,
    by: &str,
    method: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(
        organisations::table
            .find(organisation_id)
            .filter(organisations::merged_into.is_null()),
    )
    .set((
        organisations::verified_at.eq(now),
        organisations::verified_by.eq(by),
        organisations::verification_method.eq(method),
    ))
    .execute(conn)
}

/// What a merge moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub members: usize,
    pub submissions: usize,
    pub invitations: usize,
}

/// Moves everything of the duplicate `from` to `into` and marks `from` merged. Run it inside a transaction.
/// Members keep their organisation-administrator flags; closed invitations stay as history.
pub fn merge(conn: &mut DbConn, from: &str, into: &str, now: i64) -> QueryResult<Moved> {
    let members = diesel::update(users::table.filter(users::organisation_id.eq(from)))
        .set(users::organisation_id.eq(into))
        .execute(conn)?;
    let submissions =
        diesel::update(submissions::table.filter(submissions::organisation_id.eq(from)))
            .set(submissions::organisation_id.eq(into))
            .execute(conn)?;
    let invitations = diesel::update(
        invitations::table
            .filter(invitations::organisation_id.eq(from))
            .filter(invitations::state.eq_any([AWAITING_APPROVAL, SENT])),
    )
    .set(invitations::organisation_id.eq(into))
    .execute(conn)?;
    // The duplicate's notices about its (now moved) submissions follow them.
    diesel::update(notices::table.filter(notices::organisation_id.eq(from)))
        .set(notices::organisation_id.eq(into))
        .execute(conn)?;
    // Organisations merged into the duplicate earlier now point at the survivor.
    diesel::update(organisations::table.filter(organisations::merged_into.eq(from)))
        .set(organisations::merged_into.eq(into))
        .execute(conn)?;
    diesel::update(organisations::table.find(from))
        .set((
            organisations::merged_into.eq(into),
            organisations::merged_at.eq(now),
        ))
        .execute(conn)?;
    Ok(Moved {
        members,
        submissions,
        invitations,
    })
}
