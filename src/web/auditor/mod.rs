//! The auditor's workspace: the log, checkpoints, verification status, export. Never submission content.

use std::collections::VecDeque;
use std::io;

use rocket::http::{ContentType, Header};
use rocket::response::{self, Responder};
use rocket::{Request, Response};
use serde::Serialize;

use crate::audit::actions;
use crate::audit::chain::AuditEntry;
use crate::audit::export::Named;
use crate::audit::log::{Event, Outcome};
use crate::audit::store::{self as model, Filter};
use crate::audit::stored::Scope;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::export::{stream_blocking, BlockingBody};
use crate::models::people;
use crate::web::forms::{trimmed, CsrfForm, NoFields};
use crate::web::guards::{AuditorUser, Ctx};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;

pub const PER_PAGE: i64 = 50;
const EXPORT_PAGE: i64 = 5000;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        index,
        checkpoints_page,
        checkpoints_json,
        verify,
        checkpoint,
        export_page,
        export,
        account_activity,
        submission_history
    ]
}

/// The filter values as typed, kept to refill the form and to build the "older entries" link.
#[derive(Debug, Clone, Default, Serialize)]
struct FilterForm {
    actor: String,
    /// A name, email or organisation: the accounts it matches.
    person: String,
    action: String,
    /// "1": show the auditors' own reading of the log (folded away by default).
    reading: String,
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
                errors.insert(
                    name,
                    format!(
                        "{} is not a date: use YYYY-MM-DD.",
                        crate::web::forms::quoted(v)
                    ),
                );
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
        if self.person.chars().count() > crate::web::forms::SEARCH_TEXT_MAX_CHARS {
            errors.insert(
                "person",
                format!(
                    "Enter at most {} characters of the name, email or organisation.",
                    crate::web::forms::SEARCH_TEXT_MAX_CHARS
                ),
            );
        }
        if !self.action.is_empty() && !actions::is_known(&self.action) {
            errors.insert(
                "action",
                format!(
                    "{} is not an action: choose one from the list.",
                    crate::web::forms::quoted(&self.action)
                ),
            );
        }
        if !self.outcome.is_empty() && !outcomes().contains(&self.outcome.as_str()) {
            errors.insert(
                "outcome",
                format!(
                    "{} is not an outcome: choose one from the list.",
                    crate::web::forms::quoted(&self.outcome)
                ),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Filter {
            actor: some(&self.actor),
            actors: None,
            action: some(&self.action),
            hide_action: self.folds_reading().then(|| actions::READING.to_string()),
            object: some(&self.object),
            outcome: some(&self.outcome),
            from,
            // Inclusive of the whole "to" day.
            to: to.map(|t| t + crate::time::DAY),
        })
    }

    /// Whether the auditors' reading is left out: unless asked for, or filtered on.
    fn folds_reading(&self) -> bool {
        self.reading != "1" && self.action != actions::READING
    }

    fn query(&self) -> Vec<(&'static str, &str)> {
        [
            ("actor", self.actor.as_str()),
            ("person", self.person.as_str()),
            ("action", self.action.as_str()),
            ("reading", self.reading.as_str()),
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
                    "{} is not a position in the log (a positive whole number).",
                    crate::web::forms::quoted(b)
                ))
            }),
    }
}

/// An entry as the auditor reads it: the entry, its action's label, and the names of the accounts it names
/// (joined now, from the accounts table; the chain holds the ids).
#[derive(Serialize)]
struct EntryView {
    #[serde(flatten)]
    entry: AuditEntry,
    action_label: &'static str,
    actor: Option<Named>,
    object_account: Option<Named>,
}

