//! PCII officers: one submission (content decrypted as it streams, markings, decisions, grants,
//! disseminations, export), the whole dissemination log, and finding a submission by its tracking number.
//! Drafts are invisible to officers. A form posted with a mistake comes back on the submission's page as
//! typed (422); a final decision is shown with what will follow and applied only once confirmed.

use rocket::http::Status;
use rocket::response::Redirect;
use rocket::Either;

use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account;
use crate::models::grant as grants;
use crate::models::submission::{self, Scope};
use crate::web::downloads::{Download, ZipDownload};
use crate::web::forms::CsrfForm;
use crate::web::guards::{Ctx, FreshFactor, OfficerUser};
use crate::web::officer::forms::{
    grant_ids, revoke_id, summary, Again, DecisionForm, DisseminationForm, FormView, GrantForm,
    RevokeForm, RevokeView,
};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::{
    content_view, destruction_view, file_views, open_disseminations, open_events, open_grants,
    submission_view, Choice,
};
use crate::workflow::access::{self, Admitted, Reading};
use crate::workflow::content::FieldErrors;
use crate::workflow::decisions::{self, Decision, NewDissemination, RECIPIENT_KINDS};
use crate::workflow::lifecycle;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        detail,
        download,
        export,
        decide,
        grant,
        revoke,
        disseminate,
        dissemination_log,
        find
    ]
}

/// A grant on the officer's page, and whether it is live now.
#[derive(serde::Serialize)]
struct GrantLine {
    g: grants::GrantView,
    live: bool,
}

/// The submission if it was sent (drafts are invisible to officers); else 404, audited.
async fn load(ctx: &Ctx<'_>, officer: &OfficerUser<'_>, id: &str) -> AppResult<Admitted> {
    access::admit(ctx.state, &officer.user, &ctx.actor, id).await
}

#[rocket::get("/officer/submissions/<id>")]
async fn detail(ctx: Ctx<'_>, officer: OfficerUser<'_>, id: &str) -> AppResult<Page> {
    let admitted = load(&ctx, &officer, id).await?;
    submission_page(&ctx, &officer, &admitted, None).await
}

/// The submission's page. `again` is a form of it posted with mistakes (each message by the id of its field),
/// or sent back from a confirmation to be changed: the page shows it as typed, with 422 when it has mistakes.
async fn submission_page(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    admitted: &Admitted,
    again: Option<(Again, FieldErrors)>,
) -> AppResult<Page> {
    let state = ctx.state;
    let content = access::read_content(state, admitted, &ctx.actor, Reading::Page(None)).await?;
    let sub = admitted.submission();
    let sid = sub.id.clone();
    let now = state.clock.now();
    let (attachments, mut events, destruction, mut grant_rows, mut dissem, analysts) = state
        .db
        .run(move |c| {
            let grant_rows = grants::grants_of(c, &sid)?;
            let dissem = grants::disseminations_of(c, &sid)?;
            let (analysts, _) = account::list_accounts(c, Some(Role::AuthorizedUser), 0)?;
            Ok((
                submission::attachments_of(c, &sid)?,
                submission::events_of(c, &sid)?,
                submission::destruction_of(c, &sid)?,
                grant_rows,
                dissem,
                analysts,
            ))
        })
        .await?;
    let texts = access::texts(state, admitted).await?;
    open_events(&texts, &mut events);
    open_grants(&texts, &mut grant_rows);
    open_disseminations(&texts, &mut dissem);
    drop(texts);
    let oid = sub.organisation_id.clone();
    // Who submitted, and whether the Program Office has verified that organisation.
    let organisation = state
        .db
        .run(move |c| Ok(account::find_organisation(c, &oid)?))
        .await?;
    let grants: Vec<GrantLine> = grant_rows
        .into_iter()
        .map(|g| GrantLine {
            live: g.revoked_at.is_none() && g.expires_at > now,
            g,
        })
        .collect();
    let analysts: Vec<Choice> = analysts
        .into_iter()
        .filter(|a| !a.disabled)
        .map(|a| Choice {
            label: format!("{} <{}>", a.display_name, a.email),
            value: a.id,
        })
        .collect();
    let days_since = sub.received_at.map(|r| crate::time::days_between(r, now));

    // Every form with its defaults, then the one that comes back as typed.
    let mut decision_form = FormView::new(<DecisionForm as Default>::default());
    let mut removal_form = FormView::new(DecisionForm::removal());
    let mut grant_form = FormView::new(GrantForm {
        expires: crate::time::date(now + 90 * crate::time::DAY),
        ..<GrantForm as Default>::default()
    });
    let mut revoke_form = FormView::new(RevokeView::default());
    let mut dissemination_form = FormView::new(DisseminationForm {
        released_on: crate::time::date(now),
        ..<DisseminationForm as Default>::default()
    });
    let mut error_summary = Vec::new();
    let mut status = Status::Ok;
    if let Some((again, errors)) = again {
        error_summary = summary(&errors, &again.order());
        if !errors.is_empty() {
            status = Status::UnprocessableEntity;
        }
        match again {
            Again::Decision(values) if values.is_removal() => {
                removal_form = FormView { values, errors }
            }
            Again::Decision(values) => decision_form = FormView { values, errors },
            Again::Grant(values) => grant_form = FormView { values, errors },
            Again::Revoke { grant, form } => {
                revoke_form = FormView {
                    values: RevokeView {
                        grant,
                        reason: form.reason,
                    },
                    errors,
                }
            }
            Again::Dissemination(values) => dissemination_form = FormView { values, errors },
        }
    }
    Ok(Page::new("officer/submission.html.tera")
        .with("submission", submission_view(sub))
        .with("content", content.as_ref().map(content_view))
        .with("files", file_views(content.as_ref(), &attachments))
        .with(
            "file_base",
            format!("/officer/submissions/{}/files", sub.id),
        )
        .with("events", events)
        .with("destruction", destruction_view(destruction))
        .with("grants", grants)
        .with("disseminations", dissem)
        .with("analysts", analysts)
        .with("recipient_kinds", RECIPIENT_KINDS)
        .with("organisation", organisation)
        .with("days_since_receipt", days_since)
        .with("may", lifecycle::affordances(sub, &officer.user))
        .with("can_export", content.is_some())
        .with("decision_form", decision_form)
        .with("removal_form", removal_form)
        .with("grant_form", grant_form)
        .with("revoke_form", revoke_form)
        .with("dissemination_form", dissemination_form)
        .with("error_summary", error_summary)
        .status(status))
}

