//! View models shared by every audience's pages: a submission's record, its content document, its files,
//! what its destruction left. Typed, so a template reads only what is put here; content appears only
//! where a page was admitted to it (`workflow::access`).

use serde::Serialize;

use crate::domain::{Disposition, Status, TRAINING_VALID_DAYS};
use crate::models::account::User;
use crate::models::attachment::Attachment;
use crate::models::destruction::DestructionRow;
use crate::models::event::EventRow;
use crate::models::grant::{DisseminationView, GrantView};
use crate::models::notice::NoticeRow;
use crate::models::submission::{Submission, SubmissionListRow};
use crate::time::DAY;
use crate::web::pages::human_size;
use crate::workflow::content::{marking_for, visible, Contact, Content, Marking};
use crate::workflow::sealed_text::Texts;

#[derive(Serialize)]
pub struct FileView {
    pub id: String,
    pub position: i32,
    pub name: String,
    pub description: String,
    pub size: i64,
    pub size_label: String,
    /// SHA-256 of the file (from the sealed content document; empty where the content is not shown).
    pub sha256: String,
    /// SHA-256 of its stored ciphertext: the receipt shows it, and a destruction record lists it.
    pub stored_sha256: String,
    pub added_at: i64,
    pub available: bool,
    /// The files this one replaced, earliest first.
    pub replaces: Vec<ReplacedFile>,
}

/// A submission's current files, in list order: a corrected file takes the place of the one it replaced (it keeps
/// its own number) and carries the files it replaced, which stay on record ([`FileView::replaces`]).
pub fn file_views(content: Option<&Content>, attachments: &[Attachment]) -> Vec<FileView> {
    let mut current: Vec<(i32, FileView)> = attachments
        .iter()
        .filter(|a| a.is_current())
        .map(|a| {
            let mut view = file_view(content, a);
            let mut at = a;
            // Back along its replacements; bounded, so that a damaged chain cannot loop.
            for _ in 0..attachments.len() {
                let Some(before) = attachments
                    .iter()
                    .find(|o| o.replaced_by.as_deref() == Some(at.id.as_str()))
                else {
                    break;
                };
                view.replaces.insert(
                    0,
                    ReplacedFile {
                        file: Box::new(file_view(content, before)),
                        replaced_at: before.replaced_at.unwrap_or(at.added_at),
                        replaced_by: at.position,
                    },
                );
                at = before;
            }
            (at.position, view)
        })
        .collect();
    current.sort_by_key(|(place, v)| (*place, v.position));
    current.into_iter().map(|(_, v)| v).collect()
}

fn file_view(content: Option<&Content>, a: &Attachment) -> FileView {
    let info = content.and_then(|c| c.attachments.get(&a.id));
    FileView {
        id: a.id.clone(),
        position: a.position,
        name: info
            .map(|i| visible(&i.name))
            .unwrap_or_else(|| format!("File {}", a.position)),
        description: info.map(|i| i.description.clone()).unwrap_or_default(),
        size: a.size_bytes,
        size_label: human_size(a.size_bytes.max(0) as u64),
        sha256: info
            .map(|i| i.sha256.clone())
            .filter(|d| !d.is_empty())
            .or_else(|| a.legacy_sha256.clone())
            .unwrap_or_default(),
        stored_sha256: a.stored_sha256.clone().unwrap_or_default(),
        added_at: a.added_at,
        available: a.blob_id.is_some(),
        replaces: Vec::new(),
    }
}

/// A file a cure replaced: on record and readable by whoever reads the submission, until it is destroyed with it.
#[derive(Serialize)]
pub struct ReplacedFile {
    #[serde(flatten)]
    pub file: Box<FileView>,
    pub replaced_at: i64,
    /// The number of the file that took its place.
    pub replaced_by: i32,
}

/// The content document as the pages show it (auto-escaped by the templates).
#[derive(Serialize)]
pub struct ContentView<'a> {
    pub title: String,
    pub narrative: &'a str,
    pub primary_contact: &'a Contact,
    pub secondary_contact: &'a Contact,
    pub has_secondary: bool,
    pub follows_up: &'a str,
    pub federal_requirement: bool,
    pub federal_agency: &'a str,
    pub federal_authority: &'a str,
}

