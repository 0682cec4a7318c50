//! Request guards: who is asking (session), and one guard per role. A refused role check answers 401/403
//! and writes one audit entry; handlers never check roles themselves.

use std::ops::Deref;

use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::Request;

use crate::audit::log::{Actor, Event, Outcome as AuditOutcome};
use crate::auth::login;
use crate::auth::second_factor::Stage;
use crate::auth::sessions::{self, Lookup};
use crate::domain::Role;
use crate::models::account::User;
use crate::services::Services;
use crate::web::fairings::request_id;

pub const SESSION_COOKIE: &str = "pcii_session";
pub const SESSION_COOKIE_TLS: &str = "__Host-pcii_session";

pub fn session_cookie_name(tls: bool) -> &'static str {
    if tls {
        SESSION_COOKIE_TLS
    } else {
        SESSION_COOKIE
    }
}

/// The session cookie: private (encrypted and authenticated with the secret key), HttpOnly, SameSite=Strict,
/// `__Host-` + Secure under TLS, and gone when the browser closes (Rocket would otherwise give a private
/// cookie a week).
pub fn session_cookie(tls: bool, token: String) -> Cookie<'static> {
    Cookie::build((session_cookie_name(tls), token))
        .expires(None::<rocket::time::OffsetDateTime>)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .path("/")
        .build()
}

pub fn remove_session_cookie(tls: bool, jar: &CookieJar<'_>) {
    jar.remove_private(cookie_removal(session_cookie_name(tls), "/", tls));
}

/// The removal of one of the portal's cookies, with the attributes it was set with: a browser ignores a
/// `__Host-` cookie without `Secure`, its removal too (Rocket's removal sets neither `Secure` nor `HttpOnly`), and
/// the cookie would then live on until the browser closes.
pub fn cookie_removal(name: &'static str, path: &'static str, tls: bool) -> Cookie<'static> {
    Cookie::build(name)
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .build()
}

/// Ends the session this browser holds, if any — its row (audited), then its cookie — for a flow that leaves the
/// browser signed out (a password reset, an accepted invitation): the earlier session must not live on behind it
/// for whoever kept a copy of its cookie. Called once the flow's own change has committed, so a failure here is
/// logged and the answer stays the flow's (the row then lives until its timeouts, as it did before).
pub async fn end_browser_session(ctx: &Ctx<'_>, jar: &CookieJar<'_>, by: login::LeftBy) {
    if let Some(cookie) = jar.get_private(session_cookie_name(ctx.tls)) {
        let hash = sessions::hash_token(cookie.value());
        let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
        let ended = ctx
            .state
            .db
            .run(move |c| login::end_left_session(c, &audit, &actor, &hash, by))
            .await;
        if ended.is_err() {
            tracing::warn!("could not end the browser's earlier session; it ends at its timeouts");
        }
    }
    remove_session_cookie(ctx.tls, jar);
}

fn tls(req: &Request<'_>) -> bool {
    served_over_https(req)
}

/// The configured `public_origin`, managed by the portal's Rocket and by the sealed one alike, so that what depends
/// on it (HTTPS, the origin a form may come from) holds on the unseal page as on every other.
pub struct PublicOrigin(pub String);

/// Whether browsers reach the portal over HTTPS: its `public_origin` says so. This build has no TLS listener, so
/// HTTPS always ends at a reverse proxy and Rocket cannot tell; asking Rocket would give plain cookies and no HSTS
/// behind every proxy.
pub fn served_over_https(req: &Request<'_>) -> bool {
    req.rocket()
        .state::<PublicOrigin>()
        .is_some_and(|o| o.0.trim().starts_with("https://"))
}

/// A session and its account. Signed in only at [`Stage::Complete`]: a session that has not used the account's
/// second factor yet, or whose account must enrol one, reaches nothing of its role (see `require`).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub role: Role,
    pub session_hash: String,
    pub csrf: String,
    pub stage: Stage,
    /// The account has a second factor (an authenticator app or a passkey).
    pub has_factor: bool,
    /// When this session last used it.
    pub second_factor_at: Option<i64>,
    /// The account must have one (staff, or a member of an organisation that requires it).
    pub factor_required: bool,
    /// When the session ends unless it is used again (its idle or absolute timeout, whichever comes first).
    pub expires_at: i64,
}

