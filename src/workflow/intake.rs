//! The submitter's side of the lifecycle: drafts, submission (receipt, tracking number), cure of a defect,
//! withdrawal and the return-or-destroy choice. Each change is one transaction with its audit entry.
//!
//! Files arrive already sealed (encrypted and durable in the blob store, see `web::multipart`); a change
//! commits the rows that point to them, or the blobs are deleted again. Replaced or removed blobs are
//! deleted only after the commit.

use crate::audit::log::{Actor, Event, Outcome};
use crate::crypto::stream::SealedBlob;
use crate::db::DbConn;
use crate::domain::Disposition;
use crate::domain::Role;
use crate::domain::Status;
use crate::error::{AppError, AppResult};
use crate::key_store::data_keys::{current_recipients, SealingKey};
use crate::models::attachment::{self, NewAttachment};
use crate::models::submission::{self, NewSubmission, Scope, Submission};
use crate::models::{blob, blob_deletion, data_key, event, notice};
use crate::services::Services;
use crate::workflow::blobs::{delete_after_commit, still_stored};
use crate::workflow::content::{
    apply_fields, check_answers, check_complete, check_draft, AttachmentInfo, Content, FieldErrors,
    FormFields, STATEMENT_VERSION,
};
use crate::workflow::destruction::destroy_in_tx;
use crate::workflow::documents::{delete_blobs, read_content, seal_content};
use crate::workflow::lifecycle::{self, check, record_transition, Change, Step};

/// The submitter acting, and the organisation every lookup is scoped to.
#[derive(Debug, Clone)]
pub struct Submitter {
    pub user_id: String,
    pub organisation_id: String,
}

/// Which of the form's file fields a file came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSlot {
    /// `file_3`: its description is `description_3` (the form before pickers; clients still send it).
    Numbered(u32),
    /// The `files` picker, several files at once: each is described afterwards, on the form.
    Picker,
    /// `replace_<attachment id>`: a corrected file that takes that file's place (in a cure only).
    Replace(String),
}

/// A file that arrived with the form, already sealed.
#[derive(Clone)]
pub struct IncomingFile {
    pub slot: FileSlot,
    pub file_name: String,
    pub sealed: SealedBlob,
}
debug_without_words!(IncomingFile);

/// What the submitter asked for with a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Keep it as it is, complete or not.
    Draft,
    /// Keep it, then say what is still missing before it can be sent (the "check your answers" step follows).
    Continue,
    /// The one-step form: save and send (submit a draft, send a cure) with the affirmations posted along.
    Submit,
    /// From "check your answers": send the content as stored; only the affirmations are posted.
    Send,
}

#[derive(Debug)]
pub struct SaveRequest {
    /// None for a new submission.
    pub submission_id: Option<String>,
    pub fields: FormFields,
    pub files: Vec<IncomingFile>,
    /// Attachment ids to remove (drafts only).
    pub remove: Vec<String>,
    pub intent: Intent,
    /// With [`Intent::Send`]: the content version the submitter checked; another one is refused.
    pub checked_version: Option<String>,
    /// The content version the form was made from (its hidden `version`, empty for a draft without one): a
    /// save from a page older than the stored version is refused as [`SaveResult::Stale`], not written over the
    /// newer one. `None` (a form posted without the field, e.g. by a script) is not checked.
    pub shown_version: Option<String>,
    /// The random token of the new-submission form it came from: the same form sent twice creates one
    /// submission.
    pub form_token: Option<String>,
    /// What the files were sealed to (from [`allowance`]); the content document is sealed to it too.
    pub sealing: SealingKey,
}

/// What a save may add: files and bytes left, and the data key to seal them to.
#[derive(Debug)]
pub struct Allowance {
    pub files: usize,
    pub bytes: u64,
    /// Which limit `bytes` comes from.
    pub binding: Binding,
    pub sealing: SealingKey,
    /// The files this save may remove (a draft's), with their sizes: one ticked for removal gives its size and
    /// its place back to what the request may add, so that a file can be swapped for another at the limit (the
    /// commit counts again, after the removal).
    pub removable: Vec<(String, u64)>,
}

/// Which limit sets the bytes a request may still add, so that a file over it is told the right one: the
/// submission's own, the organisation's drafts' together, or what an unverified organisation may hold sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Submission,
    Drafts,
    Unverified,
}

#[derive(Debug)]
pub enum SaveResult {
    Saved {
        id: String,
        status: Status,
    },
    /// The same new-submission form was already sent: nothing was added; this is the submission it made.
    Duplicate {
        id: String,
    },
    /// Nothing was sent. `saved` tells whether the fields and files were kept (as a draft, or as
    /// corrections to a defective submission) or refused outright.
    Invalid {
        id: Option<String>,
        errors: FieldErrors,
        saved: bool,
    },
    /// Nothing was saved: the form was made from an older version than the one stored, which another window or
    /// another member of the organisation saved at `saved_at` after the page was opened.
    Stale {
        id: String,
        saved_at: i64,
    },
}

