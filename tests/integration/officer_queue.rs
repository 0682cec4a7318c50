//! The PCII officer's queue: open submissions oldest first with their two 30-day clocks, filters, sorts, pages,
//! and refusals; through the page and through the model.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{self, Browser, TestApp};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::submissions;
use pcii_portal::domain::Role;
use pcii_portal::models::account;
use pcii_portal::models::queue::{self, QueueFilter, QueueSort, QueueStatus, PER_PAGE};
use pcii_portal::time::DAY;

const HOUR: i64 = 3600;
const NUCLEAR: &str = "Nuclear Reactors, Materials, and Waste";

struct Org {
    id: String,
    submitter: String,
}

fn organisation(app: &TestApp, email: &str, name: &str) -> Org {
    let submitter = app.create_user(Role::Submitter, email, Some(name));
    let id = app.with_conn(|c| {
        account::find(c, &submitter)
            .unwrap()
            .organisation_id
            .unwrap()
    });
    Org { id, submitter }
}

/// A submission row as the workflow would leave it; times are seconds relative to now.
struct Seed<'a> {
    tracking: &'a str,
    org: &'a Org,
    status: &'a str,
    sector: &'a str,
    received_ago: Option<i64>,
    notice_ago: Option<i64>,
    cure_in: Option<i64>,
}

fn insert(app: &TestApp, now: i64, s: &Seed<'_>) -> String {
    let id = pcii_portal::db::new_id();
    app.with_conn(|c| {
        diesel::insert_into(submissions::table)
            .values((
                submissions::id.eq(&id),
                submissions::tracking_number.eq(s.received_ago.map(|_| s.tracking)),
                submissions::organisation_id.eq(&s.org.id),
                submissions::submitter_id.eq(&s.org.submitter),
                submissions::status.eq(s.status),
                submissions::sector.eq(s.sector),
                submissions::created_at.eq(now - 200 * DAY),
                submissions::updated_at.eq(now - HOUR),
                submissions::received_at.eq(s.received_ago.map(|a| now - a)),
                submissions::defect_notice_at.eq(s.notice_ago.map(|a| now - a)),
                submissions::cure_due_at.eq(s.cure_in.map(|d| now + d)),
            ))
            .execute(c)
            .unwrap();
    });
    id
}

/// Four open submissions (two received, two defective), one of each overdue, and two that are not open.
///
/// | tracking | org    | status    | sector  | received        | clock                          |
/// |----------|--------|-----------|---------|-----------------|--------------------------------|
/// | PCII-D2  | Acme   | defective | Dams    | 70 days ago     | cure due 2 days 1 hour ago     |
/// | PCII-D1  | Acme   | defective | Energy  | 50 days ago     | cure due in 4 days 23 hours    |
/// | PCII-R1  | Acme   | received  | Energy  | 40 days 1 h ago | notice due 10 days 1 hour ago  |
/// | PCII-R2  | Globex | received  | Nuclear | 10 days 1 h ago | notice due in 19 days 23 hours |
struct World {
    acme: Org,
    globex: Org,
}

fn world(app: &TestApp, now: i64) -> World {
    let acme = organisation(app, "sub@acme-power.example", "Acme Power");
    let globex = organisation(app, "sub@globex.example", "Globex Nuclear");
    let seeds = [
        Seed {
            tracking: "PCII-D2",
            org: &acme,
            status: "defective",
            sector: "Dams",
            received_ago: Some(70 * DAY),
            notice_ago: Some(32 * DAY + HOUR),
            cure_in: Some(-(2 * DAY + HOUR)),
        },
        Seed {
            tracking: "PCII-D1",
            org: &acme,
            status: "defective",
            sector: "Energy",
            received_ago: Some(50 * DAY),
            notice_ago: Some(25 * DAY + HOUR),
            cure_in: Some(5 * DAY - HOUR),
        },
        Seed {
            tracking: "PCII-R1",
            org: &acme,
            status: "received",
            sector: "Energy",
            received_ago: Some(40 * DAY + HOUR),
            notice_ago: None,
            cure_in: None,
        },
        Seed {
            tracking: "PCII-R2",
            org: &globex,
            status: "received",
            sector: NUCLEAR,
            received_ago: Some(10 * DAY + HOUR),
            notice_ago: None,
            cure_in: None,
        },
        Seed {
            tracking: "PCII-V1",
            org: &acme,
            status: "validated",
            sector: "Energy",
            received_ago: Some(100 * DAY),
            notice_ago: None,
            cure_in: None,
        },
        Seed {
            tracking: "PCII-X1",
            org: &globex,
            status: "draft",
            sector: "Energy",
            received_ago: None,
            notice_ago: None,
            cure_in: None,
        },
    ];
    for s in &seeds {
        insert(app, now, s);
    }
    World { acme, globex }
}

