//! The submission form's multipart body, read as a stream: text fields into memory (capped), each file
//! straight into a [`BlobSealer`] (hashed, age-encrypted and written as it arrives). No temporary
//! upload file, no plaintext on disk, memory bounded whatever the file size.
//!
//! The anti-forgery token must be the first part; nothing else is read before it matched. On any failure
//! every blob this request started or committed is removed before the error is returned, so a refused
//! or aborted upload leaves nothing behind.
//!
//! A body must arrive within the upload's window ([`upload_window_secs`]) from the request's start: past it the
//! request is refused (408) and its blobs are removed, so that no blob it committed grows older than the orphan
//! sweep's grace before its row commits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use rocket::data::{Data, ToByteUnit};
use rocket::http::ContentType;
use tokio_util::io::ReaderStream;

use crate::crypto::stream::{BlobSealer, Recipients};
use crate::error::{AppError, AppResult};
use crate::services::Services;
use crate::slots::{Full, Slot, Slots};
use crate::web::forms::{TokenCheck, CSRF_FIELD};
use crate::web::pages::human_size;
use crate::workflow::blobs::upload_window_secs;
use crate::workflow::content::{FormFields, FILE_NAME_MAX};
use crate::workflow::documents::delete_blobs;
use crate::workflow::intake::Binding;
use crate::workflow::intake::{FileSlot, IncomingFile};

mod part_headers;
use part_headers::{HeaderTooLong, PartHeaderEscaper, HEADER_BLOCK_MAX};

/// A text field (a narrative) and all text fields of one request: generous for prose, small enough that the
/// concurrent uploads' text held in memory stays bounded (`max_concurrent_uploads` times this).
const TEXT_FIELD_MAX: usize = 512 * 1024;
const TEXT_TOTAL_MAX: usize = 1024 * 1024;
const FIELDS_MAX: usize = 500;
/// A field's name: the form's own are under 64 bytes (`attachment_description_<id>`); anything longer is
/// not this form's, and is refused before it is kept (names count towards [`TEXT_TOTAL_MAX`] too).
const FIELD_NAME_MAX: usize = 128;
/// Multipart framing allowed on top of the file bytes the limits count.
const FRAMING_SLACK: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    /// Bytes of files this request may still add to the submission.
    pub max_total_bytes: u64,
    /// Files this request may still add.
    pub max_files: usize,
    /// Which limit `max_total_bytes` comes from: a file over it is told that one.
    pub binding: crate::workflow::intake::Binding,
    /// What the files are attached to: the limits a file over them is told of are that one's.
    pub holder: Holder,
    /// The data key the files are sealed to as they arrive.
    pub seal_to: Recipients,
    /// Files the form may tick for removal, with their sizes (see [`crate::workflow::intake::Allowance`]). The
    /// form lists them before its file inputs, so a `remove` value is read before the files it makes room for.
    pub removable: Vec<(String, u64)>,
}

#[derive(Debug, Default)]
pub struct SubmissionForm {
    pub fields: FormFields,
    pub files: Vec<IncomingFile>,
    /// Values of the repeated `remove` field (attachment ids).
    pub remove: Vec<String>,
}

/// A file over a limit (its own size, the submission's total, or the number of files): which file, which
/// limit, and the text fields read before it, so that the form can be shown again with what was typed.
pub struct FileTooLarge {
    /// The file's name as sent (shown escaped on the page, never logged).
    pub file_name: String,
    /// The id of the file input it came from (`file_3`, `files_1` for the picker, `replace_<id>`), for the error
    /// next to that field.
    pub field: String,
    pub limit: SizeLimit,
    /// The text fields read before the file; those after it were not read.
    pub fields: FormFields,
}

/// What an upload's files are attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Submission,
    Message,
}

/// Which limit a file went over.
#[derive(Debug, Clone, Copy)]
pub enum SizeLimit {
    /// Bytes per file.
    PerFile(u64),
    /// Bytes of all files of one message.
    MessageTotal(u64),
    /// Files of one message.
    MessageCount(usize),
    /// Bytes of all files of a submission.
    Total(u64),
    /// Files of a submission.
    Count(u32),
    /// Bytes of files of all the organisation's drafts together.
    DraftRoom(u64),
    /// What an organisation not verified yet may hold sent (its own cap, or all unverified organisations').
    UnverifiedRoom,
}

