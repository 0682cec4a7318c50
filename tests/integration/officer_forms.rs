//! Issue 18, officer forms that forgive: every officer form comes back on a mistake with the message next to
//! the field and everything typed kept (422); final decisions (validated, not validated, protection removed)
//! are shown with what will follow and change nothing until confirmed; options the lifecycle forbids are not
//! offered.

use crate::common::{complete_fields, encode, Browser, TestApp, PASSWORD};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{audit_entries, disseminations, grants, submissions, users};
use pcii_portal::domain::Role;
use pcii_portal::time::DAY;

fn submit(b: &mut Browser<'_>) -> String {
    let page = b.post_multipart(
        "/submissions",
        &complete_fields("Forms narrative", "submit"),
    );
    crate::common::submission_id(&page)
}

fn audit_len(app: &TestApp) -> i64 {
    app.with_conn(|c| audit_entries::table.count().get_result(c).unwrap())
}

/// Posts `fields` with the session's token fetched first, so that nothing but this post can add to the log
/// between two counts.
fn post_counted(
    app: &TestApp,
    b: &mut Browser<'_>,
    uri: &str,
    fields: &[(&str, &str)],
) -> (crate::common::Page, i64) {
    let token = b.csrf();
    let mut all = vec![("csrf", token.as_str())];
    all.extend_from_slice(fields);
    let before = audit_len(app);
    let page = b.post_raw(uri, encode(&all), None);
    (page, audit_len(app) - before)
}

/// A received submission of Acme and a signed-in officer of the Program Office.
fn received(app: &TestApp) -> (String, Browser<'_>, Browser<'_>) {
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut sub);
    (id, sub, officer)
}

fn validated(app: &TestApp) -> (String, Browser<'_>) {
    let (id, _, mut officer) = received(app);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    (id, officer)
}

/// An active authorized user: its id.
fn analyst(app: &TestApp) -> String {
    app.create_user(Role::AuthorizedUser, "ana@dhs.example.gov", None)
}

/// The field error shown next to the field with element id `id`, and the summary's link to it.
fn marked(body: &str, id: &str) -> bool {
    body.contains(&format!("id=\"{id}-error\"")) && body.contains(&format!("href=\"#{id}\""))
}

