//! The auditor's workspace: the log, checkpoints, verification status, export. Never submission content.

use std::collections::VecDeque;
use std::io;

use rocket::http::{ContentType, Header};
use rocket::response::{self, Responder};
use rocket::{Request, Response};
use serde::Serialize;

use crate::audit::chain::AuditEntry;
use crate::audit::log::{Event, Outcome};
use crate::audit::store::{self as model, Filter};
use crate::audit::stored::Scope;
use crate::db::{Db, PooledConn};
use crate::error::{AppError, AppResult};
use crate::export::{stream_blocking, BlockingBody};
use crate::web::forms::{trimmed, CsrfForm, NoFields};
use crate::web::guards::{AuditorUser, Ctx, FreshFactor};
use crate::web::pages::{Notice, Page};

pub const PER_PAGE: i64 = 50;
const EXPORT_PAGE: i64 = 5000;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        index,
        checkpoints_page,
        checkpoints_json,
        verify,
        checkpoint,
        export,
        account_activity,
        submission_history
    ]
}

/// The filter values as typed, kept to refill the form and to build the "older entries" link.
#[derive(Debug, Clone, Default, Serialize)]
struct FilterForm {
    actor: String,
    action: String,
    object: String,
    outcome: String,
    from: String,
    to: String,
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string()).filter(|s| !s.is_empty())
}

