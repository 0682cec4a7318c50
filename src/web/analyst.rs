//! Authorized users: validated PCII they hold a live grant for, while their training is current and their
//! NDA is on file. Every refusal names its reason and is audited.

use crate::audit::log::{Event, Outcome};
use crate::error::{AppError, AppResult};
use crate::models::submission::{self, Submission};
use crate::web::guards::{AnalystUser, Ctx};
use crate::web::pages::Page;
use crate::web::submissions::{
    audit_access, content_view, export_package, file_views, open_attachment, submission_view,
    Download, ZipDownload,
};
use crate::workflow::access::find_for_analyst;
use crate::workflow::documents::read_content;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![detail, download, export]
}

/// The submission if this authorized user may read it now; else the refusal, audited, as a 403 that
/// says why.
async fn admit(ctx: &Ctx<'_>, user: &AnalystUser<'_>, id: &str) -> AppResult<Submission> {
    let (u, sid) = (user.user.clone(), id.to_string());
    let now = ctx.state.clock.now();
    let verdict = ctx
        .state
        .db
        .run(move |c| find_for_analyst(c, &u, &sid, now))
        .await?;
    match verdict {
        Ok(sub) => Ok(sub),
        Err(refusal) => {
            let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
            let event = Event::new("access.refused", Outcome::Refused)
                .object("submission", id.to_string())
                .reason(refusal.code());
            ctx.state
                .db
                .run(move |c| audit.record(c, &actor, event))
                .await?;
            Err(AppError::Refused(refusal.message().into()))
        }
    }
}

#[rocket::get("/analyst/submissions/<id>")]
async fn detail(ctx: Ctx<'_>, user: AnalystUser<'_>, id: &str) -> AppResult<Page> {
    let sub = admit(&ctx, &user, id).await?;
    let blob = sub
        .content_blob_id
        .clone()
        .ok_or_else(|| AppError::Gone("The content of this submission was destroyed.".into()))?;
    let content = read_content(ctx.state, &blob).await?;
    let sid = sub.id.clone();
    let attachments = ctx
        .state
        .db
        .run(move |c| Ok(submission::attachments_of(c, &sid)?))
        .await?;
    audit_access(ctx.state, &ctx.actor, "content.viewed", &sub, None).await?;
    Ok(Page::new("analyst/submission.html.tera")
        .with("submission", submission_view(&sub))
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
    let sub = admit(&ctx, &user, id).await?;
    open_attachment(ctx.state, &ctx.actor, &sub, file).await
}

#[rocket::get("/analyst/submissions/<id>/export")]
async fn export(ctx: Ctx<'_>, user: AnalystUser<'_>, id: &str) -> AppResult<ZipDownload> {
    let sub = admit(&ctx, &user, id).await?;
    export_package(
        ctx.state,
        &ctx.actor,
        &sub,
        "export",
        &user.user.display_name,
    )
    .await
}
