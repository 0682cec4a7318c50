//! Officers' proposals to merge a duplicate organisation into another (`merge_proposals`): open until an
//! organisation administrator of each company has accepted (then merged), or either refused, or an officer
//! withdrew it. See `auth::membership` for who may do what.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{merge_proposals, users};
use crate::db::DbConn;
use crate::models::account::organisation_name;

pub const OPEN: &str = "open";
pub const MERGED: &str = "merged";
pub const REFUSED: &str = "refused";
pub const WITHDRAWN: &str = "withdrawn";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = merge_proposals)]
pub struct MergeProposal {
    pub id: String,
    pub duplicate_id: String,
    pub target_id: String,
    pub reason: String,
    pub proposed_by: String,
    pub proposed_at: i64,
    pub duplicate_accepted_by: Option<String>,
    pub duplicate_accepted_at: Option<i64>,
    pub target_accepted_by: Option<String>,
    pub target_accepted_at: Option<i64>,
    pub state: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<i64>,
}

/// Which company of a proposal an organisation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The duplicate: its people and submissions would move.
    Duplicate,
    /// The target: it would receive them.
    Target,
}

impl MergeProposal {
    /// The side `organisation_id` is on, if it is a party at all.
    pub fn side_of(&self, organisation_id: &str) -> Option<Side> {
        if self.duplicate_id == organisation_id {
            Some(Side::Duplicate)
        } else if self.target_id == organisation_id {
            Some(Side::Target)
        } else {
            None
        }
    }

    pub fn is_open(&self) -> bool {
        self.state == OPEN
    }
}

