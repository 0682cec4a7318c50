//! Issue 18, analysts: the grants list shows each submission's title, the grant's reason and the days left, and
//! warns near the end; an analyst asks for access to validated PCII by tracking number, and an officer grants or
//! refuses the request (audited; the analyst is told by an email that names nothing).

use crate::common::{self, complete_fields, Browser, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{access_requests, audit_entries, submissions, users};
use pcii_portal::domain::Role;
use pcii_portal::time::DAY;

const TITLE: &str = "Substation 14 protection scheme";
const ANALYST: &str = "ana@dhs.example.gov";

fn submit(b: &mut Browser<'_>) -> String {
    let page = b.post_multipart(
        "/submissions",
        &complete_fields("Requests narrative", "submit"),
    );
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

/// A submission of Acme, validated by `officer`: its id and tracking number.
fn validated(app: &TestApp, sub: &mut Browser<'_>, officer: &mut Browser<'_>) -> (String, String) {
    let id = submit(sub);
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let tn = tracking_number_of(app, &id);
    (id, tn)
}

/// An authorized user with current training and an NDA on file, signed in: its id and browser.
fn analyst(app: &TestApp) -> (String, Browser<'_>) {
    analyst_as(app, ANALYST)
}

fn analyst_as<'a>(app: &'a TestApp, email: &str) -> (String, Browser<'a>) {
    let id = app.create_user(Role::AuthorizedUser, email, None);
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&id))
            .set((
                users::training_completed_at.eq(Some(now - 10 * DAY)),
                users::nda_signed_at.eq(Some(now - 10 * DAY)),
                users::agency.eq(Some("DHS Office of Intelligence")),
            ))
            .execute(c)
            .unwrap()
    });
    let mut b = app.browser();
    assert_eq!(b.login(email, common::PASSWORD), Status::SeeOther);
    (id, b)
}

/// The Acme submitter and an officer of the Program Office, both signed in.
fn people(app: &TestApp) -> (Browser<'_>, Browser<'_>) {
    (
        app.login_as(Role::Submitter, "ann@acme.example", Some("Acme")),
        app.login_as(Role::Officer, "olga@pcii.example.gov", None),
    )
}

/// The date `days` days after the app's today, as the forms take it (a grant runs to the end of it).
fn date_in(app: &TestApp, days: i64) -> String {
    pcii_portal::time::date(app.now() + days * DAY)
}

/// The id of the one request on record.
fn only_request(app: &TestApp) -> String {
    app.with_conn(|c| {
        access_requests::table
            .select(access_requests::id)
            .first(c)
            .unwrap()
    })
}

/// The messages of the outbox sent to `to`.
fn mail_to(app: &TestApp, to: &str) -> Vec<String> {
    app.outbox()
        .into_iter()
        .filter(|m| m.to_lowercase().contains(&format!("to: {to}")))
        .collect()
}

/// The text of the error shown next to the field with element id `id`.
fn field_error(body: &str, id: &str) -> String {
    let start = body
        .find(&format!("id=\"{id}-error\""))
        .unwrap_or_else(|| panic!("no error for {id}: {body}"));
    let rest = &body[start..];
    rest[..rest.find("</p>").unwrap()].to_string()
}

fn marked(body: &str, id: &str) -> bool {
    body.contains(&format!("id=\"{id}-error\"")) && body.contains(&format!("href=\"#{id}\""))
}