/// How many more files and bytes a submission may take (the configured limits minus what it holds), and the
/// data key its new blobs are sealed to: its current one, or a new one (a new submission, or one from before data
/// keys) that the save stores.
pub async fn allowance(
    state: &Services,
    who: &Submitter,
    submission_id: Option<&str>,
) -> AppResult<Allowance> {
    let max_files = state.settings.max_files as usize;
    let max_bytes = state.settings.max_submission_bytes;
    let org = who.organisation_id.clone();
    let (usage, existing, removable) = match submission_id {
        None => (
            state
                .db
                .run(move |c| Ok(submission::draft_usage(c, &org)?))
                .await?,
            None,
            Vec::new(),
        ),
        Some(id) => {
            let id = id.to_string();
            let (usage, s, current, files) = state
                .db
                .run(move |c| {
                    let s = submission::find(c, &id, Scope::Organisation(&org))?;
                    let current = current_recipients(c, &s.id)?;
                    let files = if lifecycle::files_removable(s.status()) {
                        attachment::ids_and_sizes(c, &s.id)?
                            .into_iter()
                            .map(|(id, size)| (id, size.max(0) as u64))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    Ok((submission::draft_usage(c, &org)?, s, current, files))
                })
                .await?;
            editable(&s)?;
            (usage, Some((s, current)), files)
        }
    };
    let (drafts, draft_bytes) = usage;
    if existing.is_none() && drafts >= i64::from(state.settings.max_drafts_per_organisation) {
        return Err(AppError::Conflict(format!(
            "Your organisation keeps {drafts} drafts, as many as it may: send or delete one before starting another."
        )));
    }
    let (files, bytes, current, is_draft) = match existing {
        None => (max_files, max_bytes, None, true),
        Some((s, current)) => (
            max_files.saturating_sub(s.file_count.max(0) as usize),
            max_bytes.saturating_sub(s.total_bytes.max(0) as u64),
            current,
            s.status() == Status::Draft,
        ),
    };
    // Files of a draft count against what the organisation's drafts may hold together (a cure's do not: the
    // Program Office asked for them); a sent submission's against what an unverified organisation may hold sent.
    let (bytes, binding) = if is_draft {
        within_drafts_room(&state.settings, draft_bytes, bytes)
    } else {
        within_unverified_room_now(state, &who.organisation_id, bytes).await?
    };
    let sealing = match current {
        Some(recipients) => SealingKey {
            recipients,
            new: None,
        },
        None => {
            let keys = state.current_keys();
            let ring = keys.read().unwrap_or_else(|p| p.into_inner());
            SealingKey::generate(&ring)
                .map_err(|e| AppError::Internal(format!("making a data key: {e}")))?
        }
    };
    Ok(Allowance {
        files,
        bytes,
        binding,
        sealing,
        removable,
    })
}

/// `bytes` kept within what the organisation's drafts may still take together (`max_draft_bytes_per_organisation`
/// less the `used` they hold), and whether that room is what limits it.
fn within_drafts_room(settings: &crate::config::Settings, used: i64, bytes: u64) -> (u64, Binding) {
    let room = settings
        .max_draft_bytes_per_organisation
        .saturating_sub(used.max(0) as u64);
    if room < bytes {
        (room, Binding::Drafts)
    } else {
        (bytes, Binding::Submission)
    }
}

/// `bytes` kept within what an unverified organisation may still add to what it holds sent (its own cap and all
/// unverified organisations' together), read before the body so that an organisation at its cap is refused at its
/// first byte, not after a whole upload; the commit counts again ([`within_unverified_room`]).
async fn within_unverified_room_now(
    state: &Services,
    organisation_id: &str,
    bytes: u64,
) -> AppResult<(u64, Binding)> {
    let caps = UnverifiedCaps::of(&state.settings);
    let org = organisation_id.to_string();
    let usage = state.db.run(move |c| unverified_usage(c, &org)).await?;
    Ok(match usage.map(|u| u.room(caps)) {
        Some(room) if room < bytes => (room, Binding::Unverified),
        _ => (bytes, Binding::Submission),
    })
}

/// How many bytes of files one message in `sub`'s thread may carry, and which limit sets it: in a draft's thread
/// (the organisation's own) the files count with the drafts'; the organisation's files in a sent submission's
/// thread with what it holds sent, while it is not verified (`from_organisation`: an officer's are not counted).
pub async fn message_files_room(
    state: &Services,
    sub: &Submission,
    from_organisation: bool,
) -> AppResult<(u64, Binding)> {
    let max = state.settings.max_submission_bytes;
    if sub.status() != Status::Draft {
        if !from_organisation {
            return Ok((max, Binding::Submission));
        }
        return within_unverified_room_now(state, &sub.organisation_id, max).await;
    }
    let org = sub.organisation_id.clone();
    let (_, used) = state
        .db
        .run(move |c| Ok(submission::draft_usage(c, &org)?))
        .await?;
    Ok(within_drafts_room(&state.settings, used, max))
}

/// A byte count as a person reads a limit: `40 GiB`, `1.5 MiB`, `100000 bytes`.
pub fn size_label(bytes: u64) -> String {
    let (unit, name) = match bytes {
        b if b >= 1 << 30 => (1u64 << 30, "GiB"),
        b if b >= 1 << 20 => (1 << 20, "MiB"),
        _ => return format!("{bytes} bytes"),
    };
    format!("{:.1} {name}", bytes as f64 / unit as f64).replace(".0 ", " ")
}

/// What organisations the Program Office has not verified yet may have sent and still hold (`max_unverified_*` in
/// the settings): self-registration is open, and sending frees a draft's share of the drafts quota, so without this
/// one account (or a flood of registrations, each making an organisation) could fill the disk by sending.
#[derive(Debug, Clone, Copy)]
pub struct UnverifiedCaps {
    pub per_organisation: u32,
    pub bytes_per_organisation: u64,
    pub bytes_total: u64,
}

impl UnverifiedCaps {
    pub fn of(settings: &crate::config::Settings) -> UnverifiedCaps {
        UnverifiedCaps {
            per_organisation: settings.max_unverified_sent_per_organisation,
            bytes_per_organisation: settings.max_unverified_sent_bytes_per_organisation,
            bytes_total: settings.max_unverified_sent_bytes_total,
        }
    }
}

/// What an organisation not verified yet holds sent: `sent` submissions and `bytes` of files, and the `all_bytes`
/// of every unverified organisation together.
struct UnverifiedUsage {
    sent: i64,
    bytes: u64,
    all_bytes: u64,
}

impl UnverifiedUsage {
    /// The bytes it may still add: under its own cap and under all unverified organisations'.
    fn room(&self, caps: UnverifiedCaps) -> u64 {
        caps.bytes_per_organisation
            .saturating_sub(self.bytes)
            .min(caps.bytes_total.saturating_sub(self.all_bytes))
    }
}

/// `None` for a verified organisation: it is not capped.
fn unverified_usage(
    conn: &mut DbConn,
    organisation_id: &str,
) -> AppResult<Option<UnverifiedUsage>> {
    let verified = crate::models::account::find_organisation(conn, organisation_id)?
        .is_some_and(|o| o.verified_at.is_some());
    if verified {
        return Ok(None);
    }
    let (sent, bytes) = submission::sent_usage(conn, organisation_id)?;
    let all_bytes = submission::unverified_sent_bytes(conn)?;
    Ok(Some(UnverifiedUsage {
        sent,
        bytes: bytes.max(0) as u64,
        all_bytes: all_bytes.max(0) as u64,
    }))
}

/// Checks an unverified organisation's caps in the commit that adds to what it holds sent (a send, a sent
/// submission's new files, a message's files in a sent submission's thread), counting what that commit wrote;
/// `sending` also counts the submissions. A verified organisation passes.
pub fn within_unverified_room(
    tx: &mut DbConn,
    organisation_id: &str,
    caps: UnverifiedCaps,
    sending: bool,
) -> AppResult<()> {
    let Some(usage) = unverified_usage(tx, organisation_id)? else {
        return Ok(());
    };
    const WAIT: &str = "The Program Office verifies new organisations; ask it if this takes long.";
    if sending && usage.sent > i64::from(caps.per_organisation) {
        return Err(AppError::Conflict(format!(
            "Your organisation has not been verified by the PCII Program Office yet: until it is, it may have {} \
             submissions with the Program Office. Nothing was sent (a draft stays as it was). {WAIT}",
            caps.per_organisation
        )));
    }
    if usage.bytes > caps.bytes_per_organisation {
        return Err(AppError::TooLarge(format!(
            "Your organisation has not been verified by the PCII Program Office yet: until it is, the files it \
             has sent may hold {} together, and this would take it past that. Nothing was sent (a draft stays \
             as it was). {WAIT}",
            size_label(caps.bytes_per_organisation)
        )));
    }
    if usage.all_bytes > caps.bytes_total {
        return Err(AppError::TooLarge(format!(
            "Your organisation has not been verified by the PCII Program Office yet, and the Program Office holds \
             as much as it takes from organisations it has not verified. Nothing was sent (a draft stays as it \
             was). {WAIT}"
        )));
    }
    Ok(())
}

/// A file may be replaced in answer to a defect notice: the Program Office asked for a corrected one.
pub fn files_replaceable(status: Status) -> bool {
    check(status, Step::Cure, Role::Submitter).is_ok()
}

fn editable(s: &Submission) -> AppResult<()> {
    if lifecycle::editable(s.status()) {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "This submission is {}: it can no longer be changed.",
        s.status().label().to_lowercase()
    )))
}

