//! Pages anyone may reach: home, sign-in (`signin`), registration, email confirmation, password reset,
//! invitations, the first-start setup link.

pub mod help;
pub mod signin;

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::Either;

use crate::auth::accounts::{self, FieldErrors};
use crate::auth::invitations;
use crate::auth::login::LeftBy;
use crate::auth::registration::{self, Registration};
use crate::error::{AppError, AppResult};
use crate::models::account_token::Purpose;
use crate::models::settings;
use crate::web::deliver;
use crate::web::fairings::CrossSiteRefused;
use crate::web::forms::{audit_cross_site_refusal, CsrfForm};
use crate::web::guards::{end_browser_session, Ctx, CurrentUser};
use crate::web::pages::{Notice, Page};

pub fn routes() -> Vec<rocket::Route> {
    let mut routes = signin::routes();
    routes.extend(help::routes());
    routes.extend(rocket::routes![
        home,
        register_page,
        register,
        verify_email_pending,
        verify_email_page,
        forgot_page,
        forgot,
        reset_page,
        reset,
        invitation_page,
        accept_invitation,
        setup_page,
        setup,
        cross_site_refused
    ]);
    routes
}

#[rocket::get("/")]
async fn home(ctx: Ctx<'_>) -> AppResult<Page> {
    let open = ctx
        .state
        .db
        .run(|c| Ok(settings::self_registration_open(c)?))
        .await?;
    Ok(Page::new("home.html.tera").with("registration_open", open))
}

#[rocket::get("/register")]
async fn register_page(ctx: Ctx<'_>) -> AppResult<Page> {
    let open = ctx
        .state
        .db
        .run(|c| Ok(settings::self_registration_open(c)?))
        .await?;
    Ok(Page::new("register.html.tera")
        .with("registration_open", open)
        .with(
            "unconfirmed_account_days",
            ctx.state.settings.unconfirmed_account_days,
        ))
}

#[derive(FromForm, serde::Serialize)]
struct RegisterForm {
    email: String,
    display_name: String,
    organisation: String,
    #[serde(skip)]
    password: String,
}

fn register_errors(values: &RegisterForm, errors: FieldErrors, removed_after_days: i64) -> Page {
    Page::new("register.html.tera")
        .status(Status::UnprocessableEntity)
        .with("registration_open", true)
        .with("unconfirmed_account_days", removed_after_days)
        .with("values", values)
        .with("errors", errors)
}

/// Always a new organisation: the typed name joins nothing, and the answer is the same whether or not the
/// address (or the name) is known.
#[rocket::post("/register", data = "<form>")]
async fn register(ctx: Ctx<'_>, form: CsrfForm<RegisterForm>) -> AppResult<Either<Notice, Page>> {
    let values = form.0;
    let reg = Registration {
        email: values.email.clone(),
        display_name: values.display_name.clone(),
        organisation: values.organisation.clone(),
        password: values.password.clone(),
    };
    let state = ctx.state;
    let (audit, refusals, hasher, keys, mailer, actor) = (
        state.audit.clone(),
        state.refusals.clone(),
        state.hasher.clone(),
        state.throttle_key.clone(),
        state.mailer.clone(),
        ctx.actor.clone(),
    );
    let settings = state.settings.clone();
    let now = state.clock.now();
    let result = state
        .db
        .run_lazily(move |c| {
            registration::register(
                c, &audit, &refusals, &hasher, &keys, &mailer, &settings, &actor, reg, now,
            )
        })
        .await?;
    match result {
        Ok(mail) => {
            // Whether or not this went out, the visitor hears the same (a failure is in the server's log).
            deliver::send(state, mail).await;
            Ok(Either::Left(Notice::redirect(
                "/login",
                "Registration received. We sent a link to your email address: open it and sign in there, with the password you chose, to confirm the address.",
            )))
        }
        Err(errors) => Ok(Either::Right(register_errors(
            &values,
            errors,
            state.settings.unconfirmed_account_days,
        ))),
    }
}

/// Where a signed-in account whose address is not confirmed lands: what to do, and a new link on request.
#[rocket::get("/verify-email")]
fn verify_email_pending(user: CurrentUser<'_>) -> Either<Redirect, Page> {
    if user.user.email_verified() {
        return Either::Left(Redirect::to("/dashboard"));
    }
    Either::Right(Page::new("verify_email_pending.html.tera").with("email", &user.user.email))
}

