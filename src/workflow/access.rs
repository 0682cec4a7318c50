//! Whether an authorized user may read one submission: role, current training, NDA on file, a live
//! grant, and validated PCII — all of them, checked in that order, each refusal with its own reason.

use crate::db::DbConn;
use crate::domain::Role;
use crate::domain::Status;
use crate::error::{AppError, AppResult};
use crate::models::account::User;
use crate::models::grant;
use crate::models::submission::{self, Scope, Submission};
use crate::time::DAY;

/// Training older than this no longer counts.
pub const TRAINING_VALID_DAYS: i64 = 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAuthorizedUser,
    TrainingMissing,
    TrainingExpired,
    NdaMissing,
    NdaExpired,
    NoGrant,
    GrantExpired,
    GrantRevoked,
    NotValidated,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotAuthorizedUser => "Only authorized users may read PCII under a grant.",
            Refusal::TrainingMissing => {
                "Your PCII training is not on record. Complete it and ask an administrator to record it."
            }
            Refusal::TrainingExpired => {
                "Your PCII training expired (it is valid for 365 days). Complete it again to regain access."
            }
            Refusal::NdaMissing => "No non-disclosure agreement is on file for your account.",
            Refusal::NdaExpired => {
                "Your non-disclosure agreement on file has expired. Ask an administrator to record the new one."
            }
            Refusal::NoGrant => "You hold no grant for this submission. Ask a PCII officer.",
            Refusal::GrantExpired => "Your grant for this submission expired. Ask a PCII officer to renew it.",
            Refusal::GrantRevoked => "Your grant for this submission was revoked.",
            Refusal::NotValidated => "This submission is not validated PCII; authorized users read only validated PCII.",
        }
    }

    /// Short form for the audit log.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotAuthorizedUser => "not an authorized user",
            Refusal::TrainingMissing => "training not on record",
            Refusal::TrainingExpired => "training expired",
            Refusal::NdaMissing => "no NDA on file",
            Refusal::NdaExpired => "NDA expired",
            Refusal::NoGrant => "no grant",
            Refusal::GrantExpired => "grant expired",
            Refusal::GrantRevoked => "grant revoked",
            Refusal::NotValidated => "not validated",
        }
    }
}

/// Checks the person first (so an expired training is reported whatever the grant), then the grant,
/// then the submission's status.
pub fn check_analyst(
    conn: &mut DbConn,
    user: &User,
    sub: &Submission,
    now: i64,
) -> AppResult<Result<(), Refusal>> {
    if user.role() != Role::AuthorizedUser || user.disabled {
        return Ok(Err(Refusal::NotAuthorizedUser));
    }
    match user.training_completed_at {
        None => return Ok(Err(Refusal::TrainingMissing)),
        Some(t) if now - t > TRAINING_VALID_DAYS * DAY => return Ok(Err(Refusal::TrainingExpired)),
        Some(_) => {}
    }
    if user.nda_signed_at.is_none() {
        return Ok(Err(Refusal::NdaMissing));
    }
    if user.nda_expires_at.is_some_and(|e| e <= now) {
        return Ok(Err(Refusal::NdaExpired));
    }
    let held = grant::terms_held(conn, &user.id, &sub.id)?;
    if held.is_empty() {
        return Ok(Err(Refusal::NoGrant));
    }
    if !held
        .iter()
        .any(|g| g.revoked_at.is_none() && g.expires_at > now)
    {
        let refusal = if held
            .iter()
            .any(|g| g.revoked_at.is_none() && g.expires_at <= now)
        {
            Refusal::GrantExpired
        } else {
            Refusal::GrantRevoked
        };
        return Ok(Err(refusal));
    }
    if sub.status() != Status::Validated {
        return Ok(Err(Refusal::NotValidated));
    }
    Ok(Ok(()))
}

/// Finds a submission for an authorized user: 404 if it does not exist, 410 once its content is
/// destroyed; otherwise the access check's verdict.
pub fn find_for_analyst(
    conn: &mut DbConn,
    user: &User,
    id: &str,
    now: i64,
) -> AppResult<Result<Submission, Refusal>> {
    // What the Program Office sees: every submission but a draft, which is not found.
    let sub = submission::find(conn, id, Scope::ProgramOffice)?;
    if sub.status().content_destroyed() {
        return Err(AppError::Gone(
            "The content of this submission was destroyed.".into(),
        ));
    }
    Ok(check_analyst(conn, user, &sub, now)?.map(|()| sub))
}
