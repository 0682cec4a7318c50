//! Accounts (`users`) and organisations. Sessions are in `session`.

use diesel::prelude::*;
use serde::Serialize;

use crate::domain::Role;

use crate::db::schema::{organisations, users};
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub organisation_id: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
    pub training_completed_at: Option<i64>,
    pub nda_signed_at: Option<i64>,
    pub nda_reference: Option<String>,
    pub created_at: i64,
    pub password_changed_at: i64,
    /// Administers its organisation's membership (invites, removes, hands the role on).
    pub org_admin: bool,
    /// When the account proved it receives mail at its address (by link, or made by the host CLI).
    pub email_verified_at: Option<i64>,
    /// The agency or office a staff account belongs to.
    pub agency: Option<String>,
    pub nda_expires_at: Option<i64>,
}

impl User {
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub organisation_id: Option<&'a str>,
    pub password_hash: &'a str,
    pub disabled: bool,
    pub created_at: i64,
    pub password_changed_at: i64,
    pub org_admin: bool,
    pub email_verified_at: Option<i64>,
    pub agency: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = organisations)]
pub struct Organisation {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    pub verified_by: Option<String>,
    pub verification_method: Option<String>,
    /// Set when a PCII officer merged this duplicate into another organisation.
    pub merged_into: Option<String>,
    pub merged_at: Option<i64>,
    /// Every member must have a second factor (set by the organisation's administrator).
    pub require_second_factor: bool,
}

/// Typed input past this many bytes is too long to be an address in any form: NFKC turns no character into less
/// than a quarter of its bytes (a 4-byte mathematical letter into one), so it would still be over 254 bytes.
const EMAIL_INPUT_MAX: usize = 4 * 256;

/// Emails are compared as normalised: Unicode NFKC, trimmed and lower-cased, so that the same address typed
/// in another form is the same account. Input longer than [`EMAIL_INPUT_MAX`] is cut there and not normalised
/// (NFKC can make a field of a form's size 18 times longer): what is returned is still over 254 bytes, so
/// [`email_problem`] refuses it as it would have.
pub fn normalize_email(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let email = email.trim();
    if email.len() > EMAIL_INPUT_MAX {
        let cut = (EMAIL_INPUT_MAX..email.len())
            .find(|i| email.is_char_boundary(*i))
            .unwrap_or(email.len());
        return email[..cut].to_lowercase();
    }
    email.nfkc().collect::<String>().to_lowercase()
}

/// Why a (normalised) address is refused, if it is: not of the form local@domain.tld, whitespace or control
/// characters, invisible characters (zero-width spaces and other format characters that would make one address
/// two accounts), or a label that mixes scripts (a Cyrillic "а" among Latin letters).
pub fn email_problem(email: &str) -> Option<&'static str> {
    use unicode_security::MixedScript;
    let generic = "Enter an email address like name@example.com.";
    if email.is_empty() || email.len() > 254 {
        return Some(generic);
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Some(generic);
    };
    if local.is_empty()
        || local.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Some(generic);
    }
    if email.chars().any(is_invisible) {
        return Some("This address contains an invisible character. Type it again by hand.");
    }
    // What the mailer will take (no link could reach an address it refuses: `a,b@x.example`, `a..b@x.example`), as
    // a bare address: a name with the address in brackets (`x<ann@corp.example>`) would be stored as one account's
    // address while its mail went to another's.
    match email.parse::<lettre::message::Mailbox>() {
        Ok(m) if m.name.is_none() && AsRef::<str>::as_ref(&m.email) == email => {}
        _ => return Some(generic),
    }
    let labels = std::iter::once(local).chain(domain.split('.'));
    for label in labels {
        if !label.is_single_script() {
            return Some(
                "This address mixes letters of different alphabets. Type it again by hand.",
            );
        }
    }
    None
}

/// Zero-width and other invisible format characters (Unicode default-ignorables that survive NFKC), bidirectional
/// overrides and isolates among them.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
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