/// The tracking numbers of a page's rows, in order.
fn listed(body: &str) -> Vec<String> {
    body.match_indices(">PCII-")
        .map(|(i, _)| {
            let rest = &body[i + 1..];
            rest[..rest.find('<').unwrap()].to_string()
        })
        .collect()
}

fn officer(app: &TestApp) -> Browser<'_> {
    app.login_as(Role::Officer, "o@example.gov", None)
}

/// The `<tr>` holding a tracking number.
fn row_of<'b>(body: &'b str, tracking: &str) -> &'b str {
    let at = body
        .find(&format!(">{tracking}<"))
        .unwrap_or_else(|| panic!("{tracking} not listed"));
    let start = body[..at].rfind("<tr").unwrap();
    let end = at + body[at..].find("</tr>").unwrap();
    &body[start..end]
}

/// Undoes Tera's escaping of an attribute value.
fn unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The link marked `rel`, as a browser would follow it.
fn hrefs(body: &str, rel: &str) -> Option<String> {
    let marker = "<a href=\"";
    body.match_indices(marker).find_map(|(i, _)| {
        let rest = &body[i + marker.len()..];
        let end = rest.find('"')?;
        let tail = &rest[end..rest.find('>')?];
        tail.contains(&format!("rel=\"{rel}\""))
            .then(|| unescape(&rest[..end]))
    })
}

#[test]
fn queue_lists_open_submissions_oldest_first_with_both_clocks() {
    let app = TestApp::new();
    let now = app.now();
    world(&app, now);
    let mut officer = officer(&app);
    let page = officer.get("/officer");
    assert_eq!(page.status, Status::Ok);
    assert_eq!(
        listed(&page.body),
        ["PCII-D2", "PCII-D1", "PCII-R1", "PCII-R2"]
    );
    assert!(page.body.contains("4 submissions"), "{}", page.body);

    let r1 = row_of(&page.body, "PCII-R1");
    assert!(r1.contains("class=\"overdue\""), "{r1}");
    assert!(r1.contains("overdue by 10 days"), "{r1}");
    assert!(r1.contains(">Overdue<"), "{r1}");
    assert!(
        r1.contains("Acme Power")
            && r1.contains("Energy")
            && r1.contains("data-label=\"Status\">Received</td>")
    );
    assert!(r1.contains(">40<"), "days since receipt: {r1}");
    let r2 = row_of(&page.body, "PCII-R2");
    assert!(!r2.contains("class=\"overdue\""), "{r2}");
    assert!(r2.contains("19 days left"), "{r2}");
    assert!(r2.contains(">10<"), "days since receipt: {r2}");
    assert!(r2.contains(&pcii_portal::time::datetime(
        now - 10 * DAY - HOUR + 30 * DAY
    )));
    let d1 = row_of(&page.body, "PCII-D1");
    assert!(d1.contains("4 days left"), "{d1}");
    assert!(
        d1.contains("Sent "),
        "the notice date of a defective one: {d1}"
    );
    assert!(!d1.contains("class=\"overdue\""), "{d1}");
    let d2 = row_of(&page.body, "PCII-D2");
    assert!(d2.contains("overdue by 2 days"), "{d2}");
    assert!(d2.contains(">Overdue<"), "{d2}");

    // Each tracking number opens the officer's view of that submission.
    let id = app.with_conn(|c| {
        submissions::table
            .filter(submissions::tracking_number.eq("PCII-R2"))
            .select(submissions::id)
            .first::<String>(c)
            .unwrap()
    });
    assert!(
        r2.contains(&format!("href=\"/officer/submissions/{id}\"")),
        "{r2}"
    );
}