impl Authenticated {
    pub fn signed_in(&self) -> bool {
        self.stage == Stage::Complete
    }
}

/// Where a refused request should send a person instead of an error page (finishing the sign-in, enrolling a
/// second factor, giving it again): set by a guard, followed by the catcher for pages (not for JSON).
#[derive(Default)]
pub struct GoTo(std::sync::Mutex<Option<String>>);

pub fn go_to(req: &Request<'_>, to: impl Into<String>) {
    if let Ok(mut slot) = req.local_cache(GoTo::default).0.lock() {
        *slot = Some(to.into());
    }
}

pub fn going_to(req: &Request<'_>) -> Option<String> {
    req.local_cache(GoTo::default)
        .0
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
}

/// The session lookup, cached so that several guards in one request query once. `Err` means the
/// session store could not be read: the guards then answer 503, not "not logged in".
struct AuthCache(Result<Option<Authenticated>, StoreUnavailable>);

#[derive(Debug, Clone, Copy)]
struct StoreUnavailable;

pub fn app<'r>(req: &'r Request<'_>) -> &'r Services {
    req.rocket()
        .state::<Services>()
        .expect("Services is managed")
}

pub fn client_addr(req: &Request<'_>) -> Option<String> {
    req.client_ip().map(|ip| ip.to_string())
}

/// Who is asking, for audit entries.
pub fn actor(req: &Request<'_>, who: Option<&Authenticated>) -> Actor {
    Actor {
        user_id: who.map(|a| a.user.id.clone()),
        role: who.map(|a| a.role.as_str().to_string()),
        client_addr: client_addr(req),
        request_id: Some(request_id(req)),
        session: who.map(|a| a.session_hash.clone()),
    }
}

async fn lookup(req: &Request<'_>) -> Result<Option<Authenticated>, StoreUnavailable> {
    let Some(cookie) = req.cookies().get_private(session_cookie_name(tls(req))) else {
        return Ok(None);
    };
    let token = cookie.value().to_string();
    let hash = sessions::hash_token(&token);
    let state = app(req);
    let (idle, absolute) = state.settings.session_timeouts();
    let now = state.clock.now();
    let found = state
        .db
        .run(move |c| sessions::lookup(c, &token, now, idle, absolute))
        .await;
    match found {
        Ok(Lookup::Live(b)) => {
            let live = *b;
            let role = live.user.role();
            let expires_at = now + sessions::seconds_left(&live.session, now, idle, absolute);
            Ok(Some(Authenticated {
                expires_at,
                role,
                user: live.user,
                session_hash: live.session.token_hash,
                csrf: live.session.csrf_token,
                stage: live.stage,
                has_factor: live.has_factor,
                second_factor_at: live.session.second_factor_at,
                factor_required: live.factor_required,
            }))
        }
        Ok(Lookup::Expired(user)) => {
            let mut who = actor(req, None);
            who.user_id = Some(user.id.clone());
            who.role = Some(user.role.as_str().to_string());
            let audit = state.audit.clone();
            let ended = state
                .db
                .run(move |c| login::end_expired(c, &audit, &who, &hash, &user.id))
                .await;
            match ended {
                Ok(_) => {
                    remove_session_cookie(tls(req), req.cookies());
                    Ok(None)
                }
                Err(e) => {
                    // As a lookup that failed: the row stays, still past its timeout, and the next request with
                    // it tries again.
                    tracing::error!(error = %e, "ending an expired session failed");
                    Err(StoreUnavailable)
                }
            }
        }
        Ok(Lookup::Missing) => {
            remove_session_cookie(tls(req), req.cookies());
            Ok(None)
        }
        Err(e) => {
            // The cookie stays: the session may well be live, the store just did not answer.
            tracing::error!(error = %e, "session lookup failed");
            Err(StoreUnavailable)
        }
    }
}

async fn session<'r>(req: &'r Request<'_>) -> Result<Option<&'r Authenticated>, StoreUnavailable> {
    req.local_cache_async(async { AuthCache(lookup(req).await) })
        .await
        .0
        .as_ref()
        .map(Option::as_ref)
        .map_err(|e| *e)
}

/// The signed-in session, if there is one and the store answered (pages that serve everyone use this). A session
/// still owing its second factor is not signed in.
pub async fn authenticated<'r>(req: &'r Request<'_>) -> Option<&'r Authenticated> {
    any_session(req).await.filter(|a| a.signed_in())
}

