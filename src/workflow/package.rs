//! A submission as a zip package: `COVER-SHEET.txt` (markings and protection statement),
//! `manifest.json` (tracking number, status, files, sizes, SHA-256, which files a cure replaced), `NARRATIVE.txt` (marked top and
//! bottom like the original), and the decrypted attachments under safe, unique names. The marking is
//! also the archive comment. Attachments are decrypted and verified as the archive streams out.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::error::{AppError, AppResult};
use crate::export::{package_stream, safe_member_name, BlockingBody, PackageEntry};
use crate::models::submission::{self, Submission};
use crate::services::Services;
use crate::workflow::content::{marking_for, visible, Content};

pub struct Package {
    pub body: BlockingBody,
    pub file_name: String,
}

/// Builds the package of a submission, given its decrypted content document. Called by the content-access
/// service (`workflow::access::export_package`) only, once the asker was admitted.
/// `purpose` is "export" or "return"; `by` names who asked (for the cover sheet).
pub(crate) async fn build(
    state: &Services,
    sub: &Submission,
    content: &Content,
    purpose: &str,
    by: &str,
) -> AppResult<Package> {
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

    let status = sub.status();
    let marking = marking_for(status, sub.tracking_number.as_deref());
    let tn = sub
        .tracking_number
        .clone()
        .unwrap_or_else(|| "DRAFT".into());
    let now = state.clock.now();

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
        let member = safe_member_name(a.position.max(0) as usize, &original, &mut used);
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
    let files_line = if replaced == 0 {
        files.len().to_string()
    } else {
        format!(
            "{} ({replaced} of them replaced by a corrected file, kept for the record)",
            files.len()
        )
    };

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
         \n\
         This package holds the submission's narrative (NARRATIVE.txt), a manifest with the SHA-256 of\n\
         every file (manifest.json) and the files themselves (attachments/). Every copy made from it\n\
         must carry these markings and be safeguarded in the same way.\n\
         \n\
         {title}\n",
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
        "sector": sub.sector,
        "received_at": sub.received_at.map(crate::time::rfc3339),
        "decided_at": sub.decided_at.map(crate::time::rfc3339),
        "exported_at": crate::time::rfc3339(now),
        "purpose": purpose,
        "files": files,
    });
    let narrative = narrative_text(content, marking.title, &tn, marking.statement);
    let comment = format!("{} - {tn} - {}", marking.title, marking.statement);

    // Open every attachment (header and key checked now, so a missing blob or key is an error page);
    // the rest is verified while it streams.
    let keys = state.current_keys();
    let store = state.blobs.clone();
    let readers = tokio::task::spawn_blocking(move || {
        let ring = keys.read().unwrap_or_else(|p| p.into_inner());
        sources
            .into_iter()
            .map(|(member, r)| {
                crate::key_store::data_keys::open_blob(&*store, &ring, &r)
                    .map(|reader| (member, reader))
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await
    .map_err(|_| AppError::Internal("opening attachments failed".into()))?
    .map_err(|e| {
        tracing::error!(error = %e, "an attachment failed to open for a package");
        AppError::Internal("a stored document failed its integrity check".into())
    })?;

    let mut entries = vec![
        PackageEntry::bytes("COVER-SHEET.txt", cover),
        PackageEntry::bytes(
            "manifest.json",
            serde_json::to_vec_pretty(&manifest).expect("manifest serializes"),
        ),
        PackageEntry::bytes("NARRATIVE.txt", narrative),
    ];
    for (member, reader) in readers {
        entries.push(PackageEntry::reader(member, reader));
    }
    Ok(Package {
        body: package_stream(entries, comment),
        file_name: format!("{tn}-{purpose}.zip"),
    })
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
        c.narrative,
    )
}
