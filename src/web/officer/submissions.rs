//! PCII officers: one submission (content decrypted as it streams, markings, decisions, grants,
//! disseminations, export), the whole dissemination log, and finding a submission by its tracking number.
//! Drafts are invisible to officers. A form posted with a mistake comes back on the submission's page as
//! typed (422); a final decision is shown with what will follow and applied only once confirmed.

use rocket::http::Status;
use rocket::response::Redirect;
use rocket::Either;

use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account;
use crate::models::grant as grants;
use crate::models::organisation::NameMatches;
use crate::models::submission::{self, Scope};
use crate::web::downloads::{Download, ZipDownload};
use crate::web::forms::{summary, CsrfForm};
use crate::web::guards::{Ctx, FreshFactor, OfficerUser};
use crate::web::officer::forms::{
    grant_ids, revoke_id, Again, DecisionForm, DestroyUnclaimedForm, DisseminationForm, FormView,
    GrantForm, RevokeForm, RevokeView,
};
use crate::web::pages::{Notice, Page};
use crate::web::step_up::StepUpForm;
use crate::web::views::{
    content_view, destruction_view, file_views, open_disseminations, open_events, open_grants,
    Choice,
};
use crate::workflow::access::{self, Admitted, Reading};
use crate::workflow::cases;
use crate::workflow::content::FieldErrors;
use crate::workflow::decisions::{self, Decision, NewDissemination, RECIPIENT_KINDS};
use crate::workflow::lifecycle;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        detail,
        download,
        export,
        decide,
        destroy_unclaimed,
        grant,
        revoke,
        disseminate,
        dissemination_log,
        dissemination_csv,
        find
    ]
}

/// A grant on the officer's page, and whether it is live now.
#[derive(serde::Serialize)]
struct GrantLine {
    g: grants::GrantView,
    live: bool,
}

/// The submission if it was sent (drafts are invisible to officers); else 404, audited.
async fn load(ctx: &Ctx<'_>, officer: &OfficerUser<'_>, id: &str) -> AppResult<Admitted> {
    access::admit(ctx.state, &officer.user, &ctx.actor, id).await
}

#[rocket::get("/officer/submissions/<id>")]
async fn detail(ctx: Ctx<'_>, officer: OfficerUser<'_>, id: &str) -> AppResult<Page> {
    let admitted = load(&ctx, &officer, id).await?;
    submission_page(&ctx, &officer, &admitted, None, None).await
}

/// A case note posted empty (or too long): the text as typed and the message for its field.
pub struct NoteAgain {
    pub text: String,
    pub errors: FieldErrors,
}

/// The case section of the page: who handles it, whether it came back cured, the officers it may be given to
/// (none of the submission's organisation), and the notes, opened.
#[derive(serde::Serialize)]
struct CaseView {
    handled_by: Option<String>,
    assigned_to: Option<String>,
    assigned_at: Option<i64>,
    mine: bool,
    cured_at: Option<i64>,
    officers: Vec<Choice>,
    notes: Vec<crate::models::case_note::CaseNoteView>,
    /// Closed submissions (destroyed, returned) have no case to handle and take no notes.
    open: bool,
}

