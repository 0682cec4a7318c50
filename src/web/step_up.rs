//! Step-up: the acts that release protected material or cannot be undone (a decision, a grant, a dissemination
//! record, an export, role and factor changes) need a second factor used within the last `step_up_minutes`.
//!
//! A form posted with a stale factor is not refused: it is answered with a page that asks for the factor and carries
//! everything that was typed, in hidden fields, back to the same address. Giving the factor there completes the act
//! as it was first posted; a wrong answer asks again, still with nothing lost.

use std::sync::Mutex;

use rocket::data::{FromData, Outcome};
use rocket::form::{Form, FromForm};
use rocket::http::Status;
use rocket::{Data, Request};

use crate::auth::second_factor::{self, Answer, Checked, Checker, Ended, Limits, Purpose};
use crate::error::AppResult;
use crate::services::Services;
use crate::web::forms::{checked_body, decoded_fields, CSRF_FIELD};
use crate::web::guards::{
    actor, any_session, app, factor_fresh, refuse, stale_factor, Authenticated,
};

/// The field a typed second-factor answer (an authenticator code or a recovery code) arrives in.
pub const CODE_FIELD: &str = "factor_code";
/// The field the WebAuthn script puts a passkey's signed answer in.
pub const PASSKEY_FIELD: &str = "webauthn_response";

/// A typed code or a passkey's answer, as posted.
#[derive(Debug, Default, Clone)]
pub struct FactorAnswer {
    pub code: Option<String>,
    pub passkey: Option<String>,
}

impl FactorAnswer {
    pub fn from_fields(fields: &[(String, String)]) -> FactorAnswer {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.clone())
        };
        FactorAnswer {
            code: get(CODE_FIELD),
            passkey: get(PASSKEY_FIELD),
        }
    }

    /// From a form's two fields, as posted (empty means not given).
    pub fn new(code: String, passkey: String) -> FactorAnswer {
        let given = |v: String| Some(v).filter(|v| !v.trim().is_empty());
        FactorAnswer {
            code: given(code),
            passkey: given(passkey),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.passkey.is_none()
    }
}

/// What a page says when no answer was given.
pub const NO_ANSWER: &str = "Enter a code or use your passkey.";

/// What a page says about an answer that did not pass (`None` for one that did).
pub fn refusal(checked: &Checked) -> Option<&'static str> {
    match checked {
        Checked::Passed(..) => None,
        Checked::Failed => Some(
            "That did not work. Enter the current code from your authenticator app, an unused recovery code, or use your passkey.",
        ),
        Checked::Throttled => Some("Too many wrong answers. Wait a few minutes and try again."),
        Checked::PasskeyRemoved {
            ended: Ended::Others,
        } => Some(
            "That passkey was refused and removed from your account: it signed with a count it had already used, \
             a sign that it may have been copied. Your other sessions were ended. Use your authenticator app or a \
             recovery code. Once signed in, you can add the passkey again at Account > Second factors; if you did \
             not expect this, tell the Program Office.",
        ),
        Checked::PasskeyRemoved { ended: Ended::All } => Some(
            "That passkey was refused and removed from your account: it signed with a count it had already used, \
             a sign that it may have been copied. Every session of your account was ended, this one too: sign in \
             again with your password and your authenticator app or a recovery code. If you did not expect this, \
             tell the Program Office.",
        ),
        Checked::PasskeyRemoved {
            ended: Ended::AllAndPassword,
        } => Some(
            "That passkey was refused and removed from your account: it signed with a count it had already used, \
             a sign that it may have been copied. It was your only second factor, so you have been signed out and \
             your password no longer works: choose a new one with \"Forgot your password?\" on the sign-in page \
             (a link goes to your address), then set up a second factor again. If you did not expect this, tell \
             the Program Office.",
        ),
    }
}

/// Checks a second-factor answer of the session `who` (throttled and audited by the service) and, when it passes,
/// records the session's use of its factor now.
pub async fn check_answer(
    state: &Services,
    actor: crate::audit::log::Actor,
    who: &Authenticated,
    answer: FactorAnswer,
    purpose: Purpose,
) -> AppResult<Checked> {
    let (audit, ring, keys) = (
        state.audit.clone(),
        state.current_keys(),
        state.throttle_key.clone(),
    );
    let passkeys = state.passkeys.clone();
    let limits = Limits::from_settings(&state.settings);
    let (user, session_hash) = (who.user.clone(), who.session_hash.clone());
    let user_id = user.id.clone();
    let now = state.clock.now();
    let checked = state
        .db
        .run(move |c| {
            let checker = Checker {
                audit: &audit,
                ring: &ring,
                keys: &keys,
                limits,
            };
            let answer = match (&answer.passkey, &answer.code) {
                (Some(json), _) => Answer::Passkey(match passkeys.as_deref() {
                    Some(p) => p.finish_authentication(c, &user.id, &session_hash, json, now)?,
                    None => crate::auth::passkeys::Verdict::Refused,
                }),
                (None, Some(code)) => Answer::Code(code),
                (None, None) => Answer::Code(""),
            };
            second_factor::check(
                c,
                &checker,
                &actor,
                &user,
                &session_hash,
                answer,
                purpose,
                now,
            )
        })
        .await?;
    if matches!(checked, Checked::PasskeyRemoved { .. }) {
        // The mail the check queued with the removal, sent now (a notification round sends it if this fails).
        let kind = crate::workflow::notifications::Kind::PasskeyRemoved;
        match state
            .db
            .run(move |c| crate::workflow::pending_mail::queued_at(c, &user_id, kind, now))
            .await
        {
            Ok(queued) => {
                crate::workflow::pending_mail::send_now(state, queued).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a passkey removal's mail is left to the notification round")
            }
        }
    }
    Ok(checked)
}

