//! Submitters: the submission form (new, draft, cure), one submission's page, its files, its receipt,
//! withdrawal and the return-or-destroy choice. Every lookup is scoped to the submitter's organisation:
//! another organisation's ids answer 404 like ids that do not exist.

use rocket::form::FromForm;
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder};
use rocket::{Data, Either, Request, Response};
use serde::Serialize;

use crate::domain::Disposition;
use crate::domain::Status as LifeStatus;
use crate::error::{AppError, AppResult};
use crate::models::account::User;
use crate::models::sectors::SECTORS;
use crate::models::submission;
use crate::services::Services;
use crate::web::downloads::{Download, ZipDownload};
use crate::web::forms::{summary, CsrfForm, SummaryLine, TokenCheck};
use crate::web::guards::{Ctx, FreshFactor, SubmitterUser};
use crate::web::multipart::{open_form, FileTooLarge, Limits, ReadRefusal};
use crate::web::pages::{human_size, Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::{
    content_view, destruction_view, file_views, open_events, open_notices, submission_view,
    FileView, SubmissionView,
};
use crate::workflow::access::{self, Admitted, Reading};
use crate::workflow::content::{
    check_answers, form_order, visible, Content, FieldErrors, FormFields, CERTIFICATIONS,
    EXPRESS_STATEMENT, STATEMENT_VERSION,
};
use crate::workflow::intake::{
    self, FileSlot, Intent, Request as SubmitterRequest, SaveRequest, SaveResult, Submitter,
};
use crate::workflow::lifecycle;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        new_form,
        create,
        detail,
        edit_form,
        update,
        check,
        send,
        download,
        receipt,
        receipt_text,
        return_package,
        withdraw,
        disposition,
        confirm_return,
        delete_draft
    ]
}

fn submitter(user: &SubmitterUser<'_>) -> AppResult<Submitter> {
    Ok(Submitter {
        user_id: user.user.id.clone(),
        organisation_id: user
            .user
            .organisation_id
            .clone()
            .ok_or_else(|| AppError::Refused("Your account belongs to no organisation.".into()))?,
    })
}

/// The submission if this submitter may read it (its organisation's); else 404, audited.
async fn load(ctx: &Ctx<'_>, user: &SubmitterUser<'_>, id: &str) -> AppResult<Admitted> {
    access::admit(ctx.state, &user.user, &ctx.actor, id).await
}

fn sector_options() -> Vec<&'static str> {
    SECTORS.to_vec()
}

/// One certification the submitter affirms: the checkbox's name and its words.
#[derive(Serialize)]
struct Certification {
    name: &'static str,
    text: &'static str,
}

