//! Error pages: plain, helpful, the same headers as every page, and nothing internal. JSON for API clients.

use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder};
use rocket::serde::json::json;
use rocket::{Catcher, Request, Response};

use crate::web::error::error_message;
use crate::web::fairings::request_id;
use crate::web::guards::{cached, going_to};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::challenge_of;

pub fn catchers() -> Vec<Catcher> {
    rocket::catchers![any_error]
}

fn explain(status: Status) -> (&'static str, &'static str) {
    match status.code {
        400 => ("Bad request", "The request could not be understood. Go back and check what you entered."),
        401 => ("Please sign in", "This page needs you to be signed in."),
        403 => ("Not allowed", "Your account may not use this page, or the form was stale. Go back, reload the page and try again."),
        404 => ("Not found", "There is no page here, or it is not available to your account."),
        405 => ("Not allowed", "This address does not accept that kind of request."),
        409 => ("Conflict", "The request conflicts with the current state. Reload the page and try again."),
        410 => ("No longer available", "This content has been destroyed or returned and cannot be shown."),
        413 => ("Too large", "What you sent is larger than the portal accepts."),
        421 => ("Wrong address", "This portal answers only at its own address. Check the address you typed or followed."),
        422 => ("Check your entries", "Some of what you entered could not be read. Go back, check the form and try again."),
        429 => ("Too many attempts", "Too many attempts. Wait a few minutes and try again."),
        503 => ("Temporarily unavailable", "The portal is busy or cannot reach its database right now. Nothing was changed. Try again in a few seconds."),
        507 => ("Storage full", "The portal's storage is full, so what you sent was not kept; nothing stored before was affected. Try again later, or tell the PCII Program Office."),
        _ if status.code >= 500 => ("Something went wrong", "The portal could not complete this request. Nothing was changed. If it happens again, give the request id below to the PCII Program Office."),
        _ => ("Error", "The request could not be completed."),
    }
}

fn wants_json(req: &Request<'_>) -> bool {
    let path = req.uri().path();
    path.starts_with("/api/")
        || path == "/healthz"
        || req
            .headers()
            .get_one("Accept")
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

pub struct ErrorPage(Status);

/// Seconds a throttled client is told to wait (the attempt limits' window).
pub const THROTTLED_RETRY_AFTER: &str = "60";

/// How long a client should wait before trying again, for the statuses that are about time (RFC 9110 Retry-After).
fn retry_after(status: Status) -> Option<&'static str> {
    match status.code {
        503 => Some("5"),
        429 => Some(THROTTLED_RETRY_AFTER),
        _ => None,
    }
}

impl<'r> Responder<'r, 'static> for ErrorPage {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.0;
        let mut res = self.render(req)?;
        if let Some(secs) = retry_after(status).filter(|_| !crate::web::error::outcome_unknown(req))
        {
            res.set_raw_header("Retry-After", secs);
        }
        Ok(res)
    }
}

impl ErrorPage {
    fn render(self, req: &Request<'_>) -> response::Result<'static> {
        let status = self.0;
        let (title, default_message) = explain(status);
        // A guard that knows where the person should go instead (finish signing in, enrol a second factor, give it
        // again) sends a browser there, with its message shown on arrival.
        if let Some(to) = going_to(req).filter(|_| !wants_json(req)) {
            return match error_message(req) {
                Some(m) => Notice::redirect(to, m).respond_to(req),
                None => rocket::response::Redirect::to(to).respond_to(req),
            };
        }
        let message = error_message(req).unwrap_or_else(|| default_message.to_string());
        // A step-up act with a stale second factor: ask for it on a page that carries what was typed back.
        if let Some(challenge) = challenge_of(req).filter(|_| !wants_json(req)) {
            let minutes = req
                .rocket()
                .state::<crate::services::Services>()
                .map(|s| s.settings.step_up_minutes)
                .unwrap_or_default();
            let page = Page::new("step_up.html.tera")
                .with("action", &challenge.action)
                .with("fields", &challenge.fields)
                .with("secrets", &challenge.secrets)
                .with("error", &challenge.error)
                .with("passkey_options", &challenge.passkey_options)
                .with("back", "/dashboard")
                .with("minutes", minutes);
            let who = cached(req);
            let csrf = who.map(|a| a.csrf.clone()).unwrap_or_default();
            if let Ok(html) = page.render_with(req, who, &csrf) {
                return Response::build_from(html.respond_to(req)?)
                    .status(status)
                    .header(ContentType::HTML)
                    .ok();
            }
        }
        if wants_json(req) {
            let body = json!({ "error": title, "message": message, "status": status.code, "request_id": request_id(req) });
            return Response::build_from(body.respond_to(req)?)
                .status(status)
                .ok();
        }
        let page = Page::new("error.html.tera")
            .with("status", status.code)
            .with("title", title)
            .with("message", &message)
            .with("login_link", status.code == 401)
            .with("login_href", login_href(req));
        let who = cached(req);
        let csrf = who.map(|a| a.csrf.clone()).unwrap_or_default();
        match page.render_with(req, who, &csrf) {
            Ok(html) => Response::build_from(html.respond_to(req)?)
                .status(status)
                .header(ContentType::HTML)
                .ok(),
            // The template itself failed: a bare page, still with the status (headers come from the fairing).
            Err(_) => Response::build_from(format!("{} {}", status.code, title).respond_to(req)?)
                .status(status)
                .ok(),
        }
    }
}

/// The sign-in link of a 401 page: back to the page asked for after signing in (a GET only: a form sent again
/// by a redirect would be a GET of its action, not the form).
fn login_href(req: &Request<'_>) -> String {
    if req.method() != rocket::http::Method::Get {
        return "/login".to_string();
    }
    crate::web::public::signin::login_link(&req.uri().to_string())
}

#[rocket::catch(default)]
fn any_error(status: Status, _req: &Request<'_>) -> ErrorPage {
    ErrorPage(status)
}
