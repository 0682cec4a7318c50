//! The content-access service: one decision for every reader, a refusal audited once, and a refusal that
//! tells someone who may not read a submission nothing about whether it exists or was destroyed.

use crate::common::{self, complete_fields, TestApp};
use rocket::http::Status;

use pcii_portal::domain::Role;

fn send(app: &TestApp, email: &str, organisation: &str, action: &str) -> String {
    let mut b = app.login_as(Role::Submitter, email, Some(organisation));
    let page = b.post_multipart("/submissions", &complete_fields("Access narrative", action));
    crate::common::submission_id(&page)
}

#[test]
fn an_authorized_user_without_a_grant_gets_the_same_refusal_for_a_real_and_a_made_up_id() {
    let app = TestApp::new();
    let sent = send(&app, "ann@acme.example", "Acme", "submit");
    app.create_trained_analyst("ana@dhs.example.gov");
    let mut a = app.browser();
    assert_eq!(
        a.login("ana@dhs.example.gov", common::PASSWORD),
        Status::SeeOther
    );
    let before = app.audit_count("access.refused");
    let real = a.get(&format!("/analyst/submissions/{sent}"));
    let made_up = a.get(&format!("/analyst/submissions/{}", "0".repeat(32)));
    assert_eq!(real.status, Status::Forbidden);
    assert_eq!(made_up.status, Status::Forbidden);
    assert!(real.body.contains("You hold no grant for this submission"));
    assert!(made_up
        .body
        .contains("You hold no grant for this submission"));
    assert_eq!(
        app.audit_count("access.refused"),
        before + 2,
        "each refusal recorded exactly once"
    );
}

#[test]
fn officers_and_other_organisations_get_404_for_what_they_may_not_see_and_each_is_audited_once() {
    let app = TestApp::new();
    let draft = send(&app, "ann@acme.example", "Acme", "save");
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut stranger = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let cases = [
        (&mut officer, format!("/officer/submissions/{draft}")),
        (&mut stranger, format!("/submissions/{draft}")),
    ];
    for (b, uri) in cases {
        let before = app.audit_count("access.refused");
        assert_eq!(b.get(&uri).status, Status::NotFound, "{uri}");
        assert_eq!(app.audit_count("access.refused"), before + 1, "{uri}");
    }
    let before = app.audit_count("access.refused");
    assert_eq!(
        officer
            .get(&format!("/officer/submissions/{}", "0".repeat(32)))
            .status,
        Status::NotFound
    );
    assert_eq!(app.audit_count("access.refused"), before + 1);
}

/// Drafts are the company's alone: the officers' organisation pages count the submissions the Office received,
/// not the drafts the company keeps.
#[test]
fn an_officer_is_not_told_how_many_drafts_an_organisation_keeps() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    for action in ["submit", "save", "save"] {
        let page = ann.post_multipart("/submissions", &complete_fields("Counted", action));
        assert_eq!(page.status, Status::SeeOther, "{action}");
    }
    let acme = app.organisation_id("Acme").unwrap();
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let page = officer.get(&format!("/officer/organisations/{acme}"));
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body.contains("<dt>Submissions</dt><dd>1</dd>"),
        "{}",
        page.body
    );
    let list = officer.get("/officer/organisations?q=acme");
    let row = &list.body[list.body.find(">Acme<").expect("listed")..];
    let row = &row[..row.find("</tr>").unwrap()];
    // The cells after the name's: id, verified, members, submissions, created.
    let cells: Vec<&str> = row
        .split("<td>")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap())
        .collect();
    assert_eq!(cells[3], "1", "submissions: {row}");
}