#[test]
fn a_decision_without_its_reason_comes_back_with_the_reason_marked_and_the_defects_typed_kept() {
    let app = TestApp::new();
    let (id, _, mut officer) = received(&app);
    let uri = format!("/officer/submissions/{id}/decision");
    let defects = "DefectsTypedMarker: the certification is missing";
    let (page, logged) = post_counted(
        &app,
        &mut officer,
        &uri,
        &[
            ("decision", "not_validated"),
            ("defects", defects),
            ("reason", ""),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(marked(&page.body, "reason"), "{}", page.body);
    assert!(page.body.contains("Give the reason for this decision"));
    assert!(page.body.contains(defects), "the defects typed are kept");
    assert!(page
        .body
        .contains("id=\"d_not\" name=\"decision\" value=\"not_validated\" checked"));
    assert!(!marked(&page.body, "defects"));
    assert_eq!(app.status_of(&id), "received");
    // The page shown again records its content view, never a decision.
    assert!(logged <= 1, "{logged} entries");
    assert_eq!(app.audit_count("decision.not_validated"), 0);

    // A defect notice without its defects: the defects field is marked, the reason kept.
    let page = officer.post(
        &uri,
        &[("decision", "defective"), ("defects", " "), ("reason", "")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "defects"), "{}", page.body);
    assert!(page
        .body
        .contains("List the defects the submitter must cure."));

    // No decision chosen: the choice is marked, and what was typed is kept.
    let page = officer.post(
        &uri,
        &[
            ("defects", "KeptDefectsMarker"),
            ("reason", "KeptReasonMarker"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "decision"), "{}", page.body);
    assert!(page.body.contains("KeptDefectsMarker") && page.body.contains("KeptReasonMarker"));

    // Validating while listing defects is caught as a slip.
    let page = officer.post(
        &uri,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("defects", "SlipMarker"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "defects"), "{}", page.body);
    assert!(page.body.contains("SlipMarker"));

    // A reason too long is marked where it was typed, and kept.
    let long = format!("LongReasonMarker{}", "x".repeat(4000));
    let page = officer.post(&uri, &[("decision", "not_validated"), ("reason", &long)]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "reason") && page.body.contains(&long));

    assert_eq!(app.status_of(&id), "received");
    for action in [
        "decision.defective",
        "decision.validated",
        "decision.not_validated",
    ] {
        assert_eq!(app.audit_count(action), 0, "{action}");
    }

    // Defective needs no confirmation: applied at once, the defects and the reason sent together.
    let page = officer.post(
        &uri,
        &[
            ("decision", "defective"),
            ("defects", "File 2 cannot be read"),
            ("reason", "Send it again as PDF"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "defective");
    assert_eq!(app.audit_count("decision.defective"), 1);
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert!(
        page.body.contains("File 2 cannot be read") && page.body.contains("Send it again as PDF")
    );
}

/// PCII.md: an officer never decides without leaving a reason, validation included. Neither the form nor a
/// confirmation sent straight (a crafted request) records a validation without its basis.
#[test]
fn validating_needs_the_basis_written_down() {
    let app = TestApp::new();
    let (id, mut sub, mut officer) = received(&app);
    let uri = format!("/officer/submissions/{id}/decision");
    for fields in [
        &[("decision", "validate"), ("reason", " \r\n ")][..],
        &[("decision", "validate"), ("confirm", "1")][..],
    ] {
        let page = officer.post(&uri, fields);
        assert_eq!(
            page.status,
            Status::UnprocessableEntity,
            "{fields:?}: {}",
            page.body
        );
        assert!(marked(&page.body, "reason"), "{}", page.body);
        assert!(page.body.contains("Give the basis for validating"));
        assert!(!page.body.contains("Confirm: validated"));
    }
    assert_eq!(app.status_of(&id), "received");
    assert_eq!(app.audit_count("decision.validated"), 0);

    // With it, the decision lands and the basis is in the history both sides read.
    let basis = "BasisMarker: statement, certification and both files checked";
    let page = officer.post(
        &uri,
        &[
            ("decision", "validate"),
            ("reason", basis),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "validated");
    assert!(officer
        .get(&format!("/officer/submissions/{id}"))
        .body
        .contains(basis));
    assert!(sub.get(&format!("/submissions/{id}")).body.contains(basis));
}

#[test]
fn validating_asks_for_confirmation_and_changes_nothing_until_confirmed() {
    let app = TestApp::new();
    let (id, _, mut officer) = received(&app);
    let uri = format!("/officer/submissions/{id}/decision");
    let note = "ValidateNoteMarker & <checked>";
    let (page, logged) = post_counted(
        &app,
        &mut officer,
        &uri,
        &[("decision", "validate"), ("reason", note)],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(logged, 0, "a confirmation page is not an action");
    assert_eq!(app.status_of(&id), "received");
    assert!(page.body.contains("Validate PCII-"), "{}", page.body);
    assert!(page
        .body
        .contains("becomes Protected Critical Infrastructure Information"));
    assert!(page
        .body
        .contains("The submitter is notified in the portal"));
    assert!(page.body.contains("The 30-day clocks stop"));
    assert!(page.body.contains("can no longer withdraw it"));
    assert!(page.body.contains("may then be granted access"));
    assert!(page.body.contains("Confirm: validated"));
    assert!(page.body.contains("name=\"confirm\" value=\"1\""));
    // The typed words ride along, escaped, and the content is not shown.
    assert!(page
        .body
        .contains("name=\"reason\" value=\"ValidateNoteMarker &amp; &lt;checked&gt;\""));
    assert!(!page.body.contains("Forms narrative"));

    // "Change the decision" brings the form back as typed, with nothing recorded.
    let page = officer.post(
        &uri,
        &[("decision", "validate"), ("reason", note), ("change", "1")],
    );
    assert_eq!(page.status, Status::Ok);
    assert!(page
        .body
        .contains("id=\"d_validate\" name=\"decision\" value=\"validate\" checked"));
    assert!(page
        .body
        .contains("ValidateNoteMarker &amp; &lt;checked&gt;</textarea>"));
    assert_eq!(app.status_of(&id), "received");

    let (page, _) = post_counted(
        &app,
        &mut officer,
        &uri,
        &[("decision", "validate"), ("reason", note), ("confirm", "1")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "validated");
    assert_eq!(app.audit_count("decision.validated"), 1);
    // Sent twice (a second click, a stale window): refused, still one.
    let page = officer.post(
        &uri,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::Conflict);
    assert_eq!(app.audit_count("decision.validated"), 1);
}

#[test]
fn not_validated_asks_for_confirmation_saying_the_submitter_chooses_return_or_destruction() {
    let app = TestApp::new();
    let (id, mut sub, mut officer) = received(&app);
    // Members the decision's mail must not reach: one disabled, one whose address is unconfirmed, and a
    // submitter of another organisation.
    let disabled = app.create_user(Role::Submitter, "dis@acme.example", Some("Acme"));
    let unconfirmed = app.create_user(Role::Submitter, "unc@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "gil@globex.example", Some("Globex"));
    app.with_conn(|c| {
        diesel::update(users::table.find(&disabled))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap();
        diesel::update(users::table.find(&unconfirmed))
            .set(users::email_verified_at.eq(None::<i64>))
            .execute(c)
            .unwrap();
    });
    let uri = format!("/officer/submissions/{id}/decision");
    let reason = "NotValidatedReasonMarker: customarily in the public domain";
    let (page, logged) = post_counted(
        &app,
        &mut officer,
        &uri,
        &[("decision", "not_validated"), ("reason", reason)],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(logged, 0);
    assert_eq!(app.status_of(&id), "received");
    assert!(page.body.contains("is not validated?"));
    assert!(page.body.contains("returned or destroyed"));
    assert!(page.body.contains("with your reason"));
    assert!(page.body.contains("Confirm: not validated"));
    assert!(page.body.contains("as the submitter will read it"));
    assert!(page.body.contains(reason));
    let shown = sub.get(&format!("/submissions/{id}"));
    assert_eq!(shown.status, Status::Ok);
    assert!(!shown.body.contains("NotValidatedReasonMarker"));

    let (page, logged) = post_counted(
        &app,
        &mut officer,
        &uri,
        &[
            ("decision", "not_validated"),
            ("reason", reason),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(logged, 1, "one entry for the one action");
    assert_eq!(app.status_of(&id), "not_validated");
    assert_eq!(app.audit_count("decision.not_validated"), 1);
    // The organisation's members are mailed (PCII.md: the submitter is notified and chooses): a link, and
    // neither the submission nor the officer's words.
    let decided: Vec<String> = app
        .outbox()
        .into_iter()
        .filter(|m| m.contains("A decision on one of your organisation's PCII submissions"))
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert!(decided[0].to_lowercase().contains("to: ann@acme.example"));

    assert!(decided[0].contains(&format!("/submissions/{id}")));
    assert!(!decided[0].contains("PCII-2") && !decided[0].contains("NotValidatedReasonMarker"));
    assert!(sub
        .get(&format!("/submissions/{id}"))
        .body
        .contains("NotValidatedReasonMarker"));
}

#[test]
fn remove_protection_is_offered_on_validated_pcii_only_and_asks_for_confirmation() {
    let app = TestApp::new();
    let (id, _, mut officer) = received(&app);
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert!(!page.body.contains("remove_protection") && !page.body.contains("Remove protection"));
    let uri = format!("/officer/submissions/{id}/decision");
    // Posted all the same (a forged or stale form): refused by the lifecycle, nothing changed.
    let page = officer.post(
        &uri,
        &[
            ("decision", "remove_protection"),
            ("reason", "Public"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert_eq!(app.status_of(&id), "received");

    let page = officer.post(
        &uri,
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert!(page.body.contains("Remove protection"));
    assert!(
        !page.body.contains("id=\"d_"),
        "no decision form on validated PCII"
    );

    // Without its reason: the removal form's reason is marked.
    let page = officer.post(&uri, &[("decision", "remove_protection"), ("reason", "")]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "rp_reason"), "{}", page.body);

    let reason = "RemovalReasonMarker: the submitter asked in writing";
    let (page, logged) = post_counted(
        &app,
        &mut officer,
        &uri,
        &[("decision", "remove_protection"), ("reason", reason)],
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(logged, 0);
    assert_eq!(app.status_of(&id), "validated");
    assert!(page.body.contains("Remove the protection of PCII-"));
    assert!(page.body.contains("stops being PCII"));
    assert!(page.body.contains("No one holds a live access grant"));
    assert!(page.body.contains("Confirm: remove protection"));
    assert!(page.body.contains(reason));

    let page = officer.post(
        &uri,
        &[
            ("decision", "remove_protection"),
            ("reason", reason),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "protection_removed");
    assert_eq!(app.audit_count("decision.protection_removed"), 1);
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert!(!page.body.contains("value=\"remove_protection\""));
}

#[test]
fn the_decision_options_are_those_the_lifecycle_allows_with_validated_not_first() {
    let app = TestApp::new();
    let (id, mut sub, mut officer) = received(&app);
    let page = officer.get(&format!("/officer/submissions/{id}")).body;
    let at = |id: &str| page.find(&format!("id=\"{id}\"")).unwrap_or(usize::MAX);
    assert!(at("d_defective") < at("d_validate") && at("d_validate") < at("d_not"));
    assert!(at("d_not") < usize::MAX);
    for value in ["defective", "validate", "not_validated"] {
        let chosen = format!("value=\"{value}\" checked");
        assert!(!page.contains(&chosen), "no decision is chosen beforehand");
    }

    let uri = format!("/officer/submissions/{id}/decision");
    let before = app.now();
    let page = officer.post(
        &uri,
        &[("decision", "defective"), ("defects", "Unreadable")],
    );
    assert_eq!(page.status, Status::SeeOther);
    // Defective: the submitter has 30 days to cure, and no decision is open meanwhile; the page says until when.
    // (The test clock runs with the wall clock: the decision's minute is the one before or after the post.)
    let page = officer.get(&format!("/officer/submissions/{id}")).body;
    assert!(
        !page.contains("id=\"d_"),
        "no decision while the cure period runs"
    );
    let due = [before, app.now()]
        .map(|at| pcii_portal::time::datetime(at + 30 * DAY))
        .into_iter()
        .find(|due| {
            page.contains(&format!(
                "The submitter has until {due} to cure the defects"
            ))
        });
    let Some(due) = due else { panic!("{page}") };
    // "Not validated" sent anyway (a form from before, a crafted request): refused, nothing recorded.
    let not_cured = [
        ("decision", "not_validated"),
        ("reason", "Not cured"),
        ("confirm", "1"),
    ];
    for fields in [&not_cured[..2], &not_cured[..]] {
        let page = officer.post(&uri, fields);
        assert_eq!(page.status, Status::Conflict, "{fields:?}: {}", page.body);
        assert!(page.body.contains(&format!("until {due}")), "{}", page.body);
    }
    // A minute before the deadline (the clock also runs), still refused; the sessions have idled out meanwhile.
    app.advance(30 * DAY - 60);
    for (b, email) in [
        (&mut officer, "olga@pcii.example.gov"),
        (&mut sub, "ann@acme.example"),
    ] {
        assert_eq!(b.login(email, PASSWORD), Status::SeeOther);
    }
    assert_eq!(officer.post(&uri, &not_cured).status, Status::Conflict);
    assert_eq!(app.status_of(&id), "defective");
    assert_eq!(app.audit_count("decision.not_validated"), 0);

    let tracking: String = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::tracking_number.assume_not_null())
            .first(c)
            .unwrap()
    });
    // Listed by the overdue filter (SQL) and its row marked overdue (the row's flag).
    let overdue = |officer: &mut Browser| {
        let body = officer.get("/officer?status=overdue").body;
        body.contains(&tracking) && body.contains("class=\"overdue\"")
    };
    assert!(!overdue(&mut officer), "not overdue before its deadline");

    // Once the period has passed without a cure (from the deadline's second), only "not validated" is open, and
    // the queue calls the cure overdue from the same second.
    app.advance(60);
    assert!(
        overdue(&mut officer),
        "overdue when \"not validated\" opens"
    );
    let page = officer.get(&format!("/officer/submissions/{id}")).body;
    assert!(page.contains("id=\"d_not\""));
    assert!(!page.contains("id=\"cure-period\""));
    assert!(!page.contains("id=\"d_validate\"") && !page.contains("id=\"d_defective\""));
    assert!(!page.contains("remove_protection"));

    let page = officer.post(&uri, &not_cured);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = officer.get(&format!("/officer/submissions/{id}")).body;
    assert!(!page.contains("id=\"d_") && !page.contains("remove_protection"));
    assert!(!page.contains("/decision\""), "no decision form at all");

    // An officer of the submitting organisation is offered nothing, and asked to confirm nothing.
    let mut own = app.login_as(Role::Officer, "oscar@acme.example", Some("Acme"));
    let other = submit(&mut sub);
    let page = own.get(&format!("/officer/submissions/{other}")).body;
    assert!(!page.contains("id=\"d_"));
    let page = own.post(
        &format!("/officer/submissions/{other}/decision"),
        &[("decision", "validate"), ("reason", crate::common::BASIS)],
    );
    assert_eq!(page.status, Status::Forbidden);
}

/// A grant to an authorized user whose training or NDA is not on record stands (the training may be under way), but
/// the form says who cannot read PCII now, and why, and so does the notice of the grant.
#[test]
fn a_grant_to_someone_not_yet_cleared_says_so() {
    let app = TestApp::new();
    let (id, mut officer) = validated(&app);
    let trained = app.create_trained_analyst("tina@analysts.example.gov");
    let untrained = app.create_user(Role::AuthorizedUser, "uma@analysts.example.gov", None);
    // More analysts joined since than an accounts page holds: every one can still be chosen.
    app.advance(1);
    for i in 0..51 {
        app.create_user(
            Role::AuthorizedUser,
            &format!("a{i}@analysts.example.gov"),
            None,
        );
    }
    let page = officer.get(&format!("/officer/submissions/{id}")).body;
    let option = |uid: &str| {
        let at = page
            .find(&format!("<option value=\"{uid}\""))
            .expect("offered");
        page[at..].split("</option>").next().unwrap().to_string()
    };
    assert!(
        option(&untrained).contains("cannot read PCII now: PCII training not on record"),
        "{}",
        option(&untrained)
    );
    assert!(!option(&trained).contains("cannot read"));

    let expires = pcii_portal::time::date(app.now() + 30 * DAY);
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", untrained.as_str()),
            ("reason", "Need"),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("grant.created"), 1);
    let shown = officer.get(page.header("Location").unwrap()).body;
    assert!(
        shown.contains("cannot read it until that is recorded (PCII training not on record)"),
        "{shown}"
    );
}

#[test]
fn a_grant_with_mistakes_comes_back_as_typed() {
    let app = TestApp::new();
    let (id, mut officer) = validated(&app);
    let analyst_id = analyst(&app);
    let uri = format!("/officer/submissions/{id}/grants");
    let page = officer.post(
        &uri,
        &[
            ("user_id", &analyst_id),
            ("reason", ""),
            ("expires", "GrantDateMarker"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        marked(&page.body, "g_reason") && marked(&page.body, "expires"),
        "{}",
        page.body
    );
    assert!(page.body.contains("value=\"GrantDateMarker\""));
    assert!(page
        .body
        .contains(&format!("<option value=\"{analyst_id}\" selected>")));

    let expires = pcii_portal::time::date(app.now() + 30 * DAY);
    let page = officer.post(
        &uri,
        &[
            ("user_id", ""),
            ("reason", "GrantReasonMarker"),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "user_id"), "{}", page.body);
    assert!(page.body.contains("value=\"GrantReasonMarker\""));
    assert!(page.body.contains(&format!("value=\"{expires}\"")));

    // Too far ahead; then an account that is not an authorized user (checked by the service).
    let far = pcii_portal::time::date(app.now() + 400 * DAY);
    let page = officer.post(
        &uri,
        &[
            ("user_id", &analyst_id),
            ("reason", "Need"),
            ("expires", &far),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "expires"));
    let page = officer.post(
        &uri,
        &[
            ("user_id", "nobody"),
            ("reason", "NobodyMarker"),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(marked(&page.body, "user_id") && page.body.contains("NobodyMarker"));
    assert_eq!(app.audit_count("grant.created"), 0);

    let page = officer.post(
        &uri,
        &[
            ("user_id", &analyst_id),
            ("reason", "Need"),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("grant.created"), 1);

    // A revocation without its reason: marked on that grant's row, nothing revoked.
    let grant_id: String = app.with_conn(|c| grants::table.select(grants::id).first(c).unwrap());
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants/{grant_id}/revoke"),
        &[("reason", "  ")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        marked(&page.body, &format!("rv_{grant_id}")),
        "{}",
        page.body
    );
    assert_eq!(app.audit_count("grant.revoked"), 0);

    // Once validated PCII has its protection removed, the confirmation counts the live grant.
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "remove_protection"), ("reason", "Public")],
    );
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body.contains("1 live access grant is revoked at once"),
        "{}",
        page.body
    );
    // Confirmed: the grant is revoked in the decision's transaction, with its own entry (the system's words).
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "remove_protection"),
            ("reason", "Public"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let revoked: (Option<i64>, Option<String>) = app.with_conn(|c| {
        grants::table
            .find(&grant_id)
            .select((grants::revoked_at, grants::revoke_reason))
            .first(c)
            .unwrap()
    });
    assert!(revoked.0.is_some());
    assert!(revoked.1.unwrap().contains("protection was removed"));
    let reasons = app.audit_reasons("grant.revoked");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("protection was removed"), "{reasons:?}");
    // A grant an older version left live on it sends no renewal reminder: there is nothing to renew.
    app.with_conn(|c| {
        diesel::update(grants::table.find(&grant_id))
            .set(grants::revoked_at.eq(None::<i64>))
            .execute(c)
            .unwrap()
    });
    let ending = app.with_conn(|c| {
        pcii_portal::models::notification::grants_ending(c, app.now(), 365 * DAY).unwrap()
    });
    assert!(ending.is_empty(), "{} reminder(s)", ending.len());
}

/// PCII.md: PCII may not be used for a regulatory purpose without the written consent of both the Program Manager
/// and the submitter. A release for one records where both are on file, or is not recorded.
#[test]
fn a_release_for_a_regulatory_purpose_needs_both_consents_on_file() {
    let app = TestApp::new();
    let (id, mut officer) = validated(&app);
    let uri = format!("/officer/submissions/{id}/disseminations");
    let today = pcii_portal::time::date(app.now());
    let release = |purpose: &'static str, consent: &'static str| {
        [
            ("recipient", "State Fusion Center"),
            ("recipient_kind", "state"),
            ("arrangement", "MOU 12"),
            ("what", "Summary"),
            ("released_on", today.as_str()),
            ("purpose", purpose),
            ("consent", consent),
        ]
    };
    let page = officer.post(&uri, &release("regulatory", "  "));
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(marked(&page.body, "consent"), "{}", page.body);
    assert!(page
        .body
        .contains("id=\"purpose_reg\" name=\"purpose\" value=\"regulatory\" checked"));
    let page = officer.post(&uri, &release("enforcement", ""));
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(marked(&page.body, "purpose"), "{}", page.body);
    assert_eq!(app.audit_count("dissemination.recorded"), 0);

    let consent = "ConsentMarker: PM memo 2026-11-02, submitter letter 2026-11-03";
    let page = officer.post(&uri, &release("regulatory", consent));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = officer.get(&format!("/officer/submissions/{id}")).body;
    assert!(
        page.contains(&format!("regulatory — consents: {consent}")),
        "{page}"
    );
    let log = officer.get("/officer/disseminations").body;
    assert!(log.contains(&format!("regulatory — consents: {consent}")));
    let reasons = app.audit_reasons("dissemination.recorded");
    assert!(
        reasons[0].contains("for a regulatory purpose with written consents"),
        "{reasons:?}"
    );
    assert!(
        !reasons[0].contains("ConsentMarker"),
        "the words are sealed"
    );
    let stored: (String, Option<String>) = app.with_conn(|c| {
        disseminations::table
            .select((disseminations::purpose, disseminations::consent))
            .first(c)
            .unwrap()
    });
    assert_eq!(stored.0, "regulatory");
    assert!(
        !stored.1.unwrap().contains("ConsentMarker"),
        "sealed at rest"
    );

    // Without a purpose (a client from before it was asked): homeland security, no consent kept.
    let page = officer.post(&uri, &release("", "IgnoredMarker"));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let purposes: Vec<(String, Option<String>)> = app.with_conn(|c| {
        disseminations::table
            .select((disseminations::purpose, disseminations::consent))
            .load(c)
            .unwrap()
    });
    assert!(
        purposes.contains(&("homeland_security".to_string(), None)),
        "{purposes:?}"
    );
}

#[test]
fn a_release_with_mistakes_comes_back_as_typed() {
    let app = TestApp::new();
    let (id, mut officer) = validated(&app);
    let uri = format!("/officer/submissions/{id}/disseminations");
    let page = officer.post(
        &uri,
        &[
            ("recipient", "RecipientMarker Fusion Center"),
            ("recipient_kind", "county"),
            ("arrangement", ""),
            ("what", "WhatMarker summary"),
            ("released_on", "ReleasedMarker"),
            ("sanitized", "yes"),
            ("removed", ""),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    for field in ["recipient_kind", "arrangement", "released_on", "removed"] {
        assert!(marked(&page.body, field), "{field}: {}", page.body);
    }
    assert!(!marked(&page.body, "recipient") && !marked(&page.body, "what"));
    for kept in [
        "value=\"RecipientMarker Fusion Center\"",
        "value=\"WhatMarker summary\"",
        "value=\"ReleasedMarker\"",
        "id=\"sanitized\" name=\"sanitized\" value=\"yes\" checked",
    ] {
        assert!(page.body.contains(kept), "{kept}");
    }

    // A date in the future, the kind chosen and kept.
    let future = pcii_portal::time::date(app.now() + 10 * DAY);
    let page = officer.post(
        &uri,
        &[
            ("recipient", "State EOC"),
            ("recipient_kind", "tribal"),
            ("arrangement", "ArrangementMarker"),
            ("what", "Summary"),
            ("released_on", &future),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "released_on"));
    assert!(page.body.contains("<option value=\"tribal\" selected>"));
    assert!(page.body.contains("value=\"ArrangementMarker\""));
    assert_eq!(app.audit_count("dissemination.recorded"), 0);

    // Tomorrow is in the future too (it passed before: the check allowed a day), and a release is of validated
    // PCII: not dated before the day it was validated.
    for (date, says) in [
        (
            pcii_portal::time::date(app.now() + DAY),
            "cannot be in the future",
        ),
        (
            pcii_portal::time::date(app.now() - 3 * DAY),
            "cannot be before the submission was validated",
        ),
    ] {
        let page = officer.post(
            &uri,
            &[
                ("recipient", "State EOC"),
                ("recipient_kind", "tribal"),
                ("arrangement", "ArrangementMarker"),
                ("what", "Summary"),
                ("released_on", &date),
            ],
        );
        assert_eq!(page.status, Status::UnprocessableEntity, "{date}");
        assert!(page.body.contains(says), "{date}: {}", page.body);
    }
    assert_eq!(app.audit_count("dissemination.recorded"), 0);

    let today = pcii_portal::time::date(app.now());
    let page = officer.post(
        &uri,
        &[
            ("recipient", "State EOC"),
            ("recipient_kind", "tribal"),
            ("arrangement", "ArrangementMarker"),
            ("what", "Summary"),
            ("released_on", &today),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("dissemination.recorded"), 1);
}

#[test]
fn find_comes_back_with_the_number_typed_and_the_reason() {
    let app = TestApp::new();
    let (id, _, mut officer) = received(&app);
    let page = officer.get("/officer/find");
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("id=\"find-tracking\""));

    let page = officer.get("/officer/find?tracking=FindMarker42");
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "find-tracking"), "{}", page.body);
    assert!(page.body.contains("value=\"FindMarker42\""));

    let page = officer.get("/officer/find?tracking=PCII-1999-000001");
    assert_eq!(page.status, Status::NotFound);
    assert!(marked(&page.body, "find-tracking"), "{}", page.body);
    assert!(page.body.contains("value=\"PCII-1999-000001\""));

    let tn: String = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    let page = officer.get(&format!("/officer/find?tracking={}", tn.to_lowercase()));
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(
        page.header("Location"),
        Some(format!("/officer/submissions/{id}").as_str())
    );
}

/// Issue 18, text that cannot lie about itself: a right-to-left override typed in a narrative or an officer's
/// reason is shown as a visible escape on the officer's and the submitter's pages, never as the raw control.
#[test]
fn bidi_controls_in_a_narrative_and_a_defect_reason_are_shown_as_escapes() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let page = sub.post_multipart(
        "/submissions",
        &complete_fields("Pump house \u{202E}gnp.exe\u{202C} at dam 4", "submit"),
    );
    let id = crate::common::submission_id(&page);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "Attach \u{2067}the drawing\u{2069} again"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    for (who, page) in [
        (
            "officer",
            officer.get(&format!("/officer/submissions/{id}")),
        ),
        ("submitter", sub.get(&format!("/submissions/{id}"))),
    ] {
        assert_eq!(page.status, Status::Ok, "{who}");
        for c in ['\u{202E}', '\u{202C}', '\u{2067}', '\u{2069}'] {
            assert!(!page.body.contains(c), "{who}: a raw {c:?} is on the page");
        }
        assert!(
            page.body
                .contains("Attach &lt;U+2067&gt;the drawing&lt;U+2069&gt; again"),
            "{who}"
        );
    }
    let page = officer.get(&format!("/officer/submissions/{id}"));
    assert!(page
        .body
        .contains("Pump house &lt;U+202E&gt;gnp.exe&lt;U+202C&gt; at dam 4"));
}

/// The administrator's account forms (disable, reset second factors, NDA) and the officer's organisation forms
/// (verify, propose a merge) come back on a mistake as their page (422) with the message at the form and what was
/// typed kept, nothing changed; corrected, they go through.
#[test]
fn account_and_organisation_forms_refused_keep_what_was_typed() {
    let app = TestApp::new();
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    let ana = app.create_trained_analyst("ana@dhs.example.gov");
    let account = format!("/admin/accounts/{ana}");

    // Disable: the reason typed, the box not ticked.
    let page = root.post(
        &format!("{account}/disable"),
        &[("reason", "Left the agency on 1 December")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        page.body.contains("Tick the box to confirm"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("value=\"Left the agency on 1 December\""));
    assert!(page.body.contains("id=\"disable-confirm-error\""));
    // Reset: a reason with a line break in it.
    let page = root.post(
        &format!("{account}/reset-factors"),
        &[
            ("reason", "Lost phone\nchecked by call"),
            ("confirm", "true"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        page.body.contains("id=\"reset-reason-error\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Lost phone"));
    // NDA: an expiry before the signature; the dates and the reference stay as typed.
    let page = root.post(
        &format!("{account}/nda"),
        &[
            ("date", "2026-11-01"),
            ("expires", "2026-10-01"),
            ("reference", "NDA-2026-117"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(page.body.contains("must expire after it was signed"));
    for typed in [
        "value=\"2026-11-01\"",
        "value=\"2026-10-01\"",
        "value=\"NDA-2026-117\"",
    ] {
        assert!(page.body.contains(typed), "{typed}: {}", page.body);
    }
    let disabled: bool = app.with_conn(|c| {
        users::table
            .find(&ana)
            .select(users::disabled)
            .first(c)
            .unwrap()
    });
    assert!(!disabled);
    assert_eq!(app.audit_count("account.disable"), 0);
    assert_eq!(app.audit_count("account.nda"), 0);
    let page = root.post(
        &format!("{account}/disable"),
        &[
            ("reason", "Left the agency on 1 December"),
            ("confirm", "true"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // The officer's organisation page: a verification without its method, a merge into an unknown id.
    let mut sub = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    submit(&mut sub);
    let acme = app.organisation_id("Acme").unwrap();
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let page = officer.post(
        &format!("/officer/organisations/{acme}/verify"),
        &[("method", "x".repeat(201).as_str())],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(page.body.contains("id=\"verify-error\""), "{}", page.body);
    assert!(page
        .body
        .contains(&format!("value=\"{}\"", "x".repeat(201))));
    let page = officer.post(
        &format!("/officer/organisations/{acme}/merge"),
        &[
            ("target", "no-such-organisation"),
            ("reason", "Registered twice by the same company"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        page.body.contains("No organisation has this id"),
        "{}",
        page.body
    );
    assert!(page.body.contains("value=\"no-such-organisation\""));
    assert!(page
        .body
        .contains("value=\"Registered twice by the same company\""));
    assert_eq!(app.audit_count("organisation.verify"), 0);
    assert_eq!(app.audit_count("organisation.merge_propose"), 0);
}