fn entry_views(c: &mut crate::db::DbConn, entries: Vec<AuditEntry>) -> AppResult<Vec<EntryView>> {
    let ids = entries.iter().flat_map(|e| {
        let object = (e.object_kind.as_deref() == Some("account"))
            .then_some(e.object_id.as_deref())
            .flatten();
        e.actor_id.as_deref().into_iter().chain(object)
    });
    let names = people::by_ids(c, ids)?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let actor = entry
                .actor_id
                .as_ref()
                .and_then(|id| names.get(id))
                .cloned();
            let object_account = match (entry.object_kind.as_deref(), &entry.object_id) {
                (Some("account"), Some(id)) => names.get(id).cloned(),
                _ => None,
            };
            let action_label = actions::known_label(&entry.action).unwrap_or("");
            EntryView {
                entry,
                action_label,
                actor,
                object_account,
            }
        })
        .collect())
}

/// What the list template shows, whatever the page.
struct Listing {
    entries: Vec<EntryView>,
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
    Ok(Listing {
        entries: entry_views(c, entries)?,
        older,
    })
}

/// The action filter's choices: every action with its label.
#[derive(Serialize)]
struct ActionChoice {
    name: &'static str,
    label: &'static str,
}

fn action_choices() -> Vec<ActionChoice> {
    actions::ACTIONS
        .iter()
        .map(|(name, label)| ActionChoice { name, label })
        .collect()
}

/// The log's integrity at a glance: the last verification, the head, the newest checkpoint.
#[derive(Serialize)]
struct IntegrityView {
    verification: Option<model::LastVerification>,
    head_seq: i64,
    head_hash: String,
    checkpoint: Option<CheckpointMark>,
}

#[derive(Serialize)]
struct CheckpointMark {
    seq: i64,
    at: i64,
}

fn status_view(c: &mut crate::db::DbConn, audit: &crate::AuditLog) -> AppResult<IntegrityView> {
    let verification = audit.last_verification(c)?;
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
#[rocket::get("/?<actor>&<person>&<action>&<reading>&<object>&<outcome>&<from>&<to>&<before>")]
async fn index(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    actor: Option<&str>,
    person: Option<&str>,
    action: Option<&str>,
    reading: Option<&str>,
    object: Option<&str>,
    outcome: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    before: Option<&str>,
) -> AppResult<Page> {
    let form = FilterForm {
        actor: trimmed(actor),
        person: trimmed(person),
        action: trimmed(action),
        reading: trimmed(reading),
        object: trimmed(object),
        outcome: trimmed(outcome),
        from: trimmed(from),
        to: trimmed(to),
    };
    let before = parse_before(before)?;
    let person_text = form.person.clone();
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
                .with("actions", action_choices())
                .with("entries", Vec::<EntryView>::new())
                .with("paged", false));
        }
    };
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let (listing, status, matched) = ctx
        .state
        .db
        .run(move |c| {
            audit.record(c, &who, Event::new("audit.view", Outcome::Success))?;
            let mut filter = filter;
            // A name or email stands for the accounts it matches, resolved now.
            let mut matched = None;
            if !person_text.is_empty() {
                let ids = people::ids_matching(c, &person_text)?;
                matched = Some(ids.len() as i64);
                filter.actors = Some(ids);
            }
            let listing = match matched {
                Some(n) if n == 0 || n > people::MATCH_LIMIT => Listing {
                    entries: Vec::new(),
                    older: None,
                },
                _ => load_listing(c, &filter, before)?,
            };
            Ok((listing, status_view(c, &audit)?, matched))
        })
        .await?;
    let person_note = matched.map(|n| match n {
        0 => "No account's name, email or organisation contains this text.".to_string(),
        n if n > people::MATCH_LIMIT => format!(
            "More than {} accounts match this text: type more of the name or email.",
            people::MATCH_LIMIT
        ),
        1 => "Entries by the one account that matches.".to_string(),
        n => format!("Entries by the {n} accounts that match."),
    });
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
        .with("actions", action_choices())
        .with("person_note", person_note)
        .with("reading_folded", form.folds_reading())
        .with("reading_link", {
            let mut q = form.query();
            q.retain(|(k, _)| *k != "reading");
            q.push(("reading", "1"));
            format!("/audit?{}", query_string(&q))
        })
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
    let (account, person_id) = (id.to_string(), id.to_string());
    let person = ctx
        .state
        .db
        .run(move |c| Ok(people::by_ids(c, [person_id.as_str()])?.remove(&account)))
        .await?;
    let heading = match &person {
        Some(p) => format!("Activity of {} <{}>", p.name, p.email),
        None => format!("Activity of account {id}"),
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
        heading,
        Some(format!("/audit?{}", query_string(&[("object", id)]))),
    )
    .await
    .map(|page| page.with("person", person).with("account_id", id))
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
    // The destruction record (who, when, why, digests) is for the auditor too; it holds no content. And who
    // read the content: per person, from the log, with the files by their number and size (never a name).
    let (destruction, readers) = ctx
        .state
        .db
        .run(move |c| {
            // By id or by tracking number (the log links either): the record is the submission's.
            let (access, submission_id) = model::content_access(c, &id)?;
            let destruction = crate::models::submission::destruction_of(
                c,
                submission_id.as_deref().unwrap_or(&id),
            )?;
            let sizes: std::collections::HashMap<i32, i64> = match &submission_id {
                Some(sid) => crate::models::attachment::attachments_of(c, sid)?
                    .into_iter()
                    .map(|a| (a.position, a.size_bytes))
                    .collect(),
                None => Default::default(),
            };
            let names = people::by_ids(c, access.iter().map(|a| a.actor_id.as_str()))?;
            let readers: Vec<ReaderView> = access
                .into_iter()
                .map(|a| ReaderView {
                    person: names.get(&a.actor_id).cloned(),
                    files: a
                        .files
                        .iter()
                        .map(|(number, times)| FileRead {
                            number: *number,
                            size: sizes.get(number).copied(),
                            times: *times,
                        })
                        .collect(),
                    access: a,
                })
                .collect();
            Ok((destruction, readers))
        })
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
    Ok(page
        .with(
            "destruction",
            crate::web::views::destruction_view(destruction),
        )
        .with("readers", readers)
        .with("show_readers", true))
}

