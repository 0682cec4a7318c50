//! Issue 19, the form: several files per picker, a file before its description, a cure that replaces a file
//! (the replaced one kept on record and destroyed with the rest), federal fields only for "Yes", "check your
//! answers" before the one button that sends, and an error summary in the form's order with a message per field.

use crate::common::{self, complete_fields, file_bytes, Browser, Part, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{attachments, blobs, data_keys};
use pcii_portal::domain::Role;

fn location(page: &common::Page) -> String {
    page.header("Location").expect("a redirect").to_string()
}

fn submission_id_from(loc: &str) -> String {
    loc.trim_start_matches("/submissions/")
        .split(['/', '#'])
        .next()
        .unwrap()
        .to_string()
}

/// "Continue" on answers that are saved but not complete: a redirect to the draft's own address listing what is
/// missing (so that a script's upload lands where a browser would), and that page.
fn continued_to_missing(b: &mut Browser<'_>, uri: &str, parts: &[Part<'_>]) -> common::Page {
    let page = b.post_multipart(uri, parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let loc = location(&page);
    assert!(
        loc.starts_with("/submissions/") && loc.ends_with("/edit?missing"),
        "{loc}"
    );
    b.get(&loc)
}

/// The error summary's text (between its opening tag and the end of its list).
fn summary(body: &str) -> &str {
    let start = body
        .find("class=\"error-summary\"")
        .expect("an error summary");
    let end = body[start..].find("</ul>").expect("its list") + start;
    &body[start..end]
}

/// The check page's or the edit form's version field: the content it shows.
fn version(body: &str) -> String {
    let marker = "name=\"version\" value=\"";
    let start = body.find(marker).expect("a version field") + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

fn send(b: &mut Browser<'_>, id: &str, version: &str, fields: &[(&str, &str)]) -> common::Page {
    let mut all = vec![("action", "send"), ("version", version)];
    all.extend_from_slice(fields);
    b.post(&format!("/submissions/{id}/send"), &all)
}

const ALL_AFFIRMED: [(&str, &str); 4] = [
    ("express_statement", "yes"),
    ("cert_not_public", "yes"),
    ("cert_not_regulatory", "yes"),
    ("cert_authorized", "yes"),
];

/// A complete draft with one described file, continued to its check page: (id, check page body).
fn continued(b: &mut Browser<'_>, file: &[u8]) -> (String, String) {
    let mut parts = complete_fields("What happened at substation 14.", "continue");
    parts.push(Part::File("file_1", "plan.pdf", file));
    parts.push(Part::Text("description_1", "Protection plan"));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let loc = location(&page);
    assert!(loc.ends_with("/check"), "{loc}");
    let id = submission_id_from(&loc);
    let check = b.get(&loc);
    assert_eq!(check.status, Status::Ok, "{}", check.body);
    (id, check.body)
}

/// The upload script's request is answered `200 {"location": …}` instead of a redirect it would follow itself
/// (fetching the next page twice and using up its notice): the notice's cookie comes with it, and the page at the
/// location shows the notice once. A plain form post is still redirected.
#[test]
fn the_upload_script_gets_its_redirect_as_data_with_the_notice_kept_for_the_page() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let file = file_bytes(1000, 1, "");
    let mut parts = complete_fields("What happened at substation 14.", "continue");
    parts.push(Part::File("file_1", "plan.pdf", &file));
    parts.push(Part::Text("description_1", "Protection plan"));
    let viewed = app.audit_count("content.viewed");
    let page = b.post_multipart_as_script("/submissions", &parts);
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(page.header("Location"), None);
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    let answer: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let loc = answer["location"].as_str().expect("a location").to_string();
    assert!(
        loc.starts_with("/submissions/") && loc.ends_with("/check"),
        "{loc}"
    );
    assert_eq!(
        app.audit_count("content.viewed"),
        viewed,
        "nothing was read yet"
    );
    let check = b.get(&loc);
    assert_eq!(check.status, Status::Ok, "{}", check.body);
    assert!(
        check
            .body
            .contains("Saved with 1 new file. Check your answers, then send."),
        "the save's notice is on the page it led to"
    );
    assert_eq!(
        app.audit_count("content.viewed"),
        viewed + 1,
        "the page's one fetch is its one recorded reading"
    );
    let again = b.get(&loc);
    assert!(!again.body.contains("Saved with 1 new file"), "shown once");

    // Without the header: the redirect, as for a browser without script.
    let mut parts = complete_fields("A second report.", "continue");
    parts.push(Part::File("file_1", "plan.pdf", &file));
    parts.push(Part::Text("description_1", "Protection plan"));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(location(&page).ends_with("/check"));
}

#[test]
fn one_picker_stores_several_files_in_one_post_each_then_described_on_the_form() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let form = b.get("/submissions/new");
    assert!(form
        .body
        .contains(r#"name="files" multiple data-file-input"#));
    assert_eq!(
        form.body.matches(r#"name="files""#).count(),
        3,
        "three picker rows without script"
    );
    assert!(form.body.contains("Add another file"));
    let (f1, f2, f3) = (
        file_bytes(1000, 1, ""),
        file_bytes(2000, 2, ""),
        file_bytes(3000, 3, ""),
    );
    let page = b.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "Several at once"),
            Part::File("files", "one.pdf", &f1),
            Part::File("files", "two.pdf", &f2),
            Part::File("files", "three.pdf", &f3),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let loc = location(&page);
    assert!(loc.ends_with("/edit#files"), "{loc}");
    let id = submission_id_from(&loc);
    let ids = app.attachment_ids(&id);
    assert_eq!(ids.len(), 3, "three files from one post");

    // Each stored file shows its description field, the file first.
    let edit = b.get(&format!("/submissions/{id}/edit"));
    for (att, name) in ids.iter().zip(["one.pdf", "two.pdf", "three.pdf"]) {
        let file_at = edit.body.find(name).expect("the file is listed");
        let field_at = edit
            .body
            .find(&format!(r#"id="attachment_description_{att}""#))
            .expect("its description field");
        assert!(file_at < field_at, "the file comes before its description");
    }
    assert_eq!(edit.body.matches("Describe this file").count(), 3);
    // A draft has nothing to replace: a replacement is for a cure.
    let page = b.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::File(&format!("replace_{}", ids[0]), "x.pdf", &f1),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::Conflict);
    assert_eq!(app.attachment_ids(&id).len(), 3);

    // A file ticked twice for removal (a form posted by hand) is removed once; ticking one already removed (from
    // another window) is a conflict that says so, not "no page here", and saves nothing.
    let page = b.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::Text("remove", &ids[0]),
            Part::Text("remove", &ids[0]),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.attachment_ids(&id).len(), 2);
    // The form comes back with what was typed (a narrative is not lost to a refusal), marked as not saved.
    let page = b.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::Text("title", "Several at once"),
            Part::Text("narrative", "Typed in the window that lost the race"),
            Part::Text("remove", &ids[0]),
            Part::Text("remove", &ids[1]),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page
        .body
        .contains("A file you asked to remove is no longer in this draft"));
    assert!(page
        .body
        .contains("What you typed is shown below (not saved)"));
    assert!(
        page.body
            .contains(">Typed in the window that lost the race</textarea>"),
        "{}",
        page.body
    );
    assert_eq!(app.attachment_ids(&id).len(), 2);
    let stored = b.get(&format!("/submissions/{id}/edit"));
    assert!(!stored
        .body
        .contains("Typed in the window that lost the race"));
}

#[test]
fn a_file_without_a_description_is_kept_in_the_draft_and_blocks_sending() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let data = file_bytes(5000, 1, "");
    let mut parts = complete_fields("Complete otherwise.", "continue");
    parts.push(Part::File("files", "undescribed.bin", &data));
    let page = continued_to_missing(&mut b, "/submissions", &parts);
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(summary(&page.body).contains("Describe this file: “undescribed.bin”."));
    let id: String = app.with_conn(|c| {
        attachments::table
            .select(attachments::submission_id)
            .first(c)
            .unwrap()
    });
    assert_eq!(app.attachment_ids(&id).len(), 1, "the file is kept");
    assert_eq!(app.status_of(&id), "draft");
    // The check page is not reachable yet; the one-step submit is refused with the same message.
    let check = b.get(&format!("/submissions/{id}/check"));
    assert_eq!(check.status, Status::SeeOther);
    assert_eq!(location(&check), format!("/submissions/{id}/edit"));
    let page = b.post_multipart(
        &format!("/submissions/{id}"),
        &complete_fields("Complete otherwise.", "submit"),
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("Describe this file"));
    assert_eq!(app.status_of(&id), "draft");
}

