//! Notifications by email (issue 19): defect notices and cure reminders 7 and 2 days before the deadline (these
//! cannot be turned off), grants ending within 14 days, access requests waiting — each sent once, content-free,
//! and the optional ones turned off from the account page. The clock is moved, not the rows.

use crate::common::{self, complete_fields, Browser, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{submissions, users};
use pcii_portal::domain::Role;
use pcii_portal::time::DAY;

fn submit(b: &mut Browser<'_>, title_marker: &str) -> String {
    let page = b.post_multipart("/submissions", &complete_fields(title_marker, "submit"));
    crate::common::submission_id(&page)
}

/// Runs one notification round, as the periodic task does; the kinds it sent, sorted.
fn run(app: &TestApp) -> Vec<(&'static str, String)> {
    let done = app.notification_round();
    assert_eq!((done.failed, done.given_up), (0, 0));
    let mut sent: Vec<(&'static str, String)> = done
        .sent
        .into_iter()
        .map(|(k, u)| (k.as_str(), u))
        .collect();
    sent.sort();
    sent
}

/// `v` sorted, as `run` returns what it sent.
fn sorted(mut v: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    v.sort();
    v
}

fn mails_to(app: &TestApp, email: &str) -> Vec<String> {
    app.outbox()
        .into_iter()
        .filter(|m| m.to_lowercase().contains(&format!("to: {email}")))
        .collect()
}

#[test]
fn a_defect_notice_and_both_cure_reminders_go_once_to_every_member_and_cannot_be_turned_off() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut bob = app.login_as(Role::Submitter, "bob@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann, "Turbine hall report");
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "Secret defect words: file 2 unreadable"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let (ann_id, bob_id) = (
        app.user_id("ann@acme.example"),
        app.user_id("bob@acme.example"),
    );

    // Bob turns every optional notification off: the defect notice and the reminders still reach him.
    let page = bob.get("/account");
    assert!(page.body.contains("id=\"n-cure_reminder_7\""));
    assert!(page.body.contains("(always sent: a deadline runs)"));
    assert!(page.body.contains("id=\"n-merge_proposed\""));
    assert!(page
        .body
        .contains("(always sent: nothing merges without your organisation"));
    assert_eq!(
        bob.post("/account/notifications", &[]).status,
        Status::SeeOther
    );
    assert_eq!(app.audit_count("account.notifications"), 1);

    let sent = run(&app);
    assert_eq!(
        sent,
        sorted(vec![
            ("defect_notice", ann_id.clone()),
            ("defect_notice", bob_id.clone())
        ])
    );
    let tracking: String = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    let mails = mails_to(&app, "ann@acme.example");
    assert!(!mails.is_empty(), "the checks below read some mail");
    for mail in mails {
        assert!(!mail.contains(&tracking) && !mail.contains(&id), "{mail}");
        assert!(
            !mail.contains("Turbine hall") && !mail.contains("Secret defect words"),
            "{mail}"
        );
    }
    let defect_mail = mails_to(&app, "bob@acme.example").pop().unwrap();
    assert!(
        defect_mail.contains("Subject: A defect notice about a PCII submission"),
        "{defect_mail}"
    );
    // Sent once: the next round has nothing.
    assert!(run(&app).is_empty());
    assert_eq!(app.audit_count("notifications.sent"), 1);

    // 23 days later the deadline is 7 days away: the 7-day reminder, once.
    app.advance(23 * DAY + 3600);
    assert_eq!(
        run(&app),
        sorted(vec![
            ("cure_reminder_7", ann_id.clone()),
            ("cure_reminder_7", bob_id.clone())
        ])
    );
    assert!(run(&app).is_empty());
    // 2 days before: the 2-day reminder.
    app.advance(5 * DAY);
    assert_eq!(
        run(&app),
        sorted(vec![
            ("cure_reminder_2", ann_id.clone()),
            ("cure_reminder_2", bob_id)
        ])
    );
    let reminder = mails_to(&app, "ann@acme.example").pop().unwrap();
    assert!(
        reminder.contains("Subject: Reminder: a PCII submission must be corrected by"),
        "{reminder}"
    );
    // After the deadline: nothing more.
    app.advance(3 * DAY);
    assert!(run(&app).is_empty());
}

#[test]
fn a_grant_ending_within_14_days_is_mailed_unless_turned_off_and_officers_hear_of_access_requests()
{
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let analyst_id = app.create_user(Role::AuthorizedUser, "ana@dhs.example.gov", None);
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&analyst_id))
            .set((
                users::training_completed_at.eq(Some(now - 10 * DAY)),
                users::nda_signed_at.eq(Some(now - 10 * DAY)),
            ))
            .execute(c)
            .unwrap()
    });
    let mut analyst = app.browser();
    assert_eq!(
        analyst.login("ana@dhs.example.gov", common::PASSWORD),
        Status::SeeOther
    );
    let officer_id = app.user_id("olga@pcii.example.gov");
    let grant = |officer: &mut Browser<'_>, id: &str| {
        let page = officer.post(
            &format!("/officer/submissions/{id}/decision"),
            &[
                ("decision", "validate"),
                ("reason", crate::common::BASIS),
                ("confirm", "1"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
        let expires = pcii_portal::time::date(app.now() + 10 * DAY);
        let page = officer.post(
            &format!("/officer/submissions/{id}/grants"),
            &[
                ("user_id", &analyst_id),
                ("reason", "need"),
                ("expires", &expires),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    let first = submit(&mut ann, "First");
    grant(&mut officer, &first);
    assert_eq!(
        run(&app),
        sorted(vec![("grant_ending", analyst_id.clone())])
    );
    let mail = mails_to(&app, "ana@dhs.example.gov").pop().unwrap();
    assert!(
        mail.contains("Subject: Your access to a PCII submission ends on"),
        "{mail}"
    );
    assert!(run(&app).is_empty());

    // Turned off: a second grant ending as soon is not mailed.
    assert!(analyst
        .get("/account")
        .body
        .contains("id=\"n-grant_ending\""));
    let page = analyst.post(
        "/account/notifications",
        &[("on", "training_ending"), ("on", "nda_ending")],
    );
    assert_eq!(page.status, Status::SeeOther);
    let second = submit(&mut ann, "Second");
    grant(&mut officer, &second);
    assert!(run(&app).is_empty());

    // The analyst asks for access to a third: the officer hears of it, once.
    let third = submit(&mut ann, "Third");
    let page = officer.post(
        &format!("/officer/submissions/{third}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let tn: String = app.with_conn(|c| {
        submissions::table
            .find(&third)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    let page = analyst.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", "Regional assessment")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(run(&app), sorted(vec![("access_request", officer_id)]));
    let mail = mails_to(&app, "olga@pcii.example.gov").pop().unwrap();
    assert!(
        !mail.contains(&tn) && !mail.contains("Regional assessment"),
        "{mail}"
    );
    assert!(run(&app).is_empty());
}

/// Not validated, the organisation has 30 days to choose return or destruction: its members are reminded 7 days
/// before (always: a deadline runs), once; a return chosen sets a new deadline for taking the package, reminded of
/// in turn. Content-free like every mail.
#[test]
fn members_are_reminded_7_days_before_their_return_or_destruction_answer_is_due() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut bob = app.login_as(Role::Submitter, "bob@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann, "Turbine hall report");
    // Bob turns every optional notification off: the reminder still reaches him.
    assert_eq!(
        bob.post("/account/notifications", &[]).status,
        Status::SeeOther
    );
    assert!(bob
        .get("/account")
        .body
        .contains("id=\"n-disposition_reminder\""));
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Secret reason words"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let (ann_id, bob_id) = (
        app.user_id("ann@acme.example"),
        app.user_id("bob@acme.example"),
    );
    assert!(run(&app).is_empty(), "30 days ahead: nothing yet");
    app.advance(22 * DAY);
    assert!(run(&app).is_empty(), "8 days ahead: nothing yet");
    app.advance(DAY + 3600);
    assert_eq!(
        run(&app),
        sorted(vec![
            ("disposition_reminder", ann_id.clone()),
            ("disposition_reminder", bob_id.clone())
        ])
    );
    assert!(run(&app).is_empty(), "once");
    let reminder = mails_to(&app, "bob@acme.example").pop().unwrap();
    assert!(
        reminder.contains("Subject: Reminder: choose what happens to a PCII submission by"),
        "{reminder}"
    );
    assert!(
        !reminder.contains("Turbine hall")
            && !reminder.contains("Secret reason")
            && !reminder.contains(&id),
        "{reminder}"
    );

    // Ann chooses a return: 30 days from now to take the package, and a reminder 7 days before that.
    ann = {
        let _ = ann;
        let mut b = app.browser();
        assert_eq!(
            b.login("ann@acme.example", common::PASSWORD),
            Status::SeeOther
        );
        b
    };
    let page = ann.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    app.advance(7 * DAY);
    assert!(run(&app).is_empty(), "the first deadline no longer counts");
    app.advance(16 * DAY);
    assert_eq!(
        run(&app),
        sorted(vec![
            ("disposition_reminder", ann_id),
            ("disposition_reminder", bob_id)
        ])
    );
    // After the deadline: nothing more.
    app.advance(8 * DAY);
    assert!(run(&app).is_empty());
}