#[test]
fn the_model_computes_both_clocks_and_the_overdue_flag() {
    let app = TestApp::new();
    let now = app.now();
    world(&app, now);
    let page = app
        .with_conn(|c| queue::queue(c, &QueueFilter::default(), now))
        .unwrap();
    assert_eq!(page.total, 4);
    let by = |t: &str| {
        page.rows
            .iter()
            .find(|r| r.tracking_number.as_deref() == Some(t))
            .unwrap()
            .clone()
    };
    let r1 = by("PCII-R1");
    assert_eq!(r1.days_since_receipt, Some(40));
    assert_eq!(r1.notice_due_at, Some(now - 10 * DAY - HOUR));
    assert_eq!(r1.notice_days_left, Some(-10));
    assert_eq!((r1.cure_due_at, r1.cure_days_left), (None, None));
    assert!(r1.overdue);
    let r2 = by("PCII-R2");
    assert_eq!(r2.days_since_receipt, Some(10));
    assert_eq!(r2.notice_days_left, Some(19));
    assert!(!r2.overdue);
    let d1 = by("PCII-D1");
    assert_eq!((d1.notice_due_at, d1.notice_days_left), (None, None));
    assert_eq!(d1.defect_notice_at, Some(now - 25 * DAY - HOUR));
    assert_eq!(d1.cure_due_at, Some(now + 5 * DAY - HOUR));
    assert_eq!(d1.cure_days_left, Some(4));
    assert!(!d1.overdue);
    let d2 = by("PCII-D2");
    assert_eq!(d2.cure_days_left, Some(-2));
    assert!(d2.overdue);
    assert_eq!(d2.organisation, "Acme Power");
}

/// A cure is overdue from its deadline's very second, when "not validated" opens (`lifecycle::cure_period_runs`):
/// the overdue filter (SQL) and the row's flag agree with the decisions at that second.
#[test]
fn a_cure_is_overdue_from_its_deadlines_second() {
    let app = TestApp::new();
    let now = app.now();
    let acme = organisation(&app, "sub@acme-power.example", "Acme Power");
    let seed = Seed {
        tracking: "PCII-D0",
        org: &acme,
        status: "defective",
        sector: "Dams",
        received_ago: Some(40 * DAY),
        notice_ago: Some(30 * DAY),
        cure_in: Some(0),
    };
    insert(&app, now, &seed);
    let overdue = QueueFilter {
        status: Some(QueueStatus::Overdue),
        ..QueueFilter::default()
    };
    for (at, expected) in [(now - 1, false), (now, true)] {
        let listed = app.with_conn(|c| queue::queue(c, &overdue, at)).unwrap();
        assert_eq!(listed.total, i64::from(expected), "filter at {}", at - now);
        let all = app
            .with_conn(|c| queue::queue(c, &QueueFilter::default(), at))
            .unwrap();
        assert_eq!(all.rows[0].overdue, expected, "flag at {}", at - now);
    }
}

