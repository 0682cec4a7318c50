//! Issue 19, "titles in My submissions": the submitter's list shows each submission's title — its own
//! organisation's only, opened for the rows shown.

use crate::common::{complete_fields, Part, TestApp};
use pcii_portal::domain::Role;
use rocket::http::Status;

#[test]
fn my_submissions_show_titles_of_the_organisations_own_submissions_only() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme Power"));
    let mut eve = app.login_as(Role::Submitter, "eve@other.example", Some("Other Grid"));

    // A sent submission (the common fields carry the title "Substation 14 protection scheme") …
    let sent = ann.post_multipart("/submissions", &complete_fields("Sent narrative", "submit"));
    assert_eq!(sent.status, Status::SeeOther, "{}", sent.body);
    // … a draft with a title of its own, and another organisation's draft.
    let draft = ann.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "DraftTitleMarker pump station 3"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(draft.status, Status::SeeOther, "{}", draft.body);
    let other = eve.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "OtherOrgTitleMarker"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(other.status, Status::SeeOther, "{}", other.body);

    let list = ann.get("/submissions");
    assert_eq!(list.status, Status::Ok);
    assert!(
        list.body.contains("<th scope=\"col\">Title</th>"),
        "{}",
        list.body
    );
    assert!(list.body.contains("Substation 14 protection scheme"));
    assert!(list.body.contains("DraftTitleMarker pump station 3"));
    assert!(!list.body.contains("OtherOrgTitleMarker"));

    let theirs = eve.get("/submissions");
    assert!(theirs.body.contains("OtherOrgTitleMarker"));
    assert!(!theirs.body.contains("DraftTitleMarker"));
}
