//! Authorized users: validated PCII they hold a live grant for, while their training is current and their
//! NDA is on file. Whether they may is decided by the content-access service; every refusal names its
//! reason and is audited there.

use crate::error::{AppError, AppResult};
use crate::models::submission;
use crate::web::downloads::{Download, ZipDownload};
use crate::web::guards::{AnalystUser, Ctx, FreshFactor};
use crate::web::pages::Page;
use crate::web::views::{content_view, file_views, submission_view};
use crate::workflow::access::{self, Reading};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![analyst_home, detail, download, export]
}

#[rocket::get("/analyst/submissions/<id>")]
async fn detail(ctx: Ctx<'_>, user: AnalystUser<'_>, id: &str) -> AppResult<Page> {
    let admitted = access::admit(ctx.state, &user.user, &ctx.actor, id).await?;
    let content = access::read_content(ctx.state, &admitted, &ctx.actor, Reading::Page(None))
        .await?
        .ok_or_else(|| AppError::Gone("The content of this submission was destroyed.".into()))?;
    let attachments = access::attachments(ctx.state, &admitted).await?;
    let sub = admitted.submission();
    Ok(Page::new("analyst/submission.html.tera")
        .with("submission", submission_view(sub))
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
    let package = access::export_package(
        ctx.state,
        &admitted,
        &ctx.actor,
        "export",
        &user.user.display_name,
    )
    .await?;
    Ok(ZipDownload(package))
}

/// The authorized user's home: its live grants and whether its training and NDA are current.
#[rocket::get("/analyst")]
async fn analyst_home(ctx: Ctx<'_>, user: AnalystUser<'_>) -> AppResult<Page> {
    let uid = user.user.id.clone();
    let now = ctx.state.clock.now();
    let grants = ctx
        .state
        .db
        .run(move |c| Ok(submission::live_grants(c, &uid, now)?))
        .await?;
    let training_current = user
        .user
        .training_completed_at
        .is_some_and(|t| now - t <= 365 * crate::time::DAY);
    Ok(Page::new("dashboard/analyst.html.tera")
        .with("grants", grants)
        .with("training_current", training_current)
        .with("training_completed_at", user.user.training_completed_at)
        .with("nda_signed_at", user.user.nda_signed_at))
}
