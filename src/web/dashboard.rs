//! `/dashboard` sends each role to its own home page; the submitter's, officer's and authorized user's homes.

use rocket::response::Redirect;

use crate::error::AppResult;
use crate::models::account::Role;
use crate::models::submission::{self, PER_PAGE};
use crate::web::guards::{AnalystUser, Ctx, CurrentUser, OfficerUser, SubmitterUser};
use crate::web::pages::Page;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![dashboard, submitter_home, officer_home, analyst_home]
}

pub fn home_of(role: Role) -> &'static str {
    match role {
        Role::Submitter => "/submissions",
        Role::Officer => "/officer",
        Role::AuthorizedUser => "/analyst",
        Role::Auditor => "/audit",
        Role::Administrator => "/admin",
    }
}

#[rocket::get("/dashboard")]
fn dashboard(user: CurrentUser<'_>) -> Redirect {
    Redirect::to(home_of(user.role))
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
    let ((rows, total), notices) = ctx
        .state
        .db
        .run(move |c| {
            Ok((
                submission::for_organisation(c, &org, page)?,
                submission::notices_for(c, &org, None, 10)?,
            ))
        })
        .await?;
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|s| {
            let label = crate::workflow::lifecycle::Status::parse(&s.status)
                .map(|st| st.label())
                .unwrap_or("");
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["status_label"] = serde_json::json!(label);
            v
        })
        .collect();
    Ok(Page::new("dashboard/submitter.html.tera")
        .with("notices", notices)
        .with("submissions", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages(total)))
}

#[rocket::get("/officer?<page>")]
async fn officer_home(
    ctx: Ctx<'_>,
    _officer: OfficerUser<'_>,
    page: Option<i64>,
) -> AppResult<Page> {
    let page = page.unwrap_or(0).max(0);
    let (rows, total) = ctx
        .state
        .db
        .run(move |c| Ok(submission::queue(c, page)?))
        .await?;
    let now = crate::db::now();
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(s, org)| {
            let days = s.received_at.map(|r| crate::time::days_between(r, now));
            serde_json::json!({ "s": s, "organisation": org, "days": days })
        })
        .collect();
    Ok(Page::new("dashboard/officer.html.tera")
        .with("queue", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages(total)))
}

#[rocket::get("/analyst")]
async fn analyst_home(ctx: Ctx<'_>, user: AnalystUser<'_>) -> AppResult<Page> {
    let uid = user.user.id.clone();
    let now = crate::db::now();
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
