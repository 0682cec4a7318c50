//! An organisation administrator's page: its organisation, members and open invitations; inviting
//! colleagues, withdrawing invitations, deciding administrators' invitations into the organisation, removing
//! members and handing the administrator role on; accepting or refusing an officer's proposal to merge the
//! organisation with another. Every id is looked up within its own organisation: another
//! organisation's ids answer 404. No submission content is shown here.

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;
use serde::Serialize;

use crate::auth::accounts::{FieldErrors, Membership};
use crate::auth::invitations::{self, InvitationRequest, Invited};
use crate::auth::membership;
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account::{self, Organisation};
use crate::models::invitation::{self, InvitationRow};
use crate::models::merge_proposal::{self as proposals, ProposalRow};
use crate::models::organisation::{self as orgs, MemberRow};
use crate::web::deliver;
use crate::web::forms::{CsrfForm, NoFields};
use crate::web::guards::{Ctx, OrgAdminUser};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        index,
        invite,
        revoke,
        approve,
        refuse,
        remove_member,
        grant_admin,
        revoke_admin,
        second_factor_requirement,
        accept_merge,
        refuse_merge
    ]
}

const HOME: &str = "/organisation";

struct Overview {
    organisation: Organisation,
    members: Vec<MemberRow>,
    open: crate::models::Capped<InvitationRow>,
    awaiting: Vec<InvitationRow>,
    merges: Vec<ProposalRow>,
    /// What it may have sent and held until the Program Office verifies it: how many, and the files' size.
    unverified_room: (u32, String),
}

async fn overview(ctx: &Ctx<'_>, organisation_id: &str) -> AppResult<Overview> {
    let org = organisation_id.to_string();
    let now = ctx.state.clock.now();
    let settings = &ctx.state.settings;
    let unverified_room = (
        settings.max_unverified_sent_per_organisation,
        crate::workflow::intake::size_label(settings.max_unverified_sent_bytes_per_organisation),
    );
    ctx.state
        .db
        .run(move |c| {
            let organisation = orgs::find(c, &org)?;
            let members = orgs::members(c, &org, false)?;
            let open = invitation::sent_for_organisation(c, &org, now)?;
            let awaiting = invitation::awaiting_for_organisation(c, &org, now)?;
            let merges = proposals::open_rows(c, &org)?;
            Ok(Overview {
                organisation,
                members,
                open,
                awaiting,
                merges,
                unverified_room,
            })
        })
        .await
}

#[derive(Debug, Clone, FromForm, Serialize)]
struct InviteForm {
    #[field(default = String::new())]
    email: String,
    #[field(default = String::new())]
    display_name: String,
}

fn page(admin: &OrgAdminUser<'_>, o: Overview) -> Page {
    let admins = o
        .members
        .iter()
        .filter(|m| m.org_admin && m.email_verified && !m.disabled)
        .count();
    Page::new("organisation/index.html.tera")
        .with("organisation", &o.organisation)
        .with("verified", o.organisation.verified_at.is_some())
        .with("unverified_room", &o.unverified_room)
        .with("members", &o.members)
        .with("invitations", &o.open.rows)
        .with("open_invitations", &o.open)
        .with("awaiting", &o.awaiting)
        .with("merges", &o.merges)
        .with("admin_count", admins)
        .with("me_id", &admin.user.id)
}

#[rocket::get("/organisation")]
async fn index(ctx: Ctx<'_>, admin: OrgAdminUser<'_>) -> AppResult<Page> {
    let o = overview(&ctx, &admin.organisation_id).await?;
    Ok(page(&admin, o).with(
        "values",
        InviteForm {
            email: String::new(),
            display_name: String::new(),
        },
    ))
}

/// Sends the message of an invitation that exists now, and says what became of it.
async fn deliver_invitation(ctx: &Ctx<'_>, mail: crate::mail::Mail, to: &str) -> String {
    if deliver::send(ctx.state, mail).await {
        format!("Invitation sent to {to}. The link works once.")
    } else {
        format!(
            "The invitation to {to} was made, but the email could not be sent. Withdraw it below and invite again, or try later."
        )
    }
}