#[test]
fn continue_on_an_incomplete_draft_returns_the_errors_in_form_order_focused() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let data = file_bytes(100, 1, "");
    let page = continued_to_missing(
        &mut b,
        "/submissions",
        &[
            Part::Text("title", "Only a title"),
            Part::Text("secondary_phone", "+1 555 0199"),
            Part::Text("federal_requirement", "yes"),
            Part::File("files", "a.bin", &data),
            Part::Text("action", "continue"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    let s = summary(&page.body);
    assert!(s.contains("autofocus") && s.contains("tabindex=\"-1\""));
    let expected = [
        "Choose the critical infrastructure sector.",
        "Describe the information in the narrative.",
        "Enter the primary contact&#x27;s name.",
        "Enter the primary contact&#x27;s email address.",
        "Enter the secondary contact&#x27;s name",
        "Enter the secondary contact&#x27;s email address",
        "Name the agency whose requirement applies.",
        "Name the legal authority that requires the information.",
        "Describe this file: “a.bin”.",
    ];
    let mut last = 0;
    for message in expected {
        let at = s
            .find(message)
            .unwrap_or_else(|| panic!("{message} missing in {s}"));
        assert!(at >= last, "{message} is out of the form's order in {s}");
        last = at;
    }
    // The draft, with its file, was saved all the same.
    let id: String = app.with_conn(|c| {
        attachments::table
            .select(attachments::submission_id)
            .first(c)
            .unwrap()
    });
    assert_eq!(app.status_of(&id), "draft");
}

#[test]
fn continue_check_then_send_gives_the_receipt_once_and_enter_cannot_send() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let data = file_bytes(40_000, 1, "");
    let (id, check) = continued(&mut b, &data);
    for shown in [
        "Energy",
        "Substation 14 protection scheme",
        "What happened at substation 14.",
        "Ann Operator",
        "ann@acme.example",
        "plan.pdf",
        "Protection plan",
        "39.1 KiB",
    ] {
        assert!(check.contains(shown), "{shown} is on the check page");
    }
    assert!(
        check.contains("edit#title\""),
        "a Change link to each field"
    );
    assert!(check.contains(&format!(r#"action="/submissions/{id}/send""#)));
    // The form's first (default) button, the one Enter clicks, only shows the page again; the button that
    // sends comes after the statement and the certifications.
    let form = &check[check.find("/send\"").unwrap()..];
    let default_button = form.find("<button").unwrap();
    assert!(form[default_button..]
        .starts_with(r#"<button type="submit" name="action" value="stay" hidden tabindex="-1">"#));
    let statement = form.find("express_statement").unwrap();
    let final_button = form.find("Submit to the PCII Program Office").unwrap();
    assert!(default_button < statement && statement < final_button);
    assert_eq!(app.status_of(&id), "draft", "nothing is sent by checking");

    // Enter on a box without script: the default button's action=stay, every box ticked. Nothing is sent;
    // the page comes back with the ticks kept.
    let mut stay = vec![("action", "stay"), ("version", "")];
    stay.extend_from_slice(&ALL_AFFIRMED);
    let v = version(&check);
    stay[1].1 = &v;
    let page = b.post(&format!("/submissions/{id}/send"), &stay);
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(
        app.status_of(&id),
        "draft",
        "Enter (action=stay) sent the submission"
    );
    assert_eq!(app.audit_count("submission.received"), 0);
    for (name, _) in ALL_AFFIRMED {
        assert!(
            page.body
                .contains(&format!(r#"id="{name}" name="{name}" value="yes" checked"#)),
            "{name} is ticked again"
        );
    }
    // Without any action (an old page, a script posting only the boxes): not sent either.
    let mut bare = vec![("version", v.as_str())];
    bare.extend_from_slice(&ALL_AFFIRMED);
    let page = b.post(&format!("/submissions/{id}/send"), &bare);
    assert_eq!(page.status, Status::Ok);
    assert_eq!(app.status_of(&id), "draft");

    let page = send(&mut b, &id, &version(&check), &ALL_AFFIRMED);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(location(&page), format!("/submissions/{id}/receipt"));
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("submission.received"), 1);
    // Sent again (Back, then the button): the receipt of the first, nothing more.
    let page = send(&mut b, &id, &version(&check), &ALL_AFFIRMED);
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(location(&page), format!("/submissions/{id}/receipt"));
    assert_eq!(app.audit_count("submission.received"), 1);
    assert_eq!(b.get(&location(&page)).status, Status::Ok);
}

#[test]
fn send_without_the_certifications_names_each_one_and_sends_nothing() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let (id, check) = continued(&mut b, &file_bytes(100, 1, ""));
    let page = send(&mut b, &id, &version(&check), &[]);
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    let s = summary(&page.body);
    let messages = [
        "Tick the box to make the express statement",
        "Certify that this information is not customarily in the public domain.",
        "Certify that this information is not submitted in lieu of compliance with a regulatory requirement.",
        "Certify that your organisation owns this information",
    ];
    let mut last = 0;
    for m in messages {
        let at = s.find(m).unwrap_or_else(|| panic!("{m} missing in {s}"));
        assert!(at >= last, "{m} out of order");
        last = at;
    }
    assert!(s.contains("autofocus"));
    assert_eq!(app.status_of(&id), "draft");
    // One missing is named alone.
    let page = send(&mut b, &id, &version(&check), &ALL_AFFIRMED[..3]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    let s = summary(&page.body);
    assert!(s.contains("Certify that your organisation owns this information"));
    assert!(!s.contains("public domain") && !s.contains("express statement"));
    // A version other than the one checked is refused: the content changed since.
    let page = send(&mut b, &id, "not-the-version", &ALL_AFFIRMED);
    assert_eq!(page.status, Status::Conflict);
    assert_eq!(app.status_of(&id), "draft");
}

#[test]
fn the_check_page_refuses_a_sent_submission_and_another_organisations() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut other = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let (id, check) = continued(&mut a, &file_bytes(100, 1, ""));
    assert_eq!(
        other.get(&format!("/submissions/{id}/check")).status,
        Status::NotFound
    );
    assert_eq!(
        send(&mut other, &id, &version(&check), &ALL_AFFIRMED).status,
        Status::NotFound
    );
    assert_eq!(app.status_of(&id), "draft");
    assert_eq!(
        send(&mut a, &id, &version(&check), &ALL_AFFIRMED).status,
        Status::SeeOther
    );
    assert_eq!(
        a.get(&format!("/submissions/{id}/check")).status,
        Status::Conflict
    );
}

#[test]
fn federal_fields_are_cleared_when_no_is_posted() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let page = b.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "Federal"),
            Part::Text("federal_requirement", "yes"),
            Part::Text("federal_agency", "AGENCY-MARK-1"),
            Part::Text("federal_authority", "AUTHORITY-MARK-2"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let id = submission_id_from(&location(&page));
    let edit = b.get(&format!("/submissions/{id}/edit"));
    assert!(edit.body.contains("AGENCY-MARK-1"));
    // The fields sit in the wrapper that "No" hides.
    let wrapper = edit.body.find("class=\"federal-details\"").unwrap();
    assert!(edit.body[wrapper..].find("id=\"federal_agency\"").is_some());

    let mut parts = complete_fields("n", "continue");
    parts.retain(|p| !matches!(p, Part::Text("federal_requirement", _)));
    parts.push(Part::Text("federal_requirement", "no"));
    parts.push(Part::Text("federal_agency", "AGENCY-MARK-1"));
    parts.push(Part::Text("federal_authority", "AUTHORITY-MARK-2"));
    let page = b.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let check = b.get(&format!("/submissions/{id}/check"));
    assert_eq!(check.status, Status::Ok);
    let edit = b.get(&format!("/submissions/{id}/edit"));
    for page in [&check.body, &edit.body] {
        assert!(!page.contains("AGENCY-MARK-1") && !page.contains("AUTHORITY-MARK-2"));
    }
}

#[test]
fn a_cure_replaces_a_file_keeps_the_old_one_on_record_and_destruction_takes_both() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let (first, wrong, fixed) = (
        file_bytes(3000, 1, ""),
        file_bytes(4000, 2, "WRONG"),
        file_bytes(5000, 3, "FIXED"),
    );
    let mut parts = complete_fields("Cure me.", "submit");
    parts.push(Part::File("file_1", "diagram.pdf", &first));
    parts.push(Part::Text("description_1", "Diagram"));
    parts.push(Part::File("file_2", "settings-wrong.xlsx", &wrong));
    parts.push(Part::Text("description_2", "Relay settings"));
    let page = sub.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "File 2 holds the wrong settings."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let ids = app.attachment_ids(&id);
    let (one, two) = (ids[0].clone(), ids[1].clone());

    let edit = sub.get(&format!("/submissions/{id}/edit"));
    assert!(edit.body.contains("Replace with a corrected file"));
    assert!(edit.body.contains(&format!(r#"name="replace_{two}""#)));
    // A file that is not the submission's (a stale form, or one posted by hand) is a conflict that says so.
    let mut parts = complete_fields("Cure me.", "continue");
    parts.push(Part::File(
        "replace_0123456789abcdef",
        "settings-fixed.xlsx",
        &fixed,
    ));
    let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page
        .body
        .contains("A file you chose to replace is not one of this submission"));
    assert_eq!(app.attachment_ids(&id).len(), 2);

    let field = format!("replace_{two}");
    let mut parts = complete_fields("Cure me.", "continue");
    parts.push(Part::File(&field, "settings-fixed.xlsx", &fixed));
    let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(location(&page), format!("/submissions/{id}/check"));
    let check = sub.get(&location(&page)).body;
    // The corrected file (number 3) is listed in the place of file 2, with its description; the old one is not.
    let (d, f) = (
        check.find("diagram.pdf").unwrap(),
        check.find("settings-fixed.xlsx").unwrap(),
    );
    assert!(d < f);
    assert!(!check.contains("settings-wrong.xlsx"));
    assert!(check.contains("Relay settings"));
    assert!(check.contains("Send the corrected submission"));
    let page = send(&mut sub, &id, &version(&check), &ALL_AFFIRMED);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "received");

    let ids = app.attachment_ids(&id);
    assert_eq!(ids.len(), 3, "the replaced file's row stays");
    let new = ids[2].clone();
    let replaced: (Option<String>, Option<i64>) = app.with_conn(|c| {
        attachments::table
            .find(&two)
            .select((attachments::replaced_by, attachments::replaced_at))
            .first(c)
            .unwrap()
    });
    assert_eq!(replaced.0.as_deref(), Some(new.as_str()));
    assert!(replaced.1.is_some());
    assert_eq!(app.audit_count("submission.file_replaced"), 1);

    // Both pages show the history; the old file still opens for whoever reads the submission.
    for (b, base) in [
        (&mut sub, format!("/submissions/{id}")),
        (&mut officer, format!("/officer/submissions/{id}")),
    ] {
        let page = b.get(&base);
        assert_eq!(page.status, Status::Ok);
        assert!(
            page.body.contains("File 2 (")
                && page.body.contains("settings-wrong.xlsx")
                && page.body.contains("by file 3"),
            "{}",
            page.body
        );
        let (status, body, _) = b.get_bytes(&format!("{base}/files/{two}"));
        assert_eq!(status, Status::Ok);
        assert_eq!(body.unwrap(), wrong);
        let (status, body, _) = b.get_bytes(&format!("{base}/files/{new}"));
        assert_eq!(status, Status::Ok);
        assert_eq!(body.unwrap(), fixed);
    }

    // The package carries both, the replaced one marked in the manifest and counted on the cover sheet.
    let (status, zip, _) = officer.get_bytes(&format!("/officer/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let (_, members) = common::zip_members(&zip.unwrap());
    let member = |name: &str| {
        let (_, bytes) = members.iter().find(|(n, _)| n == name).expect(name);
        String::from_utf8(bytes.clone()).unwrap()
    };
    let manifest: serde_json::Value = serde_json::from_str(&member("manifest.json")).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{manifest}");
    let old = files.iter().find(|f| f["position"] == 2).unwrap();
    assert_eq!(old["original_name"], "settings-wrong.xlsx");
    assert_eq!(old["current"], false);
    assert_eq!(old["replaced_by_position"], 3);
    assert!(old["replaced_at"].is_string());
    let fixed_entry = files.iter().find(|f| f["position"] == 3).unwrap();
    assert_eq!(fixed_entry["current"], true);
    assert!(fixed_entry["replaced_by_position"].is_null());
    assert!(member("COVER-SHEET.txt")
        .contains("Files:        3 (1 of them replaced by a corrected file, kept for the record)"));

    // Destroyed with the submission: every blob (the replaced one too) and the data key are gone.
    let names: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .select(blobs::storage_name)
            .load(c)
            .unwrap()
    });
    assert!(names.len() >= 4, "three files and the content");
    let page = sub.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    for n in &names {
        assert!(!app.blob_exists(n), "ciphertext {n} removed");
    }
    let keys: i64 = app.with_conn(|c| {
        data_keys::table
            .filter(data_keys::submission_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(keys, 0, "no key opens any copy");
    for att in [&one, &two, &new] {
        assert_eq!(
            sub.get(&format!("/submissions/{id}/files/{att}")).status,
            Status::Gone
        );
        let officer_status = officer
            .get(&format!("/officer/submissions/{id}/files/{att}"))
            .status;
        assert!(
            officer_status == Status::Gone || officer_status == Status::NotFound,
            "{officer_status}"
        );
    }
}

/// A save that must be corrected shows the form again with what is stored beside what was typed: that is a
/// reading of the stored content, recorded like any other (a request can be made to fail on purpose).
#[test]
fn a_form_shown_again_after_a_failed_save_is_a_recorded_reading() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let parts = complete_fields("Stored narrative about substation 14.", "continue");
    let page = ann.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = crate::common::submission_id(&page)
        .trim_end_matches("/check")
        .to_string();

    let viewed = app.audit_count("content.viewed");
    let page = ann.post_multipart(
        &format!("/submissions/{id}"),
        &[Part::Text("sector", "no such sector")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(page.body.contains("Stored narrative about substation 14."));
    assert_eq!(app.audit_count("content.viewed"), viewed + 1);
    let ann_id = app.user_id("ann@acme.example");
    let (actor, object, reason): (Option<String>, Option<String>, Option<String>) =
        app.with_conn(|c| {
            audit_entries::table
                .filter(audit_entries::action.eq("content.viewed"))
                .order(audit_entries::seq.desc())
                .select((
                    audit_entries::actor_id,
                    audit_entries::object_id,
                    audit_entries::reason,
                ))
                .first(c)
                .unwrap()
        });
    assert_eq!(actor, Some(ann_id));
    assert_eq!(object, Some(id));
    assert_eq!(reason.as_deref(), Some("form shown again"));
}

/// A draft's version deleted while a page was opening it (another tab saved the draft again, which replaces its
/// version) is a 409 that says so, not a 404 or a 500; a version whose row is there but whose stored file is missing
/// is still a failed integrity check (500).
#[test]
fn a_draft_version_replaced_while_a_page_opens_it_is_a_conflict_that_says_so() {
    use pcii_portal::db::schema::submissions;
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let page = b.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "Replaced meanwhile"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let edit = format!("/submissions/{id}/edit");
    assert_eq!(b.get(&edit).status, Status::Ok);
    let current: String = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::content_blob_id)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    let point_at = |version: &str| {
        app.with_conn(|c| {
            diesel::update(submissions::table.find(&id))
                .set(submissions::content_blob_id.eq(version))
                .execute(c)
                .unwrap()
        })
    };
    // The page read a version whose row another save has since deleted.
    point_at("a-version-deleted-meanwhile");
    let page = b.get(&edit);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("changed meanwhile"), "{}", page.body);
    // Its row is there but not its stored file: tampering or loss, not a race.
    point_at(&current);
    let name: String = app.with_conn(|c| {
        blobs::table
            .find(&current)
            .select(blobs::storage_name)
            .first(c)
            .unwrap()
    });
    app.state().blobs.delete(&name).unwrap();
    assert_eq!(b.get(&edit).status, Status::InternalServerError);
}

/// A save from a page older than the stored draft (another window, or another member, saved since) is not written
/// over the newer version: 409, the form again with what was typed, the fields that differ marked, its files not
/// kept; saving again from that page replaces the newer version knowingly.
#[test]
fn a_save_from_an_older_page_does_not_overwrite_a_newer_version() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let page = ann.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "First title"),
            Part::Text("narrative", "First words."),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let edit = format!("/submissions/{id}/edit");
    let old_page = ann.get(&edit);
    let old = version(&old_page.body);
    assert!(!old.is_empty());

    // Another window saves first, from the same page.
    let page = ann.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::Text("version", &old),
            Part::Text("title", "Newer title"),
            Part::Text("narrative", "First words."),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let files_before = app.blob_files();

    // The first window saves what it has: refused, its words kept on the page, the differing field marked.
    let page = ann.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::Text("version", &old),
            Part::Text("title", "Older window's title"),
            Part::Text("narrative", "First words."),
            Part::File("file_1", "late.txt", b"attached in the older window"),
            Part::Text("description_1", "Late file"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("Nothing was saved"), "{}", page.body);
    assert!(
        page.body.contains("Older window&#x27;s title")
            || page.body.contains("Older window's title")
    );
    let marked = summary(&page.body);
    assert!(marked.contains("newer version"), "{marked}");
    assert_eq!(
        marked.matches("<li").count(),
        1,
        "only the title differs: {marked}"
    );
    assert_eq!(
        app.blob_files(),
        files_before,
        "the refused save's file was kept"
    );
    let stored = ann.get(&edit);
    assert!(stored.body.contains("Newer title"), "{}", stored.body);
    assert!(!stored.body.contains("Older window"));
    assert!(!stored.body.contains("late.txt"));

    // Saved again from the page the refusal showed: what was typed replaces the newer version.
    let newer = version(&page.body);
    assert_ne!(newer, old);
    let page = ann.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::Text("version", &newer),
            Part::Text("title", "Older window's title"),
            Part::Text("narrative", "First words."),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(ann.get(&edit).body.contains("Older window"));
}

/// A save that changes nothing keeps no new version (once sent, every version is kept on record, so repeated
/// saves of an unchanged page each added one); a change does.
#[test]
fn a_save_that_changes_nothing_keeps_no_new_version() {
    use pcii_portal::db::schema::submissions;
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut parts = complete_fields("Unchanged narrative.", "draft");
    let page = ann.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let version = |app: &TestApp| -> String {
        app.with_conn(|c| {
            submissions::table
                .find(&id)
                .select(submissions::content_blob_id)
                .first::<Option<String>>(c)
                .unwrap()
                .unwrap()
        })
    };
    let content_blobs = |app: &TestApp| -> i64 {
        app.with_conn(|c| {
            blobs::table
                .filter(blobs::submission_id.eq(&id))
                .count()
                .get_result(c)
                .unwrap()
        })
    };
    let first = version(&app);
    let (blobs_before, audit_before) = (
        content_blobs(&app),
        app.audit_count("submission.draft_saved"),
    );
    for action in ["draft", "continue"] {
        let mut same = complete_fields("Unchanged narrative.", action);
        same.push(Part::Text("version", &first));
        let page = ann.post_multipart(&format!("/submissions/{id}"), &same);
        assert_eq!(page.status, Status::SeeOther, "{action}: {}", page.body);
    }
    assert_eq!(version(&app), first);
    assert_eq!(content_blobs(&app), blobs_before);
    assert_eq!(app.audit_count("submission.draft_saved"), audit_before);
    parts = complete_fields("A changed narrative.", "draft");
    parts.push(Part::Text("version", &first));
    let page = ann.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_ne!(version(&app), first);
}

/// While a defective submission's correction is saved but not sent, its receipt shows what the Office received
/// (the title and files as sent, a file the draft replaced still current, a file it added absent) and says a
/// correction is pending; once the correction is sent, the receipt shows it.
#[test]
fn the_receipt_shows_what_was_received_not_an_unsent_correction() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let (sent_file, fixed, extra) = (
        file_bytes(3000, 1, "SENT"),
        file_bytes(4000, 2, "FIXED"),
        file_bytes(5000, 3, "EXTRA"),
    );
    let mut parts = complete_fields("As sent.", "submit");
    parts.push(Part::File("file_1", "as-sent.pdf", &sent_file));
    parts.push(Part::Text("description_1", "Diagram"));
    let page = sub.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "The diagram is unreadable."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let one = app.attachment_ids(&id)[0].clone();

    // A correction saved, not sent: a new title, the file replaced, another added.
    let replace = format!("replace_{one}");
    let mut parts = complete_fields("Corrected, not sent.", "draft");
    parts.retain(|p| !matches!(p, Part::Text("title" | "sector", _)));
    parts.push(Part::Text("title", "Title of the unsent correction"));
    parts.push(Part::Text("sector", "Dams"));
    parts.push(Part::File(&replace, "corrected.pdf", &fixed));
    parts.push(Part::File("file_1", "added-later.pdf", &extra));
    parts.push(Part::Text("description_1", "Added in the correction"));
    let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "defective");

    for uri in [
        format!("/submissions/{id}/receipt"),
        format!("/submissions/{id}/receipt.txt"),
    ] {
        let page = sub.get(&uri);
        assert_eq!(page.status, Status::Ok, "{uri}: {}", page.body);
        assert!(
            page.body.contains("Substation 14 protection scheme"),
            "{uri}: {}",
            page.body
        );
        assert!(page.body.contains("as-sent.pdf"), "{uri}");
        assert!(
            page.body.contains("Energy") && !page.body.contains("Dams"),
            "{uri}: the sector as sent"
        );
        for unsent in [
            "Title of the unsent correction",
            "corrected.pdf",
            "added-later.pdf",
        ] {
            assert!(!page.body.contains(unsent), "{uri} shows {unsent}");
        }
        assert!(page.body.contains("not sent yet"), "{uri}: {}", page.body);
        assert!(!page.body.contains("Correction"), "{uri}: {}", page.body);
    }

    // Sent (a minute later): the receipt is the correction's, and says when it came and who sent it (the
    // express statement and certifications were made again with it).
    app.advance(60);
    let check = sub.get(&format!("/submissions/{id}/check"));
    assert_eq!(check.status, Status::Ok, "{}", check.body);
    let page = send(&mut sub, &id, &version(&check.body), &ALL_AFFIRMED);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = sub.get(&format!("/submissions/{id}/receipt"));
    assert!(page.body.contains("Title of the unsent correction"));
    assert!(page.body.contains("corrected.pdf") && page.body.contains("added-later.pdf"));
    assert!(page.body.contains("Dams"));
    assert!(!page.body.contains("not sent yet"));
    assert!(
        page.body.contains("<dt>Correction received (UTC)</dt>")
            && page.body.contains("<dt>Correction sent by</dt>"),
        "{}",
        page.body
    );
    let text = sub.get(&format!("/submissions/{id}/receipt.txt"));
    assert!(
        text.body.contains("Correction (UTC): ")
            && text.body.contains("Correction by:    Test ann"),
        "{}",
        text.body
    );
}

/// A defective submission's correction is the organisation's draft until it is sent: officers see the submission
/// as the Office received it — its title (on its page, in the queue and the search), narrative, sector and files,
/// the file a correction replaced still current, a file it added not there (404 to a download, absent from the
/// export package) — while its organisation sees its own correction; once the correction is sent, officers see it.
#[test]
fn officers_see_what_was_received_not_an_unsent_correction() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let (sent_file, fixed, extra) = (
        file_bytes(3000, 1, "SENT"),
        file_bytes(4000, 2, "FIXED"),
        file_bytes(5000, 3, "EXTRA"),
    );
    let mut parts = complete_fields("Narrative as sent.", "submit");
    parts.push(Part::File("file_1", "as-sent.pdf", &sent_file));
    parts.push(Part::Text("description_1", "Diagram"));
    let page = sub.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "The diagram is unreadable."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let one = app.attachment_ids(&id)[0].clone();
    let tracking: String = app.with_conn(|c| {
        pcii_portal::db::schema::submissions::table
            .find(&id)
            .select(pcii_portal::db::schema::submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });

    let replace = format!("replace_{one}");
    let mut parts = complete_fields("Narrative of the unsent correction.", "draft");
    parts.retain(|p| !matches!(p, Part::Text("title" | "sector", _)));
    parts.push(Part::Text("title", "Title of the unsent correction"));
    parts.push(Part::Text("sector", "Dams"));
    parts.push(Part::File(&replace, "corrected.pdf", &fixed));
    parts.push(Part::File("file_1", "added-later.pdf", &extra));
    parts.push(Part::Text("description_1", "Added in the correction"));
    let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "defective");
    let ids = app.attachment_ids(&id);
    assert_eq!(
        ids.len(),
        3,
        "the sent file, its replacement, the added file"
    );
    let unsent = [
        "Title of the unsent correction",
        "Narrative of the unsent correction.",
        "corrected.pdf",
        "added-later.pdf",
        "Dams",
    ];

    let viewed_before = app.audit_reasons("content.viewed").len();
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    for shown in [
        "Substation 14 protection scheme",
        "Narrative as sent.",
        "as-sent.pdf",
        "Energy",
    ] {
        assert!(page.body.contains(shown), "the page lacks {shown}");
    }
    for draft in unsent {
        assert!(
            !page.body.contains(draft),
            "the officer's page shows {draft}"
        );
    }
    let reasons = app.audit_reasons("content.viewed");
    assert_eq!(reasons.len(), viewed_before + 1);
    assert!(
        reasons.iter().any(|r| r.contains("as last sent")),
        "{reasons:?}"
    );
    for uri in [
        "/officer?status=defective".to_string(),
        "/officer/find?organisation=Acme".to_string(),
    ] {
        let page = officer.get(&uri);
        assert_eq!(page.status, Status::Ok, "{uri}: {}", page.body);
        assert!(page.body.contains(&tracking), "{uri} does not list it");
        assert!(
            page.body.contains("Substation 14 protection scheme"),
            "{uri}"
        );
        assert!(
            !page.body.contains("Title of the unsent correction"),
            "{uri}"
        );
        // The sector as received in the row (the filter's list names every sector).
        assert!(
            page.body.contains("<td data-label=\"Sector\">Energy</td>")
                || page.body.contains("<td>Energy</td>"),
            "{uri}: {}",
            page.body
        );
        assert!(!page.body.contains(">Dams</td>"), "{uri}");
    }
    // Filtered by sector, it is where it was received, not where the correction would put it.
    for (uri, listed) in [
        ("/officer?status=defective&sector=Energy", true),
        ("/officer?status=defective&sector=Dams", false),
        ("/officer/find?organisation=Acme&sector=Energy", true),
        ("/officer/find?organisation=Acme&sector=Dams", false),
    ] {
        let page = officer.get(uri);
        assert_eq!(page.status, Status::Ok, "{uri}: {}", page.body);
        assert_eq!(page.body.contains(&tracking), listed, "{uri}");
    }
    // The organisation's own form shows its correction's sector.
    let form = sub.get(&format!("/submissions/{id}/edit"));
    assert!(
        form.body.contains("<option value=\"Dams\" selected>"),
        "{}",
        form.body
    );
    // The organisation's own list shows its correction's title and sector.
    let home = sub.get("/submissions");
    assert!(home.body.contains("<td>Dams</td>"), "{}", home.body);
    assert!(
        home.body.contains("Title of the unsent correction"),
        "{}",
        home.body
    );

    let file = |id: &str, att: &str| format!("/officer/submissions/{id}/files/{att}");
    let (status, body, _) = officer.get_bytes(&file(&id, &one));
    assert_eq!(status, Status::Ok);
    assert_eq!(body.as_deref(), Some(&sent_file[..]));
    assert!(
        app.audit_reasons("content.downloaded")
            .contains(&"attachment 1 (as last sent)".to_string()),
        "{:?}",
        app.audit_reasons("content.downloaded")
    );
    for later in &ids[1..] {
        let (status, _, _) = officer.get_bytes(&file(&id, later));
        assert_eq!(status, Status::NotFound, "a file of the unsent correction");
    }
    let (status, zip, _) = officer.get_bytes(&format!("/officer/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let (_, members) = common::zip_members(&zip.unwrap());
    let text: String = members
        .iter()
        .map(|(name, bytes)| format!("{name}\n{}\n", String::from_utf8_lossy(bytes)))
        .collect();
    assert!(text.contains("Narrative as sent."), "{text}");
    assert!(app
        .audit_reasons("content.exported")
        .contains(&"export package (as last sent)".to_string()));
    assert!(members.iter().any(|(_, b)| b == &sent_file));
    assert!(!members.iter().any(|(_, b)| b == &fixed || b == &extra));
    for draft in unsent {
        assert!(!text.contains(draft), "the export holds {draft}");
    }

    // Sent with a correction pending before the title as sent was kept (migration 26 leaves it empty): listed as
    // not yet indexed, never with the draft's title, until an officer's page opens the version received and
    // indexes its title.
    app.with_conn(|c| {
        use pcii_portal::db::schema::submissions;
        diesel::update(submissions::table.find(&id))
            .set(submissions::sent_title_sealed.eq(None::<String>))
            .execute(c)
            .unwrap()
    });
    let page = officer.get("/officer?status=defective");
    assert!(
        page.body.contains("(title not yet indexed)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Title of the unsent correction"));
    assert_eq!(
        officer.get(&format!("/officer/submissions/{id}")).status,
        Status::Ok
    );
    let page = officer.get("/officer?status=defective");
    assert!(
        page.body.contains("Substation 14 protection scheme"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Title of the unsent correction"));
    let home = sub.get("/submissions");
    assert!(
        home.body.contains("Title of the unsent correction"),
        "the draft's own title kept"
    );

    // Sent: officers see the correction.
    let check = sub.get(&format!("/submissions/{id}/check"));
    assert_eq!(check.status, Status::Ok, "{}", check.body);
    let page = send(&mut sub, &id, &version(&check.body), &ALL_AFFIRMED);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = officer.get(&format!("/officer/submissions/{id}"));
    for sent in unsent {
        assert!(page.body.contains(sent), "the officer's page lacks {sent}");
    }
    let sectors: (String, Option<String>) = app.with_conn(|c| {
        pcii_portal::db::schema::submissions::table
            .find(&id)
            .select((
                pcii_portal::db::schema::submissions::sector,
                pcii_portal::db::schema::submissions::saved_sector,
            ))
            .first(c)
            .unwrap()
    });
    assert_eq!(
        sectors,
        ("Dams".to_string(), None),
        "the sector sent is the Office's"
    );
    let page = officer.get("/officer");
    assert!(page.body.contains("Title of the unsent correction"));
    for later in &ids[1..] {
        let (status, _, _) = officer.get_bytes(&file(&id, later));
        assert_eq!(status, Status::Ok);
    }
}

/// A correction never sent goes with the content: once a defective submission with one pending is withdrawn and
/// destroyed, officers see the sector it was received in, not the correction's.
#[test]
fn a_destroyed_submission_shows_officers_the_sector_received_not_an_unsent_corrections() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let page = sub.post_multipart("/submissions", &complete_fields("As sent.", "submit"));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "defective"), ("reason", "Say more.")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let mut parts = complete_fields("A correction.", "draft");
    parts.retain(|p| !matches!(p, Part::Text("sector", _)));
    parts.push(Part::Text("sector", "Dams"));
    let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = sub.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "destroyed");
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(page.body.contains("<dd>Energy</dd>"), "{}", page.body);
    assert!(!page.body.contains("Dams</dd>"));
}

/// Migration 26 on a populated store: where migration 25 left the version received unknown (a correction saved after
/// the defect notice, none sent since), it is found again (the latest version at or before the affirmation), and the
/// title as received is left to be filled from it, never copied from the correction; a submission with no correction
/// pending gets its title as it is.
#[test]
fn migration_26_finds_the_version_received_and_never_copies_a_corrections_title() {
    use pcii_portal::db::schema::submissions;
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let send = |sub: &mut Browser<'_>| {
        let page = sub.post_multipart(
            "/submissions",
            &complete_fields("Narrative as sent.", "submit"),
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
        submission_id_from(&location(&page))
    };
    // `pending`: a correction pending whose version and sector received migration 25 could not know; `known`: one
    // it knew; `plain`: none pending.
    let (pending, known, plain) = (send(&mut sub), send(&mut sub), send(&mut sub));
    let received = |id: &str| -> Option<String> {
        app.with_conn(|c| {
            submissions::table
                .find(id)
                .select(submissions::content_blob_id)
                .first(c)
                .unwrap()
        })
    };
    let (received_pending, received_known) = (received(&pending), received(&known));
    for id in [&pending, &known] {
        let page = officer.post(
            &format!("/officer/submissions/{id}/decision"),
            &[("decision", "defective"), ("reason", "Say more.")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    app.advance(5);
    for id in [&pending, &known] {
        let mut parts = complete_fields("Narrative of the correction.", "draft");
        parts.retain(|p| !matches!(p, Part::Text("title" | "sector", _)));
        parts.push(Part::Text("title", "Title of the correction"));
        parts.push(Part::Text("sector", "Dams"));
        let page = sub.post_multipart(&format!("/submissions/{id}"), &parts);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }

    // Back to before migration 26, with what migration 25 could not know.
    let mut reverted = 0;
    while app.with_conn(|c| {
        diesel::sql_query("SELECT sent_title_sealed FROM submissions LIMIT 1")
            .execute(c)
            .is_ok()
    }) {
        assert!(reverted < 5, "migration 26 was never reverted");
        app.with_conn(|c| pcii_portal::db::revert_last_migration(c).unwrap());
        reverted += 1;
    }
    app.with_conn(|c| {
        diesel::sql_query(format!(
            "UPDATE submissions SET sent_content_blob_id = NULL, sent_sector = NULL WHERE id = '{pending}'"
        ))
        .execute(c)
        .unwrap()
    });
    app.with_conn(|c| assert_eq!(pcii_portal::db::run_migrations(c).unwrap(), reverted));
    let row = |id: &str| -> (Option<String>, Option<String>, Option<String>) {
        app.with_conn(|c| {
            submissions::table
                .find(id)
                .select((
                    submissions::sent_content_blob_id,
                    submissions::sent_title_sealed,
                    submissions::title_sealed,
                ))
                .first(c)
                .unwrap()
        })
    };
    let (sent, sent_title, _) = row(&pending);
    assert_eq!(sent, received_pending, "the version received, found again");
    assert_eq!(sent_title, None, "not the correction's title");
    let (sent, sent_title, _) = row(&known);
    assert_eq!(sent, received_known);
    assert_eq!(sent_title, None, "not the correction's title");
    let (_, sent_title, title) = row(&plain);
    assert!(sent_title.is_some() && sent_title == title);
    // The sector the Office holds stays `sector` (what its queue filters on); the correction's is kept apart.
    let sectors = |id: &str| -> (String, Option<String>) {
        app.with_conn(|c| {
            submissions::table
                .find(id)
                .select((submissions::sector, submissions::saved_sector))
                .first(c)
                .unwrap()
        })
    };
    assert_eq!(sectors(&known), ("Energy".into(), Some("Dams".into())));
    assert_eq!(sectors(&plain), ("Energy".into(), None));
    // Where migration 25 did not know the sector received either, the one last saved stays (README: officers see it).
    assert_eq!(sectors(&pending), ("Dams".into(), None));

    let page = officer.get("/officer?status=defective");
    assert!(
        page.body.contains("(title not yet indexed)"),
        "{}",
        page.body
    );
    let page = officer.get(&format!("/officer/submissions/{pending}"));
    assert!(page.body.contains("Narrative as sent.") && !page.body.contains("of the correction"));
    let page = officer.get("/officer?status=defective");
    assert!(
        page.body.contains("Substation 14 protection scheme"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Title of the correction"));
}

/// A page older than the stored version, refused for a file over a limit (the save never reached the stale check),
/// comes back still standing on the version it was made from: saving from it again is refused as stale, not
/// written over the newer version.
#[test]
fn a_stale_page_refused_for_a_large_file_is_still_stale() {
    let app = TestApp::with(|f| f.merge(("max_file_bytes", 64 * 1024)));
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let page = ann.post_multipart(
        "/submissions",
        &[Part::Text("title", "First"), Part::Text("action", "draft")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let uri = format!("/submissions/{id}");
    let old = version(&ann.get(&format!("{uri}/edit")).body);
    let page = ann.post_multipart(
        &uri,
        &[
            Part::Text("version", &old),
            Part::Text("title", "Saved in another window"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let big = file_bytes(64 * 1024 + 1, 4, "");
    let page = ann.post_multipart(
        &uri,
        &[
            Part::Text("version", &old),
            Part::Text("title", "From the old window"),
            Part::File("file_1", "big.bin", &big),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert_eq!(version(&page.body), old);
    let page = ann.post_multipart(
        &uri,
        &[
            Part::Text("version", &version(&page.body)),
            Part::Text("title", "From the old window"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(ann
        .get(&format!("{uri}/edit"))
        .body
        .contains("Saved in another window"));
}