/// A cured submission had its defect notice: the Office's 30 days from receipt no longer run for it, so it is
/// neither flagged nor filtered as overdue, and its row says when the notice was sent.
#[test]
fn a_cured_submission_is_not_overdue_for_the_notice_it_had() {
    let app = TestApp::new();
    let now = app.now();
    let acme = organisation(&app, "sub@acme-power.example", "Acme Power");
    let id = insert(
        &app,
        now,
        &Seed {
            tracking: "PCII-C1",
            org: &acme,
            status: "received",
            sector: "Dams",
            received_ago: Some(60 * DAY),
            notice_ago: Some(40 * DAY),
            cure_in: Some(-10 * DAY),
        },
    );
    app.with_conn(|c| {
        diesel::update(submissions::table.find(&id))
            .set(submissions::cured_at.eq(now - 12 * DAY))
            .execute(c)
            .unwrap()
    });
    let all = app
        .with_conn(|c| queue::queue(c, &QueueFilter::default(), now))
        .unwrap();
    assert_eq!(all.total, 1);
    let row = &all.rows[0];
    assert!(row.cured);
    assert!(!row.overdue);
    assert_eq!((row.notice_due_at, row.notice_days_left), (None, None));
    assert_eq!(row.defect_notice_at, Some(now - 40 * DAY));
    let overdue = QueueFilter {
        status: Some(QueueStatus::Overdue),
        ..QueueFilter::default()
    };
    let listed = app.with_conn(|c| queue::queue(c, &overdue, now)).unwrap();
    assert_eq!(listed.total, 0);
    let page = officer(&app).get("/officer");
    assert_eq!(page.status, Status::Ok);
    let row = row_of(&page.body, "PCII-C1");
    assert!(
        !row.contains("class=\"overdue\"") && !row.contains("overdue by"),
        "{row}"
    );
    assert!(row.contains("Sent "), "{row}");
}

#[test]
fn sorts_by_receipt_and_by_each_clock() {
    let app = TestApp::new();
    let now = app.now();
    world(&app, now);
    let mut officer = officer(&app);
    for (sort, expected) in [
        ("oldest", ["PCII-D2", "PCII-D1", "PCII-R1", "PCII-R2"]),
        ("newest", ["PCII-R2", "PCII-R1", "PCII-D1", "PCII-D2"]),
        // Received ones by notice deadline first, then the defective ones oldest first.
        ("notice", ["PCII-R1", "PCII-R2", "PCII-D2", "PCII-D1"]),
        // Defective ones by cure deadline first, then the received ones oldest first.
        ("cure", ["PCII-D2", "PCII-D1", "PCII-R1", "PCII-R2"]),
    ] {
        let page = officer.get(&format!("/officer?sort={sort}"));
        assert_eq!(page.status, Status::Ok, "{sort}");
        assert_eq!(listed(&page.body), expected, "{sort}");
    }
    // The headers are the sort links, and the one in use says so.
    let page = officer.get("/officer");
    let body = unescape(&page.body);
    assert!(body.contains("href=\"/officer?sort=newest\""), "{body}");
    assert!(body.contains("href=\"/officer?sort=notice\""));
    assert!(body.contains("href=\"/officer?sort=cure\""));
    assert!(body.contains("aria-sort=\"ascending\""));
    let page = officer.get("/officer?sort=newest");
    let body = unescape(&page.body);
    assert!(body.contains("href=\"/officer\""));
    assert!(body.contains("aria-sort=\"descending\""));
}

#[test]
fn filters_by_status_sector_organisation_and_overdue() {
    let app = TestApp::new();
    let now = app.now();
    let w = world(&app, now);
    let mut officer = officer(&app);
    let encoded_nuclear = common::urlencode(NUCLEAR);
    for (query, expected) in [
        ("status=received".to_string(), vec!["PCII-R1", "PCII-R2"]),
        ("status=defective".to_string(), vec!["PCII-D2", "PCII-D1"]),
        ("status=overdue".to_string(), vec!["PCII-D2", "PCII-R1"]),
        (
            "status=overdue&sort=notice".to_string(),
            vec!["PCII-R1", "PCII-D2"],
        ),
        ("sector=Energy".to_string(), vec!["PCII-D1", "PCII-R1"]),
        (format!("sector={encoded_nuclear}"), vec!["PCII-R2"]),
        ("sector=Dams&status=received".to_string(), vec![]),
        (format!("organisation={}", w.globex.id), vec!["PCII-R2"]),
        (
            format!("organisation={}&status=overdue&sort=newest", w.acme.id),
            vec!["PCII-R1", "PCII-D2"],
        ),
        // What an empty form sends: no filter.
        (
            "sector=&status=&organisation=&sort=".to_string(),
            vec!["PCII-D2", "PCII-D1", "PCII-R1", "PCII-R2"],
        ),
    ] {
        let page = officer.get(&format!("/officer?{query}"));
        assert_eq!(page.status, Status::Ok, "{query}");
        assert_eq!(listed(&page.body), expected, "{query}");
    }
    // The form keeps what was chosen.
    let page = officer.get(&format!("/officer?sector={encoded_nuclear}&status=overdue"));
    assert!(
        page.body
            .contains(&format!("<option value=\"{NUCLEAR}\" selected>")),
        "{}",
        page.body
    );
    assert!(page.body.contains("<option value=\"overdue\" selected>"));
    assert!(page.body.contains("No submission matches."));
    // The organisation is typed, not picked from a list of every one.
    assert!(page
        .body
        .contains("id=\"f-organisation\" name=\"organisation\" maxlength=\"200\" value=\"\""));
}

