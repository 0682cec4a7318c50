//! The person's own second factors (`/account/security`): enrol an authenticator app or a passkey, make new
//! recovery codes, remove a factor; and `/account/step-up`, where a GET that needs a recent factor (an export)
//! sends the person to give it again before coming back.
//!
//! Open to a signed-in session and to one whose account must enrol a factor before anything else. Replacing or
//! removing a factor, and new recovery codes, need the current factor given recently (a step-up form).

use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::response::Redirect;
use rocket::Either;

use crate::auth::second_factor::{
    self, Checked, Checker, Enrolled, Limits, Purpose, Removal, RemovalResult,
};
use crate::auth::throttle::Policy;
use crate::error::{AppError, AppResult};
use crate::web::forms::{CsrfForm, NoFields};
use crate::web::guards::{Ctx, CurrentUser, FreshFactor, ManagingFactors};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::{self, FactorAnswer, StepUpForm};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        security_page,
        totp_page,
        confirm_totp,
        new_recovery_codes,
        recovery_codes_once,
        remove_totp,
        add_passkey,
        remove_passkey,
        step_up_page,
        give_factor_again
    ]
}

#[rocket::get("/account/security")]
async fn security_page(ctx: Ctx<'_>, who: ManagingFactors<'_>) -> AppResult<Page> {
    security_page_for(&ctx, &who, None).await
}

async fn security_page_for(
    ctx: &Ctx<'_>,
    who: &ManagingFactors<'_>,
    error: Option<String>,
) -> AppResult<Page> {
    let (user, hash) = (who.user.clone(), who.session_hash.clone());
    let passkeys = ctx.state.passkeys.clone();
    let now = ctx.state.clock.now();
    let (factors, registration) = ctx
        .state
        .db
        .run(move |c| {
            let factors = second_factor::factors(c, &user.id)?;
            let registration = match passkeys.as_deref() {
                Some(p) => Some(p.begin_registration(c, &user, &hash, now)?),
                None => None,
            };
            Ok((factors, registration))
        })
        .await?;
    Ok(Page::new("security/index.html.tera")
        .with("must_enrol", !factors.any() && who.factor_required)
        .with("factors", factors)
        .with("passkeys_available", ctx.state.passkeys.is_some())
        .with("registration_options", registration)
        .with("error", error))
}

/// The app's secret as text and as a QR code: the one being enrolled, or a new one. Replacing an enrolled app needs
/// the current factor given recently.
#[rocket::get("/account/security/totp")]
async fn totp_page(ctx: Ctx<'_>, who: ManagingFactors<'_>, _fresh: FreshFactor) -> AppResult<Page> {
    let (ring, user) = (ctx.state.current_keys(), who.user.clone());
    let hash = who.session_hash.clone();
    let now = ctx.state.clock.now();
    let setup = ctx
        .state
        .db
        .run(
            move |c| match second_factor::pending_totp(c, &ring, &user, &hash, now)? {
                Some(s) => Ok(s),
                None => second_factor::begin_totp(c, &ring, &user, &hash, now),
            },
        )
        .await?;
    Ok(totp_setup_page(&setup))
}

fn totp_setup_page(setup: &second_factor::TotpSetup) -> Page {
    Page::new("security/totp.html.tera")
        .with("qr", setup.qr_data_uri.as_str())
        .with("secret", setup.secret_text.as_str())
}

/// Where new recovery codes wait, for one showing: a private (encrypted, authenticated) cookie limited to the page
/// that shows them, which deletes it. Shown after a redirect, so reloading the page cannot re-post the form that made
/// them (which would make a new set, or find the app already confirmed).
const CODES_COOKIE: &str = "pcii_recovery_codes";
const CODES_PAGE: &str = "/account/security/recovery-codes";

fn show_codes_once(
    ctx: &Ctx<'_>,
    jar: &CookieJar<'_>,
    codes: &[zeroize::Zeroizing<String>],
    done: &str,
) -> Notice {
    let joined = zeroize::Zeroizing::new(
        codes
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    );
    jar.add_private(
        Cookie::build((CODES_COOKIE, joined.to_string()))
            .path(CODES_PAGE)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(ctx.tls)
            .max_age(rocket::time::Duration::minutes(10))
            .build(),
    );
    Notice::redirect(CODES_PAGE, done)
}