pub fn content_view(c: &Content) -> ContentView<'_> {
    ContentView {
        title: visible(&c.title),
        narrative: &c.narrative,
        primary_contact: &c.primary_contact,
        secondary_contact: &c.secondary_contact,
        has_secondary: !c.secondary_contact.is_empty(),
        follows_up: &c.follows_up,
        federal_requirement: c.federal_requirement,
        federal_agency: &c.federal_agency,
        federal_authority: &c.federal_authority,
    }
}

/// A submission's record as every audience's pages show it: status, dates, markings; never content.
#[derive(Serialize)]
pub struct SubmissionView<'a> {
    pub id: &'a str,
    pub tracking_number: Option<&'a str>,
    pub status: Status,
    pub status_label: &'static str,
    pub sector: &'a str,
    pub file_count: i32,
    pub total_bytes: i64,
    pub total_label: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub received_at: Option<i64>,
    pub statement_version: Option<&'a str>,
    pub statement_affirmed_at: Option<i64>,
    pub certified_at: Option<i64>,
    pub defect_notice_at: Option<i64>,
    pub cure_due_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub disposition: Option<Disposition>,
    pub closed_at: Option<i64>,
    pub marking: Marking,
}

/// [`submission_view`] for a reader admitted to it: those outside the organisation see the sector the Office holds
/// (a pending correction's is the organisation's, even once the content is gone), and while a correction is pending
/// its files as `files`, the rows they are shown.
pub fn shown_submission_view<'a>(
    admitted: &'a crate::workflow::access::Admitted,
    files: &[crate::models::attachment::Attachment],
) -> SubmissionView<'a> {
    let s = admitted.submission();
    let mut view = submission_view(s);
    if !admitted.reads_as_organisation() {
        view.sector = &s.sector;
    }
    if admitted.shown_as_sent() {
        view.file_count = files.len() as i32;
        view.total_bytes = files.iter().map(|a| a.size_bytes).sum();
        view.total_label = human_size(view.total_bytes.max(0) as u64);
    }
    view
}

/// [`submission_view`] as the Program Office holds it: the sector received, not a pending correction's.
pub fn office_submission_view(s: &Submission) -> SubmissionView<'_> {
    let mut view = submission_view(s);
    view.sector = &s.sector;
    view
}

pub fn submission_view(s: &Submission) -> SubmissionView<'_> {
    let status = s.status();
    SubmissionView {
        id: &s.id,
        tracking_number: s.tracking_number.as_deref(),
        status,
        status_label: status.label(),
        // As its organisation last saved it; those shown the version received are shown its sector instead
        // (`shown_submission_view`).
        sector: s.saved_sector(),
        file_count: s.file_count,
        total_bytes: s.total_bytes,
        total_label: human_size(s.total_bytes.max(0) as u64),
        created_at: s.created_at,
        updated_at: s.updated_at,
        received_at: s.received_at,
        statement_version: s.statement_version.as_deref(),
        statement_affirmed_at: s.statement_affirmed_at,
        certified_at: s.certified_at,
        defect_notice_at: s.defect_notice_at,
        cure_due_at: s.cure_due_at,
        decided_at: s.decided_at,
        disposition: s.disposition,
        closed_at: s.closed_at,
        marking: marking_for(status, s.tracking_number.as_deref()),
    }
}

/// What a destruction left on record: when, by whom, why, and the digests of what was destroyed.
#[derive(Serialize)]
pub struct DestructionView {
    pub destroyed_at: i64,
    pub destroyed_by: Option<String>,
    pub reason: String,
    pub files: serde_json::Value,
    pub ciphertexts: serde_json::Value,
}