#[test]
fn pages_keep_filters_and_sort_and_stop_at_the_last() {
    let app = TestApp::new();
    let now = app.now();
    let w = world(&app, now);
    // 120 more received Nuclear submissions, one hour apart, newest PCII-P000.
    for i in 0..120 {
        let tracking = format!("PCII-P{i:03}");
        insert(
            &app,
            now,
            &Seed {
                tracking: &tracking,
                org: &w.globex,
                status: "received",
                sector: NUCLEAR,
                received_ago: Some(i * HOUR + 60),
                notice_ago: None,
                cure_in: None,
            },
        );
    }
    let mut officer = officer(&app);
    let first = officer.get(&format!(
        "/officer?sector={}&sort=newest",
        common::urlencode(NUCLEAR)
    ));
    assert_eq!(first.status, Status::Ok);
    let rows = listed(&first.body);
    assert_eq!(rows.len() as i64, PER_PAGE);
    assert_eq!(rows[0], "PCII-P000");
    assert_eq!(rows[49], "PCII-P049");
    assert!(first.body.contains("Page 1 of 3"), "{}", first.body);
    assert!(hrefs(&first.body, "prev").is_none());

    let next = hrefs(&first.body, "next").expect("a next link");
    assert!(
        next.contains("sort=newest") && next.contains("page=1"),
        "{next}"
    );
    let second = officer.get(&next);
    assert_eq!(second.status, Status::Ok, "{next}");
    let rows = listed(&second.body);
    assert_eq!(
        rows.first().map(String::as_str),
        Some("PCII-P050"),
        "{next}"
    );
    assert!(second.body.contains("Page 2 of 3"));

    let third = officer.get(&hrefs(&second.body, "next").unwrap());
    let rows = listed(&third.body);
    // 120 + PCII-R2, the oldest Nuclear one, last.
    assert_eq!(rows.len(), 21);
    assert_eq!(rows.last().map(String::as_str), Some("PCII-R2"));
    assert!(hrefs(&third.body, "next").is_none());
    let back = officer.get(&hrefs(&third.body, "prev").unwrap());
    assert_eq!(listed(&back.body), listed(&second.body));

    // A page past the end shows the last one.
    let past = officer.get(&format!(
        "/officer?sector={}&sort=newest&page=99999",
        common::urlencode(NUCLEAR)
    ));
    assert_eq!(past.status, Status::Ok);
    assert_eq!(listed(&past.body), listed(&third.body));
}

