//! Issue 18, case management: claim, assign, hand over and release (audited, officers only, never to an officer
//! of the submission's organisation), bulk assignment, the queue's "assigned to me" and "unassigned" filters and
//! "handled by" column, cured submissions flagged until decided, sealed case notes, the search across every
//! status, titles in the lists, and the dissemination log's filters and CSV export.

use crate::common::{complete_fields, Browser, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{audit_entries, submissions};
use pcii_portal::domain::Role;
use pcii_portal::workflow::sealed_text::DESTROYED;

const TITLE: &str = "Substation 14 protection scheme";

fn submit(b: &mut Browser<'_>) -> String {
    let page = b.post_multipart(
        "/submissions",
        &complete_fields("Cases narrative", "submit"),
    );
    crate::common::submission_id(&page)
}

fn assigned_to(app: &TestApp, id: &str) -> Option<String> {
    app.with_conn(|c| {
        submissions::table
            .find(id)
            .select(submissions::assigned_to)
            .first(c)
            .unwrap()
    })
}

fn tracking_number(app: &TestApp, id: &str) -> String {
    app.with_conn(|c| {
        submissions::table
            .find(id)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    })
}

/// The reasons of the audit entries with `action`, oldest first.
fn reasons(app: &TestApp, action: &str) -> Vec<String> {
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq(action))
            .order(audit_entries::seq.asc())
            .select(audit_entries::reason)
            .load::<Option<String>>(c)
            .unwrap()
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
    })
}

/// The queue's rows' submission ids, in order (each row carries a selection checkbox with its id).
fn queue_ids(body: &str) -> Vec<String> {
    body.split("name=\"ids\" value=\"")
        .skip(1)
        .map(|rest| rest[..32].to_string())
        .collect()
}

#[test]
fn an_officer_claims_assigns_hands_over_and_releases_a_case_each_audited() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let olga_id = app.user_id("olga@pcii.example.gov");
    let piet_id = app.create_user(Role::Officer, "piet@pcii.example.gov", None);
    let id = submit(&mut sub);
    let assign = format!("/officer/submissions/{id}/assign");

    // Claim.
    let page = olga.post(&assign, &[("assignee", "me")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(assigned_to(&app, &id).as_deref(), Some(olga_id.as_str()));
    let page = olga.get(&format!("/officer/submissions/{id}"));
    assert!(
        page.body.contains("Test olga@pcii.example.gov (you)"),
        "{}",
        page.body
    );

    // Hand over to another officer.
    let page = olga.post(&assign, &[("assignee", &piet_id)]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(assigned_to(&app, &id).as_deref(), Some(piet_id.as_str()));

    // Release.
    let page = olga.post(&format!("/officer/submissions/{id}/release"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(assigned_to(&app, &id), None);

    // Assign (nobody handled it) to the other officer directly.
    let page = olga.post(&assign, &[("assignee", &piet_id)]);
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(assigned_to(&app, &id).as_deref(), Some(piet_id.as_str()));

    // Each change is one entry on the submission, naming accounts by id, nothing else.
    assert_eq!(
        reasons(&app, "case.assigned"),
        [
            format!("to account {olga_id} (claimed)"),
            format!("to account {piet_id}")
        ]
    );
    assert_eq!(
        reasons(&app, "case.reassigned"),
        [format!("from account {olga_id} to account {piet_id}")]
    );
    assert_eq!(
        reasons(&app, "case.released"),
        [format!("from account {piet_id}")]
    );
    let objects: Vec<Option<String>> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.like("case.%"))
            .select(audit_entries::object_id)
            .load(c)
            .unwrap()
    });
    assert_eq!(objects.len(), 4);
    assert!(objects.iter().all(|o| o.as_deref() == Some(id.as_str())));

    // Only an officer can be an assignee.
    let analyst = app.create_user(Role::AuthorizedUser, "ana@dhs.example.gov", None);
    let page = olga.post(&assign, &[("assignee", &analyst)]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert_eq!(assigned_to(&app, &id).as_deref(), Some(piet_id.as_str()));
}

#[test]
fn assigned_to_me_and_unassigned_filters_split_the_queue() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let piet = app.create_user(Role::Officer, "piet@pcii.example.gov", None);
    let mine = submit(&mut sub);
    let theirs = submit(&mut sub);
    let nobodys = submit(&mut sub);
    assert_eq!(
        olga.post(
            &format!("/officer/submissions/{mine}/assign"),
            &[("assignee", "me")]
        )
        .status,
        Status::SeeOther
    );
    assert_eq!(
        olga.post(
            &format!("/officer/submissions/{theirs}/assign"),
            &[("assignee", &piet)]
        )
        .status,
        Status::SeeOther
    );
    let page = olga.get("/officer?assignee=me");
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(queue_ids(&page.body), [mine.as_str()]);
    let page = olga.get("/officer?assignee=none");
    assert_eq!(queue_ids(&page.body), [nobodys.as_str()]);
    let page = olga.get(&format!("/officer?assignee={piet}"));
    assert_eq!(queue_ids(&page.body), [theirs.as_str()]);
    let page = olga.get("/officer");
    assert_eq!(queue_ids(&page.body).len(), 3);
    // An unknown officer is reported next to the filter, not guessed.
    let page = olga.get("/officer?assignee=nobody-like-this");
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("id=\"assignee-error\""), "{}", page.body);
}

