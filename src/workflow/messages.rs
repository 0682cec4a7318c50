//! The message thread of one submission, between its organisation and the Program Office: who may write when,
//! sending (the words sealed with the submission's data key, the files blobs of the submission sealed to it, one
//! `message.sent` audit entry that names the message, never its words), reading (which marks the thread read),
//! the files' downloads (through the content-access rules, audited) and the unread counts.
//!
//! A thread is written from the draft to the final decision, and after "not validated" until the organisation
//! chooses return or destruction (it has 30 days, and may need to ask why): while the submission is a draft,
//! received, defective or validated, or not validated with no choice made. Once a return is chosen (the package is
//! the record: a message written after it was taken would be lost with the content), or the submission is withdrawn,
//! returned, destroyed or its protection removed, it is read-only; once its content is destroyed, the data key that
//! opens the words and the files is gone with it.

use std::collections::HashMap;

use serde::Serialize;

use crate::audit::log::{Actor, Event, Outcome};
use crate::db::DbConn;
use crate::domain::{Disposition, Role, Status};
use crate::error::{AppError, AppResult};
use crate::key_store::data_keys::{blob_keys, current_recipients, BlobKeys, SealingKey};
use crate::mail::Mailer;
use crate::models::account::User;
use crate::models::message::{self, NewMessage, NewMessageFile, Side};
use crate::models::submission::{self, Scope, Submission};
use crate::models::{blob, data_key};
use crate::services::Services;
use crate::workflow::access::{self, Admitted, OpenedFile};
use crate::workflow::content::FieldErrors;
use crate::workflow::documents::{self, delete_blobs};
use crate::workflow::intake::IncomingFile;
use crate::workflow::lifecycle;
use crate::workflow::notifications::{self, Kind};
use crate::workflow::pending_mail::{self, Queued};
use crate::workflow::sealed_text::Sealer;

/// The longest message, in characters.
pub const BODY_MAX: usize = 20_000;
/// Files one message may carry.
pub const FILES_PER_MESSAGE: usize = 5;
/// Messages a thread page shows: the newest by default, older ones a page at a time.
pub const THREAD_PAGE: i64 = 50;

/// Whether a submission's thread takes new messages: from the draft to the final decision, and after "not
/// validated" until a return or destruction is chosen.
pub fn writable(sub: &Submission) -> bool {
    open_in(sub.status(), sub.disposition)
}

/// Threads waiting for the Program Office's answer (the organisation wrote last) on submissions whose thread is still
/// open, for the officers' home: the [`AWAITING_SHOWN`] that have waited longest, and how many there are in all.
/// An officer's queue lists received and defective submissions only; an organisation also writes after validation
/// and during its 30 days after "not validated", and this is where officers find those.
pub async fn awaiting_office(
    state: &Services,
) -> AppResult<(Vec<crate::models::message::AwaitingOffice>, i64)> {
    let open: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| open_in(*s, Some(Disposition::Return)))
        .collect();
    let until_choice: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| open_in(*s, None) && !open.contains(s))
        .collect();
    state
        .db
        .run(move |c| {
            Ok(crate::models::message::awaiting_office(
                c,
                &open,
                &until_choice,
                AWAITING_SHOWN,
            )?)
        })
        .await
}

/// How many threads waiting for an answer the officers' home lists.
pub const AWAITING_SHOWN: i64 = 20;

/// Why a thread no longer takes messages, in words for the page.
fn closed_text(sub: &Submission) -> String {
    if sub.status() == Status::NotValidated && sub.disposition == Some(Disposition::Return) {
        return "A return was chosen for this submission: its messages can be read, no longer written (they are in \
                the return package)."
            .into();
    }
    format!(
        "This submission is {}: its messages can be read, no longer written.",
        sub.status().label().to_lowercase()
    )
}

fn open_in(status: Status, disposition: Option<Disposition>) -> bool {
    match status {
        Status::Draft | Status::Received | Status::Defective | Status::Validated => true,
        Status::NotValidated => disposition.is_none(),
        _ => false,
    }
}