#[rocket::get("/account/security/recovery-codes")]
fn recovery_codes_once(
    ctx: Ctx<'_>,
    _who: ManagingFactors<'_>,
    jar: &CookieJar<'_>,
) -> Either<Page, Notice> {
    let Some(cookie) = jar.get_private(CODES_COOKIE) else {
        return Either::Right(Notice::redirect(
            "/account/security",
            "Recovery codes are shown only once. If you did not save them, make new ones below.",
        ));
    };
    jar.remove_private(crate::web::guards::cookie_removal(
        CODES_COOKIE,
        CODES_PAGE,
        ctx.tls,
    ));
    let value = zeroize::Zeroizing::new(cookie.value().to_string());
    let codes: Vec<&str> = value.split(' ').filter(|c| !c.is_empty()).collect();
    Either::Left(
        Page::new("security/recovery_codes.html.tera")
            .with("codes", codes)
            .with("next", "/dashboard"),
    )
}

#[derive(FromForm)]
struct ConfirmForm {
    #[field(default = String::new())]
    code: String,
}

#[rocket::post("/account/security/totp", data = "<form>")]
async fn confirm_totp(
    ctx: Ctx<'_>,
    who: ManagingFactors<'_>,
    jar: &CookieJar<'_>,
    form: StepUpForm<ConfirmForm>,
) -> AppResult<Either<Page, Notice>> {
    let (audit, ring, keys) = (
        ctx.state.audit.clone(),
        ctx.state.current_keys(),
        ctx.state.throttle_key.clone(),
    );
    let limits = Limits::from_settings(&ctx.state.settings);
    let (actor, user, hash) = (
        ctx.actor.clone(),
        who.user.clone(),
        who.session_hash.clone(),
    );
    let code = form.0.code;
    let now = ctx.state.clock.now();
    let (result, again) = ctx
        .state
        .db
        .run(move |c| {
            let checker = Checker {
                audit: &audit,
                ring: &ring,
                keys: &keys,
                limits,
            };
            let result =
                second_factor::confirm_totp(c, &checker, &actor, &user, &hash, &code, now)?;
            let again = match result {
                Enrolled::WrongCode | Enrolled::Throttled => {
                    second_factor::pending_totp(c, &ring, &user, &hash, now)?
                }
                _ => None,
            };
            Ok((result, again))
        })
        .await?;
    match (result, again) {
        (
            Enrolled::Done {
                recovery_codes,
                renewed,
            },
            _,
        ) => {
            keep_renewed_session(&ctx, jar, renewed);
            let done = "Your authenticator app is set up.";
            Ok(Either::Right(match recovery_codes {
                Some(codes) => show_codes_once(&ctx, jar, &codes, done),
                None => Notice::redirect("/account/security", done),
            }))
        }
        (Enrolled::WrongCode, Some(setup)) => Ok(Either::Left(
            totp_setup_page(&setup)
                .status(Status::UnprocessableEntity)
                .with(
                    "error",
                    "That code does not match. Check the app shows this account, and that your device's clock is right, then enter the current code.",
                ),
        )),
        (Enrolled::Throttled, Some(setup)) => Ok(Either::Left(
            totp_setup_page(&setup)
                .status(Status::TooManyRequests)
                .retry_after(ctx.state.settings.second_factor_window_seconds.max(1) as u64)
                .with("error", "Too many wrong codes. Wait a few minutes and try again."),
        )),
        // Confirmed already (a form sent twice), reset meanwhile, expired, or replaced by a setup another session
        // started: the page says where things stand.
        _ => Ok(Either::Right(Notice::redirect(
            "/account/security",
            "No authenticator app is being set up now: your second factors are listed below.",
        ))),
    }
}