/// Saves a draft, submits it, or answers a defect notice. Newly sealed blobs are either referenced by
/// committed rows when this returns, or deleted; when the commit's outcome is unknown they are left to the orphan
/// sweep, which keeps whatever a committed row names.
pub async fn save(
    state: &Services,
    who: &Submitter,
    actor: &Actor,
    req: SaveRequest,
) -> AppResult<SaveResult> {
    let mut new_blobs: Vec<String> = req.files.iter().map(|f| f.sealed.name.clone()).collect();
    let form_token = req
        .form_token
        .clone()
        .filter(|_| req.submission_id.is_none());
    let result = match save_inner(state, who, actor, req, &mut new_blobs).await {
        // Two copies of one new form sent at once: the second is refused in its commit, the first having committed
        // meanwhile. It is answered as a copy sent again later is: with the submission the form made.
        Err(AppError::Conflict(why)) => match form_token {
            Some(token) => {
                let org = who.organisation_id.clone();
                match state
                    .db
                    .run(move |c| Ok(submission::id_made_by_form(c, &org, &token)?))
                    .await?
                {
                    Some(id) => Ok(SaveResult::Duplicate { id }),
                    None => Err(AppError::Conflict(why)),
                }
            }
            None => Err(AppError::Conflict(why)),
        },
        other => other,
    };
    let keep = matches!(
        result,
        Ok(SaveResult::Saved { .. })
            | Ok(SaveResult::Invalid { saved: true, .. })
            | Err(AppError::Unconfirmed(_))
    );
    if !keep {
        delete_blobs(state, new_blobs).await;
    }
    result
}

/// How many times a save's commit is tried again after a passing lock (see `save_inner`).
const COMMIT_RETRIES: u64 = 2;

#[derive(Clone)]
struct Plan {
    form_token: Option<String>,
    existing: Option<Submission>,
    sector: String,
    /// The new content version; `None` sends the stored one unchanged.
    content_blob: Option<SealedBlob>,
    new_files: Vec<(String, IncomingFile)>,
    /// (replaced attachment, the new one that takes its place).
    replacements: Vec<(String, String)>,
    remove: Vec<String>,
    step: Option<Step>,
    sealing: SealingKey,
    /// The key ring, read again under the write lock if a new data key is stored (see `WrappedKey::insert_current`).
    keys: std::sync::Arc<std::sync::RwLock<crate::crypto::keys::KeyRing>>,
    /// The title, sealed to the same data key as the content, for the officers' lists (see `workflow::cases`).
    title_sealed: Option<String>,
    /// The per-submission limits (`max_files`, `max_submission_bytes`), checked again in the commit.
    max_files: usize,
    max_bytes: u64,
    /// What the organisation's drafts may hold together, checked again in the commit.
    max_drafts: u32,
    max_draft_bytes: u64,
    /// What organisations not verified yet may have sent and still hold, checked when this adds to it.
    unverified: UnverifiedCaps,
}

