//! Every signed-in person, whatever the role: `/dashboard` (the way to one's own home), the account's
//! details, password change, and the live sessions (each can be ended).

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::Either;

use crate::auth::login::{self, PasswordChange};
use crate::auth::sessions::{self, SessionView};
use crate::auth::throttle::Policy;
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::web::forms::{CsrfForm, NoFields};
use crate::web::guards::{remove_session_cookie, Ctx, CurrentUser};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::AccountView;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        dashboard,
        account_page,
        change_password,
        end_session,
        end_other_sessions,
        notification_choices,
        leave_organisation
    ]
}

/// Where each role starts.
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
    if !user.user.email_verified() {
        return Redirect::to("/verify-email");
    }
    Redirect::to(home_of(user.role))
}

#[rocket::get("/account")]
async fn account_page(ctx: Ctx<'_>, user: CurrentUser<'_>) -> AppResult<Page> {
    account_page_for(&ctx, &user).await
}

/// The account page with what every rendering of it needs (organisation, sessions).
async fn account_page_for(ctx: &Ctx<'_>, user: &CurrentUser<'_>) -> AppResult<Page> {
    // The organisation's name, and for a member of a company what keeps it from leaving now, if anything.
    let (org, kept_from_leaving) = match user.user.organisation_id.clone() {
        Some(id) => {
            let (uid, submitter) = (user.user.id.clone(), user.role == Role::Submitter);
            ctx.state
                .db
                .run(move |c| {
                    let name = crate::models::account::organisation_name(c, &id)?;
                    let kept = if submitter {
                        crate::auth::membership::kept_from_leaving(c, &id, &uid)?
                    } else {
                        None
                    };
                    Ok((Some(name), kept))
                })
                .await?
        }
        None => (None, None),
    };
    let sessions = live_sessions(ctx, user).await?;
    let uid = user.user.id.clone();
    let off = ctx
        .state
        .db
        .run(move |c| Ok(crate::models::notification::turned_off(c, &uid)?))
        .await?;
    Ok(Page::new("account.html.tera")
        .with(
            "notifications",
            crate::workflow::notifications::preferences(user.user.role(), &off),
        )
        .with("second_factor_any", user.has_factor)
        .with("organisation", org)
        .with("kept_from_leaving", kept_from_leaving)
        // For the training and NDA dates: said expired once they are.
        .with("now", ctx.state.clock.now())
        .with("sessions", sessions)
        .with("account", account_view(&user.user)))
}

async fn live_sessions(ctx: &Ctx<'_>, user: &CurrentUser<'_>) -> AppResult<Vec<SessionView>> {
    let (idle, absolute) = ctx.state.settings.session_timeouts();
    let (id, hash) = (user.user.id.clone(), user.session_hash.clone());
    let now = ctx.state.clock.now();
    ctx.state
        .db
        .run(move |c| sessions::list_live(c, &id, &hash, now, idle, absolute))
        .await
}

pub fn account_view(u: &crate::models::account::User) -> AccountView<'_> {
    AccountView::of(u)
}

#[derive(FromForm)]
struct NotificationForm {
    /// The optional kinds left on (ticked boxes; none ticked sends none).
    #[field(default = Vec::new())]
    on: Vec<String>,
}

#[rocket::post("/account/notifications", data = "<form>")]
async fn notification_choices(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    form: CsrfForm<NotificationForm>,
) -> AppResult<Notice> {
    let (audit, actor, u, on) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        user.user.clone(),
        form.0.on,
    );
    ctx.state
        .db
        .run(move |c| crate::workflow::notifications::set_preferences(c, &audit, &actor, &u, &on))
        .await?;
    Ok(Notice::redirect(
        "/account#notifications",
        "Your email notification choices are saved.",
    ))
}

#[derive(FromForm)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