/// `1 MiB` rather than `1.0 MiB`: limits are round numbers.
fn limit_size(bytes: u64) -> String {
    human_size(bytes).replace(".0 ", " ")
}

/// Without the file's name or the text: neither may reach a log.
impl std::fmt::Debug for FileTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTooLarge")
            .field("field", &self.field)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl FileTooLarge {
    /// What the person reads: the file named, the limit, that nothing was kept, what to do.
    pub fn message(&self) -> String {
        // As a file's name is shown everywhere else: control and bidirectional characters made visible (one could
        // reorder the rest of the sentence), and a long one shortened.
        let name = crate::workflow::content::shortened(
            &crate::workflow::content::visible(&self.file_name),
            120,
        );
        match self.limit {
            SizeLimit::PerFile(max) => format!(
                "\u{201c}{name}\u{201d} is larger than the limit of {} per file. Nothing was saved; attach a smaller file.",
                limit_size(max)
            ),
            SizeLimit::Total(max) => format!(
                "\u{201c}{name}\u{201d} takes the files over the limit of {} per submission. Nothing was saved; attach smaller files or fewer.",
                limit_size(max)
            ),
            SizeLimit::MessageTotal(max) => format!(
                "\u{201c}{name}\u{201d} takes the files over the limit of {} per message. Nothing was sent; attach smaller files or fewer.",
                limit_size(max)
            ),
            SizeLimit::MessageCount(max) => format!(
                "\u{201c}{name}\u{201d} is one file too many: a message carries at most {max} files. Nothing was sent; attach fewer files."
            ),
            SizeLimit::Count(max) => format!(
                "\u{201c}{name}\u{201d} is one file too many: a submission holds at most {max} files. Nothing was saved; attach fewer files."
            ),
            SizeLimit::DraftRoom(max) => format!(
                "\u{201c}{name}\u{201d} takes your organisation's drafts over the {} their files may hold together. Nothing was saved; send or delete drafts, or attach smaller files.",
                limit_size(max)
            ),
            SizeLimit::UnverifiedRoom => format!(
                "\u{201c}{name}\u{201d} takes what your organisation has sent past what it may hold: it has not been verified by the PCII Program Office yet. Nothing was saved; the Program Office verifies new organisations (ask it if this takes long), or attach smaller files."
            ),
        }
    }
}

/// Why a form was not read: a file over a limit (the form can be shown again), or any other refusal.
#[derive(Debug)]
pub enum ReadRefusal {
    FileTooLarge(Box<FileTooLarge>),
    Other(AppError),
}

impl From<ReadRefusal> for AppError {
    fn from(r: ReadRefusal) -> AppError {
        match r {
            ReadRefusal::FileTooLarge(f) => AppError::TooLarge(f.message()),
            ReadRefusal::Other(e) => e,
        }
    }
}

/// A multipart body whose anti-forgery token (its first part) matched; nothing else was read yet.
pub struct FormStream<'r> {
    multipart: multer::Multipart<'r>,
    /// The portal's time (Unix seconds) by which the body must have arrived: the request's start plus the
    /// upload's window.
    deadline: i64,
}

/// An upload past its window: nothing is kept, and the person is told why.
fn too_slow(window_secs: i64) -> AppError {
    let window = if window_secs >= 120 {
        format!("{} minutes", window_secs / 60)
    } else {
        format!("{window_secs} seconds")
    };
    AppError::TimedOut(format!(
        "The upload took longer than the {window} the portal allows for one form. Nothing was saved; send \
         fewer or smaller files at once, or send them over a faster connection."
    ))
}

fn token_refused() -> AppError {
    AppError::Refused(
        "The form's security token did not match. Reload the page and send it again.".into(),
    )
}

/// How many submission forms are being received at once, in all and per account. Each holds a connection, up to
/// a megabyte of text and a sealing pipeline: past the caps a new one is refused at once, not queued.
pub struct UploadSlots(Arc<Slots>);

impl UploadSlots {
    pub fn new(total: u32, per_account: u32) -> UploadSlots {
        UploadSlots(Slots::new(total, per_account))
    }

    /// 429 when the account already sends as many as it may, 503 when the portal receives as many as it will.
    pub fn enter(&self, account: &str) -> AppResult<Slot> {
        self.0.enter(account).map_err(|full| match full {
            Full::Account(mine) => AppError::Throttled(format!(
                "Your account is already sending {mine} forms with files. Wait until one has finished, then send this one again."
            )),
            Full::All => AppError::Unavailable("every upload slot is in use".into()),
        })
    }

    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.0.in_use()
    }
}

