//! Issue 5: the lifecycle through the officer, the submitter and the authorized user; markings on every
//! content page and in the zip; need-to-know grants; destruction; the route × role matrix.

use crate::common::{
    self, complete_fields, file_bytes, received_around, sha256_hex, Browser, Part, TestApp,
};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{
    attachments, audit_entries, blobs, message_files, submissions, users,
};
use pcii_portal::domain::Role;
use pcii_portal::time::DAY;

const PCII: &str = "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION";
const PENDING: &str = "PCII — PENDING VALIDATION";

fn submit(b: &mut Browser<'_>, files: &[Vec<u8>]) -> String {
    let mut parts = complete_fields("Lifecycle narrative", "submit");
    let names: Vec<(String, String)> = (1..=files.len())
        .map(|i| (format!("file_{i}"), format!("description_{i}")))
        .collect();
    for (i, f) in files.iter().enumerate() {
        parts.push(Part::Text(&names[i].1, "desc"));
        parts.push(Part::File(&names[i].0, "../evil/report.pdf", f));
    }
    let page = b.post_multipart("/submissions", &parts);
    crate::common::submission_id(&page)
}

fn tracking_number_of(app: &TestApp, id: &str) -> String {
    app.with_conn(|c| {
        submissions::table
            .find(id)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .expect("a received submission has a tracking number")
    })
}

/// An authorized user whose training was recorded `trained_days_ago` days before the app's now (it counts
/// for 365 days), with an NDA on file: its id.
fn authorized_user(app: &TestApp, email: &str, trained_days_ago: i64) -> String {
    let id = app.create_user(Role::AuthorizedUser, email, None);
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&id))
            .set((
                users::training_completed_at.eq(Some(now - trained_days_ago * DAY)),
                users::nda_signed_at.eq(Some(now - 10 * DAY)),
            ))
            .execute(c)
            .unwrap()
    });
    id
}

/// A browser signed in as `email`.
fn signed_in<'a>(app: &'a TestApp, email: &str) -> Browser<'a> {
    let mut b = app.browser();
    assert_eq!(b.login(email, common::PASSWORD), Status::SeeOther);
    b
}

/// An authorized user with current training and an NDA on file, signed in.
fn analyst<'a>(app: &'a TestApp, email: &str) -> (String, Browser<'a>) {
    let id = authorized_user(app, email, 10);
    (id, signed_in(app, email))
}

/// The date `days` days after the app's today, as the grant form takes it (a grant runs to the end of it).
fn date_in(app: &TestApp, days: i64) -> String {
    pcii_portal::time::date(app.now() + days * DAY)
}

/// A grant to `analyst_id` on `id` for 30 days, given by `officer`.
fn grant(app: &TestApp, officer: &mut Browser<'_>, id: &str, analyst_id: &str) {
    let expires = date_in(app, 30);
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", analyst_id),
            ("reason", "Regional threat assessment"),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
}

/// A submission of one small file, sent by `sub` and validated by `officer`: its id.
fn validated(sub: &mut Browser<'_>, officer: &mut Browser<'_>) -> String {
    let id = submit(sub, &[file_bytes(1000, 1, "")]);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    id
}

/// One live grant per person and submission: the grant form sent twice (a double click) gives one grant and says
/// so at the field; a grant that runs longer renews, replacing the live one; revoking the live grant leaves no twin
/// live. After the revocation, a new grant may be made.
#[test]
fn the_same_grant_sent_twice_makes_one_live_grant_and_a_longer_one_renews_it() {
    use pcii_portal::db::schema::grants;
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = validated(&mut sub, &mut officer);
    let (ana, mut a) = analyst(&app, "ana@dhs.example.gov");
    grant(&app, &mut officer, &id, &ana);
    let post_grant = |officer: &mut Browser<'_>, days: i64| {
        let expires = date_in(&app, days);
        officer.post(
            &format!("/officer/submissions/{id}/grants"),
            &[
                ("user_id", ana.as_str()),
                ("reason", "Regional threat assessment"),
                ("expires", expires.as_str()),
            ],
        )
    };
    let live = || -> Vec<String> {
        app.with_conn(|c| {
            grants::table
                .filter(grants::user_id.eq(&ana))
                .filter(grants::revoked_at.is_null())
                .select(grants::id)
                .load(c)
                .unwrap()
        })
    };
    // The same grant again, or a shorter one: refused at the field, nothing made.
    for days in [30, 10] {
        let page = post_grant(&mut officer, days);
        assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
        assert!(page.body.contains("already holds a live grant"));
    }
    let first = live();
    assert_eq!(first.len(), 1);
    assert_eq!(app.audit_count("grant.created"), 1);
    // A longer one renews: the first is revoked in the same step, one grant is live, reading goes on.
    let page = post_grant(&mut officer, 60);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let renewed = live();
    assert_eq!(renewed.len(), 1);
    assert_ne!(renewed, first);
    let reasons = app.audit_reasons("grant.created");
    assert!(
        reasons[1].contains(&format!("renews grant {}", first[0])),
        "{reasons:?}"
    );
    let uri = format!("/analyst/submissions/{id}");
    assert_eq!(a.get(&uri).status, Status::Ok);
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants/{}/revoke", renewed[0]),
        &[("reason", "Assessment finished")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(a.get(&uri).status, Status::Forbidden, "no twin left live");
    // Revoked, a new grant may be made.
    let page = post_grant(&mut officer, 30);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(a.get(&uri).status, Status::Ok);
}