/// The submission's page. `again` is a form of it posted with mistakes (each message by the id of its field),
/// or sent back from a confirmation to be changed: the page shows it as typed, with 422 when it has mistakes;
/// `note` is the case note form posted empty, likewise.
pub(super) async fn submission_page(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    admitted: &Admitted,
    again: Option<(Again, FieldErrors)>,
    note: Option<NoteAgain>,
) -> AppResult<Page> {
    let state = ctx.state;
    let content = access::read_content(state, admitted, &ctx.actor, Reading::Page(None)).await?;
    let sub = admitted.submission();
    let sid = sub.id.clone();
    let now = state.clock.now();
    let (
        attachments,
        mut events,
        destruction,
        mut grant_rows,
        mut dissem,
        analysts,
        case,
        officers,
    ) = state
        .db
        .run(move |c| {
            let grant_rows = grants::grants_of(c, &sid)?;
            let dissem = grants::disseminations_of(c, &sid)?;
            let analysts = account::enabled_of_role(c, Role::AuthorizedUser)?;
            Ok((
                submission::attachments_of(c, &sid)?,
                submission::events_of(c, &sid)?,
                submission::destruction_of(c, &sid)?,
                grant_rows,
                dissem,
                analysts,
                submission::case_of(c, &sid)?,
                crate::models::queue::officers(c)?,
            ))
        })
        .await?;
    // The files as the version shown held them (a correction's draft is the organisation's own until it is sent).
    let attachments = admitted.shown_attachments(content.as_ref(), attachments);
    if let (Some(c), Some(version)) = (&content, admitted.shown_version()) {
        if case.sent_title_sealed.is_none()
            || case.title_sealed.is_none() && !admitted.shown_as_sent()
        {
            cases::backfill_title(state, &sub.id, version, &c.title).await?;
        }
    }
    // Who affirmed the express statement, as the receipt names the person (PCII.md: who, when, which version).
    let affirmed_by = access::affirmed_by(state, admitted)
        .await?
        .map(|u| format!("{} <{}>", u.display_name, u.email));
    let texts = access::texts(state, admitted).await?;
    open_events(&texts, &mut events);
    open_grants(&texts, &mut grant_rows);
    open_disseminations(&texts, &mut dissem);
    let notes = cases::notes(state, &texts, &sub.id).await?;
    drop(texts);
    let case = CaseView {
        handled_by: officers
            .iter()
            .find(|o| Some(&o.id) == case.assigned_to.as_ref())
            .map(|o| o.display_name.clone()),
        mine: case.assigned_to.as_deref() == Some(officer.user.id.as_str()),
        assigned_to: case.assigned_to,
        assigned_at: case.assigned_at,
        cured_at: case
            .cured_at
            .filter(|_| sub.status() == crate::domain::Status::Received),
        officers: officers
            .into_iter()
            .filter(|o| o.organisation_id.as_deref() != Some(sub.organisation_id.as_str()))
            .map(|o| Choice {
                label: format!("{} <{}>", o.display_name, o.email),
                value: o.id,
            })
            .collect(),
        notes,
        open: !crate::workflow::lifecycle::content_destroyed(sub.status()),
    };
    let mut note_form = FormView::new(String::new());
    if let Some(n) = note {
        note_form = FormView {
            values: n.text,
            errors: n.errors,
        };
    }
    let oid = sub.organisation_id.clone();
    // Who submitted, and whether the Program Office has verified that organisation.
    let organisation = state
        .db
        .run(move |c| Ok(account::find_organisation(c, &oid)?))
        .await?;
    let grants: Vec<GrantLine> = grant_rows
        .into_iter()
        .map(|g| GrantLine {
            live: g.revoked_at.is_none() && g.expires_at > now,
            g,
        })
        .collect();
    // Each with what keeps it from reading PCII now, if anything: a grant to it stands, but waits on that record.
    let analysts: Vec<Choice> = analysts
        .into_iter()
        .map(|a| {
            let why = access::standing(
                a.training_completed_at,
                a.nda_signed_at,
                a.nda_expires_at,
                now,
            )
            .and_then(|r| r.about_person());
            Choice {
                label: match why {
                    Some(why) => format!(
                        "{} <{}> — cannot read PCII now: {why}",
                        a.display_name, a.email
                    ),
                    None => format!("{} <{}>", a.display_name, a.email),
                },
                value: a.id,
            }
        })
        .collect();
    let days_since = sub.received_at.map(|r| crate::time::days_between(r, now));

    // Every form with its defaults, then the one that comes back as typed.
    let mut decision_form = FormView::new(<DecisionForm as Default>::default());
    let mut removal_form = FormView::new(DecisionForm::removal());
    let mut grant_form = FormView::new(GrantForm {
        expires: crate::time::date(now + 90 * crate::time::DAY),
        ..<GrantForm as Default>::default()
    });
    let mut revoke_form = FormView::new(RevokeView::default());
    let mut dissemination_form = FormView::new(DisseminationForm {
        released_on: crate::time::date(now),
        purpose: decisions::PURPOSES[0].to_string(),
        ..<DisseminationForm as Default>::default()
    });
    let mut error_summary = Vec::new();
    let mut status = Status::Ok;
    if !note_form.errors.is_empty() {
        error_summary = summary(&note_form.errors, &["note".to_string()]);
        status = Status::UnprocessableEntity;
    }
    if let Some((again, errors)) = again {
        error_summary = summary(&errors, &again.order());
        if !errors.is_empty() {
            status = Status::UnprocessableEntity;
        }
        match again {
            Again::Decision(values) if values.is_removal() => {
                removal_form = FormView { values, errors }
            }
            Again::Decision(values) => decision_form = FormView { values, errors },
            Again::Grant(values) => grant_form = FormView { values, errors },
            Again::Revoke { grant, form } => {
                revoke_form = FormView {
                    values: RevokeView {
                        grant,
                        reason: form.reason,
                    },
                    errors,
                }
            }
            Again::Dissemination(values) => dissemination_form = FormView { values, errors },
        }
    }
    let unread =
        crate::workflow::messages::unread_for_user(ctx.state, &officer.user, vec![sub.id.clone()])
            .await?
            .get(&sub.id)
            .copied()
            .unwrap_or(0);
    let reach = crate::workflow::notifications::disposition_reach(ctx.state, sub).await?;
    let notice_due_at = sub
        .received_at
        .map(|r| r + crate::domain::DEFECT_NOTICE_DAYS * crate::time::DAY);
    Ok(Page::new("officer/submission.html.tera")
        .with("affirmed_by", affirmed_by)
        .with("notice_due_at", notice_due_at)
        // A notice now would come after the days the submitter was told of (from the second after the due one, as
        // the queue counts it overdue).
        .with("notice_late", notice_due_at.is_some_and(|due| now > due))
        .with("seen", decisions::seen_now(ctx.state, sub).await?)
        .with("unread_messages", unread)
        .with("reach", reach)
        .with(
            "messages_link",
            format!("/officer/submissions/{}/messages", sub.id),
        )
        .with(
            "submission",
            crate::web::views::shown_submission_view(admitted, &attachments),
        )
        .with("content", content.as_ref().map(content_view))
        .with("files", file_views(content.as_ref(), &attachments))
        .with(
            "file_base",
            format!("/officer/submissions/{}/files", sub.id),
        )
        .with("events", events)
        .with("destruction", destruction_view(destruction))
        .with("grants", grants)
        .with("disseminations", dissem)
        .with("analysts", analysts)
        .with("recipient_kinds", RECIPIENT_KINDS)
        .with("organisation", organisation)
        .with("days_since_receipt", days_since)
        .with(
            "may",
            lifecycle::affordances(sub, &officer.user, ctx.state.clock.now()),
        )
        .with("can_export", content.is_some())
        .with("decision_form", decision_form)
        .with("removal_form", removal_form)
        .with("grant_form", grant_form)
        .with("revoke_form", revoke_form)
        .with("dissemination_form", dissemination_form)
        .with("error_summary", error_summary)
        .with("case", case)
        .with("note_form", note_form)
        .status(status))
}

#[rocket::get("/officer/submissions/<id>/files/<file>")]
async fn download(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    file: &str,
) -> AppResult<Download> {
    let admitted = load(&ctx, &officer, id).await?;
    let opened = access::open_attachment(ctx.state, &admitted, &ctx.actor, file).await?;
    Ok(Download(opened))
}