/// A write to the blob store failed: a full disk is said as such (507), a store that does not answer is 503 —
/// both after the rest of the body is read (within [`DISCARD_MAX`]), so that the browser sees the answer and not a
/// reset connection; anything else is ours (500).
fn store_fault(what: &str, e: std::io::Error) -> Failure {
    match AppError::io(what, e) {
        passing @ (AppError::StorageFull(_) | AppError::Unavailable(_)) => {
            Failure::Refused(passing)
        }
        other => Failure::Broken(other),
    }
}

/// Checks the anti-forgery token before anything else: a body that is not multipart, or whose first
/// part is not a matching token, is refused (403, audited) whatever else it holds.
pub async fn open_form<'r>(
    token: &TokenCheck<'_>,
    state: &Services,
    content_type: Option<&ContentType>,
    data: Data<'r>,
) -> AppResult<FormStream<'r>> {
    // The window starts before anything is read: every blob of this request is younger than the request.
    let deadline = state
        .clock
        .now()
        .saturating_add(upload_window_secs(state.settings.blob_sweep_grace_minutes));
    let Some(boundary) = content_type
        .filter(|ct| ct.is_form_data())
        .and_then(|ct| ct.param("boundary"))
    else {
        token.refused("missing token").await;
        return Err(token_refused());
    };
    // RFC 2046: 1 to 70 characters. Every read is scanned for it, so a longer one only costs the portal work.
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(AppError::Malformed(
            "The form's multipart boundary is not 1 to 70 characters long. Send the form again from the \
             portal's page. Nothing was saved."
                .into(),
        ));
    }
    let open_limit = state
        .settings
        .max_submission_bytes
        .saturating_add(FRAMING_SLACK);
    let stream = ReaderStream::with_capacity(data.open(open_limit.bytes()), 64 * 1024);
    let stream = WindowEnd::new(stream, state.clock.clone(), deadline);
    let stream = BoundedBursts::new(PartHeaderEscaper::new(stream, boundary));
    let mut multipart = multer::Multipart::new(stream, boundary.to_string());
    match read_token(&mut multipart, token).await {
        Ok(()) => Ok(FormStream {
            multipart,
            deadline,
        }),
        Err(Failure::Csrf(reason)) => {
            token.refused(reason).await;
            Err(token_refused())
        }
        Err(Failure::Refused(e) | Failure::Broken(e)) => Err(e),
        // The token is read before any file.
        Err(Failure::FileTooLarge(..)) => Err(token_refused()),
    }
}

/// Ends the body with a `TimedOut` error when the request's window runs out while the portal waits for more of it,
/// or when the body arrives slower than [`PROGRESS_MIN_BYTES`] per [`PROGRESS_SECS`] (a drip of a byte every few
/// seconds passes nginx's `client_body_timeout`, and a few accounts doing it would hold every upload slot for the
/// whole window). The window is otherwise checked as pieces arrive, so a client that stops sending would hold its
/// connection and its upload slot for as long as it liked. While waiting it looks at the portal's clock once a
/// second. Only time spent waiting for the client counts against its progress: a stretch in which the portal did
/// not read (sealing, a commit) starts the count again.
struct WindowEnd<S> {
    inner: S,
    clock: crate::clock::Clock,
    deadline: i64,
    tick: tokio::time::Interval,
    over: bool,
    received: u64,
    /// Since when (the portal's clock) and from how many bytes received the progress is counted.
    progress_from: (i64, u64),
    /// When the portal last asked for more (real time: a gap means the portal was busy, not the client slow).
    last_asked: std::time::Instant,
}

/// The least an upload must progress while the portal waits for it: 512 KiB in two minutes (35 kbit/s, below any
/// link a form of files is sent over; a client that keeps above it pays for its slot in bandwidth).
pub const PROGRESS_MIN_BYTES: u64 = 512 * 1024;
pub const PROGRESS_SECS: i64 = 120;

impl<S> WindowEnd<S> {
    fn new(inner: S, clock: crate::clock::Clock, deadline: i64) -> Self {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let now = clock.now();
        WindowEnd {
            inner,
            clock,
            deadline,
            tick,
            over: false,
            received: 0,
            progress_from: (now, 0),
            last_asked: std::time::Instant::now(),
        }
    }