#[test]
fn disabling_an_analyst_or_moving_it_to_another_role_revokes_its_grants_for_good() {
    use pcii_portal::db::schema::grants;
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut admin = app.login_as(Role::Administrator, "root@pcii.example.gov", None);
    let id = validated(&mut sub, &mut officer);
    let (ana, mut a) = analyst(&app, "ana@dhs.example.gov");
    let (ben, mut b) = analyst(&app, "ben@dhs.example.gov");
    grant(&app, &mut officer, &id, &ana);
    grant(&app, &mut officer, &id, &ben);
    let uri = format!("/analyst/submissions/{id}");
    assert_eq!(a.get(&uri).status, Status::Ok);
    assert_eq!(b.get(&uri).status, Status::Ok);
    let revoked = |user: &str| -> Vec<Option<i64>> {
        app.with_conn(|c| {
            grants::table
                .filter(grants::user_id.eq(user))
                .select(grants::revoked_at)
                .load(c)
                .unwrap()
        })
    };

    // Disabled, then enabled again: the grant stays revoked, with its own entry on the submission.
    let page = admin.post(
        &format!("/admin/accounts/{ana}/disable"),
        &[("reason", "left the agency"), ("confirm", "true")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(revoked(&ana)[0].is_some());
    assert!(
        revoked(&ben)[0].is_none(),
        "another analyst keeps its grant"
    );
    let page = admin.post(&format!("/admin/accounts/{ana}/enable"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let mut a = signed_in(&app, "ana@dhs.example.gov");
    let page = a.get(&uri);
    assert_eq!(page.status, Status::Forbidden);
    assert!(page.body.contains("was revoked"), "{}", page.body);

    // Moved to auditor and back: the same.
    for role in ["auditor", "authorized_user"] {
        let page = admin.post(&format!("/admin/accounts/{ben}/role"), &[("role", role)]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    assert!(revoked(&ben)[0].is_some());
    let mut b = signed_in(&app, "ben@dhs.example.gov");
    assert_eq!(b.get(&uri).status, Status::Forbidden);

    let entries: Vec<(Option<String>, Option<String>)> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("grant.revoked"))
            .order(audit_entries::seq)
            .select((audit_entries::object_id, audit_entries::reason))
            .load(c)
            .unwrap()
    });
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries
        .iter()
        .all(|(o, _)| o.as_deref() == Some(id.as_str())));
    let reasons: Vec<&str> = entries.iter().filter_map(|(_, r)| r.as_deref()).collect();
    assert!(
        reasons[0].contains(&ana) && reasons[0].contains("disabled"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains(&ben) && reasons[1].contains("auditor"),
        "{reasons:?}"
    );
}

#[test]
fn defective_cured_validated_granted_read_exported_then_the_grant_expires() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let files = vec![file_bytes(200_000, 1, ""), file_bytes(1_500_000, 2, "")];
    let id = submit(&mut sub, &files);

    // Pending validation: marked as such on the officer's and the submitter's pages.
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains(PENDING));
    assert!(sub
        .get(&format!("/submissions/{id}"))
        .body
        .contains(PENDING));

    // A reason is required to mark defective.
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "defective"), ("reason", "")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "File 2 is unreadable; send it again."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(app.status_of(&id), "defective");
    // Illegal: validating a defective submission before it is cured.
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "validate"), ("reason", crate::common::BASIS)],
    );
    assert_eq!(page.status, Status::Conflict);
    assert!(page.body.contains("cannot be validated"));

    // The submitter sees the notice, and cures by adding a file and affirming again.
    let home = sub.get("/submissions");
    assert!(home.body.contains("File 2 is unreadable"));
    let fixed = file_bytes(300_000, 3, "");
    let mut parts = complete_fields("Lifecycle narrative, corrected", "submit");
    parts.push(Part::Text("description_1", "Readable file 2"));
    parts.push(Part::File("file_1", "file2-fixed.bin", &fixed));
    let atts = app.attachment_ids(&id);
    let descs: Vec<String> = atts
        .iter()
        .map(|a| format!("attachment_description_{a}"))
        .collect();
    for d in &descs {
        parts.push(Part::Text(d, "desc"));
    }
    let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("submission.cured"), 1);

    // Validated (a final decision, confirmed): full markings everywhere.
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(app.status_of(&id), "validated");
    let tn = tracking_number_of(&app, &id);
    for page in [
        officer.get(&format!("/officer/submissions/{id}")),
        sub.get(&format!("/submissions/{id}")),
    ] {
        assert_eq!(page.status, Status::Ok);
        assert_eq!(page.body.matches(PCII).count(), 2, "top and bottom");
        assert!(page.body.contains(&tn));
        assert!(page.body.contains("6 CFR Part 29"));
        assert!(!page.body.contains(PENDING));
    }

    // An authorized user without a grant is refused, and told why.
    let (analyst_id, mut a) = analyst(&app, "ana@dhs.example.gov");
    let page = a.get(&format!("/analyst/submissions/{id}"));
    assert_eq!(page.status, Status::Forbidden);
    assert!(page.body.contains("You hold no grant for this submission"));

    // The officer grants access; the authorized user reads and exports.
    let expires = date_in(&app, 30);
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", &analyst_id),
            ("reason", "Regional threat assessment"),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = a.get(&format!("/analyst/submissions/{id}"));
    assert_eq!(page.status, Status::Ok);
    assert_eq!(page.body.matches(PCII).count(), 2);
    assert!(page.body.contains("Lifecycle narrative, corrected"));
    let (status, body, headers) = a.get_bytes(&format!("/analyst/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let body = body.expect("a complete zip");
    // Its exact length is known before it is written, and declared.
    let declared = |headers: &[(String, String)]| {
        common::header(headers, "Content-Length").and_then(|v| v.parse::<usize>().ok())
    };
    assert_eq!(declared(&headers), Some(body.len()), "{headers:?}");
    let (comment, members) = common::zip_members(&body);
    assert!(comment.contains(PCII) && comment.contains(&tn), "{comment}");
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        &["COVER-SHEET.txt", "manifest.json", "NARRATIVE.txt"]
    );
    let cover = String::from_utf8_lossy(&members[0].1);
    assert!(cover.starts_with(PCII) && cover.trim_end().ends_with(PCII) && cover.contains(&tn));
    let narrative = String::from_utf8_lossy(&members[2].1);
    assert!(narrative.starts_with(PCII) && narrative.contains("Lifecycle narrative, corrected"));
    let manifest: serde_json::Value = serde_json::from_slice(&members[1].1).unwrap();
    assert_eq!(manifest["tracking_number"], tn.as_str());
    assert_eq!(manifest["status"], "validated");
    let expected = [&files[0], &files[1], &fixed];
    assert_eq!(members.len(), 3 + expected.len());
    for ((name, bytes), original) in members[3..].iter().zip(expected) {
        assert!(
            name.starts_with("attachments/")
                && name.contains(&format!("-PCII {tn} - "))
                && !name.contains(".."),
            "{name}"
        );
        assert_eq!(bytes, original, "byte-identical");
        assert!(manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["sha256"] == sha256_hex(original).as_str()));
    }
    // The same archive passes `unzip -t` (Info-ZIP's, another implementation than the reader above).
    {
        let path = app.dir.path().join("export.zip");
        std::fs::write(&path, &body).unwrap();
        let out = std::process::Command::new("unzip")
            .arg("-t")
            .arg(&path)
            .output()
            .expect("unzip is required (apt-get install unzip)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::fs::remove_file(&path).unwrap();
    }

    // A stored file found damaged while the archive streams: the answer had declared the whole archive's length
    // and the body ends short of it, never as a complete zip (over a real connection the client sees it cut, as
    // `uploads` shows for a file).
    let stored: Vec<String> = app.with_conn(|c| {
        attachments::table
            .inner_join(blobs::table.on(blobs::id.nullable().eq(attachments::blob_id)))
            .filter(attachments::submission_id.eq(&id))
            .order(attachments::position.asc())
            .select(blobs::storage_name)
            .load(c)
            .unwrap()
    });
    let last = stored.last().unwrap();
    let mut bytes = app.read_blob(last);
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    app.overwrite_blob(last, &bytes);
    let (status, damaged, headers) = a.get_bytes(&format!("/analyst/submissions/{id}/export"));
    assert_eq!(status, Status::Ok, "streamed");
    assert_eq!(declared(&headers), Some(body.len()), "{headers:?}");
    assert!(damaged.is_none(), "the body never ends cleanly");
    bytes[at] ^= 0x01;
    app.overwrite_blob(last, &bytes);

    // The grant expires: access stops, with the reason. A month on (the grant ran to the end of its 30th day),
    // the analyst's session has long idled out too: it signs in again.
    app.advance(31 * DAY);
    a = signed_in(&app, "ana@dhs.example.gov");
    let page = a.get(&format!("/analyst/submissions/{id}"));
    assert_eq!(page.status, Status::Forbidden);
    assert!(page.body.contains("Your grant for this submission expired"));
    assert_eq!(
        a.get_bytes(&format!("/analyst/submissions/{id}/export")).0,
        Status::Forbidden
    );
    assert!(a.get("/analyst").body.contains("You hold no live grants"));
}

#[test]
fn not_validated_then_destroy_removes_every_blob_and_content_routes_answer_410_or_404() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let files = vec![file_bytes(50_000, 1, ""), file_bytes(70_000, 2, "")];
    let id = submit(&mut sub, &files);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "not_validated"), ("reason", "")],
    );
    assert_eq!(
        page.status,
        Status::UnprocessableEntity,
        "a reason is required"
    );
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Customarily in the public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let detail = sub.get(&format!("/submissions/{id}"));
    assert!(detail.body.contains("Customarily in the public domain"));
    assert!(detail.body.contains("Return or destroy"));

    let stored: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .select(blobs::storage_name)
            .load(c)
            .unwrap()
    });
    assert_eq!(stored.len(), 3);
    let att = app.attachment_ids(&id).remove(0);
    // The receipt lists each file's digest and the digest of its stored (encrypted) copy.
    let receipt = sub.get(&format!("/submissions/{id}/receipt.txt")).body;
    let stored: Vec<String> = receipt
        .lines()
        .filter_map(|l| l.trim().strip_prefix("stored copy (encrypted), SHA-256: "))
        .map(str::to_string)
        .collect();
    assert_eq!(stored.len(), 2, "{receipt}");
    for f in &files {
        assert!(receipt.contains(&sha256_hex(f)));
    }
    // Final, so a ticked box says it is meant: without it nothing happens.
    let page = sub.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "destroy")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("Tick the box to confirm"));
    assert_eq!(app.status_of(&id), "not_validated");
    let page = sub.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(app.status_of(&id), "destroyed");
    for name in &stored {
        assert!(!app.blob_exists(name), "every ciphertext is gone");
    }
    // The record lists each file by number, size and the digest of its stored copy, for the submitter and the
    // officer: the submitter ties it to the receipt. No plaintext digest is kept (it would confirm a guessed file).
    for page in [
        sub.get(&format!("/submissions/{id}")),
        officer.get(&format!("/officer/submissions/{id}")),
    ] {
        assert_eq!(page.status, Status::Ok);
        for d in &stored {
            assert!(page.body.contains(d.as_str()));
        }
        for f in &files {
            assert!(!page.body.contains(&sha256_hex(f)));
        }
        assert!(
            !page.body.contains("Lifecycle narrative"),
            "no content left to show"
        );
        // Marked as what it is now, not as content held for a choice already made.
        assert!(page.body.contains("DESTROYED — NO CONTENT HELD"));
        assert!(!page.body.contains("HELD FOR RETURN OR DESTRUCTION"));
    }
    let (analyst_id, mut a) = analyst(&app, "ana@dhs.example.gov");
    let _ = analyst_id;
    let mut other = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let mut anon = app.browser();
    let content_routes = [
        format!("/submissions/{id}/files/{att}"),
        format!("/submissions/{id}/receipt"),
        format!("/submissions/{id}/receipt.txt"),
        format!("/submissions/{id}/package"),
        format!("/officer/submissions/{id}/files/{att}"),
        format!("/officer/submissions/{id}/export"),
        format!("/analyst/submissions/{id}"),
        format!("/analyst/submissions/{id}/files/{att}"),
        format!("/analyst/submissions/{id}/export"),
    ];
    for uri in &content_routes {
        for (who, b) in [
            ("submitter", &mut sub),
            ("officer", &mut officer),
            ("analyst", &mut a),
            ("other", &mut other),
        ] {
            let s = b.get_bytes(uri).0;
            // The role guard answers first for routes of another role; the owner and the officer get 410.
            assert!(
                matches!(s, Status::Gone | Status::NotFound | Status::Forbidden),
                "{who} {uri}: {s}"
            );
            if (who == "submitter" && uri.starts_with("/submissions"))
                || (who == "officer" && uri.starts_with("/officer"))
            {
                assert_eq!(s, Status::Gone, "{who} {uri}");
            }
            // The analyst never held a grant for it: refused for that, not told that it was destroyed.
            if who == "analyst" && uri.starts_with("/analyst") {
                assert_eq!(s, Status::Forbidden, "{who} {uri}");
            }
            // Another organisation's member is told nothing either: not found, as for an id that never was.
            if who == "other" && uri.starts_with("/submissions") {
                assert_eq!(s, Status::NotFound, "{who} {uri}");
            }
            // Every route of another role: the role guard's refusal.
            let own = match who {
                "submitter" | "other" => "/submissions",
                "officer" => "/officer",
                _ => "/analyst",
            };
            if !uri.starts_with(own) {
                assert_eq!(s, Status::Forbidden, "{who} {uri}");
            }
        }
        assert_eq!(anon.get(uri).status, Status::Unauthorized);
    }
    assert_eq!(app.audit_count("submission.destroyed"), 1);
    // The auditor sees the destruction record (digests, no content) with the access history.
    let mut auditor = app.login_as(Role::Auditor, "aud@oig.example.gov", None);
    // By its id, and by its tracking number as the log links it.
    let tracking = tracking_number_of(&app, &id);
    for path in [&id, &tracking] {
        let page = auditor.get(&format!("/audit/submissions/{path}"));
        assert_eq!(page.status, Status::Ok);
        assert!(page.body.contains("Destruction record"), "{path}");
        for d in &stored {
            assert!(page.body.contains(d.as_str()), "{path}");
        }
    }
}

