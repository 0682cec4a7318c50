//! Case management for PCII officers: who handles a submission (claim, assign, hand over, release, in bulk),
//! officer-only case notes sealed like the officers' other texts, and the titles the lists show. Each change is
//! one transaction with its audit entries, which name accounts by id and never quote a note or a title.

use crate::audit::log::{Actor, Event, Outcome};
use crate::db::DbConn;
use crate::domain::{Role, Status};
use crate::error::{AppError, AppResult};
use crate::models::account::{self, User};
use crate::models::case_note::{self, NewCaseNote};
use crate::models::data_key;
use crate::models::submission::{self, Scope, Submission, TitleAsOf};
use crate::services::Services;
use crate::workflow::decisions::{not_own, officer_fact};
use crate::workflow::sealed_text::{Sealer, Texts};

/// Longest case note.
pub const NOTE_MAX: usize = 4000;
/// Most submissions one bulk assignment takes (a queue page holds 50).
pub const BULK_MAX: usize = 200;

/// A case note as typed, cleaned; or why it will not do (for the field's message).
pub fn check_note(text: &str) -> Result<String, String> {
    let t = text.trim().replace("\r\n", "\n");
    if t.is_empty() {
        return Err("Write the note before adding it.".into());
    }
    if t.chars().count() > NOTE_MAX {
        return Err(format!(
            "The note is too long (at most {NOTE_MAX} characters)."
        ));
    }
    Ok(t)
}

/// Whether `user` may handle `sub`: an active officer, not of the submission's organisation.
fn may_handle(user: &User, sub: &Submission) -> AppResult<()> {
    if user.disabled || user.role != Role::Officer {
        return Err(AppError::Invalid(
            "Choose an active PCII officer to handle the case.".into(),
        ));
    }
    if crate::workflow::lifecycle::own_organisation(user, sub) {
        return Err(AppError::conflict_of_interest(
            "submission",
            &sub.id,
            sub.tracking_number.as_deref(),
            "the officer chosen to handle it belongs to the submitting organisation",
            "An officer never handles a submission of its own organisation; choose another officer.",
        ));
    }
    Ok(())
}

/// Assigns each of `submission_ids` to `assignee` (an officer's account id), or releases them (`None`), in one
/// transaction with one audit entry per submission whose handler changed: `case.assigned` (nobody handled it),
/// `case.reassigned` (handed over from another officer) or `case.released`. The acting officer may not act on
/// its own organisation's submissions, nor give one to an officer of its organisation. Returns how many
/// changed; a request that changes nothing is refused as a conflict (nothing is recorded).
pub async fn assign(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_ids: Vec<String>,
    assignee: Option<String>,
) -> AppResult<usize> {
    if submission_ids.is_empty() {
        return Err(AppError::Invalid("Select at least one submission.".into()));
    }
    if submission_ids.len() > BULK_MAX {
        return Err(AppError::Invalid(format!(
            "Assign at most {BULK_MAX} submissions at once."
        )));
    }
    let now = state.clock.now();
    let (audit, actor, officer) = (state.audit.clone(), actor.clone(), officer.clone());
    state
        .db
        .run(move |c| {
            audit.clone().fact(c, &actor, |tx| {
                crate::workflow::access::still_as_read(tx, &officer)?;
                let target = match &assignee {
                    Some(id) => match account::find(tx, id).map_err(AppError::from) {
                        Ok(u) => Some(u),
                        Err(AppError::NotFound) => {
                            return Err(AppError::Invalid(
                                "Choose an active PCII officer to handle the case.".into(),
                            ))
                        }
                        Err(e) => return Err(e),
                    },
                    None => None,
                };
                let mut events = Vec::new();
                for id in &submission_ids {
                    if let Some(event) = change_one(tx, &officer, target.as_ref(), id, now)? {
                        events.push(event);
                    }
                }
                let Some(last) = events.pop() else {
                    return Err(AppError::Conflict(match &assignee {
                        Some(_) => "Nothing changed: the officer chosen already handles it.".into(),
                        None => "Nothing changed: nobody handles it.".into(),
                    }));
                };
                for event in &events {
                    audit.append(tx, &actor, event)?;
                }
                Ok((events.len() + 1, last))
            })
        })
        .await
}