#[rocket::post("/account/password", data = "<form>")]
async fn change_password(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    jar: &CookieJar<'_>,
    form: CsrfForm<PasswordForm>,
) -> AppResult<Either<Notice, Page>> {
    let PasswordForm {
        current_password,
        new_password,
    } = form.0;
    let policy = Policy::current_password(&ctx.state.settings);
    let (audit, hasher, keys, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.state.throttle_key.clone(),
        ctx.actor.clone(),
    );
    let (u, hash) = (user.user.clone(), user.session_hash.clone());
    let now = ctx.state.clock.now();
    let result = ctx
        .state
        .db
        .run_lazily(move |c| {
            login::change_password(
                c,
                &audit,
                &hasher,
                &keys,
                policy,
                &actor,
                &u,
                &hash,
                &current_password,
                &new_password,
                now,
            )
        })
        .await?;
    match result {
        PasswordChange::Changed { token } => {
            jar.add_private(crate::web::guards::session_cookie(ctx.tls, token));
            Ok(Either::Left(Notice::redirect(
                "/account",
                "Your password is changed. Your other sessions have ended.",
            )))
        }
        PasswordChange::SessionEnded => {
            remove_session_cookie(ctx.tls, jar);
            Ok(Either::Left(Notice::redirect(
                "/login",
                "You were signed out after too many wrong current passwords. Sign in again to change your password.",
            )))
        }
        PasswordChange::Throttled => {
            let mut errors = crate::auth::accounts::FieldErrors::default();
            errors.add(
                "current_password",
                "Too many attempts (wrong current passwords, or more checks than a person needs). Wait and try again later.",
            );
            Ok(Either::Right(
                account_page_for(&ctx, &user)
                    .await?
                    .status(Status::TooManyRequests)
                    .with("errors", errors),
            ))
        }
        PasswordChange::Invalid(errors) => Ok(Either::Right(
            account_page_for(&ctx, &user)
                .await?
                .status(Status::UnprocessableEntity)
                .with("errors", errors),
        )),
    }
}

/// Ends one of the account's other sessions. Scoped by the account: another account's session id, the
/// current session's, or an unknown one answer 404.
#[rocket::post("/account/sessions/<public_id>/end", data = "<_form>")]
async fn end_session(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    public_id: &str,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
    let (id, hash, public_id) = (
        user.user.id.clone(),
        user.session_hash.clone(),
        public_id.to_string(),
    );
    let ended = ctx
        .state
        .db
        .run(move |c| login::end_session(c, &audit, &actor, &id, &hash, &public_id))
        .await?;
    if !ended {
        return Err(AppError::NotFound);
    }
    Ok(Notice::redirect("/account", "That session has ended."))
}

#[rocket::post("/account/sessions/end-others", data = "<_form>")]
async fn end_other_sessions(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
    let (id, hash) = (user.user.id.clone(), user.session_hash.clone());
    let n = ctx
        .state
        .db
        .run(move |c| login::end_other_sessions(c, &audit, &actor, &id, &hash))
        .await?;
    let message = match n {
        0 => "You had no other sessions.".to_string(),
        1 => "Your other session has ended.".to_string(),
        n => format!("Your {n} other sessions have ended."),
    };
    Ok(Notice::redirect("/account", message))
}

#[derive(FromForm)]
struct LeaveForm {
    #[field(default = String::new())]
    confirm: String,
}

/// A member leaves its organisation: its account closes (disabled, every session ended), audited as
/// `organisation.member_leave`. An act that cannot be undone by the person, so it takes a fresh second factor
/// when the account has one, and a ticked box.
#[rocket::post("/account/leave-organisation", data = "<form>")]
async fn leave_organisation(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    jar: &CookieJar<'_>,
    form: StepUpForm<LeaveForm>,
) -> AppResult<Notice> {
    if form.0.confirm != "yes" {
        return Err(AppError::Invalid(
            "Tick the box to confirm that you leave the organisation and your account closes."
                .into(),
        ));
    }
    let (audit, actor, who) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        user.user.clone(),
    );
    let name = ctx
        .state
        .db
        .run(move |c| crate::auth::membership::leave(c, &audit, &actor, &who))
        .await?;
    remove_session_cookie(ctx.tls, jar);
    Ok(Notice::redirect(
        "/login",
        format!(
            "You have left {name}. Your account is closed and you are signed out everywhere; the organisation's \
             submissions stay with it. To work with it again, ask one of its administrators to invite you."
        ),
    ))
}