#[test]
fn an_analyst_sees_title_reason_and_days_left_of_each_grant_and_a_warning_near_the_end() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (soon, soon_tn) = validated(&app, &mut sub, &mut officer);
    let (later, later_tn) = validated(&app, &mut sub, &mut officer);
    let (analyst_id, mut a) = analyst(&app);
    for (id, days, reason) in [
        (&soon, 10, "SoonReasonMarker: grid exercise"),
        (&later, 60, "LaterReasonMarker: sector study"),
    ] {
        let page = officer.post(
            &format!("/officer/submissions/{id}/grants"),
            &[
                ("user_id", &analyst_id),
                ("reason", reason),
                ("expires", &date_in(&app, days)),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let viewed = app.audit_count("content.viewed");
    let page = a.get("/analyst");
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(page.body.contains(&soon_tn) && page.body.contains(&later_tn));
    assert_eq!(page.body.matches(TITLE).count(), 2, "{}", page.body);
    assert!(page.body.contains("SoonReasonMarker: grid exercise"));
    assert!(page.body.contains("LaterReasonMarker: sector study"));
    assert!(page.body.contains("data-days-left=\"10\""), "{}", page.body);
    assert!(page.body.contains("data-days-left=\"60\""));
    assert_eq!(
        page.body
            .matches("Expires in 10 days — ask the Program Office to renew")
            .count(),
        1,
        "only the grant that ends within 14 days warns"
    );
    assert!(!page.body.contains("Expires in 60 days"));
    // The titles are one audited reading of the list, not a viewing of each submission.
    assert_eq!(app.audit_count("content.viewed"), viewed);
    assert_eq!(app.audit_count("grants.listed"), 1);
    let listed: Option<String> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("grants.listed"))
            .select(audit_entries::reason)
            .first(c)
            .unwrap()
    });
    let listed = listed.unwrap();
    assert!(
        listed.contains(&soon_tn) && listed.contains(&later_tn),
        "{listed}"
    );

    // Once the analyst's training lapses, the list keeps the dates and shows neither titles nor reasons.
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&analyst_id))
            .set(users::training_completed_at.eq(Some(now - 400 * DAY)))
            .execute(c)
            .unwrap()
    });
    let page = a.get("/analyst");
    assert_eq!(page.status, Status::Ok);
    assert!(!page.body.contains(TITLE));
    assert!(!page.body.contains("SoonReasonMarker"));
    assert!(page.body.contains("data-days-left=\"10\""));
    assert!(page.body.contains("Your PCII training expired"));
    assert!(!page.body.contains("action=\"/analyst/access-requests\""));
    assert_eq!(app.audit_count("grants.listed"), 1);
}

#[test]
fn a_request_for_an_unknown_or_unvalidated_number_gets_one_answer_and_a_reason_is_required() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, validated_tn) = validated(&app, &mut sub, &mut officer);
    let received = submit(&mut sub);
    let received_tn = tracking_number_of(&app, &received);
    let (_, mut a) = analyst(&app);
    let reason = "KeptReasonMarker: regional risk assessment";

    let mut answers = Vec::new();
    for tn in [received_tn.as_str(), "PCII-1999-999999"] {
        let page = a.post(
            "/analyst/access-requests",
            &[("tracking", tn), ("reason", reason)],
        );
        assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
        assert!(marked(&page.body, "tracking"), "{}", page.body);
        assert!(page.body.contains(reason), "the reason typed is kept");
        assert!(page.body.contains(&format!("value=\"{tn}\"")));
        answers.push(field_error(&page.body, "tracking"));
    }
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].contains("No validated PCII has this tracking number"));
    // Each miss is recorded (a sweep of numbers shows in the log), the same for both.
    assert_eq!(app.audit_count("access_request.missed"), 2);

    // No reason: the reason is marked, the number kept.
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &validated_tn), ("reason", "  ")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(marked(&page.body, "reason"), "{}", page.body);
    assert!(!marked(&page.body, "tracking"));
    assert!(page.body.contains(&format!("value=\"{validated_tn}\"")));
    assert_eq!(app.audit_count("access_request.created"), 0);

    // A good request, then the same again while it is pending.
    let page = a.post(
        "/analyst/access-requests",
        &[
            ("tracking", &validated_tn.to_lowercase()),
            ("reason", reason),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("access_request.created"), 1);
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &validated_tn), ("reason", "Again")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(field_error(&page.body, "tracking").contains("already asked"));
    assert_eq!(app.audit_count("access_request.created"), 1);
    let page = a.get("/analyst");
    assert!(page.body.contains("data-request-state=\"pending\""));
    assert!(page.body.contains(&validated_tn));
}