fn certification_view() -> Vec<Certification> {
    CERTIFICATIONS
        .iter()
        .map(|&(name, text)| Certification { name, text })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The form
// ---------------------------------------------------------------------------------------------

/// Values for the form: from the stored content, then (after an error) the posted fields over them.
#[derive(Serialize, Default)]
struct FormValues {
    sector: String,
    title: String,
    narrative: String,
    primary_name: String,
    primary_email: String,
    primary_phone: String,
    secondary_name: String,
    secondary_email: String,
    secondary_phone: String,
    follows_up: String,
    federal_requirement: String,
    federal_agency: String,
    federal_authority: String,
}

impl FormValues {
    fn of(content: &Content, sector: &str) -> FormValues {
        FormValues {
            sector: sector.into(),
            title: content.title.clone(),
            narrative: content.narrative.clone(),
            primary_name: content.primary_contact.name.clone(),
            primary_email: content.primary_contact.email.clone(),
            primary_phone: content.primary_contact.phone.clone(),
            secondary_name: content.secondary_contact.name.clone(),
            secondary_email: content.secondary_contact.email.clone(),
            secondary_phone: content.secondary_contact.phone.clone(),
            follows_up: content.follows_up.clone(),
            federal_requirement: if content.federal_requirement {
                "yes"
            } else {
                "no"
            }
            .into(),
            federal_agency: content.federal_agency.clone(),
            federal_authority: content.federal_authority.clone(),
        }
    }

    /// What was typed replaces what was stored, field by field (unknown names are ignored).
    fn overlay(mut self, posted: &crate::workflow::content::FormFields) -> FormValues {
        for (name, value) in posted.0.iter() {
            let slot = match name.as_str() {
                "sector" => &mut self.sector,
                "title" => &mut self.title,
                "narrative" => &mut self.narrative,
                "primary_name" => &mut self.primary_name,
                "primary_email" => &mut self.primary_email,
                "primary_phone" => &mut self.primary_phone,
                "secondary_name" => &mut self.secondary_name,
                "secondary_email" => &mut self.secondary_email,
                "secondary_phone" => &mut self.secondary_phone,
                "follows_up" => &mut self.follows_up,
                "federal_requirement" => &mut self.federal_requirement,
                "federal_agency" => &mut self.federal_agency,
                "federal_authority" => &mut self.federal_authority,
                _ => continue,
            };
            *slot = value.clone();
        }
        self
    }

    /// The names of the fields whose values differ between the two (ends and line endings aside, as stored).
    fn differing(&self, other: &FormValues) -> Vec<&'static str> {
        let pairs = [
            ("sector", &self.sector, &other.sector),
            ("title", &self.title, &other.title),
            ("narrative", &self.narrative, &other.narrative),
            ("primary_name", &self.primary_name, &other.primary_name),
            ("primary_email", &self.primary_email, &other.primary_email),
            ("primary_phone", &self.primary_phone, &other.primary_phone),
            (
                "secondary_name",
                &self.secondary_name,
                &other.secondary_name,
            ),
            (
                "secondary_email",
                &self.secondary_email,
                &other.secondary_email,
            ),
            (
                "secondary_phone",
                &self.secondary_phone,
                &other.secondary_phone,
            ),
            ("follows_up", &self.follows_up, &other.follows_up),
            (
                "federal_requirement",
                &self.federal_requirement,
                &other.federal_requirement,
            ),
            (
                "federal_agency",
                &self.federal_agency,
                &other.federal_agency,
            ),
            (
                "federal_authority",
                &self.federal_authority,
                &other.federal_authority,
            ),
        ];
        let same =
            |a: &str, b: &str| a.trim().replace("\r\n", "\n") == b.trim().replace("\r\n", "\n");
        pairs
            .into_iter()
            .filter(|(_, a, b)| !same(a, b))
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// The submitter's organisation, shown (not editable) on the form: a submission is always its own.
async fn organisation_of(state: &Services, who: &Submitter) -> AppResult<String> {
    let org = who.organisation_id.clone();
    state
        .db
        .run(move |c| Ok(crate::models::account::organisation_name(c, &org)?))
        .await
}

/// What the upload script checks before sending (`data-max-*` on the form): the per-file limit, and the bytes and
/// files this submission may still take.
#[derive(Serialize)]
struct UploadLimits {
    max_file_bytes: u64,
    max_total_bytes: u64,
    max_files: usize,
}

async fn upload_limits(
    state: &Services,
    who: &Submitter,
    id: Option<&str>,
) -> AppResult<UploadLimits> {
    let allowance = intake::allowance(state, who, id).await?;
    Ok(UploadLimits {
        max_file_bytes: state.settings.max_file_bytes,
        max_total_bytes: allowance.bytes,
        max_files: allowance.files,
    })
}

/// The error summary's lines in the order of the form's fields (`files`: the files as listed).
fn error_list(errors: &FieldErrors, files: &[FileView]) -> Vec<SummaryLine> {
    let ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
    summary(errors, &form_order(&ids))
}

fn form_page(state: &Services, limits: UploadLimits) -> Page {
    Page::new("submissions/form.html.tera")
        .with("sectors", sector_options())
        .with("pickers", [1, 2, 3])
        .with("max_file", human_size(state.settings.max_file_bytes))
        .with("max_total", human_size(state.settings.max_submission_bytes))
        .with("max_files", state.settings.max_files)
        .with("upload_limits", limits)
}

#[rocket::get("/submissions/new")]
async fn new_form(ctx: Ctx<'_>, user: SubmitterUser<'_>) -> AppResult<Page> {
    let who = submitter(&user)?;
    Ok(
        form_page(ctx.state, upload_limits(ctx.state, &who, None).await?)
            .with("organisation", organisation_of(ctx.state, &who).await?)
            .with("form_token", crate::auth::sessions::new_token())
            .with("action", "/submissions")
            .with("values", FormValues::of(&Content::default(), ""))
            .with("files", Vec::<FileView>::new()),
    )
}

/// Which errors the edit form shows.
enum Shown {
    /// None: the form as stored.
    Nothing,
    /// These, from the save just refused.
    Errors(FieldErrors),
    /// What the stored answers still lack before they can be checked (after "Continue" saved them).
    Missing,
    /// The save was refused as made from an older version: the fields where what was typed differs from the
    /// newer stored version are marked.
    Stale,
}

async fn edit_page(
    ctx: &Ctx<'_>,
    user: &User,
    who: &Submitter,
    admitted: &Admitted,
    reading: Reading,
    shown: Shown,
    posted: Option<&crate::workflow::content::FormFields>,
) -> AppResult<Page> {
    let state = ctx.state;
    let sub = admitted.submission();
    let status = sub.status();
    if !lifecycle::editable(status) {
        return Err(AppError::Conflict(format!(
            "This submission is {}: it can no longer be changed.",
            status.label().to_lowercase()
        )));
    }
    let content = access::read_content(state, admitted, &ctx.actor, reading)
        .await?
        .unwrap_or_default();
    let (sid, org) = (sub.id.clone(), who.organisation_id.clone());
    let (attachments, mut notices) = state
        .db
        .run(move |c| {
            Ok((
                submission::attachments_of(c, &sid)?,
                submission::notices_for(c, &org, Some(&sid), 20)?,
            ))
        })
        .await?;
    open_notices(&access::texts(state, admitted).await?, &mut notices);
    let mut values = FormValues::of(&content, sub.saved_sector());
    if let Some(f) = posted {
        values = values.overlay(f);
    }
    let errors = match shown {
        Shown::Nothing => None,
        Shown::Errors(e) => Some(e),
        Shown::Missing => {
            Some(check_answers(&content, sub.saved_sector())).filter(|e| !e.is_empty())
        }
        Shown::Stale => Some(
            values
                .differing(&FormValues::of(&content, sub.saved_sector()))
                .into_iter()
                .map(|name| {
                    (
                        name.to_string(),
                        "The newer version has something else here; what you typed is shown."
                            .to_string(),
                    )
                })
                .collect(),
        ),
    };
    let files = file_views(Some(&content), &attachments);
    let limits = upload_limits(state, who, Some(&sub.id)).await?;
    let mut page = form_page(state, limits)
        .with("organisation", organisation_of(state, who).await?)
        .with("action", format!("/submissions/{}", sub.id))
        // The version this form is made from: a save from it after another one is refused (see `SaveRequest`).
        .with("version", sub.content_blob_id.clone().unwrap_or_default())
        .with("submission", submission_view(sub))
        .with("may", lifecycle::affordances(sub, user, state.clock.now()))
        .with("values", values)
        .with("notices", notices);
    if let Some(e) = errors {
        page = page
            .with("error_list", error_list(&e, &files))
            .with("errors", e)
            .status(Status::UnprocessableEntity);
    }
    Ok(page.with("files", files))
}

/// The edit form; `?missing` (where "Continue" leads when the saved answers are not complete yet) shows what the
/// stored answers still lack. A redirect, not a page in the POST's answer, so that the address is the draft's
/// (after a new submission's first save too) and an upload sent by script lands on it like a browser would.
#[rocket::get("/submissions/<id>/edit?<missing>")]
async fn edit_form(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    missing: Option<&str>,
) -> AppResult<Page> {
    let who = submitter(&user)?;
    let admitted = load(&ctx, &user, id).await?;
    let page = edit_page(
        &ctx,
        &user.user,
        &who,
        &admitted,
        Reading::Page(Some("edit form")),
        if missing.is_some() {
            Shown::Missing
        } else {
            Shown::Nothing
        },
        None,
    )
    .await?;
    Ok(match missing {
        Some(_) => page.with(
            "form_message",
            "Complete the fields marked below, then continue.",
        ),
        None => page,
    })
}

async fn save(
    token: &TokenCheck<'_>,
    ctx: &Ctx<'_>,
    user: &SubmitterUser<'_>,
    id: Option<&str>,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<Either<Notice, Page>> {
    let state = ctx.state;
    let who = submitter(user)?;
    // The token first; only then is anything looked up or read.
    let body = open_form(token, state, content_type, data).await?;
    // Refused before a byte is stored: too many of this account's forms (or of all) at once, or a disk nearly full.
    let room = crate::storage::free_space(&state.settings.data_dir)
        .map_or(true, |free| free >= state.settings.min_free_disk_mib << 20);
    let slot = if room {
        ctx.uploads.enter(&who.user_id)
    } else {
        Err(AppError::StorageFull(
            "free space under min_free_disk_mib".into(),
        ))
    };
    let _slot = match slot {
        Ok(slot) => slot,
        Err(e) => {
            body.discard().await;
            return Err(e);
        }
    };
    let allowance = match id {
        Some(id) => match load(ctx, user, id).await {
            Ok(_) => intake::allowance(state, &who, Some(id)).await,
            Err(e) => Err(e),
        },
        None => intake::allowance(state, &who, None).await,
    };
    let allowance = match allowance {
        Ok(a) => a,
        Err(e) => {
            body.discard().await;
            return Err(e);
        }
    };
    let limits = Limits {
        max_file_bytes: state.settings.max_file_bytes,
        max_total_bytes: allowance.bytes,
        max_files: allowance.files,
        binding: allowance.binding,
        holder: crate::web::multipart::Holder::Submission,
        seal_to: allowance.sealing.recipients.clone(),
        removable: allowance.removable,
    };
    let form = match body.read_keeping(state, limits).await {
        Ok(form) => form,
        Err(ReadRefusal::FileTooLarge(too_large)) => {
            return too_large_page(ctx, user, &who, id, *too_large)
                .await
                .map(Either::Right)
        }
        Err(ReadRefusal::Other(e)) => return Err(e),
    };
    let intent = match form.fields.get("action") {
        "submit" => Intent::Submit,
        "continue" => Intent::Continue,
        _ => Intent::Draft,
    };
    let send = intent == Intent::Submit;
    let form_token = Some(form.fields.get("form_token").to_string()).filter(|t| !t.is_empty());
    let shown_version = form.fields.0.get("version").map(|v| v.trim().to_string());
    let file_count = form.files.len();
    // Files from the picker come without a description: the form is where they get one.
    let to_describe = form.files.iter().any(|f| f.slot == FileSlot::Picker);
    let request = SaveRequest {
        submission_id: id.map(str::to_string),
        fields: form.fields,
        files: form.files,
        remove: form.remove,
        intent,
        checked_version: None,
        shown_version,
        form_token,
        sealing: allowance.sealing,
    };
    // Kept for re-showing the form after an error (values only; files are never echoed).
    let posted = crate::workflow::content::FormFields(request.fields.0.clone());
    let result = match intake::save(state, &who, &ctx.actor, request).await {
        Ok(result) => result,
        Err(refusal) => return form_after_refusal(ctx, user, &who, id, &posted, refusal).await,
    };
    match result {
        SaveResult::Saved { id, status } => {
            // The session was admitted when the upload began, and a long upload can outlive its idle timeout:
            // the save counts as a use now, so that the redirect reaches the receipt.
            let (hash, now) = (user.session_hash.clone(), state.clock.now());
            if let Err(e) = state
                .db
                .run(move |c| crate::auth::sessions::touch_now(c, &hash, now))
                .await
            {
                tracing::warn!(error = %e, "recording a session's use after a save failed");
            }
            let added = if file_count > 0 {
                format!(
                    " with {file_count} new file{}",
                    if file_count == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            };
            let (to, msg) = match status {
                LifeStatus::Received if send => (
                    format!("/submissions/{id}/receipt"),
                    "Your submission was received. Keep this receipt.".to_string(),
                ),
                _ if intent == Intent::Continue => (
                    format!("/submissions/{id}/check"),
                    format!("Saved{added}. Check your answers, then send."),
                ),
                _ if to_describe => (
                    format!("/submissions/{id}/edit#files"),
                    format!("Saved{added}. Describe each file before you send."),
                ),
                _ => (format!("/submissions/{id}"), format!("Saved{added}.")),
            };
            Ok(Either::Left(Notice::redirect(to, msg)))
        }
        SaveResult::Duplicate { id } => Ok(Either::Left(Notice::redirect(
            format!("/submissions/{id}"),
            "This form was already sent; nothing was added. Here is the submission it created.",
        ))),
        // Saved, but not complete enough to check: to the draft's own address, which lists what is missing.
        SaveResult::Invalid {
            id: Some(id),
            saved: true,
            ..
        } if intent == Intent::Continue => Ok(Either::Left(Notice::redirect(
            format!("/submissions/{id}/edit?missing"),
            "Your answers and files were saved.",
        ))),
        SaveResult::Invalid {
            id: Some(id),
            errors,
            saved,
        } => {
            let admitted = load(ctx, user, &id).await?;
            let page = edit_page(
                ctx,
                &user.user,
                &who,
                &admitted,
                Reading::FormAgain,
                Shown::Errors(errors),
                Some(&posted),
            )
            .await?;
            // Nothing saved: the form still stands on the version it was made from (a save from it after another
            // one is still refused); a save that was kept made the stored version its own.
            let page = if saved { page } else { with_posted_version(page, &posted) };
            Ok(Either::Right(page.with(
                "form_message",
                if saved {
                    "Your changes and files were saved, but the submission was not sent: complete the fields marked below."
                } else {
                    "Nothing was saved: correct the fields marked below. Files you attached must be attached again."
                },
            )))
        }
        SaveResult::Stale { id, saved_at } => {
            let admitted = load(ctx, user, &id).await?;
            let page = edit_page(
                ctx,
                &user.user,
                &who,
                &admitted,
                Reading::FormAgain,
                Shown::Stale,
                Some(&posted),
            )
            .await?;
            Ok(Either::Right(
                page.with(
                    "form_message",
                    format!(
                        "Nothing was saved: this submission was saved again at {} (in another window, or by \
                         someone else in your organisation) after you opened this page. What you typed is shown \
                         below, and the fields marked differ from that newer version. Save again to replace it \
                         with what is below, or open the submission again to see the newer version. Files you \
                         attached must be attached again.",
                        crate::time::datetime(saved_at)
                    ),
                )
                .status(Status::Conflict),
            ))
        }
        SaveResult::Invalid {
            id: None, errors, ..
        } => Ok(Either::Right(
            new_form_again(state, &who, &posted, errors)
                .await?
                .with(
                    "form_message",
                    "Nothing was saved: correct the fields marked below. Files you attached must be attached again.",
                )
                .status(Status::UnprocessableEntity),
        )),
    }
}

/// A save refused for a reason that is not one of its fields' (the submission or its files changed meanwhile, a
/// cap reached, the database busy, the disk full): the form again with what was typed and why, under the refusal's
/// own status, so that a long narrative is not lost with it. Nothing was saved. The refusal as it is when the form
/// cannot be shown (the submission can no longer be changed, the database is down) or when whether it was saved
/// is not known (a commit PostgreSQL did not confirm).
async fn form_after_refusal(
    ctx: &Ctx<'_>,
    user: &SubmitterUser<'_>,
    who: &Submitter,
    id: Option<&str>,
    posted: &FormFields,
    refusal: AppError,
) -> AppResult<Either<Notice, Page>> {
    let (status, message) = match &refusal {
        AppError::Conflict(why) => (Status::Conflict, why.clone()),
        AppError::TooLarge(why) => (Status::PayloadTooLarge, why.clone()),
        AppError::Unavailable(_) => (
            Status::ServiceUnavailable,
            "Nothing was saved: the portal is busy. Save again in a moment.".to_string(),
        ),
        AppError::StorageFull(_) => (
            Status::InsufficientStorage,
            "Nothing was saved: the portal's storage is full. Try again later; if this lasts, tell the \
             Program Office."
                .to_string(),
        ),
        _ => return Err(refusal),
    };
    // The error page would have logged ours; so does this one.
    crate::web::error::log_refusal(&refusal);
    let page = match id {
        Some(id) => match load(ctx, user, id).await {
            Ok(admitted) => edit_page(
                ctx,
                &user.user,
                who,
                &admitted,
                Reading::FormAgain,
                Shown::Nothing,
                Some(posted),
            )
            .await
            // Nothing was saved: the form still stands on the version it was made from.
            .map(|page| with_posted_version(page, posted)),
            Err(e) => Err(e),
        },
        None => new_form_again(ctx.state, who, posted, FieldErrors::new()).await,
    };
    let Ok(page) = page else {
        return Err(refusal);
    };
    Ok(Either::Right(
        page.with(
            "refusal",
            format!(
                "{message} What you typed is shown below{}. Files you attached must be attached again.",
                if id.is_some() { " (not saved)" } else { "" }
            ),
        )
        .status(status),
    ))
}

/// A form shown again after a refusal that saved nothing keeps the version it was posted from, not the stored one:
/// otherwise a page older than a save made elsewhere would, once refused for a mistake, pass the stale check.
fn with_posted_version(page: Page, posted: &FormFields) -> Page {
    match posted.0.get("version") {
        Some(version) => page.with("version", version.trim()),
        None => page,
    }
}

/// A new submission's form again when nothing was saved: what was typed (never the files), and the errors.
async fn new_form_again(
    state: &Services,
    who: &Submitter,
    posted: &FormFields,
    errors: FieldErrors,
) -> AppResult<Page> {
    Ok(form_page(state, upload_limits(state, who, None).await?)
        .with("organisation", organisation_of(state, who).await?)
        .with("form_token", posted.get("form_token"))
        .with("action", "/submissions")
        .with(
            "values",
            FormValues::of(&Content::default(), "").overlay(posted),
        )
        .with("files", Vec::<FileView>::new())
        .with("error_list", error_list(&errors, &[]))
        .with("errors", errors))
}

/// A file over a limit: the form again (413) with what was typed before the file, the file named in the error
/// summary and next to its field. Nothing was saved (the reader removed what it had started).
async fn too_large_page(
    ctx: &Ctx<'_>,
    user: &SubmitterUser<'_>,
    who: &Submitter,
    id: Option<&str>,
    too_large: FileTooLarge,
) -> AppResult<Page> {
    let state = ctx.state;
    let mut errors = FieldErrors::new();
    errors.insert(too_large.field.clone(), too_large.message());
    let posted = &too_large.fields;
    let page = match id {
        Some(id) => {
            let admitted = load(ctx, user, id).await?;
            let page = edit_page(
                ctx,
                &user.user,
                who,
                &admitted,
                Reading::FormAgain,
                Shown::Errors(errors),
                Some(posted),
            )
            .await?;
            // Nothing was saved: the form still stands on the version it was made from.
            with_posted_version(page, posted)
        }
        None => new_form_again(state, who, posted, errors).await?,
    };
    Ok(page
        .with(
            "form_message",
            "Nothing was saved: a file is over a limit. What you typed is kept below; attach the files again.",
        )
        .status(Status::PayloadTooLarge))
}

#[rocket::post("/submissions", data = "<data>")]
async fn create(
    token: TokenCheck<'_>,
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<Either<Notice, Page>> {
    save(&token, &ctx, &user, None, content_type, data).await
}

#[rocket::post("/submissions/<id>", data = "<data>")]
async fn update(
    token: TokenCheck<'_>,
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<Either<Notice, Page>> {
    save(&token, &ctx, &user, Some(id), content_type, data).await
}

// ---------------------------------------------------------------------------------------------
// Check your answers, then send
// ---------------------------------------------------------------------------------------------

/// The "check your answers" page of a complete, editable draft or cure: every answer with a link back to its
/// field, then the express statement and the certifications (`ticked` as they were posted, when shown again),
/// and the one button that sends.
async fn check_page(
    ctx: &Ctx<'_>,
    user: &SubmitterUser<'_>,
    id: &str,
    errors: Option<FieldErrors>,
    ticked: &[(&str, bool)],
) -> AppResult<Either<Notice, Page>> {
    let state = ctx.state;
    let who = submitter(user)?;
    let admitted = load(ctx, user, id).await?;
    let sub = admitted.submission();
    if !lifecycle::editable(sub.status()) {
        return Err(AppError::Conflict(format!(
            "This submission is {}: there is nothing to check or send.",
            sub.status().label().to_lowercase()
        )));
    }
    let reading = if errors.is_some() {
        Reading::FormAgain
    } else {
        Reading::Page(Some("check your answers"))
    };
    let content = access::read_content(state, &admitted, &ctx.actor, reading).await?;
    let content = match content {
        Some(c) if check_answers(&c, sub.saved_sector()).is_empty() => c,
        _ => {
            return Ok(Either::Left(Notice::redirect(
                format!("/submissions/{id}/edit"),
                "Complete the form first: some answers are still missing.",
            )))
        }
    };
    let attachments = access::attachments(state, &admitted).await?;
    let files = file_views(Some(&content), &attachments);
    let mut page = Page::new("submissions/check.html.tera")
        .with("organisation", organisation_of(state, &who).await?)
        .with("submission", submission_view(sub))
        .with(
            "may",
            lifecycle::affordances(sub, &user.user, state.clock.now()),
        )
        .with("content", content_view(&content))
        .with("express_statement", EXPRESS_STATEMENT)
        .with("certifications", certification_view())
        .with(
            "ticked",
            ticked
                .iter()
                .map(|(name, on)| (name.to_string(), *on))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .with(
            "version",
            sub.content_blob_id.as_deref().unwrap_or_default(),
        );
    if let Some(e) = errors {
        page = page
            .with("error_list", error_list(&e, &files))
            .with("errors", e)
            .status(Status::UnprocessableEntity);
    }
    Ok(Either::Right(page.with("files", files)))
}

#[rocket::get("/submissions/<id>/check")]
async fn check(ctx: Ctx<'_>, user: SubmitterUser<'_>, id: &str) -> AppResult<Either<Notice, Page>> {
    check_page(&ctx, &user, id, None, &[]).await
}

/// The affirmations posted from the check page, and the content version they were made on.
#[derive(FromForm)]
struct SendForm {
    /// "send" from the sending button; anything else (the hidden default button that Enter clicks) shows the
    /// page again.
    #[field(default = String::new())]
    action: String,
    #[field(default = String::new())]
    version: String,
    #[field(default = String::new())]
    express_statement: String,
    #[field(default = String::new())]
    cert_not_public: String,
    #[field(default = String::new())]
    cert_not_regulatory: String,
    #[field(default = String::new())]
    cert_authorized: String,
}

/// Sends a checked draft (or cure) through the same intake as every save. Sent twice (a double click, Back
/// and send again), it answers with the receipt of the first.
#[rocket::post("/submissions/<id>/send", data = "<form>")]
async fn send(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    form: CsrfForm<SendForm>,
) -> AppResult<Either<Notice, Page>> {
    let state = ctx.state;
    let who = submitter(&user)?;
    let admitted = load(&ctx, &user, id).await?;
    let sub = admitted.submission();
    if !lifecycle::editable(sub.status()) {
        if sub.status() == LifeStatus::Received && sub.tracking_number.is_some() {
            return Ok(Either::Left(Notice::redirect(
                format!("/submissions/{id}/receipt"),
                "This submission was already sent. Here is its receipt.",
            )));
        }
        return Err(AppError::Conflict(format!(
            "This submission is {}: it can no longer be sent.",
            sub.status().label().to_lowercase()
        )));
    }
    let f = form.0;
    let ticked = [
        ("express_statement", f.express_statement == "yes"),
        ("cert_not_public", f.cert_not_public == "yes"),
        ("cert_not_regulatory", f.cert_not_regulatory == "yes"),
        ("cert_authorized", f.cert_authorized == "yes"),
    ];
    if f.action != "send" {
        return check_page(&ctx, &user, id, None, &ticked).await;
    }
    let fields = FormFields(
        [
            ("express_statement", f.express_statement),
            ("cert_not_public", f.cert_not_public),
            ("cert_not_regulatory", f.cert_not_regulatory),
            ("cert_authorized", f.cert_authorized),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    let sealing = intake::allowance(state, &who, Some(id)).await?.sealing;
    let request = SaveRequest {
        submission_id: Some(id.to_string()),
        fields,
        files: Vec::new(),
        remove: Vec::new(),
        intent: Intent::Send,
        checked_version: Some(f.version).filter(|v| !v.is_empty()),
        shown_version: None,
        form_token: None,
        sealing,
    };
    match intake::save(state, &who, &ctx.actor, request).await? {
        SaveResult::Saved { id, .. } => Ok(Either::Left(Notice::redirect(
            format!("/submissions/{id}/receipt"),
            "Your submission was received. Keep this receipt.",
        ))),
        SaveResult::Invalid { errors, .. } => {
            check_page(&ctx, &user, id, Some(errors), &ticked).await
        }
        SaveResult::Duplicate { id } => Ok(Either::Left(Notice::redirect(
            format!("/submissions/{id}"),
            "This submission was already sent.",
        ))),
        // Not made by a send (it has no form version; its checked version is compared instead).
        SaveResult::Stale { .. } => Err(AppError::Conflict(
            "This submission was changed after you checked it. Check your answers again, then send.".into(),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

#[rocket::get("/submissions/<id>")]
async fn detail(ctx: Ctx<'_>, user: SubmitterUser<'_>, id: &str) -> AppResult<Page> {
    let state = ctx.state;
    let who = submitter(&user)?;
    let admitted = load(&ctx, &user, id).await?;
    let content = access::read_content(state, &admitted, &ctx.actor, Reading::Page(None)).await?;
    let sub = admitted.submission();
    let (sid, org) = (sub.id.clone(), who.organisation_id.clone());
    let now = state.clock.now();
    let (attachments, mut events, mut notices, destruction) = state
        .db
        .run(move |c| {
            let loaded = (
                submission::attachments_of(c, &sid)?,
                submission::events_of(c, &sid)?,
                submission::notices_for(c, &org, Some(&sid), 50)?,
                submission::destruction_of(c, &sid)?,
            );
            // Shown on this page (still marked new this once), so read from now on.
            submission::mark_notices_read(c, &org, &sid, now)?;
            Ok(loaded)
        })
        .await?;
    let texts = access::texts(state, &admitted).await?;
    open_events(&texts, &mut events);
    open_notices(&texts, &mut notices);
    let unread =
        crate::workflow::messages::unread_for_user(state, &user.user, vec![sub.id.clone()])
            .await?
            .get(&sub.id)
            .copied()
            .unwrap_or(0);
    Ok(Page::new("submissions/detail.html.tera")
        .with("unread_messages", unread)
        .with("messages_link", format!("/submissions/{}/messages", sub.id))
        .with("submission", submission_view(sub))
        .with("content", content.as_ref().map(content_view))
        .with("files", file_views(content.as_ref(), &attachments))
        .with("events", events)
        .with("notices", notices)
        .with("destruction", destruction_view(destruction))
        .with(
            "may",
            lifecycle::affordances(sub, &user.user, state.clock.now()),
        )
        .with("file_base", format!("/submissions/{}/files", sub.id)))
}

#[rocket::get("/submissions/<id>/files/<file>")]
async fn download(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    let admitted = load(&ctx, &user, id).await?;
    let opened = access::open_attachment(ctx.state, &admitted, &ctx.actor, file).await?;
    Ok(Download(opened))
}

// ---------------------------------------------------------------------------------------------
// Receipt
// ---------------------------------------------------------------------------------------------

/// What a receipt is made of: the admitted submission, its content and files.
struct ReceiptParts {
    admitted: Admitted,
    content: Content,
    attachments: Vec<crate::models::attachment::Attachment>,
    /// Who affirmed the statement when it was sent (not whoever opens the receipt).
    affirmed_by: Option<crate::models::account::User>,
    /// A correction was saved since and not sent: the receipt shows what was sent.
    correction_pending: bool,
}

/// The receipt as both its page and its text file show it.
#[derive(Serialize)]
struct ReceiptView<'a> {
    submission: SubmissionView<'a>,
    title: String,
    files: Vec<FileView>,
    express_statement: &'static str,
    statement_version: &'a str,
    certifications: Vec<Certification>,
    organisation_id: &'a str,
    /// `None`: sent before the portal kept who affirmed (the audit log names who sent it).
    submitter: Option<String>,
    submitter_email: &'a str,
    /// The sector as received (a correction's save changes the row's).
    sector: &'a str,
    correction_pending: bool,
    /// The pending correction can still be sent (the submission is defective).
    correction_sendable: bool,
    /// When a cure was last sent, if one was: each send affirms and certifies again, so the statement's time and
    /// `submitter` are then the correction's, not the first receipt's.
    correction_received_at: Option<i64>,
}

impl ReceiptParts {
    fn view(&self) -> ReceiptView<'_> {
        let sub = self.admitted.submission();
        ReceiptView {
            submission: submission_view(sub),
            title: visible(&self.content.title),
            files: file_views(Some(&self.content), &self.attachments),
            express_statement: EXPRESS_STATEMENT,
            statement_version: sub
                .statement_version
                .as_deref()
                .unwrap_or(STATEMENT_VERSION),
            certifications: certification_view(),
            organisation_id: &sub.organisation_id,
            submitter: self
                .affirmed_by
                .as_ref()
                .map(|u| crate::workflow::content::visible(&u.display_name)),
            submitter_email: self.affirmed_by.as_ref().map_or("", |u| u.email.as_str()),
            // The sector the Office holds, as received (not a pending correction's).
            sector: &sub.sector,
            correction_pending: self.correction_pending,
            correction_sendable: sub.status() == LifeStatus::Defective,
            correction_received_at: sub
                .statement_affirmed_at
                .filter(|at| sub.received_at.is_some_and(|received| *at > received)),
        }
    }
}

async fn receipt_data(
    ctx: &Ctx<'_>,
    user: &SubmitterUser<'_>,
    id: &str,
) -> AppResult<ReceiptParts> {
    let state = ctx.state;
    submitter(user)?;
    let admitted = load(ctx, user, id).await?;
    let sub = admitted.submission();
    if sub.tracking_number.is_none() {
        return Err(AppError::NotFound);
    }
    admitted.require_content()?;
    // What the Office received, not a correction saved since and not sent yet.
    let (content, correction_pending) =
        access::read_sent_content(state, &admitted, &ctx.actor, Reading::Page(Some("receipt")))
            .await?
            .ok_or(AppError::NotFound)?;
    let mut attachments = access::attachments(state, &admitted).await?;
    if correction_pending {
        attachments = access::attachments_as_of(&content, attachments);
    }
    let affirmed_by = access::affirmed_by(state, &admitted).await?;
    Ok(ReceiptParts {
        admitted,
        content,
        attachments,
        affirmed_by,
        correction_pending,
    })
}

#[rocket::get("/submissions/<id>/receipt")]
async fn receipt(ctx: Ctx<'_>, user: SubmitterUser<'_>, id: &str) -> AppResult<Page> {
    let parts = receipt_data(&ctx, &user, id).await?;
    Ok(Page::new("submissions/receipt.html.tera").with("r", parts.view()))
}

/// The plain-text receipt, rendered with the same data (the template is not HTML, so it is not escaped;
/// every submitter-supplied string in it went through `visible`).
pub struct TextReceipt(String, String);

impl<'r> Responder<'r, 'static> for TextReceipt {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        Response::build_from(self.0.respond_to(req)?)
            .header(ContentType::Plain)
            .header(Header::new(
                "Content-Disposition",
                format!("attachment; filename=\"{}-receipt.txt\"", self.1),
            ))
            .ok()
    }
}

#[rocket::get("/submissions/<id>/receipt.txt")]
async fn receipt_text(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    templates: &rocket::State<crate::web::pages::Templates>,
) -> AppResult<TextReceipt> {
    let parts = receipt_data(&ctx, &user, id).await?;
    let tn = parts
        .admitted
        .submission()
        .tracking_number
        .clone()
        .unwrap_or_else(|| "submission".into());
    let mut tctx = tera::Context::new();
    tctx.insert("r", &parts.view());
    let text = templates
        .0
        .render("submissions/receipt.txt.tera", &tctx)
        .map_err(|e| {
            AppError::Internal(format!(
                "receipt template: {}",
                crate::web::pages::render_error_kind(&e)
            ))
        })?;
    Ok(TextReceipt(text, tn))
}

// ---------------------------------------------------------------------------------------------
// Withdrawal, return or destruction
// ---------------------------------------------------------------------------------------------

#[derive(FromForm)]
struct DispositionForm {
    #[field(default = String::new())]
    disposition: String,
    /// "yes" from the box ticked to say the person means it: each of these is final.
    #[field(default = String::new())]
    confirm: String,
}

#[derive(FromForm)]
struct ConfirmForm {
    #[field(default = String::new())]
    confirm: String,
}

/// A withdrawal, a choice of return or destruction and a taken return cannot be undone: a ticked box says so.
fn confirmed(confirm: &str, what: &str) -> AppResult<()> {
    if confirm == "yes" {
        Ok(())
    } else {
        Err(AppError::Invalid(format!(
            "Tick the box to confirm {what}: it cannot be undone."
        )))
    }
}

fn parse_disposition(s: &str) -> AppResult<Disposition> {
    Disposition::parse(s).ok_or_else(|| {
        AppError::Invalid("Choose whether the information is returned to you or destroyed.".into())
    })
}

// Withdrawing, choosing return or destruction, confirming a return and deleting a draft destroy content: like an
// officer's decision, they need a recent second factor from a member who has one (`StepUpForm`; a member without one,
// where the organisation does not require it, has nothing to give again).
fn after(id: &str, status: LifeStatus) -> Notice {
    let msg = match status {
        LifeStatus::Destroyed => {
            "The submission's content was destroyed. The destruction record is below."
        }
        LifeStatus::Returned => "The submission was returned; the portal's copy was destroyed.",
        LifeStatus::Withdrawn => {
            "The submission was withdrawn. Download the return package, then confirm below."
        }
        _ => "Your choice was recorded. Download the return package, then confirm below.",
    };
    Notice::redirect(format!("/submissions/{id}"), msg)
}

#[rocket::post("/submissions/<id>/withdraw", data = "<form>")]
async fn withdraw(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    form: StepUpForm<DispositionForm>,
) -> AppResult<Notice> {
    let who = submitter(&user)?;
    load(&ctx, &user, id).await?;
    let d = parse_disposition(&form.0.disposition)?;
    confirmed(&form.0.confirm, "the withdrawal")?;
    let status = intake::request(
        ctx.state,
        &who,
        &ctx.actor,
        id,
        SubmitterRequest::Withdraw(d),
    )
    .await?;
    Ok(after(id, status))
}

#[derive(FromForm)]
struct DeleteDraftForm {
    #[field(default = String::new())]
    confirm: String,
}

#[rocket::post("/submissions/<id>/delete", data = "<form>")]
async fn delete_draft(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    form: StepUpForm<DeleteDraftForm>,
) -> AppResult<Notice> {
    let who = submitter(&user)?;
    load(&ctx, &user, id).await?;
    if form.0.confirm != "yes" {
        return Err(AppError::Invalid(
            "Tick the box to confirm that the draft and its files are to be deleted.".into(),
        ));
    }
    intake::delete_draft(ctx.state, &who, &ctx.actor, id).await?;
    Ok(Notice::redirect(
        "/submissions".to_string(),
        "The draft and its files were deleted.",
    ))
}

#[rocket::post("/submissions/<id>/disposition", data = "<form>")]
async fn disposition(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    form: StepUpForm<DispositionForm>,
) -> AppResult<Notice> {
    let who = submitter(&user)?;
    load(&ctx, &user, id).await?;
    let d = parse_disposition(&form.0.disposition)?;
    confirmed(&form.0.confirm, "your choice")?;
    let status =
        intake::request(ctx.state, &who, &ctx.actor, id, SubmitterRequest::Choose(d)).await?;
    Ok(after(id, status))
}

#[rocket::post("/submissions/<id>/returned", data = "<form>")]
async fn confirm_return(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    form: StepUpForm<ConfirmForm>,
) -> AppResult<Notice> {
    let who = submitter(&user)?;
    load(&ctx, &user, id).await?;
    confirmed(&form.0.confirm, "that you have the package")?;
    let status = intake::request(
        ctx.state,
        &who,
        &ctx.actor,
        id,
        SubmitterRequest::ConfirmReturn,
    )
    .await?;
    Ok(after(id, status))
}

/// The submitter's last package of its own submission, offered once it chose "return".
#[rocket::get("/submissions/<id>/package")]
async fn return_package(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    _fresh: FreshFactor,
    id: &str,
) -> AppResult<ZipDownload> {
    let admitted = load(&ctx, &user, id).await?;
    admitted.require_content()?;
    let sub = admitted.submission();
    let returnable = lifecycle::return_pending(sub);
    if !returnable {
        return Err(AppError::Conflict(
            "A return package is offered only after you chose to have the information returned."
                .into(),
        ));
    }
    let package = access::export_package(ctx.state, &admitted, &ctx.actor, "return").await?;
    Ok(ZipDownload(package))
}
