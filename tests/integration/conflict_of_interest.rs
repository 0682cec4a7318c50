//! An officer never acts where it has a conflict of interest, and every such attempt is in the audit log
//! (`conflict_of_interest.refused`: who, on what, why), whichever check refused it: a form's pre-check, the act's
//! own transaction, or one submission of a bulk assignment.

use crate::common::{complete_fields, submission_id, Browser, Part, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::audit_entries;
use pcii_portal::domain::Role;

const REFUSED: &str = "conflict_of_interest.refused";

/// The last entry: (actor, action, outcome, object kind, object id, reason).
type Entry = (
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn last_entry(app: &TestApp) -> Entry {
    app.with_conn(|c| {
        audit_entries::table
            .order(audit_entries::seq.desc())
            .select((
                audit_entries::actor_id,
                audit_entries::action,
                audit_entries::outcome,
                audit_entries::object_kind,
                audit_entries::object_id,
                audit_entries::reason,
            ))
            .first(c)
            .unwrap()
    })
}

/// `page` was refused (403, with the reason) and one refusal was recorded for `actor` on `kind` `id`, last.
fn refused_and_recorded(
    app: &TestApp,
    before: i64,
    page: &crate::common::Page,
    actor: &str,
    kind: &str,
    id: &str,
    what: &str,
) {
    assert_eq!(page.status, Status::Forbidden, "{what}: {}", page.body);
    assert_eq!(
        app.audit_count(REFUSED),
        before + 1,
        "{what}: recorded once"
    );
    let (who, action, outcome, object_kind, object_id, reason) = last_entry(app);
    assert_eq!(action, REFUSED, "{what}");
    assert_eq!(who.as_deref(), Some(actor), "{what}");
    assert_eq!(outcome, "refused", "{what}");
    assert_eq!(object_kind.as_deref(), Some(kind), "{what}");
    assert_eq!(object_id.as_deref(), Some(id), "{what}");
    assert!(reason.is_some_and(|r| r.contains("organisation")), "{what}");
}

fn submit(b: &mut Browser<'_>) -> String {
    let page = b.post_multipart(
        "/submissions",
        &complete_fields("Conflict narrative", "submit"),
    );
    submission_id(&page)
}

#[test]
fn every_act_refused_for_a_conflict_of_interest_is_recorded_and_changes_nothing() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@acme.example", Some("Acme"));
    let mut oscar = app.login_as(Role::Officer, "oscar@pcii.example.gov", None);
    let olga_id = app.user_id("olga@acme.example");
    let oscar_id = app.user_id("oscar@pcii.example.gov");
    let acme = app.organisation_id("Acme").unwrap();
    let id = submit(&mut ann);
    let received = submit(&mut ann);
    let mut bea = app.login_as(Role::Submitter, "bea@beta.example", Some("Beta"));
    let other = submit(&mut bea);

    // A decision: refused by the form's pre-check, before any transaction.
    let before = app.audit_count(REFUSED);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    refused_and_recorded(&app, before, &page, &olga_id, "submission", &id, "decision");
    assert_eq!(app.status_of(&id), "received");

    // A case note: refused inside the act's transaction, which is rolled back; the refusal still stands.
    let before = app.audit_count(REFUSED);
    let page = olga.post(
        &format!("/officer/submissions/{id}/notes"),
        &[("note", "my own company's report")],
    );
    refused_and_recorded(&app, before, &page, &olga_id, "submission", &id, "note");
    assert_eq!(app.audit_count("case.note_added"), 0);

    // Claiming the case, alone and in a bulk assignment with a submission it may handle: nothing changes.
    let before = app.audit_count(REFUSED);
    let page = olga.post(
        &format!("/officer/submissions/{id}/assign"),
        &[("assignee", "me")],
    );
    refused_and_recorded(&app, before, &page, &olga_id, "submission", &id, "claim");
    let before = app.audit_count(REFUSED);
    let page = olga.post(
        "/officer/assign",
        &[("ids", &other), ("ids", &id), ("assignee", "me")],
    );
    refused_and_recorded(
        &app,
        before,
        &page,
        &olga_id,
        "submission",
        &id,
        "bulk claim",
    );
    assert_eq!(app.audit_count("case.assigned"), 0);

    // Another officer gives the case to the conflicted one: refused, recorded against the one who asked.
    let before = app.audit_count(REFUSED);
    let page = oscar.post(
        &format!("/officer/submissions/{id}/assign"),
        &[("assignee", &olga_id)],
    );
    refused_and_recorded(
        &app,
        before,
        &page,
        &oscar_id,
        "submission",
        &id,
        "hand over",
    );
    assert_eq!(app.audit_count("case.assigned"), 0);

    // A message in the submission's thread.
    let before = app.audit_count(REFUSED);
    let page = olga.post_multipart(
        &format!("/officer/submissions/{id}/messages"),
        &[Part::Text("body", "From inside the company")],
    );
    refused_and_recorded(&app, before, &page, &olga_id, "submission", &id, "message");
    assert_eq!(app.audit_count("message.sent"), 0);

    // Validated by an officer without a conflict; a grant by the conflicted one is refused (pre-check).
    let page = oscar.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    app.login_as(Role::AuthorizedUser, "ava@pcii.example.gov", None);
    let analyst = app.user_id("ava@pcii.example.gov");
    let before = app.audit_count(REFUSED);
    let page = olga.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", &analyst),
            ("reason", "needs it"),
            ("expires", "2099-01-01"),
        ],
    );
    refused_and_recorded(&app, before, &page, &olga_id, "submission", &id, "grant");
    assert_eq!(app.audit_count("grant.created"), 0);

    // The organisation itself: verifying it.
    let before = app.audit_count(REFUSED);
    let page = olga.post(
        &format!("/officer/organisations/{acme}/verify"),
        &[("method", "I work there")],
    );
    refused_and_recorded(
        &app,
        before,
        &page,
        &olga_id,
        "organisation",
        &acme,
        "verify",
    );
    assert_eq!(app.audit_count("organisation.verify"), 0);

    // The other submission is untouched by all of this, and the chain still verifies.
    assert_eq!(app.status_of(&received), "received");
    let out = app.command().args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_officer_without_a_conflict_records_no_refusal() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut oscar = app.login_as(Role::Officer, "oscar@pcii.example.gov", None);
    let id = submit(&mut ann);
    let page = oscar.post(
        &format!("/officer/submissions/{id}/notes"),
        &[("note", "looked at it")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = oscar.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "validated");
    assert_eq!(app.audit_count(REFUSED), 0);
}

