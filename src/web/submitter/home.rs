//! The submitter's home: its organisation's submissions, newest first, and the Program Office's notices.

use crate::error::AppResult;
use crate::models::submission::{self, PER_PAGE};
use crate::web::guards::{Ctx, SubmitterUser};
use crate::web::pages::Page;
use crate::web::views::SubmissionLine;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![submitter_home]
}

fn pages(total: i64) -> i64 {
    (total + PER_PAGE - 1) / PER_PAGE
}

#[rocket::get("/submissions?<page>")]
async fn submitter_home(
    ctx: Ctx<'_>,
    user: SubmitterUser<'_>,
    page: Option<&str>,
) -> AppResult<Page> {
    let page = crate::web::forms::page_index(page)?;
    let org = user.user.organisation_id.clone().unwrap_or_default();
    let ((rows, total), mut notices, unread) = ctx
        .state
        .db
        .run(move |c| {
            Ok((
                submission::for_organisation(c, &org, page)?,
                submission::notices_for(c, &org, None, 10)?,
                submission::unread_notices(c, &org)?,
            ))
        })
        .await?;
    // The notices are the organisation's own (the query is scoped to it): their sealed texts open for its members.
    let ids: Vec<String> = notices.iter().map(|n| n.submission_id.clone()).collect();
    let texts = crate::workflow::sealed_text::Texts::load(ctx.state, ids).await?;
    crate::web::views::open_notices(&texts, &mut notices);
    let rows: Vec<SubmissionLine> = rows.into_iter().map(SubmissionLine::from).collect();
    // The organisation's own rows (the query above is scoped to it): their sealed titles open for its members,
    // only for the rows shown.
    let titles = crate::workflow::cases::titles_for(
        ctx.state,
        rows.iter().map(|r| r.row.id.clone()).collect(),
        crate::models::submission::TitleAsOf::Saved,
    )
    .await?;
    let unread_messages = crate::workflow::messages::unread_for_user(
        ctx.state,
        &user.user,
        rows.iter().map(|r| r.row.id.clone()).collect(),
    )
    .await?;
    // The notices shown quote officers' words about their submissions (a defect list), whichever page of the list
    // is shown: they count towards the marking like the titles.
    let marking = crate::workflow::content::list_marking(
        rows.iter()
            .filter(|r| titles.contains_key(&r.row.id))
            .map(|r| r.row.status)
            .chain(notices.iter().map(|n| n.status)),
    );
    Ok(Page::new("dashboard/submitter.html.tera")
        .with("marking", marking)
        .with("unread_messages", unread_messages)
        .with("notices", notices)
        .with("unread", unread)
        .with("submissions", rows)
        .with("titles", titles)
        .with("total", total)
        .with("page", page)
        .with("pages", pages(total)))
}