pub fn destruction_view(d: Option<DestructionRow>) -> Option<DestructionView> {
    d.map(|d| {
        // The digests as recorded at destruction (a JSON document written by the workflow).
        let digests: serde_json::Value =
            serde_json::from_str(&d.digests).unwrap_or(serde_json::Value::Null);
        let list = |k: &str| {
            digests
                .get(k)
                .cloned()
                .unwrap_or(serde_json::Value::Array(Vec::new()))
        };
        DestructionView {
            destroyed_at: d.destroyed_at,
            destroyed_by: d.destroyed_by_name,
            reason: d.reason,
            files: list("files"),
            ciphertexts: list("ciphertexts"),
        }
    })
}

/// An account as its owner and administrators see it: never its password hash.
#[derive(Serialize)]
pub struct AccountView<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: &'a str,
    pub role_label: &'static str,
    pub disabled: bool,
    pub training_completed_at: Option<i64>,
    pub training_expires_at: Option<i64>,
    pub nda_signed_at: Option<i64>,
    pub nda_reference: Option<&'a str>,
    pub nda_expires_at: Option<i64>,
    pub created_at: i64,
    pub password_changed_at: i64,
    pub organisation_id: Option<&'a str>,
    pub org_admin: bool,
    pub agency: Option<&'a str>,
    pub email_verified_at: Option<i64>,
}

impl<'a> AccountView<'a> {
    pub fn of(u: &'a User) -> AccountView<'a> {
        AccountView {
            id: &u.id,
            email: &u.email,
            display_name: &u.display_name,
            role: u.role.as_str(),
            role_label: u.role().label(),
            disabled: u.disabled,
            training_completed_at: u.training_completed_at,
            training_expires_at: u
                .training_completed_at
                .map(|t| t + TRAINING_VALID_DAYS * DAY),
            nda_signed_at: u.nda_signed_at,
            nda_reference: u.nda_reference.as_deref(),
            nda_expires_at: u.nda_expires_at,
            created_at: u.created_at,
            password_changed_at: u.password_changed_at,
            organisation_id: u.organisation_id.as_deref(),
            org_admin: u.org_admin,
            agency: u.agency.as_deref(),
            email_verified_at: u.email_verified_at,
        }
    }
}

/// A line of a submitter's list: the row and its status in words.
#[derive(Serialize)]
pub struct SubmissionLine {
    #[serde(flatten)]
    pub row: SubmissionListRow,
    pub status_label: &'static str,
}

impl From<SubmissionListRow> for SubmissionLine {
    fn from(mut row: SubmissionListRow) -> SubmissionLine {
        if let Some(saved) = row.saved_sector.take() {
            row.sector = saved;
        }
        let status_label = row.status.label();
        SubmissionLine { row, status_label }
    }
}

/// One choice of a `<select>`.
#[derive(Serialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// Links to other pages of a list (absent where there is none).
#[derive(Serialize, Default)]
pub struct PageLinks {
    pub first: Option<String>,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
}

/// The signed-in person, as the page's frame shows it (name, role, menu).
#[derive(Serialize)]
pub struct Me<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub role: &'static str,
    pub role_label: &'static str,
    pub org_admin: bool,
    /// Fully signed in (not still owing or enrolling a second factor): the role's menus are shown.
    pub signed_in: bool,
}