#[test]
fn an_officer_never_decides_on_its_own_organisations_submission() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@acme.example", Some("Acme"));
    let id = submit(&mut sub, &[]);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "validate"), ("reason", crate::common::BASIS)],
    );
    assert_eq!(page.status, Status::Forbidden);
    assert!(page.body.contains("your own organisation"));
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("conflict_of_interest.refused"), 1);
    // From a page that showed it otherwise too: refused and recorded as such, not answered "it changed".
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("seen", "received-0-stale"),
        ],
    );
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(app.audit_count("conflict_of_interest.refused"), 2);
}

#[test]
fn dissemination_is_recorded_per_submission_and_in_the_whole_log() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub, &[]);
    officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    let today = chrono::Utc::now().date_naive().to_string();
    let page = officer.post(
        &format!("/officer/submissions/{id}/disseminations"),
        &[
            ("recipient", "State of Example Fusion Center"),
            ("recipient_kind", "state"),
            ("arrangement", "MOU 2026-14"),
            ("what", "Sanitized summary"),
            ("released_on", &today),
            ("sanitized", "yes"),
            ("removed", ""),
        ],
    );
    assert_eq!(
        page.status,
        Status::UnprocessableEntity,
        "a sanitized release says what was removed"
    );
    let page = officer.post(
        &format!("/officer/submissions/{id}/disseminations"),
        &[
            ("recipient", "State of Example Fusion Center"),
            ("recipient_kind", "state"),
            ("arrangement", "MOU 2026-14"),
            ("what", "Sanitized summary"),
            ("released_on", &today),
            ("sanitized", "yes"),
            ("removed", "Submitter name and site address"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(officer
        .get(&format!("/officer/submissions/{id}"))
        .body
        .contains("MOU 2026-14"));
    let log = officer.get("/officer/disseminations");
    assert!(
        log.body.contains("State of Example Fusion Center")
            && log.body.contains("Submitter name and site address")
    );
    assert_eq!(app.audit_count("dissemination.recorded"), 1);
    assert_eq!(sub.get("/officer/disseminations").status, Status::Forbidden);
    // A validated submission has left the queue; the officer finds it by tracking number.
    let tn = tracking_number_of(&app, &id);
    let page = officer.get(&format!("/officer/find?tracking={}", tn.to_lowercase()));
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(
        page.header("Location"),
        Some(format!("/officer/submissions/{id}").as_str())
    );
    assert_eq!(
        officer
            .get("/officer/find?tracking=PCII-1999-000001")
            .status,
        Status::NotFound
    );
    assert_eq!(
        officer.get("/officer/find?tracking=nonsense").status,
        Status::UnprocessableEntity
    );
    assert_eq!(
        sub.get(&format!("/officer/find?tracking={tn}")).status,
        Status::Forbidden
    );
}

fn audit_len(app: &TestApp) -> i64 {
    app.with_conn(|c| audit_entries::table.count().get_result(c).unwrap())
}

fn last_audit(app: &TestApp) -> (Option<String>, String, String) {
    app.with_conn(|c| {
        audit_entries::table
            .order(audit_entries::seq.desc())
            .select((
                audit_entries::actor_id,
                audit_entries::action,
                audit_entries::outcome,
            ))
            .first(c)
            .unwrap()
    })
}

/// Every route that shows or exports content, for every kind of asker, with the exact status, exactly one
/// audit entry per request, with the right actor and outcome. Administrators and auditors never get content.
#[test]
fn route_by_role_matrix() {
    let app = TestApp::new();
    let mut owner = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut owner, &[file_bytes(10_000, 1, "")]);
    officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    let att = app.attachment_ids(&id).remove(0);

    // Training recorded 10 days ago for two of them; for the third 400 days ago (it counts for 365).
    let live_id = authorized_user(&app, "live@dhs.example.gov", 10);
    let expired_id = authorized_user(&app, "expired@dhs.example.gov", 10);
    let stale_id = authorized_user(&app, "stale@dhs.example.gov", 400);
    let (tomorrow, in_a_month) = (date_in(&app, 1), date_in(&app, 30));
    for (uid, expires) in [
        (&live_id, &in_a_month),
        (&expired_id, &tomorrow),
        (&stale_id, &in_a_month),
    ] {
        let p = officer.post(
            &format!("/officer/submissions/{id}/grants"),
            &[("user_id", uid), ("reason", "need"), ("expires", expires)],
        );
        assert_eq!(p.status, Status::SeeOther);
    }
    // Two days on, the grant that ran to the end of tomorrow has expired; every session opened so far has
    // idled out, so everyone signs in now.
    app.advance(2 * DAY);
    owner = signed_in(&app, "ann@acme.example");
    officer = signed_in(&app, "olga@pcii.example.gov");
    let live = signed_in(&app, "live@dhs.example.gov");
    let expired = signed_in(&app, "expired@dhs.example.gov");
    let stale = signed_in(&app, "stale@dhs.example.gov");
    let other = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let auditor = app.login_as(Role::Auditor, "aud@oig.example.gov", None);
    let admin = app.login_as(Role::Administrator, "root@pcii.example.gov", None);
    let user_id = |email: &str| -> Option<String> {
        app.with_conn(|c| {
            users::table
                .filter(users::email.eq(email))
                .select(users::id)
                .first(c)
                .ok()
        })
    };

    use Status as S;
    let sub_routes = [
        format!("/submissions/{id}"),
        format!("/submissions/{id}/files/{att}"),
        format!("/submissions/{id}/receipt"),
        format!("/submissions/{id}/receipt.txt"),
    ];
    let officer_routes = [
        format!("/officer/submissions/{id}"),
        format!("/officer/submissions/{id}/files/{att}"),
        format!("/officer/submissions/{id}/export"),
    ];
    let analyst_routes = [
        format!("/analyst/submissions/{id}"),
        format!("/analyst/submissions/{id}/files/{att}"),
        format!("/analyst/submissions/{id}/export"),
    ];
    //            asker                        email                        submitter  officer  analyst
    let mut askers: Vec<(&str, Browser<'_>, Option<&str>, [S; 3])> = vec![
        (
            "anonymous",
            app.browser(),
            None,
            [S::Unauthorized, S::Unauthorized, S::Unauthorized],
        ),
        (
            "submitter of the organisation",
            owner,
            Some("ann@acme.example"),
            [S::Ok, S::Forbidden, S::Forbidden],
        ),
        (
            "submitter of another",
            other,
            Some("bob@globex.example"),
            [S::NotFound, S::Forbidden, S::Forbidden],
        ),
        (
            "officer",
            officer,
            Some("olga@pcii.example.gov"),
            [S::Forbidden, S::Ok, S::Forbidden],
        ),
        (
            "authorized user, live grant",
            live,
            Some("live@dhs.example.gov"),
            [S::Forbidden, S::Forbidden, S::Ok],
        ),
        (
            "authorized user, expired grant",
            expired,
            Some("expired@dhs.example.gov"),
            [S::Forbidden, S::Forbidden, S::Forbidden],
        ),
        (
            "authorized user, expired training",
            stale,
            Some("stale@dhs.example.gov"),
            [S::Forbidden, S::Forbidden, S::Forbidden],
        ),
        (
            "auditor",
            auditor,
            Some("aud@oig.example.gov"),
            [S::Forbidden, S::Forbidden, S::Forbidden],
        ),
        (
            "administrator",
            admin,
            Some("root@pcii.example.gov"),
            [S::Forbidden, S::Forbidden, S::Forbidden],
        ),
    ];
    let mut checked = 0;
    for (asker, b, email, expected) in askers.iter_mut() {
        let actor = email.and_then(&user_id);
        for (routes, want) in [
            (&sub_routes[..], expected[0]),
            (&officer_routes[..], expected[1]),
            (&analyst_routes[..], expected[2]),
        ] {
            for uri in routes {
                let before = audit_len(&app);
                let (status, body, _) = b.get_bytes(uri);
                assert_eq!(status, want, "{asker} GET {uri}");
                if status == S::Ok {
                    assert!(body.is_some(), "{asker} {uri}: complete body");
                }
                assert_eq!(
                    audit_len(&app),
                    before + 1,
                    "{asker} {uri}: exactly one audit entry"
                );
                let (who, action, outcome) = last_audit(&app);
                assert_eq!(who, actor, "{asker} {uri}: the entry names the asker");
                if status == S::Ok {
                    assert!(action.starts_with("content."), "{asker} {uri}: {action}");
                    assert_eq!(outcome, "success");
                } else {
                    assert_eq!(
                        (action.as_str(), outcome.as_str()),
                        ("access.refused", "refused"),
                        "{asker} {uri}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9 * 10);
}

/// A package opens each member's blob when the zip writer reaches it, not all before the first byte: on S3 each
/// open starts a GET whose body is left idle (and times out) until its member's turn. Seen through the
/// filesystem store's open files: while a package of four 1 MiB files waits for its client, at most one blob
/// is open (before, all four were).
#[test]
fn a_package_holds_at_most_one_blob_open_while_it_streams() {
    if !common::s3_test_store().unwrap_or_default().is_empty() {
        return; // open files of the directory store only
    }
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let files: Vec<Vec<u8>> = (1..=4u8).map(|i| file_bytes(1024 * 1024, i, "")).collect();
    let id = submit(&mut sub, &files);
    let blob_dir = std::fs::canonicalize(app.data_dir().join("blobs")).unwrap();
    let open_blobs = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(&blob_dir))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".owner-"))
            })
            .count()
    };
    assert_eq!(open_blobs(), 0);
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let export = format!("/officer/submissions/{id}/export");
    let waiting = officer.get_unread(&export);
    assert_eq!(waiting.status(), Status::Ok);
    // The writer fills its small channel (the cover sheet, then the first file's blob) and waits for the client:
    // once it has opened a blob, that one stays the only one open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while open_blobs() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the package's writer never opened a blob"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let open = open_blobs();
    assert_eq!(open, 1, "{open} blobs open at once");
    drop(waiting);
    // Read through, it is whole.
    let (status, zip, _) = officer.get_bytes(&export);
    assert_eq!(status, Status::Ok);
    let (_, members) = common::zip_members(&zip.unwrap());
    for f in &files {
        assert!(members.iter().any(|(_, b)| b == f), "a file is missing");
    }
}