fn change_one(
    tx: &mut DbConn,
    officer: &User,
    target: Option<&User>,
    id: &str,
    now: i64,
) -> AppResult<Option<Event>> {
    let sub = submission::find(tx, id, Scope::Sent)?;
    not_own(officer, &sub)?;
    if super::lifecycle::content_destroyed(sub.status()) {
        return Err(AppError::Conflict(format!(
            "{} is closed: it has no case to handle.",
            sub.tracking_number.as_deref().unwrap_or("This submission")
        )));
    }
    if let Some(t) = target {
        may_handle(t, &sub)?;
    }
    let current = submission::case_of(tx, &sub.id)?.assigned_to;
    let to = target.map(|t| t.id.as_str());
    if current.as_deref() == to {
        return Ok(None);
    }
    submission::set_assignee(tx, &sub.id, to, now)?;
    let (action, reason) = match (current.as_deref(), to) {
        (None, Some(to)) if to == officer.id => {
            ("case.assigned", format!("to account {to} (claimed)"))
        }
        (None, Some(to)) => ("case.assigned", format!("to account {to}")),
        (Some(from), Some(to)) => (
            "case.reassigned",
            format!("from account {from} to account {to}"),
        ),
        (Some(from), None) => ("case.released", format!("from account {from}")),
        (None, None) => return Ok(None),
    };
    Ok(Some(
        Event::new(action, Outcome::Success)
            .object("submission", sub.id.clone())
            .tracking(sub.tracking_number.clone())
            .reason(reason),
    ))
}

/// Adds a case note, sealed to the submission's data key, with its `case.note_added` entry (which binds the
/// sealed text by digest, never its words).
pub async fn add_note(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
    text: &str,
) -> AppResult<()> {
    let text = check_note(text).map_err(AppError::Invalid)?;
    let now = state.clock.now();
    officer_fact(
        state,
        officer,
        actor,
        submission_id,
        move |tx, officer, sub, sealer| {
            if super::lifecycle::content_destroyed(sub.status()) {
                return Err(AppError::Conflict(
                    "This submission was closed: its case takes no more notes.".into(),
                ));
            }
            let body = sealer.seal(&text)?;
            case_note::insert(
                tx,
                &NewCaseNote {
                    id: &crate::db::new_id(),
                    submission_id: &sub.id,
                    author_id: &officer.id,
                    body: &body.stored,
                    created_at: now,
                },
            )?;
            let event = Event::new("case.note_added", Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(format!("note {}", body.audit_ref()));
            Ok(((), event))
        },
    )
    .await
}

/// A submission's notes, opened with `texts` (its data key): a note whose key was destroyed reads as
/// `sealed_text::DESTROYED`.
pub async fn notes(
    state: &Services,
    texts: &Texts,
    submission_id: &str,
) -> AppResult<Vec<case_note::CaseNoteView>> {
    let sid = submission_id.to_string();
    let mut rows = state
        .db
        .run(move |c| Ok(case_note::notes_of(c, &sid)?))
        .await?;
    for n in &mut rows {
        n.body = texts.open(&n.body);
    }
    Ok(rows)
}

/// The title a list shows for a row: opened only where the submission's content still exists (a destroyed or
/// returned submission shows none), `None` where it cannot be opened.
pub fn title_of(texts: &Texts, status: Status, sealed: Option<&str>) -> Option<String> {
    if super::lifecycle::content_destroyed(status) {
        return None;
    }
    texts.try_open(sealed?).filter(|t| !t.is_empty())
}

/// The titles of the submissions `ids` for a list (an officer's dissemination log or access requests, a submitter's
/// own submissions), keyed by submission id: opened for those rows only, none for a destroyed or returned submission.
/// `as_of`: the organisation's own lists show titles as saved, everyone else's as the Office received them.
pub async fn titles_for(
    state: &Services,
    mut ids: Vec<String>,
    as_of: TitleAsOf,
) -> AppResult<std::collections::HashMap<String, String>> {
    ids.sort_unstable();
    ids.dedup();
    let rows = state
        .db
        .run(move |c| Ok(submission::sealed_titles(c, &ids, as_of)?))
        .await?;
    let texts = Texts::load(state, rows.iter().map(|r| r.0.clone()).collect()).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, status, sealed)| Some((id, title_of(&texts, status, sealed.as_deref())?)))
        .collect())
}

/// Rows saved before titles were kept have none (`title_sealed` NULL), nor rows sent with a correction pending
/// before the title as sent was kept (`sent_title_sealed` NULL, migration 26): the lists show "(title not yet
/// indexed)" until an officer opens the submission, whose page (which decrypts content version `version` anyway)
/// seals its title to the current data key here, into whichever of the two it is the title of. A lazy backfill,
/// not audited: it records no act, only an index of what the content already says, sealed like it. Only a NULL
/// title is filled, so a save or a send in between is never overwritten.
pub async fn backfill_title(
    state: &Services,
    submission_id: &str,
    version: &str,
    title: &str,
) -> AppResult<()> {
    let (sid, version, title) = (
        submission_id.to_string(),
        version.to_string(),
        title.trim().to_string(),
    );
    state
        .db
        .run(move |c| {
            // Under the facts' lock, as every write sealed to a data key: `keys rotate --data-keys` changes the
            // current key and deletes the old one under it, so the title is never stored sealed to a retired key.
            c.transaction(|tx| {
                crate::audit::log::lock_head(tx)?;
                let Some(key) = data_key::current_of(tx, &sid)? else {
                    return Ok(());
                };
                let sealed = Sealer::to_key(&key)?.seal(&title)?;
                submission::fill_titles(tx, &sid, &version, &sealed.stored)?;
                Ok::<_, AppError>(())
            })
        })
        .await
}