#[test]
fn a_sweep_of_numbers_is_throttled_and_while_it_is_a_validated_number_is_refused_alike() {
    use pcii_portal::workflow::access_requests::{MISSES_ALLOWED, MISSES_WINDOW_SECS};
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, validated_tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    let (_, mut other) = analyst_as(&app, "second.analyst@dhs.example");
    let ask = |b: &mut Browser<'_>, tn: &str| {
        b.post(
            "/analyst/access-requests",
            &[("tracking", tn), ("reason", "Regional risk assessment")],
        )
    };
    for n in 0..MISSES_ALLOWED {
        let page = ask(&mut a, &format!("PCII-1999-{:06}", 100 + n));
        assert_eq!(page.status, Status::UnprocessableEntity);
        assert!(field_error(&page.body, "tracking").contains("No validated PCII"));
    }
    // The sweep is stopped: the next number, and the validated one too, get the same refusal and nothing is created.
    let mut answers = Vec::new();
    for tn in ["PCII-1999-000001", validated_tn.as_str()] {
        let page = ask(&mut a, tn);
        assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
        answers.push(field_error(&page.body, "tracking"));
    }
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].contains("Too many requests"), "{}", answers[0]);
    assert_eq!(app.audit_count("access_request.created"), 0);
    assert_eq!(app.audit_count("access_request.missed"), MISSES_ALLOWED + 2);
    // Another analyst is not held back by it.
    assert_eq!(ask(&mut other, &validated_tn).status, Status::SeeOther);
    // Once the window has passed, the analyst's good request goes through.
    app.advance(MISSES_WINDOW_SECS + 1);
    let mut a = app.browser();
    assert_eq!(a.login(ANALYST, common::PASSWORD), Status::SeeOther);
    let page = ask(&mut a, &validated_tn);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("access_request.created"), 2);
}