/// A file or package being sent stops once its reader may no longer read it: the grant revoked while a file
/// streams, the account disabled while a package streams. What is left never leaves (the client sees the response
/// end short of its declared length) and each cut is recorded. Asked again before every piece here
/// (`access_recheck_seconds = 0`); every 5 s by default.
#[test]
fn a_download_under_way_is_cut_off_when_its_reader_loses_access() {
    use pcii_portal::db::schema::grants;
    const LEN: usize = 3 << 20;
    let app = TestApp::with(|f| f.merge(("access_recheck_seconds", 0)));
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut admin = app.login_as(Role::Administrator, "root@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(LEN, 3, "")]);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let (ana, mut a) = analyst(&app, "ana@dhs.example.gov");
    grant(&app, &mut officer, &id, &ana);
    let att = app.attachment_ids(&id).remove(0);
    let file = format!("/analyst/submissions/{id}/files/{att}");

    // Untouched, the file arrives whole although access is asked again before every piece.
    let (status, whole, _) = a.get_bytes(&file);
    assert_eq!(status, Status::Ok);
    assert_eq!(whole.expect("read to a clean end").len(), LEN);
    assert_eq!(app.audit_count("content.cut"), 0);

    // The grant revoked after the first piece: the download goes no further.
    let grant_id: String = app.with_conn(|c| {
        grants::table
            .filter(grants::user_id.eq(&ana))
            .select(grants::id)
            .first(c)
            .unwrap()
    });
    let got = received_around(a.get_unread(&file), || {
        let page = officer.post(
            &format!("/officer/submissions/{id}/grants/{grant_id}/revoke"),
            &[("reason", "Assessment finished")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    });
    assert!(
        got < LEN / 2,
        "{got} of {LEN} bytes sent after the revocation"
    );
    assert_eq!(app.audit_count("content.cut"), 1);
    let reason: Option<String> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("content.cut"))
            .select(audit_entries::reason)
            .first(c)
            .unwrap()
    });
    assert_eq!(reason.as_deref(), Some("attachment 1: grant revoked"));
    // And the next request is refused at the door.
    assert_eq!(a.get_bytes(&file).0, Status::Forbidden);

    // A second analyst's package, cut when an administrator disables the account.
    let (ben, mut b) = analyst(&app, "ben@dhs.example.gov");
    grant(&app, &mut officer, &id, &ben);
    let export = format!("/analyst/submissions/{id}/export");
    let got = received_around(b.get_unread(&export), || {
        let page = admin.post(
            &format!("/admin/accounts/{ben}/disable"),
            &[("reason", "left the agency"), ("confirm", "true")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    });
    assert!(
        got < LEN / 2,
        "{got} bytes of the package sent after the account was disabled"
    );
    assert_eq!(app.audit_count("content.cut"), 2);

    // A third analyst's download, cut when the session it came from is ended from another (a stolen session ended
    // by its owner): the grant and the account still hold, the session does not.
    let (_, mut c) = analyst(&app, "cam@dhs.example.gov");
    let cam = app.user_id("cam@dhs.example.gov");
    grant(&app, &mut officer, &id, &cam);
    let mut owner = signed_in(&app, "cam@dhs.example.gov");
    let got = received_around(c.get_unread(&file), || {
        let page = owner.post("/account/sessions/end-others", &[]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    });
    assert!(
        got < LEN / 2,
        "{got} of {LEN} bytes sent after the session ended"
    );
    assert_eq!(app.audit_count("content.cut"), 3);
    let reasons: Vec<Option<String>> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("content.cut"))
            .order(audit_entries::seq)
            .select(audit_entries::reason)
            .load(c)
            .unwrap()
    });
    assert_eq!(
        reasons.last().cloned().flatten().as_deref(),
        Some("attachment 1: session ended")
    );
    // The owner's own session reads on.
    let (status, whole, _) = owner.get_bytes(&file);
    assert_eq!(status, Status::Ok);
    assert_eq!(whole.expect("read to a clean end").len(), LEN);
}

