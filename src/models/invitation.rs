//! Invitations (the only way into an existing organisation or a staff role from the web) and pending role
//! grants. The database keeps only the SHA-256 of each invitation link's token.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{invitations, organisations, privilege_requests, users};
use crate::db::DbConn;
use crate::domain::Role;
use crate::models::Capped;

/// Whose approval an invitation waits for before its link is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// A staff role: a second administrator (two-person rule).
    SecondAdministrator,
    /// An administrator's invitation into an existing organisation: that organisation's administrator, or
    /// a PCII officer where it has none.
    Organisation,
}

impl Approval {
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::SecondAdministrator => "second_administrator",
            Approval::Organisation => "organisation",
        }
    }
    pub fn parse(s: &str) -> Option<Approval> {
        match s {
            "second_administrator" => Some(Approval::SecondAdministrator),
            "organisation" => Some(Approval::Organisation),
            _ => None,
        }
    }
}

pub const AWAITING_APPROVAL: &str = "awaiting_approval";
pub const SENT: &str = "sent";
pub const ACCEPTED: &str = "accepted";
pub const REVOKED: &str = "revoked";
pub const REFUSED: &str = "refused";

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: String,
    #[serde(skip)]
    pub token_hash: Option<String>,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub organisation_id: Option<String>,
    pub new_organisation: Option<String>,
    pub org_admin: bool,
    pub agency: Option<String>,
    pub invited_by: Option<String>,
    pub approval: Option<String>,
    pub approved_by: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub account_id: Option<String>,
}

impl Invitation {
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn approval(&self) -> Option<Approval> {
        self.approval.as_deref().and_then(Approval::parse)
    }
    /// Open: waiting for approval, or sent and not yet expired.
    pub fn open(&self, now: i64) -> bool {
        self.state == AWAITING_APPROVAL || (self.state == SENT && self.expires_at > now)
    }
}

#[derive(Insertable)]
#[diesel(table_name = invitations)]
pub struct NewInvitation<'a> {
    pub id: &'a str,
    pub token_hash: Option<&'a str>,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub organisation_id: Option<&'a str>,
    pub new_organisation: Option<&'a str>,
    pub org_admin: bool,
    pub agency: Option<&'a str>,
    pub invited_by: Option<&'a str>,
    pub approval: Option<&'a str>,
    pub state: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewInvitation<'_>) -> QueryResult<()> {
    diesel::insert_into(invitations::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Invitation> {
    invitations::table
        .find(id)
        .select(Invitation::as_select())
        .first(conn)
}

/// The invitation a link's token belongs to, if it was sent and is unexpired.
pub fn find_live_by_token(
    conn: &mut DbConn,
    token_hash: &str,
    now: i64,
) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::token_hash.eq(token_hash))
        .filter(invitations::state.eq(SENT))
        .filter(invitations::expires_at.gt(now))
        .select(Invitation::as_select())
        .first(conn)
        .optional()
}

/// Invitations made by the administrators of one organisation (into it) since `since`.
pub fn made_for_organisation_since(
    conn: &mut DbConn,
    organisation_id: &str,
    since: i64,
) -> QueryResult<i64> {
    invitations::table
        .inner_join(users::table.on(users::id.nullable().eq(invitations::invited_by)))
        .filter(users::organisation_id.eq(organisation_id))
        .filter(invitations::created_at.ge(since))
        .count()
        .get_result(conn)
}

/// How many organisations other than `except` invited one address (through their administrators; not the Program
/// Office) since `since`.
pub fn organisations_inviting_since(
    conn: &mut DbConn,
    email: &str,
    except: &str,
    since: i64,
) -> QueryResult<i64> {
    invitations::table
        .inner_join(users::table.on(users::id.nullable().eq(invitations::invited_by)))
        .filter(invitations::email.eq(email))
        .filter(users::role.eq(crate::domain::Role::Submitter.as_str()))
        .filter(users::organisation_id.ne(except))
        .filter(invitations::created_at.ge(since))
        .select(users::organisation_id)
        .distinct()
        .load::<Option<String>>(conn)
        .map(|orgs| orgs.len() as i64)
}

