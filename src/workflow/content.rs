//! What a submission says, as the submitter wrote it. All of it is encrypted at rest as one JSON document
//! (an age blob); only what queues need (sector, status, dates, sizes, counts) is kept in clear columns.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::models::sectors;

/// Version of the express statement text below; recorded with each affirmation.
pub const STATEMENT_VERSION: &str = "6-CFR-29.5(a)(3)/1";

/// The express statement of 6 CFR 29.5(a)(3), shown word for word.
pub const EXPRESS_STATEMENT: &str = "This information is voluntarily submitted to the Federal Government in \
expectation of protection from disclosure as provided by the provisions of the Critical Infrastructure \
Information Act of 2002.";

/// What each certification affirms, in the message shown when its box is not ticked (field name, message).
const CERTIFICATION_MISSING: [(&str, &str); 3] = [
    (
        "cert_not_public",
        "Certify that this information is not customarily in the public domain.",
    ),
    (
        "cert_not_regulatory",
        "Certify that this information is not submitted in lieu of compliance with a regulatory requirement.",
    ),
    (
        "cert_authorized",
        "Certify that your organisation owns this information, or that you are authorized to submit it for its owner.",
    ),
];

/// The three certifications, each a required checkbox (form field name, text).
pub const CERTIFICATIONS: [(&str, &str); 3] = [
    (
        "cert_not_public",
        "This information is not customarily in the public domain.",
    ),
    (
        "cert_not_regulatory",
        "This information is not submitted in lieu of compliance with a regulatory requirement.",
    ),
    (
        "cert_authorized",
        "My organisation owns this information, or I am authorized to submit it on behalf of its owner.",
    ),
];

pub const TITLE_MAX: usize = 200;
pub const NARRATIVE_MAX: usize = 200_000;
pub const SHORT_MAX: usize = 320;
pub const DESCRIPTION_MAX: usize = 2_000;
/// Original file names are kept as data, whatever they hold, up to this many bytes.
pub const FILE_NAME_MAX: usize = 16 * 1024;

#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: String,
    pub phone: String,
}
debug_without_words!(Contact);

impl Contact {
    pub fn is_empty(&self) -> bool {
        self.name.is_empty() && self.email.is_empty() && self.phone.is_empty()
    }
}

#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// The original file name, exactly as the browser sent it (shown escaped, never used as a path).
    pub name: String,
    pub description: String,
    /// SHA-256 of the file's plaintext, hex: kept only in here, sealed, because in clear it would let a copy of
    /// the database confirm a guessed file. Empty in documents from before (see `Attachment::legacy_sha256`).
    #[serde(default)]
    pub sha256: String,
}
debug_without_words!(AttachmentInfo);

#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Content {
    pub title: String,
    pub narrative: String,
    pub primary_contact: Contact,
    pub secondary_contact: Contact,
    /// Tracking number of an earlier submission this one follows up.
    pub follows_up: String,
    pub federal_requirement: bool,
    pub federal_agency: String,
    pub federal_authority: String,
    /// Keyed by attachment id.
    pub attachments: BTreeMap<String, AttachmentInfo>,
}
debug_without_words!(Content);

impl Drop for Content {
    fn drop(&mut self) {
        self.narrative.zeroize();
        self.title.zeroize();
    }
}

impl Content {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("content serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Content, String> {
        serde_json::from_slice(bytes).map_err(|_| "submission content is malformed".to_string())
    }
}

/// The text fields of the submission form, as posted.
#[derive(Default)]
pub struct FormFields(pub HashMap<String, String>);
debug_without_words!(FormFields);

impl FormFields {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(|s| s.trim()).unwrap_or("")
    }

    /// Multi-line text keeps its inner line breaks; only the ends are trimmed.
    pub fn text(&self, name: &str) -> String {
        self.get(name).replace("\r\n", "\n")
    }

    pub fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }
}

impl Drop for FormFields {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            v.zeroize();
        }
    }
}

/// Field name → message, shown next to each field.
pub type FieldErrors = BTreeMap<String, String>;