#[test]
fn the_handled_by_column_shows_the_officers_name() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let page = olga.get("/officer");
    assert!(page.body.contains("<th scope=\"col\">Handled by</th>"));
    assert!(page.body.contains("Unassigned"));
    olga.post(
        &format!("/officer/submissions/{id}/assign"),
        &[("assignee", "me")],
    );
    let page = olga.get("/officer");
    assert!(
        page.body
            .contains("data-label=\"Handled by\">Test olga@pcii.example.gov</td>"),
        "{}",
        page.body
    );
}

#[test]
fn a_non_officer_cannot_assign() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let officer = app.create_user(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let page = sub.post(
        &format!("/officer/submissions/{id}/assign"),
        &[("assignee", &officer)],
    );
    assert_eq!(page.status, Status::Forbidden);
    let page = sub.post("/officer/assign", &[("ids", &id), ("assignee", &officer)]);
    assert_eq!(page.status, Status::Forbidden);
    let mut auditor = app.login_as(Role::Auditor, "aud@pcii.example.gov", None);
    let page = auditor.post(&format!("/officer/submissions/{id}/release"), &[]);
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(assigned_to(&app, &id), None);
    assert_eq!(app.audit_count("case.assigned"), 0);
}

#[test]
fn an_officer_cannot_be_assigned_its_own_organisations_submission() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    // An officer seconded from Acme.
    let mut acme_officer = app.login_as(Role::Officer, "omar@acme.example", Some("Acme"));
    let omar = app.user_id("omar@acme.example");
    let id = submit(&mut sub);
    let page = olga.post(
        &format!("/officer/submissions/{id}/assign"),
        &[("assignee", &omar)],
    );
    assert_eq!(page.status, Status::Forbidden, "{}", page.body);
    // Nor does it claim it, alone or in bulk.
    let page = acme_officer.post(
        &format!("/officer/submissions/{id}/assign"),
        &[("assignee", "me")],
    );
    assert_eq!(page.status, Status::Forbidden);
    let page = acme_officer.post("/officer/assign", &[("ids", &id), ("assignee", "me")]);
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(assigned_to(&app, &id), None);
    assert_eq!(app.audit_count("case.assigned"), 0);
    // And the page does not offer it to them.
    let page = olga.get(&format!("/officer/submissions/{id}"));
    assert!(!page.body.contains(&format!("<option value=\"{omar}\"")));
}