impl<'a> Me<'a> {
    pub fn of(u: &'a User) -> Me<'a> {
        Me {
            signed_in: true,
            id: &u.id,
            email: &u.email,
            name: &u.display_name,
            role: u.role().as_str(),
            role_label: u.role().label(),
            org_admin: u.org_admin,
        }
    }
}

/// A link of the role's main navigation; `current` marks the section the page belongs to.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The main navigation of `me`'s role, the link of the page at `path` marked current: the link whose address
/// is the longest one `path` is, or starts with as a section (`/officer/submissions/x` is under "Queue").
pub fn main_nav(me: &Me<'_>, path: &str) -> Vec<NavLink> {
    let links: &[(&'static str, &'static str)] = match me.role {
        "submitter" if me.org_admin => &[
            ("/submissions", "My submissions"),
            ("/submissions/new", "New submission"),
            ("/organisation", "Organisation"),
        ],
        "submitter" => &[
            ("/submissions", "My submissions"),
            ("/submissions/new", "New submission"),
        ],
        "officer" => &[
            ("/officer", "Queue"),
            ("/officer/find", "Search"),
            ("/officer/access-requests", "Access requests"),
            ("/officer/disseminations", "Dissemination log"),
            ("/officer/organisations", "Organisations"),
        ],
        "authorized_user" => &[("/analyst", "My access")],
        "auditor" => &[
            ("/audit", "Audit log"),
            ("/audit/checkpoints", "Checkpoints"),
        ],
        "administrator" => &[
            ("/admin", "Accounts"),
            ("/admin/accounts/new", "Invite a person"),
            ("/admin/approvals", "Approvals"),
            ("/admin/operations", "Operations"),
        ],
        _ => &[],
    };
    let under = |href: &str| {
        path == href || (path.starts_with(href) && path[href.len()..].starts_with('/'))
    };
    // The most specific: `/submissions/new` over `/submissions`, `/officer/find` over `/officer`.
    let current = links
        .iter()
        .filter(|(href, _)| under(href))
        .max_by_key(|(href, _)| href.len())
        .map(|(href, _)| *href);
    links
        .iter()
        .map(|&(href, label)| NavLink {
            href,
            label,
            current: Some(href) == current,
        })
        .collect()
}

/// Opens the sealed officers' texts of rows loaded for a page (see `workflow::sealed_text`).
pub fn open_notices(texts: &Texts, rows: &mut [NoticeRow]) {
    for n in rows {
        n.message = texts.open(&n.message);
    }
}

/// See [`open_notices`].
pub fn open_events(texts: &Texts, rows: &mut [EventRow]) {
    for e in rows {
        e.reason = texts.open_opt(e.reason.as_deref());
    }
}

/// See [`open_notices`].
pub fn open_grants(texts: &Texts, rows: &mut [GrantView]) {
    for g in rows {
        g.reason = texts.open(&g.reason);
        g.revoke_reason = texts.open_opt(g.revoke_reason.as_deref());
    }
}

/// See [`open_notices`].
pub fn open_disseminations(texts: &Texts, rows: &mut [DisseminationView]) {
    for d in rows {
        d.recipient = texts.open(&d.recipient);
        d.arrangement = texts.open(&d.arrangement);
        d.what = texts.open(&d.what);
        d.removed = texts.open_opt(d.removed.as_deref());
        d.consent = texts.open_opt(d.consent.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::{main_nav, Me};

    fn me(role: &'static str) -> Me<'static> {
        Me {
            id: "u",
            email: "u@example.gov",
            name: "U",
            role,
            role_label: "",
            org_admin: false,
            signed_in: true,
        }
    }

    fn current(role: &'static str, path: &str) -> Vec<&'static str> {
        main_nav(&me(role), path)
            .into_iter()
            .filter(|l| l.current)
            .map(|l| l.label)
            .collect()
    }

    #[test]
    fn the_section_of_the_page_is_marked_current_and_only_it() {
        assert_eq!(current("officer", "/officer"), ["Queue"]);
        assert_eq!(current("officer", "/officer/submissions/abc"), ["Queue"]);
        assert_eq!(current("officer", "/officer/find"), ["Search"]);
        assert_eq!(
            current("officer", "/officer/disseminations"),
            ["Dissemination log"]
        );
        assert_eq!(current("submitter", "/submissions/new"), ["New submission"]);
        assert_eq!(
            current("submitter", "/submissions/x/receipt"),
            ["My submissions"]
        );
        assert_eq!(
            current("auditor", "/audit/submissions/PCII-1"),
            ["Audit log"]
        );
        assert_eq!(current("auditor", "/audit/checkpoints"), ["Checkpoints"]);
        // A prefix that is not a section: `/officerx` is not under `/officer`.
        assert!(current("officer", "/officerx").is_empty());
        assert!(current("officer", "/account").is_empty());
    }
}
