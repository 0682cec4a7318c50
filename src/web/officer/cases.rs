//! Case management on the officer's pages: claim, assign, hand over and release a submission, assign the rows
//! selected on the queue in bulk, and add a case note (which comes back as typed, 422, when empty).

use rocket::form::FromForm;
use rocket::Either;

use crate::error::{AppError, AppResult};
use crate::web::forms::CsrfForm;
use crate::web::guards::{Ctx, OfficerUser};
use crate::web::officer::submissions::{submission_page, NoteAgain};
use crate::web::pages::{Notice, Page};
use crate::workflow::access;
use crate::workflow::cases;
use crate::workflow::content::FieldErrors;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![assign, release, bulk_assign, add_note]
}

#[derive(FromForm, Debug, Default)]
pub struct AssignForm {
    /// "me" or an officer's account id.
    #[field(default = String::new())]
    assignee: String,
}

#[derive(FromForm, Debug, Default)]
pub struct BulkAssignForm {
    #[field(default = Vec::new())]
    ids: Vec<String>,
    #[field(default = String::new())]
    assignee: String,
}

#[derive(FromForm, Default)]
pub struct NoteForm {
    #[field(default = String::new())]
    note: String,
}
debug_without_words!(NoteForm);

/// The account id a form's `assignee` names ("me" is the officer posting it).
fn assignee_id(officer: &OfficerUser<'_>, assignee: &str) -> AppResult<String> {
    match assignee.trim() {
        "" => Err(AppError::Invalid(
            "Choose the officer who will handle the case.".into(),
        )),
        "me" => Ok(officer.user.id.clone()),
        id => Ok(id.to_string()),
    }
}

/// Claims (`assignee=me`), assigns or hands over one submission.
#[rocket::post("/officer/submissions/<id>/assign", data = "<form>")]
async fn assign(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: CsrfForm<AssignForm>,
) -> AppResult<Notice> {
    let to = assignee_id(&officer, &form.0.assignee)?;
    let message = if to == officer.user.id {
        "You now handle this case."
    } else {
        "The case was assigned."
    };
    cases::assign(
        ctx.state,
        &officer.user,
        &ctx.actor,
        vec![id.to_string()],
        Some(to),
    )
    .await?;
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        message,
    ))
}

/// Nobody handles the submission any more.
#[rocket::post("/officer/submissions/<id>/release", data = "<_form>")]
async fn release(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    _form: CsrfForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    cases::assign(
        ctx.state,
        &officer.user,
        &ctx.actor,
        vec![id.to_string()],
        None,
    )
    .await?;
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "The case was released: nobody handles it now.",
    ))
}

/// The rows selected on the queue, assigned in one transaction with one audit entry each.
#[rocket::post("/officer/assign", data = "<form>")]
async fn bulk_assign(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    form: CsrfForm<BulkAssignForm>,
) -> AppResult<Notice> {
    let form = form.0;
    if form.ids.is_empty() {
        return Ok(Notice::redirect(
            "/officer",
            "Nothing was assigned: select the submissions first.",
        ));
    }
    let to = assignee_id(&officer, &form.assignee)?;
    let n = cases::assign(ctx.state, &officer.user, &ctx.actor, form.ids, Some(to)).await?;
    Ok(Notice::redirect(
        "/officer",
        format!(
            "{n} submission{} assigned.",
            if n == 1 { " was" } else { "s were" }
        ),
    ))
}

/// A case note. An empty or too long note brings the submission's page back with the text kept (422).
#[rocket::post("/officer/submissions/<id>/notes", data = "<form>")]
async fn add_note(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: CsrfForm<NoteForm>,
) -> AppResult<Either<Notice, Page>> {
    let text = form.0.note;
    if let Err(message) = cases::check_note(&text) {
        let admitted = access::admit(ctx.state, &officer.user, &ctx.actor, id).await?;
        let mut errors = FieldErrors::new();
        errors.insert("note".into(), message);
        let again = NoteAgain { text, errors };
        let page = submission_page(&ctx, &officer, &admitted, None, Some(again)).await?;
        return Ok(Either::Right(page));
    }
    cases::add_note(ctx.state, &officer.user, &ctx.actor, id, &text).await?;
    Ok(Either::Left(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "The note was added to the case.",
    )))
}
