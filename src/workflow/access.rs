//! Content access: the one place that decides whether a person may read a submission's protected
//! content, and the only way to it. [`admit`] decides — submitters read their organisation's
//! submissions, officers every sent one, authorized users validated PCII under a live grant while their
//! training is current and their NDA on file — and records a refusal in the audit log, once. What it
//! returns, an [`Admitted`], is what every function that decrypts a submission's content asks for
//! ([`read_content`], [`open_attachment`], [`export_package`]); each of them records the access before
//! the content leaves. A refusal never tells someone who may not read a submission whether it exists
//! or was destroyed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::log::{Actor, Event, Outcome};
use crate::db::DbConn;
use crate::domain::{Role, Status, TRAINING_VALID_DAYS};
use crate::error::{AppError, AppResult};
use crate::models::account::{self, User};
use crate::models::attachment::{self, Attachment};
use crate::models::grant;
use crate::models::submission::{self, Scope, Submission};
use crate::services::Services;
use crate::time::DAY;
use crate::workflow::content::Content;
use crate::workflow::documents::{self, PlaintextStream};
use crate::workflow::lifecycle;
use crate::workflow::package::{self, Package};
use crate::workflow::sealed_text::Texts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Outside the asker's scope, or no such submission: the same answer, 404.
    NotFound,
    /// A submitter's account attached to no organisation.
    NoOrganisation,
    /// Auditors and administrators never read content.
    NoContentRole,
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
            Refusal::NotFound => "Not found.",
            Refusal::NoOrganisation => "Your account belongs to no organisation.",
            Refusal::NoContentRole => "Your role does not read submission content.",
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

    /// The person's standing as an officer reads it about someone else (the grant form, a grant's notice): `None`
    /// for refusals that are not about the person.
    pub fn about_person(self) -> Option<&'static str> {
        Some(match self {
            Refusal::TrainingMissing => "PCII training not on record",
            Refusal::TrainingExpired => "PCII training expired",
            Refusal::NdaMissing => "no non-disclosure agreement on file",
            Refusal::NdaExpired => "non-disclosure agreement expired",
            _ => return None,
        })
    }

    /// How the web answers it: out of scope is indistinguishable from nonexistent.
    pub fn into_error(self) -> AppError {
        match self {
            Refusal::NotFound => AppError::NotFound,
            other => AppError::Refused(other.message().into()),
        }
    }

    /// Short form for the audit log.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found in the asker's scope",
            Refusal::NoOrganisation => "no organisation",
            Refusal::NoContentRole => "role reads no content",
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

/// A submission `admit` let this person read. Only this module makes one, so holding it is proof that
/// the access rules were applied; the content functions below take it.
pub struct Admitted {
    submission: Submission,
    /// Who was admitted: the content functions hand out streams that ask again ([`WhileAdmitted`]).
    user: User,
}

impl Admitted {
    pub fn submission(&self) -> &Submission {
        &self.submission
    }

    /// The content is gone (returned or destroyed); only the record remains.
    pub fn content_destroyed(&self) -> bool {
        let s = &self.submission;
        lifecycle::content_destroyed(s.status())
            || s.content_blob_id.is_none() && s.status() != Status::Draft
    }

    /// The content version this reader is shown. The organisation's own members see it as last saved, a correction
    /// they are drafting included; everyone else (officers, authorized users) the version the Office last received:
    /// a defective submission's correction is the organisation's draft until it is sent, and nobody outside the
    /// organisation reads a draft. (The current one when which was received is not known: see migration 25.)
    pub fn shown_version(&self) -> Option<&str> {
        let s = &self.submission;
        if self.reads_as_organisation() {
            s.content_blob_id.as_deref()
        } else {
            s.sent_content_blob_id
                .as_deref()
                .or(s.content_blob_id.as_deref())
        }
    }

    /// Whether this reader reads as a member of the submitting organisation (its own drafts and corrections).
    pub fn reads_as_organisation(&self) -> bool {
        self.user.role() == Role::Submitter
    }

