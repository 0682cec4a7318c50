//! PCII officers: one submission (content decrypted as it streams, markings, decisions, grants,
//! disseminations, export) and the whole dissemination log. Drafts are invisible to officers.

use rocket::form::FromForm;

use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account;
use crate::models::grant as grants;
use crate::models::submission::{self, Scope};
use crate::web::downloads::{Download, ZipDownload};
use crate::web::forms::CsrfForm;
use crate::web::guards::{Ctx, FreshFactor, OfficerUser};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::{
    content_view, destruction_view, file_views, open_disseminations, open_events, open_grants,
    submission_view, Choice,
};
use crate::workflow::access::{self, Admitted, Reading};
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
    let state = ctx.state;
    let admitted = load(&ctx, &officer, id).await?;
    let content = access::read_content(state, &admitted, &ctx.actor, Reading::Page(None)).await?;
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
    let texts = access::texts(state, &admitted).await?;
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
        .with("today", crate::time::date(now))
        .with(
            "default_expiry",
            crate::time::date(now + 90 * crate::time::DAY),
        ))
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

#[derive(FromForm)]
struct DecisionForm {
    #[field(default = String::new())]
    decision: String,
    #[field(default = String::new())]
    reason: String,
}

#[rocket::post("/officer/submissions/<id>/decision", data = "<form>")]
async fn decide(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DecisionForm>,
) -> AppResult<Notice> {
    let decision = Decision::parse(&form.0.decision)
        .ok_or_else(|| AppError::Invalid("Choose a decision.".into()))?;
    let status = decisions::decide(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        decision,
        &form.0.reason,
    )
    .await?;
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        format!("Recorded: {}. The submitter was notified.", status.label()),
    ))
}

#[derive(FromForm)]
struct GrantForm {
    #[field(default = String::new())]
    user_id: String,
    #[field(default = String::new())]
    reason: String,
    #[field(default = String::new())]
    expires: String,
}

#[rocket::post("/officer/submissions/<id>/grants", data = "<form>")]
async fn grant(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<GrantForm>,
) -> AppResult<Notice> {
    // The grant runs to the end of the chosen day (UTC).
    let expires = crate::time::parse_date(&form.0.expires)
        .map(|d| d + crate::time::DAY - 1)
        .ok_or_else(|| AppError::Invalid("Enter the expiry date as YYYY-MM-DD.".into()))?;
    decisions::grant(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        &form.0.user_id,
        &form.0.reason,
        expires,
    )
    .await?;
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "Access granted.",
    ))
}

#[derive(FromForm)]
struct RevokeForm {
    #[field(default = String::new())]
    reason: String,
}

#[rocket::post("/officer/submissions/<id>/grants/<grant>/revoke", data = "<form>")]
async fn revoke(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    grant: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Notice> {
    decisions::revoke(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        grant,
        &form.0.reason,
    )
    .await?;
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "The grant was revoked.",
    ))
}

#[derive(FromForm)]
struct DisseminationForm {
    #[field(default = String::new())]
    recipient: String,
    #[field(default = String::new())]
    recipient_kind: String,
    #[field(default = String::new())]
    arrangement: String,
    #[field(default = String::new())]
    what: String,
    #[field(default = String::new())]
    released_on: String,
    #[field(default = String::new())]
    sanitized: String,
    #[field(default = String::new())]
    removed: String,
}

#[rocket::post("/officer/submissions/<id>/disseminations", data = "<form>")]
async fn disseminate(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DisseminationForm>,
) -> AppResult<Notice> {
    let f = form.0;
    let released_at = crate::time::parse_date(&f.released_on)
        .ok_or_else(|| AppError::Invalid("Enter the release date as YYYY-MM-DD.".into()))?;
    decisions::record_dissemination(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        NewDissemination {
            recipient: f.recipient,
            recipient_kind: f.recipient_kind,
            arrangement: f.arrangement,
            what: f.what,
            released_at,
            sanitized: f.sanitized == "yes",
            removed: f.removed,
        },
    )
    .await?;
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "The release was recorded in the dissemination log.",
    ))
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
#[rocket::get("/officer/find?<tracking>")]
async fn find(
    ctx: Ctx<'_>,
    _officer: OfficerUser<'_>,
    tracking: Option<&str>,
) -> AppResult<rocket::response::Redirect> {
    let tn = tracking.unwrap_or("").trim().to_uppercase();
    if !crate::workflow::content::is_tracking_number(&tn) {
        return Err(AppError::Invalid(
            "Enter a tracking number like PCII-2026-000123.".into(),
        ));
    }
    let sub = ctx
        .state
        .db
        .run(move |c| Ok(submission::find_by_tracking(c, &tn, Scope::ProgramOffice)?))
        .await?;
    Ok(rocket::response::Redirect::to(format!(
        "/officer/submissions/{}",
        sub.id
    )))
}