async fn save_inner(
    state: &Services,
    who: &Submitter,
    actor: &Actor,
    req: SaveRequest,
    new_blobs: &mut Vec<String>,
) -> AppResult<SaveResult> {
    let form_token = req.form_token.clone().filter(|t| {
        req.submission_id.is_none() && t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if let Some(token) = form_token.clone() {
        let org = who.organisation_id.clone();
        if let Some(id) = state
            .db
            .run(move |c| Ok(submission::id_made_by_form(c, &org, &token)?))
            .await?
        {
            return Ok(SaveResult::Duplicate { id });
        }
    }
    let existing = match &req.submission_id {
        Some(id) => {
            let (id, org) = (id.clone(), who.organisation_id.clone());
            let s = state
                .db
                .run(move |c| Ok(submission::find(c, &id, Scope::Organisation(&org))?))
                .await?;
            editable(&s)?;
            Some(s)
        }
        None => None,
    };
    let status = existing.as_ref().map(Submission::status);
    let as_stored = req.intent == Intent::Send;
    if let (Some(shown), Some(s), false) = (&req.shown_version, &existing, as_stored) {
        if shown.as_str() != s.content_blob_id.as_deref().unwrap_or("") {
            return Ok(SaveResult::Stale {
                id: s.id.clone(),
                saved_at: s.updated_at,
            });
        }
    }
    if as_stored {
        let stored = existing.as_ref().and_then(|s| s.content_blob_id.as_deref());
        if stored.is_none() || stored != req.checked_version.as_deref() {
            return Err(AppError::Conflict(
                "This submission was changed after you checked it. Check your answers again, then send."
                    .into(),
            ));
        }
    }
    let mut content = match existing.as_ref().and_then(|s| s.content_blob_id.clone()) {
        Some(blob_id) => read_content(state, &blob_id).await?,
        None => Content::default(),
    };
    // As stored, to tell a save that changes nothing (below).
    let stored = existing
        .as_ref()
        .filter(|s| s.content_blob_id.is_some())
        .map(|s| (s.saved_sector().to_string(), content.clone()));
    let sector = match (&existing, as_stored) {
        (Some(s), true) => s.saved_sector().to_string(),
        _ => apply_fields(&mut content, &req.fields),
    };

    let mut removed: Vec<String> = Vec::new();
    for id in &req.remove {
        if !status.is_some_and(lifecycle::files_removable) {
            return Err(AppError::Conflict(
                "Files of a submission that was already sent cannot be removed; add a corrected file instead."
                    .into(),
            ));
        }
        // The same file ticked twice (a form posted by hand) is removed once.
        if removed.contains(id) {
            continue;
        }
        removed.push(id.clone());
        if content.attachments.remove(id).is_none() {
            return Err(AppError::Conflict(
                "A file you asked to remove is no longer in this draft (removed from another window?). Nothing \
                 was saved."
                    .into(),
            ));
        }
    }
    let mut new_files = Vec::new();
    let mut replacements: Vec<(String, String)> = Vec::new();
    for f in req.files {
        let id = crate::db::new_id();
        let description = match &f.slot {
            FileSlot::Numbered(n) => req.fields.get(&format!("description_{n}")).to_string(),
            FileSlot::Picker => String::new(),
            FileSlot::Replace(old) => {
                if !status.is_some_and(files_replaceable) {
                    return Err(AppError::Conflict(
                        "A file can be replaced only in answer to a defect notice.".into(),
                    ));
                }
                if replacements.iter().any(|(o, _)| o == old) {
                    return Err(AppError::Invalid(
                        "Choose one corrected file for each file you replace.".into(),
                    ));
                }
                let Some(info) = content.attachments.get(old) else {
                    return Err(AppError::Conflict(
                        "A file you chose to replace is not one of this submission's files (any more). Nothing was \
                         saved."
                            .into(),
                    ));
                };
                replacements.push((old.clone(), id.clone()));
                // The corrected file is described like the one it replaces, until the submitter says otherwise.
                info.description.clone()
            }
        };
        content.attachments.insert(
            id.clone(),
            AttachmentInfo {
                name: f.file_name.clone(),
                description,
                sha256: hex::encode(f.sealed.plaintext_sha256),
            },
        );
        new_files.push((id, f));
    }

    let mut errors = check_draft(&content, &sector);
    if errors.is_empty() && !content.follows_up.is_empty() {
        let (tn, org) = (content.follows_up.clone(), who.organisation_id.clone());
        let found = state
            .db
            .run(move |c| {
                Ok(submission::lookup_by_tracking(
                    c,
                    &tn,
                    Scope::Organisation(&org),
                )?)
            })
            .await?;
        if found.is_none() {
            errors.insert(
                "follows_up".into(),
                "None of your organisation's submissions has this tracking number.".into(),
            );
        }
    }
    if !errors.is_empty() {
        return Ok(SaveResult::Invalid {
            id: req.submission_id,
            errors,
            saved: false,
        });
    }
    let step = match (req.intent, status) {
        (Intent::Draft | Intent::Continue, _) => None,
        (Intent::Submit | Intent::Send, None | Some(Status::Draft)) => Some(Step::Submit),
        (Intent::Submit | Intent::Send, _) => Some(Step::Cure),
    };
    let complete_errors = match req.intent {
        Intent::Draft => FieldErrors::new(),
        Intent::Continue => check_answers(&content, &sector),
        Intent::Submit | Intent::Send => check_complete(&content, &sector, &req.fields),
    };
    // A save that changes nothing (the same answers and descriptions, no file added, removed or replaced) keeps
    // no new version: once sent, every version is kept on record, and repeated saves of an unchanged page (by
    // hand, or the idle save) would each add one.
    let unchanged = matches!(req.intent, Intent::Draft | Intent::Continue)
        && new_files.is_empty()
        && removed.is_empty()
        && replacements.is_empty()
        && req.sealing.new.is_none()
        && stored
            .as_ref()
            .is_some_and(|(s, c)| *s == sector && *c == content);
    if let (true, Some(s)) = (unchanged, &existing) {
        return Ok(if complete_errors.is_empty() {
            SaveResult::Saved {
                id: s.id.clone(),
                status: s.status(),
            }
        } else {
            SaveResult::Invalid {
                id: Some(s.id.clone()),
                errors: complete_errors,
                saved: true,
            }
        });
    }
    if as_stored && !complete_errors.is_empty() {
        // Nothing to keep: the content is as stored.
        return Ok(SaveResult::Invalid {
            id: req.submission_id,
            errors: complete_errors,
            saved: true,
        });
    }
    let (content_blob, title_sealed) = if as_stored {
        (None, None)
    } else {
        let blob = seal_content(state, &req.sealing.recipients, &content).await?;
        new_blobs.push(blob.name.clone());
        // Sealed to the content's data key, which the transaction checks is still the current one.
        let title = crate::workflow::sealed_text::Sealer::to_key(&blob.key_id)?
            .seal(content.title.trim())?
            .stored;
        (Some(blob), Some(title))
    };
    let plan = Plan {
        form_token,
        existing,
        sector,
        content_blob,
        new_files,
        replacements,
        remove: removed,
        step: step.filter(|_| complete_errors.is_empty()),
        // Nothing is sealed when the stored content is sent: no data key is made for it.
        sealing: SealingKey {
            new: req.sealing.new.filter(|_| !as_stored),
            ..req.sealing
        },
        keys: state.keys.clone(),
        title_sealed,
        max_files: state.settings.max_files as usize,
        max_bytes: state.settings.max_submission_bytes,
        max_drafts: state.settings.max_drafts_per_organisation,
        max_draft_bytes: state.settings.max_draft_bytes_per_organisation,
        unverified: UnverifiedCaps::of(&state.settings),
    };
    let audit = state.audit.clone();
    let actor = actor.clone();
    let who = who.clone();
    let now = state.clock.now();
    let session_absolute = state.settings.session_timeouts().1;
    let (store, names) = (state.blobs.clone(), new_blobs.clone());
    let (id, status, obsolete) = state
        .db
        .run_lazily(move |db| {
            // The files are stored and sealed by now, perhaps gigabytes of them: a passing lock at the commit (the
            // busy timeout, a PostgreSQL deadlock, no free connection) is waited out a few times rather than
            // answered 503, which deletes them and has the person send them all again. Only the check and the
            // commit are repeated; an outcome not known (`Unconfirmed`) is never retried.
            let mut attempt = 0;
            loop {
                // Before a connection is taken, so that no stat (a HEAD on S3, slow when the store is) is made
                // while holding one of the pool's connections or under the write lock.
                still_stored(&*store, &names)?;
                let committed = db.get().and_then(|mut conn| {
                    audit.clone().fact(&mut conn, &actor, |tx| {
                        crate::workflow::access::session_still_open(
                            tx,
                            &actor,
                            now,
                            session_absolute,
                        )?;
                        commit_save(tx, &audit, &actor, &who, plan.clone(), now)
                    })
                });
                match committed {
                    // The database's passing states only ("database: …", "database pool: …"), not a state of
                    // ours that waiting does not change (tracking numbers exhausted for the year).
                    Err(AppError::Unavailable(why))
                        if attempt < COMMIT_RETRIES && why.starts_with("database") =>
                    {
                        attempt += 1;
                        tracing::warn!(error = %why, attempt, "a save's commit could not be made now; trying again");
                        std::thread::sleep(std::time::Duration::from_millis(250 * attempt));
                    }
                    other => break other,
                }
            }
        })
        .await?;
    delete_after_commit(state, obsolete).await;
    if complete_errors.is_empty() {
        Ok(SaveResult::Saved { id, status })
    } else {
        Ok(SaveResult::Invalid {
            id: Some(id),
            errors: complete_errors,
            saved: true,
        })
    }
}

type Saved = ((String, Status, Vec<String>), Event);

fn commit_save(
    tx: &mut DbConn,
    audit: &crate::audit::log::AuditLog,
    actor: &Actor,
    who: &Submitter,
    plan: Plan,
    now: i64,
) -> AppResult<Saved> {
    crate::workflow::access::still_as_begun(
        tx,
        &who.user_id,
        Role::Submitter,
        Some(&who.organisation_id),
    )?;
    let scope = Scope::Organisation(&who.organisation_id);
    let mut obsolete = Vec::new();
    let (sub, created) = match &plan.existing {
        Some(before) => {
            let current = submission::find(tx, &before.id, scope)?;
            if current.status != before.status || current.content_blob_id != before.content_blob_id
            {
                return Err(AppError::Conflict(
                    "This submission was changed in another window while yours was saved. Nothing was saved."
                        .into(),
                ));
            }
            (current, false)
        }
        None => {
            // Checked again under the write lock every fact takes: two copies of one form sent at once.
            if let Some(token) = &plan.form_token {
                if submission::id_made_by_form(tx, &who.organisation_id, token)?.is_some() {
                    return Err(AppError::Conflict(
                        "This form was already sent: see My submissions.".into(),
                    ));
                }
            }
            let id = crate::db::new_id();
            submission::insert(
                tx,
                &NewSubmission {
                    form_token: plan.form_token.as_deref(),
                    id: &id,
                    organisation_id: &who.organisation_id,
                    submitter_id: &who.user_id,
                    status: Status::Draft,
                    sector: &plan.sector,
                    created_at: now,
                    updated_at: now,
                },
            )?;
            (submission::find(tx, &id, scope)?, true)
        }
    };
    let from = sub.status();

    // The data key: a new one is stored and made current with the first blobs sealed to it. Every new blob
    // must be sealed to the current key: a `keys rotate --data-keys` that ran during a long upload may have
    // replaced it, and a blob on a key about to be retired would become unreadable, so it is refused instead.
    // A new data key is wrapped again if a `keys rotate` changed the master identity during the upload.
    if let Some(new) = &plan.sealing.new {
        new.insert_current(tx, &sub.id, now, &plan.keys)?;
    }
    let current_key = data_key::current_of(tx, &sub.id)?;
    let sealed_keys = plan
        .new_files
        .iter()
        .map(|(_, f)| &f.sealed.key_id)
        .chain(plan.content_blob.as_ref().map(|b| &b.key_id));
    for key_id in sealed_keys {
        if current_key.as_deref() != Some(key_id.as_str()) {
            return Err(AppError::Conflict(
                "The portal's encryption keys changed during your upload. Nothing was saved; send it again."
                    .into(),
            ));
        }
    }

    // The new content version. A draft's old version is discarded; once sent, every version is kept.
    let content_blob_id = match &plan.content_blob {
        Some(sealed) => {
            let id = crate::db::new_id();
            blob::insert(tx, &id, &sub.id, "content", sealed, now)?;
            if let (Status::Draft, Some(old)) = (from, &sub.content_blob_id) {
                obsolete.push(blob::delete(tx, old)?);
            }
            id
        }
        None => sub
            .content_blob_id
            .clone()
            .ok_or_else(|| AppError::Conflict("This submission has nothing to send yet.".into()))?,
    };
    for att_id in &plan.remove {
        let blob_id = attachment::blob_of(tx, &sub.id, att_id)?;
        attachment::delete(tx, att_id)?;
        if let Some(b) = blob_id {
            obsolete.push(blob::delete(tx, &b)?);
        }
    }
    // New files go after the last one, numbered on from it.
    let first = attachment::last_position(tx, &sub.id)?.unwrap_or(0) + 1;
    for (position, (att_id, file)) in (first..).zip(&plan.new_files) {
        let blob_id = crate::db::new_id();
        blob::insert(tx, &blob_id, &sub.id, "attachment", &file.sealed, now)?;
        attachment::insert(
            tx,
            &NewAttachment {
                id: att_id,
                submission_id: &sub.id,
                blob_id: &blob_id,
                position,
                size_bytes: file.sealed.plaintext_len as i64,
                added_at: now,
            },
        )?;
    }
    // A replaced file keeps its row and blob (on record, readable, destroyed with the submission); the corrected
    // one is listed in its place. Each replacement is a fact of its own in the same transaction.
    // Numbers do not change with a replacement: read once, for the audit entries' "file 2 replaced by file 5".
    let numbers = if plan.replacements.is_empty() {
        Vec::new()
    } else {
        attachment::attachments_of(tx, &sub.id)?
    };
    let number = |id: &str| {
        numbers
            .iter()
            .find(|a| a.id == id)
            .map_or(0, |a| a.position)
    };
    for (old, new) in &plan.replacements {
        if !attachment::mark_replaced(tx, &sub.id, old, new, now)? {
            return Err(AppError::Conflict(
                "That file was already replaced or removed (in another window?). Nothing was saved.".into(),
            ));
        }
        audit.append(
            tx,
            actor,
            &Event::new("submission.file_replaced", Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(format!(
                    "file {} replaced by file {}",
                    number(old),
                    number(new)
                )),
        )?;
    }
    blob_deletion::enqueue(tx, &obsolete, now)?;
    let sizes = attachment::sizes_of(tx, &sub.id)?;
    // The allowance the body was read against was computed before the body, from the draft as it was then:
    // another save to the same submission may have committed files meanwhile. Counted again here, under the write
    // lock, the files this save adds must still fit (a submission over limits lowered since is not refused a save
    // that adds nothing).
    let total: i64 = sizes.iter().sum();
    if !plan.new_files.is_empty()
        && (sizes.len() > plan.max_files || total.max(0) as u64 > plan.max_bytes)
    {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        return Err(AppError::TooLarge(format!(
            "Another save added files to this submission while yours was sent: with yours it would hold {} files \
             ({}), over the limit of {} files and {} per submission. Nothing was saved; attach fewer or \
             smaller files.",
            sizes.len(),
            mib(total.max(0) as u64),
            plan.max_files,
            mib(plan.max_bytes),
        )));
    }
    submission::set_content(
        tx,
        &sub.id,
        from == Status::Draft,
        &plan.sector,
        &content_blob_id,
        sizes.len() as i32,
        sizes.iter().sum::<i64>(),
        now,
    )?;
    if let Some(title) = &plan.title_sealed {
        submission::set_title(tx, &sub.id, title)?;
    }
    // What the organisation's drafts hold together, counted again under the write lock (the allowance was read
    // before the body: another save may have committed meanwhile). Only a save that leaves a draft with more in it
    // is refused; sending frees the draft's share.
    if from == Status::Draft && plan.step != Some(Step::Submit) {
        let (drafts, bytes) = submission::draft_usage(tx, &who.organisation_id)?;
        if created && drafts > i64::from(plan.max_drafts) {
            return Err(AppError::Conflict(format!(
                "Your organisation keeps {} drafts, as many as it may: send or delete one before starting another.",
                plan.max_drafts
            )));
        }
        if !plan.new_files.is_empty() && bytes.max(0) as u64 > plan.max_draft_bytes {
            return Err(AppError::TooLarge(format!(
                "With this save your organisation's drafts would hold more than the {} their files may hold \
                 together. Nothing was saved; send or delete drafts, or attach smaller files.",
                size_label(plan.max_draft_bytes)
            )));
        }
    }
    // A sent submission grows too (a cure's files, a defective one's save): an unverified organisation's cap
    // counts what it holds, this save's files with it.
    if from != Status::Draft && !plan.new_files.is_empty() {
        within_unverified_room(tx, &who.organisation_id, plan.unverified, false)?;
    }

    let mut tracking = sub.tracking_number.clone();
    let (to, action) = match plan.step {
        Some(step) => {
            let to = check(from, step, Role::Submitter)?;
            if step == Step::Submit {
                let tn = next_tracking_number(tx, now)?;
                submission::set_received(tx, &sub.id, &tn, now)?;
                tracking = Some(tn);
            }
            submission::set_status_affirmed(
                tx,
                &sub.id,
                to,
                &plan.sector,
                STATEMENT_VERSION,
                &who.user_id,
                now,
            )?;
            if step == Step::Submit {
                within_unverified_room(tx, &who.organisation_id, plan.unverified, true)?;
            }
            if step == Step::Cure {
                // Received again: flagged "cured — re-review" in the queue until an officer decides.
                submission::set_cured(tx, &sub.id, now)?;
            }
            let tn = tracking.as_deref().unwrap_or("");
            let notice = match step {
                Step::Submit => format!(
                    "{tn} was received and is presumed protected until the PCII Program Office decides."
                ),
                _ => format!("Your answer to the defect notice for {tn} was received."),
            };
            record_transition(
                tx,
                &sub,
                Some(&who.user_id),
                Change {
                    from: Some(from),
                    to,
                    reason: None,
                    notice: &notice,
                },
                now,
            )?;
            (to, step.action())
        }
        None if created => {
            record_transition(
                tx,
                &sub,
                Some(&who.user_id),
                Change {
                    from: None,
                    to: Status::Draft,
                    reason: None,
                    notice: "",
                },
                now,
            )?;
            (from, "submission.draft_created")
        }
        None if from == Status::Draft => (from, "submission.draft_saved"),
        None => (from, "submission.corrected"),
    };
    let event = Event::new(action, Outcome::Success)
        .object("submission", sub.id.clone())
        .tracking(tracking);
    Ok(((sub.id, to, obsolete), event))
}

/// The next `PCII-YYYY-NNNNNN` of the current year. Runs under the audit head lock that every fact takes
/// first, so two instances never hand out the same number.
fn next_tracking_number(tx: &mut DbConn, now: i64) -> AppResult<String> {
    use chrono::Datelike;
    let year = chrono::DateTime::<chrono::Utc>::from_timestamp(now, 0)
        .map(|d| d.year())
        .unwrap_or(1970);
    let next = submission::bump_tracking_counter(tx, year)?;
    if next > 999_999 {
        // Ours, not the sender's: 503 (the draft stays a draft); the operator must look at what sent a million.
        tracing::error!(
            year,
            "tracking numbers exhausted for the year: submissions cannot be sent"
        );
        return Err(AppError::Unavailable(
            "tracking numbers exhausted for the year".into(),
        ));
    }
    Ok(format!("PCII-{year}-{next:06}"))
}

/// Deletes a draft of the submitter's organisation with its files. Nothing was sent, so nothing is
/// presumed protected and no destruction record is owed; the audit entry records the deletion. Once
/// a submission was sent it can only be withdrawn.
pub async fn delete_draft(
    state: &Services,
    who: &Submitter,
    actor: &Actor,
    submission_id: &str,
) -> AppResult<()> {
    let audit = state.audit.clone();
    let actor = actor.clone();
    let organisation = who.organisation_id.clone();
    let user_id = who.user_id.clone();
    let id = submission_id.to_string();
    let now = state.clock.now();
    let names = state
        .db
        .run(move |c| {
            audit.fact(c, &actor, |tx| {
                // The person as it stands now: one removed from the organisation meanwhile deletes nothing.
                crate::workflow::access::still_as_begun(
                    tx,
                    &user_id,
                    Role::Submitter,
                    Some(&organisation),
                )?;
                let sub = submission::find(tx, &id, Scope::Organisation(&organisation))?;
                if !lifecycle::deletable(sub.status()) {
                    return Err(AppError::Conflict(
                        "Only a draft can be deleted. A sent submission can be withdrawn instead."
                            .into(),
                    ));
                }
                let names = blob::storage_names_of(tx, &sub.id)?;
                blob_deletion::enqueue(tx, &names, now)?;
                attachment::delete_of(tx, &sub.id)?;
                notice::delete_of(tx, &sub.id)?;
                event::delete_of(tx, &sub.id)?;
                blob::delete_of_submission(tx, &sub.id)?;
                data_key::delete_of_submission(tx, &sub.id)?;
                submission::delete(tx, &sub.id)?;
                let event = Event::new("submission.draft_deleted", Outcome::Success)
                    .object("submission", sub.id.clone())
                    .reason(format!("with {} file(s)", sub.file_count));
                Ok((names, event))
            })
        })
        .await?;
    crate::workflow::destruction::checkpoint_after(state).await;
    // After the commit; a crash before this leaves the names queued for the sweep.
    delete_after_commit(state, names).await;
    Ok(())
}

/// What the submitter asks for after sending: withdraw (before a decision), choose return or destroy
/// (after a withdrawal or a "not validated" decision), or confirm it took its returned package.
#[derive(Debug, Clone, Copy)]
pub enum Request {
    Withdraw(Disposition),
    Choose(Disposition),
    ConfirmReturn,
}

/// Applies a submitter's request; returns the resulting status.
pub async fn request(
    state: &Services,
    who: &Submitter,
    actor: &Actor,
    submission_id: &str,
    request: Request,
) -> AppResult<Status> {
    let audit = state.audit.clone();
    let actor = actor.clone();
    let who = who.clone();
    let id = submission_id.to_string();
    let now = state.clock.now();
    let (status, shredded) = state
        .db
        .run(move |c| {
            audit.clone().fact(c, &actor, |tx| {
                apply_request(tx, &audit, &actor, &who, &id, request, now)
            })
        })
        .await?;
    if crate::workflow::lifecycle::content_destroyed(status) {
        crate::workflow::destruction::checkpoint_after(state).await;
    }
    delete_after_commit(state, shredded).await;
    Ok(status)
}

fn apply_request(
    tx: &mut DbConn,
    audit: &crate::audit::log::AuditLog,
    actor: &Actor,
    who: &Submitter,
    id: &str,
    request: Request,
    now: i64,
) -> AppResult<((Status, Vec<String>), Event)> {
    // As in a save's commit: a withdrawal, a choice of destruction or return cannot be undone, and one removed from
    // the organisation since the page was checked makes none.
    crate::workflow::access::still_as_begun(
        tx,
        &who.user_id,
        Role::Submitter,
        Some(&who.organisation_id),
    )?;
    let sub = submission::find(tx, id, Scope::Organisation(&who.organisation_id))?;
    let from = sub.status();
    let tn = sub.tracking_number.clone().unwrap_or_default();
    let event = |action: &'static str| {
        Event::new(action, Outcome::Success)
            .object("submission", sub.id.clone())
            .tracking(sub.tracking_number.clone())
    };
    match request {
        Request::Withdraw(disposition) => {
            let to = check(from, Step::Withdraw, Role::Submitter)?;
            submission::set_status_and_disposition(
                tx,
                &sub.id,
                to,
                disposition,
                lifecycle::disposition_deadline(now),
                now,
            )?;
            let reason = format!("withdrawn by the submitter; chose {}", disposition.as_str());
            record_transition(
                tx,
                &sub,
                Some(&who.user_id),
                Change {
                    from: Some(from),
                    to,
                    reason: Some(&reason),
                    notice: &format!("{tn} was withdrawn."),
                },
                now,
            )?;
            let withdrawn = event(Step::Withdraw.action()).reason(reason);
            if disposition == Disposition::Destroy {
                // Two facts of one request, one transaction: the withdrawal, then the destruction.
                audit.append(tx, actor, &withdrawn)?;
                let shredded = shred(tx, &sub, to, Step::Destroy, who, now)?;
                return Ok(((Status::Destroyed, shredded), event(Step::Destroy.action())));
            }
            Ok(((to, Vec::new()), withdrawn))
        }
        Request::Choose(disposition) => {
            if sub.disposition.is_some() && from == Status::Withdrawn {
                return Err(AppError::Conflict(
                    "The return-or-destroy choice for this submission was already made.".into(),
                ));
            }
            // A return chosen again would start its 30 days afresh each time (and remind again): the package waits
            // until the deadline already set. (Destruction may still be chosen instead.)
            if sub.disposition == Some(Disposition::Return) && disposition == Disposition::Return {
                return Err(AppError::Conflict(format!(
                    "A return was already chosen: take the package by {}.",
                    sub.disposition_due_at
                        .map(crate::time::datetime)
                        .unwrap_or_else(|| "the deadline shown on the submission's page".into())
                )));
            }
            match disposition {
                Disposition::Destroy => {
                    let shredded = shred(tx, &sub, from, Step::Destroy, who, now)?;
                    Ok(((Status::Destroyed, shredded), event(Step::Destroy.action())))
                }
                Disposition::Return => {
                    check(from, Step::Return, Role::Submitter)?;
                    submission::set_disposition(
                        tx,
                        &sub.id,
                        Disposition::Return,
                        lifecycle::disposition_deadline(now),
                        now,
                    )?;
                    Ok((
                        (from, Vec::new()),
                        event("submission.return_requested").reason("submitter chose return"),
                    ))
                }
            }
        }
        Request::ConfirmReturn => {
            if sub.disposition != Some(Disposition::Return) {
                return Err(AppError::Conflict(
                    "Choose \"return\" first; the package is offered only for a return.".into(),
                ));
            }
            let shredded = shred(tx, &sub, from, Step::Return, who, now)?;
            Ok(((Status::Returned, shredded), event(Step::Return.action())))
        }
    }
}

fn shred(
    tx: &mut DbConn,
    sub: &Submission,
    from: Status,
    step: Step,
    who: &Submitter,
    now: i64,
) -> AppResult<Vec<String>> {
    let to = check(from, step, Role::Submitter)?;
    let (reason, notice) = match step {
        Step::Return => (
            "returned to the submitter at its request; the portal's copy was destroyed",
            "was returned to you; the portal's encrypted copy was destroyed.",
        ),
        _ => (
            "destroyed at the submitter's request",
            "was destroyed at your request; a destruction record remains.",
        ),
    };
    let names = destroy_in_tx(tx, sub, to, Some(&who.user_id), reason, now)?;
    let label = sub
        .tracking_number
        .clone()
        .unwrap_or_else(|| "Your submission".into());
    record_transition(
        tx,
        sub,
        Some(&who.user_id),
        Change {
            from: Some(from),
            to,
            reason: Some(reason),
            notice: &format!("{label} {notice}"),
        },
        now,
    )?;
    Ok(names)
}
