//! Administrators: accounts (list, invitations, approvals under the two-person rule, disable/enable, role,
//! training, NDA) and portal settings. Administrators never see submission content, and never set or see
//! anyone's password; nothing here reads either.

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;

use crate::auth::accounts::{self, AccountChange, FieldErrors, Membership};
use crate::auth::invitations::{self, Applied, InvitationRequest, Invited, PrivilegeChange};
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account::{self, ACCOUNTS_PER_PAGE};
use crate::models::invitation::{self, Approval};
use crate::models::settings;
use crate::web::account::account_view;
use crate::web::deliver;
use crate::web::forms::CsrfForm;
use crate::web::guards::{AdminUser, Ctx};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::Choice;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        index,
        operations,
        new_account_page,
        invite_account,
        account_page,
        disable,
        enable,
        change_role,
        training,
        nda,
        registration,
        approvals,
        reset_factors,
        approve_invitation,
        refuse_invitation,
        revoke_invitation,
        decide_request
    ]
}

fn roles_view() -> Vec<Choice> {
    Role::ALL
        .iter()
        .map(|r| Choice {
            value: r.as_str().into(),
            label: r.label().into(),
        })
        .collect()
}

#[rocket::get("/?<role>&<page>")]
async fn index(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    role: Option<&str>,
    page: Option<&str>,
) -> AppResult<Page> {
    let role = match role.map(str::trim).filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            AppError::Invalid(format!(
                "{} is not a role: submitter, officer, authorized_user, auditor or administrator.",
                crate::web::forms::quoted(r)
            ))
        })?),
    };
    let page = crate::web::forms::page_index(page)?;
    let ((rows, total), open, admins, pending) = ctx
        .state
        .db
        .run(move |c| {
            let pending = invitation::pending_for_second_administrator(c)?;
            Ok((
                account::list_accounts(c, role, page)?,
                settings::self_registration_open(c)?,
                invitation::active_administrators(c)?,
                pending,
            ))
        })
        .await?;
    let pages = (total + ACCOUNTS_PER_PAGE - 1) / ACCOUNTS_PER_PAGE;
    Ok(with_rule(Page::new("admin/index.html.tera"), &ctx, admins)
        .with("pending_approvals", pending)
        .with("accounts", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages)
        .with("role_filter", role.map(|r| r.as_str()))
        .with("roles", roles_view())
        .with("registration_open", open))
}

/// The operator's overview: background work, queues, audit checkpoints, backups, key generations, and what needs
/// attention. Counts and times only (see `workflow::operations`).
#[rocket::get("/operations")]
async fn operations(ctx: Ctx<'_>, _admin: AdminUser<'_>) -> AppResult<Page> {
    let (store, data_dir) = (ctx.state.blobs.clone(), ctx.state.settings.data_dir.clone());
    let live = rocket::tokio::task::spawn_blocking(move || {
        crate::workflow::operations::Live::of(&*store, &data_dir)
    })
    .await
    .map_err(|_| AppError::Internal("checking the blob store failed".into()))?;
    let (settings, backend, now) = (
        ctx.state.settings.clone(),
        ctx.state.db.backend,
        ctx.state.clock.now(),
    );
    let audit_key = ctx.state.audit.public_key_hex();
    let overview = ctx
        .state
        .db
        .run(move |c| {
            Ok(crate::workflow::operations::overview(
                c,
                &settings,
                backend,
                live,
                Some(&audit_key),
                now,
            )?)
        })
        .await?;
    Ok(Page::new("admin/operations.html.tera").with("o", overview))
}

/// The two-person rule's state, shown on every administrator page that grants anything.
fn with_rule(page: Page, ctx: &Ctx<'_>, active_admins: i64) -> Page {
    let rule = ctx.state.settings.two_person_rule;
    page.with("active_admins", active_admins)
        .with("two_person_rule", rule)
        .with("two_person_in_force", rule && active_admins >= 2)
}

#[rocket::get("/accounts/new")]
async fn new_account_page(ctx: Ctx<'_>, _admin: AdminUser<'_>) -> AppResult<Page> {
    let admins = ctx
        .state
        .db
        .run(|c| Ok(invitation::active_administrators(c)?))
        .await?;
    Ok(
        with_rule(Page::new("admin/new_account.html.tera"), &ctx, admins)
            .with("roles", roles_view()),
    )
}

#[derive(FromForm, serde::Serialize)]
struct InviteForm {
    email: String,
    display_name: String,
    role: String,
    #[field(default = String::new())]
    agency: String,
    /// For a company's person: `existing` (by id) or `new` (a new organisation by name).
    #[field(default = String::new())]
    organisation_choice: String,
    #[field(default = String::new())]
    organisation_id: String,
    #[field(default = String::new())]
    new_organisation: String,
}