/// The page in front of a confirmation link: the link itself changes nothing (mail scanners open links). It is the
/// sign-in form with the link's token: signing in with the password chosen at registration confirms the address
/// (an account whose address is not confirmed signs in no other way; see `auth::login::login`).
#[rocket::get("/verify-email/<token>")]
async fn verify_email_page(ctx: Ctx<'_>, token: &str) -> AppResult<Page> {
    let t = token.to_string();
    let now = ctx.state.clock.now();
    let Some(account) = ctx
        .state
        .db
        .run(move |c| registration::confirmation_for(c, &t, now))
        .await?
    else {
        return Err(AppError::Gone(
            "This confirmation link has been used or has expired. For a new one, use \"Forgot your password?\" \
             on the sign-in page: a password reset confirms the address too."
                .into(),
        ));
    };
    Ok(Page::new("login.html.tera")
        .with("confirm", token)
        .with("email", &account.email))
}

#[rocket::get("/password/forgot")]
fn forgot_page() -> Page {
    Page::new("password_forgot.html.tera")
}

#[derive(FromForm)]
struct ForgotForm {
    email: String,
}

#[rocket::post("/password/forgot", data = "<form>")]
async fn forgot(ctx: Ctx<'_>, form: CsrfForm<ForgotForm>) -> AppResult<Notice> {
    let state = ctx.state;
    let (audit, refusals, keys, mailer, actor, email) = (
        state.audit.clone(),
        state.refusals.clone(),
        state.throttle_key.clone(),
        state.mailer.clone(),
        ctx.actor.clone(),
        form.0.email,
    );
    let settings = state.settings.clone();
    let now = state.clock.now();
    let mail = state
        .db
        .run(move |c| {
            registration::request_reset(
                c, &audit, &refusals, &keys, &mailer, &settings, &actor, &email, now,
            )
        })
        .await?;
    // Not awaited: an SMTP exchange only for a live account would tell by the time taken whether the address has one.
    if let Some(mail) = mail {
        crate::mail::send_detached(&state.mailer, mail);
    }
    // The same answer whether or not the address has an account.
    Ok(Notice::redirect(
        "/login",
        "If an account uses that address, we sent it a link to choose a new password. The link works once and expires soon.",
    ))
}

#[rocket::get("/password/reset/<token>")]
async fn reset_page(ctx: Ctx<'_>, token: &str) -> AppResult<Page> {
    let t = token.to_string();
    let now = ctx.state.clock.now();
    if !ctx
        .state
        .db
        .run(move |c| registration::link_live(c, &t, Purpose::ResetPassword, now))
        .await?
    {
        return Err(AppError::Gone(
            "This password link has been used or has expired. Ask for a new one under \"Forgot your password?\".".into(),
        ));
    }
    Ok(Page::new("password_reset.html.tera").with("token", token))
}

#[derive(FromForm)]
struct ResetForm {
    new_password: String,
}

#[rocket::post("/password/reset/<token>", data = "<form>")]
async fn reset(
    ctx: Ctx<'_>,
    jar: &CookieJar<'_>,
    token: &str,
    form: CsrfForm<ResetForm>,
) -> AppResult<Either<Notice, Page>> {
    let (audit, hasher, actor, t, password) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
        token.to_string(),
        form.0.new_password,
    );
    let now = ctx.state.clock.now();
    let result = ctx
        .state
        .db
        .run_lazily(move |c| {
            registration::reset_password(c, &audit, &hasher, &actor, &t, &password, now)
        })
        .await?;
    match result {
        Ok(()) => {
            end_browser_session(&ctx, jar, LeftBy::PasswordReset).await;
            Ok(Either::Left(Notice::redirect(
                "/login",
                "Your password is changed and every session of your account has ended. Sign in with the new password.",
            )))
        }
        Err(errors) => Ok(Either::Right(
            Page::new("password_reset.html.tera")
                .status(Status::UnprocessableEntity)
                .with("token", token)
                .with("errors", errors),
        )),
    }
}

#[rocket::get("/invitations/<token>")]
async fn invitation_page(ctx: Ctx<'_>, token: &str) -> AppResult<Page> {
    let t = token.to_string();
    let now = ctx.state.clock.now();
    let view = ctx
        .state
        .db
        .run(move |c| invitations::view(c, &t, now))
        .await?;
    Ok(Page::new("invitation.html.tera")
        .with("token", token)
        .with("invitation", view))
}

