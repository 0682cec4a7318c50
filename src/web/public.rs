//! Pages anyone may reach: home, sign in/out, registration, the first-start setup link.

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::Either;

use crate::auth::accounts::{self, FieldErrors, LoginLimits, LoginResult, NewAccount};
use crate::auth::throttle::Policy;
use crate::error::{AppError, AppResult};
use crate::models::account::Role;
use crate::models::settings;
use crate::web::fairings::CrossSiteRefused;
use crate::web::forms::{audit_csrf_refusal, CsrfForm, ANON_CSRF_COOKIE};
use crate::web::guards::{remove_session_cookie, session_cookie, Ctx, CurrentUser};
use crate::web::pages::{Notice, Page};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        home,
        login_page,
        login,
        logout,
        register_page,
        register,
        setup_page,
        setup,
        cross_site_refused
    ]
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

#[rocket::get("/login")]
fn login_page(ctx: Ctx<'_>) -> Either<Redirect, Page> {
    if ctx.who.is_some() {
        return Either::Left(Redirect::to("/dashboard"));
    }
    Either::Right(Page::new("login.html.tera"))
}

#[derive(FromForm)]
struct LoginForm {
    email: String,
    password: String,
}

#[rocket::post("/login", data = "<form>")]
async fn login(
    ctx: Ctx<'_>,
    jar: &CookieJar<'_>,
    form: CsrfForm<LoginForm>,
) -> AppResult<Either<Redirect, Page>> {
    let LoginForm { email, password } = form.0;
    let s = &ctx.state.settings;
    let limits = LoginLimits {
        account: Policy {
            max_failures: s.login_max_failures,
            window_secs: s.login_window_seconds,
        },
        // One address may try several accounts (a shared office), but not without bound.
        address: Policy {
            max_failures: s.login_max_failures * 4,
            window_secs: s.login_window_seconds,
        },
    };
    let (audit, hasher, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
    );
    let email_shown = email.clone();
    let result = ctx
        .state
        .db
        .run(move |c| accounts::login(c, &audit, &hasher, &actor, &email, &password, &limits))
        .await?;
    match result {
        LoginResult::Success { token, .. } => {
            // A new session id at every login; the anonymous form token is no longer needed.
            jar.add_private(session_cookie(ctx.tls, token));
            jar.remove_private(rocket::http::Cookie::build(ANON_CSRF_COOKIE).path("/"));
            Ok(Either::Left(Redirect::to("/dashboard")))
        }
        LoginResult::Failed => Ok(Either::Right(
            Page::new("login.html.tera")
                .status(Status::Unauthorized)
                .with("error", "The email or password is not correct.")
                .with("email", email_shown),
        )),
        LoginResult::Throttled => Ok(Either::Right(
            Page::new("login.html.tera")
                .status(Status::TooManyRequests)
                .with(
                    "error",
                    "Too many failed sign-in attempts. Wait a few minutes and try again.",
                )
                .with("email", email_shown),
        )),
    }
}

#[rocket::post("/logout", data = "<_form>")]
async fn logout(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    jar: &CookieJar<'_>,
    _form: CsrfForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, hash) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        user.session_hash.clone(),
    );
    ctx.state
        .db
        .run(move |c| accounts::logout(c, &audit, &actor, &hash))
        .await?;
    remove_session_cookie(ctx.tls, jar);
    Ok(Notice::redirect("/login", "You are signed out."))
}

#[rocket::get("/register")]
async fn register_page(ctx: Ctx<'_>) -> AppResult<Page> {
    let open = ctx
        .state
        .db
        .run(|c| Ok(settings::self_registration_open(c)?))
        .await?;
    Ok(Page::new("register.html.tera").with("registration_open", open))
}

#[derive(FromForm, serde::Serialize)]
struct RegisterForm {
    email: String,
    display_name: String,
    organisation: String,
    #[serde(skip)]
    password: String,
}

fn register_errors(values: &RegisterForm, errors: FieldErrors) -> Page {
    Page::new("register.html.tera")
        .status(Status::UnprocessableEntity)
        .with("registration_open", true)
        .with("values", values)
        .with("errors", errors)
}

#[rocket::post("/register", data = "<form>")]
async fn register(ctx: Ctx<'_>, form: CsrfForm<RegisterForm>) -> AppResult<Either<Notice, Page>> {
    let values = form.0;
    let new = NewAccount {
        email: values.email.clone(),
        display_name: values.display_name.clone(),
        role: Role::Submitter,
        organisation: Some(values.organisation.clone()),
        password: values.password.clone(),
    };
    let (audit, hasher, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
    );
    let result = ctx
        .state
        .db
        .run(move |c| accounts::create(c, &audit, &hasher, &actor, new, true))
        .await?;
    match result {
        // The same answer whether or not the email was already registered: no account enumeration.
        Ok(_) => Ok(Either::Left(Notice::redirect(
            "/login",
            "Registration received. Sign in with your email and password.",
        ))),
        Err(errors) => Ok(Either::Right(register_errors(&values, errors))),
    }
}

#[rocket::get("/setup/<token>")]
async fn setup_page(ctx: Ctx<'_>, token: &str) -> AppResult<Page> {
    let t = token.to_string();
    if !ctx
        .state
        .db
        .run(move |c| accounts::setup_token_live(c, &t))
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
    let result = ctx
        .state
        .db
        .run(move |c| {
            accounts::complete_setup(c, &audit, &hasher, &actor, &t, &email, &name, &password)
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

/// Where `fairings::OriginCheck` sends a cross-site state-changing request: audited, then 403.
#[rocket::get("/__refused/cross-site")]
fn cross_site_refused(_audited: CrossSiteAudited) -> AppError {
    AppError::Forbidden("This request came from another site and was refused.".into())
}

struct CrossSiteAudited;

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for CrossSiteAudited {
    type Error = ();
    async fn from_request(req: &'r rocket::Request<'_>) -> rocket::request::Outcome<Self, ()> {
        if req.local_cache(|| CrossSiteRefused(false)).0 {
            audit_csrf_refusal(req, "cross-site origin").await;
        }
        rocket::request::Outcome::Success(CrossSiteAudited)
    }
}