impl FilterForm {
    /// The filter, or what is wrong with each field as typed: an auditor who mistypes a date must not be shown
    /// the whole log as if it were the filtered one.
    fn to_filter(&self) -> Result<Filter, std::collections::BTreeMap<&'static str, String>> {
        let mut errors = std::collections::BTreeMap::new();
        let date = |name: &'static str, v: &str, errors: &mut std::collections::BTreeMap<_, _>| {
            if v.is_empty() {
                return None;
            }
            let parsed = crate::time::parse_date(v);
            if parsed.is_none() {
                errors.insert(name, format!("{v:?} is not a date: use YYYY-MM-DD."));
            }
            parsed
        };
        let from = date("from", &self.from, &mut errors);
        let to = date("to", &self.to, &mut errors);
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                errors.insert("to", "The end date is before the start date.".to_string());
            }
        }
        if !self.outcome.is_empty() && !outcomes().contains(&self.outcome.as_str()) {
            errors.insert(
                "outcome",
                format!(
                    "{:?} is not an outcome: choose one from the list.",
                    self.outcome
                ),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Filter {
            actor: some(&self.actor),
            action: some(&self.action),
            object: some(&self.object),
            outcome: some(&self.outcome),
            from,
            // Inclusive of the whole "to" day.
            to: to.map(|t| t + crate::time::DAY),
        })
    }

    fn query(&self) -> Vec<(&'static str, &str)> {
        [
            ("actor", self.actor.as_str()),
            ("action", self.action.as_str()),
            ("object", self.object.as_str()),
            ("outcome", self.outcome.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

/// Percent-encodes a query value (Rocket's encode set covers `&`, `=`, `+`, `%`, `#` and `?`).
fn urlencode(s: &str) -> String {
    rocket::http::RawStr::new(s).percent_encode().to_string()
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The "older entries" cursor: an entry's sequence number, or the caller's mistake (422).
fn parse_before(before: Option<&str>) -> AppResult<Option<i64>> {
    match before.map(str::trim).filter(|b| !b.is_empty()) {
        None => Ok(None),
        Some(b) => b
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| {
                crate::error::AppError::Invalid(format!(
                    "{b:?} is not a position in the log (a positive whole number)."
                ))
            }),
    }
}

/// What the list template shows, whatever the page.
struct Listing {
    entries: Vec<AuditEntry>,
    older: Option<i64>,
}

fn load_listing(
    c: &mut crate::db::DbConn,
    filter: &Filter,
    before: Option<i64>,
) -> AppResult<Listing> {
    let mut entries = model::search(c, filter, before, PER_PAGE + 1)?;
    let more = entries.len() as i64 > PER_PAGE;
    entries.truncate(PER_PAGE as usize);
    let older = if more {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Listing { entries, older })
}

/// The log's integrity at a glance: the last verification, the head, the newest checkpoint.
#[derive(Serialize)]
struct IntegrityView {
    verification: Option<model::Verification>,
    head_seq: i64,
    head_hash: String,
    checkpoint: Option<CheckpointMark>,
}

#[derive(Serialize)]
struct CheckpointMark {
    seq: i64,
    at: i64,
}

fn status_view(c: &mut crate::db::DbConn) -> AppResult<IntegrityView> {
    let verification = model::last_verification(c)?;
    let (head_seq, head_hash) = model::head(c)?;
    let checkpoint = model::latest_checkpoint(c)?;
    Ok(IntegrityView {
        verification,
        head_seq,
        head_hash,
        checkpoint: checkpoint.map(|cp| CheckpointMark {
            seq: cp.seq,
            at: cp.at,
        }),
    })
}

fn outcomes() -> Vec<&'static str> {
    vec![
        Outcome::Success.as_str(),
        Outcome::Failure.as_str(),
        Outcome::Refused.as_str(),
    ]
}

#[allow(clippy::too_many_arguments)]
#[rocket::get("/?<actor>&<action>&<object>&<outcome>&<from>&<to>&<before>")]
async fn index(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    actor: Option<&str>,
    action: Option<&str>,
    object: Option<&str>,
    outcome: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    before: Option<&str>,
) -> AppResult<Page> {
    let form = FilterForm {
        actor: trimmed(actor),
        action: trimmed(action),
        object: trimmed(object),
        outcome: trimmed(outcome),
        from: trimmed(from),
        to: trimmed(to),
    };
    let before = parse_before(before)?;
    let filter = match form.to_filter() {
        Ok(filter) => filter,
        Err(errors) => {
            // The form again with the reasons, and no entries: nothing was read, so nothing is audited as viewed.
            return Ok(Page::new("audit/log.html.tera")
                .status(rocket::http::Status::UnprocessableEntity)
                .with("heading", "Audit log")
                .with("action_url", "/audit")
                .with("show_filters", true)
                .with("filters", &form)
                .with("errors", errors)
                .with("outcomes", outcomes())
                .with("entries", Vec::<AuditEntry>::new())
                .with("paged", false));
        }
    };
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let (listing, status) = ctx
        .state
        .db
        .run(move |c| {
            audit.record(c, &who, Event::new("audit.view", Outcome::Success))?;
            Ok((load_listing(c, &filter, before)?, status_view(c)?))
        })
        .await?;
    let older_link = listing.older.map(|seq| {
        let seq = seq.to_string();
        let mut q = form.query();
        q.push(("before", &seq));
        format!("/audit?{}", query_string(&q))
    });
    Ok(Page::new("audit/log.html.tera")
        .with("heading", "Audit log")
        .with("action_url", "/audit")
        .with("show_filters", true)
        .with("filters", &form)
        .with("outcomes", outcomes())
        .with("status", status)
        .with("entries", listing.entries)
        .with("older_link", older_link)
        .with("paged", before.is_some()))
}

async fn scoped_listing(
    ctx: Ctx<'_>,
    filter: Filter,
    event: Event,
    before: Option<&str>,
    base: String,
    heading: String,
    about_link: Option<String>,
) -> AppResult<Page> {
    let before = parse_before(before)?;
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let listing = ctx
        .state
        .db
        .run(move |c| {
            audit.record(c, &who, event)?;
            load_listing(c, &filter, before)
        })
        .await?;
    let older_link = listing
        .older
        .map(|seq| format!("{base}?{}", query_string(&[("before", &seq.to_string())])));
    Ok(Page::new("audit/log.html.tera")
        .with("heading", heading)
        .with("action_url", base)
        .with("show_filters", false)
        .with("about_link", about_link)
        .with("entries", listing.entries)
        .with("older_link", older_link)
        .with("paged", before.is_some()))
}

#[rocket::get("/accounts/<id>?<before>")]
async fn account_activity(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    id: &str,
    before: Option<&str>,
) -> AppResult<Page> {
    let filter = Filter {
        actor: Some(id.to_string()),
        ..Filter::default()
    };
    // Named in the reason, not as the object: an auditor reading the trail is not an event about the account.
    let event =
        Event::new("audit.view", Outcome::Success).reason(format!("activity of account {id}"));
    scoped_listing(
        ctx,
        filter,
        event,
        before,
        format!("/audit/accounts/{}", urlencode(id)),
        format!("Activity of account {id}"),
        Some(format!("/audit?{}", query_string(&[("object", id)]))),
    )
    .await
}

#[rocket::get("/submissions/<object>?<before>")]
async fn submission_history(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    object: &str,
    before: Option<&str>,
) -> AppResult<Page> {
    let filter = Filter {
        object: Some(object.to_string()),
        ..Filter::default()
    };
    // Not the object: reading the audit trail is not an access to the submission.
    let event = Event::new("audit.view", Outcome::Success)
        .reason(format!("access history of submission {object}"));
    let id = object.to_string();
    // The destruction record (who, when, why, digests) is for the auditor too; it holds no content.
    let destruction = ctx
        .state
        .db
        .run(move |c| Ok(crate::models::submission::destruction_of(c, &id)?))
        .await?;
    let page = scoped_listing(
        ctx,
        filter,
        event,
        before,
        format!("/audit/submissions/{}", urlencode(object)),
        format!("Access history of submission {object}"),
        None,
    )
    .await?;
    Ok(page.with(
        "destruction",
        crate::web::views::destruction_view(destruction),
    ))
}

#[rocket::get("/checkpoints")]
async fn checkpoints_page(ctx: Ctx<'_>, _auditor: AuditorUser<'_>) -> AppResult<Page> {
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let mut cps = ctx
        .state
        .db
        .run(move |c| {
            audit.record(
                c,
                &who,
                Event::new("audit.view", Outcome::Success).reason("checkpoints"),
            )?;
            Ok(model::checkpoints(c)?)
        })
        .await?;
    cps.reverse();
    Ok(Page::new("audit/checkpoints.html.tera")
        .with("checkpoints", cps)
        .with("public_key", ctx.state.audit.public_key_hex()))
}

/// A file to keep: a body with a type and `Content-Disposition: attachment`.
pub struct Download {
    content_type: ContentType,
    filename: &'static str,
    body: Vec<u8>,
}

impl<'r> Responder<'r, 'static> for Download {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(self.content_type)
            .header(Header::new(
                "Content-Disposition",
                format!("attachment; filename=\"{}\"", self.filename),
            ))
            .sized_body(self.body.len(), io::Cursor::new(self.body))
            .ok()
    }
}