/// Whether `user` may write in the thread of a submission `admit` let it read: the organisation's members, and
/// officers but one of the submitting organisation (it may read, not act), while the thread is open.
pub fn may_write(admitted: &Admitted, user: &User) -> bool {
    let sub = admitted.submission();
    writable(sub)
        && match user.role() {
            Role::Submitter => true,
            Role::Officer => !lifecycle::own_organisation(user, sub),
            _ => false,
        }
}

/// Why the thread takes no message from `user` now, in words for the page (`None`: it does).
pub fn closed_reason(admitted: &Admitted, user: &User) -> Option<String> {
    let sub = admitted.submission();
    if !writable(sub) {
        return Some(closed_text(sub));
    }
    if !may_write(admitted, user) {
        return Some(
            "You belong to the submitting organisation: you may read this thread, not write in it."
                .into(),
        );
    }
    None
}

/// Whether `user` may write in the thread now, as an error to answer with: a closed thread is a conflict of
/// state; an officer of the submitting organisation, a conflict of interest (recorded by whoever answers with it).
pub fn may_write_now(admitted: &Admitted, user: &User) -> AppResult<()> {
    let Some(reason) = closed_reason(admitted, user) else {
        return Ok(());
    };
    let sub = admitted.submission();
    if writable(sub) && user.role() == Role::Officer {
        return Err(AppError::conflict_of_interest(
            "submission",
            &sub.id,
            sub.tracking_number.as_deref(),
            "the officer belongs to the submitting organisation (message refused)",
            "You belong to the submitting organisation: you may read this thread, not write in it.",
        ));
    }
    Err(AppError::Conflict(reason))
}

/// One file of a message as the thread shows it.
#[derive(Serialize)]
pub struct FileView {
    pub id: String,
    pub position: i32,
    pub name: String,
    pub size_bytes: i64,
    /// As sent (hex); `None` for a file sent before it was kept, or destroyed.
    pub sha256: Option<String>,
    /// Still stored (not destroyed).
    pub available: bool,
}
debug_without_words!(FileView);

/// One message as the thread shows it.
#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub seq: i64,
    pub author: String,
    pub side: Side,
    pub at: i64,
    pub body: String,
    pub request_for_information: bool,
    /// Written by the other side after the reader's last visit.
    pub new: bool,
    pub files: Vec<FileView>,
}
debug_without_words!(MessageView);

/// A page of a thread as one person opens it: at most [`THREAD_PAGE`] messages, oldest first.
#[derive(Debug, Serialize)]
pub struct Thread {
    pub messages: Vec<MessageView>,
    /// Messages of the other side the reader had not read before this opening, in the whole thread.
    pub unread: i64,
    /// Messages in the whole thread (they are numbered from 1 without gaps).
    pub total: i64,
    /// Where the page of older messages starts (its `before`), when there are older messages.
    pub older: Option<i64>,
    /// Whether newer messages than this page's exist.
    pub newer: bool,
    /// Where the page of newer messages starts (its `before`); `None` with `newer`: the newest page.
    pub newer_before: Option<i64>,
    /// Opened at the reader's oldest unread message rather than the newest page: more than a page of messages came
    /// after it.
    pub from_first_unread: bool,
}

/// Which page of a thread to open: the newest, or the one ending just before message `before`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadPage {
    pub before: Option<i64>,
}

impl ThreadPage {
    /// From the address's `before`: absent or empty is the newest page; anything but a message number is the
    /// caller's mistake.
    pub fn parse(before: Option<&str>) -> AppResult<ThreadPage> {
        match before.map(str::trim).filter(|b| !b.is_empty()) {
            None => Ok(ThreadPage::default()),
            Some(b) => match b.parse::<i64>() {
                Ok(n) if n > 1 => Ok(ThreadPage { before: Some(n) }),
                _ => Err(AppError::Malformed(
                    "The page of messages asked for is not a message number.".into(),
                )),
            },
        }
    }
}

fn side_of(user: &User) -> AppResult<Side> {
    Side::of(user.role()).ok_or(AppError::NotFound)
}

