//! Signing in and out.

use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::Either;

use crate::auth::login::{self as signing_in, LoginLimits, LoginResult};
use crate::auth::second_factor::{self, Checked, Method, Purpose, Stage};
use crate::auth::sessions;
use crate::auth::throttle::Policy;
use crate::error::AppResult;
use crate::web::forms::{CsrfForm, ANON_CSRF_COOKIE};
use crate::web::guards::{remove_session_cookie, session_cookie, AnySession, Ctx, SigningIn};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::{self, FactorAnswer};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        login_page,
        login,
        second_factor_page,
        give_second_factor,
        logout
    ]
}

/// The longest `next` followed after signing in, in bytes.
pub const NEXT_MAX: usize = 512;

/// `next` if it is a path on this portal (one leading `/`, no `//` or `\\` that a browser would read as another
/// host, printable ASCII only, at most [`NEXT_MAX`] bytes, a valid origin-form URI); else `None`. Anything
/// else would make the sign-in page an open redirect.
pub fn safe_next(next: &str) -> Option<&str> {
    let local = next.len() <= NEXT_MAX
        && next.starts_with('/')
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && rocket::http::uri::Origin::parse(next).is_ok();
    local.then_some(next)
}

/// Where to go after signing in: `next` when it is safe, else the dashboard. An address that answers with a file
/// is offered on the "signed in already" page instead of opened: a link from another site to
/// `/login?next=…/export` would otherwise open an export or a download in the person's name (recorded as theirs)
/// the moment they sign in, as that page already prevents for a browser signed in before.
fn after_sign_in(next: &str) -> String {
    match safe_next(next) {
        Some(next) if answers_with_a_file(next) => login_link(next),
        Some(next) => next.to_string(),
        None => "/dashboard".to_string(),
    }
}

/// Whether `path` is one of the portal's downloads, exports or packages (a file, not a page), judged on its
/// segments as the router decodes them (`%2F`, `%74` and doubled slashes change nothing).
fn answers_with_a_file(path: &str) -> bool {
    let Ok(origin) = rocket::http::uri::Origin::parse(path) else {
        return true;
    };
    let segments: Vec<&str> = origin.path().segments().collect();
    let last = segments.last().copied().unwrap_or_default();
    segments.contains(&"files")
        || matches!(last, "export" | "package")
        || [".csv", ".json", ".txt", ".zip"]
            .iter()
            .any(|ext| last.ends_with(ext))
}

/// `/login?next=…` for the page a person was on (a safe local path), or `/login`.
pub fn login_link(next: &str) -> String {
    match safe_next(next) {
        Some(next) => format!("/login?next={}", encode(next)),
        None => "/login".to_string(),
    }
}

/// The hidden fields that carry `next` in the passkey form of the second step.
fn next_fields(next: Option<&str>) -> Vec<(&'static str, &str)> {
    next.map(|n| ("next", n)).into_iter().collect()
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[rocket::get("/login?<next>")]
fn login_page(ctx: Ctx<'_>, next: Option<&str>) -> Either<Redirect, Page> {
    let next = next.and_then(safe_next);
    if ctx.who.is_some() {
        // Signed in already: a `next` is offered, not followed. This is where another site's link ends up once
        // the 401 page it met (its navigation carried no session cookie) is answered with "Sign in": following
        // `next` would open a download or an export in the person's name without their asking the portal.
        return match next {
            Some(next) => Either::Right(crate::web::fairings::continue_when_signed_in(next)),
            None => Either::Left(Redirect::to("/dashboard")),
        };
    }
    Either::Right(Page::new("login.html.tera").with("next", next))
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
    /// Where the person was before being asked to sign in (followed only if [`safe_next`]).
    #[field(default = String::new())]
    next: String,
    /// A confirmation link's token, from the page in front of it: an account whose address is not confirmed signs
    /// in only with it (and confirms it so).
    #[field(default = String::new())]
    confirm: String,
}

#[rocket::post("/login", data = "<form>")]
async fn login(
    ctx: Ctx<'_>,
    jar: &CookieJar<'_>,
    user_agent: UserAgent,
    form: CsrfForm<LoginForm>,
) -> AppResult<Either<Redirect, Page>> {
    let LoginForm {
        email,
        password,
        next,
        confirm,
    } = form.0;
    let confirm = (!confirm.is_empty() && confirm.len() <= 128).then_some(confirm);
    let confirm_shown = confirm.clone();
    let next = safe_next(&next).map(str::to_string);
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
        attempts: Policy {
            max_failures: s.login_attempts_per_minute,
            window_secs: 60,
        },
    };
    let (audit, hasher, keys, actor, refusals) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.state.throttle_key.clone(),
        ctx.actor.clone(),
        ctx.state.refusals.clone(),
    );
    let email_shown = email.clone();
    let now = ctx.state.clock.now();
    let earlier_session = jar
        .get_private(crate::web::guards::session_cookie_name(ctx.tls))
        .map(|c| sessions::hash_token(c.value()));
    let result = ctx
        .state
        .db
        .run_lazily(move |c| {
            signing_in::login(
                c,
                &audit,
                &hasher,
                &keys,
                &actor,
                &refusals,
                &email,
                &password,
                &limits,
                user_agent.0.as_deref(),
                earlier_session.as_deref(),
                confirm.as_deref(),
                now,
            )
        })
        .await?;
    match result {
        LoginResult::Success { token, user } => {
            // A new session id at every login; the anonymous form token is no longer needed.
            jar.add_private(session_cookie(ctx.tls, token));
            jar.remove_private(crate::web::guards::cookie_removal(
                ANON_CSRF_COOKIE,
                "/",
                ctx.tls,
            ));
            let stage = ctx
                .state
                .db
                .run(move |c| second_factor::stage_after_password(c, &user))
                .await?;
            Ok(Either::Left(Redirect::to(match (stage, next) {
                // The second step carries `next` on.
                (Stage::Pending, Some(next)) => {
                    format!("/login/second-factor?next={}", encode(&next))
                }
                (Stage::Pending, None) => "/login/second-factor".to_string(),
                (Stage::MustEnrol, _) => "/account/security".to_string(),
                (Stage::Complete, next) => after_sign_in(next.as_deref().unwrap_or_default()),
            })))
        }
        LoginResult::Failed => Ok(Either::Right(
            Page::new("login.html.tera")
                .status(Status::Unauthorized)
                .with("error", "The email or password is not correct.")
                .with("email", email_shown)
                .with("next", &next)
                .with("confirm", &confirm_shown),
        )),
        LoginResult::Throttled => Ok(Either::Right(
            Page::new("login.html.tera")
                .status(Status::TooManyRequests)
                .retry_after(ctx.state.settings.login_window_seconds.max(1) as u64)
                .with(
                    "error",
                    "Too many failed sign-in attempts. Wait a few minutes and try again.",
                )
                .with("email", email_shown)
                .with("next", &next)
                .with("confirm", &confirm_shown),
        )),
    }
}