#[rocket::get("/officer/submissions/<id>/export")]
async fn export(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    _fresh: FreshFactor,
    id: &str,
) -> AppResult<ZipDownload> {
    let admitted = load(&ctx, &officer, id).await?;
    let package = access::export_package(ctx.state, &admitted, &ctx.actor, "export").await?;
    Ok(ZipDownload(package))
}

/// The submission's page with `form` shown again as typed and `errors` next to its fields.
async fn show_again(
    ctx: &Ctx<'_>,
    officer: &OfficerUser<'_>,
    admitted: &Admitted,
    form: Again,
    errors: FieldErrors,
) -> AppResult<Either<Notice, Page>> {
    let page = submission_page(ctx, officer, admitted, Some((form, errors)), None).await?;
    Ok(Either::Right(page))
}

/// A decision, or the removal of protection. A mistake brings the form back as typed; a decision the
/// lifecycle does not allow here (a stale page) is refused as the service would (409, or 403 for the
/// officer's own organisation). A final decision is first shown with what will follow, changing nothing;
/// only the confirmation page's button (`confirm=1`) applies it.
#[rocket::post("/officer/submissions/<id>/decision", data = "<form>")]
async fn decide(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DecisionForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let admitted = load(&ctx, &officer, id).await?;
    let sub = admitted.submission();
    if form.change == "1" {
        return show_again(
            &ctx,
            &officer,
            &admitted,
            Again::Decision(form),
            FieldErrors::new(),
        )
        .await;
    }
    let Some(decision) = Decision::parse(&form.decision) else {
        let mut errors = FieldErrors::new();
        errors.insert("decision".into(), "Choose a decision.".into());
        return show_again(&ctx, &officer, &admitted, Again::Decision(form), errors).await;
    };
    // Its own organisation's submission is refused and recorded (403) whatever its page showed.
    decisions::recorded(
        ctx.state,
        &ctx.actor,
        decisions::not_own(&officer.user, sub),
    )
    .await?;
    // Posted from a page that showed the submission as it no longer is: decided on what the officer did not see. The
    // submission page comes back as it is now (409), the officer's words kept and the form carrying what it shows.
    let seen = Some(form.seen.clone()).filter(|s| !s.is_empty());
    let now_seen = decisions::seen_now(ctx.state, sub).await?;
    if let Err(refused) = decisions::still_as_seen(&now_seen, seen.as_deref()) {
        let mut errors = FieldErrors::new();
        let field = if form.is_removal() {
            form.reason_id()
        } else {
            "decision"
        };
        let message = match refused {
            AppError::Conflict(m) => m,
            other => return Err(other),
        };
        errors.insert(field.into(), message);
        let form = DecisionForm {
            seen: String::new(),
            confirm: String::new(),
            ..form
        };
        let page = submission_page(
            &ctx,
            &officer,
            &admitted,
            Some((Again::Decision(form), errors)),
            None,
        )
        .await?;
        return Ok(Either::Right(page.status(Status::Conflict)));
    }
    let to = decisions::recorded(
        ctx.state,
        &ctx.actor,
        decisions::may_decide(&officer.user, sub, decision, ctx.state.clock.now()),
    )
    .await?;
    let errors = form.word_errors(decision);
    if !errors.is_empty() {
        return show_again(&ctx, &officer, &admitted, Again::Decision(form), errors).await;
    }
    if decision.is_final() && form.confirm != "1" {
        return Ok(Either::Right(
            confirmation_page(&ctx, sub, decision, to, &form).await?,
        ));
    }
    match decisions::decide(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        decision,
        &form.words(),
        seen,
    )
    .await
    {
        Ok(decided) => {
            let mut notice = format!(
                "Recorded: {}. The submitter was notified.",
                decided.status.label()
            );
            if decided.unsent.later > 0 {
                notice.push_str(
                    " The email telling the organisation could not go out yet; the portal tries again.",
                );
            }
            if decided.unsent.refused > 0 {
                notice.push_str(&format!(
                    " The mail server refused the email to {} of its members; they see the decision when they \
                     sign in.",
                    decided.unsent.refused
                ));
            }
            Ok(Either::Left(Notice::redirect(
                format!("/officer/submissions/{id}"),
                notice,
            )))
        }
        // The words were checked above; should the service still refuse them, they come back as typed.
        Err(AppError::Invalid(m)) => {
            let mut errors = FieldErrors::new();
            errors.insert(form.reason_id().into(), m);
            show_again(&ctx, &officer, &admitted, Again::Decision(form), errors).await
        }
        Err(e) => Err(e),
    }
}

/// The Program Office destroys a submission whose organisation let its deadline pass without choosing return or
/// destruction, or without taking its return package. Final, so the form's box must be ticked (and a second factor
/// given recently, `StepUpForm`, as for every final decision); the service checks the deadline again in its
/// transaction.
#[rocket::post("/officer/submissions/<id>/destroy-unclaimed", data = "<form>")]
async fn destroy_unclaimed(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DestroyUnclaimedForm>,
) -> AppResult<Notice> {
    if form.0.confirm != "yes" {
        return Err(AppError::Invalid(
            "Tick the box to confirm the destruction: nothing was destroyed.".into(),
        ));
    }
    let decided = decisions::destroy_unclaimed(ctx.state, &officer.user, &ctx.actor, id).await?;
    let mut notice = String::from(
        "Destroyed: the content can no longer be opened by any key, and a destruction record remains. The \
         organisation was notified.",
    );
    if decided.unsent.later > 0 {
        notice.push_str(
            " The email telling the organisation could not go out yet; the portal tries again.",
        );
    }
    if decided.unsent.refused > 0 {
        notice.push_str(&format!(
            " The mail server refused the email to {} of its members; they see it when they sign in.",
            decided.unsent.refused
        ));
    }
    Ok(Notice::redirect(
        format!("/officer/submissions/{id}"),
        notice,
    ))
}