#[test]
fn unknown_filter_values_are_refused_with_422_and_the_reason() {
    let app = TestApp::new();
    let now = app.now();
    world(&app, now);
    let mut officer = officer(&app);
    for (query, message) in [
        ("sector=Bogus", "Choose one of the listed sectors."),
        ("sector=energy", "Choose one of the listed sectors."),
        (
            "sector=%27%20OR%201%3D1%20--",
            "Choose one of the listed sectors.",
        ),
        ("status=validated", "Choose received, defective or overdue."),
        (
            "organisation=0123456789abcdef",
            "No organisation name contains this text.",
        ),
        ("sort=sideways", "Choose one of the listed orders."),
        (
            "page=-1",
            "The page must be a whole number from 0 to 100000.",
        ),
        (
            "page=abc",
            "The page must be a whole number from 0 to 100000.",
        ),
        (
            "page=100001",
            "The page must be a whole number from 0 to 100000.",
        ),
        (
            "page=99999999999999999999999",
            "The page must be a whole number from 0 to 100000.",
        ),
    ] {
        let page = officer.get(&format!("/officer?{query}"));
        assert_eq!(page.status, Status::UnprocessableEntity, "{query}");
        assert!(page.body.contains(message), "{query}: {}", page.body);
        assert!(listed(&page.body).is_empty(), "{query}");
        // The form is still there to correct.
        assert!(page.body.contains("id=\"f-sector\""), "{query}");
        if !query.starts_with("page") {
            assert!(page.body.contains("aria-invalid=\"true\""), "{query}");
        }
    }
}

/// Organisations with no submissions, named "Bulk Org 001" to "Bulk Org {n}" (as a flood of registrations
/// would leave them).
fn bulk_organisations(app: &TestApp, n: usize) {
    let now = app.now();
    app.with_conn(|c| {
        for i in 1..=n {
            account::create_organisation(c, &format!("Bulk Org {i:03}"), now).unwrap();
        }
    });
}

#[test]
fn the_queue_lists_no_organisations_and_filters_by_any_part_of_a_name() {
    let app = TestApp::new();
    let now = app.now();
    let w = world(&app, now);
    bulk_organisations(&app, 300);
    let mut officer = officer(&app);
    let page = officer.get("/officer");
    assert_eq!(page.status, Status::Ok);
    assert_eq!(
        listed(&page.body),
        vec!["PCII-D2", "PCII-D1", "PCII-R1", "PCII-R2"]
    );
    // The organisations are not offered one by one: the page stays the same size however many there are.
    assert!(!page.body.contains("Bulk Org 300"), "{}", page.body);
    assert!(!page.body.contains("Bulk Org 001"));
    assert!(!page.body.contains("Globex Nuclear</option>"));
    assert!(page
        .body
        .contains("id=\"f-organisation\" name=\"organisation\""));
    let all = vec!["PCII-D2", "PCII-D1", "PCII-R1", "PCII-R2"];
    for (query, expected) in [
        ("organisation=globex".to_string(), vec!["PCII-R2"]),
        (
            "organisation=ACME%20pow".to_string(),
            vec!["PCII-D2", "PCII-D1", "PCII-R1"],
        ),
        ("organisation=Bulk%20Org%20300".to_string(), vec![]),
        (
            "organisation=acme&status=overdue&sort=newest".to_string(),
            vec!["PCII-R1", "PCII-D2"],
        ),
        // Links with an organisation's id still work.
        (format!("organisation={}", w.globex.id), vec!["PCII-R2"]),
        // A name every organisation matches filters nothing.
        ("organisation=o".to_string(), all.clone()),
    ] {
        let page = officer.get(&format!("/officer?{query}"));
        assert_eq!(page.status, Status::Ok, "{query}: {}", page.body);
        assert_eq!(listed(&page.body), expected, "{query}");
    }
    // The form keeps what was typed.
    let page = officer.get("/officer?organisation=Globex%20Nuc");
    assert!(page.body.contains("value=\"Globex Nuc\""), "{}", page.body);
    // Too broad a name is refused with the reason rather than matched against every organisation; LIKE's
    // wildcards are letters like any other.
    for (query, message) in [
        ("organisation=bulk", "type more of the name"),
        (
            "organisation=%25",
            "No organisation name contains this text.",
        ),
        ("organisation=_", "No organisation name contains this text."),
    ] {
        let page = officer.get(&format!("/officer?{query}"));
        assert_eq!(page.status, Status::UnprocessableEntity, "{query}");
        assert!(page.body.contains(message), "{query}: {}", page.body);
        assert!(listed(&page.body).is_empty(), "{query}");
        assert!(!page.body.contains("Bulk Org 300"), "{query}");
    }
}