    /// Whether this reader is shown a version older than the one last saved (a correction saved and not sent).
    pub fn shown_as_sent(&self) -> bool {
        self.shown_version() != self.submission.content_blob_id.as_deref()
    }

    /// What an audit entry adds when the version read is the one received, not the one last saved.
    fn as_sent_note(&self) -> &'static str {
        if self.shown_as_sent() {
            AS_SENT
        } else {
            ""
        }
    }

    /// The attachment rows this reader is shown, from all of the submission's (`rows`) and the content version it
    /// is shown: the files as they were in the version received while a correction is pending.
    pub fn shown_attachments(
        &self,
        shown: Option<&Content>,
        rows: Vec<Attachment>,
    ) -> Vec<Attachment> {
        match shown {
            Some(version) if self.shown_as_sent() => attachments_as_of(version, rows),
            _ => rows,
        }
    }

    /// 410 once the content is gone: for the routes that exist only to hand content out.
    pub fn require_content(&self) -> AppResult<()> {
        if self.content_destroyed() {
            return Err(gone());
        }
        Ok(())
    }
}

/// The decision, without side effects: whether `user` may read submission `id` at `now`.
///
/// Submitters: any submission of their organisation, drafts included. Officers: every submission but a
/// draft. Authorized users: the person first (so an expired training is reported whatever the grant),
/// then a live grant, then validated status. Anything else, and anything out of scope, is refused; an
/// authorized user without a grant is told so whether or not the id exists or its content was destroyed.
pub fn decide(
    conn: &mut DbConn,
    user: &User,
    id: &str,
    now: i64,
) -> AppResult<Result<Submission, Refusal>> {
    // The account as it is now, not as it was when the request began: a long request (an upload trickled
    // for minutes) must not read for someone disabled, removed or moved meanwhile.
    let user = &account::find(conn, &user.id)?;
    if user.disabled {
        return Ok(Err(Refusal::NotFound));
    }
    let scope = match user.role() {
        Role::Submitter => match &user.organisation_id {
            Some(org) => Scope::Organisation(org),
            None => return Ok(Err(Refusal::NoOrganisation)),
        },
        Role::Officer => Scope::Sent,
        Role::AuthorizedUser => return decide_for_authorized_user(conn, user, id, now),
        Role::Auditor | Role::Administrator => return Ok(Err(Refusal::NoContentRole)),
    };
    Ok(submission::find_in_scope(conn, id, scope)?.ok_or(Refusal::NotFound))
}

/// What keeps an authorized user from reading any PCII now, whatever it holds (PCII.md: training completed and
/// current, a non-disclosure agreement on file and current), from the account's records of them: `None` when
/// nothing does.
pub fn standing(
    training_completed_at: Option<i64>,
    nda_signed_at: Option<i64>,
    nda_expires_at: Option<i64>,
    now: i64,
) -> Option<Refusal> {
    match training_completed_at {
        None => return Some(Refusal::TrainingMissing),
        Some(t) if now - t > TRAINING_VALID_DAYS * DAY => return Some(Refusal::TrainingExpired),
        Some(_) => {}
    }
    if nda_signed_at.is_none() {
        return Some(Refusal::NdaMissing);
    }
    if nda_expires_at.is_some_and(|e| e <= now) {
        return Some(Refusal::NdaExpired);
    }
    None
}

fn decide_for_authorized_user(
    conn: &mut DbConn,
    user: &User,
    id: &str,
    now: i64,
) -> AppResult<Result<Submission, Refusal>> {
    if let Some(refusal) = standing(
        user.training_completed_at,
        user.nda_signed_at,
        user.nda_expires_at,
        now,
    ) {
        return Ok(Err(refusal));
    }
    // Grants exist only for submissions that exist: no grant answers for a nonexistent id too.
    let held = grant::terms_held(conn, &user.id, id)?;
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
    let sub = submission::find(conn, id, Scope::Sent)?;
    if !lifecycle::releasable(sub.status()) {
        return Ok(Err(Refusal::NotValidated));
    }
    Ok(Ok(sub))
}