/// What a final decision will do, for the officer to confirm: the typed words ride along in hidden fields.
/// Nothing is read from the content and nothing is recorded: the page changes nothing.
async fn confirmation_page(
    ctx: &Ctx<'_>,
    sub: &submission::Submission,
    decision: Decision,
    to: crate::domain::Status,
    form: &DecisionForm,
) -> AppResult<Page> {
    let now = ctx.state.clock.now();
    let (oid, sid) = (sub.organisation_id.clone(), sub.id.clone());
    let (organisation, live_grants) = ctx
        .state
        .db
        .run(move |c| {
            let organisation = account::find_organisation(c, &oid)?.map(|o| o.name);
            let live = grants::grants_of(c, &sid)?
                .iter()
                .filter(|g| g.revoked_at.is_none() && g.expires_at > now)
                .count();
            Ok((organisation, live))
        })
        .await?;
    let tn = sub.tracking_number.as_deref().unwrap_or("this submission");
    let (title, button) = match decision {
        Decision::Validate => (format!("Validate {tn}?"), "Confirm: validated"),
        Decision::NotValidate => (
            format!("Decide that {tn} is not validated?"),
            "Confirm: not validated",
        ),
        Decision::RemoveProtection => (
            format!("Remove the protection of {tn}?"),
            "Confirm: remove protection",
        ),
        // Not final, so never asked; named all the same.
        Decision::Defective => (format!("Mark {tn} defective?"), "Confirm: defective"),
    };
    // What the submission page showed, when the form came from one; else what this page shows.
    let seen = match Some(form.seen.clone()).filter(|s| !s.is_empty()) {
        Some(seen) => seen,
        None => decisions::seen_now(ctx.state, sub).await?,
    };
    Ok(Page::new("officer/confirm_decision.html.tera")
        .with("submission", crate::web::views::office_submission_view(sub))
        .with("seen", seen)
        .with("title", title)
        .with("button", button)
        .with("decision", decision.as_str())
        .with("to_label", to.label())
        .with("organisation", organisation)
        .with("live_grants", live_grants)
        .with("words", form.words())
        .with("form", form))
}

/// Need-to-know access for an authorized user. Mistakes bring the form back as typed.
#[rocket::post("/officer/submissions/<id>/grants", data = "<form>")]
async fn grant(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<GrantForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let admitted = load(&ctx, &officer, id).await?;
    // A form for a submission that is no longer releasable is refused as such, not corrected field by field.
    decisions::recorded(
        ctx.state,
        &ctx.actor,
        decisions::may_release(&officer.user, admitted.submission()),
    )
    .await?;
    let now = ctx.state.clock.now();
    // The grant runs to the end of the chosen day (UTC).
    let expires = crate::time::parse_date(&form.expires).map(|d| d + crate::time::DAY - 1);
    // An unreadable date is reported as such; the reason is checked as if the date were valid.
    let terms = decisions::check_grant_terms(&form.reason, expires.unwrap_or(now + 1), now);
    let mut errors = grant_ids(terms.err().unwrap_or_default());
    if expires.is_none() {
        errors.insert(
            "expires".into(),
            "Enter the expiry date as YYYY-MM-DD.".into(),
        );
    }
    if form.user_id.trim().is_empty() {
        errors.insert("user_id".into(), "Choose an authorized user.".into());
    }
    let expires = match expires {
        Some(expires) if errors.is_empty() => expires,
        _ => return show_again(&ctx, &officer, &admitted, Again::Grant(form), errors).await,
    };
    match decisions::grant(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        &form.user_id,
        &form.reason,
        expires,
    )
    .await
    {
        Ok(granted) => {
            let mut notice = "Access granted.".to_string();
            if let Some(why) = granted.cannot_read_yet.and_then(|r| r.about_person()) {
                notice.push_str(&format!(
                    " {} cannot read it until that is recorded ({why}); the grant's time runs meanwhile.",
                    granted.grantee
                ));
            }
            Ok(Either::Left(Notice::redirect(
                format!("/officer/submissions/{id}"),
                notice,
            )))
        }
        // The terms were checked above: what is left is the account chosen (disabled, not an authorized user, or
        // already holding a live grant that runs as long).
        Err(AppError::Invalid(m)) => {
            let mut errors = FieldErrors::new();
            errors.insert("user_id".into(), m);
            show_again(&ctx, &officer, &admitted, Again::Grant(form), errors).await
        }
        Err(e) => Err(e),
    }
}

#[rocket::post("/officer/submissions/<id>/grants/<grant>/revoke", data = "<form>")]
async fn revoke(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    grant: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    match decisions::revoke(
        ctx.state,
        &officer.user,
        &ctx.actor,
        id,
        grant,
        &form.reason,
    )
    .await
    {
        Ok(()) => Ok(Either::Left(Notice::redirect(
            format!("/officer/submissions/{id}"),
            "The grant was revoked.",
        ))),
        // The reason is all a revocation's form holds, so it is what was refused.
        Err(AppError::Invalid(m)) => {
            let admitted = load(&ctx, &officer, id).await?;
            let mut errors = FieldErrors::new();
            errors.insert(revoke_id(grant), m);
            let form = Again::Revoke {
                grant: grant.to_string(),
                form,
            };
            show_again(&ctx, &officer, &admitted, form, errors).await
        }
        Err(e) => Err(e),
    }
}