/// Whether `user`'s role is one of the thread's two sides (the organisation, the Program Office): only they read
/// it, on a page or in a package. An authorized user reading validated PCII under a grant does not.
pub fn reads_thread(user: &User) -> bool {
    side_of(user).is_ok()
}

/// One message as a package carries it: who wrote it when, and its files' blobs to open as the package streams.
/// Its words are opened a page at a time as the package's `MESSAGES.txt` streams ([`ThreadWords`]).
pub struct PackagedMessage {
    pub seq: i64,
    pub author: String,
    pub side: Side,
    pub at: i64,
    pub request_for_information: bool,
    pub files: Vec<PackagedFile>,
}

pub struct PackagedFile {
    pub position: i32,
    pub name: String,
    pub size_bytes: i64,
    /// As sent (hex); `None` for a file sent before it was kept.
    pub sha256: Option<String>,
    pub blob: BlobKeys,
}

/// The words of a thread's messages, read and opened a few at a time while a package streams: a package holds one
/// page of them, however long the thread.
pub struct ThreadWords {
    db: crate::db::Db,
    submission_id: String,
    texts: crate::workflow::sealed_text::Texts,
}

impl ThreadWords {
    /// The opened words of messages `from..=to`, by number (on a blocking thread: it takes a connection).
    pub fn open(&self, from: i64, to: i64) -> std::io::Result<Vec<(i64, String)>> {
        // The AppError is kept inside, so that a busy database stays a 503 where the caller can still answer
        // (see `AppError::from_io`).
        let mut conn = self.db.get().map_err(std::io::Error::other)?;
        let rows = message::bodies_between(&mut conn, &self.submission_id, from, to)
            .map_err(|e| std::io::Error::other(AppError::from(e)))?;
        Ok(rows
            .into_iter()
            .map(|(seq, body)| (seq, self.texts.open(&body)))
            .collect())
    }
}

/// The thread as a package carries it: its messages, oldest first, and the means to open their words.
pub struct PackagedThread {
    pub messages: Vec<PackagedMessage>,
    pub words: ThreadWords,
}

/// The thread for the package of a submission whose content is still there (`access` admitted the asker, who
/// [`reads_thread`]); `None` when it has no messages. Reading it this way does not mark it read: the package's export
/// is recorded.
pub(crate) async fn for_package(
    state: &Services,
    admitted: &Admitted,
) -> AppResult<Option<PackagedThread>> {
    admitted.require_content()?;
    let sid = admitted.submission().id.clone();
    let (headers, files) = state
        .db
        .run(move |c| {
            let headers = message::headers_of(c, &sid)?;
            let mut files = Vec::new();
            for f in message::files_of(c, &sid)? {
                if let Some(b) = &f.blob_id {
                    let keys = blob_keys(c, b)?;
                    files.push((f, keys));
                }
            }
            Ok((headers, files))
        })
        .await?;
    if headers.is_empty() {
        return Ok(None);
    }
    let texts = access::texts(state, admitted).await?;
    let mut by_message: HashMap<String, Vec<PackagedFile>> = HashMap::new();
    for (f, keys) in files {
        by_message
            .entry(f.message_id.clone())
            .or_default()
            .push(PackagedFile {
                name: texts
                    .try_open(&f.name)
                    .unwrap_or_else(|| format!("message-file-{}", f.position)),
                position: f.position,
                size_bytes: f.size_bytes,
                sha256: f.sha256_sealed.as_deref().and_then(|s| texts.try_open(s)),
                blob: keys,
            });
    }
    let messages = headers
        .into_iter()
        .map(|h| PackagedMessage {
            files: by_message.remove(&h.id).unwrap_or_default(),
            side: h.side().unwrap_or(Side::Office),
            seq: h.seq,
            author: h.author,
            at: h.created_at,
            request_for_information: h.is_request_for_information,
        })
        .collect();
    Ok(Some(PackagedThread {
        messages,
        words: ThreadWords {
            db: state.db.clone(),
            submission_id: admitted.submission().id.clone(),
            texts,
        },
    }))
}