/// Each hit of a sweep files a request, so the misses' throttle alone would let a sweep learn as many validated
/// numbers as it hits: one analyst may have only so many requests waiting, refused alike for every number once it
/// has them (a hit and a miss get the same answer, nothing is created), until an officer decides one.
#[test]
fn an_analyst_may_have_only_so_many_requests_waiting_and_the_next_is_refused_alike_for_any_number()
{
    use pcii_portal::workflow::access_requests::{PENDING_ALLOWED, TOO_MANY_PENDING};
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let numbers: Vec<String> = (0..=PENDING_ALLOWED)
        .map(|_| validated(&app, &mut sub, &mut officer).1)
        .collect();
    let (_, mut a) = analyst(&app);
    let ask = |b: &mut Browser<'_>, tn: &str| {
        b.post(
            "/analyst/access-requests",
            &[("tracking", tn), ("reason", "Regional risk assessment")],
        )
    };
    for tn in &numbers[..PENDING_ALLOWED as usize] {
        assert_eq!(ask(&mut a, tn).status, Status::SeeOther);
    }
    let mut answers = Vec::new();
    for tn in [numbers.last().unwrap().as_str(), "PCII-1999-000001"] {
        let page = ask(&mut a, tn);
        assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
        answers.push(field_error(&page.body, "tracking"));
    }
    assert_eq!(answers[0], answers[1]);
    assert!(
        answers[0].contains(&TOO_MANY_PENDING.replace('\'', "&#x27;")),
        "{}",
        answers[0]
    );
    assert_eq!(app.audit_count("access_request.created"), PENDING_ALLOWED);
    // Recorded as a sweep's misses are (not counted towards the misses' lock: the number was not looked at).
    assert_eq!(app.audit_count("access_request.missed"), 2);
    // An officer decides one: the next goes through.
    let rid: String = app.with_conn(|c| {
        access_requests::table
            .select(access_requests::id)
            .first(c)
            .unwrap()
    });
    let page = officer.post(
        &format!("/officer/access-requests/{rid}/refuse"),
        &[("reason", "No duty shown")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(
        ask(&mut a, numbers.last().unwrap()).status,
        Status::SeeOther
    );
}

/// A request that can no longer be granted is closed, not left waiting in front of officers: the submission's
/// protection removed closes the requests for it, an analyst disabled closes its requests; each is recorded as a
/// refusal that says why, and the officers' list no longer shows it.
#[test]
fn requests_that_can_no_longer_be_granted_are_closed_with_the_change_that_ends_them() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (first, first_tn) = validated(&app, &mut sub, &mut officer);
    let (_, second_tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    let (ben, mut b) = analyst_as(&app, "ben@dhs.example");
    let ask = |br: &mut Browser<'_>, tn: &str| {
        let page = br.post(
            "/analyst/access-requests",
            &[("tracking", tn), ("reason", "Regional risk assessment")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    ask(&mut a, &first_tn);
    ask(&mut b, &second_tn);
    let pending = |app: &TestApp| -> i64 {
        app.with_conn(|c| {
            access_requests::table
                .filter(access_requests::state.eq("pending"))
                .count()
                .get_result(c)
                .unwrap()
        })
    };
    assert_eq!(pending(&app), 2);

    let page = officer.post(
        &format!("/officer/submissions/{first}/decision"),
        &[
            ("decision", "remove_protection"),
            ("reason", "Published by the company"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(pending(&app), 1);
    let list = officer.get("/officer/access-requests");
    assert!(!list.body.contains(&first_tn), "{}", list.body);
    assert!(list.body.contains(&second_tn));

    let mut admin = app.login_as(Role::Administrator, "root@pcii.example.gov", None);
    let page = admin.post(
        &format!("/admin/accounts/{ben}/disable"),
        &[("reason", "left the agency"), ("confirm", "true")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(pending(&app), 0);
    let reasons = app.audit_reasons("access_request.refused");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].ends_with("closed: the submission is no longer validated PCII"));
    assert!(reasons[1].ends_with("closed: the account was disabled"));
    assert!(a
        .get("/analyst")
        .body
        .contains("data-request-state=\"refused\""));
}

#[test]
fn an_officer_grants_a_request_and_the_analyst_reads_the_submission_told_by_an_email_that_names_nothing(
) {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (id, tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    assert_eq!(
        a.get(&format!("/analyst/submissions/{id}")).status,
        Status::Forbidden
    );
    let page = a.post(
        "/analyst/access-requests",
        &[
            ("tracking", &tn),
            ("reason", "RequestReasonMarker: pipeline threat brief"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    let page = officer.get("/officer/access-requests");
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(page.body.contains(&format!("Test {ANALYST}")));
    assert!(page.body.contains(ANALYST));
    assert!(page.body.contains("DHS Office of Intelligence"));
    assert!(page.body.contains(&tn));
    // The submission's title, next to its number.
    assert!(page
        .body
        .contains("<span class=\"case-title\">Substation 14 protection scheme</span>"));
    assert!(page
        .body
        .contains("RequestReasonMarker: pipeline threat brief"));
    assert!(
        !page.body.contains("Can read now"),
        "training and NDA current"
    );
    // An NDA that lapsed since the request is said beside it: a grant would stand, reading would wait.
    let analyst_id = app.user_id(ANALYST);
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&analyst_id))
            .set(users::nda_expires_at.eq(Some(now - 1)))
            .execute(c)
            .unwrap()
    });
    let page = officer.get("/officer/access-requests");
    assert!(
        page.body.contains("No: non-disclosure agreement expired"),
        "{}",
        page.body
    );
    // The analyst's own page says it lapsed, not only when it was signed.
    let page = a.get("/analyst");
    assert!(
        page.body.contains("<span class=\"tag tag-bad\">expired "),
        "{}",
        page.body
    );
    let page = a.get("/account");
    assert!(
        page.body
            .contains("<span class=\"tag tag-bad\">expired</span>"),
        "{}",
        page.body
    );
    app.with_conn(|c| {
        diesel::update(users::table.find(&analyst_id))
            .set(users::nda_expires_at.eq(None::<i64>))
            .execute(c)
            .unwrap()
    });
    let rid = only_request(&app);
    let uri = format!("/officer/access-requests/{rid}/grant");

    // A grant without its reason comes back with the reason marked and the date kept.
    let expires = date_in(&app, 30);
    let page = officer.post(&uri, &[("reason", ""), ("expires", &expires)]);
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        marked(&page.body, &format!("g_reason_{rid}")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("value=\"{expires}\"")));
    assert_eq!(app.audit_count("grant.created"), 0);

    let page = officer.post(
        &uri,
        &[("reason", "Pipeline threat brief"), ("expires", &expires)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("grant.created"), 1);
    assert_eq!(app.audit_count("access_request.granted"), 1);
    assert_eq!(app.audit_count("access_request.created"), 1);
    let page = officer.get("/officer/access-requests");
    assert!(!page.body.contains("RequestReasonMarker"));
    assert!(page.body.contains("No pending requests."));
    // Decided once: a second click is refused.
    let page = officer.post(
        &uri,
        &[("reason", "Pipeline threat brief"), ("expires", &expires)],
    );
    assert_eq!(page.status, Status::Conflict);
    assert_eq!(app.audit_count("grant.created"), 1);

    let page = a.get(&format!("/analyst/submissions/{id}"));
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(page.body.contains(TITLE));
    let page = a.get("/analyst");
    assert!(page.body.contains("data-days-left=\"30\""), "{}", page.body);
    assert!(page.body.contains("data-request-state=\"granted\""));
    assert!(page.body.contains("Pipeline threat brief"));
    // A live grant far from its end needs no request.
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", "More")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(field_error(&page.body, "tracking").contains("already hold a live grant"));

    let mails = mail_to(&app, ANALYST);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("Your request for access to a submission was decided"));
    assert!(!mails[0].contains(&tn) && !mails[0].contains(TITLE));
    assert!(!mails[0].contains("Pipeline") && !mails[0].contains("RequestReasonMarker"));
}

/// Another officer decides the request while this one's grant is being written (a trigger refuses the request
/// as the grant row goes in): the grant and the request's decision are one fact, so nothing is granted, nothing
/// is recorded but the other decision, and the officer is told (409).
#[test]
fn a_request_decided_by_another_officer_meanwhile_grants_nothing() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (id, tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", "Pipeline threat brief")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let rid = only_request(&app);
    let decided_meanwhile = if app.database_url.starts_with("postgres") {
        "CREATE FUNCTION decided_meanwhile() RETURNS trigger AS $$ BEGIN \
         UPDATE access_requests SET state = 'refused'; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER decided_meanwhile BEFORE INSERT ON grants FOR EACH ROW \
         EXECUTE FUNCTION decided_meanwhile();"
    } else {
        "CREATE TRIGGER decided_meanwhile BEFORE INSERT ON grants \
         BEGIN UPDATE access_requests SET state = 'refused'; END;"
    };
    app.with_conn(|c| {
        diesel::connection::SimpleConnection::batch_execute(c, decided_meanwhile).unwrap();
    });
    let entries_before: i64 =
        app.with_conn(|c| audit_entries::table.count().get_result(c).unwrap());
    let page = officer.post(
        &format!("/officer/access-requests/{rid}/grant"),
        &[
            ("reason", "Pipeline threat brief"),
            ("expires", &date_in(&app, 30)),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("nothing was granted"), "{}", page.body);
    let grants: i64 = app.with_conn(|c| {
        diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT COUNT(*) FROM grants")
            .get_result(c)
            .unwrap()
    });
    assert_eq!(grants, 0, "the grant was rolled back with the decision");
    assert_eq!(app.audit_count("grant.created"), 0);
    assert_eq!(app.audit_count("access_request.granted"), 0);
    let entries_after: i64 = app.with_conn(|c| audit_entries::table.count().get_result(c).unwrap());
    // At most the refusal's own record (a 409 may be logged as a refusal); never the grant's two entries.
    assert!(
        entries_after - entries_before <= 1,
        "{entries_before} -> {entries_after}"
    );
    assert_eq!(
        a.get(&format!("/analyst/submissions/{id}")).status,
        Status::Forbidden,
        "the analyst holds no grant"
    );
}

#[test]
fn a_refused_request_shows_as_refused_the_analyst_is_told_and_no_reason_is_stored_in_clear() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    let asked = "AskedMarker7731 critical pump stations";
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", asked)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let rid = only_request(&app);
    let uri = format!("/officer/access-requests/{rid}/refuse");

    let page = officer.post(&uri, &[("reason", " ")]);
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(
        marked(&page.body, &format!("rf_reason_{rid}")),
        "{}",
        page.body
    );
    assert_eq!(app.audit_count("access_request.refused"), 0);

    let refused = "RefusedMarker4410 no duty shown";
    let page = officer.post(&uri, &[("reason", refused)]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("access_request.refused"), 1);
    assert_eq!(app.audit_count("grant.created"), 0);

    let page = a.get("/analyst");
    assert!(
        page.body.contains("data-request-state=\"refused\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Refused"));
    let mails = mail_to(&app, ANALYST);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("was decided") && !mails[0].contains(&tn));
    assert!(!mails[0].contains("RefusedMarker4410"));

    // The words are sealed: neither the analyst's nor the officer's is in the database or its WAL.
    if app.database_url.is_empty() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", app.data_dir().join("pcii.sqlite3").display());
            if let Ok(b) = std::fs::read(&path) {
                bytes.extend(b);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("access_request.refused"),
            "the scan sees the log"
        );
        for words in [
            "AskedMarker7731",
            "critical pump stations",
            "RefusedMarker4410",
        ] {
            assert!(!text.contains(words), "{words} in clear in the database");
        }
    }
    let stored: (String, Option<String>) = app.with_conn(|c| {
        access_requests::table
            .find(&rid)
            .select((access_requests::reason, access_requests::refuse_reason))
            .first(c)
            .unwrap()
    });
    assert!(stored.0.starts_with("age:") && !stored.0.contains("AskedMarker"));
    assert!(stored.1.unwrap().starts_with("age:"));
}

#[test]
fn only_officers_see_requests_and_an_officer_never_decides_on_its_own_organisations_submission() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", "Sector coordination")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let rid = only_request(&app);

    assert_eq!(a.get("/officer/access-requests").status, Status::Forbidden);
    assert_eq!(
        sub.get("/officer/access-requests").status,
        Status::Forbidden
    );
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    assert_eq!(
        auditor.get("/officer/access-requests").status,
        Status::Forbidden
    );
    let page = a.post(
        &format!("/officer/access-requests/{rid}/refuse"),
        &[("reason", "Self-service")],
    );
    assert_eq!(page.status, Status::Forbidden);

    // An officer who belongs to Acme sees the request and may not decide it.
    let mut own = app.login_as(Role::Officer, "otto@acme.example", Some("Acme"));
    let page = own.get("/officer/access-requests");
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("another officer must decide"));
    assert!(!page.body.contains(&format!("id=\"g_reason_{rid}\"")));
    let page = own.post(
        &format!("/officer/access-requests/{rid}/grant"),
        &[("reason", "Mine"), ("expires", &date_in(&app, 30))],
    );
    assert_eq!(page.status, Status::Forbidden, "{}", page.body);
    let page = own.post(
        &format!("/officer/access-requests/{rid}/refuse"),
        &[("reason", "Mine")],
    );
    assert_eq!(page.status, Status::Forbidden, "{}", page.body);
    assert_eq!(app.audit_count("grant.created"), 0);
    assert_eq!(app.audit_count("access_request.granted"), 0);
    assert_eq!(app.audit_count("access_request.refused"), 0);
    let state: String = app.with_conn(|c| {
        access_requests::table
            .find(&rid)
            .select(access_requests::state)
            .first(c)
            .unwrap()
    });
    assert_eq!(state, "pending");
    assert!(mail_to(&app, ANALYST).is_empty());
}

#[test]
fn a_decision_whose_mail_could_not_go_out_is_mailed_once_by_a_later_round() {
    use pcii_portal::workflow::pending_mail::AT_ONCE_GRACE;
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, tn) = validated(&app, &mut sub, &mut officer);
    let (analyst_id, mut a) = analyst(&app);
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", "pump stations")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let rid = only_request(&app);
    let officer_mail_before = app.outbox().len();

    // The mail route is down when the officer decides: the decision stands, the officer is told the mail waits.
    app.break_outbox();
    let page = officer.post(
        &format!("/officer/access-requests/{rid}/refuse"),
        &[("reason", "RefusedMarker5120 no duty shown")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("access_request.refused"), 1);
    let page = officer.get("/officer/access-requests");
    assert!(
        page.body
            .contains("could not be sent yet; the portal tries again"),
        "{}",
        page.body
    );
    assert_eq!(app.pending_mail(), 1, "queued with the decision");
    app.mend_outbox();
    assert!(mail_to(&app, ANALYST).is_empty());

    // A round right away leaves it alone: the send made at once may still be under way.
    let done = app.notification_round();
    assert!(done.sent.is_empty(), "{done:?}");
    assert_eq!(app.pending_mail(), 1);

    // Once that has had its time, a round sends it — the same content-free text — and takes it off the queue.
    app.advance(AT_ONCE_GRACE + 1);
    let done = app.notification_round();
    let sent: Vec<(&str, String)> = done
        .sent
        .iter()
        .map(|(k, u)| (k.as_str(), u.clone()))
        .collect();
    assert_eq!(sent, vec![("access_request_decided", analyst_id)]);
    assert_eq!((done.failed, done.given_up), (0, 0));
    let mails = mail_to(&app, ANALYST);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("Your request for access to a submission was decided"));
    for secret in [tn.as_str(), "RefusedMarker5120", "pump stations"] {
        assert!(!mails[0].contains(secret), "{secret} in the mail");
    }
    assert_eq!(app.pending_mail(), 0);
    assert_eq!(
        app.outbox().len(),
        officer_mail_before + 1,
        "nothing else was sent"
    );

    // Once only.
    app.advance(3600);
    assert!(app.notification_round().sent.is_empty());
    assert_eq!(mail_to(&app, ANALYST).len(), 1);
}