/// The `seen` token of the first decision form on a page (what the page showed of the submission).
fn seen_on(page: &str) -> String {
    let needle = r#"name="seen" value=""#;
    let at = page.find(needle).expect("a seen field") + needle.len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// The submitter sends its cure of a defective submission, its stored files described again: received again.
fn send_cure(app: &TestApp, sub: &mut Browser<'_>, id: &str) {
    let mut parts = complete_fields("Lifecycle narrative, corrected", "submit");
    for a in app.attachment_ids(id) {
        parts.push(Part::Text(
            Box::leak(format!("attachment_description_{a}").into_boxed_str()),
            "desc",
        ));
    }
    let cured = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(cured.status, Status::SeeOther, "{}", cured.body);
    assert_eq!(app.status_of(id), "received");
}

/// A final decision is confirmed on a page that shows the submission as it was: if the submitter cures it (or
/// another officer decides) before the officer confirms, the confirmation is refused and nothing is recorded, so a
/// decision never lands on content the officer did not see. Confirmed on a fresh page, it goes through.
#[test]
fn a_final_decision_confirmed_after_the_submission_changed_is_refused() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(50_000, 1, "")]);
    let decision = format!("/officer/submissions/{id}/decision");
    let page = officer.post(
        &decision,
        &[
            ("decision", "defective"),
            ("reason", "File 1 is unreadable."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    // The cure period passes ("not validated" waits for it); a late cure is still taken. Both sign in again.
    app.advance(31 * DAY);
    assert_eq!(
        officer.login("olga@pcii.example.gov", common::PASSWORD),
        Status::SeeOther
    );
    assert_eq!(
        sub.login("ann@acme.example", common::PASSWORD),
        Status::SeeOther
    );
    let reason = "Defects not cured.";
    let page = officer.post(
        &decision,
        &[("decision", "not_validated"), ("reason", reason)],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    let seen = seen_on(&page.body);

    // Meanwhile the submitter cures it.
    app.advance(1);
    send_cure(&app, &mut sub, &id);

    let page = officer.post(
        &decision,
        &[
            ("decision", "not_validated"),
            ("reason", reason),
            ("confirm", "1"),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("changed after your page showed it"));
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("decision.not_validated"), 0);

    // On a page that shows it as it is now, the confirmation goes through.
    let page = officer.post(
        &decision,
        &[("decision", "validate"), ("reason", crate::common::BASIS)],
    );
    assert_eq!(page.status, Status::Ok);
    let seen = seen_on(&page.body);
    let page = officer.post(
        &decision,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "validated");
}

/// An answer written in the thread after an officer's page was made (to a request for information, say) makes that
/// page stale: the decision confirmed on it is refused (409, nothing recorded), the page comes back with the words
/// kept, and from a page made after the answer it goes through.
#[test]
fn a_message_written_after_an_officers_page_makes_its_decision_stale() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(5_000, 1, "")]);
    let decision = format!("/officer/submissions/{id}/decision");
    let page = officer.post(
        &decision,
        &[("decision", "validate"), ("reason", crate::common::BASIS)],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    let seen = seen_on(&page.body);

    let page = sub.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[Part::Text("body", "One more thing before you decide")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    fn confirm(seen: &str) -> [(&'static str, &str); 4] {
        [
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
            ("seen", seen),
        ]
    }
    let page = officer.post(&decision, &confirm(&seen));
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("wrote in its thread"), "{}", page.body);
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("decision.validated"), 0);

    let page = officer.post(
        &decision,
        &[("decision", "validate"), ("reason", crate::common::BASIS)],
    );
    assert_eq!(page.status, Status::Ok);
    // The Office's own message (this officer thanking them) does not make its page stale.
    let thanks = officer.post_multipart(
        &format!("/officer/submissions/{id}/messages"),
        &[Part::Text("body", "Thank you, noted")],
    );
    assert_eq!(thanks.status, Status::SeeOther, "{}", thanks.body);
    let page = officer.post(&decision, &confirm(&seen_on(&page.body)));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "validated");
}

