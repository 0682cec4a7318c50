//! A submission as a zip package: `COVER-SHEET.txt` (markings and protection statement), `manifest.json`
//! (tracking number, status, files, sizes, SHA-256, which files a cure replaced), `NARRATIVE.txt` (marked top and
//! bottom like the original), the decrypted attachments under safe, unique names, and — for the thread's two
//! sides — `MESSAGES.txt` with the message files under `messages/`. The marking is also the archive comment.
//! Files are decrypted and verified as the archive streams out.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use serde_json::json;

use crate::error::{AppError, AppResult};
use crate::export::{
    last_path_part, package_length, package_stream, safe_member_name, safe_member_name_in,
    PackageEntry, MESSAGES_DIR,
};
use crate::models::message::Side;
use crate::models::submission::{self, Submission};
use crate::services::Services;
use crate::slots::{HeldBody, Slot};
use crate::workflow::content::{marking_for, visible, visible_block, Content};
use crate::workflow::messages::{PackagedMessage, PackagedThread, ThreadWords, THREAD_PAGE};

pub struct Package {
    /// Holds its download slot until the response is done with it.
    pub body: crate::workflow::documents::PlaintextStream,
    pub file_name: String,
    /// The archive's exact length, when every member's is known (always, for a package of stored files).
    pub len: Option<u64>,
}

