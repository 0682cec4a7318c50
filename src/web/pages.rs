//! Tera templates and static assets, embedded in the binary so it runs from any directory; the `Page`
//! responder that renders with the common context; one-shot notices carried across a redirect.

use std::borrow::Cow;
use std::collections::HashMap;

use rocket::fairing::AdHoc;
use rocket::http::{ContentType, Cookie, SameSite, Status};
use rocket::response::{self, Redirect, Responder};
use rocket::{Request, Response};
use rust_embed::RustEmbed;
use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::web::fairings::request_id;
use crate::web::forms::anonymous_token;
use crate::web::guards::Authenticated;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct TemplateFiles;

#[derive(RustEmbed)]
#[folder = "static/"]
struct StaticFiles;

pub struct Templates(pub Tera);

impl Templates {
    pub fn load() -> Result<Tera, String> {
        let mut tera = Tera::default();
        // Tera escapes only the suffixes it is told: every HTML template ends in .html.tera.
        tera.autoescape_on(vec![".html.tera"]);
        // And bidi controls shown as what they are, in every value a page shows: a right-to-left override in a
        // narrative, reason or notice must not make the text read as something else.
        tera.set_escape_fn(escape_html_and_bidi);
        let mut files = Vec::new();
        for name in TemplateFiles::iter() {
            let file =
                TemplateFiles::get(&name).ok_or_else(|| format!("template {name} vanished"))?;
            let text = String::from_utf8(file.data.into_owned())
                .map_err(|_| format!("template {name} is not UTF-8"))?;
            files.push((name.to_string(), text));
        }
        tera.add_raw_templates(files)
            .map_err(|e| format!("templates: {e:?}"))?;
        tera.register_filter("datetime", ts_filter(crate::time::datetime));
        tera.register_filter("date", ts_filter(crate::time::date));
        tera.register_filter("filesize", filesize_filter);
        tera.register_filter("status_label", status_label_filter);
        Ok(tera)
    }

    pub fn fairing() -> AdHoc {
        AdHoc::try_on_ignite("templates", |rocket| async move {
            match Templates::load() {
                Ok(t) => Ok(rocket
                    .manage(Templates(t))
                    .mount("/static", rocket::routes![static_file])),
                Err(e) => {
                    tracing::error!(error = %e, "loading templates failed");
                    Err(rocket)
                }
            }
        })
    }
}