/// The session at whatever stage of signing in (its form token, signing out).
pub async fn any_session<'r>(req: &'r Request<'_>) -> Option<&'r Authenticated> {
    session(req).await.ok().flatten()
}

/// As [`any_session`], but a session store that did not answer is a 503, not "no session": a form's token must
/// not be checked against the anonymous one (a stale-form refusal) when the person may well be signed in.
pub async fn any_session_or_unavailable<'r>(
    req: &'r Request<'_>,
) -> Result<Option<&'r Authenticated>, Status> {
    session(req)
        .await
        .map_err(|StoreUnavailable| Status::ServiceUnavailable)
}

/// What every handler needs to act and to audit: the state, who asks, from where, in which request.
pub struct Ctx<'r> {
    pub state: &'r Services,
    pub who: Option<&'r Authenticated>,
    pub actor: Actor,
    pub tls: bool,
    /// Forms with files being received now (caps per account and in all).
    pub uploads: &'r crate::web::multipart::UploadSlots,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Ctx<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let who = authenticated(req).await;
        Outcome::Success(Ctx {
            state: app(req),
            who,
            // Entries name the account of any session, also one that has not finished signing in (its password was
            // right: what it does next, a factor given or refused, is that account's).
            actor: actor(req, any_session(req).await),
            tls: tls(req),
            uploads: req
                .rocket()
                .state::<crate::web::multipart::UploadSlots>()
                .expect("UploadSlots is managed"),
        })
    }
}

/// The session as the guards of this request found it; `None` if no guard looked (pages use this).
pub fn cached<'r>(req: &'r Request<'_>) -> Option<&'r Authenticated> {
    req.local_cache(|| AuthCache(Ok(None)))
        .0
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
}

/// Any logged-in account.
pub struct CurrentUser<'r>(pub &'r Authenticated);

impl Deref for CurrentUser<'_> {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CurrentUser<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match require(req, None).await {
            Ok(a) => Outcome::Success(CurrentUser(a)),
            Err(s) => Outcome::Error((s, ())),
        }
    }
}

/// The refusal of a protected route, audited once per request.
struct RefusalRecorded;

async fn require<'r>(
    req: &'r Request<'_>,
    roles: Option<&[Role]>,
) -> Result<&'r Authenticated, Status> {
    // A store that did not answer is the server's failure, not a refusal: 503, and no
    // "not logged in" entry for someone who may well be.
    let who = session(req)
        .await
        .map_err(|StoreUnavailable| Status::ServiceUnavailable)?;
    let (status, reason) = match (who, roles) {
        (None, _) => (Status::Unauthorized, "not logged in".to_string()),
        (Some(a), _) if a.stage == Stage::Pending => {
            go_to(req, "/login/second-factor");
            (
                Status::Unauthorized,
                "signed in with the password only: second factor not given".to_string(),
            )
        }
        (Some(a), _) if a.stage == Stage::MustEnrol => {
            // The page it is sent to says why.
            go_to(req, "/account/security");
            (Status::Forbidden, "no second factor enrolled".to_string())
        }
        (Some(a), Some(roles)) if !roles.contains(&a.role) => (
            Status::Forbidden,
            format!("role {} may not use this page", a.role.as_str()),
        ),
        // Until its address is confirmed an account sees nothing of its organisation or role.
        (Some(a), Some(_)) if !a.user.email_verified() => {
            crate::web::error::set_error_message(
                req,
                "Confirm your email address first: open the link we sent you and sign in there. Lost it? Use \"Forgot your password?\" on the sign-in page: a reset confirms the address too.".into(),
            );
            (Status::Forbidden, "email address not confirmed".to_string())
        }
        (Some(a), _) => return Ok(a),
    };
    Err(refuse(req, who, status, reason).await)
}

/// Records a refusal: a signed-in person's each time (who tried what), an anonymous one folded per address, route
/// and minute (a flood of anonymous requests must not fill the log).
pub async fn record_refusal(
    state: &Services,
    anonymous: bool,
    actor: Actor,
    event: Event,
) -> crate::error::AppResult<()> {
    let (audit, tally, now) = (
        state.audit.clone(),
        state.refusals.clone(),
        state.clock.now(),
    );
    state
        .db
        .run(move |c| {
            if anonymous {
                crate::audit::refusals::record_anonymous(c, &audit, &tally, &actor, event, now)
            } else {
                audit.record(c, &actor, event)
            }
        })
        .await
}