/// A page of the thread (the newest [`THREAD_PAGE`] messages, or those before `page.before`), oldest first,
/// with its words and file names opened: only that page's are read and opened, however long the thread. Opened
/// without a page asked for, it starts at the reader's oldest unread message when that one is not on the newest
/// page, so that no unread message is marked read unseen. Marks the thread read by `user` up to the newest message
/// shown, in the transaction that records the reading (`content.viewed`, "message thread") when there is something
/// to read: a reader refused there has nothing marked. A page past the thread's messages is not found.
pub async fn open_thread(
    state: &Services,
    admitted: &Admitted,
    user: &User,
    actor: &Actor,
    page: ThreadPage,
) -> AppResult<Thread> {
    let side = side_of(user)?;
    let sub = admitted.submission();
    let (sid, uid) = (sub.id.clone(), user.id.clone());
    let now = state.clock.now();
    let (mut rows, files, last_read, unread, total, from_first_unread) = state
        .db
        .run(move |c| {
            let total = message::last_seq(c, &sid)?;
            if page.before.is_some_and(|b| b > total + 1) {
                return Err(AppError::NotFound);
            }
            let last_read = message::last_read(c, &uid, &sid)?;
            let unread = message::count_from(c, &sid, side.other(), last_read)?;
            let first_unread = match page.before {
                Some(_) => None,
                None => message::first_from(c, &sid, side.other(), last_read)?
                    .filter(|first| total - first >= THREAD_PAGE),
            };
            let before = page
                .before
                .or(first_unread.map(|first| first + THREAD_PAGE));
            // One more than a page: whether older messages exist.
            let rows = message::page_of(c, &sid, before, THREAD_PAGE + 1)?;
            let shown = &rows[rows.len().saturating_sub(THREAD_PAGE as usize)..];
            let ids: Vec<String> = shown.iter().map(|(m, _)| m.id.clone()).collect();
            let files = message::files_of_messages(c, &sid, &ids)?;
            Ok((
                rows,
                files,
                last_read,
                unread,
                total,
                first_unread.is_some(),
            ))
        })
        .await?;
    let older = if rows.len() as i64 > THREAD_PAGE {
        rows.remove(0);
        rows.first().map(|(m, _)| m.seq)
    } else {
        None
    };
    let last_shown = rows.last().map_or(0, |(m, _)| m.seq);
    let newer = last_shown < total;
    let newer_before = (last_shown + THREAD_PAGE < total).then_some(last_shown + THREAD_PAGE + 1);
    if let Some((newest, _)) = rows.last() {
        let (uid, sid, newest) = (user.id.clone(), sub.id.clone(), newest.seq);
        let mark = move |c: &mut crate::db::DbConn| {
            message::mark_read(c, &uid, &sid, newest, now).map_err(AppError::from)
        };
        if admitted.content_destroyed() {
            state.db.run(mark).await?;
        } else {
            // Whether the reader may still read is decided again in the transaction that records the read (a
            // member removed, an officer moved to another role since `admit`), as for a file; the mark with it.
            access::record_access_and(
                state,
                admitted,
                actor,
                "content.viewed",
                Some("message thread".into()),
                mark,
            )
            .await?;
        }
    }
    let texts = access::texts(state, admitted).await?;
    let mut by_message: HashMap<String, Vec<FileView>> = HashMap::new();
    for f in files {
        by_message
            .entry(f.message_id.clone())
            .or_default()
            .push(FileView {
                name: texts
                    .try_open(&f.name)
                    .unwrap_or_else(|| format!("File {}", f.position)),
                sha256: f.sha256_sealed.as_deref().and_then(|s| texts.try_open(s)),
                available: f.blob_id.is_some(),
                id: f.id,
                position: f.position,
                size_bytes: f.size_bytes,
            });
    }
    let messages = rows
        .into_iter()
        .map(|(row, author)| {
            let from = row.side().unwrap_or(Side::Office);
            let new = from != side && row.seq > last_read;
            MessageView {
                body: texts.open(&row.body),
                files: by_message.remove(&row.id).unwrap_or_default(),
                id: row.id,
                seq: row.seq,
                author,
                side: from,
                at: row.created_at,
                request_for_information: row.is_request_for_information,
                new,
            }
        })
        .collect();
    Ok(Thread {
        messages,
        unread,
        total,
        older,
        newer,
        newer_before,
        from_first_unread,
    })
}