#[test]
fn a_round_that_finds_the_mail_route_down_stops_and_leaves_the_queued_mail_untried() {
    use pcii_portal::db::schema::pending_mail;
    use pcii_portal::workflow::pending_mail::AT_ONCE_GRACE;
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, first) = validated(&app, &mut sub, &mut officer);
    let (_, second) = validated(&app, &mut sub, &mut officer);
    let (analyst_id, mut a) = analyst(&app);
    let officer_id = app.with_conn(|c| {
        users::table
            .filter(users::email.eq("olga@pcii.example.gov"))
            .select(users::id)
            .first::<String>(c)
            .unwrap()
    });
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &first), ("reason", "pump stations")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let rid = only_request(&app);
    // The officer's notice of the first request goes out; then the route goes down.
    app.notification_round();
    app.break_outbox();
    let page = officer.post(
        &format!("/officer/access-requests/{rid}/refuse"),
        &[("reason", "no duty shown")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.pending_mail(), 1, "the decision's mail is queued");
    // A second request waits: its notice to the officer is due from the state of things.
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &second), ("reason", "substations")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    app.advance(AT_ONCE_GRACE + 1);

    // The first send finds the route down: the round stops there; the queued mail is not tried, so it does not
    // count an attempt or move its next try back.
    let attempts = || {
        app.with_conn(|c| {
            pending_mail::table
                .select((pending_mail::attempts, pending_mail::next_attempt_at))
                .first::<(i64, i64)>(c)
                .unwrap()
        })
    };
    let before = attempts();
    let done = app.notification_round();
    assert!(done.sent.is_empty(), "{done:?}");
    assert_eq!((done.failed, done.given_up), (1, 0), "{done:?}");
    assert_eq!(attempts(), before, "the queued mail was not tried");

    // Back up: the next round sends both, once.
    app.mend_outbox();
    let done = app.notification_round();
    let mut sent: Vec<(&str, String)> = done
        .sent
        .iter()
        .map(|(k, u)| (k.as_str(), u.clone()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            ("access_request", officer_id),
            ("access_request_decided", analyst_id)
        ]
    );
    assert_eq!((done.failed, done.given_up), (0, 0));
    assert_eq!(app.pending_mail(), 0);
}

