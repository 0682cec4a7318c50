//! Help pages (issue 19): contact, what PCII protection means, privacy, accessibility — reachable by anyone, linked
//! from every page, the contact page showing the Program Office's details from the configuration.

use crate::common::TestApp;
use pcii_portal::domain::Role;
use rocket::http::Status;

const PAGES: [(&str, &str); 5] = [
    ("/help", "<h1>Help</h1>"),
    ("/help/contact", "<h1>Contact the PCII Program Office</h1>"),
    ("/help/pcii", "<h1>What PCII protection means</h1>"),
    ("/help/privacy", "<h1>Privacy notice</h1>"),
    ("/help/accessibility", "<h1>Accessibility statement</h1>"),
];

#[test]
fn every_help_page_is_open_to_anyone_and_to_every_role() {
    let app = TestApp::new();
    let mut anonymous = app.browser();
    for (path, heading) in PAGES {
        let page = anonymous.get(path);
        assert_eq!(page.status, Status::Ok, "{path}");
        assert!(page.body.contains(heading), "{path}");
    }
    for (role, mut b) in app.one_browser_per_role() {
        for (path, heading) in PAGES {
            let page = b.get(path);
            assert_eq!(page.status, Status::Ok, "{role:?} {path}");
            assert!(page.body.contains(heading), "{role:?} {path}");
        }
    }
}

#[test]
fn every_page_links_to_the_help_pages_and_an_error_page_to_the_contact_page() {
    let app = TestApp::new();
    let mut anonymous = app.browser();
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    for page in [
        anonymous.get("/"),
        anonymous.get("/login"),
        officer.get("/officer"),
    ] {
        for link in [
            "/help/contact",
            "/help/pcii",
            "/help/privacy",
            "/help/accessibility",
        ] {
            assert!(
                page.body
                    .contains(&format!("href=\"{}\"", link.replace('/', "&#x2F;")))
                    || page.body.contains(&format!("href=\"{link}\"")),
                "no link to {link}"
            );
        }
    }
    let missing = officer.get("/officer/submissions/no-such-id");
    assert_eq!(missing.status, Status::NotFound);
    assert!(missing
        .body
        .contains(">contact the PCII Program Office</a>, give request id"));
}

#[test]
fn the_contact_page_shows_the_configured_office_and_says_when_nothing_is_configured() {
    let app = TestApp::new();
    let page = app.browser().get("/help/contact");
    assert!(page.body.contains("data-office-missing"));
    assert!(!page.body.contains("data-office>"));

    let app = TestApp::with(|f| {
        f.merge(("office_email", "pcii-info@example.gov"))
            .merge(("office_phone", "+1 202 555 0100"))
            .merge(("office_hours", "Monday to Friday, 8:00–17:00 Eastern"))
    });
    let page = app.browser().get("/help/contact");
    assert!(page.body.contains("data-office>"));
    assert!(page.body.contains("pcii-info@example.gov"));
    assert!(page.body.contains("+1 202 555 0100"));
    assert!(page.body.contains("Monday to Friday"));
    assert!(!page.body.contains("data-office-missing"));
    // Never protected information by email, said where people are about to write.
    assert!(page
        .body
        .contains("Never put protected information in an email."));
}