/// Whether `side` may still write in the thread: at most `max_per_side` messages each (a conflict past it, with
/// the reason in words). Checked before a message's files are read and again in its commit.
fn within_messages_cap(
    conn: &mut DbConn,
    submission_id: &str,
    side: Side,
    max_per_side: u32,
) -> AppResult<()> {
    if message::count_from(conn, submission_id, side, 0)? < i64::from(max_per_side) {
        return Ok(());
    }
    let whose = match side {
        Side::Organisation => "your organisation",
        Side::Office => "the Program Office",
    };
    Err(AppError::Conflict(format!(
        "Nothing was sent: this thread already holds {max_per_side} messages from {whose}, the most one side may \
         write in one submission's thread."
    )))
}

/// [`within_messages_cap`] before a message's body is read, so that a thread at its cap is refused at once.
pub async fn room_for_message(state: &Services, admitted: &Admitted, user: &User) -> AppResult<()> {
    let side = side_of(user)?;
    let sid = admitted.submission().id.clone();
    let max = state.settings.max_messages_per_side;
    state
        .db
        .run(move |c| within_messages_cap(c, &sid, side, max))
        .await
}

/// What the new blobs of a message are sealed to: the submission's current data key, or a new one (a submission
/// from before data keys) that the message stores.
pub async fn sealing_key(state: &Services, admitted: &Admitted) -> AppResult<SealingKey> {
    let sid = admitted.submission().id.clone();
    let current = state.db.run(move |c| current_recipients(c, &sid)).await?;
    match current {
        Some(recipients) => Ok(SealingKey {
            recipients,
            new: None,
        }),
        None => {
            let keys = state.current_keys();
            let ring = keys.read().unwrap_or_else(|p| p.into_inner());
            SealingKey::generate(&ring)
                .map_err(|e| AppError::Internal(format!("making a data key: {e}")))
        }
    }
}

/// A message as posted; its files arrived already sealed (to `sealing`).
pub struct NewMessageRequest {
    pub body: String,
    /// An officer's formal request for information (ignored from the organisation's side).
    pub request_for_information: bool,
    pub files: Vec<IncomingFile>,
    pub sealing: SealingKey,
    /// What the organisation's drafts may hold together (`max_draft_bytes_per_organisation`): files in a draft's
    /// thread count against it, checked again here under the write lock.
    pub max_draft_bytes: u64,
    /// What organisations not verified yet may have sent and hold: the files an organisation puts in a sent
    /// submission's thread count, checked here under the write lock.
    pub unverified: crate::workflow::intake::UnverifiedCaps,
    /// Messages each side may write in the thread (`max_messages_per_side`), checked here under the write lock.
    pub max_per_side: u32,
}
debug_without_words!(NewMessageRequest);

#[derive(Debug)]
pub enum SendResult {
    /// Committed with its audit entry and the content-free notices it owes (queued in the same transaction), to
    /// send now ([`pending_mail::send_now`]).
    Sent { mails: Vec<Queued> },
    /// Nothing was kept (the files' blobs are deleted): each mistake by the name of its field.
    Invalid(FieldErrors),
}

/// The mistakes in a message's text (empty when it may be sent).
pub fn check_body(body: &str) -> FieldErrors {
    let mut errors = FieldErrors::new();
    if body.trim().is_empty() {
        errors.insert("body".into(), "Write your message.".into());
    } else if body.chars().count() > BODY_MAX {
        errors.insert(
            "body".into(),
            format!("Your message is longer than {BODY_MAX} characters: shorten it or attach it as a file."),
        );
    }
    errors
}