#[rocket::get("/officer/submissions/<id>/files/<file>")]
async fn download(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    let admitted = load(&ctx, &officer, id).await?;
    let opened = access::open_attachment(ctx.state, &admitted, &ctx.actor, file).await?;
    Ok(Download(opened))
}

#[rocket::get("/officer/submissions/<id>/export")]
async fn export(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    _fresh: FreshFactor,
    id: &str,
) -> AppResult<ZipDownload> {
    let admitted = load(&ctx, &officer, id).await?;
    let package = access::export_package(
        ctx.state,
        &admitted,
        &ctx.actor,
        "export",
        &officer.user.display_name,
    )
    .await?;
    Ok(ZipDownload(package))
}

/// The submission's page with `form` shown again as typed and `errors` next to its fields.
async fn show_again(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    admitted: &Admitted,
    form: Again,
    errors: FieldErrors,
) -> AppResult<Either<Notice, Page>> {
    let page = submission_page(ctx, officer, admitted, Some((form, errors))).await?;
    Ok(Either::Right(page))
}

/// A decision, or the removal of protection. A mistake brings the form back as typed; a decision the
/// lifecycle does not allow here (a stale page) is refused as the service would (409, or 403 for the
/// officer's own organisation). A final decision is first shown with what will follow, changing nothing;
/// only the confirmation page's button (`confirm=1`) applies it.
#[rocket::post("/officer/submissions/<id>/decision", data = "<form>")]
async fn decide(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DecisionForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let admitted = load(&ctx, &officer, id).await?;
    let sub = admitted.submission();
    if form.change == "1" {
        return show_again(
            &ctx,
            &officer,
            &admitted,
            Again::Decision(form),
            FieldErrors::new(),
        )
        .await;
    }
    let Some(decision) = Decision::parse(&form.decision) else {
        let mut errors = FieldErrors::new();
        errors.insert("decision".into(), "Choose a decision.".into());
        return show_again(&ctx, &officer, &admitted, Again::Decision(form), errors).await;
    };
    let to = decisions::may_decide(&officer.user, sub, decision)?;
    let errors = form.word_errors(decision);
    if !errors.is_empty() {
        return show_again(&ctx, &officer, &admitted, Again::Decision(form), errors).await;
    }
    if decision.is_final() && form.confirm != "1" {
        return Ok(Either::Right(
            confirmation_page(&ctx, sub, decision, to, &form).await?,
        ));
    }
    match decisions::decide(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        decision,
        &form.words(),
    )
    .await
    {
        Ok(status) => Ok(Either::Left(Notice::redirect(
            format!("/officer/submissions/{id}"),
            format!("Recorded: {}. The submitter was notified.", status.label()),
        ))),
        // The words were checked above; should the service still refuse them, they come back as typed.
        Err(AppError::Invalid(m)) => {
            let mut errors = FieldErrors::new();
            errors.insert(form.reason_id().into(), m);
            show_again(&ctx, &officer, &admitted, Again::Decision(form), errors).await
        }
        Err(e) => Err(e),
    }
}