#[derive(FromForm)]
struct RequirementForm {
    #[field(default = String::new())]
    require: String,
}

/// Requiring a second factor of every member (or no longer): a change of the organisation's security, so it needs
/// the administrator's own factor given recently (an administrator without one enrols first, like every member).
#[rocket::post("/organisation/second-factor", data = "<form>")]
async fn second_factor_requirement(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    form: StepUpForm<RequirementForm>,
) -> AppResult<Notice> {
    let require = match form.0.require.as_str() {
        "yes" => true,
        "no" => false,
        _ => {
            return Err(AppError::Invalid(
                "Choose whether to require a second factor.".into(),
            ))
        }
    };
    let (audit, actor, org) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.organisation_id.clone(),
    );
    ctx.state
        .db
        .run(move |c| {
            crate::auth::second_factor::set_organisation_requirement(
                c, &audit, &actor, &org, require,
            )
        })
        .await?;
    Ok(Notice::redirect(
        "/organisation",
        if require {
            "Every member now needs a second factor. Members without one set it up at their next step in the portal."
        } else {
            "A second factor is now optional for your members."
        },
    ))
}

#[rocket::post("/organisation/invitations", data = "<form>")]
async fn invite(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    form: StepUpForm<InviteForm>,
) -> AppResult<Either<Notice, Page>> {
    let values = form.0;
    let req = InvitationRequest {
        email: values.email.clone(),
        display_name: values.display_name.clone(),
        role: Role::Submitter,
        // Ignored for an organisation administrator: it invites into its own organisation only.
        membership: Membership::None,
        agency: None,
    };
    let state = ctx.state;
    let (audit, mailer, settings, actor, inviter) = (
        state.audit.clone(),
        state.mailer.clone(),
        state.settings.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
    );
    let now = state.clock.now();
    let result = state
        .db
        .run(move |c| {
            invitations::invite(c, &audit, &mailer, &settings, &actor, &inviter, req, now)
        })
        .await?;
    match result {
        Ok(Invited::Sent { mail, .. }) => {
            let to = account::normalize_email(&values.email);
            let message = deliver_invitation(&ctx, mail, &to).await;
            Ok(Either::Left(Notice::redirect(HOME, message)))
        }
        Ok(Invited::AwaitingApproval { approver, .. }) => Ok(Either::Left(Notice::redirect(
            HOME,
            format!("The invitation waits for {approver}."),
        ))),
        Err(errors) => {
            let o = overview(&ctx, &admin.organisation_id).await?;
            Ok(Either::Right(invite_errors(&admin, o, &values, errors)))
        }
    }
}

fn invite_errors(
    admin: &OrgAdminUser<'_>,
    o: Overview,
    values: &InviteForm,
    errors: FieldErrors,
) -> Page {
    page(admin, o)
        .status(Status::UnprocessableEntity)
        .with("values", values)
        .with("errors", errors)
}

#[rocket::post("/organisation/invitations/<id>/revoke", data = "<_form>")]
async fn revoke(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, who, id) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    ctx.state
        .db
        .run(move |c| invitations::revoke(c, &audit, &actor, &who, &id, now))
        .await?;
    Ok(Notice::redirect(
        HOME,
        "The invitation was withdrawn: its link no longer works.",
    ))
}

#[rocket::post("/organisation/invitations/<id>/approve", data = "<_form>")]
async fn approve(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: StepUpForm<NoFields>,
) -> AppResult<Notice> {
    let (to, sent) = deliver::approve_invitation(&ctx, &admin.user, id).await?;
    let message = if sent {
        format!("Invitation sent to {to}. The link works once.")
    } else {
        format!("The invitation to {to} was approved, but the email could not be sent. Ask the administrator who made it to invite again.")
    };
    Ok(Notice::redirect(HOME, format!("Approved. {message}")))
}

