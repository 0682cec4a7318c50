//! Fairings that apply to every request: request ids and logging, security headers, the cross-site check,
//! redirects as data for the page's own script.

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::{Header, Method};
use rocket::{Data, Request, Response};

/// The id of one request: in the logs, in audit entries, on error pages, and in `X-Request-Id`.
pub struct RequestId(pub String);

struct Started(Instant);

pub fn request_id(req: &Request<'_>) -> String {
    req.local_cache(|| RequestId(String::new())).0.clone()
}

pub struct RequestLog;

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request id and log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let mut id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        req.local_cache(|| RequestId(hex::encode(id)));
        req.local_cache(|| Started(Instant::now()));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let id = request_id(req);
        let elapsed = req.local_cache(|| Started(Instant::now())).0.elapsed();
        // The route's template, never the raw path: paths can carry tokens (setup links) or ids.
        let route = req
            .route()
            .map(|r| r.uri.to_string())
            .unwrap_or_else(|| "-".into());
        tracing::info!(
            request_id = %id,
            method = %req.method(),
            route = %route,
            status = res.status().code,
            ms = elapsed.as_millis() as u64,
            "request"
        );
        res.set_header(Header::new("X-Request-Id", id));
    }
}

pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// `Strict-Transport-Security` once the portal is reached over HTTPS (the nginx snippets send the same).
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The headers of SECURITY.md on every response, error pages included.
pub struct SecurityHeaders;

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "security headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        res.set_header(Header::new("Content-Security-Policy", CSP));
        res.set_header(Header::new("X-Content-Type-Options", "nosniff"));
        res.set_header(Header::new("Referrer-Policy", "no-referrer"));
        res.set_header(Header::new("Cross-Origin-Opener-Policy", "same-origin"));
        res.set_header(Header::new("Cross-Origin-Resource-Policy", "same-origin"));
        res.set_header(Header::new("X-Frame-Options", "DENY"));
        res.set_header(Header::new(
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ));
        let is_static = req.uri().path().starts_with("/static/") && res.status().code == 200;
        if is_static {
            res.set_header(Header::new("Cache-Control", "public, max-age=3600"));
        } else {
            res.set_header(Header::new("Cache-Control", "no-store"));
            res.set_header(Header::new("Pragma", "no-cache"));
        }
        if crate::web::guards::served_over_https(req) {
            res.set_header(Header::new("Strict-Transport-Security", HSTS));
        }
    }
}

/// The header with which a page's own script asks for a redirect as data (`static/upload.js`).
pub const REDIRECT_AS_JSON: &str = "Pcii-Redirect";

/// Answers a redirect as `200 {"location": …}` when the request asks for it with `Pcii-Redirect: json`. An
/// XMLHttpRequest follows a redirect by itself: the page it leads to would be fetched twice (by the script, then
/// by the browser showing it), recorded as two reads, and its one-time notice used up by the first fetch. Cookies
/// the redirect sets (that notice) are kept; the page is fetched once, when the script goes to the location.
/// A cross-site request cannot send the header without a preflight, which the portal does not answer.
pub struct RedirectAsJson;