/// The open invitations one person made to one address.
pub fn open_ids_for(conn: &mut DbConn, email: &str, invited_by: &str) -> QueryResult<Vec<String>> {
    invitations::table
        .filter(invitations::email.eq(email))
        .filter(invitations::invited_by.eq(invited_by))
        .filter(invitations::state.eq_any([AWAITING_APPROVAL, SENT]))
        .select(invitations::id)
        .load(conn)
}

/// Sends an approved or new invitation: a fresh token and expiry, state `sent`.
pub fn mark_sent(
    conn: &mut DbConn,
    id: &str,
    token_hash: &str,
    expires_at: i64,
    approved_by: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::token_hash.eq(token_hash),
            invitations::state.eq(SENT),
            invitations::expires_at.eq(expires_at),
            invitations::approved_by.eq(approved_by),
        ))
        .execute(conn)
}

/// Closes an invitation (accepted, revoked, refused); its link stops working at once. Only an open
/// invitation changes: the count says whether this one did.
pub fn close(
    conn: &mut DbConn,
    id: &str,
    state: &str,
    by: Option<&str>,
    account_id: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::state.eq_any([AWAITING_APPROVAL, SENT])),
    )
    .set((
        invitations::state.eq(state),
        invitations::token_hash.eq(None::<String>),
        invitations::decided_at.eq(now),
        invitations::decided_by.eq(by),
        invitations::account_id.eq(account_id),
    ))
    .execute(conn)
}

/// One row of an invitation list, with the names a person needs to decide.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationRow {
    #[serde(flatten)]
    pub invitation: Invitation,
    pub role_label: &'static str,
    pub organisation_name: Option<String>,
    pub invited_by_name: Option<String>,
    pub invited_by_email: Option<String>,
    pub expired: bool,
}

/// Adds the names a person needs to decide: two batched lookups (organisations, inviters), not two per row.
fn rows(conn: &mut DbConn, list: Vec<Invitation>, now: i64) -> QueryResult<Vec<InvitationRow>> {
    use std::collections::HashMap;
    let org_ids: Vec<&str> = list
        .iter()
        .filter_map(|i| i.organisation_id.as_deref())
        .collect();
    let inviter_ids: Vec<&str> = list
        .iter()
        .filter_map(|i| i.invited_by.as_deref())
        .collect();
    let org_names: HashMap<String, String> = organisations::table
        .filter(organisations::id.eq_any(&org_ids))
        .select((organisations::id, organisations::name))
        .load(conn)?
        .into_iter()
        .collect();
    let inviters: HashMap<String, (String, String)> = users::table
        .filter(users::id.eq_any(&inviter_ids))
        .select((users::id, (users::display_name, users::email)))
        .load(conn)?
        .into_iter()
        .collect();
    Ok(list
        .into_iter()
        .map(|inv| {
            let inviter = inv.invited_by.as_ref().and_then(|id| inviters.get(id));
            InvitationRow {
                role_label: inv.role().label(),
                organisation_name: inv
                    .organisation_id
                    .as_ref()
                    .and_then(|id| org_names.get(id).cloned()),
                invited_by_name: inviter.map(|i| i.0.clone()),
                invited_by_email: inviter.map(|i| i.1.clone()),
                expired: inv.state == SENT && inv.expires_at <= now,
                invitation: inv,
            }
        })
        .collect())
}

/// Invitations of the company's people into one organisation whose link is out (its administrator's list),
/// newest first. Those still waiting for its approval are `awaiting_for_organisation`. A staff invitation
/// can carry the organisation's id too (an officer's conflict of interest): that is no business of the
/// company's, so only submitter invitations are listed.
/// At most [`LISTED`] of them, with how many there are.
pub fn sent_for_organisation(
    conn: &mut DbConn,
    organisation_id: &str,
    now: i64,
) -> QueryResult<Capped<InvitationRow>> {
    let sent = || {
        invitations::table
            .filter(invitations::organisation_id.eq(organisation_id))
            .filter(invitations::role.eq(Role::Submitter))
            .filter(invitations::state.eq(SENT))
    };
    let list = sent()
        .order(invitations::created_at.desc())
        .limit(LISTED)
        .select(Invitation::as_select())
        .load(conn)?;
    let total = sent().count().get_result(conn)?;
    Ok(Capped {
        rows: rows(conn, list, now)?,
        total,
    })
}

