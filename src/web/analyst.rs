//! Authorized users: validated PCII they hold a live grant for, while their training is current and their
//! NDA is on file. Whether they may is decided by the content-access service; every refusal names its
//! reason and is audited there.

use crate::error::{AppError, AppResult};
use crate::web::downloads::{Download, ZipDownload};
use crate::web::guards::{AnalystUser, Ctx};
use crate::web::pages::Page;
use crate::web::views::{content_view, file_views, submission_view};
use crate::workflow::access::{self, Reading};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![detail, download, export]
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
async fn export(ctx: Ctx<'_>, user: AnalystUser<'_>, id: &str) -> AppResult<ZipDownload> {
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