/// A correction the organisation saves and does not send is its own draft: it changes nothing officers see, so an
/// officer's page from before it is not stale, and the decision confirmed on it is recorded.
#[test]
fn a_correction_saved_and_not_sent_does_not_make_an_officers_page_stale() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(50_000, 1, "")]);
    let decision = format!("/officer/submissions/{id}/decision");
    let page = officer.post(
        &decision,
        &[
            ("decision", "defective"),
            ("reason", "File 1 is unreadable."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    app.advance(31 * DAY);
    for (browser, email) in [
        (&mut officer, "olga@pcii.example.gov"),
        (&mut sub, "ann@acme.example"),
    ] {
        assert_eq!(browser.login(email, common::PASSWORD), Status::SeeOther);
    }
    let reason = "Defects not cured.";
    let page = officer.post(
        &decision,
        &[("decision", "not_validated"), ("reason", reason)],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    let seen = seen_on(&page.body);

    // Meanwhile the submitter saves a correction, and does not send it.
    app.advance(1);
    let mut parts = complete_fields("A correction, not sent", "draft");
    for a in app.attachment_ids(&id) {
        parts.push(Part::Text(
            Box::leak(format!("attachment_description_{a}").into_boxed_str()),
            "desc",
        ));
    }
    let saved = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(saved.status, Status::SeeOther, "{}", saved.body);
    assert_eq!(app.status_of(&id), "defective");

    let page = officer.post(
        &decision,
        &[
            ("decision", "not_validated"),
            ("reason", reason),
            ("confirm", "1"),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "not_validated");
}

/// The submitter was told that a defect notice comes within 30 days of receipt: past them, the officer's page says
/// that a notice now would be late (the decision stays the officer's).
#[test]
fn the_officer_is_told_when_the_defect_notice_window_has_passed() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(&mut sub, &[file_bytes(10_000, 1, "")]);
    let path = format!("/officer/submissions/{id}");
    app.advance(29 * 24 * 3600);
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let page = olga.get(&path);
    assert!(page.body.contains("<dt>Defect notice due</dt>"));
    assert!(!page.body.contains("data-notice-late"), "{}", page.body);
    app.advance(2 * 24 * 3600);
    let mut omar = app.login_as(Role::Officer, "omar@pcii.example.gov", None);
    let page = omar.get(&path);
    assert!(page.body.contains("data-notice-late"), "{}", page.body);
}

/// The submission page's decision form carries what the page showed: an officer who read one version, and decides
/// after another officer's defect notice and the submitter's cure, decides nothing (a validation would have applied
/// to content the officer never opened; a second defect notice would have restarted the cure period).
#[test]
fn a_decision_from_a_page_that_showed_an_earlier_version_is_refused() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut omar = app.login_as(Role::Officer, "omar@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(50_000, 1, "")]);
    let path = format!("/officer/submissions/{id}");
    let decision = format!("{path}/decision");
    // Olga reads the first version, with who affirmed its express statement (as the receipt names them).
    let page = olga.get(&path);
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body
            .contains("by <bdi>Test ann@acme.example &lt;ann@acme.example&gt;</bdi>"),
        "{}",
        page.body
    );
    // And the Office's own deadline for a defect notice, 30 days from receipt; once one was sent, the cure's.
    assert!(page.body.contains("<dt>Defect notice due</dt>"));
    assert!(!page.body.contains("data-notice-late"));
    assert!(!page.body.contains("<dt>Cure due</dt>"));
    let seen = seen_on(&page.body);
    assert!(!seen.is_empty());
    // Omar marks it defective; the submitter cures it.
    let page = omar.post(
        &decision,
        &[
            ("decision", "defective"),
            ("reason", "File 1 is unreadable."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let page = olga.get(&path);
    assert!(page.body.contains("<dt>Cure due</dt>"));
    assert!(!page.body.contains("<dt>Defect notice due</dt>"));
    app.advance(1);
    send_cure(&app, &mut sub, &id);

    // Olga's stale page: a validation is refused at its confirmation page already, and at its confirmation.
    let page = olga.post(
        &decision,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    // The submission page comes back as it is now, the officer's words kept, the form carrying what it now shows.
    assert!(page.body.contains("changed after your page showed it"));
    assert!(page.body.contains(crate::common::BASIS));
    let fresh = seen_on(&page.body);
    assert_ne!(fresh, seen);
    let page = olga.post(
        &decision,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("changed after your page showed it"));
    // A defect notice from the stale page is refused too.
    let page = olga.post(
        &decision,
        &[
            ("decision", "defective"),
            ("reason", "File 1 is unreadable."),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("decision.validated"), 0);
    assert_eq!(app.audit_count("decision.defective"), 1);

    // Omar opens it too, as Olga does.
    let omar_seen = seen_on(&omar.get(&path).body);
    // From the page as it is now, the validation goes through, its confirmation page carrying that page's token.
    let page = olga.get(&path);
    let seen = seen_on(&page.body);
    let page = olga.post(
        &decision,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(seen_on(&page.body), seen);
    let page = olga.post(
        &decision,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
            ("seen", &seen),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "validated");

    // Omar, from his page before it, finds it not PCII: a decision it can no longer take. Told it changed (not that
    // validated PCII cannot be marked so), with his words shown though the page has no form for them any more.
    let words = "Omar's ground: customarily in the public domain";
    let page = omar.post(
        &decision,
        &[
            ("decision", "not_validated"),
            ("reason", words),
            ("seen", &omar_seen),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("changed after your page showed it"));
    assert!(page.body.contains("What you wrote (not recorded)"));
    assert!(page
        .body
        .contains("Omar&#x27;s ground: customarily in the public domain"));
    assert_eq!(app.status_of(&id), "validated");
    assert_eq!(app.audit_count("decision.not_validated"), 0);
}

/// The submitter's list shows the organisation's newest notices on every page, and a defect notice quotes the
/// officer's words about a submission presumed protected: a page that shows such a notice is marked even when the
/// submission itself is listed on another page.
#[test]
fn a_notice_shown_beside_a_page_of_drafts_marks_the_page() {
    use pcii_portal::models::submission::PER_PAGE;
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(1000, 1, "")]);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "DefectWordsMarker: file 1 is unreadable"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    app.advance(1);
    for i in 0..PER_PAGE {
        let page = sub.post_multipart(
            "/submissions",
            &[
                Part::Text("title", &format!("Draft {i}")),
                Part::Text("action", "draft"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let first = sub.get("/submissions");
    assert_eq!(first.status, Status::Ok);
    assert!(
        !first
            .body
            .contains(&format!("<tr><td><a href=\"/submissions/{id}\">")),
        "the defective one is listed on page 2"
    );
    assert!(
        first.body.contains("DefectWordsMarker"),
        "its notice is shown"
    );
    assert!(first.body.contains("pcii-banner"), "and the page is marked");
    assert_eq!(sub.get("/submissions?page=1").status, Status::Ok);
}

/// PCII.md, Markings: every page that displays protected information is marked at the top and bottom. Pages that
/// list titles (the officer's queue and search, the analyst's grants, the submitter's own list) carry the strongest
/// marking among the titles they show, with the protection statement; a page showing none carries none.
#[test]
fn pages_listing_protected_titles_are_marked_top_and_bottom() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let (ana, mut a) = analyst(&app, "ana@dhs.example.gov");
    let marked = |body: &str, title: &str| {
        body.matches(&format!("<p class=\"marking-title\">{title}</p>"))
            .count()
    };
    let search = "/officer/find?status=validated";
    for (who, body) in [
        ("queue", officer.get("/officer").body),
        ("submitter", sub.get("/submissions").body),
        ("analyst", a.get("/analyst").body),
        ("search", officer.get(search).body),
    ] {
        assert!(
            !body.contains("pcii-banner"),
            "{who}: nothing listed, nothing marked"
        );
    }

    let id = submit(&mut sub, &[file_bytes(2000, 3, "")]);
    let tn = tracking_number_of(&app, &id);
    let att = app.attachment_ids(&id).remove(0);
    // A downloaded file cannot carry a marking inside: the name its copy is saved under does.
    let saved_as = |b: &mut Browser<'_>, uri: String| -> String {
        let (status, _, headers) = b.get_bytes(&uri);
        assert_eq!(status, Status::Ok, "{uri}");
        crate::common::header(&headers, "Content-Disposition")
            .unwrap()
            .to_string()
    };
    let pending = format!("filename*=UTF-8''PCII-PENDING%20{tn}%20-%20evilreport.pdf");
    for (b, uri) in [
        (
            &mut officer,
            format!("/officer/submissions/{id}/files/{att}"),
        ),
        (&mut sub, format!("/submissions/{id}/files/{att}")),
    ] {
        let cd = saved_as(b, uri);
        assert!(cd.ends_with(&pending), "{cd}");
    }
    for (who, body) in [
        ("queue", officer.get("/officer").body),
        ("submitter", sub.get("/submissions").body),
    ] {
        assert!(
            body.contains("Substation 14 protection scheme"),
            "{who}: the title is listed"
        );
        assert_eq!(marked(&body, PENDING), 2, "{who}: {body}");
        assert!(body.contains("presumed protected"), "{who}: the statement");
    }

    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    grant(&app, &mut officer, &id, &ana);
    let queue = officer.get("/officer").body;
    assert!(
        !queue.contains("pcii-banner"),
        "validated PCII leaves the queue"
    );
    for (who, body) in [
        ("search", officer.get(search).body),
        ("analyst", a.get("/analyst").body),
        ("submitter", sub.get("/submissions").body),
    ] {
        assert!(
            body.contains("Substation 14 protection scheme"),
            "{who}: the title is listed"
        );
        assert_eq!(marked(&body, PCII), 2, "{who}: {body}");
        assert_eq!(marked(&body, PENDING), 0, "{who}");
        assert!(body.contains("6 CFR Part 29"), "{who}: the statement");
    }
    let cd = saved_as(&mut a, format!("/analyst/submissions/{id}/files/{att}"));
    assert!(
        cd.ends_with(&format!(
            "filename*=UTF-8''PCII%20{tn}%20-%20evilreport.pdf"
        )),
        "{cd}"
    );
    assert!(
        cd.contains(&format!("filename=\"PCII {tn} - evilreport.pdf\"")),
        "{cd}"
    );
}

/// Not validated (or withdrawn for a return), the organisation must answer: choose return or destruction, take the
/// package it chose. PCII.md has the information returned or destroyed; an organisation that never answers must not
/// leave it on record for ever. 30 days after the decision (or after choosing a return) the Program Office may destroy
/// it, not before (the exact second is the lifecycle's unit test), as finally as a submitter's destruction, with the lapse as its recorded reason.
#[test]
fn the_office_destroys_what_the_organisation_left_unanswered_and_only_after_its_30_days() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut insider = app.login_as(Role::Officer, "otto@acme.example", Some("Acme"));
    let id = submit(&mut sub, &[file_bytes(50_000, 1, "")]);
    let before = app.now();
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Customarily in the public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    // 30 days from the decision (the test clock runs with the wall clock: the decision's second is read back).
    let due_at = disposition_due(&app, &id);
    assert!((before + 30 * DAY..=app.now() + 30 * DAY).contains(&due_at));
    let due = pcii_portal::time::datetime(due_at);
    let detail = sub.get(&format!("/submissions/{id}"));
    assert!(detail.body.contains("disposition-due"), "{}", detail.body);
    assert!(detail.body.contains(&due), "{}", detail.body);
    let stored: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .select(blobs::storage_name)
            .load(c)
            .unwrap()
    });
    assert!(!stored.is_empty());

    let destroy = format!("/officer/submissions/{id}/destroy-unclaimed");
    let refused_before_due = |officer: &mut Browser<'_>| {
        let page = officer.get(&format!("/officer/submissions/{id}"));
        assert!(
            page.body.contains("The organisation has until"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("unclaimed_confirm"));
        assert!(!officer
            .get("/officer")
            .body
            .contains("No answer from the organisation"));
        let page = officer.post(&destroy, &[("confirm", "yes")]);
        assert_eq!(page.status, Status::Conflict, "{}", page.body);
        assert_eq!(app.status_of(&id), "not_validated");
    };
    refused_before_due(&mut officer);
    // A minute before the deadline: still the organisation's time (each signs in again after the days). (The test
    // clock runs with the wall clock, so the exact second is left to the lifecycle's unit test.)
    app.advance(30 * DAY - 60);
    officer = signed_in(&app, "olga@pcii.example.gov");
    refused_before_due(&mut officer);
    assert_eq!(app.audit_count("decision.destroyed_unclaimed"), 0);

    app.advance(60);
    officer = signed_in(&app, "olga@pcii.example.gov");
    insider = {
        let _ = insider;
        signed_in(&app, "otto@acme.example")
    };
    let home = officer.get("/officer");
    assert!(
        home.body.contains("No answer from the organisation"),
        "{}",
        home.body
    );
    assert!(home.body.contains(&format!("/officer/submissions/{id}")));
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert!(page.body.contains("unclaimed_confirm"), "{}", page.body);
    // The box unticked, nothing happens; an officer of the submitting organisation may not do it at all.
    assert_eq!(
        officer.post(&destroy, &[]).status,
        Status::UnprocessableEntity
    );
    assert!(insider
        .get("/officer")
        .body
        .contains("(your organisation's: another officer decides)"));
    assert!(!home.body.contains("another officer decides)"));
    let page = insider.post(&destroy, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::Forbidden, "{}", page.body);
    assert_eq!(app.audit_count("conflict_of_interest.refused"), 1);
    assert!(!insider
        .get(&format!("/officer/submissions/{id}"))
        .body
        .contains("unclaimed_confirm"));
    assert_eq!(app.status_of(&id), "not_validated");
    assert!(stored.iter().all(|n| app.blob_exists(n)));

    let mails_before = app.outbox().len();
    let page = officer.post(&destroy, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "destroyed");
    for name in &stored {
        assert!(!app.blob_exists(name), "every ciphertext is gone");
    }
    let keys: i64 = app.with_conn(|c| {
        use pcii_portal::db::schema::data_keys;
        data_keys::table
            .filter(data_keys::submission_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(keys, 0, "its wrapped data keys went with the decision");
    assert_eq!(app.audit_count("decision.destroyed_unclaimed"), 1);
    let reasons = app.audit_reasons("decision.destroyed_unclaimed");
    assert!(
        reasons[0].contains("had not chosen return or destruction by"),
        "{reasons:?}"
    );
    // The organisation is told: its history names who destroyed it and why, and its member gets the mail.
    sub = signed_in(&app, "ann@acme.example");
    let detail = sub.get(&format!("/submissions/{id}"));
    assert!(
        detail.body.contains("destroyed by the PCII Program Office"),
        "{}",
        detail.body
    );
    assert!(!detail.body.contains("Record my choice"));
    let mails = app.outbox();
    let told: Vec<&String> = mails[mails_before..]
        .iter()
        .filter(|m| m.contains("ann@acme.example"))
        .collect();
    assert_eq!(told.len(), 1, "{:?}", &mails[mails_before..]);
    assert!(
        told[0].contains("Subject: The PCII Program Office destroyed a submission's information"),
        "{}",
        told[0]
    );
    assert!(
        !told[0].contains(&tracking_number_of(&app, &id)),
        "{}",
        told[0]
    );
    assert!(!home_lists(&mut officer, &id));
    // Once is all: a second try is refused.
    assert_eq!(
        officer.post(&destroy, &[("confirm", "yes")]).status,
        Status::Conflict
    );
}

/// The submission's stored deadline for its organisation's answer.
fn disposition_due(app: &TestApp, id: &str) -> i64 {
    app.with_conn(|c| {
        submissions::table
            .find(id)
            .select(submissions::disposition_due_at)
            .first::<Option<i64>>(c)
            .unwrap()
            .expect("a deadline")
    })
}

fn home_lists(officer: &mut Browser<'_>, id: &str) -> bool {
    officer
        .get("/officer")
        .body
        .contains(&format!("<li><a href=\"/officer/submissions/{id}\""))
}

/// A return chosen restarts the 30 days, for taking the package; the office may destroy only once they pass too.
#[test]
fn a_return_chosen_but_never_taken_may_be_destroyed_30_days_after_the_choice() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub, &[file_bytes(50_000, 1, "")]);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Customarily in the public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    app.advance(20 * DAY);
    sub = signed_in(&app, "ann@acme.example");
    let before = app.now();
    let page = sub.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let due_at = disposition_due(&app, &id);
    assert!((before + 30 * DAY..=app.now() + 30 * DAY).contains(&due_at));
    // Chosen again later, a return would push its deadline on for ever: refused, the deadline kept.
    app.advance(60);
    let page = sub.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert_eq!(app.audit_count("submission.return_requested"), 1);
    let detail = sub.get(&format!("/submissions/{id}"));
    assert!(
        detail.body.contains(&pcii_portal::time::datetime(due_at)),
        "{}",
        detail.body
    );
    // Past the decision's 30 days, within the choice's: refused.
    app.advance(11 * DAY);
    officer = signed_in(&app, "olga@pcii.example.gov");
    assert!(!home_lists(&mut officer, &id));
    let destroy = format!("/officer/submissions/{id}/destroy-unclaimed");
    assert_eq!(
        officer.post(&destroy, &[("confirm", "yes")]).status,
        Status::Conflict
    );
    app.advance(19 * DAY);
    officer = signed_in(&app, "olga@pcii.example.gov");
    assert!(home_lists(&mut officer, &id));
    assert!(officer
        .get("/officer")
        .body
        .contains("return package not taken"));
    let page = officer.post(&destroy, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "destroyed");
    let reasons = app.audit_reasons("decision.destroyed_unclaimed");
    assert!(
        reasons[0].contains("had not taken the return package"),
        "{reasons:?}"
    );
    // The package can no longer be taken.
    sub = signed_in(&app, "ann@acme.example");
    assert_ne!(
        sub.post(
            &format!("/submissions/{id}/returned"),
            &[("confirm", "yes")]
        )
        .status,
        Status::SeeOther
    );
    assert_eq!(app.status_of(&id), "destroyed");

    // Withdrawn for a return: the same 30 days from the withdrawal.
    let withdrawn = submit(&mut sub, &[file_bytes(50_000, 2, "")]);
    let page = sub.post(
        &format!("/submissions/{withdrawn}/withdraw"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&withdrawn), "withdrawn");
    let destroy = format!("/officer/submissions/{withdrawn}/destroy-unclaimed");
    app.advance(30 * DAY - 60);
    officer = signed_in(&app, "olga@pcii.example.gov");
    assert!(!home_lists(&mut officer, &withdrawn));
    assert_eq!(
        officer.post(&destroy, &[("confirm", "yes")]).status,
        Status::Conflict
    );
    app.advance(60);
    assert!(home_lists(&mut officer, &withdrawn));
    let page = officer.post(&destroy, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&withdrawn), "destroyed");
}

/// Migration 000022 on a populated store: submissions already waiting on their organisation's answer were told of no
/// deadline, so theirs runs 30 days from the migration (or from their last change, if later), never from a change
/// long past; nothing else gets one.
#[test]
fn waiting_submissions_get_their_30_days_from_the_migration_not_from_the_past() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let old = submit(&mut sub, &[file_bytes(10_000, 1, "")]);
    let recent = submit(&mut sub, &[file_bytes(10_000, 2, "")]);
    let validated = submit(&mut sub, &[file_bytes(10_000, 3, "")]);
    for (id, decision) in [
        (&old, "not_validated"),
        (&recent, "not_validated"),
        (&validated, "validate"),
    ] {
        let page = officer.post(
            &format!("/officer/submissions/{id}/decision"),
            &[
                ("decision", decision),
                ("reason", "Customarily in the public domain"),
                ("confirm", "1"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    // Back to before migration 22 (the one under test): every later migration reverted first, then 22.
    let mut reverted = 0;
    while app.with_conn(|c| {
        diesel::sql_query("SELECT disposition_due_at FROM submissions LIMIT 1")
            .execute(c)
            .is_ok()
    }) {
        assert!(reverted < 20, "migration 22 was never reverted");
        app.with_conn(|c| pcii_portal::db::revert_last_migration(c).unwrap());
        reverted += 1;
    }
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (long_ago, ahead) = (wall() - 90 * DAY, wall() + 10 * DAY);
    app.with_conn(|c| {
        for (id, at) in [(&old, long_ago), (&recent, ahead)] {
            diesel::sql_query(format!(
                "UPDATE submissions SET updated_at = {at} WHERE id = '{id}'"
            ))
            .execute(c)
            .unwrap();
        }
    });
    let before = wall();
    app.with_conn(|c| assert_eq!(pcii_portal::db::run_migrations(c).unwrap(), reverted));
    let after = wall();
    let due = |id: &str| -> Option<i64> {
        app.with_conn(|c| {
            submissions::table
                .find(id)
                .select(submissions::disposition_due_at)
                .first(c)
                .unwrap()
        })
    };
    let old_due = due(&old).expect("a deadline");
    // (Within two seconds: PostgreSQL's now() is its transaction's start, and its cast rounds.)
    assert!(
        (before - 2 + 30 * DAY..=after + 2 + 30 * DAY).contains(&old_due),
        "{old_due} is 30 days from the migration"
    );
    assert_eq!(due(&recent), Some(ahead + 30 * DAY));
    assert_eq!(due(&validated), None);
}

/// Before destroying what an organisation left unanswered, the officer sees whether it was told by email: when its
/// reminder goes, that it went (to how many, when), or that no member of it can be mailed at all.
#[test]
fn the_officer_sees_whether_the_organisation_was_reminded_of_its_deadline() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut bob = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let not_validated = |officer: &mut Browser<'_>, id: &str| {
        let page = officer.post(
            &format!("/officer/submissions/{id}/decision"),
            &[
                ("decision", "not_validated"),
                ("reason", "Not critical infrastructure"),
                ("confirm", "1"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    let acme = submit(&mut ann, &[file_bytes(1_000, 1, "")]);
    let globex = submit(&mut bob, &[file_bytes(1_000, 2, "")]);
    not_validated(&mut officer, &acme);
    not_validated(&mut officer, &globex);

    let reminder_from = pcii_portal::time::datetime(disposition_due(&app, &acme) - 7 * DAY);
    let page = officer.get(&format!("/officer/submissions/{acme}"));
    assert!(
        page.body.contains(&format!(
            "goes to the organisation's 1 member with a confirmed address on {reminder_from}"
        )),
        "{}",
        page.body
    );
    // Globex's one member has not confirmed an address: nobody there hears of the deadline by email.
    app.with_conn(|c| {
        diesel::update(users::table.filter(users::email.eq("bob@globex.example")))
            .set(users::email_verified_at.eq(None::<i64>))
            .execute(c)
            .unwrap()
    });
    let page = officer.get(&format!("/officer/submissions/{globex}"));
    assert!(
        page.body
            .contains("No member of the organisation can be mailed"),
        "{}",
        page.body
    );

    // Past the reminder's time, the round mails Acme's member; the page says so.
    app.advance(23 * DAY + 120);
    app.notification_round();
    officer = signed_in(&app, "olga@pcii.example.gov");
    let page = officer.get(&format!("/officer/submissions/{acme}"));
    assert!(
        page.body
            .contains("was mailed to 1 member of the organisation on"),
        "{}",
        page.body
    );

    // Past the deadline, where the officer may destroy, no reminder is said to be coming: none went to Globex.
    app.advance(7 * DAY);
    officer = signed_in(&app, "olga@pcii.example.gov");
    let page = officer.get(&format!("/officer/submissions/{globex}"));
    assert!(page.body.contains("unclaimed_confirm"), "{}", page.body);
    assert!(
        page.body
            .contains("No reminder was mailed before the deadline"),
        "{}",
        page.body
    );
}

/// What a page on another site makes a signed-in browser ask for. A page on a sibling subdomain is the same site, so
/// the session cookie goes with it: a navigation it starts gets a page asking the person to continue, for every page
/// and every route that hands out content, with nothing opened or recorded; the same link followed from the portal's
/// own page, typed (no site) or asked by a client that sends no fetch metadata works. A read another site's page embeds (an image, a frame, a fetch, a prefetch) is refused, its entries
/// folded; the stylesheet is not judged.
#[test]
fn what_another_site_s_page_makes_a_signed_in_browser_ask_opens_and_records_nothing() {
    // The fetch metadata of a top-level navigation that `site` started.
    const fn navigation(site: &'static str) -> [(&'static str, &'static str); 3] {
        [
            ("Sec-Fetch-Site", site),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
        ]
    }
    const SAME_SITE: [(&str, &str); 3] = navigation("same-site");
    const CROSS_SITE: [(&str, &str); 3] = navigation("cross-site");
    const HERE: [(&str, &str); 3] = navigation("same-origin");
    const TYPED: [(&str, &str); 3] = navigation("none");
    let app = TestApp::new();
    let mut sue = app.login_as(Role::Submitter, "sue@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = validated(&mut sue, &mut olga);
    let (analyst_id, mut ana) = analyst(&app, "ana@pcii.example.gov");
    grant(&app, &mut olga, &id, &analyst_id);
    let mut audrey = app.login_as(Role::Auditor, "audrey@pcii.example.gov", None);
    let drawing = file_bytes(700, 3, "");
    let page = sue.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[
            Part::Text("body", "The drawing you asked for."),
            Part::File("file_1", "drawing.pdf", &drawing),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let file = app.attachment_ids(&id)[0].clone();
    let message_file: String = app.with_conn(|c| {
        message_files::table
            .select(message_files::id)
            .first(c)
            .unwrap()
    });
    let entries = |app: &TestApp| -> i64 {
        app.with_conn(|c| audit_entries::table.count().get_result(c).unwrap())
    };

    // (browser, route): every page and route that hands out content.
    let routes: Vec<(usize, String)> = vec![
        (0, format!("/submissions/{id}/files/{file}")),
        (
            0,
            format!("/submissions/{id}/messages/files/{message_file}"),
        ),
        (0, format!("/submissions/{id}/package")),
        (0, format!("/submissions/{id}/receipt.txt")),
        (0, format!("/submissions/{id}")),
        (0, format!("/submissions/{id}/messages")),
        (1, format!("/officer/submissions/{id}/files/{file}")),
        (1, format!("/officer/submissions/{id}/export")),
        (1, "/officer/disseminations.csv".to_string()),
        (
            1,
            format!("/officer/submissions/{id}/messages/files/{message_file}"),
        ),
        (1, format!("/officer/submissions/{id}")),
        (1, format!("/officer/submissions/{id}/messages")),
        (2, format!("/analyst/submissions/{id}/files/{file}")),
        (2, format!("/analyst/submissions/{id}/export")),
        (2, format!("/analyst/submissions/{id}")),
        (3, "/audit/checkpoints.json".to_string()),
    ];
    for (who, url) in routes {
        let browser = match who {
            0 => &mut sue,
            1 => &mut olga,
            2 => &mut ana,
            _ => &mut audrey,
        };
        // Another site's navigation (a sibling subdomain's; a cross-site one carries no session in a browser, but
        // is answered the same): asked to continue, nothing opened, nothing recorded.
        for headers in [&SAME_SITE, &CROSS_SITE] {
            let before = entries(&app);
            let (status, body, _) = browser.get_bytes_with(&url, headers);
            assert_eq!(status, Status::Ok, "{url}");
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            assert!(
                body.contains("You came here from another site"),
                "{url}: {body}"
            );
            assert!(
                body.contains(&format!("href=\"{}\"", url.replace('/', "&#x2F;"))),
                "{url}: {body}"
            );
            assert!(!body.contains("Lifecycle narrative"), "{url}");
            assert_eq!(entries(&app), before, "{url}: nothing recorded");
        }
        // Such a navigation arriving without the session cookie (a cross-site link) meets a 401 page whose "Sign
        // in" opens the sign-in page with `next=` from the portal itself: signed in, it offers the page too.
        let before = entries(&app);
        let asked = format!("/login?next={}", common::urlencode(&url));
        let (status, body, _) = browser.get_bytes_with(&asked, &HERE);
        assert_eq!(status, Status::Ok, "{asked}");
        let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
        assert!(
            body.contains("You are signed in already"),
            "{asked}: {body}"
        );
        assert!(
            body.contains(&format!("href=\"{}\"", url.replace('/', "&#x2F;"))),
            "{asked}: {body}"
        );
        assert_eq!(entries(&app), before, "{asked}: nothing recorded");
        if url.ends_with("/package") {
            continue; // offered only once a return was chosen
        }
        // From the portal's own page, typed, or without fetch metadata: it opens.
        for headers in [&HERE[..], &TYPED[..], &[][..]] {
            let (status, body, _) = browser.get_bytes_with(&url, headers);
            assert_eq!(status, Status::Ok, "{url} {headers:?}");
            assert!(!body.unwrap_or_default().is_empty(), "{url}");
        }
    }
    // The officer's page as the person sees it (the control for the checks above).
    let page = format!("/officer/submissions/{id}");
    let (_, shown, _) = olga.get_bytes_with(&page, &HERE);
    assert!(String::from_utf8(shown.unwrap())
        .unwrap()
        .contains("Lifecycle narrative"));

    // Reads embedded elsewhere: refused, and however many, their entries folded.
    let csrf = app.audit_count("csrf.refused");
    for extra in [
        [("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Dest", "image")],
        [("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "iframe")],
        [("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty")],
        [("Sec-Fetch-Mode", "navigate"), ("Sec-Purpose", "prefetch")],
        [("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Dest", "image")],
    ] {
        let mut headers = vec![("Sec-Fetch-Site", "same-site")];
        headers.extend(extra);
        let (status, body, _) = olga.get_bytes_with(&page, &headers);
        assert_eq!(status, Status::Forbidden, "{headers:?}");
        let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
        assert!(!body.contains("Lifecycle narrative"), "{headers:?}");
    }
    assert_eq!(
        app.audit_count("csrf.refused"),
        csrf + 1,
        "one entry, the rest folded"
    );
    assert!(app
        .audit_reasons("csrf.refused")
        .iter()
        .any(|r| r.contains("read embedded in another site's page")));
    // A prefetch is refused whoever started it (the browser itself, from the address bar, sends no site).
    let (status, _, _) = olga.get_bytes_with(
        &page,
        &[
            ("Sec-Fetch-Site", "none"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Purpose", "prefetch;prerender"),
        ],
    );
    assert_eq!(status, Status::Forbidden);
    // The start page may be linked to, not embedded (each load would count as the session's use).
    let (status, body, _) = olga.get_bytes_with("/", &SAME_SITE);
    assert_eq!(status, Status::Ok);
    assert!(!String::from_utf8_lossy(&body.unwrap()).contains("You came here from another site"));
    let (status, _, _) = olga.get_bytes_with(
        "/",
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Sec-Fetch-Mode", "no-cors"),
            ("Sec-Fetch-Dest", "image"),
        ],
    );
    assert_eq!(status, Status::Forbidden);
    // The sign-in and step-up pages are offered without the `next=` that would send the browser on unseen.
    for (asked, offered) in [
        (
            format!("/login?next=/officer/submissions/{id}/export"),
            "/login",
        ),
        (
            format!("/account/step-up?next=/officer/submissions/{id}/export"),
            "/account/step-up",
        ),
    ] {
        let (status, body, _) = olga.get_bytes_with(&asked, &SAME_SITE);
        assert_eq!(status, Status::Ok, "{asked}");
        let body = String::from_utf8_lossy(&body.unwrap()).into_owned();
        let href = format!("href=\"{}\"", offered.replace('/', "&#x2F;"));
        assert!(
            body.contains(&href) && !body.contains("&#x2F;export"),
            "{asked}: {body}"
        );
    }
    // A sibling page using the portal's stylesheet is not judged.
    let (status, _, _) = olga.get_bytes_with(
        "/static/style.css",
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Sec-Fetch-Mode", "no-cors"),
            ("Sec-Fetch-Dest", "style"),
        ],
    );
    assert_eq!(status, Status::Ok);
    // Anyone not signed in is not asked: the sign-in page it would get records nothing in anyone's name.
    let mut stranger = app.browser();
    let (status, body, _) = stranger.get_bytes_with("/login", &SAME_SITE);
    assert_eq!(status, Status::Ok);
    assert!(!String::from_utf8(body.unwrap())
        .unwrap()
        .contains("You came here from another site"));
    // And `//host` never becomes a link off the portal.
    let (status, body, _) = olga.get_bytes_with("//evil.example/x", &SAME_SITE);
    assert_eq!(status, Status::Ok);
    let body = String::from_utf8(body.unwrap()).unwrap();
    assert!(
        body.contains("href=\"&#x2F;\"") && !body.contains("evil.example"),
        "{body}"
    );
}