#[rocket::post("/account/security/recovery-codes", data = "<_form>")]
async fn new_recovery_codes(
    ctx: Ctx<'_>,
    who: ManagingFactors<'_>,
    jar: &CookieJar<'_>,
    _form: StepUpForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, actor, user) = (ctx.state.audit.clone(), ctx.actor.clone(), who.user.clone());
    let now = ctx.state.clock.now();
    let codes = ctx
        .state
        .db
        .run(move |c| second_factor::regenerate_recovery_codes(c, &audit, &actor, &user, now))
        .await?;
    Ok(show_codes_once(
        &ctx,
        jar,
        &codes,
        "New recovery codes: the earlier ones no longer work.",
    ))
}

#[derive(FromForm)]
struct RemoveForm {
    #[field(default = String::new())]
    password: String,
}

async fn remove(
    ctx: &Ctx<'_>,
    who: &ManagingFactors<'_>,
    password: String,
    removal: Removal,
) -> AppResult<Either<Page, Notice>> {
    let policy = Policy::current_password(&ctx.state.settings);
    let (audit, hasher, keys, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.state.throttle_key.clone(),
        ctx.actor.clone(),
    );
    let (user, must) = (who.user.clone(), who.factor_required);
    let now = ctx.state.clock.now();
    let result = ctx
        .state
        .db
        .run_lazily(move |c| {
            second_factor::remove_own_with_password(
                c, &audit, &hasher, &keys, policy, &actor, &user, must, &password, removal, now,
            )
        })
        .await?;
    match result {
        RemovalResult::Removed => Ok(Either::Right(Notice::redirect(
            "/account/security",
            "Removed.",
        ))),
        RemovalResult::WrongPassword => Ok(Either::Left(
            security_page_for(ctx, who, Some("That is not your current password.".into()))
                .await?
                .status(Status::UnprocessableEntity),
        )),
        RemovalResult::Throttled => Err(AppError::Throttled(
            "Too many attempts (wrong passwords, or more checks than a person needs). Wait and try again later.".into(),
        )),
    }
}

#[rocket::post("/account/security/totp/remove", data = "<form>")]
async fn remove_totp(
    ctx: Ctx<'_>,
    who: ManagingFactors<'_>,
    form: StepUpForm<RemoveForm>,
) -> AppResult<Either<Page, Notice>> {
    remove(&ctx, &who, form.0.password, Removal::AuthenticatorApp).await
}

#[rocket::post("/account/security/passkeys/<id>/remove", data = "<form>")]
async fn remove_passkey(
    ctx: Ctx<'_>,
    who: ManagingFactors<'_>,
    id: &str,
    form: StepUpForm<RemoveForm>,
) -> AppResult<Either<Page, Notice>> {
    let removal = Removal::Passkey { id: id.to_string() };
    remove(&ctx, &who, form.0.password, removal).await
}

/// A new passkey. Its answer has a field of its own: under the step-up check's field name (`webauthn_response`), a
/// registration posted with a stale factor was checked as a sign-in answer, failed, and counted as a wrong factor.
#[derive(FromForm)]
struct PasskeyForm {
    #[field(default = String::new())]
    name: String,
    #[field(default = String::new())]
    webauthn_registration: String,
}

#[rocket::post("/account/security/passkeys", data = "<form>")]
async fn add_passkey(
    ctx: Ctx<'_>,
    who: ManagingFactors<'_>,
    jar: &CookieJar<'_>,
    form: StepUpForm<PasskeyForm>,
) -> AppResult<Notice> {
    let Some(passkeys) = ctx.state.passkeys.clone() else {
        return Err(AppError::Conflict(
            "Passkeys are not available at this address of the portal.".into(),
        ));
    };
    let PasskeyForm {
        name,
        webauthn_registration,
    } = form.0;
    if webauthn_registration.trim().is_empty() {
        return Err(AppError::Invalid(
            "Your browser did not create a passkey. Passkeys need JavaScript on this page.".into(),
        ));
    }
    let (audit, actor, user, hash) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        who.user.clone(),
        who.session_hash.clone(),
    );
    let now = ctx.state.clock.now();
    let (codes, renewed) = ctx
        .state
        .db
        .run(move |c| {
            second_factor::enrol_passkey(
                c,
                &audit,
                &passkeys,
                &actor,
                &user,
                &hash,
                &name,
                &webauthn_registration,
                now,
            )
        })
        .await?;
    keep_renewed_session(&ctx, jar, renewed);
    Ok(match codes {
        Some(codes) => show_codes_once(&ctx, jar, &codes, "Your passkey is added."),
        None => Notice::redirect("/account/security", "Your passkey is added."),
    })
}