#[test]
fn the_search_matches_organisation_names_in_the_database_a_bounded_number_at_a_time() {
    let app = TestApp::new();
    let now = app.now();
    world(&app, now);
    bulk_organisations(&app, 300);
    let mut officer = officer(&app);
    for (query, expected) in [
        ("organisation=globex%20nuc", vec!["PCII-R2"]),
        (
            "organisation=Acme",
            vec!["PCII-R1", "PCII-D1", "PCII-D2", "PCII-V1"],
        ),
        ("organisation=Bulk%20Org%20300", vec![]),
        // A name every organisation matches filters nothing.
        (
            "organisation=o",
            vec!["PCII-R2", "PCII-R1", "PCII-D1", "PCII-D2", "PCII-V1"],
        ),
        ("organisation=%25", vec![]),
    ] {
        let page = officer.get(&format!("/officer/find?{query}"));
        assert_eq!(page.status, Status::Ok, "{query}: {}", page.body);
        assert_eq!(listed(&page.body), expected, "{query}");
    }
    // More organisations match than a search takes: refused with the reason, the form kept.
    let page = officer.get("/officer/find?organisation=bulk%20org");
    assert_eq!(page.status, Status::UnprocessableEntity, "{}", page.body);
    assert!(page.body.contains("type more of the name"), "{}", page.body);
    assert!(page.body.contains("value=\"bulk org\""));
    assert!(listed(&page.body).is_empty());
}

#[test]
fn only_officers_see_the_queue() {
    let app = TestApp::new();
    let now = app.now();
    world(&app, now);
    let mut anonymous = app.browser();
    for uri in ["/officer", "/officer?status=overdue&sort=cure"] {
        assert_eq!(anonymous.get(uri).status, Status::Unauthorized, "{uri}");
    }
    for (role, mut browser) in app.one_browser_per_role() {
        for uri in [
            "/officer",
            "/officer?status=overdue&sort=cure",
            "/officer?sector=Bogus",
        ] {
            let page = browser.get(uri);
            let expected = if role == Role::Officer {
                if uri.contains("Bogus") {
                    Status::UnprocessableEntity
                } else {
                    Status::Ok
                }
            } else {
                Status::Forbidden
            };
            assert_eq!(page.status, expected, "{role:?} {uri}");
            if role != Role::Officer {
                assert!(!page.body.contains("PCII-R1"), "{role:?} {uri}");
            }
        }
    }
}

/// Counts the statements a connection runs.
struct Counter(Arc<AtomicUsize>);

impl Instrumentation for Counter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_page_is_one_count_and_one_select_whatever_the_filters() {
    let app = TestApp::new();
    let now = app.now();
    let w = world(&app, now);
    let statements = Arc::new(AtomicUsize::new(0));
    app.with_conn(|c| {
        c.set_instrumentation(Counter(statements.clone()));
        for status in [
            None,
            Some(QueueStatus::Received),
            Some(QueueStatus::Defective),
            Some(QueueStatus::Overdue),
        ] {
            for sort in QueueSort::ALL {
                for (sector, organisation_ids) in [
                    (None, None),
                    (Some("Energy".to_string()), Some(vec![w.acme.id.clone()])),
                ] {
                    let filter = QueueFilter {
                        sector,
                        status,
                        organisation_ids,
                        assignee: None,
                        sort,
                        page: 0,
                    };
                    let before = statements.load(Ordering::SeqCst);
                    let page = queue::queue(c, &filter, now).unwrap();
                    let ran = statements.load(Ordering::SeqCst) - before;
                    let expected = if page.total == 0 { 1 } else { 2 };
                    assert_eq!(ran, expected, "{filter:?}");
                    assert!(page
                        .rows
                        .iter()
                        .all(|r| r.organisation == "Acme Power"
                            || r.organisation == "Globex Nuclear"));
                }
            }
        }
        c.set_instrumentation(Counter(Arc::new(AtomicUsize::new(0))));
    });
}