/// Applies the posted fields to `content` (the existing content when editing). Descriptions of existing
/// attachments come as `attachment_description_<id>`.
pub fn apply_fields(content: &mut Content, f: &FormFields) -> String {
    content.title = f.get("title").to_string();
    content.narrative = f.text("narrative");
    content.primary_contact = Contact {
        name: f.get("primary_name").into(),
        email: f.get("primary_email").into(),
        phone: f.get("primary_phone").into(),
    };
    content.secondary_contact = Contact {
        name: f.get("secondary_name").into(),
        email: f.get("secondary_email").into(),
        phone: f.get("secondary_phone").into(),
    };
    content.follows_up = f.get("follows_up").to_uppercase();
    content.federal_requirement = f.get("federal_requirement") == "yes";
    // "No" clears them: hidden fields the submitter can no longer see must not be stored or sent.
    if content.federal_requirement {
        content.federal_agency = f.get("federal_agency").into();
        content.federal_authority = f.get("federal_authority").into();
    } else {
        content.federal_agency.clear();
        content.federal_authority.clear();
    }
    for (id, info) in content.attachments.iter_mut() {
        if let Some(d) = f.0.get(&format!("attachment_description_{id}")) {
            info.description = d.trim().to_string();
        }
    }
    f.get("sector").to_string()
}

fn too_long(errors: &mut FieldErrors, name: &str, value: &str, max: usize, what: &str) {
    if value.chars().count() > max {
        errors.insert(
            name.into(),
            format!("{what} is too long (at most {max} characters)."),
        );
    }
}

fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn is_tracking_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && s.starts_with("PCII-")
        && b[5..9].iter().all(u8::is_ascii_digit)
        && b[9] == b'-'
        && b[10..].iter().all(u8::is_ascii_digit)
}

/// Checks that apply to drafts too: lengths and formats, nothing required.
pub fn check_draft(content: &Content, sector: &str) -> FieldErrors {
    let mut e = FieldErrors::new();
    if !sector.is_empty() && !sectors::is_sector(sector) {
        e.insert("sector".into(), "Choose one of the listed sectors.".into());
    }
    too_long(&mut e, "title", &content.title, TITLE_MAX, "The title");
    too_long(
        &mut e,
        "narrative",
        &content.narrative,
        NARRATIVE_MAX,
        "The narrative",
    );
    for (whose, c) in [
        ("primary", &content.primary_contact),
        ("secondary", &content.secondary_contact),
    ] {
        too_long(
            &mut e,
            &format!("{whose}_name"),
            &c.name,
            SHORT_MAX,
            &format!("The {whose} contact's name"),
        );
        too_long(
            &mut e,
            &format!("{whose}_email"),
            &c.email,
            SHORT_MAX,
            &format!("The {whose} contact's email address"),
        );
        too_long(
            &mut e,
            &format!("{whose}_phone"),
            &c.phone,
            40,
            &format!("The {whose} contact's telephone number"),
        );
        if !c.email.is_empty() && !plausible_email(&c.email) {
            e.insert(
                format!("{whose}_email"),
                format!("Enter the {whose} contact's email address like name@example.com."),
            );
        }
    }
    if !content.follows_up.is_empty() && !is_tracking_number(&content.follows_up) {
        e.insert(
            "follows_up".into(),
            "Enter a tracking number like PCII-2026-000123, or leave this empty.".into(),
        );
    }
    too_long(
        &mut e,
        "federal_agency",
        &content.federal_agency,
        SHORT_MAX,
        "The agency",
    );
    too_long(
        &mut e,
        "federal_authority",
        &content.federal_authority,
        SHORT_MAX,
        "The legal authority",
    );
    for (id, a) in &content.attachments {
        too_long(
            &mut e,
            &format!("attachment_description_{id}"),
            &a.description,
            DESCRIPTION_MAX,
            &format!("The description of “{}”", visible(&a.name)),
        );
    }
    e
}

/// Everything a submission needs before it is received: its answers ([`check_answers`]), the express statement
/// and the three certifications.
pub fn check_complete(content: &Content, sector: &str, f: &FormFields) -> FieldErrors {
    let mut e = check_answers(content, sector);
    if !f.checked("express_statement") {
        e.insert(
            "express_statement".into(),
            "Tick the box to make the express statement; without it the information cannot be protected."
                .into(),
        );
    }
    for (name, missing) in CERTIFICATION_MISSING {
        if !f.checked(name) {
            e.insert(name.into(), missing.into());
        }
    }
    e
}