/// Administrators invite; they never choose anyone's password. A staff role waits for a second
/// administrator, an existing organisation for its own administrator (or an officer).
#[rocket::post("/accounts", data = "<form>")]
async fn invite_account(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    form: StepUpForm<InviteForm>,
) -> AppResult<Either<Notice, Page>> {
    let values = form.0;
    let Some(role) = Role::parse(&values.role) else {
        let mut errors = FieldErrors::default();
        errors.add("role", "Choose a role.");
        return Ok(Either::Right(invite_errors(&ctx, &values, errors).await?));
    };
    let membership = match (role, values.organisation_choice.as_str()) {
        (Role::Submitter, "new") => Membership::New(values.new_organisation.clone()),
        (Role::Submitter, _) => {
            if values.organisation_id.trim().is_empty() {
                Membership::None
            } else {
                Membership::Existing(values.organisation_id.clone())
            }
        }
        (Role::Officer, _) if !values.organisation_id.trim().is_empty() => {
            Membership::Existing(values.organisation_id.clone())
        }
        _ => Membership::None,
    };
    let req = InvitationRequest {
        email: values.email.clone(),
        display_name: values.display_name.clone(),
        role,
        membership,
        agency: (role != Role::Submitter).then(|| values.agency.clone()),
    };
    let state = ctx.state;
    let (audit, mailer, settings, actor, who) = (
        state.audit.clone(),
        state.mailer.clone(),
        state.settings.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
    );
    let now = state.clock.now();
    let result = state
        .db
        .run(move |c| invitations::invite(c, &audit, &mailer, &settings, &actor, &who, req, now))
        .await?;
    match result {
        Ok(Invited::Sent { mail, .. }) => {
            let message = if deliver::send(state, mail).await {
                "Invitation sent. The person chooses its own password from the link."
            } else {
                "The invitation is made, but the message could not be sent now. Withdraw it below and invite again later."
            };
            Ok(Either::Left(Notice::redirect("/admin/approvals", message)))
        }
        Ok(Invited::AwaitingApproval { approver, .. }) => Ok(Either::Left(Notice::redirect(
            "/admin/approvals",
            format!("Invitation made. It takes effect, and its link is sent, only when {approver} approves it."),
        ))),
        Err(errors) => Ok(Either::Right(invite_errors(&ctx, &values, errors).await?)),
    }
}

async fn invite_errors(ctx: &Ctx<'_>, values: &InviteForm, errors: FieldErrors) -> AppResult<Page> {
    let admins = ctx
        .state
        .db
        .run(|c| Ok(invitation::active_administrators(c)?))
        .await?;
    Ok(
        with_rule(Page::new("admin/new_account.html.tera"), ctx, admins)
            .status(Status::UnprocessableEntity)
            .with("roles", roles_view())
            .with("values", values)
            .with("errors", errors),
    )
}

/// Pending grants: staff invitations and role changes waiting for a second administrator, and every open
/// invitation administrators made.
#[rocket::get("/approvals")]
async fn approvals(ctx: Ctx<'_>, admin: AdminUser<'_>) -> AppResult<Page> {
    let now = ctx.state.clock.now();
    let (waiting, roles, open, admins) = ctx
        .state
        .db
        .run(move |c| {
            Ok((
                invitation::awaiting(c, Approval::SecondAdministrator, now)?,
                invitation::pending_privilege_requests(c)?,
                invitation::open_by_administrators(c, now)?,
                invitation::active_administrators(c)?,
            ))
        })
        .await?;
    Ok(
        with_rule(Page::new("admin/approvals.html.tera"), &ctx, admins)
            .with("me_id", &admin.user.id)
            .with("waiting", waiting)
            .with("privilege_requests", roles)
            .with("open", open),
    )
}

#[rocket::post("/invitations/<id>/approve", data = "<_form>")]
async fn approve_invitation(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    _form: StepUpForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    let (_, sent) = deliver::approve_invitation(&ctx, &admin.user, id).await?;
    let message = if sent {
        "Approved. The invitation link is sent."
    } else {
        "Approved, but the message could not be sent now. Withdraw the invitation and make it again later."
    };
    Ok(Notice::redirect("/admin/approvals", message))
}

#[rocket::post("/invitations/<id>/refuse", data = "<_form>")]
async fn refuse_invitation(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    _form: CsrfForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    deliver::refuse_invitation(&ctx, &admin.user, id).await?;
    Ok(Notice::redirect(
        "/admin/approvals",
        "Refused. The invitation never takes effect.",
    ))
}

