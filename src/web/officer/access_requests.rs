//! PCII officers: authorized users' pending requests for access, each granted (through the grant rules of
//! `workflow::decisions`) or refused with a reason. The analyst is told by a content-free email. A form posted with
//! a mistake comes back on the page as typed, under its request (422).

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::models::access_request::PendingView;
use crate::web::forms::CsrfForm;
use crate::web::forms::{summary, SummaryLine};
use crate::web::guards::{Ctx, OfficerUser};
use crate::web::officer::forms::FormView;
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::workflow::access_requests;
use crate::workflow::content::FieldErrors;
use crate::workflow::decisions;
use crate::workflow::pending_mail::{self, Queued};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, grant, refuse]
}

/// Days a grant made from a request runs unless the officer changes it.
const DEFAULT_GRANT_DAYS: i64 = 90;

#[derive(FromForm, Serialize, Clone, Default)]
pub struct RequestGrantForm {
    #[field(default = String::new())]
    pub reason: String,
    #[field(default = String::new())]
    pub expires: String,
}
debug_without_words!(RequestGrantForm);

#[derive(FromForm, Serialize, Clone, Default)]
pub struct RefuseForm {
    #[field(default = String::new())]
    pub reason: String,
}
debug_without_words!(RefuseForm);

/// The element ids of one request's fields on the page (every row has the same forms).
fn grant_reason_id(request: &str) -> String {
    format!("g_reason_{request}")
}
fn expires_id(request: &str) -> String {
    format!("expires_{request}")
}
fn refuse_reason_id(request: &str) -> String {
    format!("rf_reason_{request}")
}

/// A form of one request posted with mistakes: the page shows it as typed.
enum Again {
    Grant(String, RequestGrantForm),
    Refuse(String, RefuseForm),
}

/// One pending request on the page, with its two forms.
#[derive(Serialize)]
struct Row {
    r: PendingView,
    /// False for a submission of the officer's own organisation: another officer decides.
    may_decide: bool,
    /// What keeps the analyst from reading now (training or NDA lapsed since the request), as the grant form on a
    /// submission's page says: a grant stands, reading waits.
    cannot_read: Option<&'static str>,
    grant: FormView<RequestGrantForm>,
    refuse: FormView<RefuseForm>,
}

#[rocket::get("/officer/access-requests")]
async fn list(ctx: Ctx<'_>, officer: OfficerUser<'_>) -> AppResult<Page> {
    page(&ctx, &officer, None).await
}

async fn page(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    again: Option<(Again, FieldErrors)>,
) -> AppResult<Page> {
    let (rows, total) = access_requests::pending(ctx.state).await?;
    let now = ctx.state.clock.now();
    let expires = crate::time::date(now + DEFAULT_GRANT_DAYS * crate::time::DAY);
    let mut status = Status::Ok;
    let mut error_summary: Vec<SummaryLine> = Vec::new();
    let (again_id, mut again_grant, mut again_refuse, errors) = match again {
        None => (None, None, None, FieldErrors::new()),
        Some((Again::Grant(id, form), errors)) => (Some(id), Some(form), None, errors),
        Some((Again::Refuse(id, form), errors)) => (Some(id), None, Some(form), errors),
    };
    if !errors.is_empty() {
        status = Status::UnprocessableEntity;
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| {
            let mine = again_id.as_deref() == Some(r.id.as_str());
            // The analyst's reason is the natural start of the grant's; the officer may change it.
            let mut grant = FormView::new(RequestGrantForm {
                reason: r.reason.clone(),
                expires: expires.clone(),
            });
            let mut refuse = FormView::new(<RefuseForm as Default>::default());
            if mine {
                let order = vec![
                    grant_reason_id(&r.id),
                    expires_id(&r.id),
                    refuse_reason_id(&r.id),
                ];
                error_summary = summary(&errors, &order);
                if let Some(values) = again_grant.take() {
                    grant = FormView {
                        values,
                        errors: errors.clone(),
                    };
                }
                if let Some(values) = again_refuse.take() {
                    refuse = FormView {
                        values,
                        errors: errors.clone(),
                    };
                }
            }
            Row {
                may_decide: access_requests::may_decide(
                    &officer.user,
                    &r.submission_organisation_id,
                ),
                cannot_read: crate::workflow::access::standing(
                    r.training_completed_at,
                    r.nda_signed_at,
                    r.nda_expires_at,
                    now,
                )
                .and_then(|why| why.about_person()),
                r,
                grant,
                refuse,
            }
        })
        .collect();
    let titles = crate::workflow::cases::titles_for(
        ctx.state,
        rows.iter().map(|q| q.r.submission_id.clone()).collect(),
        crate::models::submission::TitleAsOf::Sent,
    )
    .await?;
    // Access is asked for validated PCII only: a title shown is PCII.
    let shown = (!titles.is_empty()).then_some(crate::domain::Status::Validated);
    Ok(Page::new("officer/access_requests.html.tera")
        .with("marking", crate::workflow::content::list_marking(shown))
        .with("titles", titles)
        .with("rows", rows)
        .with("total", total)
        .with("shown_max", access_requests::PENDING_SHOWN)
        .with("error_summary", error_summary)
        .status(status))
}