/// Inside an act's transaction: whether the account that began the request is still what it was then —
/// enabled, in the same role and the same organisation. Writes that follow a long request (an upload trickled
/// for minutes) must not commit for someone disabled, removed or moved meanwhile.
pub(crate) fn still_as_begun(
    tx: &mut DbConn,
    user_id: &str,
    role: Role,
    organisation_id: Option<&str>,
) -> AppResult<()> {
    let now = account::find(tx, user_id)?;
    if now.disabled || now.role() != role || now.organisation_id.as_deref() != organisation_id {
        return Err(AppError::Refused(
            "Your account changed while this request was under way, and nothing was saved. Sign in again."
                .into(),
        ));
    }
    Ok(())
}

/// The session a long request came from (an upload, whose body may take most of an hour) still stands as it commits
/// ([`crate::auth::sessions::still_open`]): one ended meanwhile (signed out, ended from another session, its password
/// or factors reset, past its lifetime) commits nothing, as a download from it is cut.
pub(crate) fn session_still_open(
    tx: &mut DbConn,
    actor: &Actor,
    now: i64,
    absolute_secs: i64,
) -> AppResult<()> {
    if !crate::auth::sessions::still_open(tx, actor.session.as_deref(), now, absolute_secs)? {
        return Err(AppError::Refused(
            "Your session ended while this was being sent, and nothing was saved. Sign in again."
                .into(),
        ));
    }
    Ok(())
}

/// [`still_as_begun`] for the account as the request's guard read it.
pub(crate) fn still_as_read(tx: &mut DbConn, user: &User) -> AppResult<()> {
    still_as_begun(tx, &user.id, user.role(), user.organisation_id.as_deref())
}

/// Decides, and on refusal records it (`access.refused`, with the reason's code) and answers with it.
pub async fn admit(
    services: &Services,
    user: &User,
    actor: &Actor,
    id: &str,
) -> AppResult<Admitted> {
    let (u, sid) = (user.clone(), id.to_string());
    let now = services.clock.now();
    let verdict = services.db.run(move |c| decide(c, &u, &sid, now)).await?;
    match verdict {
        Ok(submission) => Ok(Admitted {
            submission,
            user: user.clone(),
        }),
        Err(refusal) => {
            let (audit, actor) = (services.audit.clone(), actor.clone());
            let event = Event::new("access.refused", Outcome::Refused)
                .object("submission", id.to_string())
                .reason(refusal.code());
            services
                .db
                .run(move |c| audit.record(c, &actor, event))
                .await?;
            Err(refusal.into_error())
        }
    }
}

/// Records an open of protected content before it is sent: no content leaves without its audit entry. Whether the
/// reader may read it is decided again in the same transaction: a grant revoked, an account changed or the content
/// destroyed since [`admit`] (while the content was read and decrypted) wins, and nothing is sent.
pub(in crate::workflow) async fn record_access(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    action: &'static str,
    detail: Option<String>,
) -> AppResult<()> {
    record_access_and(services, admitted, actor, action, detail, |_| Ok(())).await
}

/// [`record_access`], with `also` written in the same transaction when the read is allowed (a thread's read mark:
/// nothing is marked read that the reader was refused).
pub(in crate::workflow) async fn record_access_and(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    action: &'static str,
    detail: Option<String>,
    also: impl FnOnce(&mut crate::db::DbConn) -> AppResult<()> + Send + 'static,
) -> AppResult<()> {
    let sub = &admitted.submission;
    let mut event = Event::new(action, Outcome::Success)
        .object("submission", sub.id.clone())
        .tracking(sub.tracking_number.clone());
    if let Some(d) = detail {
        event = event.reason(d);
    }
    let (audit, actor) = (services.audit.clone(), actor.clone());
    let (user, sid) = (admitted.user.clone(), sub.id.clone());
    let now = services.clock.now();
    services
        .db
        .run(move |c| {
            audit.fact_if(c, &actor, |tx| match decide(tx, &user, &sid, now)? {
                Ok(now_sub) if lifecycle::content_destroyed(now_sub.status()) => {
                    Ok((Err(gone()), None))
                }
                Ok(_) => {
                    also(tx)?;
                    Ok((Ok(()), Some(event)))
                }
                Err(refusal) => {
                    let refused = Event::new("access.refused", Outcome::Refused)
                        .object("submission", sid.clone())
                        .reason(refusal.code());
                    Ok((Err(refusal.into_error()), Some(refused)))
                }
            })
        })
        .await?
}