#[test]
fn bulk_assign_gives_every_selected_submission_to_the_officer_with_one_entry_each() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let piet = app.create_user(Role::Officer, "piet@pcii.example.gov", None);
    let a = submit(&mut sub);
    let b = submit(&mut sub);
    let c = submit(&mut sub);
    let page = olga.get("/officer");
    assert!(
        page.body.contains("action=\"&#x2F;officer&#x2F;assign\"")
            || page.body.contains("action=\"/officer/assign\"")
    );
    assert_eq!(queue_ids(&page.body).len(), 3);
    let page = olga.post(
        "/officer/assign",
        &[("ids", &a), ("ids", &c), ("assignee", &piet)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(assigned_to(&app, &a).as_deref(), Some(piet.as_str()));
    assert_eq!(assigned_to(&app, &c).as_deref(), Some(piet.as_str()));
    assert_eq!(assigned_to(&app, &b), None);
    assert_eq!(app.audit_count("case.assigned"), 2);

    // All in one transaction: one submission that may not be assigned and nothing changes.
    app.create_user(Role::Officer, "omar@acme.example", Some("Acme"));
    let omar = app.user_id("omar@acme.example");
    let page = olga.post("/officer/assign", &[("ids", &b), ("assignee", &omar)]);
    assert_eq!(page.status, Status::Forbidden);
    let page = olga.post(
        "/officer/assign",
        &[
            ("ids", &b),
            ("ids", "0123456789abcdef0123456789abcdef"),
            ("assignee", "me"),
        ],
    );
    assert_eq!(page.status, Status::NotFound);
    assert_eq!(assigned_to(&app, &b), None);
    assert_eq!(app.audit_count("case.assigned"), 2);

    // Without the session's token, refused.
    let page = olga.post_raw(
        "/officer/assign",
        crate::common::encode(&[("ids", &b), ("assignee", "me")]),
        None,
    );
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(assigned_to(&app, &b), None);
}

#[test]
fn a_cured_submission_shows_cured_re_review_until_decided() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let other = submit(&mut sub);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("defects", "The certification is missing"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(!olga
        .get("/officer")
        .body
        .contains("Cured — re-review</span>"));
    // The submitter cures it: received again.
    let page = sub.post_multipart(
        &format!("/submissions/{id}"),
        &complete_fields("Cases narrative, cured", "submit"),
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "received");
    let page = olga.get("/officer");
    assert_eq!(
        page.body
            .matches("tag-cured\">Cured — re-review</span>")
            .count(),
        1
    );
    let page = olga.get("/officer?status=cured");
    assert_eq!(page.status, Status::Ok);
    assert_eq!(queue_ids(&page.body), [id.as_str()]);
    assert!(!queue_ids(&page.body).contains(&other));
    assert!(olga
        .get(&format!("/officer/submissions/{id}"))
        .body
        .contains("Cured — re-review"));

    // A decision ends it.
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("defects", "File 1 still unreadable"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let page = sub.post_multipart(
        &format!("/submissions/{id}"),
        &complete_fields("Cases narrative, cured again", "submit"),
    );
    assert_eq!(page.status, Status::SeeOther);
    assert!(olga
        .get("/officer")
        .body
        .contains("Cured — re-review</span>"));
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert!(!olga
        .get("/officer")
        .body
        .contains("Cured — re-review</span>"));
    assert!(queue_ids(&olga.get("/officer?status=cured").body).is_empty());
    let cured_at: Option<i64> = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::cured_at)
            .first(c)
            .unwrap()
    });
    assert_eq!(cured_at, None);
}

#[test]
fn a_case_note_is_sealed_and_unreadable_after_destruction() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let words = "CaseNoteMarker7: the operator called about the relay settings";
    let page = olga.post(
        &format!("/officer/submissions/{id}/notes"),
        &[("note", words)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = olga.get(&format!("/officer/submissions/{id}"));
    assert!(page.body.contains(words), "{}", page.body);
    assert!(page.body.contains("Test olga@pcii.example.gov"));
    // Audited as an event, never its words.
    let r = reasons(&app, "case.note_added");
    assert_eq!(r.len(), 1);
    assert!(r[0].starts_with("note sealed, sha256 ") && !r[0].contains("CaseNoteMarker7"));
    // The column holds no plaintext: neither the database file nor its WAL has the words.
    let stored: String = app.with_conn(|c| {
        pcii_portal::db::schema::case_notes::table
            .select(pcii_portal::db::schema::case_notes::body)
            .first(c)
            .unwrap()
    });
    assert!(stored.starts_with("age:age1") && !stored.contains("CaseNoteMarker7"));
    if app.database_url.is_empty() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", app.data_dir().join("pcii.sqlite3").display());
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("case.note_added"), "positive control");
        assert!(!text.contains("CaseNoteMarker7"));
    }
    // Not for the submitter (on the page that shows the submission to it).
    let page = sub.get(&format!("/submissions/{id}"));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains(&id), "positive control");
    assert!(!page.body.contains("CaseNoteMarker7"));

    // Destroyed with the submission: the note reads as destroyed.
    let page = sub.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "destroyed");
    let page = olga.get(&format!("/officer/submissions/{id}"));
    assert_eq!(page.status, Status::Ok);
    assert!(!page.body.contains("CaseNoteMarker7"));
    assert!(page.body.contains(DESTROYED), "{}", page.body);
}