/// Writes a message in the thread, with its `message.sent` audit entry in the same transaction. The new blobs are
/// referenced by committed rows when this returns `Sent`, or deleted (left to the orphan sweep when the commit's
/// outcome is unknown).
pub async fn send(
    state: &Services,
    admitted: &Admitted,
    user: &User,
    actor: &Actor,
    req: NewMessageRequest,
) -> AppResult<SendResult> {
    let names: Vec<String> = req.files.iter().map(|f| f.sealed.name.clone()).collect();
    let result = send_inner(state, admitted, user, actor, req).await;
    if !matches!(
        result,
        Ok(SendResult::Sent { .. }) | Err(AppError::Unconfirmed(_))
    ) {
        delete_blobs(state, names).await;
    }
    result
}

async fn send_inner(
    state: &Services,
    admitted: &Admitted,
    user: &User,
    actor: &Actor,
    req: NewMessageRequest,
) -> AppResult<SendResult> {
    let side = side_of(user)?;
    crate::workflow::decisions::recorded(state, actor, may_write_now(admitted, user)).await?;
    let errors = check_body(&req.body);
    if !errors.is_empty() {
        return Ok(SendResult::Invalid(errors));
    }
    let (audit, actor, writer) = (state.audit.clone(), actor.clone(), user.clone());
    let (mailer, keys) = (state.mailer.clone(), state.keys.clone());
    let now = state.clock.now();
    let session_absolute = state.settings.session_timeouts().1;
    let sid = admitted.submission().id.clone();
    let store = state.blobs.clone();
    let mails = state
        .db
        .run_lazily(move |db| {
            // Before a connection is taken, so that no stat (a HEAD on S3, slow when the store is) is made while
            // holding one of the pool's connections or under the write lock.
            let names: Vec<String> = req.files.iter().map(|f| f.sealed.name.clone()).collect();
            crate::workflow::blobs::still_stored(&*store, &names)?;
            audit.fact(&mut *db.get()?, &actor, |tx| {
                // A message's files may take as long as an upload's: one whose session ended meanwhile sends nothing.
                crate::workflow::access::session_still_open(tx, &actor, now, session_absolute)?;
                let (sub, event) = commit_message(tx, &writer, side, &sid, req, &keys, now)?;
                Ok((queue_notices(tx, &mailer, &sub, side, now)?, event))
            })
        })
        .await?;
    Ok(SendResult::Sent { mails })
}