pub fn insert(
    conn: &mut DbConn,
    duplicate_id: &str,
    target_id: &str,
    reason: &str,
    proposed_by: &str,
    now: i64,
) -> QueryResult<String> {
    let id = crate::db::new_id();
    diesel::insert_into(merge_proposals::table)
        .values((
            merge_proposals::id.eq(&id),
            merge_proposals::duplicate_id.eq(duplicate_id),
            merge_proposals::target_id.eq(target_id),
            merge_proposals::reason.eq(reason),
            merge_proposals::proposed_by.eq(proposed_by),
            merge_proposals::proposed_at.eq(now),
            merge_proposals::state.eq(OPEN),
        ))
        .execute(conn)?;
    Ok(id)
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<MergeProposal>> {
    merge_proposals::table
        .find(id)
        .select(MergeProposal::as_select())
        .first(conn)
        .optional()
}

/// The open proposal that involves either organisation as its duplicate, or the two of them either way round.
pub fn open_conflicting(
    conn: &mut DbConn,
    duplicate_id: &str,
    target_id: &str,
) -> QueryResult<Option<MergeProposal>> {
    merge_proposals::table
        .filter(merge_proposals::state.eq(OPEN))
        .filter(
            merge_proposals::duplicate_id
                .eq(duplicate_id)
                .or(merge_proposals::duplicate_id
                    .eq(target_id)
                    .and(merge_proposals::target_id.eq(duplicate_id))),
        )
        .select(MergeProposal::as_select())
        .first(conn)
        .optional()
}

/// The open proposals an organisation is a party to, oldest first.
pub fn open_for_organisation(
    conn: &mut DbConn,
    organisation_id: &str,
) -> QueryResult<Vec<MergeProposal>> {
    merge_proposals::table
        .filter(merge_proposals::state.eq(OPEN))
        .filter(
            merge_proposals::duplicate_id
                .eq(organisation_id)
                .or(merge_proposals::target_id.eq(organisation_id)),
        )
        .order((
            merge_proposals::proposed_at.asc(),
            merge_proposals::id.asc(),
        ))
        .select(MergeProposal::as_select())
        .load(conn)
}

/// Records one side's acceptance of an open proposal that side has not accepted yet. 0: not open, or already
/// accepted by that side.
pub fn accept(conn: &mut DbConn, id: &str, side: Side, by: &str, now: i64) -> QueryResult<usize> {
    let open = merge_proposals::table
        .find(id)
        .filter(merge_proposals::state.eq(OPEN));
    match side {
        Side::Duplicate => {
            diesel::update(open.filter(merge_proposals::duplicate_accepted_by.is_null()))
                .set((
                    merge_proposals::duplicate_accepted_by.eq(by),
                    merge_proposals::duplicate_accepted_at.eq(now),
                ))
                .execute(conn)
        }
        Side::Target => diesel::update(open.filter(merge_proposals::target_accepted_by.is_null()))
            .set((
                merge_proposals::target_accepted_by.eq(by),
                merge_proposals::target_accepted_at.eq(now),
            ))
            .execute(conn),
    }
}

/// Forgets one side's acceptance of an open proposal (given by someone who has since lost the authority to give it):
/// that side answers again.
pub fn forget_acceptance(conn: &mut DbConn, id: &str, side: Side) -> QueryResult<usize> {
    let open = merge_proposals::table
        .find(id)
        .filter(merge_proposals::state.eq(OPEN));
    match side {
        Side::Duplicate => diesel::update(open)
            .set((
                merge_proposals::duplicate_accepted_by.eq(None::<String>),
                merge_proposals::duplicate_accepted_at.eq(None::<i64>),
            ))
            .execute(conn),
        Side::Target => diesel::update(open)
            .set((
                merge_proposals::target_accepted_by.eq(None::<String>),
                merge_proposals::target_accepted_at.eq(None::<i64>),
            ))
            .execute(conn),
    }
}

/// Closes an open proposal (`MERGED`, `REFUSED` or `WITHDRAWN`). 0: it was not open.
pub fn close(conn: &mut DbConn, id: &str, state: &str, by: &str, now: i64) -> QueryResult<usize> {
    diesel::update(
        merge_proposals::table
            .find(id)
            .filter(merge_proposals::state.eq(OPEN)),
    )
    .set((
        merge_proposals::state.eq(state),
        merge_proposals::closed_by.eq(by),
        merge_proposals::closed_at.eq(now),
    ))
    .execute(conn)
}

/// An open proposal as a page shows it, with names.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalRow {
    pub id: String,
    pub duplicate_id: String,
    pub duplicate_name: String,
    pub target_id: String,
    pub target_name: String,
    pub reason: String,
    pub proposed_by_name: String,
    pub proposed_at: i64,
    pub duplicate_accepted_by_name: Option<String>,
    pub duplicate_accepted_at: Option<i64>,
    pub target_accepted_by_name: Option<String>,
    pub target_accepted_at: Option<i64>,
    /// Seen from the organisation whose page it is: whether it is the duplicate.
    pub is_duplicate: bool,
}

fn user_name(conn: &mut DbConn, id: Option<&str>) -> QueryResult<Option<String>> {
    match id {
        Some(id) => users::table
            .find(id)
            .select(users::display_name)
            .first(conn)
            .optional(),
        None => Ok(None),
    }
}

/// The open proposals an organisation is a party to, with the names a page shows.
pub fn open_rows(conn: &mut DbConn, organisation_id: &str) -> QueryResult<Vec<ProposalRow>> {
    let mut rows = Vec::new();
    for p in open_for_organisation(conn, organisation_id)? {
        rows.push(ProposalRow {
            duplicate_name: organisation_name(conn, &p.duplicate_id)?,
            target_name: organisation_name(conn, &p.target_id)?,
            proposed_by_name: user_name(conn, Some(&p.proposed_by))?.unwrap_or_default(),
            duplicate_accepted_by_name: user_name(conn, p.duplicate_accepted_by.as_deref())?,
            target_accepted_by_name: user_name(conn, p.target_accepted_by.as_deref())?,
            is_duplicate: p.duplicate_id == organisation_id,
            id: p.id,
            duplicate_id: p.duplicate_id,
            target_id: p.target_id,
            reason: p.reason,
            proposed_at: p.proposed_at,
            duplicate_accepted_at: p.duplicate_accepted_at,
            target_accepted_at: p.target_accepted_at,
        });
    }
    Ok(rows)
}
