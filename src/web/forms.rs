//! Form bodies with their anti-forgery token checked before anything else is parsed.
//!
//! Logged-in forms carry the session's token; anonymous forms (login, register, setup) carry a token kept in
//! a private cookie. A missing or wrong token answers 403, whatever else the body holds.

use rocket::data::{ByteUnit, FromData, Outcome};
use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, SameSite, Status};
use rocket::{Data, Request};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::audit::log::{Event, Outcome as AuditOutcome};
use crate::web::guards::{actor, any_session, app};
use crate::workflow::content::FieldErrors;

/// The longest text a search field takes (an organisation's name, a person's): the text is matched with LIKE, whose
/// pattern SQLite caps at 50,000 bytes, and no name is this long.
pub const SEARCH_TEXT_MAX_CHARS: usize = 200;

pub const ANON_CSRF_COOKIE: &str = "pcii_csrf";
pub const CSRF_FIELD: &str = "csrf";
const FORM_LIMIT: ByteUnit = ByteUnit::Kibibyte(256);

/// A filter value as typed (trimmed; empty when absent), kept to refill a filter form and to
/// build its links.
pub fn trimmed(v: Option<&str>) -> String {
    v.map(str::trim).unwrap_or("").to_string()
}

/// The highest page index a list accepts: a list longer than 100 000 pages is searched, not paged.
pub const MAX_PAGE: i64 = 100_000;

/// A list's page index from the query string (0 when absent). Anything else than a number from 0 to [`MAX_PAGE`]
/// is the caller's mistake, answered 422 with the reason, never a silent first page or an overflow.
pub fn page_index(page: Option<&str>) -> crate::error::AppResult<i64> {
    match page.map(str::trim) {
        None | Some("") => Ok(0),
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                crate::error::AppError::Invalid(format!(
                    "There is no page {}: pages are numbered from 0 to {MAX_PAGE}.",
                    quoted(p)
                ))
            }),
    }
}

/// The token the current visitor's forms must carry (creating the anonymous one on first use); 503 when the
/// session store does not answer.
pub async fn expected_token(req: &Request<'_>) -> Result<String, Status> {
    Ok(
        match crate::web::guards::any_session_or_unavailable(req).await? {
            Some(a) => a.csrf.clone(),
            None => anonymous_token(req),
        },
    )
}

pub fn anonymous_token(req: &Request<'_>) -> String {
    if let Some(c) = req.cookies().get_private(ANON_CSRF_COOKIE) {
        return c.value().to_string();
    }
    let token = crate::auth::sessions::new_token();
    let cookie = Cookie::build((ANON_CSRF_COOKIE, token.clone()))
        .expires(None::<rocket::time::OffsetDateTime>)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(crate::web::guards::served_over_https(req))
        .path("/")
        .build();
    req.cookies().add_private(cookie);
    token
}

pub fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty()
        && given.len() == expected.len()
        && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Audits a refused anti-forgery check (the token value itself is never recorded).
pub async fn audit_csrf_refusal(req: &Request<'_>, reason: &'static str) {
    let who = any_session(req).await;
    record_csrf_refusal(req, who, reason).await
}

/// Audits a request another site's page made the browser send (`fairings::OriginCheck`) as an anonymous refusal is
/// (by address, folded per network, route and minute), the session not even looked up: such a page can make a
/// thousand, and looking the session up would count as its use (a page could keep it from ever idling out).
pub async fn audit_cross_site_refusal(req: &Request<'_>, reason: &'static str) {
    record_csrf_refusal(req, None, reason).await
}

async fn record_csrf_refusal(
    req: &Request<'_>,
    who: Option<&crate::web::guards::Authenticated>,
    reason: &'static str,
) {
    let state = app(req);
    let actor = actor(req, who);
    let route = req.route().map(|r| r.uri.to_string()).unwrap_or_default();
    let event = Event::new("csrf.refused", AuditOutcome::Refused)
        .object("route", route)
        .reason(reason);
    let anonymous = who.is_none();
    if let Err(e) = crate::web::guards::record_refusal(state, anonymous, actor, event).await {
        tracing::error!(error = %e, "auditing a CSRF refusal failed");
    }
}

/// A urlencoded form whose `csrf` field matched; the rest parsed into `T`.
pub struct CsrfForm<T>(pub T);