/// Open invitations that administrators made (staff and companies), newest first: awaiting approval, or sent and
/// not expired (an expired one stays `sent` until replaced, and would crowd the live ones out of the list).
pub fn open_by_administrators(conn: &mut DbConn, now: i64) -> QueryResult<Capped<InvitationRow>> {
    let open = || {
        let admins = users::table
            .filter(users::role.eq(Role::Administrator))
            .select(users::id.nullable());
        invitations::table
            .filter(
                invitations::state
                    .eq(AWAITING_APPROVAL)
                    .or(invitations::state
                        .eq(SENT)
                        .and(invitations::expires_at.gt(now))),
            )
            .filter(invitations::invited_by.eq_any(admins))
    };
    let total = open().count().get_result(conn)?;
    let list = open()
        .order(invitations::created_at.desc())
        .limit(LISTED)
        .select(Invitation::as_select())
        .load(conn)?;
    capped(conn, list, total, now)
}

/// How many rows the administrators' and officers' lists of pending things show (the oldest; their pages say how many
/// there are in all).
pub const LISTED: i64 = 200;

fn capped(
    conn: &mut DbConn,
    list: Vec<Invitation>,
    total: i64,
    now: i64,
) -> QueryResult<Capped<InvitationRow>> {
    Ok(Capped {
        rows: rows(conn, list, now)?,
        total,
    })
}

/// Invitations waiting for one kind of approval, oldest first.
pub fn awaiting(
    conn: &mut DbConn,
    approval: Approval,
    now: i64,
) -> QueryResult<Capped<InvitationRow>> {
    let waiting = || {
        invitations::table
            .filter(invitations::state.eq(AWAITING_APPROVAL))
            .filter(invitations::approval.eq(approval.as_str()))
    };
    let total = waiting().count().get_result(conn)?;
    let list = waiting()
        .order(invitations::created_at.asc())
        .limit(LISTED)
        .select(Invitation::as_select())
        .load(conn)?;
    capped(conn, list, total, now)
}

/// Administrators' invitations into one organisation that wait for its approval, oldest first.
pub fn awaiting_for_organisation(
    conn: &mut DbConn,
    organisation_id: &str,
    now: i64,
) -> QueryResult<Vec<InvitationRow>> {
    let list = invitations::table
        .filter(invitations::state.eq(AWAITING_APPROVAL))
        .filter(invitations::approval.eq(Approval::Organisation.as_str()))
        .filter(invitations::organisation_id.eq(organisation_id))
        .order(invitations::created_at.asc())
        .select(Invitation::as_select())
        .load(conn)?;
    rows(conn, list, now)
}

/// Administrators' invitations into organisations that have no confirmed administrator (a PCII officer decides
/// those), optionally for one organisation, oldest first. The test of "has an administrator" is
/// `organisation_has_administrator`, as a correlated subquery.
pub fn awaiting_officer(
    conn: &mut DbConn,
    organisation_id: Option<&str>,
    now: i64,
) -> QueryResult<Capped<InvitationRow>> {
    let waiting = || {
        let admins = users::table
            .filter(users::organisation_id.eq(invitations::organisation_id))
            .filter(users::role.eq(Role::Submitter))
            .filter(users::org_admin.eq(true))
            .filter(users::email_verified_at.is_not_null())
            .select(users::id);
        let mut query = invitations::table
            .filter(invitations::state.eq(AWAITING_APPROVAL))
            .filter(invitations::approval.eq(Approval::Organisation.as_str()))
            .filter(invitations::organisation_id.is_not_null())
            .filter(diesel::dsl::not(diesel::dsl::exists(admins)))
            .into_boxed();
        if let Some(org) = organisation_id {
            query = query.filter(invitations::organisation_id.eq(org.to_string()));
        }
        query
    };
    let total = waiting().count().get_result(conn)?;
    let list = waiting()
        .order(invitations::created_at.asc())
        .limit(LISTED)
        .select(Invitation::as_select())
        .load(conn)?;
    capped(conn, list, total, now)
}