/// A release recorded in the dissemination log. Mistakes bring the form back as typed.
#[rocket::post("/officer/submissions/<id>/disseminations", data = "<form>")]
async fn disseminate(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    id: &str,
    form: StepUpForm<DisseminationForm>,
) -> AppResult<Either<Notice, Page>> {
    let form = form.0;
    let admitted = load(&ctx, &officer, id).await?;
    decisions::recorded(
        ctx.state,
        &ctx.actor,
        decisions::may_release(&officer.user, admitted.submission()),
    )
    .await?;
    let now = ctx.state.clock.now();
    let released_at = crate::time::parse_date(&form.released_on);
    let release = NewDissemination {
        recipient: form.recipient.clone(),
        recipient_kind: form.recipient_kind.clone(),
        arrangement: form.arrangement.clone(),
        what: form.what.clone(),
        // An unreadable date is reported as such; the other fields are checked as if it were today.
        released_at: released_at.unwrap_or(now),
        sanitized: form.sanitized == "yes",
        removed: form.removed.clone(),
        // A form from before the purpose was asked (or a client that leaves it out) releases for homeland security.
        purpose: match form.purpose.as_str() {
            "" => decisions::PURPOSES[0].to_string(),
            p => p.to_string(),
        },
        consent: form.consent.clone(),
    };
    let mut errors = decisions::check_dissemination(&release, now);
    if released_at.is_none() {
        errors.insert(
            "released_on".into(),
            "Enter the release date as YYYY-MM-DD.".into(),
        );
    }
    if !errors.is_empty() {
        return show_again(
            &ctx,
            &officer,
            &admitted,
            Again::Dissemination(form),
            errors,
        )
        .await;
    }
    decisions::record_dissemination(ctx.state, &officer.user, &ctx.actor, id, release).await?;
    Ok(Either::Left(Notice::redirect(
        format!("/officer/submissions/{id}"),
        "The release was recorded in the dissemination log.",
    )))
}

const LOG_PER_PAGE: i64 = 50;

/// The dissemination log's filters as typed: refill the form and build the page and export links.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct LogForm {
    tracking: String,
    recipient: String,
    from: String,
    to: String,
}