#[rocket::async_trait]
impl Fairing for RedirectAsJson {
    fn info(&self) -> Info {
        Info {
            name: "redirects as data for the page's own script",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        if req.headers().get_one(REDIRECT_AS_JSON) != Some("json")
            || res.status().class() != rocket::http::StatusClass::Redirection
        {
            return;
        }
        let Some(location) = res.headers().get_one("Location").map(str::to_owned) else {
            return;
        };
        let body = serde_json::json!({ "location": location }).to_string();
        res.remove_header("Location");
        res.set_status(rocket::http::Status::Ok);
        res.set_header(rocket::http::ContentType::JSON);
        res.set_sized_body(body.len(), std::io::Cursor::new(body));
    }
}

pub const WRONG_HOST_PATH: &str = "/__refused/host";

/// Refuses requests addressed to a host name that is not the portal's (421): a page on another site whose name
/// was made to resolve to the portal's address (DNS rebinding) must not reach it with the browser's trust. The
/// portal's names: `public_origin`'s host, or, when it is not set, the address it listens on and the loopback
/// names. A request without `Host` (not a browser) passes, and so does `/healthz`.
pub struct HostCheck {
    pub public_origin: String,
}

/// Where [`HostCheck`] sends a request addressed to another host name.
#[rocket::get("/__refused/host")]
fn wrong_host() -> rocket::http::Status {
    rocket::http::Status::MisdirectedRequest
}

/// The routes [`HostCheck`], [`NulCheck`] and [`OriginCheck`]'s continuation need: mounted wherever the fairings
/// are attached (each portal mounts its own handler of [`REFUSED_PATH`], which audits in its own log).
pub fn refusal_routes() -> Vec<rocket::Route> {
    rocket::routes![wrong_host, nul_refused, continue_here]
}

#[rocket::async_trait]
impl Fairing for HostCheck {
    fn info(&self) -> Info {
        Info {
            name: "host name check",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let Some(host) = req.headers().get_one("Host") else {
            return;
        };
        // Health checks come from load balancers and monitors by address; the answer holds nothing a rebinding page
        // could use.
        if req.uri().path() == "/healthz" {
            return;
        }
        let address = req.rocket().config().address;
        if !host_allowed(host, &self.public_origin, address) {
            let shown: String = host.chars().take(100).collect();
            tracing::warn!(host = %shown, "refused a request addressed to another host name");
            req.set_method(Method::Get);
            req.set_uri(Origin::parse(WRONG_HOST_PATH).expect("static path"));
        }
    }
}

pub const NUL_PATH: &str = "/__refused/nul";

/// Refuses a request whose path or query carries a NUL character (`%00`): no id, search or value the portal keeps
/// can hold one, and PostgreSQL refuses it in text (a 500 before this; SQLite stored it). Answered 400 on either
/// database, before any handler reads it.
pub struct NulCheck;

/// Where [`NulCheck`] sends a request that carries a NUL.
#[rocket::get("/__refused/nul")]
fn nul_refused() -> rocket::http::Status {
    rocket::http::Status::BadRequest
}

#[rocket::async_trait]
impl Fairing for NulCheck {
    fn info(&self) -> Info {
        Info {
            name: "NUL character check",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let uri = req.uri();
        let carries_nul = |raw: &str| raw.contains("%00");
        if carries_nul(uri.path().as_str()) || uri.query().is_some_and(|q| carries_nul(q.as_str()))
        {
            req.set_method(Method::Get);
            req.set_uri(Origin::parse(NUL_PATH).expect("static path"));
        }
    }
}

/// The host name of a `Host` header or an origin's authority, without port, lowercase.
fn host_name(authority: &str) -> String {
    let name = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

pub fn host_allowed(host: &str, public_origin: &str, address: std::net::IpAddr) -> bool {
    let asked = host_name(host);
    let configured = public_origin.trim();
    if !configured.is_empty() {
        let authority = configured
            .split_once("://")
            .map_or(configured, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or("");
        return asked == host_name(authority);
    }
    asked == address.to_string() || matches!(asked.as_str(), "localhost" | "127.0.0.1" | "::1")
}
/// Why `OriginCheck` re-routed a request, if it did: the reason its audit entry records.
pub struct CrossSiteRefused(pub Option<&'static str>);

pub const REFUSED_PATH: &str = "/__refused/cross-site";

/// Where a signed-in person's browser is sent when a page on another site of the same site navigated it to the
/// portal (see [`OriginCheck`]).
pub const CONTINUE_PATH: &str = "/__continue";

/// The page a same-site navigation asked for, kept while the request is re-routed to [`CONTINUE_PATH`].
struct ContinueTo(Option<String>);

/// Refuses every state-changing request a browser marks as cross-site (Sec-Fetch-Site), or whose Origin is
/// not ours, and every read another site's page makes other than by navigating the browser to it (an image, a
/// script, a frame, a background fetch, a prefetch). A page on a sibling subdomain is the same site, so the
/// SameSite=Strict cookie goes with what it makes the browser ask: a navigation it starts in a signed-in browser is
/// answered with a page that asks the person to continue (a link on the portal's own page), so that nothing is
/// opened or recorded in their name unless they choose it. (A cross-site navigation carries no session cookie.)
/// Done for every route at once, so no handler can forget it (downloads and exports included); the per-form token
/// is checked by `forms::CsrfForm`. A refused request is re-routed to a handler that answers 403.
pub struct OriginCheck;

#[rocket::async_trait]
impl Fairing for OriginCheck {
    fn info(&self) -> Info {
        Info {
            name: "cross-site request check",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        // Another check re-routed it already (a wrong host's 421 stands).
        if req.uri().path().starts_with("/__refused/") {
            return;
        }
        // Rocket turns a form POST whose first field is `_method=get` into a GET before any fairing runs: a "GET"
        // that carries a form body came as a POST, and is judged as one (the portal itself never sends `_method`).
        let overridden = req
            .content_type()
            .is_some_and(|ct| ct.is_form() || ct.is_form_data());
        let refused = if matches!(req.method(), Method::Get | Method::Head | Method::Options)
            && !overridden
        {
            match started_by(req) {
                Starter::Here => return,
                Starter::EmbeddedElsewhere => "read embedded in another site's page",
                Starter::NavigatedElsewhere => {
                    if signed_in(req) {
                        let asked = req.uri().to_string();
                        req.local_cache(|| ContinueTo(Some(asked)));
                        req.set_method(Method::Get);
                        req.set_uri(Origin::parse(CONTINUE_PATH).expect("static path"));
                    }
                    return;
                }
            }
        } else if cross_site(req) {
            "cross-site origin"
        } else {
            return;
        };
        req.local_cache(|| CrossSiteRefused(Some(refused)));
        req.set_method(Method::Get);
        req.set_uri(Origin::parse(REFUSED_PATH).expect("static path"));
    }
}

/// Who started a read, by the fetch metadata browsers send.
enum Starter {
    /// The portal's own page, the person (typed, bookmarked), a client that sends no fetch metadata, or a path
    /// that holds nothing of anyone's (the stylesheet, the health check).
    Here,
    /// Another site's page, other than by navigating the browser to it.
    EmbeddedElsewhere,
    /// Another site's page, navigating the browser (a link, a redirect, a script setting `location`).
    NavigatedElsewhere,
}

fn started_by(req: &Request<'_>) -> Starter {
    let headers = req.headers();
    let path = req.uri().path();
    // What holds nothing of anyone's and touches no session.
    if path == "/healthz" || path.starts_with("/static/") {
        return Starter::Here;
    }
    // A prefetch or prerender, whoever started it (the browser itself, from the address bar, sends no site):
    // it would open and record a page the person may never see. Refused; the real navigation follows.
    let prefetch = headers
        .get_one("Sec-Purpose")
        .or_else(|| headers.get_one("Purpose"))
        .is_some_and(|p| p.contains("prefetch") || p.contains("prerender"));
    if prefetch {
        return Starter::EmbeddedElsewhere;
    }
    if !matches!(
        headers.get_one("Sec-Fetch-Site"),
        Some("same-site" | "cross-site")
    ) {
        return Starter::Here;
    }
    // Fetch metadata's "resource isolation" rule: only a top-level navigation may come from elsewhere.
    let navigates = headers.get_one("Sec-Fetch-Mode") == Some("navigate");
    let top_level = headers
        .get_one("Sec-Fetch-Dest")
        .is_none_or(|dest| dest == "document");
    match (navigates && top_level, path == "/") {
        (false, _) => Starter::EmbeddedElsewhere,
        // The start page opens nothing of anyone's: a link to the portal lands there directly.
        (true, true) => Starter::Here,
        (true, false) => Starter::NavigatedElsewhere,
    }
}

/// The browser holds this portal's session cookie (whether it is still valid is the guards' to decide). Under
/// TLS only the `__Host-` one counts: a sibling host can set the other for the parent domain. The sealed portal
/// has no sessions (a cookie there is left from before).
fn signed_in(req: &Request<'_>) -> bool {
    if req.rocket().state::<crate::services::Services>().is_none() {
        return false;
    }
    let tls = crate::web::guards::served_over_https(req);
    req.cookies()
        .get(crate::web::guards::session_cookie_name(tls))
        .is_some()
}

/// Where the continue page may send the person: a path on the portal (`//host` and `/\host` are other sites).
/// The sign-in and step-up pages are offered bare: with a `next=` they would send a signed-in browser straight on
/// to whatever it names (a download, an export), which the page would not have said.
fn continue_target(asked: Option<String>) -> String {
    let Some(to) =
        asked.filter(|to| to.starts_with('/') && !to.starts_with("//") && !to.starts_with("/\\"))
    else {
        return "/".to_string();
    };
    let path = to.split('?').next().unwrap_or("/");
    if path == "/login" || path == "/login/second-factor" || path == "/account/step-up" {
        return path.to_string();
    }
    to
}

/// The page a same-site navigation asked for (`/` when this page was asked for directly, or for a target that
/// would leave the portal: `//host` is another site).
pub struct Continuation(pub String);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for Continuation {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        let asked = req.local_cache(|| ContinueTo(None)).0.clone();
        rocket::request::Outcome::Success(Continuation(continue_target(asked)))
    }
}

/// Asks a signed-in person whom another site's page sent here to continue from the portal's own page: nothing was
/// opened or recorded.
#[rocket::get("/__continue")]
fn continue_here(to: Continuation) -> crate::web::pages::Page {
    crate::web::pages::Page::new("continue.html.tera").with("to", to.0)
}

/// The continue page for a signed-in browser sent to the sign-in page with a `next=` (a 401 page's "Sign in"
/// button, reached from another site's link without the session cookie): offered, not followed.
pub fn continue_when_signed_in(next: &str) -> crate::web::pages::Page {
    crate::web::pages::Page::new("continue.html.tera")
        .with("to", continue_target(Some(next.to_string())))
        .with("signed_in_already", true)
}

fn cross_site(req: &Request<'_>) -> bool {
    if let Some(site) = req.headers().get_one("Sec-Fetch-Site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = req.headers().get_one("Origin") else {
        // Not a browser form post (browsers send Origin on POST); the form token still has to match.
        return false;
    };
    if origin == "null" {
        return true;
    }
    let configured = req
        .rocket()
        .state::<crate::web::guards::PublicOrigin>()
        .map(|o| o.0.trim_end_matches('/').to_string())
        .unwrap_or_default();
    if !configured.is_empty() {
        return origin != configured;
    }
    let host = req.headers().get_one("Host").unwrap_or("");
    let scheme = if crate::web::guards::served_over_https(req) {
        "https"
    } else {
        "http"
    };
    origin != format!("{scheme}://{host}")
}

#[cfg(test)]
mod host_tests {
    use super::host_allowed;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn only_the_portal_s_own_host_names_are_answered() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        // With a public origin: its host only, whatever the port or case.
        let origin = "https://pcii.example.gov";
        assert!(host_allowed("pcii.example.gov", origin, any));
        assert!(host_allowed("PCII.example.gov:443", origin, any));
        assert!(host_allowed("pcii.example.gov.", origin, any));
        assert!(!host_allowed("rebind.attacker.example", origin, any));
        assert!(!host_allowed("127.0.0.1:8000", origin, any));
        assert!(!host_allowed(
            "pcii.example.gov.attacker.example",
            origin,
            any
        ));
        // Without one: the listening address and the loopback names.
        assert!(host_allowed("127.0.0.1:8000", "", loopback));
        assert!(host_allowed("localhost:8000", "", loopback));
        assert!(host_allowed("[::1]:8000", "", loopback));
        assert!(!host_allowed("rebind.attacker.example:8000", "", loopback));
        assert!(host_allowed(
            "http://localhost:9000".split("//").nth(1).unwrap(),
            "http://localhost:9000",
            loopback
        ));
    }
}