/// Builds the package of a submission, given its decrypted content document and the message thread to include
/// (`None` when the asker is not one of its sides, or there are no messages). Called by the content-access service
/// (`workflow::access::export_package`) only, once the asker was admitted.
/// `purpose` is "export" or "return"; `by` names who asked (for the cover sheet). `older`: `content` is a version
/// before the one last saved (the one the Office received, a correction pending), so the files are as it held them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build(
    state: &Services,
    slot: Slot,
    sub: &Submission,
    content: &Content,
    older: bool,
    thread: Option<PackagedThread>,
    purpose: &str,
    by: &str,
) -> AppResult<Package> {
    let (messages, words) = match thread {
        Some(t) => (t.messages, Some(t.words)),
        None => (Vec::new(), None),
    };
    let sid = sub.id.clone();
    let attachments = state
        .db
        .run(move |c| {
            let atts = submission::attachments_of(c, &sid)?;
            let mut rows = Vec::new();
            for a in atts {
                let blob = match &a.blob_id {
                    Some(b) => Some(crate::key_store::data_keys::blob_keys(c, b)?),
                    None => None,
                };
                rows.push((a, blob));
            }
            Ok(rows)
        })
        .await?;
    let attachments = if older {
        let mut blobs: HashMap<String, _> = attachments
            .iter()
            .map(|(a, blob)| (a.id.clone(), blob.clone()))
            .collect();
        let as_of = crate::workflow::access::attachments_as_of(
            content,
            attachments.into_iter().map(|(a, _)| a).collect(),
        );
        as_of
            .into_iter()
            .map(|a| {
                let blob = blobs.remove(&a.id).flatten();
                (a, blob)
            })
            .collect()
    } else {
        attachments
    };

    let status = sub.status();
    let marking = marking_for(status, sub.tracking_number.as_deref());
    let tn = sub
        .tracking_number
        .clone()
        .unwrap_or_else(|| "DRAFT".into());
    let now = state.clock.now();
    // A file taken out of the archive is marked like the original, as a single download's name is: its own name
    // (the last part of any path it came with) after the marking and the tracking number.
    let marked = |name: &str| {
        super::content::marked_file_name(
            status,
            sub.tracking_number.as_deref(),
            last_path_part(name),
        )
    };

    let mut used = HashSet::new();
    let mut files = Vec::new();
    let mut sources = Vec::new();
    let position_of: HashMap<&str, i32> = attachments
        .iter()
        .map(|(a, _)| (a.id.as_str(), a.position))
        .collect();
    let mut replaced = 0;
    for (a, blob) in &attachments {
        let Some(blob) = blob else { continue };
        let original = content
            .attachments
            .get(&a.id)
            .map(|i| i.name.clone())
            .unwrap_or_else(|| format!("file-{}", a.position));
        let member = safe_member_name(a.position.max(0) as usize, &marked(&original), &mut used);
        // A file a cure replaced stays in the package (it is on record until destruction), marked as such.
        let replaced_by = a
            .replaced_by
            .as_deref()
            .and_then(|id| position_of.get(id).copied());
        replaced += usize::from(a.replaced_by.is_some());
        files.push(json!({
            "member": member,
            "position": a.position,
            "original_name": visible(&original),
            "description": content.attachments.get(&a.id).map(|i| i.description.clone()).unwrap_or_default(),
            "size_bytes": a.size_bytes,
            "sha256": content.attachments.get(&a.id).map(|i| i.sha256.clone()).filter(|d| !d.is_empty()).or_else(|| a.legacy_sha256.clone()),
            "current": a.replaced_by.is_none(),
            "replaced_by_position": replaced_by,
            "replaced_at": a.replaced_at.map(crate::time::rfc3339),
        }));
        sources.push((member, blob.clone()));
    }
    // The thread's files, after the attachments, under messages/ numbered through the thread.
    let mut message_files = Vec::new();
    let mut message_members: HashMap<(i64, i32), String> = HashMap::new();
    let mut number = 0;
    for m in &messages {
        for f in &m.files {
            number += 1;
            let member = safe_member_name_in(MESSAGES_DIR, number, &marked(&f.name), &mut used);
            message_files.push(json!({
                "member": member,
                "message": m.seq,
                "original_name": visible(&f.name),
                "size_bytes": f.size_bytes,
                "sha256": f.sha256,
            }));
            message_members.insert((m.seq, f.position), member.clone());
            sources.push((member, f.blob.clone()));
        }
    }
    let files_line = if replaced == 0 {
        files.len().to_string()
    } else {
        format!(
            "{} ({replaced} of them replaced by a corrected file, kept for the record)",
            files.len()
        )
    };

    let by = visible(by);
    let cover = format!(
        "{title}\n\
         Tracking number: {tn}\n\
         \n\
         {statement}\n\
         \n\
         Package:      {purpose} of {tn}\n\
         Status:       {status_label}\n\
         Created:      {created} by {by}\n\
         Files:        {files_line}\n\
         Messages:     {messages_line}\n\
         \n\
         This package holds the submission's narrative (NARRATIVE.txt), a manifest with the SHA-256 of\n\
         every file (manifest.json) and the files themselves (attachments/){thread_part}. Every copy made\n\
         from it must carry these markings and be safeguarded in the same way.\n\
         \n\
         {title}\n",
        messages_line = if messages.is_empty() {
            "none in this package".to_string()
        } else {
            format!("{} (MESSAGES.txt; their files under messages/)", messages.len())
        },
        thread_part = if messages.is_empty() {
            ""
        } else {
            ", and the messages between the\n\
             submitting organisation and the PCII Program Office (MESSAGES.txt, messages/)"
        },
        title = marking.title,
        statement = marking.statement,
        status_label = status.label(),
        created = crate::time::datetime(now),
    );
    let manifest = json!({
        "tracking_number": sub.tracking_number,
        "status": status.as_str(),
        "marking": marking.title,
        "protection_statement": marking.statement,
        // The sector of the version packaged (a correction's draft may have changed the row's).
        "sector": if older { &sub.sector } else { sub.saved_sector() },
        "received_at": sub.received_at.map(crate::time::rfc3339),
        "decided_at": sub.decided_at.map(crate::time::rfc3339),
        "exported_at": crate::time::rfc3339(now),
        "purpose": purpose,
        "files": files,
        "messages": messages.len(),
        "message_files": message_files,
    });
    let narrative = narrative_text(content, marking.title, &tn, marking.statement);
    let comment = format!("{} - {tn} - {}", marking.title, marking.statement);

    // Every attachment is opened now, its header and key checked, and closed again (one at a time), so that a
    // missing blob or key is an error page; each is opened again only when the zip writer reaches it (see
    // `LazyBlob`), so one blob at a time is open while the package streams: no read-ahead GET left idle (and timed
    // out) for each later member of a slow download, no buffers, fd or connection held per member.
    let keys = state.current_keys();
    let store = state.blobs.clone();
    let readers = tokio::task::spawn_blocking(move || {
        for (_, r) in &sources {
            drop(crate::key_store::data_keys::open_blob_shared(
                &*store, &keys, r,
            )?);
        }
        Ok::<_, std::io::Error>(
            sources
                .into_iter()
                .map(|(member, r)| {
                    let len = u64::try_from(r.blob.plaintext_len).unwrap_or(0);
                    let (keys, store) = (keys.clone(), store.clone());
                    let reader = LazyBlob::new(move || {
                        crate::key_store::data_keys::open_blob_shared(&*store, &keys, &r)
                            .map(|reader| Box::new(reader) as Box<dyn Read + Send>)
                    });
                    (member, reader, len)
                })
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(|_| AppError::Internal("opening attachments failed".into()))?
    // A store that did not answer is 503 "try again", as for a single file; only a real failure is an integrity error.
    .map_err(crate::workflow::documents::integrity_error)?;

    let mut entries = vec![
        PackageEntry::bytes("COVER-SHEET.txt", cover),
        PackageEntry::bytes(
            "manifest.json",
            serde_json::to_vec_pretty(&manifest).expect("manifest serializes"),
        ),
        PackageEntry::bytes("NARRATIVE.txt", narrative),
    ];
    if let (Some(words), false) = (words, messages.is_empty()) {
        let text = Arc::new(ThreadText {
            head: format!(
                "{}\nTracking number: {tn}\n\nMessages between the submitting organisation and the PCII Program Office, oldest first.\n",
                marking.title
            ),
            foot: format!(
                "\n{}\n\n{}\nTracking number: {tn}\n",
                marking.statement, marking.title
            ),
            messages,
            members: message_members,
            words,
        });
        let sized = text.clone();
        let len = tokio::task::spawn_blocking(move || sized.length())
            .await
            .map_err(|_| AppError::Internal("sizing the thread failed".into()))?
            .map_err(|e| AppError::carried_by(e, "sizing the thread"))?;
        entries.push(PackageEntry::reader_of_len(
            "MESSAGES.txt",
            ThreadTextReader {
                text,
                next: 0,
                buf: Vec::new(),
                pos: 0,
            },
            len,
        ));
    }
    for (member, reader, len) in readers {
        entries.push(PackageEntry::reader_of_len(member, reader, len));
    }
    // Known before the first byte goes out, so that it is sent as `Content-Length` (see `ZipDownload`).
    let (entries, comment, len) = tokio::task::spawn_blocking(move || {
        let len = package_length(&entries, &comment);
        (entries, comment, len)
    })
    .await
    .map_err(|_| AppError::Internal("sizing the package failed".into()))?;
    let len = len.map_err(|e| {
        tracing::error!(error = %e, "sizing a package failed");
        AppError::Internal("the package could not be made".into())
    })?;
    Ok(Package {
        body: Box::pin(HeldBody::new(package_stream(entries, comment), slot)),
        file_name: format!("{tn}-{purpose}.zip"),
        len,
    })
}

type Opener = Box<dyn FnOnce() -> std::io::Result<Box<dyn Read + Send>> + Send>;

/// A member's blob, opened when the zip writer first reads it and closed at its end: the package holds one blob
/// open at a time. A blob that fails to open then fails the package's body (cut short of its `Content-Length`).
struct LazyBlob {
    open: Option<Opener>,
    reader: Option<Box<dyn Read + Send>>,
}

impl LazyBlob {
    fn new(
        open: impl FnOnce() -> std::io::Result<Box<dyn Read + Send>> + Send + 'static,
    ) -> LazyBlob {
        LazyBlob {
            open: Some(Box::new(open)),
            reader: None,
        }
    }
}

impl Read for LazyBlob {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(open) = self.open.take() {
            self.reader = Some(open()?);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(0); // read to its end and closed
        };
        let n = reader.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.reader = None;
        }
        Ok(n)
    }
}

/// `MESSAGES.txt`: the thread, oldest first, marked top and bottom like the narrative — each message's number,
/// time, author and side, whether it is a formal request for information, its words and the members holding its
/// files. It is made a page of messages at a time ([`THREAD_PAGE`], their words read and opened for that page only),
/// so a package holds one page of the thread's words however long the thread: once to count its length (the
/// archive's is sent first), then as it streams. Both give the same text: a message's words never change, and
/// everything else was read once, before.
struct ThreadText {
    head: String,
    foot: String,
    messages: Vec<PackagedMessage>,
    members: HashMap<(i64, i32), String>,
    words: ThreadWords,
}

impl ThreadText {
    /// The `i`th piece of the text: the heading, a page of messages, the closing marking; `None` past the end.
    fn piece(&self, i: usize) -> std::io::Result<Option<Vec<u8>>> {
        let page_len = THREAD_PAGE as usize;
        let pages = self.messages.len().div_ceil(page_len);
        if i == 0 {
            return Ok(Some(self.head.clone().into_bytes()));
        }
        if i == pages + 1 {
            return Ok(Some(self.foot.clone().into_bytes()));
        }
        let Some(page) = self.messages.chunks(page_len).nth(i - 1) else {
            return Ok(None);
        };
        let (first, last) = (page[0].seq, page[page.len() - 1].seq);
        let mut words: HashMap<i64, String> = self.words.open(first, last)?.into_iter().collect();
        let mut out = String::new();
        for m in page.iter() {
            let body = words.remove(&m.seq).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a message of the thread is no longer there",
                )
            })?;
            let side = match m.side {
                Side::Organisation => "submitting organisation",
                Side::Office => "PCII Program Office",
            };
            out.push_str(&format!(
                "\n--- Message {} - {} - {} ({side}){}\n\n{}\n",
                m.seq,
                crate::time::datetime(m.at),
                visible(&m.author),
                if m.request_for_information {
                    " - formal request for information"
                } else {
                    ""
                },
                visible_block(&body),
            ));
            for f in &m.files {
                if let Some(member) = self.members.get(&(m.seq, f.position)) {
                    let digest = f
                        .sha256
                        .as_deref()
                        .map(|d| format!(", SHA-256 {d}"))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "File: {member} ({} bytes{digest})\n",
                        f.size_bytes
                    ));
                }
            }
        }
        Ok(Some(out.into_bytes()))
    }

    /// The text's length in bytes, found by making it a piece at a time (on a blocking thread).
    fn length(&self) -> std::io::Result<u64> {
        let mut len = 0u64;
        let mut i = 0;
        while let Some(piece) = self.piece(i)? {
            len += piece.len() as u64;
            i += 1;
        }
        Ok(len)
    }
}