fn commit_message(
    tx: &mut DbConn,
    writer: &User,
    side: Side,
    submission_id: &str,
    req: NewMessageRequest,
    keys: &std::sync::RwLock<crate::crypto::keys::KeyRing>,
    now: i64,
) -> AppResult<(submission::Submission, Event)> {
    let scope = match side {
        Side::Organisation => Scope::Organisation(
            writer
                .organisation_id
                .as_deref()
                .ok_or(AppError::NotFound)?,
        ),
        Side::Office => Scope::Sent,
    };
    crate::workflow::access::still_as_read(tx, writer)?;
    // Read again under the write lock: a decision taken meanwhile closes the thread.
    let sub = submission::find(tx, submission_id, scope)?;
    if !writable(&sub) {
        return Err(AppError::Conflict(closed_text(&sub)));
    }
    // Read again too: a merge accepted meanwhile can make it the officer's own organisation's.
    if side == Side::Office {
        crate::workflow::decisions::not_own(writer, &sub)?;
    }
    within_messages_cap(tx, &sub.id, side, req.max_per_side)?;
    // Wrapped again if a `keys rotate` changed the master identity during the upload.
    if let Some(new) = &req.sealing.new {
        new.insert_current(tx, &sub.id, now, keys)?;
    }
    // Every new blob must be sealed to the current data key (a rotation during a long upload replaces it).
    let current = data_key::current_of(tx, &sub.id)?
        .ok_or_else(|| AppError::Internal("a submission has no data key".into()))?;
    if req.files.iter().any(|f| f.sealed.key_id != current) {
        return Err(AppError::Conflict(
            "The portal's encryption keys changed during your upload. Nothing was sent; send it again.".into(),
        ));
    }
    let sealer = Sealer::to_key(&current)?;
    let body = sealer.seal(&req.body)?;
    let id = crate::db::new_id();
    let rfi = side == Side::Office && req.request_for_information;
    let seq = message::last_seq(tx, &sub.id)? + 1;
    message::insert(
        tx,
        &NewMessage {
            id: &id,
            submission_id: &sub.id,
            seq,
            author_id: &writer.id,
            side: side.as_str(),
            body: &body.stored,
            is_request_for_information: rfi,
            created_at: now,
        },
    )?;
    let first = message::next_file_position(tx, &sub.id)?;
    for (position, file) in (first..).zip(&req.files) {
        let blob_id = crate::db::new_id();
        blob::insert(tx, &blob_id, &sub.id, "attachment", &file.sealed, now)?;
        let name = sealer.seal(&file.file_name)?;
        let sha256 = sealer.seal(&hex::encode(file.sealed.plaintext_sha256))?;
        message::insert_file(
            tx,
            &NewMessageFile {
                id: &crate::db::new_id(),
                message_id: &id,
                submission_id: &sub.id,
                blob_id: Some(&blob_id),
                position,
                size_bytes: file.sealed.plaintext_len as i64,
                name: &name.stored,
                created_at: now,
                sha256_sealed: Some(&sha256.stored),
            },
        )?;
    }
    if sub.status() == Status::Draft && !req.files.is_empty() {
        let (_, bytes) = submission::draft_usage(tx, &sub.organisation_id)?;
        if bytes.max(0) as u64 > req.max_draft_bytes {
            return Err(AppError::TooLarge(
                "With these files your organisation's drafts would hold more than their files may hold together. \
                 Nothing was sent; attach files to the draft once it is sent, or send or delete drafts."
                    .into(),
            ));
        }
    }
    if sub.status() != Status::Draft && side == Side::Organisation && !req.files.is_empty() {
        crate::workflow::intake::within_unverified_room(
            tx,
            &sub.organisation_id,
            req.unverified,
            false,
        )?;
    }
    let mut reason = format!("message {id} from the {}", side.as_str());
    if rfi {
        reason.push_str(", a formal request for information");
    }
    if !req.files.is_empty() {
        reason.push_str(&format!(", with {} file(s)", req.files.len()));
    }
    // Bound by digest, as officers' reasons are: the auditor can tell that the stored words are the ones sent (until
    // a `keys rotate --data-keys` seals them again, under a new digest).
    reason.push_str(&format!("; words {}", body.audit_ref()));
    let event = Event::new("message.sent", Outcome::Success)
        .object("submission", sub.id.clone())
        .tracking(sub.tracking_number.clone())
        .reason(reason);
    Ok((sub, event))
}

/// Queues, in the message's transaction, the content-free notices of a new message to the other side: the
/// organisation's members for the office's message; every officer for the organisation's (none while the submission
/// is a draft, which officers do not see). "A new message" is one of the notifications a person may turn off. One
/// mail per unread stretch: a person already mailed about a message of this thread it has not read since is not
/// mailed again until it has opened the thread ([`message::mail_turn`]), so a burst of messages is one mail each.
fn queue_notices(
    tx: &mut DbConn,
    mailer: &Mailer,
    sub: &submission::Submission,
    from: Side,
    now: i64,
) -> AppResult<Vec<Queued>> {
    let to = from.other();
    if to == Side::Office && sub.status() == Status::Draft {
        return Ok(Vec::new());
    }
    let path = match to {
        Side::Organisation => format!("/submissions/{}/messages", sub.id),
        Side::Office => format!("/officer/submissions/{}/messages", sub.id),
    };
    let seq = message::last_seq(tx, &sub.id)?;
    let mut queued = Vec::new();
    for (id, email, name, off) in message::recipients(tx, to, &sub.organisation_id)? {
        if !notifications::wanted(Kind::Message, &off)
            || !message::mail_turn(tx, &id, &sub.id, seq)?
        {
            continue;
        }
        queued.push(pending_mail::enqueue(
            tx,
            mailer,
            Kind::Message,
            (&id, &email, &name),
            &path,
            now,
        )?);
    }
    Ok(queued)
}