#[rocket::post("/invitations/<id>/revoke", data = "<_form>")]
async fn revoke_invitation(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    _form: CsrfForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, who, iid) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    ctx.state
        .db
        .run(move |c| invitations::revoke(c, &audit, &actor, &who, &iid, now))
        .await?;
    Ok(Notice::redirect(
        "/admin/approvals",
        "Invitation withdrawn; its link no longer works.",
    ))
}

#[derive(FromForm)]
struct DecisionForm {
    decision: String,
}

#[rocket::post("/requests/<id>", data = "<form>")]
async fn decide_request(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    form: StepUpForm<DecisionForm>,
) -> AppResult<Notice> {
    let approve = match form.0.decision.as_str() {
        "approve" => true,
        "refuse" => false,
        _ => return Err(AppError::Invalid("Choose approve or refuse.".into())),
    };
    let (audit, actor, who, rid) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    ctx.state
        .db
        .run(move |c| {
            invitations::decide_privilege_request(c, &audit, &actor, &who, &rid, approve, now)
        })
        .await?;
    Ok(Notice::redirect(
        "/admin/approvals",
        if approve {
            "Approved and applied."
        } else {
            "Refused: nothing changed."
        },
    ))
}

#[rocket::get("/accounts/<id>")]
async fn account_page(ctx: Ctx<'_>, _admin: AdminUser<'_>, id: &str) -> AppResult<Page> {
    account_view_page(&ctx, id).await
}

/// The account page again after one of its forms was refused: the message at its field, and what was typed back
/// in that form (`typed`, by field id: the form is the part before the first `-`), 422.
async fn account_page_again(
    ctx: &Ctx<'_>,
    id: &str,
    field: &str,
    message: String,
    typed: &[(&str, &str)],
) -> AppResult<Either<Notice, Page>> {
    let form = field.split('-').next().unwrap_or_default().to_string();
    let errors: std::collections::BTreeMap<&str, String> = [(field, message)].into_iter().collect();
    let typed: std::collections::BTreeMap<&str, &str> = typed.iter().copied().collect();
    Ok(Either::Right(
        account_view_page(ctx, id)
            .await?
            .with("errors", errors)
            .with("typed_form", form)
            .with("typed", typed)
            .status(Status::UnprocessableEntity),
    ))
}

/// The same, for a refusal because of the account's state (another administrator's request waiting for a
/// decision): the reason typed is kept for when it is decided, 409.
async fn account_page_in_conflict(
    ctx: &Ctx<'_>,
    id: &str,
    field: &str,
    message: String,
    typed: &[(&str, &str)],
) -> AppResult<Either<Notice, Page>> {
    Ok(account_page_again(ctx, id, field, message, typed)
        .await?
        .map_right(|page| page.status(Status::Conflict)))
}

async fn account_view_page(ctx: &Ctx<'_>, id: &str) -> AppResult<Page> {
    let id = id.to_string();
    let (user, org, factors) = ctx
        .state
        .db
        .run(move |c| {
            let u = account::find(c, &id)?;
            let org = match &u.organisation_id {
                Some(o) => Some(account::organisation_name(c, o)?),
                None => None,
            };
            let factors = crate::auth::second_factor::factors(c, &u.id)?;
            Ok((u, org, factors))
        })
        .await?;
    // What the account has, never what it is: no secret, no passkey name.
    let second_factor = serde_json::json!({
        "authenticator_app": factors.authenticator_app,
        "passkeys": factors.passkeys.len(),
        "recovery_codes_left": factors.recovery_codes_left,
    });
    Ok(Page::new("admin/account.html.tera")
        .with("account", account_view(&user))
        .with("second_factor", second_factor)
        .with("organisation", org)
        .with("roles", roles_view())
        .with("typed_form", ""))
}

async fn apply(ctx: &Ctx<'_>, id: &str, change: AccountChange, done: &str) -> AppResult<Notice> {
    let (audit, actor, uid) = (ctx.state.audit.clone(), ctx.actor.clone(), id.to_string());
    ctx.state
        .db
        .run(move |c| accounts::change_account(c, &audit, &actor, &uid, change))
        .await?;
    Ok(Notice::redirect(format!("/admin/accounts/{id}"), done))
}

#[derive(FromForm)]
struct DisableForm {
    #[field(default = String::new())]
    reason: String,
    #[field(default = false)]
    confirm: bool,
}