/// One person's reading of a submission, for "who accessed this submission".
#[derive(Serialize)]
struct ReaderView {
    access: model::ContentAccess,
    person: Option<Named>,
    files: Vec<FileRead>,
}

#[derive(Serialize)]
struct FileRead {
    number: i32,
    /// Its size as stored in the submission's record (None once the record of the file is gone).
    size: Option<i64>,
    times: i64,
}

/// Checkpoints shown on one page of `/audit/checkpoints`.
const CHECKPOINTS_PER_PAGE: i64 = 50;

/// The signed checkpoints, newest first, a page at a time (`before`: the seq the page's checkpoints end
/// before); the JSON download has them all.
#[rocket::get("/checkpoints?<before>")]
async fn checkpoints_page(
    ctx: Ctx<'_>,
    _auditor: AuditorUser<'_>,
    before: Option<&str>,
) -> AppResult<Page> {
    let before = parse_before(before)?;
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    let (total, (cps, more)) = ctx
        .state
        .db
        .run(move |c| {
            audit.record(
                c,
                &who,
                Event::new("audit.view", Outcome::Success).reason("checkpoints"),
            )?;
            Ok((
                model::checkpoint_count(c)?,
                model::checkpoints_newest(c, before, CHECKPOINTS_PER_PAGE)?,
            ))
        })
        .await?;
    let older_link = more
        .then(|| cps.last())
        .flatten()
        .map(|oldest| format!("/audit/checkpoints?before={}", oldest.seq));
    Ok(Page::new("audit/checkpoints.html.tera")
        .with("checkpoints", cps)
        .with("total", total)
        .with("older_link", older_link)
        .with("paged", before.is_some())
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
    let slot = ctx.state.verifies.enter("").map_err(|_| {
        AppError::Throttled(
            "A verification of the audit log is already running on this server. Its result appears at the top \
             of the audit log when it ends: look there, or try again then."
                .into(),
        )
    })?;
    // Takes its own connections (a reader each), only while it reads. The slot goes with the work, so that a
    // request given up on does not free it while the verify still runs.
    let verdict = ctx
        .state
        .db
        .run_lazily(move |db| {
            let _slot = slot;
            audit.verify_and_record_from(db, &who, &[], scope)
        })
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

/// The entries `1..=last`, oldest first, read in pages. Each page takes a connection from the pool and gives it
/// back before its entries are written out: an export to a slow client must not hold one of the pool's few
/// connections for as long as the client takes to read.
struct EntryPages {
    db: Db,
    after: i64,
    last: i64,
    buf: VecDeque<AuditEntry>,
    failed: bool,
    /// For an export being sent: whether its auditor may still read the log, asked again before a page.
    reader: Option<StillAuditor>,
}

impl EntryPages {
    fn open(db: &Db, last: i64, reader: Option<StillAuditor>) -> AppResult<EntryPages> {
        Ok(EntryPages {
            db: db.clone(),
            after: 0,
            last,
            buf: VecDeque::new(),
            failed: false,
            reader,
        })
    }
}

/// The auditor an export is sent to, asked about again as it streams, as files and packages of submissions are
/// ([`crate::workflow::access::WhileAdmitted`]): every `access_recheck_seconds` (0: before every page), before the
/// next page is read, the account must still be enabled, confirmed and an auditor's, and the session it came from
/// must still live. Once it is not (disabled by an administrator, moved to another role, signed out), nothing more
/// is read: the export fails, the client sees it end short of
/// its declared length, and the cut is recorded (`audit.export_cut`).
#[derive(Clone)]
struct StillAuditor {
    user_id: String,
    audit: crate::audit::log::AuditLog,
    actor: crate::audit::log::Actor,
    clock: crate::clock::Clock,
    /// The session's timeouts (idle, absolute; seconds).
    session_timeouts: (i64, i64),
    every: std::time::Duration,
    next: std::time::Instant,
}

impl StillAuditor {
    /// `Ok` while the auditor may still read the log (asked only when due); otherwise why not, recorded.
    fn check(&mut self, conn: &mut crate::db::DbConn) -> AppResult<()> {
        let now = std::time::Instant::now();
        if now < self.next {
            return Ok(());
        }
        let account = crate::models::account::find(conn, &self.user_id)?;
        let session_ended = !crate::auth::sessions::still_streaming(
            conn,
            self.actor.session.as_deref(),
            self.clock.now(),
            self.session_timeouts,
        )?;
        // The account's state first: disabling it ends its sessions too, and is the reason to give.
        let ended = if account.disabled {
            "account disabled"
        } else if account.role != crate::domain::Role::Auditor {
            "no longer an auditor"
        } else if !account.email_verified() {
            "email address not confirmed"
        } else if session_ended {
            "session ended"
        } else {
            self.next = now + self.every;
            return Ok(());
        };
        self.audit.record(
            conn,
            &self.actor,
            Event::new("audit.export_cut", Outcome::Refused).reason(ended),
        )?;
        Err(AppError::Refused(format!(
            "the audit export was cut off: {ended}"
        )))
    }
}

impl Iterator for EntryPages {
    type Item = AppResult<AuditEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.buf.is_empty() && self.after < self.last {
            let mut conn = match self.db.get() {
                Ok(conn) => conn,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            if let Some(reader) = self.reader.as_mut() {
                if let Err(e) = reader.check(&mut conn) {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            let limit = EXPORT_PAGE.min(self.last - self.after);
            match model::page_after(&mut conn, self.after, limit) {
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

/// The export archive, streamed as it is written, with its length declared: a failed export never ends cleanly,
/// and ends short of `len`.
pub struct ZipStream {
    body: crate::slots::HeldBody<BlockingBody>,
    len: u64,
}

impl<'r> Responder<'r, 'static> for ZipStream {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::ZIP)
            .header(Header::new(
                "Content-Disposition",
                "attachment; filename=\"pcii-audit-export.zip\"",
            ))
            .header(Header::new("Content-Length", self.len.to_string()))
            .streamed_body(self.body)
            .ok()
    }
}

/// What an export is and the button that makes one. The export itself is a POST: it records itself and signs a
/// checkpoint, and no GET changes anything (a link, or a page elsewhere, cannot make one).
#[rocket::get("/export")]
async fn export_page(_auditor: AuditorUser<'_>) -> Page {
    Page::new("audit/export.html.tera")
}

/// The export, streamed; a stale second factor is asked for again first (the form is kept).
#[rocket::post("/export", data = "<_form>")]
async fn export(
    ctx: Ctx<'_>,
    auditor: AuditorUser<'_>,
    _form: StepUpForm<NoFields>,
) -> AppResult<ZipStream> {
    let slot = crate::workflow::documents::download_slot(ctx.state, &ctx.actor)?;
    let (audit, who) = (ctx.state.audit.clone(), ctx.actor.clone());
    // Recorded before streaming so the export contains its own entry, then a checkpoint signed over it
    // so the whole exported range is vouched for.
    let (last, checkpoints, names) = ctx
        .state
        .db
        .run(move |c| {
            audit.record(c, &who, Event::new("audit.export", Outcome::Success))?;
            audit.checkpoint_now(c, &who)?;
            let (last, _) = model::head(c)?;
            Ok((last, model::checkpoints(c)?, people::all(c)?))
        })
        .await?;
    let key = ctx.state.audit.public_key_hex();
    let generated_at = ctx.state.clock.now();
    // Its length first (one more pass over the entries, counted, not kept), so that the answer declares it and an
    // export whose source fails midway is seen as cut short by every client, not as a finished download (Rocket 0.5
    // ends a failed chunked body as if it had finished). A source failing here is an error page, not a 200.
    let (len, checkpoints, key, names) = ctx
        .state
        .db
        .run_lazily(move |db| {
            let len = crate::audit::export_length(
                generated_at,
                || EntryPages::open(db, last, None),
                &checkpoints,
                &key,
                &names,
            )
            .map_err(export_failed)?;
            Ok((len, checkpoints, key, names))
        })
        .await?;
    let db = ctx.state.db.clone();
    let every = std::time::Duration::from_secs(ctx.state.settings.access_recheck_seconds);
    let reader = StillAuditor {
        user_id: auditor.user.id.clone(),
        audit: ctx.state.audit.clone(),
        actor: ctx.actor.clone(),
        clock: ctx.state.clock.clone(),
        session_timeouts: ctx.state.settings.session_timeouts(),
        every,
        // Asked just now, when the request was admitted.
        next: std::time::Instant::now() + every,
    };
    let body = stream_blocking("audit export", move |out| {
        crate::audit::write_export_of_len(
            out,
            len,
            generated_at,
            || EntryPages::open(&db, last, Some(reader.clone())),
            &checkpoints,
            &key,
            names,
        )
        .map(|_| ())
        .map_err(|e| match e {
            crate::audit::ExportError::Io(e) => e,
            e => io::Error::other(e),
        })
    });
    Ok(ZipStream {
        body: crate::slots::HeldBody::new(body, slot),
        len,
    })
}

/// A failed export before its first byte: the source's own error (a database that does not answer is a 503).
fn export_failed(e: crate::audit::ExportError) -> AppError {
    match e {
        crate::audit::ExportError::Source(source) => match source.downcast::<AppError>() {
            Ok(e) => *e,
            Err(other) => AppError::Internal(format!("reading the audit log: {other}")),
        },
        e => AppError::Internal(format!("making the audit export: {e}")),
    }
}