fn gone() -> AppError {
    AppError::Gone("The content of this submission was destroyed; only its record remains.".into())
}

/// What an audit entry of a read adds when the version read is the one the Office received, not the one last saved.
const AS_SENT: &str = " (as last sent)";

/// Why content is read, for the audit entry.
#[derive(Debug, Clone, Copy)]
pub enum Reading {
    /// Shown on a page; the detail names which (`None` for the submission's own page).
    Page(Option<&'static str>),
    /// The submitter's own form shown again after a save it must correct. Recorded too: the page shows what is
    /// stored beside what was just typed, and a request can be made to fail on purpose to see it.
    FormAgain,
}

impl Reading {
    /// What the `content.viewed` entry says of it.
    fn detail(&self) -> Option<&'static str> {
        match self {
            Reading::Page(detail) => *detail,
            Reading::FormAgain => Some("form shown again"),
        }
    }

    /// What the entry says of it when the version read is the one received, not the one last saved.
    fn detail_as_sent(&self) -> String {
        format!("{}{AS_SENT}", self.detail().unwrap_or("page"))
    }
}

/// The decrypted content document this reader is shown ([`Admitted::shown_version`]), recorded as viewed. `None`
/// once the content was destroyed (the record is still shown), or for a draft nothing was saved in yet.
pub async fn read_content(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    reading: Reading,
) -> AppResult<Option<Content>> {
    let Some(blob_id) = admitted.shown_version() else {
        return Ok(None);
    };
    if admitted.content_destroyed() {
        return Ok(None);
    }
    let detail = if admitted.shown_as_sent() {
        Some(reading.detail_as_sent())
    } else {
        reading.detail().map(str::to_string)
    };
    read_version(services, admitted, actor, blob_id, detail)
        .await
        .map(Some)
}

/// One content version of an admitted submission, decrypted and recorded as viewed with `detail`.
async fn read_version(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    blob_id: &str,
    detail: Option<String>,
) -> AppResult<Content> {
    let content = documents::read_content(services, blob_id).await?;
    record_access(services, admitted, actor, "content.viewed", detail).await?;
    Ok(content)
}

/// The content document as the Office last received it, recorded as viewed, and whether the organisation has
/// saved a correction since that it has not sent (a defective submission's draft answer): the receipt shows what
/// was sent, not the draft. `None` as for [`read_content`].
pub async fn read_sent_content(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    reading: Reading,
) -> AppResult<Option<(Content, bool)>> {
    let sub = &admitted.submission;
    // The sent version when it is not the current one (a correction pending), else the current one as usual.
    let pending = match (&sub.content_blob_id, &sub.sent_content_blob_id) {
        (Some(current), Some(sent)) if current != sent && !admitted.content_destroyed() => sent,
        _ => {
            return Ok(read_content(services, admitted, actor, reading)
                .await?
                .map(|c| (c, false)))
        }
    };
    let content = read_version(
        services,
        admitted,
        actor,
        pending,
        Some(reading.detail_as_sent()),
    )
    .await?;
    Ok(Some((content, true)))
}