async fn show_again(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    again: Again,
    errors: FieldErrors,
) -> AppResult<Either<Notice, Page>> {
    Ok(Either::Right(
        page(ctx, officer, Some((again, errors))).await?,
    ))
}

/// Sends the analyst's message (queued with the decision) once the decision committed, and says whether it went out.
async fn notify(ctx: &Ctx<'_>, mail: Queued, done: &str) -> Notice {
    let unsent = pending_mail::send_now(ctx.state, vec![mail]).await;
    let message = if unsent.refused > 0 {
        format!(
            "{done} The mail server refused the email to the analyst; they see the decision when they sign in."
        )
    } else if unsent.later > 0 {
        format!(
            "{done} The email to the analyst could not be sent yet; the portal tries again, and they see the \
             decision when they sign in."
        )
    } else {
        format!("{done} The analyst was told by email.")
    };
    Notice::redirect("/officer/access-requests", message)
}

/// Grants a request: the grant's terms as typed (reason, expiry), checked like any grant's.
#[rocket::post("/officer/access-requests/<id>/grant", data = "<form>")]
async fn grant(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<RequestGrantForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let now = ctx.state.clock.now();
    // The grant runs to the end of the chosen day (UTC), as on a submission's page.
    let expires = crate::time::parse_date(&form.expires).map(|d| d + crate::time::DAY - 1);
    let terms = decisions::check_grant_terms(&form.reason, expires.unwrap_or(now + 1), now);
    let mut errors = FieldErrors::new();
    for (field, message) in terms.err().unwrap_or_default() {
        let at = if field == "expires" {
            expires_id(id)
        } else {
            grant_reason_id(id)
        };
        errors.insert(at, message);
    }
    if expires.is_none() {
        errors.insert(
            expires_id(id),
            "Enter the expiry date as YYYY-MM-DD.".into(),
        );
    }
    let expires = match expires {
        Some(e) if errors.is_empty() => e,
        _ => return show_again(&ctx, &officer, Again::Grant(id.to_string(), form), errors).await,
    };
    match access_requests::grant(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        &form.reason,
        expires,
    )
    .await
    {
        Ok(mail) => Ok(Either::Left(notify(&ctx, mail, "Access granted.").await)),
        // The terms were checked above: what is left is the analyst's account (disabled, or no longer an
        // authorized user).
        Err(AppError::Invalid(m)) => {
            let mut errors = FieldErrors::new();
            errors.insert(grant_reason_id(id), m);
            show_again(&ctx, &officer, Again::Grant(id.to_string(), form), errors).await
        }
        Err(e) => Err(e),
    }
}

/// Refuses a request, with the reason required.
#[rocket::post("/officer/access-requests/<id>/refuse", data = "<form>")]
async fn refuse(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: CsrfForm<RefuseForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    if let Err(m) = access_requests::check_refusal(&form.reason) {
        let mut errors = FieldErrors::new();
        errors.insert(refuse_reason_id(id), m);
        return show_again(&ctx, &officer, Again::Refuse(id.to_string(), form), errors).await;
    }
    let mail =
        access_requests::refuse(ctx.state, &officer.user, &ctx.actor, id, &form.reason).await?;
    Ok(Either::Left(
        notify(&ctx, mail, "The request was refused.").await,
    ))
}
