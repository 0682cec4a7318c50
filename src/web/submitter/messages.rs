//! A submission's message thread, seen by the members of its organisation: the page (which marks it read), writing
//! a message with files, and downloading the files. Every lookup goes through `access::admit`, scoped like the
//! submitter's other routes: another organisation's ids answer 404. The page and the posting are shared with the
//! officers' routes (`web::officer::messages`), which differ only in their paths and guard.

use rocket::http::{ContentType, Status};
use rocket::{Data, Either};
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::models::account::User;
use crate::slots::Slot;
use crate::web::downloads::Download;
use crate::web::forms::TokenCheck;
use crate::web::guards::{Ctx, SubmitterUser};
use crate::web::multipart::{open_form, FormStream, Limits, ReadRefusal};
use crate::web::pages::{human_size, Notice, Page};
use crate::web::views::submission_view;
use crate::workflow::access::{self, Admitted};
use crate::workflow::content::FieldErrors;
use crate::workflow::decisions;
use crate::workflow::messages::{
    self, NewMessageRequest, SendResult, ThreadPage, FILES_PER_MESSAGE,
};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![thread, send, download]
}

/// Where a side's thread lives: `/submissions/<id>/messages` or `/officer/submissions/<id>/messages`.
pub(crate) fn thread_path(officer: bool, id: &str) -> String {
    if officer {
        format!("/officer/submissions/{id}/messages")
    } else {
        format!("/submissions/{id}/messages")
    }
}

/// What was typed, shown again after a mistake.
#[derive(Serialize, Default)]
struct Values {
    body: String,
    request_for_information: bool,
}

/// The thread page of an admitted submission for `user` (either side): `which` page of its messages. `again` is a
/// message posted with mistakes.
pub(crate) async fn thread_page(
    ctx: &Ctx<'_>,
    user: &User,
    admitted: &Admitted,
    which: ThreadPage,
    again: Option<(FieldErrors, String, bool)>,
) -> AppResult<Page> {
    let state = ctx.state;
    let thread = messages::open_thread(state, admitted, user, &ctx.actor, which).await?;
    let sub = admitted.submission();
    let officer = user.role() == crate::domain::Role::Officer;
    let mut page = Page::new("messages/thread.html.tera")
        .with("submission", submission_view(sub))
        .with("thread", &thread)
        .with("officer", officer)
        .with("may_write", messages::may_write(admitted, user))
        .with("closed", messages::closed_reason(admitted, user))
        .with("destroyed", admitted.content_destroyed())
        .with("files_per_message", FILES_PER_MESSAGE)
        .with("slots", (1..=FILES_PER_MESSAGE).collect::<Vec<usize>>())
        .with("max_file", human_size(state.settings.max_file_bytes));
    match again {
        Some((errors, body, rfi)) => {
            page = page
                .with(
                    "values",
                    Values {
                        body,
                        request_for_information: rfi,
                    },
                )
                .with("errors", errors)
                .status(Status::UnprocessableEntity);
        }
        None => page = page.with("values", Values::default()),
    }
    Ok(page)
}

/// A message refused once its form was read, for a reason that is not its text's (the thread closed meanwhile — a
/// withdrawal, a decision —, the side's cap reached, the database busy, the disk full): the thread again with what
/// was typed and why, under the refusal's status, so that a long answer is not lost with it. Where the thread no
/// longer takes messages, the text is shown as "not sent" to copy. The refusal as it is when the thread cannot be
/// shown (access ended) or whether it was sent is not known (a commit PostgreSQL did not confirm).
async fn thread_after_refusal(
    ctx: &Ctx<'_>,
    user: &User,
    id: &str,
    text: String,
    rfi: bool,
    file_count: usize,
    refusal: AppError,
) -> AppResult<Either<Notice, Page>> {
    let not_sent = |why: &str| {
        if why.contains("Nothing was sent") {
            why.to_string()
        } else {
            format!("Nothing was sent. {why}")
        }
    };
    let (status, message) = match &refusal {
        AppError::Conflict(why) => (Status::Conflict, not_sent(why)),
        AppError::TooLarge(why) => (Status::PayloadTooLarge, not_sent(why)),
        AppError::Unavailable(_) => (
            Status::ServiceUnavailable,
            "Nothing was sent: the portal is busy. Send it again in a moment.".to_string(),
        ),
        AppError::StorageFull(_) => (
            Status::InsufficientStorage,
            "Nothing was sent: the portal's storage is full. Try again later; if this lasts, tell the Program \
             Office."
                .to_string(),
        ),
        _ => return Err(refusal),
    };
    // The error page would have logged ours; so does this one.
    crate::web::error::log_refusal(&refusal);
    let Ok(admitted) = access::admit(ctx.state, user, &ctx.actor, id).await else {
        return Err(refusal);
    };
    let again = Some((FieldErrors::new(), text, rfi));
    let Ok(page) = thread_page(ctx, user, &admitted, ThreadPage::default(), again).await else {
        return Err(refusal);
    };
    let files = if file_count > 0 {
        " Files you attached must be attached again."
    } else {
        ""
    };
    Ok(Either::Right(
        page.with("refusal", format!("{message}{files}"))
            .status(status),
    ))
}