/// The second step of signing in, for an account with a second factor.
#[rocket::get("/login/second-factor?<next>")]
async fn second_factor_page(
    ctx: Ctx<'_>,
    who: SigningIn<'_>,
    next: Option<&str>,
) -> AppResult<Page> {
    let options = step_up::passkey_options(ctx.state, &who).await?;
    Ok(Page::new("login_second_factor.html.tera")
        .with("passkey_options", options)
        .with("next_fields", next_fields(next.and_then(safe_next)))
        .with("next", next.and_then(safe_next)))
}

#[derive(FromForm)]
struct SecondFactorForm {
    #[field(default = String::new())]
    factor_code: String,
    #[field(default = String::new())]
    webauthn_response: String,
    #[field(default = String::new())]
    next: String,
}

#[rocket::post("/login/second-factor", data = "<form>")]
async fn give_second_factor(
    ctx: Ctx<'_>,
    who: SigningIn<'_>,
    jar: &CookieJar<'_>,
    form: CsrfForm<SecondFactorForm>,
) -> AppResult<Either<Notice, Page>> {
    let next = safe_next(&form.0.next).map(str::to_string);
    let answer = FactorAnswer::new(form.0.factor_code, form.0.webauthn_response);
    // A copied passkey that was the last factor ends this session too: no new ceremony can be begun on it.
    let mut signed_out = false;
    let (status, error) = if answer.is_empty() {
        (Status::UnprocessableEntity, step_up::NO_ANSWER)
    } else {
        match step_up::check_answer(ctx.state, ctx.actor.clone(), &who, answer, Purpose::SignIn)
            .await?
        {
            Checked::Passed(method, renewed) => {
                // The session that holds the full sign-in has a new token (replaced in the check's transaction).
                if let Some(token) = renewed {
                    jar.add_private(session_cookie(ctx.tls, token.into_cookie_value()));
                }
                let message = match method {
                    Method::RecoveryCode { left } => format!(
                        "You used a recovery code: {left} left. Make new ones, or set up your authenticator again, at Account > Second factors (/account/security)."
                    ),
                    _ => "You are signed in.".to_string(),
                };
                return Ok(Either::Left(Notice::redirect(
                    after_sign_in(next.as_deref().unwrap_or_default()),
                    message,
                )));
            }
            refused => {
                signed_out = refused.signed_out();
                (
                    match refused {
                        Checked::Throttled => Status::TooManyRequests,
                        _ => Status::Unauthorized,
                    },
                    step_up::refusal(&refused).unwrap_or_default(),
                )
            }
        }
    };
    if signed_out {
        // The browser forgets the ended session; the sign-in page says why.
        crate::web::guards::remove_session_cookie(ctx.tls, jar);
        return Ok(Either::Left(Notice::redirect("/login", error)));
    }
    let options = step_up::passkey_options(ctx.state, &who).await?;
    Ok(Either::Right(
        Page::new("login_second_factor.html.tera")
            .status(status)
            .retry_after(ctx.state.settings.second_factor_window_seconds.max(1) as u64)
            .with("error", error)
            .with("passkey_options", options)
            .with("next_fields", next_fields(next.as_deref()))
            .with("next", next),
    ))
}

/// A sign-out; `reason=idle` when the page's own script signs out at the idle timeout (static/session.js).
#[derive(FromForm)]
struct LogoutForm {
    #[field(default = String::new())]
    reason: String,
}

#[rocket::post("/logout", data = "<form>")]
async fn logout(
    ctx: Ctx<'_>,
    user: AnySession<'_>,
    jar: &CookieJar<'_>,
    form: CsrfForm<LogoutForm>,
) -> AppResult<Notice> {
    let (audit, actor, hash) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        user.session_hash.clone(),
    );
    let ending = if form.0.reason == "idle" {
        signing_in::SessionEnd::IdleTimeout
    } else {
        signing_in::SessionEnd::SignedOut
    };
    ctx.state
        .db
        .run(move |c| signing_in::logout(c, &audit, &actor, &hash, ending))
        .await?;
    remove_session_cookie(ctx.tls, jar);
    Ok(Notice::redirect("/login", "You are signed out."))
}