/// Reads [`ThreadText`] a piece at a time as the zip writer asks for it.
struct ThreadTextReader {
    text: Arc<ThreadText>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ThreadTextReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.text.piece(self.next)? {
                Some(piece) => {
                    self.buf = piece;
                    self.pos = 0;
                    self.next += 1;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn narrative_text(c: &Content, title: &str, tn: &str, statement: &str) -> String {
    let contact = |k: &crate::workflow::content::Contact| {
        if k.is_empty() {
            "—".to_string()
        } else {
            format!(
                "{} <{}> {}",
                visible(&k.name),
                visible(&k.email),
                visible(&k.phone)
            )
        }
    };
    format!(
        "{title}\nTracking number: {tn}\n\nTitle: {}\nPrimary contact: {}\nSecondary contact: {}\nFollows up: {}\nFederal legal requirement: {}\n\n{}\n\n{statement}\n\n{title}\nTracking number: {tn}\n",
        visible(&c.title),
        contact(&c.primary_contact),
        contact(&c.secondary_contact),
        if c.follows_up.is_empty() { "—" } else { &c.follows_up },
        if c.federal_requirement {
            format!("yes — {}, {}", visible(&c.federal_agency), visible(&c.federal_authority))
        } else {
            "no".into()
        },
        visible_block(&c.narrative),
    )
}