/// A submission's attachment rows as a content version holds them: its files as they were (a replacement saved
/// after it undone), the files replaced before it kept on record, and files added after it left out.
pub fn attachments_as_of(version: &Content, rows: Vec<Attachment>) -> Vec<Attachment> {
    let mut kept: std::collections::HashSet<String> = rows
        .iter()
        .filter(|a| version.attachments.contains_key(&a.id))
        .map(|a| a.id.clone())
        .collect();
    let in_version = kept.clone();
    // Back along the replacements from the version's files (bounded: each round keeps one more row or stops).
    for _ in 0..rows.len() {
        let before = kept.len();
        for a in &rows {
            if a.replaced_by.as_deref().is_some_and(|r| kept.contains(r)) {
                kept.insert(a.id.clone());
            }
        }
        if kept.len() == before {
            break;
        }
    }
    rows.into_iter()
        .filter(|a| kept.contains(&a.id))
        .map(|mut a| {
            // Replaced by a file the version does not hold: replaced after it.
            if a.replaced_by
                .as_deref()
                .is_some_and(|r| !in_version.contains(r))
            {
                a.replaced_by = None;
                a.replaced_at = None;
            }
            a
        })
        .collect()
}

/// The officers' sealed texts of an admitted submission — reasons, notices, grant and dissemination details —
/// for the pages that show them to the people admitted to it (its submitters, officers).
pub async fn texts(services: &Services, admitted: &Admitted) -> AppResult<Texts> {
    Texts::load(services, vec![admitted.submission.id.clone()]).await
}

/// The submission's attachments (metadata and digests, no content).
pub async fn attachments(services: &Services, admitted: &Admitted) -> AppResult<Vec<Attachment>> {
    let sid = admitted.submission.id.clone();
    services
        .db
        .run(move |c| Ok(attachment::attachments_of(c, &sid)?))
        .await
}

/// Who affirmed the express statement and made the certifications when the admitted submission (or its cure) was
/// sent: the person its receipt names (`None` for one sent before this was kept).
pub async fn affirmed_by(
    services: &Services,
    admitted: &Admitted,
) -> AppResult<Option<crate::models::account::User>> {
    let Some(id) = admitted.submission.statement_affirmed_by.clone() else {
        return Ok(None);
    };
    services
        .db
        .run(move |c| Ok(crate::models::account::find_opt(c, &id)?))
        .await
}

/// A download that failed before anything was sent (a file up to 1 MiB is verified whole first; a larger one's first
/// MiB): recorded as one that fails midway is (`content.failed`, what and why), so the auditor sees every damaged
/// read, not only those found after the first MiB went out. A store that did not answer, or a fault of the portal's
/// own, is not a failure of the content, and is not recorded as one.
pub(in crate::workflow) async fn failed_before_sending(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    what: &str,
    e: AppError,
) -> AppError {
    if matches!(&e, AppError::Internal(m) if m == documents::INTEGRITY_FAILED) {
        let event = Event::new("content.failed", Outcome::Failure)
            .object("submission", admitted.submission.id.clone())
            .tracking(admitted.submission.tracking_number.clone())
            .reason(format!("{what}: integrity check failed"));
        let (audit, actor) = (services.audit.clone(), actor.clone());
        if let Err(recording) = services
            .db
            .run(move |c| audit.record(c, &actor, event))
            .await
        {
            tracing::error!(error = %recording, "recording a failed download failed");
        }
    }
    e
}

/// One attachment as a decrypting stream, with its original name and length; recorded as downloaded.
pub struct OpenedFile {
    pub stream: PlaintextStream,
    /// The name to save it under, marked ([`super::content::marked_file_name`]).
    pub name: String,
    pub len: u64,
}