#[derive(FromForm)]
struct AcceptForm {
    display_name: String,
    password: String,
}

/// The invitee chooses its own password; nobody else ever knew it.
#[rocket::post("/invitations/<token>", data = "<form>")]
async fn accept_invitation(
    ctx: Ctx<'_>,
    jar: &CookieJar<'_>,
    token: &str,
    form: CsrfForm<AcceptForm>,
) -> AppResult<Either<Notice, Page>> {
    let AcceptForm {
        display_name,
        password,
    } = form.0;
    let (audit, hasher, actor, t, name) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
        token.to_string(),
        display_name.clone(),
    );
    let now = ctx.state.clock.now();
    let result = ctx
        .state
        .db
        .run_lazily(move |c| {
            invitations::accept(c, &audit, &hasher, &actor, &t, &name, &password, now)
        })
        .await?;
    match result {
        Ok(_) => {
            // Whoever was signed in on this browser is not the invitee.
            end_browser_session(&ctx, jar, LeftBy::InvitationAccepted).await;
            Ok(Either::Left(Notice::redirect(
                "/login",
                "Your account is ready. Sign in with your email address and the password you chose.",
            )))
        }
        Err(errors) => {
            let t = token.to_string();
            let view = ctx
                .state
                .db
                .run(move |c| invitations::view(c, &t, now))
                .await?;
            Ok(Either::Right(
                Page::new("invitation.html.tera")
                    .status(Status::UnprocessableEntity)
                    .with("token", token)
                    .with("invitation", view)
                    .with("display_name", display_name)
                    .with("errors", errors),
            ))
        }
    }
}

#[rocket::get("/setup/<token>")]
async fn setup_page(ctx: Ctx<'_>, token: &str) -> AppResult<Page> {
    let t = token.to_string();
    let now = ctx.state.clock.now();
    if !ctx
        .state
        .db
        .run(move |c| accounts::setup_token_live(c, &t, now))
        .await?
    {
        return Err(AppError::Gone(
            "This setup link has been used or has expired. Restart the portal for a new one."
                .into(),
        ));
    }
    Ok(Page::new("setup.html.tera").with("token", token))
}

#[derive(FromForm, serde::Serialize)]
struct SetupForm {
    email: String,
    display_name: String,
    #[serde(skip)]
    password: String,
}

#[rocket::post("/setup/<token>", data = "<form>")]
async fn setup(
    ctx: Ctx<'_>,
    token: &str,
    form: CsrfForm<SetupForm>,
) -> AppResult<Either<Notice, Page>> {
    let values = form.0;
    let (audit, hasher, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
    );
    let (t, email, name, password) = (
        token.to_string(),
        values.email.clone(),
        values.display_name.clone(),
        values.password.clone(),
    );
    let now = ctx.state.clock.now();
    let result = ctx
        .state
        .db
        .run_lazily(move |c| {
            accounts::complete_setup(
                c, &audit, &hasher, &actor, &t, &email, &name, &password, now,
            )
        })
        .await?;
    match result {
        Ok(_) => Ok(Either::Left(Notice::redirect(
            "/login",
            "The administrator account is ready. Sign in.",
        ))),
        Err(errors) => Ok(Either::Right(
            Page::new("setup.html.tera")
                .status(Status::UnprocessableEntity)
                .with("token", token)
                .with("values", &values)
                .with("errors", errors),
        )),
    }
}

/// Where `fairings::OriginCheck` sends a cross-site state-changing request, or a read embedded in another
/// site's page: audited, then 403.
#[rocket::get("/__refused/cross-site")]
fn cross_site_refused(_audited: CrossSiteAudited) -> AppError {
    AppError::Refused("This request came from another site and was refused.".into())
}

struct CrossSiteAudited;

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for CrossSiteAudited {
    type Error = ();
    async fn from_request(req: &'r rocket::Request<'_>) -> rocket::request::Outcome<Self, ()> {
        if let Some(reason) = req.local_cache(|| CrossSiteRefused(None)).0 {
            audit_cross_site_refusal(req, reason).await;
        }
        rocket::request::Outcome::Success(CrossSiteAudited)
    }
}