/// An officer disabled while its request was under way (its account read by the guard before): the refusal
/// checks the account again inside its transaction and records nothing.
#[test]
fn an_officer_disabled_mid_request_refuses_nothing() {
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (_, tn) = validated(&app, &mut sub, &mut officer);
    let (_, mut a) = analyst(&app);
    let page = a.post(
        "/analyst/access-requests",
        &[("tracking", &tn), ("reason", "Pipeline threat brief")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let rid = only_request(&app);
    let officer_id = app.user_id("olga@pcii.example.gov");
    let as_the_guard_read_it =
        app.with_conn(|c| pcii_portal::models::account::find(c, &officer_id).unwrap());
    app.with_conn(|c| {
        diesel::update(users::table.find(&officer_id))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap()
    });
    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(pcii_portal::workflow::access_requests::refuse(
        app.state(),
        &as_the_guard_read_it,
        &pcii_portal::audit::log::Actor::cli(),
        &rid,
        "Not needed for the brief",
    ));
    assert!(
        matches!(refused, Err(pcii_portal::error::AppError::Refused(_))),
        "{refused:?}"
    );
    let state: String = app.with_conn(|c| {
        access_requests::table
            .find(&rid)
            .select(access_requests::state)
            .first(c)
            .unwrap()
    });
    assert_eq!(state, "pending");
    assert_eq!(app.audit_count("access_request.refused"), 0);
}

/// The analyst's home lists its 50 newest requests, and says how many it made in all when there are more.
#[test]
fn an_analyst_with_more_requests_than_listed_is_told_how_many_there_are() {
    use pcii_portal::models::access_request::{self as model, NewAccessRequest, RequestState};
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (id, _) = validated(&app, &mut sub, &mut officer);
    let (analyst_id, mut a) = analyst(&app);
    let now = app.now();
    let seed = |from: i64, to: i64| {
        app.with_conn(|c| {
            for i in from..to {
                model::insert(
                    c,
                    &NewAccessRequest {
                        id: &format!("seeded-{i:03}"),
                        submission_id: &id,
                        user_id: &analyst_id,
                        reason: "sealed elsewhere",
                        state: RequestState::Refused,
                        created_at: now - 1000 + i,
                    },
                )
                .unwrap();
            }
        })
    };
    seed(0, 50);
    let page = a.get("/analyst");
    assert_eq!(page.body.matches("data-request-state=").count(), 50);
    assert!(!page.body.contains("data-capped"), "all 50 are listed");
    seed(50, 51);
    let page = a.get("/analyst");
    assert_eq!(page.body.matches("data-request-state=").count(), 50);
    assert!(
        page.body
            .contains("51 in all: the 50 newest are listed here."),
        "{}",
        page.body
    );
}

/// The analyst's list of grants shows each title from its sealed title column: no content document is read for a
/// list (with the document gone from the store, the title still shows).
#[test]
fn the_grants_list_reads_titles_without_opening_the_content_documents() {
    use pcii_portal::db::schema::blobs;
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (id, _) = validated(&app, &mut sub, &mut officer);
    let (analyst_id, mut a) = analyst(&app);
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", &analyst_id),
            ("reason", "Sector study"),
            ("expires", &date_in(&app, 30)),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let document: String = app.with_conn(|c| {
        submissions::table
            .inner_join(blobs::table.on(blobs::id.nullable().eq(submissions::content_blob_id)))
            .filter(submissions::id.eq(&id))
            .select(blobs::storage_name)
            .first(c)
            .unwrap()
    });
    app.state().blobs.delete(&document).unwrap();
    let page = a.get("/analyst");
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(page.body.contains(TITLE), "{}", page.body);
}

/// Whether a reader may read is decided again in the transaction that records the read: a grant revoked after the
/// request was admitted (while the content was being read and decrypted) wins, the content is not handed out, and
/// the refusal is recorded.
#[test]
fn a_grant_revoked_while_a_read_is_under_way_stops_it_before_the_content_goes_out() {
    use pcii_portal::db::schema::grants;
    use pcii_portal::workflow::access::{self, Reading};
    let app = TestApp::new();
    let (mut sub, mut officer) = people(&app);
    let (id, _) = validated(&app, &mut sub, &mut officer);
    let (analyst_id, _a) = analyst(&app);
    let page = officer.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", &analyst_id),
            ("reason", "Sector study"),
            ("expires", &date_in(&app, 30)),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let state = app.state();
    let ana = app.with_conn(|c| pcii_portal::models::account::find(c, &analyst_id).unwrap());
    let actor = common::actor_of(&ana);
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let admitted = rt
        .block_on(access::admit(state, &ana, &actor, &id))
        .expect("admitted under the grant");
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(grants::table.filter(grants::submission_id.eq(&id)))
            .set(grants::revoked_at.eq(Some(now)))
            .execute(c)
            .unwrap()
    });
    let viewed = app.audit_count("content.viewed");
    let refused = app.audit_count("access.refused");
    let read = rt.block_on(access::read_content(
        state,
        &admitted,
        &actor,
        Reading::Page(None),
    ));
    assert!(
        read.is_err(),
        "the content was handed out after the revocation"
    );
    assert_eq!(app.audit_count("content.viewed"), viewed);
    assert_eq!(app.audit_count("access.refused"), refused + 1);
}