/// Tera's HTML escaping, and each bidirectional formatting control (embeddings, overrides, isolates, marks)
/// replaced by a visible `<U+202E>` (as `workflow::content::visible` writes file names): `invoice\u{202E}fdp.exe`
/// shows as `invoice<U+202E>fdp.exe`, not as `invoiceexe.pdf`. Other characters, line breaks and joiners
/// included, are left as they are (narratives keep their lines, scripts that need joiners their shapes).
pub fn escape_html_and_bidi(input: &str) -> String {
    use crate::export::package::is_bidi_control;
    let escaped = tera::escape_html(input);
    if !escaped.chars().any(is_bidi_control) {
        return escaped;
    }
    let mut out = String::with_capacity(escaped.len() + 16);
    for c in escaped.chars() {
        if is_bidi_control(c) {
            out.push_str(&format!("&lt;U+{:04X}&gt;", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn ts_filter(f: fn(i64) -> String) -> impl tera::Filter {
    move |v: &Value, _: &HashMap<String, Value>| -> tera::Result<Value> {
        Ok(v.as_i64()
            .map(|ts| Value::String(f(ts)))
            .unwrap_or(Value::String(String::new())))
    }
}

/// A status as stored (`not_validated`) in the words the pages use for it ("Not validated").
fn status_label_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let stored = v.as_str().unwrap_or_default();
    Ok(Value::String(
        crate::domain::Status::parse(stored)
            .map(|s| s.label().to_string())
            .unwrap_or_else(|| stored.to_string()),
    ))
}

fn filesize_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(
        v.as_u64().map(human_size).unwrap_or_default(),
    ))
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[rocket::get("/<path..>")]
fn static_file(path: std::path::PathBuf) -> Option<(ContentType, Cow<'static, [u8]>)> {
    let name = path.to_str()?;
    let file = StaticFiles::get(name)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ct = ContentType::from_extension(ext).unwrap_or(ContentType::Binary);
    Some((ct, file.data))
}

/// A rendered page. The common context (who is logged in, the form token, the request id, a notice) is added
/// here so no handler forgets it.
pub struct Page {
    template: &'static str,
    ctx: Context,
    status: Status,
    /// Seconds a throttled client is told to wait (429 only), when not the attempt limits' window.
    retry_after: Option<u64>,
}

impl Page {
    pub fn new(template: &'static str) -> Page {
        Page {
            template,
            ctx: Context::new(),
            status: Status::Ok,
            retry_after: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Page {
        self.ctx.insert(key, &value);
        self
    }

    pub fn status(mut self, status: Status) -> Page {
        self.status = status;
        self
    }

    /// For a 429: how many seconds to wait, when the wait is not the attempt limits' window (60 s).
    pub fn retry_after(mut self, seconds: u64) -> Page {
        self.retry_after = Some(seconds);
        self
    }

    /// Renders outside a request (catchers use it with what they know).
    pub fn render_with(
        &self,
        req: &Request<'_>,
        who: Option<&Authenticated>,
        csrf: &str,
    ) -> Result<String, Status> {
        let tera = &req
            .rocket()
            .state::<Templates>()
            .ok_or(Status::InternalServerError)?
            .0;
        let mut ctx = self.ctx.clone();
        if let Some(a) = who {
            let mut me = crate::web::views::Me::of(&a.user);
            me.signed_in = a.signed_in();
            ctx.insert(
                "nav",
                &crate::web::views::main_nav(&me, req.uri().path().as_str()),
            );
            ctx.insert("me", &me);
            // For the idle warning (static/session.js): what the server gives this session from now.
            let services = req.rocket().state::<crate::services::Services>();
            if let Some(state) = services.filter(|_| me.signed_in) {
                ctx.insert("idle_seconds", &(a.expires_at - state.clock.now()).max(0));
            }
        }
        ctx.insert("csrf", csrf);
        ctx.insert("request_id", &request_id(req));
        if let Some(notice) = take_notice(req) {
            ctx.insert("notice", &notice);
        }
        tera.render(self.template, &ctx).map_err(|e| {
            tracing::error!(
                template = self.template,
                kind = render_error_kind(&e),
                "rendering failed"
            );
            Status::InternalServerError
        })
    }
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let who = crate::web::guards::cached(req).cloned();
        let csrf = match &who {
            Some(a) => a.csrf.clone(),
            None => anonymous_token(req),
        };
        let html = self.render_with(req, who.as_ref(), &csrf)?;
        let mut res = Response::build_from(html.respond_to(req)?);
        res.status(self.status).header(ContentType::HTML);
        // A form shown again because its sender is throttled (sign-in, second factor, a password check) says when
        // to come back, as the error pages do.
        if self.status == Status::TooManyRequests {
            let seconds = match self.retry_after {
                Some(s) => s.to_string(),
                None => crate::web::catchers::THROTTLED_RETRY_AFTER.to_string(),
            };
            res.raw_header("Retry-After", seconds);
        }
        res.ok()
    }
}

const NOTICE_COOKIE: &str = "pcii_notice";

/// A one-line message shown on the next page (after a redirect), kept in a private cookie.
pub struct Notice {
    to: String,
    message: String,
}

impl Notice {
    pub fn redirect(to: impl Into<String>, message: impl Into<String>) -> Notice {
        Notice {
            to: to.into(),
            message: message.into(),
        }
    }
}

impl<'r> Responder<'r, 'static> for Notice {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let cookie = Cookie::build((NOTICE_COOKIE, self.message))
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(crate::web::guards::served_over_https(req))
            .path("/")
            .build();
        req.cookies().add_private(cookie);
        Redirect::to(self.to).respond_to(req)
    }
}

fn take_notice(req: &Request<'_>) -> Option<String> {
    let c = req.cookies().get_private(NOTICE_COOKIE)?;
    req.cookies()
        .remove_private(crate::web::guards::cookie_removal(
            NOTICE_COOKIE,
            "/",
            crate::web::guards::served_over_https(req),
        ));
    Some(c.value().to_string())
}

/// What kind of failure a template's rendering was, without its message: tera puts the value a filter refused
/// into the message, and a page's values are the submission's words.
pub(crate) fn render_error_kind(e: &tera::Error) -> &'static str {
    use std::error::Error as _;
    let mut kinds = vec![&e.kind];
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(t) = inner.downcast_ref::<tera::Error>() {
            kinds.push(&t.kind);
        }
        source = inner.source();
    }
    // The innermost tera error says what went wrong; the outer ones only where.
    match kinds.last().copied() {
        Some(tera::ErrorKind::TemplateNotFound(_)) => "template not found",
        Some(tera::ErrorKind::FilterNotFound(_)) => "filter not found",
        Some(tera::ErrorKind::FunctionNotFound(_)) => "function not found",
        Some(tera::ErrorKind::TestNotFound(_)) => "test not found",
        Some(tera::ErrorKind::CallFilter(_)) => "a filter failed",
        Some(tera::ErrorKind::CallFunction(_)) => "a function failed",
        Some(tera::ErrorKind::CallTest(_)) => "a test failed",
        Some(tera::ErrorKind::Json(_)) => "a value could not be converted",
        Some(tera::ErrorKind::Msg(_)) => {
            "a template error (a missing variable or a value of the wrong type)"
        }
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::escape_html_and_bidi;

    #[test]
    fn bidi_controls_are_shown_as_escapes_and_html_is_escaped() {
        assert_eq!(
            escape_html_and_bidi("invoice\u{202E}fdp.exe <b>"),
            "invoice&lt;U+202E&gt;fdp.exe &lt;b&gt;"
        );
        assert_eq!(
            escape_html_and_bidi("a\u{2066}b\u{2069}c\u{200F}\u{061C}"),
            "a&lt;U+2066&gt;b&lt;U+2069&gt;c&lt;U+200F&gt;&lt;U+061C&gt;"
        );
        // Lines, joiners and right-to-left letters themselves are text.
        assert_eq!(
            escape_html_and_bidi("שלום\nعالم\u{200D}"),
            "שלום\nعالم\u{200D}"
        );
    }

    #[test]
    fn a_page_shows_an_override_in_any_value_as_an_escape() {
        let mut tera = super::Templates::load().unwrap();
        tera.add_raw_template("probe.html.tera", "<p>{{ message }}</p>")
            .unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("message", "reason\u{202E}txt.exe");
        let html = tera.render("probe.html.tera", &ctx).unwrap();
        assert_eq!(html, "<p>reason&lt;U+202E&gt;txt.exe</p>");
    }
}
