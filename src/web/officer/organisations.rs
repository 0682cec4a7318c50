//! PCII officers: the organisations (list, one organisation's page), verification, proposing (and withdrawing)
//! merges of duplicates, which each company's administrator accepts or refuses, and administrators' invitations
//! into organisations that have no organisation administrator to decide them.

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;
use serde::Serialize;

use crate::auth::membership;
use crate::error::{AppError, AppResult};
use crate::models::account::{self, Organisation};
use crate::models::invitation::{self, InvitationRow};
use crate::models::merge_proposal::{self as proposals, ProposalRow};
use crate::models::organisation::{self as orgs, OrganisationFilter, ORGANISATIONS_PER_PAGE};
use crate::web::deliver;
use crate::web::forms::{trimmed, CsrfForm, NoFields};
use crate::web::guards::{Ctx, OfficerUser};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::PageLinks;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, detail, verify, merge, withdraw_merge, approve, refuse]
}

const LIST: &str = "/officer/organisations";

#[derive(Debug, Clone, Serialize)]
struct ListForm {
    q: String,
    verified: String,
}

impl ListForm {
    fn link(&self, page: i64) -> String {
        let mut l = format!(
            "{LIST}?q={}&verified={}",
            urlencode(&self.q),
            urlencode(&self.verified)
        );
        if page > 0 {
            l.push_str(&format!("&page={page}"));
        }
        l
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[rocket::get("/officer/organisations?<q>&<verified>&<page>")]
async fn list(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    q: Option<&str>,
    verified: Option<&str>,
    page: Option<&str>,
) -> AppResult<Page> {
    let form = ListForm {
        q: trimmed(q),
        verified: match trimmed(verified).as_str() {
            "yes" => "yes".into(),
            "no" => "no".into(),
            _ => String::new(),
        },
    };
    // A name typed is matched with LIKE, whose pattern SQLite caps (50,000 bytes); no name is this long.
    if form.q.chars().count() > crate::web::forms::SEARCH_TEXT_MAX_CHARS {
        return Err(AppError::Invalid(format!(
            "Enter at most {} characters of the organisation's name.",
            crate::web::forms::SEARCH_TEXT_MAX_CHARS
        )));
    }
    let filter = OrganisationFilter {
        name: form.q.clone(),
        verified: match form.verified.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
    };
    let page = crate::web::forms::page_index(page)?;
    let now = ctx.state.clock.now();
    let ((rows, total), awaiting) = ctx
        .state
        .db
        .run(move |c| {
            Ok((
                orgs::list(c, &filter, page)?,
                invitation::awaiting_officer(c, None, now)?,
            ))
        })
        .await?;
    let pages = ((total + ORGANISATIONS_PER_PAGE - 1) / ORGANISATIONS_PER_PAGE).max(1);
    Ok(Page::new("officer/organisations.html.tera")
        .with("organisations", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages)
        .with("form", &form)
        .with(
            "page_links",
            PageLinks {
                prev: (page > 0).then(|| form.link(page - 1)),
                next: (page + 1 < pages).then(|| form.link(page + 1)),
                ..PageLinks::default()
            },
        )
        .with("awaiting", awaiting)
        // An officer recorded against an organisation decides no invitation into it: its rows say so.
        .with("own_organisation_id", &officer.user.organisation_id))
}

#[derive(Serialize)]
struct Detail {
    organisation: Organisation,
    members: Vec<orgs::MemberRow>,
    submissions: i64,
    verified_by_name: Option<String>,
    merged_into: Option<Organisation>,
    merged_from: Vec<Organisation>,
    awaiting: crate::models::Capped<InvitationRow>,
    has_admin: bool,
    /// It has one, but none enabled: invitations into it wait all the same.
    admin_disabled: bool,
    proposals: Vec<ProposalRow>,
}

#[rocket::get("/officer/organisations/<id>")]
async fn detail(ctx: Ctx<'_>, officer: OfficerUser<'_>, id: &str) -> AppResult<Page> {
    detail_page(&ctx, &officer, id).await
}

/// The organisation's page again after its verification or merge form was refused: the message at the form
/// (`form`: "verify" or "merge") and what was typed back in it, 422.
async fn detail_again(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    id: &str,
    form: &str,
    message: String,
    typed: &[(&str, &str)],
) -> AppResult<Either<Notice, Page>> {
    let errors: std::collections::BTreeMap<&str, String> = [(form, message)].into_iter().collect();
    let typed: std::collections::BTreeMap<&str, &str> = typed.iter().copied().collect();
    Ok(Either::Right(
        detail_page(ctx, officer, id)
            .await?
            .with("errors", errors)
            .with("typed_form", form)
            .with("typed", typed)
            .status(Status::UnprocessableEntity),
    ))
}

async fn detail_page(ctx: &Ctx<'_>, officer: &OfficerUser<'_>, id: &str) -> AppResult<Page> {
    let id = id.to_string();
    let now = ctx.state.clock.now();
    let d = ctx
        .state
        .db
        .run(move |c| {
            let organisation = orgs::find(c, &id)?;
            let verified_by_name = match &organisation.verified_by {
                Some(u) => Some(account::find(c, u)?.display_name),
                None => None,
            };
            let merged_into = match &organisation.merged_into {
                Some(o) => Some(orgs::find(c, o)?),
                None => None,
            };
            Ok(Detail {
                members: orgs::members(c, &id, true)?,
                submissions: orgs::sent_submission_count(c, &id)?,
                merged_from: orgs::merged_from(c, &id)?,
                awaiting: invitation::awaiting_officer(c, Some(&id), now)?,
                has_admin: invitation::organisation_has_administrator(c, &id)?,
                admin_disabled: invitation::organisation_admins(c, &id)?.is_empty(),
                proposals: proposals::open_rows(c, &id)?,
                verified_by_name,
                merged_into,
                organisation,
            })
        })
        .await?;
    let own = officer.user.organisation_id.as_deref() == Some(d.organisation.id.as_str());
    Ok(Page::new("officer/organisation.html.tera")
        .with("own_organisation", own)
        .with("typed_form", "")
        .with("d", d))
}

#[derive(FromForm)]
struct VerifyForm {
    #[field(default = String::new())]
    method: String,
}

#[rocket::post("/officer/organisations/<id>/verify", data = "<form>")]
async fn verify(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: CsrfForm<VerifyForm>,
) -> AppResult<Either<Notice, Page>> {
    let typed = form.0.method;
    let (audit, actor, who, oid, method) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        officer.user.clone(),
        id.to_string(),
        typed.clone(),
    );
    let now = ctx.state.clock.now();
    let verified = ctx
        .state
        .db
        .run(move |c| membership::verify(c, &audit, &actor, &who, &oid, &method, now))
        .await;
    match verified {
        Ok(_) => Ok(Either::Left(Notice::redirect(
            format!("{LIST}/{id}"),
            "The organisation is marked verified.",
        ))),
        Err(AppError::Invalid(message)) => {
            detail_again(&ctx, &officer, id, "verify", message, &[("method", &typed)]).await
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm)]
struct MergeForm {
    #[field(default = String::new())]
    target: String,
    #[field(default = String::new())]
    reason: String,
}

/// Proposes the merge: nothing moves until an organisation administrator of each company accepts it.
#[rocket::post("/officer/organisations/<id>/merge", data = "<form>")]
async fn merge(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<MergeForm>,
) -> AppResult<Either<Notice, Page>> {
    let MergeForm { target, reason } = form.0;
    let typed = [("target", target.clone()), ("reason", reason.clone())];
    let (audit, actor, who, oid, into) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        officer.user.clone(),
        id.to_string(),
        target.trim().to_string(),
    );
    let now = ctx.state.clock.now();
    let mailer = ctx.state.mailer.clone();
    let proposed = ctx
        .state
        .db
        .run(move |c| {
            membership::propose_merge(c, &audit, &mailer, &actor, &who, &oid, &into, &reason, now)
        })
        .await;
    let mails = match proposed {
        Ok((_, mails)) => mails,
        Err(AppError::Invalid(message)) => {
            let typed: Vec<(&str, &str)> = typed.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return detail_again(&ctx, &officer, id, "merge", message, &typed).await;
        }
        Err(e) => return Err(e),
    };
    let told = mails.len();
    let unsent = crate::workflow::pending_mail::send_now(ctx.state, mails).await;
    let mut notice = String::from(
        "The merge is proposed. Nothing moves until an organisation administrator of each company accepts it.",
    );
    notice.push_str(&match told {
        0 => " Neither company has an active administrator to tell by email.".to_string(),
        n => format!(" {n} administrator(s) of the two companies were told by email."),
    });
    if unsent.later > 0 {
        notice.push_str(" Some of those emails could not go out yet; the portal tries again.");
    }
    if unsent.refused > 0 {
        notice.push_str(&format!(
            " The mail server refused {} of them; those administrators see the proposal when they sign in.",
            unsent.refused
        ));
    }
    Ok(Either::Left(Notice::redirect(
        format!("{LIST}/{id}"),
        notice,
    )))
}

#[rocket::post(
    "/officer/organisations/merge-proposals/<id>/withdraw",
    data = "<_form>"
)]
async fn withdraw_merge(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, who, pid) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        officer.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    let duplicate = ctx
        .state
        .db
        .run(move |c| membership::withdraw_merge(c, &audit, &actor, &who, &pid, now))
        .await?;
    Ok(Notice::redirect(
        format!("{LIST}/{duplicate}"),
        "The merge proposal was withdrawn: nothing moved.",
    ))
}

#[rocket::post("/officer/organisations/invitations/<id>/approve", data = "<_form>")]
async fn approve(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    _form: StepUpForm<NoFields>,
) -> AppResult<Notice> {
    let (to, sent) = deliver::approve_invitation(&ctx, &officer.user, id).await?;
    let message = if sent {
        format!("Approved. The invitation was sent to {to}.")
    } else {
        format!("Approved, but the email to {to} could not be sent. Ask an administrator to invite again.")
    };
    Ok(Notice::redirect(LIST, message))
}

#[rocket::post("/officer/organisations/invitations/<id>/refuse", data = "<_form>")]
async fn refuse(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    deliver::refuse_invitation(&ctx, &officer.user, id).await?;
    Ok(Notice::redirect(
        LIST,
        "The invitation was refused: no link was sent.",
    ))
}