/// The account with this id, `None` when there is none.
pub fn find_opt(conn: &mut DbConn, id: &str) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Whether an account has this id (whatever its role, organisation or state).
pub fn exists(conn: &mut DbConn, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(users::table.find(id))).get_result(conn)
}

pub fn any_administrator(conn: &mut DbConn) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table
            .filter(users::role.eq(Role::Administrator))
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

/// Every organisation, by name: for the host's `organisation list` command only. Pages never load them all
/// (registrations make organisations): they use `organisation::list` (a page) or `organisation::matching` (bounded).
pub fn organisations(conn: &mut DbConn) -> QueryResult<Vec<Organisation>> {
    organisations::table
        .order((organisations::name.asc(), organisations::id.asc()))
        .select(Organisation::as_select())
        .load(conn)
}

/// Creates a new organisation. Names are not unique: two companies may share one, and a name never
/// identifies an organisation (ids do).
pub fn create_organisation(conn: &mut DbConn, name: &str, now: i64) -> QueryResult<String> {
    let id = crate::db::new_id();
    diesel::insert_into(organisations::table)
        .values((
            organisations::id.eq(&id),
            organisations::name.eq(name.trim()),
            organisations::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(id)
}

/// An organisation by id, if it exists and was not merged away.
pub fn find_organisation(conn: &mut DbConn, id: &str) -> QueryResult<Option<Organisation>> {
    organisations::table
        .find(id)
        .filter(organisations::merged_into.is_null())
        .select(Organisation::as_select())
        .first(conn)
        .optional()
}

pub fn insert(conn: &mut DbConn, new: &NewUser<'_>) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Disables an account by an administrator's (or the operator's) decision, or enables it again. A disabled account
/// is also suspended: unlike a member its organisation removed, no invitation brings it back (see [`rejoin`]).
pub fn set_disabled(conn: &mut DbConn, id: &str, disabled: bool) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((users::disabled.eq(disabled), users::suspended.eq(disabled)))
        .execute(conn)
}

/// Changes an account's role. Administering a company's membership is a submitter's role only: an account moved to
/// a staff role loses it in the same statement (its organisation id stays, as its conflict of interest).
pub fn set_role(conn: &mut DbConn, id: &str, role: Role) -> QueryResult<usize> {
    let target = users::table.find(id);
    if role == Role::Submitter {
        diesel::update(target)
            .set(users::role.eq(role))
            .execute(conn)
    } else {
        diesel::update(target)
            .set((users::role.eq(role), users::org_admin.eq(false)))
            .execute(conn)
    }
}

/// Records (or with `None` clears) when the account completed its training.
pub fn set_training_completed(conn: &mut DbConn, id: &str, at: Option<i64>) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::training_completed_at.eq(at))
        .execute(conn)
}

/// Records the account's non-disclosure agreement; all `None` clears it.
pub fn set_nda(
    conn: &mut DbConn,
    id: &str,
    signed_at: Option<i64>,
    expires_at: Option<i64>,
    reference: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::nda_signed_at.eq(signed_at),
            users::nda_expires_at.eq(expires_at),
            users::nda_reference.eq(reference),
        ))
        .execute(conn)
}

/// Replaces the stored hash of the *same* password (made with newer parameters): the password's change
/// time stays.
pub fn replace_password_hash(conn: &mut DbConn, id: &str, hash: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::password_hash.eq(hash))
        .execute(conn)
}

/// Stores a new password's hash, changed at `now`.
pub fn set_password(conn: &mut DbConn, id: &str, hash: &str, now: i64) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(hash),
            users::password_changed_at.eq(now),
        ))
        .execute(conn)
}

/// Stores a new password's hash set through a mailed link, changed at `now`, with the time the address
/// counts as confirmed from (the link reached it).
pub fn set_password_with_email_verified(
    conn: &mut DbConn,
    id: &str,
    hash: &str,
    now: i64,
    email_verified_at: i64,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(hash),
            users::password_changed_at.eq(now),
            users::email_verified_at.eq(email_verified_at),
        ))
        .execute(conn)
}