pub async fn open_attachment(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    attachment_id: &str,
) -> AppResult<OpenedFile> {
    admitted.require_content()?;
    let sub = &admitted.submission;
    // An id the submission never had is a 404 before any document is decrypted.
    let rows = attachments(services, admitted).await?;
    if !rows.iter().any(|a| a.id == attachment_id) {
        return Err(AppError::NotFound);
    }
    let content = match admitted.shown_version() {
        Some(b) => Some(documents::read_content(services, b).await?),
        None => None,
    };
    // A file added by a correction not yet sent is not this reader's to see (a 404, as for any other id).
    let attachment = admitted
        .shown_attachments(content.as_ref(), rows)
        .into_iter()
        .find(|a| a.id == attachment_id)
        .ok_or(AppError::NotFound)?;
    let blob_id = attachment.blob_id.clone().ok_or_else(|| {
        AppError::Gone("This file was destroyed; only its digest remains.".into())
    })?;
    let name = content
        .as_ref()
        .and_then(|c| c.attachments.get(&attachment.id))
        .map(|i| i.name.clone())
        .unwrap_or_else(|| format!("file-{}", attachment.position));
    let slot = documents::download_slot(services, actor)?;
    let what = format!(
        "attachment {}{}",
        attachment.position,
        admitted.as_sent_note()
    );
    let (stream, len) = match documents::open_blob(services, &blob_id).await {
        Ok(opened) => opened,
        Err(e) => return Err(failed_before_sending(services, admitted, actor, &what, e).await),
    };
    let stream = WhileAdmitted::new(
        services,
        admitted,
        actor,
        what.clone(),
        crate::slots::HeldBody::new(stream, slot),
    );
    record_access(services, admitted, actor, "content.downloaded", Some(what)).await?;
    Ok(OpenedFile {
        stream: Box::pin(stream),
        name: super::content::marked_file_name(sub.status(), sub.tracking_number.as_deref(), &name),
        len,
    })
}

/// A marked zip package of the submission for the person admitted (`purpose` "export" or "return"), decrypted as it
/// streams; recorded as exported before it does. The message thread goes in only for its two sides (the
/// organisation and the Program Office), never for an authorized user reading under a grant.
pub async fn export_package(
    services: &Services,
    admitted: &Admitted,
    actor: &Actor,
    purpose: &str,
) -> AppResult<Package> {
    // The reader is the person admitted, never one named beside it.
    let reader = &admitted.user;
    admitted.require_content()?;
    let sub = &admitted.submission;
    let blob_id = admitted.shown_version().ok_or_else(gone)?;
    let content = documents::read_content(services, blob_id).await?;
    let thread = if crate::workflow::messages::reads_thread(reader) {
        crate::workflow::messages::for_package(services, admitted).await?
    } else {
        None
    };
    let slot = documents::download_slot(services, actor)?;
    let mut package = package::build(
        services,
        slot,
        sub,
        &content,
        admitted.shown_as_sent(),
        thread,
        purpose,
        &reader.display_name,
    )
    .await?;
    package.body = Box::pin(WhileAdmitted::new(
        services,
        admitted,
        actor,
        format!("{purpose} package{}", admitted.as_sent_note()),
        package.body,
    ));
    record_access(
        services,
        admitted,
        actor,
        "content.exported",
        Some(format!("{purpose} package{}", admitted.as_sent_note())),
    )
    .await?;
    Ok(package)
}

/// A stream of a submission's protected content that keeps asking whether its reader may still read it: every
/// `access_recheck_seconds` [`decide`] runs again, and no more bytes go out until it has answered. Once the answer
/// is no (a grant revoked or expired, training or NDA lapsed, the account disabled or moved, the submission out of
/// reach, the session it came from ended) or the content was destroyed meanwhile, the stream fails: the response declared its length, so the
/// client sees the download cut off. The cut is recorded (`content.cut`, with the reason's code). When the question
/// cannot be answered (the database unreachable) the stream fails too, unrecorded: access is never assumed.
pub struct WhileAdmitted<R> {
    inner: R,
    asker: Arc<Asker>,
    every: Duration,
    next: tokio::time::Instant,
    asking: Option<futures::future::BoxFuture<'static, Result<(), String>>>,
    ended: Option<String>,
}

/// What asking again needs, owned: the stream outlives the request's borrows.
struct Asker {
    db: crate::db::Db,
    audit: crate::audit::log::AuditLog,
    clock: crate::clock::Clock,
    user: User,
    actor: Actor,
    /// The session's timeouts (idle, absolute; seconds): the stream ends with the session it came from.
    session_timeouts: (i64, i64),
    submission_id: String,
    tracking_number: Option<String>,
    what: String,
}