#[rocket::async_trait]
impl<'r, T> FromData<'r> for CsrfForm<T>
where
    T: for<'a> FromForm<'a> + Send + 'static,
{
    type Error = ();

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        let body = match checked_body(req, data).await {
            Ok(body) => body,
            Err(status) => return Outcome::Error((status, ())),
        };
        // Lenient: the token field (and any other field `T` does not name) is ignored.
        match Form::<T>::parse_encoded(rocket::http::RawStr::new(&body)) {
            Ok(v) => Outcome::Success(CsrfForm(v)),
            Err(_) => Outcome::Error((Status::UnprocessableEntity, ())),
        }
    }
}

/// A urlencoded body (at most 256 KiB) whose `csrf` field matched the visitor's token (a refusal is audited).
pub async fn checked_body(req: &Request<'_>, data: Data<'_>) -> Result<String, Status> {
    let body = match data.open(FORM_LIMIT).into_string().await {
        Ok(s) if s.is_complete() => s.into_inner(),
        Ok(_) => return Err(Status::PayloadTooLarge),
        Err(_) => return Err(Status::BadRequest),
    };
    // The token is hex, so it needs no percent-decoding.
    let given = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == CSRF_FIELD)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let expected = expected_token(req).await?;
    if !tokens_match(&given, &expected) {
        audit_csrf_refusal(
            req,
            if given.is_empty() {
                "missing token"
            } else {
                "wrong token"
            },
        )
        .await;
        return Err(Status::Forbidden);
    }
    Ok(body)
}

/// The fields of a urlencoded body, decoded, in order.
pub fn decoded_fields(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// A form with nothing but its token (sign out, disable, ...).
#[derive(FromForm)]
pub struct NoFields {
    #[field(default = String::new())]
    #[allow(dead_code)]
    csrf: String,
}

/// What a handler that reads its own body (the multipart submission form) needs to check the token itself:
/// the expected value, and how to audit a refusal.
pub struct TokenCheck<'r> {
    pub expected: String,
    req: &'r Request<'r>,
}

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for TokenCheck<'r> {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, ()> {
        match expected_token(req).await {
            Ok(expected) => rocket::request::Outcome::Success(TokenCheck { expected, req }),
            Err(status) => rocket::request::Outcome::Error((status, ())),
        }
    }
}

impl TokenCheck<'_> {
    pub fn matches(&self, given: &str) -> bool {
        tokens_match(given, &self.expected)
    }

    pub async fn refused(&self, reason: &'static str) {
        audit_csrf_refusal(self.req, reason).await;
    }
}

/// One line of the summary at the top of the page: the message, and the field it links to.
#[derive(Serialize)]
pub struct SummaryLine {
    pub id: String,
    pub message: String,
}

/// The messages in the order of the fields on the page (any other last).
pub fn summary(errors: &FieldErrors, order: &[String]) -> Vec<SummaryLine> {
    let mut lines: Vec<(usize, SummaryLine)> = errors
        .iter()
        .map(|(id, message)| {
            (
                order.iter().position(|o| o == id).unwrap_or(usize::MAX),
                SummaryLine {
                    id: id.clone(),
                    message: message.clone(),
                },
            )
        })
        .collect();
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, line)| line).collect()
}

/// A value the caller sent, quoted for a message that refuses it: at most [`QUOTED_CHARS`] characters (then `…`), so
/// that a page never repeats a megabyte it was sent.
pub fn quoted(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(QUOTED_CHARS).collect();
    if chars.next().is_some() {
        format!("{:?}", format!("{head}…"))
    } else {
        format!("{head:?}")
    }
}

/// The most characters of a refused value a message repeats.
pub const QUOTED_CHARS: usize = 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_value_is_quoted_short() {
        assert_eq!(quoted("abc"), "\"abc\"");
        let long = "x".repeat(100_000);
        let q = quoted(&long);
        assert_eq!(q, format!("\"{}…\"", "x".repeat(QUOTED_CHARS)));
        assert_eq!(
            quoted(&"é".repeat(QUOTED_CHARS)).chars().count(),
            QUOTED_CHARS + 2
        );
        assert_eq!(quoted("a\u{202e}b"), "\"a\\u{202e}b\"");
    }
}