/// The answers a submission needs before it can be sent: the draft checks plus the required fields, each
/// with a message of its own (the affirmations come after, on "check your answers").
pub fn check_answers(content: &Content, sector: &str) -> FieldErrors {
    let mut e = check_draft(content, sector);
    let mut require = |name: &str, value: &str, msg: &str| {
        if value.is_empty() {
            e.entry(name.to_string()).or_insert_with(|| msg.to_string());
        }
    };
    require(
        "sector",
        sector,
        "Choose the critical infrastructure sector.",
    );
    require("title", &content.title, "Enter a title.");
    require(
        "narrative",
        &content.narrative,
        "Describe the information in the narrative.",
    );
    require(
        "primary_name",
        &content.primary_contact.name,
        "Enter the primary contact's name.",
    );
    require(
        "primary_email",
        &content.primary_contact.email,
        "Enter the primary contact's email address.",
    );
    if !content.secondary_contact.is_empty() {
        require(
            "secondary_name",
            &content.secondary_contact.name,
            "Enter the secondary contact's name, or leave the whole secondary contact empty.",
        );
        require(
            "secondary_email",
            &content.secondary_contact.email,
            "Enter the secondary contact's email address, or leave the whole secondary contact empty.",
        );
    }
    if content.federal_requirement {
        require(
            "federal_agency",
            &content.federal_agency,
            "Name the agency whose requirement applies.",
        );
        require(
            "federal_authority",
            &content.federal_authority,
            "Name the legal authority that requires the information.",
        );
    }
    for (id, a) in &content.attachments {
        require(
            &format!("attachment_description_{id}"),
            &a.description,
            &format!("Describe this file: “{}”.", visible(&a.name)),
        );
    }
    e
}