/// Audits a refused guard once per request and answers its status.
pub(crate) async fn refuse<'r>(
    req: &'r Request<'_>,
    who: Option<&'r Authenticated>,
    status: Status,
    reason: String,
) -> Status {
    let mut first = false;
    req.local_cache(|| {
        first = true;
        RefusalRecorded
    });
    if first {
        let state = app(req);
        let route = req.route().map(|r| r.uri.to_string()).unwrap_or_default();
        let actor = actor(req, who);
        let event = Event::new("access.refused", AuditOutcome::Refused);
        // A signed-in person refused at a submission's address is recorded on that submission, so that its
        // history shows who tried (an administrator or an auditor at an officer's page, say); the route goes
        // with the reason. Anonymous refusals stay by route (they are folded by route).
        let event = match who.and(submission_asked_for(req)) {
            Some(id) => event
                .object("submission", id)
                .reason(format!("{reason} (at {route})")),
            None => event.object("route", route).reason(reason),
        };
        if let Err(e) = record_refusal(state, who.is_none(), actor, event).await {
            tracing::error!(error = %e, "auditing a refusal failed");
        }
    }
    status
}

/// The submission id in the request's address, when its route names one (`.../submissions/<id>...`) and it has
/// an id's shape (anything else is not recorded as one).
fn submission_asked_for(req: &Request<'_>) -> Option<String> {
    let route = req.route()?;
    let route_segments: Vec<&str> = route
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let at = route_segments
        .windows(2)
        .position(|w| w[0] == "submissions" && w[1] == "<id>")?
        + 1;
    let id = req.uri().path().segments().nth(at)?;
    // The shape of `db::new_id` (32 lower-case hex digits): nothing else is recorded as a submission's id.
    (id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| id.to_string())
}

macro_rules! role_guard {
    ($(#[$doc:meta])* $name:ident, $($role:expr),+) => {
        $(#[$doc])*
        pub struct $name<'r>(pub &'r Authenticated);

        impl Deref for $name<'_> {
            type Target = Authenticated;
            fn deref(&self) -> &Authenticated {
                self.0
            }
        }

        #[rocket::async_trait]
        impl<'r> FromRequest<'r> for $name<'r> {
            type Error = ();
            async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
                match require(req, Some(&[$($role),+])).await {
                    Ok(a) => Outcome::Success($name(a)),
                    Err(s) => Outcome::Error((s, ())),
                }
            }
        }
    };
}

role_guard!(
    /// A submitter (a company's employee).
    SubmitterUser,
    Role::Submitter
);
role_guard!(
    /// A PCII officer of the Program Office.
    OfficerUser,
    Role::Officer
);
role_guard!(
    /// An authorized user (analyst). Whether it may read a given submission is decided per request by the
    /// workflow's access rules (training, NDA, grant).
    AnalystUser,
    Role::AuthorizedUser
);
role_guard!(
    /// An auditor: the audit log only, never content.
    AuditorUser,
    Role::Auditor
);
role_guard!(
    /// An administrator: accounts, roles, training/NDA records, keys; never content.
    AdminUser,
    Role::Administrator
);
/// A company's organisation administrator: a confirmed submitter account holding that role in its
/// organisation. Its pages manage membership only; they show no submission content.
pub struct OrgAdminUser<'r> {
    pub who: &'r Authenticated,
    pub organisation_id: String,
}

impl Deref for OrgAdminUser<'_> {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        self.who
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for OrgAdminUser<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let a = match require(req, Some(&[Role::Submitter])).await {
            Ok(a) => a,
            Err(s) => return Outcome::Error((s, ())),
        };
        match (&a.user.organisation_id, a.user.org_admin) {
            (Some(org), true) => Outcome::Success(OrgAdminUser {
                who: a,
                organisation_id: org.clone(),
            }),
            _ => {
                let reason = "not the organisation's administrator".to_string();
                Outcome::Error((refuse(req, Some(a), Status::Forbidden, reason).await, ()))
            }
        }
    }
}