#[test]
fn an_empty_case_note_comes_back_marked_and_a_long_one_as_typed() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let uri = format!("/officer/submissions/{id}/notes");
    let page = olga.post(&uri, &[("note", "   ")]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("id=\"note-error\""), "{}", page.body);
    assert!(page.body.contains("href=\"#note\""));
    let long = format!("LongNoteMarker{}", "x".repeat(4000));
    let page = olga.post(&uri, &[("note", &long)]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains(&long), "the text typed is kept");
    assert_eq!(app.audit_count("case.note_added"), 0);
}

#[test]
fn search_finds_a_validated_submission_by_organisation_name_and_tracking_prefix() {
    let app = TestApp::new();
    let mut sub = app.login_as(
        Role::Submitter,
        "ann@acme.example",
        Some("Acme Power Cooperative"),
    );
    let mut bob = app.login_as(Role::Submitter, "bob@other.example", Some("Other Water"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let elsewhere = submit(&mut bob);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(app.status_of(&id), "validated");
    // It has left the queue ...
    assert!(!queue_ids(&olga.get("/officer").body).contains(&id));
    // ... and is found by any part of its organisation's name, in any case.
    let page = olga.get("/officer/find?organisation=power%20coop");
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(
        page.body.contains(&format!("/officer/submissions/{id}"))
            || page
                .body
                .contains(&format!("&#x2F;officer&#x2F;submissions&#x2F;{id}"))
    );
    assert!(!page.body.contains(&elsewhere));
    assert!(page.body.contains("Validated PCII"));
    // And by status.
    let page = olga.get("/officer/find?status=validated");
    assert!(page.body.contains(&id) && !page.body.contains(&elsewhere));
    // By the start of its tracking number (lower case too); a whole number alone still opens it.
    let tn = tracking_number(&app, &id);
    let prefix = &tn[..12];
    let page = olga.get(&format!("/officer/find?tracking={}", prefix.to_lowercase()));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains(&id) && page.body.contains(&elsewhere));
    let page = olga.get(&format!("/officer/find?tracking={tn}"));
    assert_eq!(page.status, Status::SeeOther);
    // A whole number with another filter lists it instead.
    let page = olga.get(&format!("/officer/find?tracking={tn}&status=validated"));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains(&id) && !page.body.contains(&elsewhere));
    // Mistakes come back marked, as typed.
    let page = olga.get("/officer/find?organisation=Acme&from=yesterday");
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(
        page.body.contains("id=\"find-from-error\"") && page.body.contains("value=\"yesterday\"")
    );
    assert!(page.body.contains("value=\"Acme\""));
}