/// What a final decision will do, for the officer to confirm: the typed words ride along in hidden fields.
/// Nothing is read from the content and nothing is recorded: the page changes nothing.
async fn confirmation_page(
    ctx: &Ctx<'_>,
    sub: &submission::Submission,
    decision: Decision,
    to: crate::domain::Status,
    form: &DecisionForm,
) -> AppResult<Page> {
    let now = ctx.state.clock.now();
    let (oid, sid) = (sub.organisation_id.clone(), sub.id.clone());
    let (organisation, live_grants) = ctx
        .state
        .db
        .run(move |c| {
            let organisation = account::find_organisation(c, &oid)?.map(|o| o.name);
            let live = grants::grants_of(c, &sid)?
                .iter()
                .filter(|g| g.revoked_at.is_none() && g.expires_at > now)
                .count();
            Ok((organisation, live))
        })
        .await?;
    let tn = sub.tracking_number.as_deref().unwrap_or("this submission");
    let (title, button) = match decision {
        Decision::Validate => (format!("Validate {tn}?"), "Confirm: validated"),
        Decision::NotValidate => (
            format!("Decide that {tn} is not validated?"),
            "Confirm: not validated",
        ),
        Decision::RemoveProtection => (
            format!("Remove the protection of {tn}?"),
            "Confirm: remove protection",
        ),
        // Not final, so never asked; named all the same.
        Decision::Defective => (format!("Mark {tn} defective?"), "Confirm: defective"),
    };
    Ok(Page::new("officer/confirm_decision.html.tera")
        .with("submission", submission_view(sub))
        .with("title", title)
        .with("button", button)
        .with("decision", decision.as_str())
        .with("to_label", to.label())
        .with("organisation", organisation)
        .with("live_grants", live_grants)
        .with("words", form.words())
        .with("form", form))
}

/// Need-to-know access for an authorized user. Mistakes bring the form back as typed.
#[rocket::post("/officer/submissions/<id>/grants", data = "<form>")]
async fn grant(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<GrantForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let admitted = load(&ctx, &officer, id).await?;
    // A form for a submission that is no longer releasable is refused as such, not corrected field by field.
    decisions::may_release(&officer.user, admitted.submission())?;
    let now = ctx.state.clock.now();
    // The grant runs to the end of the chosen day (UTC).
    let expires = crate::time::parse_date(&form.expires).map(|d| d + crate::time::DAY - 1);
    // An unreadable date is reported as such; the reason is checked as if the date were valid.
    let terms = decisions::check_grant_terms(&form.reason, expires.unwrap_or(now + 1), now);
    let mut errors = grant_ids(terms.err().unwrap_or_default());
    if expires.is_none() {
        errors.insert(
            "expires".into(),
            "Enter the expiry date as YYYY-MM-DD.".into(),
        );
    }
    if form.user_id.trim().is_empty() {
        errors.insert("user_id".into(), "Choose an authorized user.".into());
    }
    let expires = match expires {
        Some(expires) if errors.is_empty() => expires,
        _ => return show_again(&ctx, &officer, &admitted, Again::Grant(form), errors).await,
    };
    match decisions::grant(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        &form.user_id,
        &form.reason,
        expires,
    )
    .await
    {
        Ok(()) => Ok(Either::Left(Notice::redirect(
            format!("/officer/submissions/{id}"),
            "Access granted.",
        ))),
        // The terms were checked above: what is left is the account chosen (disabled, or not an authorized user).
        Err(AppError::Invalid(m)) => {
            let mut errors = FieldErrors::new();
            errors.insert("user_id".into(), m);
            show_again(&ctx, &officer, &admitted, Again::Grant(form), errors).await
        }
        Err(e) => Err(e),
    }
}

#[rocket::post("/officer/submissions/<id>/grants/<grant>/revoke", data = "<form>")]
async fn revoke(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    grant: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    match decisions::revoke(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        grant,
        &form.reason,
    )
    .await
    {
        Ok(()) => Ok(Either::Left(Notice::redirect(
            format!("/officer/submissions/{id}"),
            "The grant was revoked.",
        ))),
        // The reason is all a revocation's form holds, so it is what was refused.
        Err(AppError::Invalid(m)) => {
            let admitted = load(&ctx, &officer, id).await?;
            let mut errors = FieldErrors::new();
            errors.insert(revoke_id(grant), m);
            let form = Again::Revoke {
                grant: grant.to_string(),
                form,
            };
            show_again(&ctx, &officer, &admitted, form, errors).await
        }
        Err(e) => Err(e),
    }
}