    fn end(&mut self, why: WindowOver) -> Poll<Option<std::io::Result<Bytes>>> {
        self.over = true;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            why,
        ))))
    }
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for WindowEnd<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.over {
            return Poll::Ready(None);
        }
        if self.last_asked.elapsed() >= std::time::Duration::from_secs(2) {
            // The portal was busy, not waiting: the client's progress is counted from now.
            self.progress_from = (self.clock.now(), self.received);
        }
        self.last_asked = std::time::Instant::now();
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &next {
            self.received += bytes.len() as u64;
            if self.received - self.progress_from.1 >= PROGRESS_MIN_BYTES {
                self.progress_from = (self.clock.now(), self.received);
            }
        }
        if next.is_ready() {
            return next;
        }
        // Nothing to read: until the next tick is pending (which registers the wake-up), look at the clock.
        while self.tick.poll_tick(cx).is_ready() {
            let now = self.clock.now();
            if now > self.deadline {
                return self.end(WindowOver::Window);
            }
            if now - self.progress_from.0 > PROGRESS_SECS {
                return self.end(WindowOver::TooSlow);
            }
        }
        Poll::Pending
    }
}

/// The error [`WindowEnd`] ends a body with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowOver {
    /// The request's window ran out.
    Window,
    /// Less than [`PROGRESS_MIN_BYTES`] arrived in [`PROGRESS_SECS`] of waiting.
    TooSlow,
}

impl std::fmt::Display for WindowOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WindowOver::Window => "the upload's window ran out while waiting for the body",
            WindowOver::TooSlow => "the upload arrived too slowly",
        })
    }
}

impl std::error::Error for WindowOver {}

impl WindowOver {
    /// Which of these multer's error is, passed through from the stream.
    fn caused(e: &multer::Error) -> Option<WindowOver> {
        match e {
            multer::Error::StreamReadFailed(inner) => inner
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
                .and_then(|e| e.downcast_ref::<WindowOver>())
                .copied(),
            _ => None,
        }
    }
}

/// Hands multer at most [`BODY_BURST`] bytes of the body per poll.
///
/// multer reads everything its stream has ready into one growing buffer before it parses. While
/// an upload waited for the sealer, the socket filled up, and the next poll gathered megabytes
/// at once: large buffers, copied as they grew, that malloc then kept. Answering `Pending` (and
/// waking at once) after a burst keeps that buffer small.
struct BoundedBursts<S> {
    inner: S,
    burst: usize,
}

/// How long the rest of a refused body is drained at most before the answer goes out regardless.
const DISCARD_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Body bytes multer may gather per poll: a few reads, as large as the sealer's pieces.
const BODY_BURST: usize = 256 * 1024;

impl<S> BoundedBursts<S> {
    fn new(inner: S) -> Self {
        BoundedBursts { inner, burst: 0 }
    }
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for BoundedBursts<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.burst >= BODY_BURST {
            self.burst = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => self.burst += chunk.len(),
            _ => self.burst = 0,
        }
        next
    }
}

async fn read_token(
    mp: &mut multer::Multipart<'_>,
    token_check: &TokenCheck<'_>,
) -> Result<(), Failure> {
    let Some(mut first) = mp.next_field().await.map_err(broken)? else {
        return Err(Failure::Csrf("missing token"));
    };
    if first.name() != Some(CSRF_FIELD) {
        return Err(Failure::Csrf("missing token"));
    }
    let mut token = Vec::new();
    while let Some(chunk) = first.chunk().await.map_err(broken)? {
        if token.len() + chunk.len() > 256 {
            return Err(Failure::Csrf("wrong token"));
        }
        token.extend_from_slice(&chunk);
    }
    if token_check.matches(&String::from_utf8_lossy(&token)) {
        Ok(())
    } else {
        Err(Failure::Csrf("wrong token"))
    }
}