/// An officer's message re-checks the conflict of interest in its commit: a merge accepted while its upload ran
/// can make the submission its own organisation's. (Driven through the library, as the local client cannot hold
/// a request open across another.)
#[test]
fn an_officers_message_is_refused_when_a_merge_made_the_submission_its_own_meanwhile() {
    use pcii_portal::workflow::{access, intake::UnverifiedCaps, messages};
    let app = TestApp::new();
    let mut gus = app.login_as(Role::Submitter, "gus@globex.example", Some("Globex"));
    let id = submit(&mut gus);
    app.login_as(Role::Officer, "otto@initech.example", Some("Initech"));
    let otto_id = app.user_id("otto@initech.example");
    let otto = app.with_conn(|c| pcii_portal::models::account::find(c, &otto_id).unwrap());
    let state = app.state();
    let actor = crate::common::actor_of(&otto);
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let admitted = rt
        .block_on(access::admit(state, &otto, &actor, &id))
        .expect("an officer reads another organisation's submission");
    messages::may_write_now(&admitted, &otto).expect("not its own organisation's, yet");
    let sealing = rt
        .block_on(messages::sealing_key(state, &admitted))
        .unwrap();

    let (globex, initech) = (
        app.organisation_id("Globex").unwrap(),
        app.organisation_id("Initech").unwrap(),
    );
    let now = app.now();
    app.with_conn(|c| pcii_portal::models::organisation::merge(c, &globex, &initech, now).unwrap());

    let sent = rt.block_on(messages::send(
        state,
        &admitted,
        &otto,
        &actor,
        messages::NewMessageRequest {
            body: "Written after the merge.".into(),
            request_for_information: false,
            files: Vec::new(),
            sealing,
            max_draft_bytes: u64::MAX,
            unverified: UnverifiedCaps::of(&state.settings),
            max_per_side: state.settings.max_messages_per_side,
        },
    ));
    assert!(
        matches!(
            sent,
            Err(pcii_portal::error::AppError::ConflictOfInterest(_))
        ),
        "{sent:?}"
    );
    assert_eq!(app.audit_count("message.sent"), 0);
    assert_eq!(app.audit_count(REFUSED), 1);
}