#[rocket::get("/checkpoints.json")]
async fn checkpoints_json(ctx: Ctx<'_>, _auditor: AuditorUser<'_>) -> AppResult<Download> {
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let cps = ctx
        .state
        .db
        .run(move |c| {
            audit.record(
                c,
                &who,
                Event::new("audit.checkpoints_download", Outcome::Success),
            )?;
            Ok(model::checkpoints(c)?)
        })
        .await?;
    let body = serde_json::to_vec_pretty(&cps)
        .map_err(|e| AppError::Internal(format!("serialising checkpoints: {e}")))?;
    Ok(Download {
        content_type: ContentType::JSON,
        filename: "pcii-checkpoints.json",
        body,
    })
}

/// "Verify now": from the last verified checkpoint, or the whole chain with `full=1`.
#[derive(rocket::FromForm)]
struct VerifyForm {
    #[field(default = String::new())]
    full: String,
}

impl VerifyForm {
    fn scope(&self) -> Scope {
        match self.full.as_str() {
            "1" | "true" | "on" | "yes" => Scope::Full,
            _ => Scope::Incremental,
        }
    }
}

#[rocket::post("/verify", data = "<form>")]
async fn verify(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    form: CsrfForm<VerifyForm>,
) -> AppResult<Notice> {
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let scope = form.0.scope();
    // Takes its own connections (a reader each), only while it reads.
    let verdict = ctx
        .state
        .db
        .run_lazily(move |db| audit.verify_and_record_from(db, &who, &[], scope))
        .await?;
    let start = verdict.start.describe();
    let message = match &verdict.result {
        Ok(s) => format!("Audit log intact ({start}): {s}."),
        Err(p) => format!("Audit log NOT intact ({start}): {p}"),
    };
    Ok(Notice::redirect("/audit", message))
}