impl FormStream<'_> {
    /// Reads the rest of the body. Errors: 400 malformed or interrupted, 413 over a limit (named).
    pub async fn read(self, state: &Services, limits: Limits) -> AppResult<SubmissionForm> {
        self.read_keeping(state, limits)
            .await
            .map_err(AppError::from)
    }

    /// Reads the rest of the body like [`FormStream::read`], but a file over a limit comes back as
    /// [`ReadRefusal::FileTooLarge`] with the text read before it (the body is drained and nothing is kept).
    pub async fn read_keeping(
        mut self,
        state: &Services,
        limits: Limits,
    ) -> Result<SubmissionForm, ReadRefusal> {
        let mut reader = Reader {
            state,
            limits,
            form: SubmissionForm::default(),
            sealer: None,
            file_bytes: 0,
            text_bytes: 0,
            fields: 0,
            deadline: self.deadline,
        };
        match reader.read_all(&mut self.multipart).await {
            Ok(()) => Ok(reader.form),
            Err(failure) => {
                if let Some(sealer) = reader.sealer.take() {
                    sealer.abort().await;
                }
                let names = reader.form.files.drain(..).map(|f| f.sealed.name).collect();
                delete_blobs(state, names).await;
                match failure {
                    Failure::Refused(e) => {
                        self.discard().await;
                        Err(ReadRefusal::Other(e))
                    }
                    Failure::FileTooLarge(limit, slot, file_name) => {
                        self.discard().await;
                        Err(ReadRefusal::FileTooLarge(Box::new(FileTooLarge {
                            file_name,
                            field: input_id(&slot),
                            limit,
                            fields: std::mem::take(&mut reader.form.fields),
                        })))
                    }
                    Failure::Csrf(_) => Err(ReadRefusal::Other(token_refused())),
                    Failure::Broken(e) => Err(ReadRefusal::Other(e)),
                }
            }
        }
    }

    /// Reads and drops the rest of the body, so that a browser gets the answer to a refused upload
    /// instead of a reset connection. The body is capped when it is opened, and the time spent draining it is
    /// capped here ([`DISCARD_MAX`]; the window ends it too): a refused client that trickles its body does not keep
    /// the connection and its upload slot for long.
    pub async fn discard(mut self) {
        let drain = async {
            while let Ok(Some(mut field)) = self.multipart.next_field().await {
                while let Ok(Some(_)) = field.chunk().await {}
            }
        };
        if tokio::time::timeout(DISCARD_MAX, drain).await.is_err() {
            tracing::info!("stopped draining a refused upload's body");
        }
    }
}

enum Failure {
    Csrf(&'static str),
    /// The request was readable but is refused (limits, bad field): answer after draining.
    Refused(AppError),
    /// A file over a limit (which, its field, its name): answer after draining, with the form again.
    FileTooLarge(SizeLimit, FileSlot, String),
    /// The body itself broke (client went away, malformed framing).
    Broken(AppError),
}

struct Reader<'a> {
    state: &'a Services,
    limits: Limits,
    form: SubmissionForm,
    sealer: Option<BlobSealer>,
    file_bytes: u64,
    text_bytes: usize,
    fields: usize,
    deadline: i64,
}

fn broken(e: multer::Error) -> Failure {
    match WindowOver::caused(&e) {
        Some(WindowOver::Window) => {
            tracing::info!("an upload stopped arriving and its window ran out");
            return Failure::Refused(AppError::TimedOut(
                "The upload stopped arriving and ran out of the time the portal allows for one form. Nothing was \
                 saved; send the form again."
                    .into(),
            ));
        }
        Some(WindowOver::TooSlow) => {
            tracing::info!("an upload arrived too slowly and was ended");
            return Failure::Refused(AppError::TimedOut(format!(
                "The upload arrived too slowly (less than {} KiB in {} minutes). Nothing was saved; send the form \
                 again over a faster connection.",
                PROGRESS_MIN_BYTES / 1024,
                PROGRESS_SECS / 60
            )));
        }
        None => {}
    }
    tracing::info!(error = %e, "a multipart body could not be read");
    let message = match e {
        // Control characters in file names are escaped before multer sees them (part_headers), so
        // this is a header that is malformed in itself.
        multer::Error::ReadHeaderFailed(_)
        | multer::Error::IncompleteHeaders
        | multer::Error::DecodeHeaderName { .. }
        | multer::Error::DecodeHeaderValue { .. } => "A part of the form has a header that cannot \
            be read. Send the form again from the portal's page. Nothing was saved."
            .to_string(),
        e if HeaderTooLong::caused(&e) => format!(
            "A part of the form has a header over {} KiB, such as a very long file name. Rename \
             the file and send the form again. Nothing was saved.",
            HEADER_BLOCK_MAX / 1024
        ),
        _ => "The upload was interrupted or is not a well-formed form. Nothing was saved.".into(),
    };
    Failure::Broken(AppError::Malformed(message))
}