/// A session that signed in with the password alone and has just enrolled the factor its account must have now
/// holds the full sign-in on a new token (the service replaced it in the enrolment's transaction, as the
/// second-factor step at sign-in does): the browser keeps that one.
fn keep_renewed_session(
    ctx: &Ctx<'_>,
    jar: &CookieJar<'_>,
    renewed: Option<crate::auth::sessions::NewToken>,
) {
    if let Some(token) = renewed {
        jar.add_private(crate::web::guards::session_cookie(
            ctx.tls,
            token.into_cookie_value(),
        ));
    }
}

/// Only a path on this portal that is a valid URI (the sign-in's own rule, `signin::safe_next`): where to come
/// back to after giving the factor again. Anything else — another host, a space, a quote — goes to the dashboard,
/// never to a redirect that cannot be built.
fn local_path(next: Option<&str>) -> String {
    next.and_then(crate::web::public::signin::safe_next)
        .unwrap_or("/dashboard")
        .to_string()
}

#[rocket::get("/account/step-up?<next>")]
async fn step_up_page(ctx: Ctx<'_>, who: CurrentUser<'_>, next: Option<&str>) -> AppResult<Page> {
    let options = step_up::passkey_options(ctx.state, &who).await?;
    Ok(step_up_form_page(&ctx, local_path(next), options, None))
}

fn step_up_form_page(
    ctx: &Ctx<'_>,
    next: String,
    passkey_options: Option<String>,
    error: Option<&str>,
) -> Page {
    Page::new("step_up.html.tera")
        .with("action", "/account/step-up")
        .with("fields", vec![("next", next.as_str())])
        .with("back", "/dashboard")
        .with("minutes", ctx.state.settings.step_up_minutes)
        .with("passkey_options", passkey_options)
        .with("error", error)
}

#[derive(FromForm)]
struct StepUpAnswerForm {
    #[field(default = String::new())]
    next: String,
    #[field(default = String::new())]
    factor_code: String,
    #[field(default = String::new())]
    webauthn_response: String,
}

#[rocket::post("/account/step-up", data = "<form>")]
async fn give_factor_again(
    ctx: Ctx<'_>,
    who: CurrentUser<'_>,
    jar: &CookieJar<'_>,
    form: CsrfForm<StepUpAnswerForm>,
) -> AppResult<Either<Either<Redirect, Notice>, Page>> {
    let f = form.0;
    let next = local_path(Some(&f.next));
    let answer = FactorAnswer::new(f.factor_code, f.webauthn_response);
    // A copied passkey ends this session too: no new ceremony can be begun on it.
    let mut signed_out = false;
    let error = if answer.is_empty() {
        step_up::NO_ANSWER
    } else {
        match step_up::check_answer(ctx.state, ctx.actor.clone(), &who, answer, Purpose::StepUp)
            .await?
        {
            // A file is opened here, unlike after signing in: another site's link to the step-up page reaches
            // it through the continue page, which drops its `next` (see `fairings::continue_target`).
            Checked::Passed(..) => return Ok(Either::Left(Either::Left(Redirect::to(next)))),
            refused => {
                signed_out = refused.signed_out();
                step_up::refusal(&refused).unwrap_or_default()
            }
        }
    };
    if signed_out {
        // The browser forgets the ended session; the sign-in page says why.
        crate::web::guards::remove_session_cookie(ctx.tls, jar);
        return Ok(Either::Left(Either::Right(Notice::redirect(
            "/login", error,
        ))));
    }
    let options = step_up::passkey_options(ctx.state, &who).await?;
    Ok(Either::Right(
        step_up_form_page(&ctx, next, options, Some(error)).status(Status::Unauthorized),
    ))
}