#[rocket::post("/organisation/invitations/<id>/refuse", data = "<_form>")]
async fn refuse(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    deliver::refuse_invitation(&ctx, &admin.user, id).await?;
    Ok(Notice::redirect(
        HOME,
        "The invitation was refused: no link was sent.",
    ))
}

#[derive(FromForm)]
struct RemoveForm {
    #[field(default = String::new())]
    confirm: String,
}

#[rocket::post("/organisation/members/<id>/remove", data = "<form>")]
async fn remove_member(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    // Removing disables the member's account, and revoking takes away an administrator: with a recent second factor
    // (an administrator's without one passes, as everywhere), as appointing one needs.
    form: StepUpForm<RemoveForm>,
) -> AppResult<Notice> {
    if form.0.confirm != "yes" {
        return Err(AppError::Invalid(
            "Tick the box to confirm that this person leaves the organisation.".into(),
        ));
    }
    let (audit, actor, org, who, id) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.organisation_id.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    ctx.state
        .db
        .run(move |c| membership::remove_member(c, &audit, &actor, &org, &who, &id))
        .await?;
    Ok(Notice::redirect(
        HOME,
        "The member was removed: signed out everywhere, and its account disabled.",
    ))
}

#[rocket::post("/organisation/members/<id>/admin", data = "<_form>")]
async fn grant_admin(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: StepUpForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, org, id) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.organisation_id.clone(),
        id.to_string(),
    );
    ctx.state
        .db
        .run(move |c| membership::grant_admin(c, &audit, &actor, &org, &id))
        .await?;
    Ok(Notice::redirect(
        HOME,
        "The member now administers the organisation too.",
    ))
}

#[rocket::post("/organisation/members/<id>/admin/revoke", data = "<_form>")]
async fn revoke_admin(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: StepUpForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, org, target) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.organisation_id.clone(),
        id.to_string(),
    );
    ctx.state
        .db
        .run(move |c| membership::revoke_admin(c, &audit, &actor, &org, &target))
        .await?;
    if id == admin.user.id {
        return Ok(Notice::redirect(
            "/dashboard",
            "You no longer administer the organisation.",
        ));
    }
    Ok(Notice::redirect(
        HOME,
        "The member no longer administers the organisation.",
    ))
}

/// Accepting a proposed merge lets another company's people into one's organisation, or one's people and
/// submissions into another's: like other acts that widen membership, it needs a recent second factor.
#[rocket::post("/organisation/merge-proposals/<id>/accept", data = "<_form>")]
async fn accept_merge(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: StepUpForm<NoFields>,
) -> AppResult<Notice> {
    let answer = answer_merge(&ctx, &admin, id, true).await?;
    Ok(Notice::redirect(
        HOME,
        match answer {
            membership::MergeAnswer::Merged(moved) => format!(
                "Accepted by both companies: the organisations are merged ({} members, {} submissions and {} open invitations moved).",
                moved.members, moved.submissions, moved.invitations
            ),
            _ => "Accepted. Nothing moves until the other company's administrator accepts too.".to_string(),
        },
    ))
}

#[rocket::post("/organisation/merge-proposals/<id>/refuse", data = "<_form>")]
async fn refuse_merge(
    ctx: Ctx<'_>,
    admin: OrgAdminUser<'_>,
    id: &str,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    answer_merge(&ctx, &admin, id, false).await?;
    Ok(Notice::redirect(
        HOME,
        "The merge was refused: nothing moved, and the proposal is closed.",
    ))
}

async fn answer_merge(
    ctx: &Ctx<'_>,
    admin: &OrgAdminUser<'_>,
    id: &str,
    accept: bool,
) -> AppResult<membership::MergeAnswer> {
    let (audit, actor, org, who, pid) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.organisation_id.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    ctx.state
        .db
        .run(move |c| membership::answer_merge(c, &audit, &actor, &who, &org, &pid, accept, now))
        .await
}