/// Records that the account proved, at `at`, that it receives mail at its address.
pub fn set_email_verified(conn: &mut DbConn, id: &str, at: i64) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::email_verified_at.eq(at))
        .execute(conn)
}

/// Brings a removed member back into an organisation (by invitation): enabled again, with the name and
/// password the person chose and its address confirmed at `now`. Never a suspended account (0 rows): only an
/// administrator enables that.
pub fn rejoin(
    conn: &mut DbConn,
    id: &str,
    organisation_id: Option<&str>,
    org_admin: bool,
    display_name: &str,
    password_hash: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id).filter(users::suspended.eq(false)))
        .set((
            users::organisation_id.eq(organisation_id),
            users::org_admin.eq(org_admin),
            users::disabled.eq(false),
            users::display_name.eq(display_name),
            users::password_hash.eq(password_hash),
            users::password_changed_at.eq(now),
            users::email_verified_at.eq(now),
        ))
        .execute(conn)
}

/// One row of the administrators' account list.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub role_label: &'static str,
    pub organisation_id: Option<String>,
    pub organisation: Option<String>,
    pub org_admin: bool,
    pub agency: Option<String>,
    pub disabled: bool,
    pub email_verified: bool,
    pub training_completed_at: Option<i64>,
    /// Training counts for `TRAINING_VALID_DAYS` after completion.
    pub training_expires_at: Option<i64>,
    pub nda_signed_at: Option<i64>,
    pub nda_expires_at: Option<i64>,
    pub created_at: i64,
}

pub const ACCOUNTS_PER_PAGE: i64 = 50;

/// Every enabled account of `role`, by name: whom an officer may choose (a grant's authorized user). Not paged: an
/// office has hundreds of them at most, and one left off a page could not be chosen at all.
pub fn enabled_of_role(conn: &mut DbConn, role: Role) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::role.eq(role))
        .filter(users::disabled.eq(false))
        .order((users::display_name.asc(), users::email.asc()))
        .select(User::as_select())
        .load(conn)
}

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
        q = q.filter(users::role.eq(r));
        count = count.filter(users::role.eq(r));
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
            organisation_id: u.organisation_id,
            organisation: org,
            org_admin: u.org_admin,
            agency: u.agency,
            disabled: u.disabled,
            email_verified: u.email_verified_at.is_some(),
            training_completed_at: u.training_completed_at,
            training_expires_at: u
                .training_completed_at
                .map(|t| t + crate::domain::TRAINING_VALID_DAYS * crate::time::DAY),
            nda_signed_at: u.nda_signed_at,
            nda_expires_at: u.nda_expires_at,
            created_at: u.created_at,
        })
        .collect();
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_typed_in_another_form_is_the_same_address() {
        assert_eq!(normalize_email("  Ann@Example.COM "), "ann@example.com");
        // Fullwidth letters (NFKC).
        assert_eq!(normalize_email("ａｎｎ@example.com"), "ann@example.com");
    }

    #[test]
    fn input_too_long_for_any_address_is_cut_not_normalised_and_still_refused() {
        // U+FDFA becomes 18 characters under NFKC: 100,000 of them would be 5 MB normalised.
        let long = "\u{FDFA}".repeat(100_000);
        let normalised = normalize_email(&long);
        assert!(
            normalised.len() <= EMAIL_INPUT_MAX + 3,
            "{}",
            normalised.len()
        );
        assert!(email_problem(&normalised).is_some());
        // 4-byte letters NFKC shortens four times: just over the cut, still too long once normalised.
        let math = format!("{}@example.com", "\u{1D400}".repeat(64));
        assert!(math.len() <= EMAIL_INPUT_MAX);
        assert_eq!(
            normalize_email(&math),
            format!("{}@example.com", "a".repeat(64))
        );
        let over = "\u{1D400}".repeat(EMAIL_INPUT_MAX / 4 + 1);
        assert!(email_problem(&normalize_email(&over)).is_some());
        // A cut never splits a character.
        let mixed = format!("x{}", "\u{1D400}".repeat(EMAIL_INPUT_MAX));
        assert!(normalize_email(&mixed).len() > 254);
    }
}