impl LogForm {
    fn query(&self, page: Option<i64>) -> String {
        let page = page
            .filter(|p| *p > 0)
            .map(|p| p.to_string())
            .unwrap_or_default();
        query_string(&[
            ("tracking", self.tracking.as_str()),
            ("recipient", self.recipient.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("page", page.as_str()),
        ])
    }
}

/// `?k=v&...` of the non-empty pairs (empty when none), percent-encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let q = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", rocket::http::RawStr::new(v).percent_encode()))
        .collect::<Vec<_>>()
        .join("&");
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

/// A date field: empty is none; else YYYY-MM-DD, as the start (or with `end`, the last second) of that day.
fn date_field(errors: &mut FieldErrors, id: &str, typed: &str, end: bool) -> Option<i64> {
    if typed.is_empty() {
        return None;
    }
    match crate::time::parse_date(typed) {
        Some(d) => Some(if end { d + crate::time::DAY - 1 } else { d }),
        None => {
            errors.insert(id.into(), "Enter the date as YYYY-MM-DD.".into());
            None
        }
    }
}

/// A tracking number or its start (`PCII-2026-00`), upper-cased; `None` when it cannot be one.
fn tracking_prefix(typed: &str) -> Option<String> {
    const TEMPLATE: &[u8] = b"PCII-9999-999999";
    let t = typed.trim().to_uppercase();
    let fits = !t.is_empty()
        && t.len() <= TEMPLATE.len()
        && t.bytes().zip(TEMPLATE).all(|(c, want)| match want {
            b'9' => c.is_ascii_digit(),
            w => c == *w,
        });
    fits.then_some(t)
}

/// The dissemination log's rows that match, opened: the clear columns are filtered in the query, the recipient
/// (sealed) once opened, case-insensitively.
async fn filtered_log(
    ctx: &Ctx<'_>,
    tracking: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    recipient: &str,
    page: Option<i64>,
) -> AppResult<(i64, Vec<grants::DisseminationView>)> {
    let needle = recipient.to_lowercase();
    // Without a recipient to match (it is sealed), the page is cut in SQL and only its rows are opened.
    let window = page
        .filter(|_| needle.is_empty())
        .map(|p| (p * LOG_PER_PAGE, LOG_PER_PAGE));
    let (total, mut rows) = ctx
        .state
        .db
        .run(move |c| {
            Ok(submission::disseminations_filtered(
                c,
                tracking.as_deref(),
                from,
                to,
                window,
            )?)
        })
        .await?;
    // Officers read every released (validated) submission's texts; the keys are unwrapped for these rows only.
    let mut ids: Vec<String> = rows.iter().map(|r| r.submission_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let texts = crate::workflow::sealed_text::Texts::load(ctx.state, ids).await?;
    // Off the async workers: filtered by recipient, every matching release is opened.
    let mut rows = rocket::tokio::task::spawn_blocking(move || {
        crate::web::views::open_disseminations(&texts, &mut rows);
        rows
    })
    .await
    .map_err(|_| AppError::Internal("opening the dissemination log failed".into()))?;
    if needle.is_empty() {
        return Ok((total, rows));
    }
    rows.retain(|r| r.recipient.to_lowercase().contains(&needle));
    let total = rows.len() as i64;
    if let Some(p) = page {
        rows = rows
            .into_iter()
            .skip((p * LOG_PER_PAGE) as usize)
            .take(LOG_PER_PAGE as usize)
            .collect();
    }
    Ok((total, rows))
}

/// The filters of the log checked: (tracking prefix, from, to), or the messages by field id.
fn check_log_form(form: &LogForm) -> (Option<String>, Option<i64>, Option<i64>, FieldErrors) {
    let mut errors = FieldErrors::new();
    let tracking = if form.tracking.is_empty() {
        None
    } else {
        let p = tracking_prefix(&form.tracking);
        if p.is_none() {
            errors.insert(
                "log-tracking".into(),
                "Enter a tracking number like PCII-2026-000123, or its start.".into(),
            );
        }
        p
    };
    let from = date_field(&mut errors, "log-from", &form.from, false);
    let to = date_field(&mut errors, "log-to", &form.to, true);
    if form.recipient.chars().count() > 200 {
        errors.insert(
            "log-recipient".into(),
            "Enter at most 200 characters.".into(),
        );
    }
    (tracking, from, to, errors)
}

/// The dissemination log, filtered by submission (tracking number or its start), recipient (any part of its
/// name) and release dates; paged, newest first. Mistakes in the filters come back marked, as typed (422).
#[rocket::get("/officer/disseminations?<tracking>&<recipient>&<from>&<to>&<page>")]
async fn dissemination_log(
    ctx: Ctx<'_>,
    _officer: OfficerUser<'_>,
    tracking: Option<&str>,
    recipient: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    page: Option<&str>,
) -> AppResult<Page> {
    use crate::web::forms::trimmed;
    let page = crate::web::forms::page_index(page)?;
    let form = LogForm {
        tracking: trimmed(tracking),
        recipient: trimmed(recipient),
        from: trimmed(from),
        to: trimmed(to),
    };
    let (tn, from, to, errors) = check_log_form(&form);
    let base = Page::new("officer/disseminations.html.tera")
        .with("form", &form)
        .with(
            "export_link",
            format!("/officer/disseminations.csv{}", form.query(None)),
        );
    if !errors.is_empty() {
        return Ok(base
            .with("errors", errors)
            .with("rows", Vec::<()>::new())
            .with("total", 0)
            .with("page", 0)
            .with("pages", 0)
            .status(Status::UnprocessableEntity));
    }
    let (mut total, mut rows) =
        filtered_log(&ctx, tn.clone(), from, to, &form.recipient, Some(page)).await?;
    let pages = (total + LOG_PER_PAGE - 1) / LOG_PER_PAGE;
    if page > 0 && page >= pages {
        // Past the end (a stale link): the last page instead.
        let last = (pages - 1).max(0);
        (total, rows) = filtered_log(&ctx, tn, from, to, &form.recipient, Some(last)).await?;
    }
    let pages = (total + LOG_PER_PAGE - 1) / LOG_PER_PAGE;
    let page = page.clamp(0, (pages - 1).max(0));
    let titles = cases::titles_for(
        ctx.state,
        rows.iter().map(|r| r.submission_id.clone()).collect(),
        crate::models::submission::TitleAsOf::Sent,
    )
    .await?;
    // The page opens each release's sealed details (recipient, arrangement, what was released) and the titles: shown,
    // like the CSV, only once recorded.
    if !rows.is_empty() {
        let reason = format!(
            "page {} of {pages}: {} release(s) ({}); filters: {}",
            page + 1,
            rows.len(),
            numbers_of(&rows),
            described_filters(&form)
        );
        record_log_shown(&ctx, "dissemination.listed", reason).await?;
    }
    // Every release is of validated PCII, and its details (what, to whom, under which arrangement) describe it.
    let shown = (!rows.is_empty()).then_some(crate::domain::Status::Validated);
    Ok(base
        .with("marking", crate::workflow::content::list_marking(shown))
        .with("titles", titles)
        .with("rows", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages)
        .with(
            "prev_link",
            (page > 0).then(|| format!("/officer/disseminations{}", form.query(Some(page - 1)))),
        )
        .with(
            "next_link",
            (page + 1 < pages)
                .then(|| format!("/officer/disseminations{}", form.query(Some(page + 1)))),
        ))
}

/// The filtered dissemination log as CSV: a header row, then one row per release, every cell quoted and any
/// cell a spreadsheet would take for a formula prefixed with `'`. The export is audited (`dissemination.exported`,
/// with the clear filters and the row count; a recipient filter is named, not quoted: it may quote sealed text).
/// It releases every matching release's recipient details in one file, so, like the per-submission exports, it
/// asks for a recent second factor (a stale one is sent to give it again and brought back here).
#[rocket::get("/officer/disseminations.csv?<tracking>&<recipient>&<from>&<to>")]
async fn dissemination_csv(
    ctx: Ctx<'_>,
    _officer: OfficerUser<'_>,
    _fresh: FreshFactor,
    tracking: Option<&str>,
    recipient: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> AppResult<CsvDownload> {
    use crate::web::forms::trimmed;
    let form = LogForm {
        tracking: trimmed(tracking),
        recipient: trimmed(recipient),
        from: trimmed(from),
        to: trimmed(to),
    };
    let (tn, from_at, to_at, errors) = check_log_form(&form);
    if !errors.is_empty() {
        return Err(AppError::Invalid(
            errors.into_values().collect::<Vec<_>>().join(" "),
        ));
    }
    let (_, rows) = filtered_log(&ctx, tn, from_at, to_at, &form.recipient, None).await?;
    let mut out = Vec::new();
    let cell = crate::audit::export::csv_cell;
    // Every row describes a release of PCII, in the officers' own words about it: each carries the marking (a
    // column, so the file stays plain CSV for a spreadsheet), and so does the file name.
    let marking =
        crate::workflow::content::marking_for(crate::domain::Status::Validated, None).title;
    let header = [
        "marking",
        "released_on",
        "tracking_number",
        "recipient",
        "recipient_kind",
        "arrangement",
        "what",
        "sanitized",
        "removed",
        "purpose",
        "consent",
        "recorded_by",
    ];
    for (i, h) in header.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        cell(&mut out, h);
    }
    out.extend_from_slice(b"\r\n");
    for r in &rows {
        let released = crate::time::date(r.released_at);
        let cells = [
            marking,
            released.as_str(),
            r.tracking_number.as_deref().unwrap_or(""),
            &r.recipient,
            &r.recipient_kind,
            &r.arrangement,
            &r.what,
            if r.sanitized { "yes" } else { "no" },
            r.removed.as_deref().unwrap_or(""),
            &r.purpose,
            r.consent.as_deref().unwrap_or(""),
            &r.recorded_by,
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            cell(&mut out, c);
        }
        out.extend_from_slice(b"\r\n");
    }
    let reason = format!(
        "{} row(s) as CSV ({}); filters: {}",
        rows.len(),
        numbers_of(&rows),
        described_filters(&form)
    );
    record_log_shown(&ctx, "dissemination.exported", reason).await?;
    Ok(CsvDownload(out))
}

/// Records that the dissemination log was shown (a page) or exported (the CSV), before it is.
async fn record_log_shown(ctx: &Ctx<'_>, action: &'static str, reason: String) -> AppResult<()> {
    let event =
        crate::audit::log::Event::new(action, crate::audit::log::Outcome::Success).reason(reason);
    let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
    ctx.state
        .db
        .run(move |c| audit.record(c, &actor, event))
        .await
}

/// The log's filters for its audit entries: the clear ones as given, a recipient filter named, not quoted (it may
/// quote sealed text).
fn described_filters(form: &LogForm) -> String {
    let mut filters = Vec::new();
    if !form.tracking.is_empty() {
        filters.push(format!("tracking {}", form.tracking.to_uppercase()));
    }
    if !form.recipient.is_empty() {
        filters.push("recipient".to_string());
    }
    if !form.from.is_empty() {
        filters.push(format!("from {}", form.from));
    }
    if !form.to.is_empty() {
        filters.push(format!("to {}", form.to));
    }
    if filters.is_empty() {
        "none".to_string()
    } else {
        filters.join(", ")
    }
}

/// The tracking numbers of the submissions whose releases `rows` are, each once, in order: the entry says which
/// submissions' releases were shown (it is found by its action, not in one submission's history).
fn numbers_of(rows: &[grants::DisseminationView]) -> String {
    let mut numbers: Vec<&str> = Vec::new();
    for n in rows.iter().filter_map(|r| r.tracking_number.as_deref()) {
        if !numbers.contains(&n) {
            numbers.push(n);
        }
    }
    numbers.join(", ")
}

/// A CSV attachment.
pub struct CsvDownload(Vec<u8>);

impl<'r> rocket::response::Responder<'r, 'static> for CsvDownload {
    fn respond_to(self, _req: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        rocket::Response::build()
            .header(rocket::http::ContentType::CSV)
            .header(rocket::http::Header::new(
                "Content-Disposition",
                "attachment; filename=\"PCII-dissemination-log.csv\"",
            ))
            .header(rocket::http::Header::new("Cache-Control", "no-store"))
            .sized_body(self.0.len(), std::io::Cursor::new(self.0))
            .ok()
    }
}

/// The search form as typed: refill it and build the page links.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct SearchForm {
    tracking: String,
    organisation: String,
    sector: String,
    status: String,
    from: String,
    to: String,
    assignee: String,
}