/// One file of the thread as a decrypting stream, recorded as downloaded (`message file N`, never its name). 410
/// once the submission's content was destroyed. Like an attachment, the stream keeps asking whether its reader may
/// still read the submission ([`access::WhileAdmitted`]) and stops once the answer is no.
pub async fn open_file(
    state: &Services,
    admitted: &Admitted,
    actor: &Actor,
    file_id: &str,
) -> AppResult<OpenedFile> {
    admitted.require_content()?;
    let sub = admitted.submission();
    let (sid, fid) = (sub.id.clone(), file_id.to_string());
    let row = state
        .db
        .run(move |c| Ok(message::file_of(c, &sid, &fid)?))
        .await?
        .ok_or(AppError::NotFound)?;
    let blob_id = row
        .blob_id
        .clone()
        .ok_or_else(|| AppError::Gone("This file was destroyed with the submission.".into()))?;
    let name = access::texts(state, admitted)
        .await?
        .try_open(&row.name)
        .unwrap_or_else(|| format!("message-file-{}", row.position));
    let slot = documents::download_slot(state, actor)?;
    let what = format!("message file {}", row.position);
    let (stream, len) = match documents::open_blob(state, &blob_id).await {
        Ok(opened) => opened,
        Err(e) => {
            return Err(access::failed_before_sending(state, admitted, actor, &what, e).await)
        }
    };
    let stream = Box::pin(access::WhileAdmitted::new(
        state,
        admitted,
        actor,
        what.clone(),
        crate::slots::HeldBody::new(stream, slot),
    ));
    // Decided again in the transaction that records it, as an attachment's download is: an account disabled or
    // moved meanwhile gets nothing, and the refusal is recorded.
    access::record_access(state, admitted, actor, "content.downloaded", Some(what)).await?;
    let name =
        super::content::marked_file_name(sub.status(), sub.tracking_number.as_deref(), &name);
    Ok(OpenedFile { stream, name, len })
}

/// For `user`, the number of unread messages on each of `among` (the submissions a page shows; those with none
/// are left out): for a member of a submitting organisation, the Program Office's messages on its organisation's
/// submissions; for a PCII officer, the organisations' messages on every submission past the draft stage; nothing
/// for other roles. List pages show `get(&submission.id)` as a badge next to the submission's link.
pub async fn unread_for_user(
    state: &Services,
    user: &User,
    among: Vec<String>,
) -> AppResult<HashMap<String, i64>> {
    let Some(side) = Side::of(user.role()) else {
        return Ok(HashMap::new());
    };
    if user.disabled {
        return Ok(HashMap::new());
    }
    let (uid, org) = (user.id.clone(), user.organisation_id.clone());
    state
        .db
        .run(move |c| {
            Ok(message::unread_by_submission(
                c,
                &uid,
                side,
                org.as_deref(),
                &among,
            )?)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_written_to_the_final_decision_and_until_a_not_validated_ones_choice() {
        for status in Status::ALL {
            let open = matches!(
                status,
                Status::Draft
                    | Status::Received
                    | Status::Defective
                    | Status::Validated
                    | Status::NotValidated
            );
            assert_eq!(open_in(status, None), open, "{status:?}");
            for chosen in [Disposition::Return, Disposition::Destroy] {
                assert_eq!(
                    open_in(status, Some(chosen)),
                    open && status != Status::NotValidated,
                    "{status:?} {chosen:?}"
                );
            }
            // A thread closes no later than the content can be destroyed.
            if lifecycle::content_destroyed(status) {
                assert!(!open_in(status, None));
            }
        }
    }

    #[test]
    fn a_message_needs_words_and_not_too_many() {
        assert!(check_body("  \n ").contains_key("body"));
        assert!(check_body("A question").is_empty());
        assert!(check_body(&"x".repeat(BODY_MAX + 1)).contains_key("body"));
    }
}
