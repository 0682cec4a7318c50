//! Authorized users: validated PCII they hold a live grant for, while their training is current and their
//! NDA is on file. Whether they may is decided by the content-access service; every refusal names its
//! reason and is audited there. Their home lists their live grants (title, reason, days left) and their requests
//! for access, and takes a new request by tracking number.

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::web::downloads::{Download, ZipDownload};
use crate::web::forms::summary;
use crate::web::forms::CsrfForm;
use crate::web::guards::{AnalystUser, Ctx, FreshFactor};
use crate::web::officer::forms::FormView;
use crate::web::pages::{Notice, Page};
use crate::web::views::{content_view, file_views};
use crate::workflow::access::{self, Reading};
use crate::workflow::access_requests::{self, EXPIRY_WARNING_DAYS};
use crate::workflow::content::FieldErrors;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![analyst_home, request_access, detail, download, export]
}

#[rocket::get("/analyst/submissions/<id>")]
async fn detail(ctx: Ctx<'_>, user: AnalystUser<'_>, id: &str) -> AppResult<Page> {
    let admitted = access::admit(ctx.state, &user.user, &ctx.actor, id).await?;
    let content = access::read_content(ctx.state, &admitted, &ctx.actor, Reading::Page(None))
        .await?
        .ok_or_else(|| AppError::Gone("The content of this submission was destroyed.".into()))?;
    let attachments = admitted.shown_attachments(
        Some(&content),
        access::attachments(ctx.state, &admitted).await?,
    );
    let sub = admitted.submission();
    Ok(Page::new("analyst/submission.html.tera")
        .with(
            "submission",
            crate::web::views::shown_submission_view(&admitted, &attachments),
        )
        .with("content", content_view(&content))
        .with("files", file_views(Some(&content), &attachments))
        .with(
            "file_base",
            format!("/analyst/submissions/{}/files", sub.id),
        ))
}

#[rocket::get("/analyst/submissions/<id>/files/<file>")]
async fn download(
    ctx: Ctx<'_>,
    user: AnalystUser<'_>,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    let admitted = access::admit(ctx.state, &user.user, &ctx.actor, id).await?;
    let opened = access::open_attachment(ctx.state, &admitted, &ctx.actor, file).await?;
    Ok(Download::from(opened))
}

#[rocket::get("/analyst/submissions/<id>/export")]
async fn export(
    ctx: Ctx<'_>,
    user: AnalystUser<'_>,
    _fresh: FreshFactor,
    id: &str,
) -> AppResult<ZipDownload> {
    let admitted = access::admit(ctx.state, &user.user, &ctx.actor, id).await?;
    let package = access::export_package(ctx.state, &admitted, &ctx.actor, "export").await?;
    Ok(ZipDownload(package))
}

/// The request form as typed.
#[derive(FromForm, Serialize, Clone, Default)]
pub struct RequestForm {
    #[field(default = String::new())]
    pub tracking: String,
    #[field(default = String::new())]
    pub reason: String,
}
debug_without_words!(RequestForm);

/// The order of the request form's fields, for the summary of its problems.
const REQUEST_IDS: [&str; 2] = ["tracking", "reason"];

/// The authorized user's home: its training and NDA, its live grants (title and reason while it may read the
/// submission, days left, a warning near the end), its requests, and the request form.
#[rocket::get("/analyst")]
async fn analyst_home(ctx: Ctx<'_>, user: AnalystUser<'_>) -> AppResult<Page> {
    home(
        &ctx,
        &user,
        FormView::new(<RequestForm as Default>::default()),
    )
    .await
}

/// The home with the request form as given (as typed, with its problems: 422).
async fn home(
    ctx: &Ctx<'_>,
    user: &AnalystUser<'_>,
    form: FormView<RequestForm>,
) -> AppResult<Page> {
    let state = ctx.state;
    let now = state.clock.now();
    let grants = access_requests::grants_list(state, &user.user, &ctx.actor).await?;
    let requests = access_requests::own_requests(state, &user.user).await?;
    let u = user.user.clone();
    let refusal = state
        .db
        .run(move |c| access_requests::person_refusal(c, &u, now))
        .await?;
    let training_current = user
        .user
        .training_completed_at
        .is_some_and(|t| now - t <= crate::domain::TRAINING_VALID_DAYS * crate::time::DAY);
    let order: Vec<String> = REQUEST_IDS.iter().map(|s| s.to_string()).collect();
    let error_summary = summary(&form.errors, &order);
    let status = if form.errors.is_empty() {
        Status::Ok
    } else {
        Status::UnprocessableEntity
    };
    let requests_total = requests.total;
    let requests: Vec<RequestLine> = requests
        .rows
        .into_iter()
        .map(|r| RequestLine {
            state_label: r.state.label(),
            r,
        })
        .collect();
    // A grant is to validated PCII: a title shown is PCII.
    let shown = grants
        .iter()
        .any(|g| g.title.is_some())
        .then_some(crate::domain::Status::Validated);
    Ok(Page::new("dashboard/analyst.html.tera")
        .with("marking", crate::workflow::content::list_marking(shown))
        .with("grants", grants)
        .with("warning_days", EXPIRY_WARNING_DAYS)
        .with("requests", requests)
        .with("requests_total", requests_total)
        .with("may_request", refusal.is_none())
        .with("refusal", refusal.map(|r| r.message()))
        .with("request_form", form)
        .with("error_summary", error_summary)
        .with("training_current", training_current)
        .with("training_completed_at", user.user.training_completed_at)
        .with("nda_signed_at", user.user.nda_signed_at)
        .with("nda_expires_at", user.user.nda_expires_at)
        .with(
            "training_expires_at",
            user.user
                .training_completed_at
                .map(|t| t + crate::domain::TRAINING_VALID_DAYS * crate::time::DAY),
        )
        .with(
            "nda_current",
            user.user.nda_expires_at.is_none_or(|e| e > now),
        )
        .status(status))
}

/// One of the analyst's requests, with its state in words.
#[derive(Serialize)]
struct RequestLine {
    r: crate::models::access_request::OwnRequest,
    state_label: &'static str,
}

/// A request for access to a validated submission by its tracking number. Mistakes bring the form back as
/// typed (422); a number that is not validated PCII's is answered alike whether or not a submission has it.
#[rocket::post("/analyst/access-requests", data = "<form>")]
async fn request_access(
    ctx: Ctx<'_>,
    user: AnalystUser<'_>,
    form: CsrfForm<RequestForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let errors = match access_requests::request(
        ctx.state,
        &user.user,
        &ctx.actor,
        &form.tracking,
        &form.reason,
    )
    .await
    {
        Ok(Ok(())) => {
            return Ok(Either::Left(Notice::redirect(
                "/analyst",
                "Your request was sent to the PCII Program Office. You will get an email once it is decided.",
            )))
        }
        Ok(Err(errors)) => errors,
        // The form was checked first; what the service still refuses (a request made meanwhile) is the number's.
        Err(AppError::Invalid(m)) => {
            let mut errors = FieldErrors::new();
            errors.insert("tracking".into(), m);
            errors
        }
        Err(e) => return Err(e),
    };
    let page = home(
        &ctx,
        &user,
        FormView {
            values: form,
            errors,
        },
    )
    .await?;
    Ok(Either::Right(page))
}