/// Any session, at whatever stage of signing in (signing out).
pub struct AnySession<'r>(pub &'r Authenticated);

impl Deref for AnySession<'_> {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AnySession<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match session(req).await {
            Ok(Some(a)) => Outcome::Success(AnySession(a)),
            Ok(None) => Outcome::Error((Status::Unauthorized, ())),
            Err(StoreUnavailable) => Outcome::Error((Status::ServiceUnavailable, ())),
        }
    }
}

/// A session whose password was right and which now owes the account's second factor (the second step of signing
/// in). Anyone else is sent on: to sign in, or, already signed in, home.
pub struct SigningIn<'r>(pub &'r Authenticated);

impl Deref for SigningIn<'_> {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SigningIn<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match session(req).await {
            Ok(Some(a)) if a.stage == Stage::Pending => Outcome::Success(SigningIn(a)),
            // A page asked for is answered with where to go; a form posted here is simply refused.
            Ok(Some(_)) => {
                if req.method() == rocket::http::Method::Get {
                    go_to(req, "/dashboard");
                }
                Outcome::Error((Status::Forbidden, ()))
            }
            Ok(None) => {
                if req.method() == rocket::http::Method::Get {
                    go_to(req, "/login");
                }
                Outcome::Error((Status::Unauthorized, ()))
            }
            Err(StoreUnavailable) => Outcome::Error((Status::ServiceUnavailable, ())),
        }
    }
}

/// The person managing their own second factors: signed in, or signed in with the password and obliged to enrol
/// a factor before anything else. A session that owes the factor it has is sent to give it first.
pub struct ManagingFactors<'r>(pub &'r Authenticated);

impl Deref for ManagingFactors<'_> {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ManagingFactors<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match session(req).await {
            // A factor is the address owner's to set up: an unconfirmed registration may be someone else's
            // squatting the address, whose factor would lock the owner out after a password reset.
            Ok(Some(a)) if !a.user.email_verified() => {
                go_to(req, "/verify-email");
                Outcome::Error((Status::Forbidden, ()))
            }
            Ok(Some(a)) if a.stage != Stage::Pending => Outcome::Success(ManagingFactors(a)),
            Ok(Some(_)) => {
                go_to(req, "/login/second-factor");
                Outcome::Error((Status::Unauthorized, ()))
            }
            Ok(None) => Outcome::Error((Status::Unauthorized, ())),
            Err(StoreUnavailable) => Outcome::Error((Status::ServiceUnavailable, ())),
        }
    }
}

/// Whether the session used its second factor recently enough for an act that releases protected material or
/// cannot be undone (`step_up_minutes`). An account without a factor (a submitter whose organisation does not
/// require one) has nothing to give again.
pub fn factor_fresh(req: &Request<'_>, who: &Authenticated) -> bool {
    let state = app(req);
    !who.has_factor
        || crate::auth::second_factor::fresh(
            who.second_factor_at,
            state.clock.now(),
            state.settings.step_up_minutes,
        )
}

/// A GET that releases protected material (an export): with a stale second factor the person is sent to give it
/// again, and then brought back to this same address. Put it after the role guard.
pub struct FreshFactor;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for FreshFactor {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let who = match session(req).await {
            Ok(Some(a)) if a.stage != Stage::Pending => a,
            Ok(_) => return Outcome::Error((Status::Unauthorized, ())),
            Err(StoreUnavailable) => return Outcome::Error((Status::ServiceUnavailable, ())),
        };
        if factor_fresh(req, who) {
            return Outcome::Success(FreshFactor);
        }
        let status = refuse(req, Some(who), Status::Unauthorized, stale_factor(req)).await;
        let back = req.uri().to_string();
        go_to(
            req,
            format!(
                "/account/step-up?next={}",
                percent_encoding::utf8_percent_encode(&back, percent_encoding::NON_ALPHANUMERIC)
            ),
        );
        crate::web::error::set_error_message(
            req,
            "Confirm it is you: give your second factor again to continue.".into(),
        );
        Outcome::Error((status, ()))
    }
}

/// The reason recorded when an act is refused until the second factor is given again.
pub fn stale_factor(req: &Request<'_>) -> String {
    format!(
        "step-up: second factor not used within the last {} minute(s), asked for again",
        app(req).settings.step_up_minutes
    )
}