impl SearchForm {
    fn link(&self, page: i64) -> String {
        let page = if page > 0 {
            page.to_string()
        } else {
            String::new()
        };
        format!(
            "/officer/find{}",
            query_string(&[
                ("tracking", self.tracking.as_str()),
                ("organisation", self.organisation.as_str()),
                ("sector", self.sector.as_str()),
                ("status", self.status.as_str()),
                ("from", self.from.as_str()),
                ("to", self.to.as_str()),
                ("assignee", self.assignee.as_str()),
                ("page", page.as_str()),
            ])
        )
    }

    fn only_tracking(&self) -> bool {
        SearchForm {
            tracking: String::new(),
            ..self.clone()
        }
        .is_blank()
    }

    fn is_blank(&self) -> bool {
        [
            &self.tracking,
            &self.organisation,
            &self.sector,
            &self.status,
            &self.from,
            &self.to,
            &self.assignee,
        ]
        .iter()
        .all(|v| v.is_empty())
    }
}

/// The statuses a search offers: every one past the draft stage.
fn search_statuses() -> Vec<Choice> {
    crate::domain::Status::ALL
        .into_iter()
        .filter(|s| *s != crate::domain::Status::Draft)
        .map(|s| Choice {
            value: s.as_str().to_string(),
            label: s.label().to_string(),
        })
        .collect()
}