/// Room for a form with files: disk space and an upload slot for the account (as the submission form).
fn upload_slot(ctx: &Ctx<'_>, user: &User) -> AppResult<Slot> {
    let state = ctx.state;
    let room = crate::storage::free_space(&state.settings.data_dir)
        .map_or(true, |free| free >= state.settings.min_free_disk_mib << 20);
    if !room {
        return Err(AppError::StorageFull(
            "free space under min_free_disk_mib".into(),
        ));
    }
    ctx.uploads.enter(&user.id)
}

/// Admits the writer, checks that its side may still write in the thread, and finds what its files are sealed to,
/// before any byte of them is read.
async fn prepare(
    ctx: &Ctx<'_>,
    user: &User,
    id: &str,
) -> AppResult<(Admitted, crate::key_store::data_keys::SealingKey)> {
    let admitted = access::admit(ctx.state, user, &ctx.actor, id).await?;
    decisions::recorded(
        ctx.state,
        &ctx.actor,
        messages::may_write_now(&admitted, user),
    )
    .await?;
    messages::room_for_message(ctx.state, &admitted, user).await?;
    let sealing = messages::sealing_key(ctx.state, &admitted).await?;
    Ok((admitted, sealing))
}

/// Receives a message (multipart: the token first, the text, the officer's checkbox, files streamed and sealed
/// as they arrive), sends it and the notices it owes; a mistake shows the thread again with the text kept (422).
pub(crate) async fn post_message(
    token: &TokenCheck<'_>,
    ctx: &Ctx<'_>,
    user: &User,
    id: &str,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<Either<Notice, Page>> {
    let state = ctx.state;
    let body: FormStream<'_> = open_form(token, state, content_type, data).await?;
    let _slot = match upload_slot(ctx, user) {
        Ok(slot) => slot,
        Err(e) => {
            body.discard().await;
            return Err(e);
        }
    };
    let (admitted, sealing) = match prepare(ctx, user, id).await {
        Ok(ready) => ready,
        Err(e) => {
            body.discard().await;
            return Err(e);
        }
    };
    let from_organisation = user.role() == crate::domain::Role::Submitter;
    let room = crate::workflow::intake::message_files_room(
        state,
        admitted.submission(),
        from_organisation,
    )
    .await;
    let (max_total_bytes, binding) = match room {
        Ok(room) => room,
        Err(e) => {
            body.discard().await;
            return Err(e);
        }
    };
    let limits = Limits {
        max_file_bytes: state.settings.max_file_bytes,
        max_total_bytes,
        max_files: FILES_PER_MESSAGE,
        binding,
        holder: crate::web::multipart::Holder::Message,
        seal_to: sealing.recipients.clone(),
        // A message's files are its own: there is nothing to remove.
        removable: Vec::new(),
    };
    let officer_asks = |fields: &crate::workflow::content::FormFields| {
        user.role() == crate::domain::Role::Officer
            && fields.get("request_for_information") == "yes"
    };
    let form = match body.read_keeping(state, limits).await {
        Ok(form) => form,
        // A file over a limit: the thread again with the text typed before it kept (the body comes first), 413.
        Err(ReadRefusal::FileTooLarge(too_large)) => {
            let mut errors = FieldErrors::new();
            errors.insert(too_large.field.clone(), too_large.message());
            let again = (
                errors,
                too_large.fields.get("body").to_string(),
                officer_asks(&too_large.fields),
            );
            let page =
                thread_page(ctx, user, &admitted, ThreadPage::default(), Some(again)).await?;
            return Ok(Either::Right(
                page.with(
                    "form_message",
                    "Nothing was sent: a file is over a limit. What you typed is kept below; attach the files \
                     again.",
                )
                .status(Status::PayloadTooLarge),
            ));
        }
        Err(ReadRefusal::Other(e)) => return Err(e),
    };
    let text = form.fields.get("body").to_string();
    let rfi = officer_asks(&form.fields);
    let file_count = form.files.len();
    let request = NewMessageRequest {
        body: text.clone(),
        request_for_information: rfi,
        files: form.files,
        sealing,
        max_draft_bytes: state.settings.max_draft_bytes_per_organisation,
        unverified: crate::workflow::intake::UnverifiedCaps::of(&state.settings),
        max_per_side: state.settings.max_messages_per_side,
    };
    let result = match messages::send(state, &admitted, user, &ctx.actor, request).await {
        Ok(result) => result,
        Err(refusal) => {
            return thread_after_refusal(ctx, user, id, text, rfi, file_count, refusal).await
        }
    };
    match result {
        SendResult::Sent { mails } => {
            let unsent = crate::workflow::pending_mail::send_now(state, mails).await;
            let officer = user.role() == crate::domain::Role::Officer;
            let files = match file_count {
                0 => String::new(),
                1 => " with 1 file".to_string(),
                n => format!(" with {n} files"),
            };
            // A draft's thread is the organisation's own until the draft is sent: nothing reached the Office.
            let mut notice = if admitted.submission().status() == crate::domain::Status::Draft {
                format!(
                    "Your message was saved{files}. The PCII Program Office sees this thread once the draft is sent."
                )
            } else {
                format!("Your message was sent{files}.")
            };
            if unsent.later > 0 {
                notice.push_str(" The email telling the other side could not go out yet; the portal tries again.");
            }
            if unsent.refused > 0 {
                notice.push_str(&format!(
                    " The mail server refused the email to {} of the people told; they see the message when they \
                     sign in.",
                    unsent.refused
                ));
            }
            Ok(Either::Left(Notice::redirect(
                thread_path(officer, &admitted.submission().id),
                notice,
            )))
        }
        SendResult::Invalid(errors) => {
            let page = thread_page(
                ctx,
                user,
                &admitted,
                ThreadPage::default(),
                Some((errors, text, rfi)),
            )
            .await?;
            Ok(Either::Right(page.with(
                "form_message",
                if file_count > 0 {
                    "Nothing was sent: correct the message below. Files you attached must be attached again."
                } else {
                    "Nothing was sent: correct the message below."
                },
            )))
        }
    }
}

/// One file of the thread, through the content-access rules, audited.
pub(crate) async fn download_file(
    ctx: &Ctx<'_>,
    user: &User,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    let admitted = access::admit(ctx.state, user, &ctx.actor, id).await?;
    let opened = messages::open_file(ctx.state, &admitted, &ctx.actor, file).await?;
    Ok(Download(opened))
}

#[rocket::get("/submissions/<id>/messages?<before>")]
async fn thread(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    before: Option<&str>,
) -> AppResult<Page> {
    let which = ThreadPage::parse(before)?;
    let admitted = access::admit(ctx.state, &user.user, &ctx.actor, id).await?;
    thread_page(&ctx, &user.user, &admitted, which, None).await
}

#[rocket::post("/submissions/<id>/messages", data = "<data>")]
async fn send(
    token: TokenCheck<'_>,
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<Either<Notice, Page>> {
    post_message(&token, &ctx, &user.user, id, content_type, data).await
}

#[rocket::get("/submissions/<id>/messages/files/<file>")]
async fn download(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    download_file(&ctx, &user.user, id, file).await
}