#[test]
fn titles_appear_in_the_queue_and_the_search_results() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let page = olga.get("/officer");
    assert!(page.body.contains(TITLE), "{}", page.body);
    let page = olga.get("/officer/find?organisation=acme");
    assert!(page.body.contains(TITLE), "{}", page.body);
    // Stored sealed, never in clear.
    let stored: Option<String> = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::title_sealed)
            .first(c)
            .unwrap()
    });
    let stored = stored.unwrap();
    assert!(stored.starts_with("age:age1") && !stored.contains("Substation"));
    // A row from before titles were kept (neither title: migration 26 copied none) says so, until an officer
    // opens its page, which indexes both (the version it reads is the current one and the one received).
    app.with_conn(|c| {
        diesel::update(submissions::table.find(&id))
            .set((
                submissions::title_sealed.eq(None::<String>),
                submissions::sent_title_sealed.eq(None::<String>),
            ))
            .execute(c)
            .unwrap()
    });
    assert!(!sub.get("/submissions").body.contains(TITLE));
    assert!(olga
        .get("/officer")
        .body
        .contains("(title not yet indexed)"));
    assert_eq!(
        olga.get(&format!("/officer/submissions/{id}")).status,
        Status::Ok
    );
    assert!(olga.get("/officer").body.contains(TITLE));
    assert!(sub.get("/submissions").body.contains(TITLE));
    // A destroyed submission shows no title.
    let page = sub.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    let page = olga.get("/officer/find?status=destroyed");
    assert!(
        page.body.contains(&id) && !page.body.contains(TITLE),
        "{}",
        page.body
    );
}

