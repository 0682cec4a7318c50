//! A submission's message thread, seen by PCII officers: the page (which marks it read), writing a message (with an
//! optional formal request for information) and downloading the files. Admission is the officer's submission page's
//! (`access::admit`: drafts are invisible); the page and the posting are shared with the submitters' routes.

use rocket::http::ContentType;
use rocket::{Data, Either};

use crate::error::AppResult;
use crate::web::downloads::Download;
use crate::web::forms::TokenCheck;
use crate::web::guards::{Ctx, OfficerUser};
use crate::web::pages::{Notice, Page};
use crate::web::submitter::messages::{download_file, post_message, thread_page};
use crate::workflow::access;
use crate::workflow::messages::ThreadPage;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![thread, send, download]
}

#[rocket::get("/officer/submissions/<id>/messages?<before>")]
async fn thread(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    before: Option<&str>,
) -> AppResult<Page> {
    let which = ThreadPage::parse(before)?;
    let admitted = access::admit(ctx.state, &officer.user, &ctx.actor, id).await?;
    thread_page(&ctx, &officer.user, &admitted, which, None).await
}

#[rocket::post("/officer/submissions/<id>/messages", data = "<data>")]
async fn send(
    token: TokenCheck<'_>,
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    content_type: Option<&ContentType>,
    data: Data<'_>,
) -> AppResult<Either<Notice, Page>> {
    post_message(&token, &ctx, &officer.user, id, content_type, data).await
}

#[rocket::get("/officer/submissions/<id>/messages/files/<file>")]
async fn download(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    download_file(&ctx, &officer.user, id, file).await
}