#[rocket::post("/checkpoint", data = "<_form>")]
async fn checkpoint(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    _form: CsrfForm<NoFields>,
) -> AppResult<Notice> {
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let cp = ctx
        .state
        .db
        .run(move |c| audit.checkpoint_now(c, &who))
        .await?;
    let message = match cp {
        Some(cp) => format!(
            "Checkpoint signed over entries #{}..#{}.",
            cp.from_seq, cp.seq
        ),
        None => "Nothing new to checkpoint.".to_string(),
    };
    Ok(Notice::redirect("/audit", message))
}

/// The entries `1..=last`, oldest first, read in pages from a connection of its own.
struct EntryPages {
    conn: PooledConn,
    after: i64,
    last: i64,
    buf: VecDeque<AuditEntry>,
    failed: bool,
}

impl EntryPages {
    fn open(db: &Db, last: i64) -> AppResult<EntryPages> {
        Ok(EntryPages {
            conn: db.get()?,
            after: 0,
            last,
            buf: VecDeque::new(),
            failed: false,
        })
    }
}

impl Iterator for EntryPages {
    type Item = AppResult<AuditEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.buf.is_empty() && self.after < self.last {
            let limit = EXPORT_PAGE.min(self.last - self.after);
            match model::page_after(&mut self.conn, self.after, limit) {
                Ok(page) => {
                    self.buf = page.into_iter().filter(|e| e.seq <= self.last).collect();
                    match self.buf.back() {
                        Some(e) => self.after = e.seq,
                        None => self.after = self.last,
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

/// The export archive, streamed as it is written; a failed export never ends cleanly.
pub struct ZipStream(BlockingBody);

impl<'r> Responder<'r, 'static> for ZipStream {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::ZIP)
            .header(Header::new(
                "Content-Disposition",
                "attachment; filename=\"pcii-audit-export.zip\"",
            ))
            .streamed_body(self.0)
            .ok()
    }
}

#[rocket::get("/export")]
async fn export(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    _fresh: FreshFactor,
) -> AppResult<ZipStream> {
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    // Recorded before streaming so the export contains its own entry, then a checkpoint signed over it
    // so the whole exported range is vouched for.
    let (last, checkpoints) = ctx
        .state
        .db
        .run(move |c| {
            audit.record(c, &who, Event::new("audit.export", Outcome::Success))?;
            audit.checkpoint_now(c, &who)?;
            let (last, _) = model::head(c)?;
            Ok((last, model::checkpoints(c)?))
        })
        .await?;
    let db = ctx.state.db.clone();
    let key = ctx.state.audit.public_key_hex();
    Ok(ZipStream(stream_blocking("audit export", move |out| {
        crate::audit::export::write_export(out, || EntryPages::open(&db, last), &checkpoints, &key)
            .map(|_| ())
            .map_err(|e| match e {
                crate::audit::ExportError::Io(e) => e,
                e => io::Error::other(e),
            })
    })))
}
