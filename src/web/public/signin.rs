//! Signing in and out.

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::Either;

use crate::auth::login::{self as signing_in, LoginLimits, LoginResult};
use crate::auth::throttle::Policy;
use crate::error::AppResult;
use crate::web::forms::{CsrfForm, ANON_CSRF_COOKIE};
use crate::web::guards::{remove_session_cookie, session_cookie, Ctx, CurrentUser};
use crate::web::pages::{Notice, Page};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![login_page, login, logout]
}

#[rocket::get("/login")]
fn login_page(ctx: Ctx<'_>) -> Either<Redirect, Page> {
    if ctx.who.is_some() {
        return Either::Left(Redirect::to("/dashboard"));
    }
    Either::Right(Page::new("login.html.tera"))
}

/// The client's User-Agent header, if any (kept with the session, cleaned and truncated, so its owner can tell
/// their sessions apart on the account page).
struct UserAgent(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for UserAgent {
    type Error = std::convert::Infallible;
    async fn from_request(
        req: &'r rocket::Request<'_>,
    ) -> rocket::request::Outcome<Self, Self::Error> {
        // Bounded before cleaning: a header is at most what Rocket accepts, but only 200 characters are kept.
        let ua = req
            .headers()
            .get_one("User-Agent")
            .map(|v| v.chars().take(1024).collect());
        rocket::request::Outcome::Success(UserAgent(ua))
    }
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
    user_agent: UserAgent,
    form: CsrfForm<LoginForm>,
) -> AppResult<Either<Redirect, Page>> {
    let LoginForm { email, password } = form.0;
    let s = &ctx.state.settings;
    let limits = LoginLimits {
        account_address: Policy {
            max_failures: s.login_max_failures,
            window_secs: s.login_window_seconds,
        },
        // One address may try several accounts (a shared office), but not without bound.
        address: Policy {
            max_failures: s.login_max_failures * 4,
            window_secs: s.login_window_seconds,
        },
    };
    let (audit, hasher, keys, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.state.throttle_key.clone(),
        ctx.actor.clone(),
    );
    let email_shown = email.clone();
    let now = ctx.state.clock.now();
    let result = ctx
        .state
        .db
        .run(move |c| {
            signing_in::login(
                c,
                &audit,
                &hasher,
                &keys,
                &actor,
                &email,
                &password,
                &limits,
                user_agent.0.as_deref(),
                now,
            )
        })
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
        .run(move |c| signing_in::logout(c, &audit, &actor, &hash))
        .await?;
    remove_session_cookie(ctx.tls, jar);
    Ok(Notice::redirect("/login", "You are signed out."))
}