/// Options for a passkey ceremony on a page that asks for the factor (`None` when the account has no passkey or
/// passkeys are not available on this origin).
pub async fn passkey_options(state: &Services, who: &Authenticated) -> AppResult<Option<String>> {
    let Some(passkeys) = state.passkeys.clone() else {
        return Ok(None);
    };
    let (user_id, session_hash) = (who.user.id.clone(), who.session_hash.clone());
    let now = state.clock.now();
    state
        .db
        .run(move |c| passkeys.begin_authentication(c, &user_id, &session_hash, now))
        .await
}

/// What the catcher renders when a step-up act arrived with a stale factor.
#[derive(Debug, Clone)]
pub struct StepUpChallenge {
    /// Where the form posts again: the address it was posted to.
    pub action: String,
    /// Everything that was typed, but the form token, the answer itself and any secret.
    pub fields: Vec<(String, String)>,
    /// Names of the secret fields that were typed (a current password): never written back into the page, which
    /// asks for them again instead.
    pub secrets: Vec<String>,
    pub error: Option<String>,
    pub passkey_options: Option<String>,
}

#[derive(Default)]
struct ChallengeSlot(Mutex<Option<StepUpChallenge>>);

pub fn challenge_of(req: &Request<'_>) -> Option<StepUpChallenge> {
    req.local_cache(ChallengeSlot::default)
        .0
        .lock()
        .ok()
        .and_then(|c| c.clone())
}

/// A field whose value is a secret (the current password a factor's removal asks for): the step-up page does not
/// carry it as typed, which would write the password into the page's source and its saved form state.
fn is_secret(name: &str) -> bool {
    name.contains("password")
}

/// A urlencoded form with its anti-forgery token checked (as [`crate::web::forms::CsrfForm`]) that also needs a
/// recent second factor. Put it on the route of an act that releases protected material or cannot be undone.
pub struct StepUpForm<T>(pub T);

#[rocket::async_trait]
impl<'r, T> FromData<'r> for StepUpForm<T>
where
    T: for<'a> FromForm<'a> + Send + 'static,
{
    type Error = ();

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        let body = match checked_body(req, data).await {
            Ok(body) => body,
            Err(status) => return Outcome::Error((status, ())),
        };
        let parse = |body: &str| match Form::<T>::parse_encoded(rocket::http::RawStr::new(body)) {
            Ok(v) => Outcome::Success(StepUpForm(v)),
            Err(_) => Outcome::Error((Status::UnprocessableEntity, ())),
        };
        // Signed in, or enrolling the factor its account must have (which has none to give again).
        let Some(who) = any_session(req)
            .await
            .filter(|a| a.stage != crate::auth::second_factor::Stage::Pending)
        else {
            return Outcome::Error((Status::Unauthorized, ()));
        };
        if factor_fresh(req, who) {
            return parse(&body);
        }
        let fields = decoded_fields(&body);
        let answer = FactorAnswer::from_fields(&fields);
        let state = app(req);
        let mut signed_out = false;
        let error = if answer.is_empty() {
            // Asked for the factor (a wrong answer is recorded as a failed factor instead).
            refuse(req, Some(who), Status::Unauthorized, stale_factor(req)).await;
            None
        } else {
            match check_answer(state, actor(req, Some(who)), who, answer, Purpose::StepUp).await {
                Ok(Checked::Passed(..)) => return parse(&body),
                // This session ended (a copied passkey): the page says so, offers no ceremony, and the browser
                // forgets the session.
                Ok(refused) if refused.signed_out() => {
                    signed_out = true;
                    crate::web::guards::remove_session_cookie(
                        crate::web::guards::served_over_https(req),
                        req.cookies(),
                    );
                    refusal(&refused)
                }
                Ok(refused) => refusal(&refused),
                Err(e) => {
                    tracing::error!(error = %e, "checking a step-up answer failed");
                    return Outcome::Error((crate::web::error::status(&e), ()));
                }
            }
        };
        let passkey_options = if signed_out {
            None
        } else {
            passkey_options(state, who).await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "starting a passkey ceremony failed");
                None
            })
        };
        let (secret, kept): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .filter(|(k, _)| k != CSRF_FIELD && k != CODE_FIELD && k != PASSKEY_FIELD)
            .partition(|(k, _)| is_secret(k));
        let mut secrets: Vec<String> = secret.into_iter().map(|(k, _)| k).collect();
        secrets.dedup();
        if let Ok(mut slot) = req.local_cache(ChallengeSlot::default).0.lock() {
            *slot = Some(StepUpChallenge {
                action: req.uri().to_string(),
                fields: kept,
                secrets,
                error: error.map(str::to_string),
                passkey_options,
            });
        }
        crate::web::error::set_error_message(
            req,
            format!(
                "This needs a second factor used within the last {} minute(s).",
                state.settings.step_up_minutes
            ),
        );
        Outcome::Error((Status::Unauthorized, ()))
    }
}