#[rocket::post("/accounts/<id>/disable", data = "<form>")]
async fn disable(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    form: StepUpForm<DisableForm>,
) -> AppResult<Either<Notice, Page>> {
    let reason = form.0.reason.trim().to_string();
    let typed = [("disable-reason", form.0.reason.as_str())];
    if !valid_reason(&reason) {
        let message = "Give the reason for disabling the account (one line, up to 500 characters).";
        return account_page_again(&ctx, id, "disable-reason", message.into(), &typed).await;
    }
    if !form.0.confirm {
        let message = "Tick the box to confirm that the account is to be disabled.";
        return account_page_again(&ctx, id, "disable-confirm", message.into(), &typed).await;
    }
    let change = PrivilegeChange::Disable { reason };
    match privilege(
        &ctx,
        &admin,
        id,
        change,
        "Account disabled; its sessions have ended.",
    )
    .await
    {
        Err(AppError::Invalid(message)) => {
            account_page_again(&ctx, id, "disable-reason", message, &typed).await
        }
        Err(AppError::Conflict(message)) => {
            account_page_in_conflict(&ctx, id, "disable-reason", message, &typed).await
        }
        done => done.map(Either::Left),
    }
}

/// A reason kept in the audit log: one line, up to 500 characters.
fn valid_reason(reason: &str) -> bool {
    !reason.is_empty() && reason.chars().count() <= 500 && !reason.chars().any(char::is_control)
}

#[derive(FromForm)]
struct ResetFactorsForm {
    #[field(default = String::new())]
    reason: String,
    #[field(default = false)]
    confirm: bool,
}

/// A person who lost their second factors gets them reset: every factor deleted, every session ended, the password
/// voided; they choose a new password through a mailed link and enrol again at their next sign-in. Two administrators agree to it while the portal has two or more.
#[rocket::post("/accounts/<id>/reset-factors", data = "<form>")]
async fn reset_factors(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    form: StepUpForm<ResetFactorsForm>,
) -> AppResult<Either<Notice, Page>> {
    let reason = form.0.reason.trim().to_string();
    let typed = [("reset-reason", form.0.reason.as_str())];
    if !valid_reason(&reason) {
        let message = "Give the reason for the reset, e.g. how the person's identity was checked (one line, up to \
                       500 characters).";
        return account_page_again(&ctx, id, "reset-reason", message.into(), &typed).await;
    }
    if !form.0.confirm {
        let message = "Tick the box to confirm that the account's second factors are to be reset.";
        return account_page_again(&ctx, id, "reset-confirm", message.into(), &typed).await;
    }
    let done = "Second factors reset; the person's sessions have ended and their password no longer works. Tell \
                them to choose a new one with \"Forgot your password?\" on the sign-in page (a link goes to their \
                address), then set up a new factor when they sign in.";
    match privilege(
        &ctx,
        &admin,
        id,
        PrivilegeChange::ResetFactors { reason },
        done,
    )
    .await
    {
        Err(AppError::Invalid(message)) => {
            account_page_again(&ctx, id, "reset-reason", message, &typed).await
        }
        Err(AppError::Conflict(message)) => {
            account_page_in_conflict(&ctx, id, "reset-reason", message, &typed).await
        }
        done => done.map(Either::Left),
    }
}