/// The id of the file input a slot's files come from (the template's ids; the first picker row for the picker).
fn input_id(slot: &FileSlot) -> String {
    match slot {
        FileSlot::Numbered(n) => format!("file_{n}"),
        FileSlot::Picker => "files_1".to_string(),
        FileSlot::Replace(id) => format!("replace_{id}"),
    }
}

/// The file fields: the `files` picker, `replace_<attachment id>` (a cure), and `file_N` (the older form).
fn file_slot(name: &str) -> Option<FileSlot> {
    if name == "files" {
        return Some(FileSlot::Picker);
    }
    if let Some(id) = name.strip_prefix("replace_") {
        let plausible = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        return plausible.then(|| FileSlot::Replace(id.to_string()));
    }
    name.strip_prefix("file_")?
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .map(FileSlot::Numbered)
}

impl Reader<'_> {
    /// Refuses the request once its window is over (checked as each piece of the body arrives, and at its end).
    fn in_time(&self) -> Result<(), Failure> {
        if self.state.clock.now() > self.deadline {
            let window = upload_window_secs(self.state.settings.blob_sweep_grace_minutes);
            tracing::info!(window_secs = window, "an upload went past its window");
            return Err(Failure::Refused(too_slow(window)));
        }
        Ok(())
    }

    async fn read_all(&mut self, mp: &mut multer::Multipart<'_>) -> Result<(), Failure> {
        while let Some(mut field) = mp.next_field().await.map_err(broken)? {
            self.in_time()?;
            self.fields += 1;
            if self.fields > FIELDS_MAX {
                return Err(Failure::Refused(AppError::Malformed(
                    "The form has too many fields.".into(),
                )));
            }
            let name = field.name().unwrap_or("").to_string();
            if name.len() > FIELD_NAME_MAX {
                return Err(Failure::Refused(AppError::Malformed(
                    "A field name of the form is too long.".into(),
                )));
            }
            match (
                file_slot(&name),
                field.file_name().map(part_headers::file_name),
            ) {
                (Some(slot), Some(file_name)) => {
                    self.read_file(&mut field, slot, file_name).await?
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(Failure::Refused(AppError::Malformed(
                        "Files can only be attached in the form's file fields.".into(),
                    )))
                }
                (None, None) => self.read_text(&mut field, name).await?,
            }
        }
        // The whole body arrived: the save commits right after this.
        self.in_time()
    }

    async fn read_text(
        &mut self,
        field: &mut multer::Field<'_>,
        name: String,
    ) -> Result<(), Failure> {
        let mut value = Vec::new();
        // The name is kept beside the value: it counts towards the form's text.
        self.text_bytes += name.len();
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            self.in_time()?;
            self.text_bytes += chunk.len();
            if value.len() + chunk.len() > TEXT_FIELD_MAX || self.text_bytes > TEXT_TOTAL_MAX {
                return Err(Failure::Refused(AppError::TooLarge(
                    "A text field of the form is too long.".into(),
                )));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value).map_err(|_| {
            Failure::Refused(AppError::Malformed(
                "The form's text is not valid UTF-8.".into(),
            ))
        })?;
        if name == "remove" {
            // Each file gives its room back once, whatever is posted.
            if let Some(at) = self
                .limits
                .removable
                .iter()
                .position(|(id, _)| *id == value)
            {
                let (_, size) = self.limits.removable.swap_remove(at);
                self.limits.max_total_bytes = self.limits.max_total_bytes.saturating_add(size);
                self.limits.max_files = self.limits.max_files.saturating_add(1);
            }
            self.form.remove.push(value);
        } else {
            self.form.fields.0.insert(name, value);
        }
        Ok(())
    }

    async fn read_file(
        &mut self,
        field: &mut multer::Field<'_>,
        slot: FileSlot,
        file_name: String,
    ) -> Result<(), Failure> {
        let first = field.chunk().await.map_err(broken)?;
        if file_name.trim().is_empty() {
            // An empty file input still sends a part with an empty name and no bytes: skip it. Bytes without a
            // name (no browser sends them) are refused: a file is listed, and its copies saved, by its name.
            if first.as_ref().is_some_and(|b| !b.is_empty()) {
                return Err(Failure::Refused(AppError::Malformed(
                    "A file was sent without a file name: send it with its name.".into(),
                )));
            }
            while field.chunk().await.map_err(broken)?.is_some() {}
            return Ok(());
        }
        if self.form.files.len() >= self.limits.max_files {
            let limit = match self.limits.holder {
                Holder::Submission => SizeLimit::Count(self.state.settings.max_files),
                Holder::Message => SizeLimit::MessageCount(self.limits.max_files),
            };
            return Err(Failure::FileTooLarge(limit, slot, file_name));
        }
        let file_name = if file_name.len() > FILE_NAME_MAX {
            let mut cut = FILE_NAME_MAX;
            while !file_name.is_char_boundary(cut) {
                cut -= 1;
            }
            file_name[..cut].to_string()
        } else {
            file_name
        };
        let sealer = BlobSealer::start(self.state.blobs.clone(), &self.limits.seal_to)
            .map_err(|e| store_fault("starting a blob", e))?;
        self.sealer = Some(sealer);
        let mut next = first;
        while let Some(chunk) = next {
            self.in_time()?;
            let sealer = self.sealer.as_mut().expect("sealer is set");
            if sealer.plaintext_len() + chunk.len() as u64 > self.limits.max_file_bytes {
                return Err(Failure::FileTooLarge(
                    SizeLimit::PerFile(self.limits.max_file_bytes),
                    slot,
                    file_name,
                ));
            }
            if self.file_bytes + chunk.len() as u64 > self.limits.max_total_bytes {
                let limit = match self.limits.binding {
                    Binding::Drafts => {
                        SizeLimit::DraftRoom(self.state.settings.max_draft_bytes_per_organisation)
                    }
                    Binding::Unverified => SizeLimit::UnverifiedRoom,
                    Binding::Submission => match self.limits.holder {
                        Holder::Submission => {
                            SizeLimit::Total(self.state.settings.max_submission_bytes)
                        }
                        Holder::Message => SizeLimit::MessageTotal(self.limits.max_total_bytes),
                    },
                };
                return Err(Failure::FileTooLarge(limit, slot, file_name));
            }
            self.file_bytes += chunk.len() as u64;
            sealer
                .write(chunk)
                .await
                .map_err(|e| store_fault("sealing an upload", e))?;
            next = field.chunk().await.map_err(broken)?;
        }
        let sealer = self.sealer.take().expect("sealer is set");
        let sealed = sealer
            .finish()
            .await
            .map_err(|e| store_fault("sealing an upload", e))?;
        self.form.files.push(IncomingFile {
            slot,
            file_name,
            sealed,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn upload_slots_cap_each_account_and_the_portal_and_come_back_when_dropped() {
        let slots = UploadSlots::new(3, 2);
        let a1 = slots.enter("a").unwrap();
        let _a2 = slots.enter("a").unwrap();
        assert!(matches!(slots.enter("a"), Err(AppError::Throttled(_))));
        let _b1 = slots.enter("b").unwrap();
        assert!(matches!(slots.enter("c"), Err(AppError::Unavailable(_))));
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        let _c1 = slots.enter("c").unwrap();
        assert_eq!(slots.in_use(), 3);
    }

    use super::*;
    use futures::task::noop_waker_ref;
    use futures::StreamExt;

    #[test]
    fn bounded_bursts_pause_after_a_burst_and_lose_nothing() {
        let chunks = || {
            futures::stream::iter(
                (0..5u8).map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![i; 100 * 1024]))),
            )
        };
        let mut stream = BoundedBursts::new(chunks());
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut polls = Vec::new();
        loop {
            match Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(chunk)) => polls.push(Some(chunk.unwrap()[0])),
                Poll::Ready(None) => break,
                Poll::Pending => polls.push(None),
            }
        }
        // All five chunks were ready at once; a reader that gathers everything ready (as multer
        // does) gets them 300 KiB at a time, not 500 KiB.
        assert_eq!(polls, [Some(0), Some(1), Some(2), None, Some(3), Some(4)]);
        let all: Vec<u8> =
            futures::executor::block_on(BoundedBursts::new(chunks()).collect::<Vec<_>>())
                .into_iter()
                .flat_map(|chunk| chunk.unwrap())
                .collect();
        assert_eq!(all.len(), 500 * 1024);
        assert!(all
            .chunks(100 * 1024)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    }
}