/// How many grants wait for a second administrator: staff invitations and changes of privilege.
pub fn pending_for_second_administrator(conn: &mut DbConn) -> QueryResult<i64> {
    let invitations: i64 = invitations::table
        .filter(invitations::state.eq(AWAITING_APPROVAL))
        .filter(invitations::approval.eq(Approval::SecondAdministrator.as_str()))
        .count()
        .get_result(conn)?;
    let changes: i64 = privilege_requests::table
        .filter(privilege_requests::state.eq("pending"))
        .count()
        .get_result(conn)?;
    Ok(invitations + changes)
}

/// The organisation's active, confirmed administrators (who approve invitations into it). Only its company's
/// people count: a staff account recorded against the organisation (a conflict of interest) administers
/// nothing there, whatever flag an earlier role left on it.
pub fn organisation_admins(conn: &mut DbConn, organisation_id: &str) -> QueryResult<Vec<String>> {
    users::table
        .filter(users::organisation_id.eq(organisation_id))
        .filter(users::role.eq(Role::Submitter))
        .filter(users::org_admin.eq(true))
        .filter(users::disabled.eq(false))
        .filter(users::email_verified_at.is_not_null())
        .select(users::id)
        .load(conn)
}

/// Whether the organisation has a confirmed administrator of its own, enabled or not. While it has one,
/// invitations into it wait for the company and never for a PCII officer: a disabled administrator holds the
/// company's say too (it is enabled again, or removed), else an administrator could disable the company's
/// administrator to have an officer decide in the company's place.
pub fn organisation_has_administrator(
    conn: &mut DbConn,
    organisation_id: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table
            .filter(users::organisation_id.eq(organisation_id))
            .filter(users::role.eq(Role::Submitter))
            .filter(users::org_admin.eq(true))
            .filter(users::email_verified_at.is_not_null()),
    ))
    .get_result(conn)
}

/// Active administrators: the two-person rule applies when there are two or more.
pub fn active_administrators(conn: &mut DbConn) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(Role::Administrator))
        .filter(users::disabled.eq(false))
        .count()
        .get_result(conn)
}

// ---- changes of privilege waiting for a second administrator ----

/// What a privilege request changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeChange {
    /// A staff role granted to an existing account.
    Role(Role),
    /// An administrator disabled (else one administrator could disable the other and act alone).
    Disable { reason: String },
    /// A disabled staff account enabled again (which grants its role back).
    Enable,
    /// Every second factor of the account deleted (it lost them); it enrols again at its next sign-in.
    ResetFactors { reason: String },
}