/// A change of status that may wait for a second administrator (disabling an administrator, enabling staff).
async fn privilege(
    ctx: &Ctx<'_>,
    admin: &AdminUser<'_>,
    id: &str,
    change: PrivilegeChange,
    done: &str,
) -> AppResult<Notice> {
    let (audit, settings, actor, who, uid) = (
        ctx.state.audit.clone(),
        ctx.state.settings.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    let applied = ctx
        .state
        .db
        .run(move |c| {
            invitations::change_privilege(c, &audit, &settings, &actor, &who, &uid, change, now)
        })
        .await?;
    Ok(match applied {
        Applied::Now => Notice::redirect(format!("/admin/accounts/{id}"), done),
        Applied::Pending => Notice::redirect(
            "/admin/approvals",
            "This change waits for a second administrator's approval.",
        ),
    })
}

#[rocket::post("/accounts/<id>/enable", data = "<_form>")]
async fn enable(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    _form: StepUpForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    privilege(
        &ctx,
        &admin,
        id,
        PrivilegeChange::Enable,
        "Account enabled.",
    )
    .await
}

#[derive(FromForm)]
struct RoleForm {
    role: String,
}

#[rocket::post("/accounts/<id>/role", data = "<form>")]
async fn change_role(
    ctx: Ctx<'_>,
    admin: AdminUser<'_>,
    id: &str,
    form: StepUpForm<RoleForm>,
) -> AppResult<Notice> {
    let role = Role::parse(&form.0.role)
        .ok_or_else(|| AppError::Invalid("Choose one of the listed roles.".into()))?;
    let (audit, settings, actor, who, uid) = (
        ctx.state.audit.clone(),
        ctx.state.settings.clone(),
        ctx.actor.clone(),
        admin.user.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    let change = ctx
        .state
        .db
        .run(move |c| {
            invitations::change_privilege(
                c,
                &audit,
                &settings,
                &actor,
                &who,
                &uid,
                PrivilegeChange::Role(role),
                now,
            )
        })
        .await?;
    Ok(match change {
        Applied::Now => Notice::redirect(
            format!("/admin/accounts/{id}"),
            "Role changed; the account's sessions have ended.",
        ),
        Applied::Pending => Notice::redirect(
            "/admin/approvals",
            "The role change waits for a second administrator's approval.",
        ),
    })
}

#[derive(FromForm)]
struct DateForm {
    date: String,
    #[field(default = String::new())]
    reference: String,
    #[field(default = String::new())]
    expires: String,
}

fn parse_optional_date(s: &str, now: i64) -> AppResult<Option<i64>> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let ts = crate::time::parse_date(s)
        .ok_or_else(|| AppError::Invalid("Enter the date as YYYY-MM-DD.".into()))?;
    if ts > now {
        return Err(AppError::Invalid(
            "The date cannot be in the future.".into(),
        ));
    }
    Ok(Some(ts))
}

// Training and NDA records are what let an authorized user read PCII (PCII.md), and the self-registration switch
// opens the portal to strangers: like the grants of privilege, they need a recent second factor.
#[rocket::post("/accounts/<id>/training", data = "<form>")]
async fn training(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    form: StepUpForm<DateForm>,
) -> AppResult<Notice> {
    let at = parse_optional_date(&form.0.date, ctx.state.clock.now())?;
    apply(
        &ctx,
        id,
        AccountChange::Training(at),
        "Training record saved.",
    )
    .await
}

#[rocket::post("/accounts/<id>/nda", data = "<form>")]
async fn nda(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    form: StepUpForm<DateForm>,
) -> AppResult<Either<Notice, Page>> {
    let f = &form.0;
    let typed = [
        ("nda-date", f.date.as_str()),
        ("nda-expires", f.expires.as_str()),
        ("nda-reference", f.reference.as_str()),
    ];
    let signed_at = match parse_optional_date(&f.date, ctx.state.clock.now()) {
        Ok(at) => at,
        Err(AppError::Invalid(message)) => {
            return account_page_again(&ctx, id, "nda-date", message, &typed).await
        }
        Err(e) => return Err(e),
    };
    let expires_at = match f.expires.trim() {
        "" => None,
        d => match crate::time::parse_date(d) {
            Some(at) => Some(at),
            None => {
                let message = "Enter the expiry date as YYYY-MM-DD.";
                return account_page_again(&ctx, id, "nda-expires", message.into(), &typed).await;
            }
        },
    };
    if let (Some(s), Some(e)) = (signed_at, expires_at) {
        if e <= s {
            let message = "The NDA must expire after it was signed.";
            return account_page_again(&ctx, id, "nda-expires", message.into(), &typed).await;
        }
    }
    let reference = Some(f.reference.trim().to_string()).filter(|r| !r.is_empty());
    if reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control))
    {
        let message = "The NDA reference must be one line of at most 200 characters.";
        return account_page_again(&ctx, id, "nda-reference", message.into(), &typed).await;
    }
    apply(
        &ctx,
        id,
        AccountChange::Nda {
            signed_at,
            expires_at,
            reference,
        },
        "Non-disclosure agreement record saved.",
    )
    .await
    .map(Either::Left)
}

#[derive(FromForm)]
struct RegistrationForm {
    open: bool,
}

#[rocket::post("/settings/registration", data = "<form>")]
async fn registration(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    form: StepUpForm<RegistrationForm>,
) -> AppResult<Notice> {
    let open = form.0.open;
    let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
    ctx.state
        .db
        .run(move |c| {
            audit.fact(c, &actor, |tx| {
                settings::set(
                    tx,
                    settings::SELF_REGISTRATION,
                    if open { "on" } else { "off" },
                )?;
                let event = crate::audit::log::Event::new(
                    "settings.self_registration",
                    crate::audit::log::Outcome::Success,
                )
                .reason(if open { "opened" } else { "closed" });
                Ok(((), event))
            })
        })
        .await?;
    Ok(Notice::redirect(
        "/admin",
        if open {
            "Self-registration is open."
        } else {
            "Self-registration is closed."
        },
    ))
}