impl<R> WhileAdmitted<R> {
    pub fn new(
        services: &Services,
        admitted: &Admitted,
        actor: &Actor,
        what: String,
        inner: R,
    ) -> WhileAdmitted<R> {
        let every = Duration::from_secs(services.settings.access_recheck_seconds);
        WhileAdmitted {
            inner,
            asker: Arc::new(Asker {
                db: services.db.clone(),
                audit: services.audit.clone(),
                clock: services.clock.clone(),
                user: admitted.user.clone(),
                actor: actor.clone(),
                session_timeouts: services.settings.session_timeouts(),
                submission_id: admitted.submission.id.clone(),
                tracking_number: admitted.submission.tracking_number.clone(),
                what,
            }),
            every,
            // Access was decided just now, when the request was admitted.
            next: tokio::time::Instant::now() + every,
            asking: None,
            ended: None,
        }
    }
}

impl Asker {
    /// Records that the content being sent failed midway (`content.failed`: what, why).
    async fn record_failure(self: Arc<Self>, why: &'static str) {
        let event = Event::new("content.failed", Outcome::Failure)
            .object("submission", self.submission_id.clone())
            .tracking(self.tracking_number.clone())
            .reason(format!("{}: {why}", self.what));
        let asker = self.clone();
        let recorded = self
            .db
            .run(move |c| asker.audit.record(c, &asker.actor, event))
            .await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, "recording a failed download failed");
        }
    }

    /// `Ok` while the reader is still admitted and the content is there; otherwise why not (recorded).
    async fn still_admitted(self: Arc<Self>) -> Result<(), String> {
        let now = self.clock.now();
        let asker = self.clone();
        let verdict = self
            .db
            .run(move |c| {
                // A stream from a session that has ended since (signed out, ended from another, factors reset,
                // password changed, past its lifetime) ends with it; a stream with no session (the CLI) has none.
                let session_ended = !crate::auth::sessions::still_streaming(
                    c,
                    asker.actor.session.as_deref(),
                    now,
                    asker.session_timeouts,
                )?;
                let reason = match decide(c, &asker.user, &asker.submission_id, now)? {
                    Ok(_) if session_ended => "session ended",
                    Ok(sub) => {
                        let admitted = Admitted {
                            submission: sub,
                            user: asker.user.clone(),
                        };
                        if !admitted.content_destroyed() {
                            return Ok(None);
                        }
                        "content destroyed"
                    }
                    Err(refusal) => refusal.code(),
                };
                let event = Event::new("content.cut", Outcome::Refused)
                    .object("submission", asker.submission_id.clone())
                    .tracking(asker.tracking_number.clone())
                    .reason(format!("{}: {reason}", asker.what));
                asker.audit.record(c, &asker.actor, event)?;
                Ok(Some(reason))
            })
            .await;
        match verdict {
            Ok(None) => Ok(()),
            Ok(Some(reason)) => Err(format!("access to the submission ended ({reason})")),
            Err(e) => {
                tracing::error!(error = %e, "could not decide again whether a download may go on; it is cut off");
                Err("whether access still holds could not be decided".into())
            }
        }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WhileAdmitted<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        let ended =
            |why: &str| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_string());
        if let Some(why) = &this.ended {
            return Poll::Ready(Err(ended(why)));
        }
        if this.asking.is_none() && tokio::time::Instant::now() >= this.next {
            this.asking = Some(Box::pin(this.asker.clone().still_admitted()));
        }
        if let Some(asking) = this.asking.as_mut() {
            match asking.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {
                    this.asking = None;
                    this.next = tokio::time::Instant::now() + this.every;
                }
                Poll::Ready(Err(why)) => {
                    this.asking = None;
                    let e = ended(&why);
                    this.ended = Some(why);
                    return Poll::Ready(Err(e));
                }
            }
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => {
                // The download fails (it ends short of its declared length); the auditor sees that it did, and
                // why: a ciphertext that failed its integrity check is evidence of tampering.
                let why = if e.kind() == std::io::ErrorKind::InvalidData {
                    "integrity check failed"
                } else {
                    "reading or decrypting it failed"
                };
                this.ended = Some(format!("the download failed ({why})"));
                let asker = this.asker.clone();
                tokio::spawn(async move { asker.record_failure(why).await });
                Poll::Ready(Err(e))
            }
            other => other,
        }
    }
}