impl PrivilegeChange {
    fn columns(&self) -> (&'static str, Option<Role>, Option<&str>) {
        match self {
            PrivilegeChange::Role(r) => ("role", Some(*r), None),
            PrivilegeChange::Disable { reason } => ("disable", None, Some(reason.as_str())),
            PrivilegeChange::Enable => ("enable", None, None),
            PrivilegeChange::ResetFactors { reason } => {
                ("reset_factors", None, Some(reason.as_str()))
            }
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = privilege_requests)]
pub struct PrivilegeRequest {
    pub id: String,
    pub account_id: String,
    pub change: String,
    pub role: Option<Role>,
    pub reason: Option<String>,
    pub requested_by: Option<String>,
    pub requested_at: i64,
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

impl PrivilegeRequest {
    pub fn change(&self) -> Option<PrivilegeChange> {
        match self.change.as_str() {
            "role" => self.role.map(PrivilegeChange::Role),
            "disable" => Some(PrivilegeChange::Disable {
                reason: self.reason.clone().unwrap_or_default(),
            }),
            "enable" => Some(PrivilegeChange::Enable),
            "reset_factors" => Some(PrivilegeChange::ResetFactors {
                reason: self.reason.clone().unwrap_or_default(),
            }),
            _ => None,
        }
    }
}

/// Who asked for each pending change of privilege of `account_id` (`None`: the host's command line).
pub fn pending_privilege_requesters(
    conn: &mut DbConn,
    account_id: &str,
) -> QueryResult<Vec<Option<String>>> {
    privilege_requests::table
        .filter(privilege_requests::account_id.eq(account_id))
        .filter(privilege_requests::state.eq("pending"))
        .select(privilege_requests::requested_by)
        .load(conn)
}

pub fn insert_privilege_request(
    conn: &mut DbConn,
    id: &str,
    account_id: &str,
    change: &PrivilegeChange,
    requested_by: Option<&str>,
    now: i64,
) -> QueryResult<()> {
    // A newer request for the same account replaces an older pending one (the caller refuses one that would replace
    // another administrator's).
    diesel::update(
        privilege_requests::table
            .filter(privilege_requests::account_id.eq(account_id))
            .filter(privilege_requests::state.eq("pending")),
    )
    .set((
        privilege_requests::state.eq("withdrawn"),
        privilege_requests::decided_at.eq(now),
        privilege_requests::decided_by.eq(requested_by),
    ))
    .execute(conn)?;
    let (kind, role, reason) = change.columns();
    diesel::insert_into(privilege_requests::table)
        .values((
            privilege_requests::id.eq(id),
            privilege_requests::account_id.eq(account_id),
            privilege_requests::change.eq(kind),
            privilege_requests::role.eq(role),
            privilege_requests::reason.eq(reason),
            privilege_requests::requested_by.eq(requested_by),
            privilege_requests::requested_at.eq(now),
            privilege_requests::state.eq("pending"),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn find_privilege_request(conn: &mut DbConn, id: &str) -> QueryResult<PrivilegeRequest> {
    privilege_requests::table
        .find(id)
        .select(PrivilegeRequest::as_select())
        .first(conn)
}

/// Decides a pending request; the count says whether it was still pending.
pub fn decide_privilege_request(
    conn: &mut DbConn,
    id: &str,
    state: &str,
    by: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(
        privilege_requests::table
            .find(id)
            .filter(privilege_requests::state.eq("pending")),
    )
    .set((
        privilege_requests::state.eq(state),
        privilege_requests::decided_by.eq(by),
        privilege_requests::decided_at.eq(now),
    ))
    .execute(conn)
}

#[derive(Debug, Clone, Serialize)]
pub struct PrivilegeRequestRow {
    #[serde(flatten)]
    pub request: PrivilegeRequest,
    /// What the change is, in words ("Role: Auditor", "Disable", "Enable").
    pub what: String,
    pub account_name: String,
    pub account_email: String,
    pub current_role_label: &'static str,
    pub requested_by_name: Option<String>,
    /// Whoever asked is no longer an enabled administrator: the request can only be refused.
    pub asker_lapsed: bool,
}

pub fn pending_privilege_requests(conn: &mut DbConn) -> QueryResult<Capped<PrivilegeRequestRow>> {
    let total = privilege_requests::table
        .filter(privilege_requests::state.eq("pending"))
        .count()
        .get_result(conn)?;
    let list: Vec<PrivilegeRequest> = privilege_requests::table
        .filter(privilege_requests::state.eq("pending"))
        .order(privilege_requests::requested_at.asc())
        .limit(LISTED)
        .select(PrivilegeRequest::as_select())
        .load(conn)?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let (name, email, role): (String, String, Role) = users::table
            .find(&r.account_id)
            .select((users::display_name, users::email, users::role))
            .first(conn)?;
        let asker: Option<(String, Role, bool)> = match &r.requested_by {
            Some(id) => users::table
                .find(id)
                .select((users::display_name, users::role, users::disabled))
                .first(conn)
                .optional()?,
            None => None,
        };
        let asker_lapsed = r.requested_by.is_some()
            && !asker
                .as_ref()
                .is_some_and(|(_, role, disabled)| *role == Role::Administrator && !disabled);
        let requested_by_name = asker.map(|(name, ..)| name);
        let what = match r.change() {
            Some(PrivilegeChange::Role(role)) => format!("Role: {}", role.label()),
            Some(PrivilegeChange::Disable { reason }) => format!("Disable ({reason})"),
            Some(PrivilegeChange::Enable) => "Enable".to_string(),
            Some(PrivilegeChange::ResetFactors { reason }) => {
                format!("Reset second factors ({reason})")
            }
            None => r.change.clone(),
        };
        out.push(PrivilegeRequestRow {
            what,
            current_role_label: role.label(),
            account_name: name,
            account_email: email,
            requested_by_name,
            asker_lapsed,
            request: r,
        });
    }
    Ok(Capped { rows: out, total })
}