/// Finds submissions past the draft stage, whatever their status: by tracking number or its start,
/// organisation (any part of its name), sector, status, receipt dates and who handles them; newest receipt first,
/// paged, with titles opened for the page shown. A whole tracking number typed alone opens that submission (404
/// with the form when there is none). Mistakes come back marked, as typed (422).
#[allow(clippy::too_many_arguments)]
#[rocket::get(
    "/officer/find?<tracking>&<organisation>&<sector>&<status>&<from>&<to>&<assignee>&<page>"
)]
async fn find(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    tracking: Option<&str>,
    organisation: Option<&str>,
    sector: Option<&str>,
    status: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    assignee: Option<&str>,
    page: Option<&str>,
) -> AppResult<Either<Redirect, Page>> {
    use crate::models::queue::{self as q, Assignee, SearchFilter};
    use crate::web::forms::trimmed;
    let form = SearchForm {
        tracking: trimmed(tracking),
        organisation: trimmed(organisation),
        sector: trimmed(sector),
        status: trimmed(status),
        from: trimmed(from),
        to: trimmed(to),
        assignee: trimmed(assignee),
    };
    let page_index = crate::web::forms::page_index(page)?;
    let officers = ctx.state.db.run(|c| Ok(q::officers(c)?)).await?;
    let base = Page::new("officer/find.html.tera")
        .with("form", &form)
        // The field keeps its old name in the page for the tracking number typed.
        .with("tracking", &form.tracking)
        .with("sectors", crate::models::sectors::SECTORS)
        .with("statuses", search_statuses())
        .with("officers", &officers);
    if form.is_blank() {
        return Ok(Either::Right(base));
    }
    let mut errors = FieldErrors::new();
    let mut filter = SearchFilter {
        page: page_index,
        ..SearchFilter::default()
    };
    if !form.tracking.is_empty() {
        match tracking_prefix(&form.tracking) {
            Some(p) => filter.tracking_prefix = Some(p),
            None => {
                errors.insert(
                    "find-tracking".into(),
                    "Enter a tracking number like PCII-2026-000123, or its start.".into(),
                );
            }
        }
    }
    if !form.sector.is_empty() {
        match crate::models::sectors::find(&form.sector) {
            Some(s) => filter.sector = Some(s.to_string()),
            None => {
                errors.insert(
                    "find-sector".into(),
                    "Choose one of the listed sectors.".into(),
                );
            }
        }
    }
    if !form.status.is_empty() {
        match crate::domain::Status::parse(&form.status)
            .filter(|s| *s != crate::domain::Status::Draft)
        {
            Some(s) => filter.status = Some(s),
            None => {
                errors.insert(
                    "find-status".into(),
                    "Choose one of the listed statuses.".into(),
                );
            }
        }
    }
    filter.received_from = date_field(&mut errors, "find-from", &form.from, false);
    filter.received_to = date_field(&mut errors, "find-to", &form.to, true);
    match form.assignee.as_str() {
        "" => {}
        "me" => filter.assignee = Some(Assignee::Officer(officer.user.id.clone())),
        "none" => filter.assignee = Some(Assignee::Unassigned),
        id if officers.iter().any(|o| o.id == id) => {
            filter.assignee = Some(Assignee::Officer(id.to_string()))
        }
        _ => {
            errors.insert(
                "find-assignee".into(),
                "Choose one of the listed officers.".into(),
            );
        }
    }
    if form.organisation.chars().count() > 200 {
        errors.insert(
            "find-organisation".into(),
            "Enter at most 200 characters of the organisation's name.".into(),
        );
    }
    if !errors.is_empty() {
        return Ok(Either::Right(
            base.with("errors", errors)
                .status(Status::UnprocessableEntity),
        ));
    }
    // A whole tracking number typed alone opens that submission, as it always did.
    let exact = filter
        .tracking_prefix
        .clone()
        .filter(|tn| form.only_tracking() && crate::workflow::content::is_tracking_number(tn));
    if let Some(tn) = exact {
        let found = ctx
            .state
            .db
            .run({
                let tn = tn.clone();
                move |c| Ok(submission::find_by_tracking(c, &tn, Scope::Sent)?)
            })
            .await;
        return match found {
            Ok(sub) => Ok(Either::Left(Redirect::to(format!(
                "/officer/submissions/{}",
                sub.id
            )))),
            Err(AppError::NotFound) => {
                let mut errors = FieldErrors::new();
                errors.insert(
                    "find-tracking".into(),
                    format!(
                        "No submission has the tracking number {tn}. Drafts are not shown to officers."
                    ),
                );
                Ok(Either::Right(
                    base.with("errors", errors).status(Status::NotFound),
                ))
            }
            Err(e) => Err(e),
        };
    }
    let name = form.organisation.clone();
    let found = ctx
        .state
        .db
        .run(move |c| {
            if !name.is_empty() {
                // The database matches the names (any case, LIKE's wildcards taken literally) and hands back a
                // bounded number of ids; the submissions are then found through their organisation's index.
                match crate::models::organisation::matching(c, &name)? {
                    // A name every organisation matches filters nothing: without the list, the receipt index
                    // serves the page instead of sorting every submission of the list.
                    NameMatches::Every => {}
                    NameMatches::Ids(ids) => filter.organisation_ids = Some(ids),
                    NameMatches::TooMany => return Ok(None),
                }
            }
            Ok(Some(q::search(c, &filter)?))
        })
        .await?;
    let Some(mut results) = found else {
        let mut errors = FieldErrors::new();
        errors.insert(
            "find-organisation".into(),
            super::queue::too_many_organisations(),
        );
        return Ok(Either::Right(
            base.with("errors", errors)
                .status(Status::UnprocessableEntity),
        ));
    };
    let ids: Vec<String> = results
        .rows
        .iter()
        .filter(|r| r.title_sealed.is_some())
        .map(|r| r.id.clone())
        .collect();
    let texts = crate::workflow::sealed_text::Texts::load(ctx.state, ids).await?;
    for r in &mut results.rows {
        r.title = cases::title_of(&texts, r.status, r.title_sealed.as_deref());
    }
    drop(texts);
    let last = (results.pages - 1).max(0);
    Ok(Either::Right(
        base.with(
            "page_links",
            crate::web::views::PageLinks {
                first: (results.page > 0).then(|| form.link(0)),
                prev: (results.page > 0).then(|| form.link(results.page - 1)),
                next: (results.page < last).then(|| form.link(results.page + 1)),
                last: (results.page < last).then(|| form.link(last)),
            },
        )
        .with(
            "marking",
            crate::workflow::content::list_marking(
                results
                    .rows
                    .iter()
                    .filter(|r| r.title.is_some())
                    .map(|r| r.status),
            ),
        )
        .with("results", results),
    ))
}