/// A release recorded in the dissemination log. Mistakes bring the form back as typed.
#[rocket::post("/officer/submissions/<id>/disseminations", data = "<form>")]
async fn disseminate(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DisseminationForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let admitted = load(&ctx, &officer, id).await?;
    decisions::may_release(&officer.user, admitted.submission())?;
    let now = ctx.state.clock.now();
    let released_at = crate::time::parse_date(&form.released_on);
    let release = NewDissemination {
        recipient: form.recipient.clone(),
        recipient_kind: form.recipient_kind.clone(),
        arrangement: form.arrangement.clone(),
        what: form.what.clone(),
        // An unreadable date is reported as such; the other fields are checked as if it were today.
        released_at: released_at.unwrap_or(now),
        sanitized: form.sanitized == "yes",
        removed: form.removed.clone(),
    };
    let mut errors = decisions::check_dissemination(&release, now);
    if released_at.is_none() {
        errors.insert(
            "released_on".into(),
            "Enter the release date as YYYY-MM-DD.".into(),
        );
    }
    if !errors.is_empty() {
        return show_again(
            &ctx,
            &officer,
            &admitted,
            Again::Dissemination(form),
            errors,
        )
        .await;
    }
    decisions::record_dissemination(ctx.state, &officer.user, &ctx.actor, id, release).await?;
    Ok(Either::Left(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "The release was recorded in the dissemination log.",
    )))
}

const LOG_PER_PAGE: i64 = 50;

#[rocket::get("/officer/disseminations?<page>")]
async fn dissemination_log(
    ctx: Ctx<'_>,
    _officer: OfficerUser<'_>,
    page: Option<&str>,
) -> AppResult<Page> {
    let page = crate::web::forms::page_index(page)?;
    let (rows, total) = ctx
        .state
        .db
        .run(move |c| {
            let total = grants::dissemination_count(c)?;
            let rows = grants::dissemination_log(c, LOG_PER_PAGE, page * LOG_PER_PAGE)?;
            Ok((rows, total))
        })
        .await?;
    // Officers read every released (validated) submission's texts; the keys are unwrapped for this page only.
    let mut rows = rows;
    let ids: Vec<String> = rows.iter().map(|r| r.submission_id.clone()).collect();
    let texts = crate::workflow::sealed_text::Texts::load(ctx.state, ids).await?;
    crate::web::views::open_disseminations(&texts, &mut rows);
    Ok(Page::new("officer/disseminations.html.tera")
        .with("rows", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", (total + LOG_PER_PAGE - 1) / LOG_PER_PAGE))
}

/// Any submission past the draft stage by its tracking number (validated and closed ones leave the queue).
/// Without a number, the form; with one that is malformed (422) or not found (404), the form again with the
/// number as typed and the reason next to it.
#[rocket::get("/officer/find?<tracking>")]
async fn find(
    ctx: Ctx<'_>,
    _officer: OfficerUser<'_>,
    tracking: Option<&str>,
) -> AppResult<Either<Redirect, Page>> {
    let typed = tracking.unwrap_or("").trim().to_string();
    let again = |message: String, status: Status| {
        let mut errors = FieldErrors::new();
        errors.insert("find-tracking".into(), message);
        Either::Right(
            Page::new("officer/find.html.tera")
                .with("tracking", &typed)
                .with("errors", errors)
                .status(status),
        )
    };
    if tracking.is_none() {
        return Ok(Either::Right(
            Page::new("officer/find.html.tera").with("tracking", ""),
        ));
    }
    let tn = typed.to_uppercase();
    if !crate::workflow::content::is_tracking_number(&tn) {
        return Ok(again(
            "Enter a tracking number like PCII-2026-000123.".into(),
            Status::UnprocessableEntity,
        ));
    }
    let found = ctx
        .state
        .db
        .run({
            let tn = tn.clone();
            move |c| Ok(submission::find_by_tracking(c, &tn, Scope::ProgramOffice)?)
        })
        .await;
    match found {
        Ok(sub) => Ok(Either::Left(Redirect::to(format!(
            "/officer/submissions/{}",
            sub.id
        )))),
        Err(AppError::NotFound) => Ok(again(
            format!(
                "No submission has the tracking number {tn}. Drafts are not shown to officers."
            ),
            Status::NotFound,
        )),
        Err(e) => Err(e),
    }
}
