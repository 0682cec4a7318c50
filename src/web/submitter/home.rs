//! The submitter's home: its organisation's submissions, newest first, and the Program Office's notices.

use crate::error::AppResult;
use crate::models::submission::{self, PER_PAGE};
use crate::web::guards::{Ctx, SubmitterUser};
use crate::web::pages::Page;

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
    page: Option<i64>,
) -> AppResult<Page> {
    let page = page.unwrap_or(0).max(0);
    let org = user.user.organisation_id.clone().unwrap_or_default();
    let ((rows, total), notices, unread) = ctx
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
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|s| {
            let label = crate::domain::Status::parse(&s.status)
                .map(|st| st.label())
                .unwrap_or("");
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["status_label"] = serde_json::json!(label);
            v
        })
        .collect();
    Ok(Page::new("dashboard/submitter.html.tera")
        .with("notices", notices)
        .with("unread", unread)
        .with("submissions", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages(total)))
}