/// The form's fields in the order the form shows them; a file's description comes where its file is listed
/// (`files`: attachment ids in list order). The error summary follows this order.
pub fn form_order(files: &[String]) -> Vec<String> {
    let mut order: Vec<String> = [
        "sector",
        "title",
        "narrative",
        "follows_up",
        "primary_name",
        "primary_email",
        "primary_phone",
        "secondary_name",
        "secondary_email",
        "secondary_phone",
        "federal_requirement",
        "federal_agency",
        "federal_authority",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    order.extend(
        files
            .iter()
            .map(|id| format!("attachment_description_{id}")),
    );
    order.push("files".into());
    // The picker rows, where a file over a limit is named.
    order.extend((1..=3).map(|n| format!("files_{n}")));
    order.push("express_statement".into());
    order.extend(CERTIFICATIONS.iter().map(|(name, _)| name.to_string()));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_the_type_not_the_words() {
        let mut content = Content::default();
        content.title = "MARKER-TITLE".into();
        content.narrative = "MARKER-NARRATIVE".into();
        content.primary_contact.name = "MARKER-CONTACT".into();
        content.attachments.insert(
            "a1".into(),
            AttachmentInfo {
                name: "MARKER-FILE.pdf".into(),
                ..AttachmentInfo::default()
            },
        );
        let typed = fields(&[("narrative", "MARKER-TYPED")]);
        let printed = format!("{content:?} {typed:?} {:?}", Some(&content));
        assert!(!printed.contains("MARKER"), "{printed}");
        assert!(printed.starts_with("Content { .. } FormFields { .. }"));
    }

    fn fields(pairs: &[(&str, &str)]) -> FormFields {
        FormFields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_complete_form_passes_and_each_missing_part_is_named() {
        let all = [
            ("sector", "Energy"),
            ("title", "Substation"),
            ("narrative", "Details"),
            ("primary_name", "Ann"),
            ("primary_email", "ann@example.com"),
            ("express_statement", "yes"),
            ("cert_not_public", "yes"),
            ("cert_not_regulatory", "yes"),
            ("cert_authorized", "yes"),
        ];
        let f = fields(&all);
        let mut c = Content::default();
        let sector = apply_fields(&mut c, &f);
        assert!(check_complete(&c, &sector, &f).is_empty());
        for (i, (name, _)) in all.iter().enumerate() {
            let mut less = all.to_vec();
            less.remove(i);
            let f = fields(&less);
            let mut c = Content::default();
            let sector = apply_fields(&mut c, &f);
            let errors = check_complete(&c, &sector, &f);
            assert!(
                errors.contains_key(*name),
                "{name} missing was not reported"
            );
        }
    }

    #[test]
    fn a_downloaded_copy_is_named_with_its_marking() {
        use crate::domain::Status;
        let tn = Some("PCII-2026-000123");
        assert_eq!(
            marked_file_name(Status::Validated, tn, "report.pdf"),
            "PCII PCII-2026-000123 - report.pdf"
        );
        assert_eq!(
            marked_file_name(Status::Defective, tn, "../x/report.pdf"),
            "PCII-PENDING PCII-2026-000123 - x/report.pdf"
        );
        let long = format!("{}.pdf", "r".repeat(300));
        let marked = marked_file_name(Status::Validated, tn, &long);
        assert_eq!(marked.chars().count(), 24 + 110, "{marked}");
        assert!(marked.ends_with("rr….pdf"), "{marked}");
        for status in [
            Status::NotValidated,
            Status::ProtectionRemoved,
            Status::Draft,
        ] {
            assert_eq!(marked_file_name(status, tn, "report.pdf"), "report.pdf");
        }
    }

    /// PCII.md: presumed protected until a final decision. A withdrawal is none, so what the office holds of a
    /// withdrawn submission is marked and named as presumed protected; a removal of protection is one.
    #[test]
    fn withdrawn_stays_presumed_protected_and_a_removal_says_so() {
        use crate::domain::Status;
        let tn = Some("PCII-2026-000123");
        let withdrawn = marking_for(Status::Withdrawn, tn);
        assert_eq!(withdrawn.kind, "pending");
        assert!(withdrawn.title.starts_with("PCII — WITHDRAWN"));
        assert!(withdrawn.statement.contains("presumed protected"));
        assert_eq!(
            list_marking([Status::NotValidated, Status::Withdrawn]).map(|m| m.title),
            Some(withdrawn.title)
        );
        assert_eq!(
            list_marking([Status::Withdrawn, Status::Defective, Status::Withdrawn])
                .map(|m| m.title),
            Some("PCII — PENDING VALIDATION")
        );
        assert_eq!(
            marked_file_name(Status::Withdrawn, tn, "a.pdf"),
            "PCII-PENDING PCII-2026-000123 - a.pdf"
        );
        let removed = marking_for(Status::ProtectionRemoved, tn);
        assert_eq!(removed.title, "NOT PCII — PROTECTION REMOVED");
        assert!(!removed.statement.contains("return"), "it stays on record");
        assert!(list_marking([Status::ProtectionRemoved]).is_none());
    }

    #[test]
    fn formats_are_checked() {
        assert!(is_tracking_number("PCII-2026-000123"));
        assert!(!is_tracking_number("PCII-26-000123"));
        assert!(!is_tracking_number("PCII-2026-00012x"));
        let f = fields(&[("primary_email", "not an email"), ("sector", "Mining")]);
        let mut c = Content::default();
        let sector = apply_fields(&mut c, &f);
        let e = check_draft(&c, &sector);
        assert!(e.contains_key("primary_email") && e.contains_key("sector"));
    }
}

/// The protection statement carried by every view and copy of validated PCII (`../shared/PCII.md`, Markings).
pub const PROTECTION_STATEMENT: &str = "This information is Protected Critical Infrastructure Information \
(PCII). It is protected from public disclosure under the Critical Infrastructure Information Act of 2002 \
(6 U.S.C. 671-674) and 6 CFR Part 29. It may be disclosed only to authorized users with a need to know, \
and must be safeguarded and handled in accordance with 6 CFR Part 29. Unauthorized disclosure may result \
in criminal and administrative penalties.";

/// Shown with information that is only presumed protected (received or defective, before a decision).
pub const PENDING_STATEMENT: &str = "This information was submitted for protection under the Critical \
Infrastructure Information Act of 2002 and is presumed protected (6 CFR 29.6(b)) until the PCII Program \
Office decides. Safeguard it as PCII: disclose it only to authorized users with a need to know.";

/// Shown with information its submitter withdrew before a decision: withdrawal is not a decision that it is not
/// PCII, so the presumption holds while the office keeps it.
pub const WITHDRAWN_STATEMENT: &str = "The submitter withdrew this information before the PCII Program Office \
decided. It stays presumed protected (6 CFR 29.6(b)) until it is returned to the submitter or destroyed: \
safeguard it as PCII.";

/// The marking a page, receipt or export of a submission carries, by status.
#[derive(Debug, Clone, Serialize)]
pub struct Marking {
    /// `pcii`, `pending`, `draft` or `other`.
    pub kind: &'static str,
    pub title: &'static str,
    pub tracking_number: String,
    pub statement: &'static str,
}

pub fn marking_for(status: crate::domain::Status, tracking_number: Option<&str>) -> Marking {
    use crate::domain::Status;
    let tracking_number = tracking_number.unwrap_or("").to_string();
    let (kind, title, statement) = match status {
        Status::Validated => (
            "pcii",
            "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION",
            PROTECTION_STATEMENT,
        ),
        Status::Received | Status::Defective => {
            ("pending", "PCII — PENDING VALIDATION", PENDING_STATEMENT)
        }
        Status::Withdrawn => (
            "pending",
            "PCII — WITHDRAWN, HELD FOR RETURN OR DESTRUCTION",
            WITHDRAWN_STATEMENT,
        ),
        Status::Draft => (
            "draft",
            "DRAFT — NOT YET SUBMITTED",
            "A draft is visible to your organisation only and is not presumed protected until it is submitted.",
        ),
        // A final finding that it is not PCII: it stays on record, as the office decided.
        Status::ProtectionRemoved => (
            "other",
            "NOT PCII — PROTECTION REMOVED",
            "The PCII Program Office removed this information's protection: it is no longer PCII.",
        ),
        // Gone from the portal: the page shows a record of it, not content held for a choice.
        Status::Returned => (
            "other",
            "RETURNED — NO CONTENT HELD",
            "This information was returned to the submitter; the portal no longer holds its content.",
        ),
        Status::Destroyed => (
            "other",
            "DESTROYED — NO CONTENT HELD",
            "This information's content was destroyed; the portal keeps only the record of what was destroyed, when and by whom.",
        ),
        Status::NotValidated => (
            "other",
            "NOT PCII — HELD FOR RETURN OR DESTRUCTION",
            "This information is not PCII. It is held only until it is returned to the submitter or destroyed.",
        ),
    };
    Marking {
        kind,
        title,
        tracking_number,
        statement,
    }
}

/// The marking of a page that lists several submissions' protected words (titles in a queue, a search result, a
/// log): the strongest among the rows that show them, validated PCII over presumed protected, with no tracking
/// number (each row shows its own); none when no row shows words that are PCII or presumed so.
pub fn list_marking(shown: impl IntoIterator<Item = crate::domain::Status>) -> Option<Marking> {
    use crate::domain::Status;
    let mut strongest = None;
    for status in shown {
        match status {
            Status::Validated => return Some(marking_for(Status::Validated, None)),
            Status::Received | Status::Defective => strongest = Some(Status::Received),
            // Presumed protected too; named as withdrawn only when nothing awaiting a decision is shown.
            Status::Withdrawn => {
                strongest.get_or_insert(Status::Withdrawn);
            }
            _ => {}
        }
    }
    strongest.map(|s| marking_for(s, None))
}

/// The name a downloaded file is saved under. The file itself is given as submitted and cannot carry a marking, so
/// its copy's name does (PCII.md: copies are marked like the original): the marking and the tracking number before
/// the submitter's name for it, e.g. `PCII PCII-2026-000123 - report.pdf`, `PCII-PENDING PCII-2026-000123 - ...`.
/// A file of a submission that is not (or no longer) PCII keeps its name; a withdrawn one is still presumed so.
pub fn marked_file_name(
    status: crate::domain::Status,
    tracking_number: Option<&str>,
    name: &str,
) -> String {
    use crate::domain::Status;
    let mark = match status {
        Status::Validated => "PCII",
        Status::Received | Status::Defective | Status::Withdrawn => "PCII-PENDING",
        _ => return name.to_string(),
    };
    // What would lead the name were it alone (dots, separators) is dropped, as the download header drops it there.
    let name =
        name.trim_start_matches(|c: char| matches!(c, '.' | '/' | '\\') || c.is_whitespace());
    // The download header keeps 150 characters: a long name is cut in its middle, so its extension stays.
    let name = shortened(name, 110);
    match tracking_number {
        Some(tn) => format!("{mark} {tn} - {name}"),
        None => format!("{mark} - {name}"),
    }
}

/// `name` in at most `max` characters: when longer, its start and its extension (up to 16 characters after the
/// last dot) with "…" between.
pub fn shortened(name: &str, max: usize) -> String {
    let count = name.chars().count();
    if count <= max {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.chars().count() <= 16)
        .unwrap_or("");
    let keep = max - 1 - ext.chars().count();
    format!("{}…{ext}", name.chars().take(keep).collect::<String>())
}

/// Multi-line text (a narrative, a message body) made safe to print in a package's text files: as [`visible`], but
/// line breaks (CRLF and CR as LF) and tabs stay, and every line is indented by two spaces, so that no line of it
/// can pass for one of the file's own headings (`--- Message …`, the marking, the tracking number).
pub fn visible_block(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .map(|line| {
            let shown: String = line.split('\t').map(visible).collect::<Vec<_>>().join("\t");
            if shown.is_empty() {
                shown
            } else {
                format!("  {shown}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file name or other submitter text made safe to show: control and bidirectional-override characters
/// become visible `<U+XXXX>` escapes, so a name cannot reorder or hide what surrounds it. (HTML escaping is
/// the templates' job; this is about what the characters do, not markup.)
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let hidden = c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
        if hidden {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}