#[test]
fn the_dissemination_log_pages_every_release_once_with_and_without_a_recipient_filter() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let today = pcii_portal::time::date(app.now());
    for i in 0..53 {
        let page = olga.post(
            &format!("/officer/submissions/{id}/disseminations"),
            &[
                ("recipient", &format!("Recipient {i:02}")),
                ("recipient_kind", "state"),
                ("arrangement", "MOU 2026-14"),
                ("what", "Summary"),
                ("released_on", &today),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let shown = |body: &str| -> Vec<String> {
        body.split("<td>Recipient ")
            .skip(1)
            .map(|rest| rest[..2].to_string())
            .collect()
    };
    let first = olga.get("/officer/disseminations");
    assert!(first.body.contains("53 releases") && first.body.contains("Page 1 of 2"));
    let second = olga.get("/officer/disseminations?page=1");
    let (a, b) = (shown(&first.body), shown(&second.body));
    assert_eq!((a.len(), b.len()), (50, 3));
    let mut all: Vec<String> = a.into_iter().chain(b.clone()).collect();
    all.sort();
    let expected: Vec<String> = (0..53).map(|i| format!("{i:02}")).collect();
    assert_eq!(all, expected, "every release once, across the pages");
    // A page past the end (a stale link) shows the last one.
    let past = olga.get("/officer/disseminations?page=9");
    assert_eq!(shown(&past.body), b);
    assert!(past.body.contains("Page 2 of 2"));
    // The recipient is sealed: matched once opened, then paged.
    let page = olga.get("/officer/disseminations?recipient=recipient+5");
    let mut matched = shown(&page.body);
    matched.sort();
    assert_eq!(matched, ["50", "51", "52"]);
    assert!(page.body.contains("3 releases"));
}

#[test]
fn the_dissemination_log_filters_and_exports_csv_with_formula_cells_neutralised() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let first = submit(&mut sub);
    let second = submit(&mut sub);
    for id in [&first, &second] {
        let page = olga.post(
            &format!("/officer/submissions/{id}/decision"),
            &[
                ("decision", "validate"),
                ("reason", crate::common::BASIS),
                ("confirm", "1"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther);
    }
    let today = pcii_portal::time::date(app.now());
    let release = |b: &mut Browser<'_>, id: &str, recipient: &str, what: &str| {
        let page = b.post(
            &format!("/officer/submissions/{id}/disseminations"),
            &[
                ("recipient", recipient),
                ("recipient_kind", "state"),
                ("arrangement", "MOU 2026-14"),
                ("what", what),
                ("released_on", &today),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    release(
        &mut olga,
        &first,
        "State of Example Fusion Center",
        "=HYPERLINK(\"x\")",
    );
    release(&mut olga, &second, "County Emergency Office", "@SUM(A1)");

    let tn1 = tracking_number(&app, &first);
    let tn2 = tracking_number(&app, &second);
    let page = olga.get("/officer/disseminations?recipient=fusion");
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("State of Example Fusion Center"));
    assert!(!page.body.contains("County Emergency Office"));
    // Each release shows its submission's title under the tracking number.
    assert!(
        page.body
            .contains("<span class=\"case-title\">Substation 14 protection scheme</span>"),
        "{}",
        page.body
    );
    let page = olga.get(&format!("/officer/disseminations?tracking={tn2}"));
    assert!(page.body.contains("County Emergency Office") && !page.body.contains("Fusion"));
    let page = olga.get("/officer/disseminations?from=2000-01-01&to=2000-12-31");
    assert!(page.body.contains("0 releases"));
    let page = olga.get("/officer/disseminations?from=someday");
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("id=\"log-from-error\""));
    // Each page that showed releases (their sealed details, the titles) is audited with their tracking numbers, as
    // the CSV is; an empty or refused one is not; the recipient typed is named, not quoted.
    let listed = reasons(&app, "dissemination.listed");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0].contains(&tn1)
            && !listed[0].contains(&tn2)
            && listed[0].contains("filters: recipient")
            && !listed[0].contains("fusion"),
        "{listed:?}"
    );
    assert!(listed[1].contains(&tn2) && listed[1].contains(&format!("tracking {tn2}")));

    let (status, body, headers) = olga.get_bytes("/officer/disseminations.csv?tracking=PCII-");
    assert_eq!(status, Status::Ok);
    assert!(crate::common::header(&headers, "Content-Type")
        .unwrap()
        .starts_with("text/csv"));
    let csv = String::from_utf8(body.unwrap()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("\"marking\",\"released_on\",\"tracking_number\",\"recipient\""));
    // Each row marked as the PCII it describes, and the file named so.
    assert!(lines[1..]
        .iter()
        .all(|l| l.starts_with("\"PROTECTED CRITICAL INFRASTRUCTURE INFORMATION\",")));
    assert!(crate::common::header(&headers, "Content-Disposition")
        .unwrap()
        .contains("filename=\"PCII-dissemination-log.csv\""));
    assert!(csv.contains(&tn1) && csv.contains(&tn2));
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
    assert!(csv.contains("\"'@SUM(A1)\""), "{csv}");
    let (_, body, _) = olga.get_bytes("/officer/disseminations.csv?recipient=county");
    let csv = String::from_utf8(body.unwrap()).unwrap();
    assert_eq!(csv.lines().count(), 2);
    assert!(csv.contains("County Emergency Office") && !csv.contains("Fusion"));
    // Each export is audited, without the recipient typed.
    let r = reasons(&app, "dissemination.exported");
    assert_eq!(r.len(), 2);
    assert!(r[1].contains("1 row(s)") && r[1].contains("recipient") && !r[1].contains("county"));
    assert!(r[0].contains(&tn1) && r[0].contains(&tn2), "{r:?}");
    // Not for others.
    assert_eq!(
        sub.get("/officer/disseminations.csv").status,
        Status::Forbidden
    );
}

#[test]
fn the_dissemination_log_csv_asks_for_a_recent_second_factor_like_the_other_exports() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let today = pcii_portal::time::date(app.now());
    let page = olga.post(
        &format!("/officer/submissions/{id}/disseminations"),
        &[
            ("recipient", "State of Example Fusion Center"),
            ("recipient_kind", "state"),
            ("arrangement", "MOU 2026-14"),
            ("what", "the protection scheme"),
            ("released_on", &today),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    // The page's link is a plain link (no `download`), so a browser follows it to the step-up page.
    let page = olga.get("/officer/disseminations");
    assert!(
        page.body
            .contains("href=\"&#x2F;officer&#x2F;disseminations.csv\">"),
        "{}",
        page.body
    );

    // Twenty minutes after signing in: sent to give the factor again, and nothing exported.
    app.advance(20 * 60);
    let csv = "/officer/disseminations.csv?recipient=fusion";
    let (status, body, headers) = olga.get_bytes(csv);
    assert_eq!(status, Status::SeeOther);
    let to = crate::common::header(&headers, "Location")
        .unwrap()
        .to_string();
    assert!(to.starts_with("/account/step-up?next="), "{to}");
    let body = String::from_utf8(body.unwrap_or_default()).unwrap();
    assert!(!body.contains("Fusion"), "{body}");
    assert_eq!(reasons(&app, "dissemination.exported").len(), 0);
    assert!(olga.get(&to).body.contains("Confirm it is you"));

    // With the factor given again, the same address downloads.
    let code = crate::common::totp_code(app.state(), "olga@pcii.example.gov");
    let res = olga.post("/account/step-up", &[("next", csv), ("factor_code", &code)]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_eq!(res.header("Location"), Some(csv));
    let (status, body, _) = olga.get_bytes(csv);
    assert_eq!(status, Status::Ok);
    let body = String::from_utf8(body.unwrap()).unwrap();
    assert!(body.contains("State of Example Fusion Center"), "{body}");
    assert_eq!(reasons(&app, "dissemination.exported").len(), 1);
}

/// An officer disabled while its request was under way (its account read by the guard before) assigns nothing.
#[test]
fn an_officer_disabled_mid_request_assigns_nothing() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(&mut sub);
    let officer_id = app.create_user(Role::Officer, "olga@pcii.example.gov", None);
    let colleague = app.create_user(Role::Officer, "oscar@pcii.example.gov", None);
    let as_the_guard_read_it =
        app.with_conn(|c| pcii_portal::models::account::find(c, &officer_id).unwrap());
    app.with_conn(|c| {
        diesel::update(pcii_portal::db::schema::users::table.find(&officer_id))
            .set(pcii_portal::db::schema::users::disabled.eq(true))
            .execute(c)
            .unwrap()
    });
    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();
    let assigned = runtime.block_on(pcii_portal::workflow::cases::assign(
        app.state(),
        &as_the_guard_read_it,
        &pcii_portal::audit::log::Actor::cli(),
        vec![id.clone()],
        Some(colleague),
    ));
    assert!(
        matches!(assigned, Err(pcii_portal::error::AppError::Refused(_))),
        "{assigned:?}"
    );
    assert_eq!(assigned_to(&app, &id), None);
    assert_eq!(app.audit_count("case.assigned"), 0);
}

/// A signed-in person refused at a submission's address (an administrator at the officer's page, an auditor at its
/// file) is recorded on that submission, so that its history shows who tried; an anonymous refusal stays by route.
#[test]
fn a_signed_in_refusal_at_a_submission_s_address_is_recorded_on_that_submission() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(&mut sub);
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let mut auditor = app.login_as(Role::Auditor, "audrey@example.gov", None);
    assert_eq!(
        admin.get(&format!("/officer/submissions/{id}")).status,
        Status::Forbidden
    );
    assert_eq!(
        auditor
            .get(&format!("/analyst/submissions/{id}/files/1"))
            .status,
        Status::Forbidden
    );
    let refused: Vec<(Option<String>, Option<String>, Option<String>)> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("access.refused"))
            .order(audit_entries::seq.asc())
            .select((
                audit_entries::object_kind,
                audit_entries::object_id,
                audit_entries::reason,
            ))
            .load(c)
            .unwrap()
    });
    let on_it: Vec<&Option<String>> = refused
        .iter()
        .filter(|(kind, object, _)| {
            kind.as_deref() == Some("submission") && object.as_deref() == Some(id.as_str())
        })
        .map(|(_, _, reason)| reason)
        .collect();
    assert_eq!(on_it.len(), 2, "{refused:?}");
    assert!(on_it[0]
        .as_deref()
        .is_some_and(|r| r.contains("(at /officer/submissions/<id>)")));
    // The auditor's history of the submission lists them.
    let history = auditor.get(&format!("/audit/submissions/{id}"));
    assert_eq!(history.status, Status::Ok);
    assert!(
        history
            .body
            .contains("<code class=\"action\">access.refused</code>"),
        "{}",
        history.body
    );
    // Only an id's shape is recorded as a submission: a tracking number typed there is not (one could be planted
    // for a submission yet to come).
    assert_eq!(
        admin.get("/officer/submissions/PCII-2026-000099").status,
        Status::Forbidden
    );
    let planted: i64 = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::object_id.eq("PCII-2026-000099"))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(planted, 0);
    // Anonymous: by route, as before (not on the submission).
    let before = on_it.len();
    let mut stranger = app.browser();
    stranger.get(&format!("/officer/submissions/{id}"));
    let on_it_now: i64 = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("access.refused"))
            .filter(audit_entries::object_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(on_it_now as usize, before);
}
