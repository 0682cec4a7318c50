//! Issue 19, uploads that talk and drafts that survive: the keepalive a page's script sends; the way back to the
//! page a person was on after signing in (`next`, never to another site); a file over a limit answered with the
//! form again, the text kept and the file named; and an upload that outlives the idle timeout ending on its
//! receipt.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use diesel::prelude::*;
use rocket::http::{Header, Status};

use crate::common::{
    self, complete_fields, encode, extract_csrf, file_bytes, Browser, Part, TestApp, BOUNDARY,
    PASSWORD,
};
use pcii_portal::db::schema::{attachments, blobs, sessions, submissions};
use pcii_portal::domain::Role;

const SAM: &str = "sam@acme.example";

fn submitter(app: &TestApp) -> Browser<'_> {
    app.login_as(Role::Submitter, SAM, Some("Acme"))
}

fn last_seen_of(app: &TestApp, email: &str) -> Vec<i64> {
    let id = app.with_conn(|c| {
        pcii_portal::models::account::find_by_email(c, email)
            .unwrap()
            .unwrap()
            .id
    });
    app.with_conn(|c| {
        sessions::table
            .filter(sessions::user_id.eq(&id))
            .select(sessions::last_seen_at)
            .load(c)
            .unwrap()
    })
}

fn counts(app: &TestApp) -> (i64, i64, i64) {
    app.with_conn(|c| {
        (
            submissions::table.count().get_result(c).unwrap(),
            blobs::table.count().get_result(c).unwrap(),
            attachments::table.count().get_result(c).unwrap(),
        )
    })
}

fn json_header() -> Option<Header<'static>> {
    Some(Header::new("Accept", "application/json"))
}

// ---------------------------------------------------------------------------------------------
// Keepalive
// ---------------------------------------------------------------------------------------------

#[test]
fn keepalive_without_a_session_answers_401_json() {
    let app = TestApp::new();
    let mut b = app.browser();
    let token = b.csrf();
    let page = b.post_raw(
        "/session/keepalive",
        encode(&[("csrf", &token)]),
        json_header(),
    );
    assert_eq!(page.status, Status::Unauthorized, "{}", page.body);
    assert!(page.header("Content-Type").unwrap().contains("json"));
    assert!(
        page.body.contains("\"idle_seconds_left\":0"),
        "{}",
        page.body
    );
}

#[test]
fn keepalive_needs_the_session_s_form_token() {
    let app = TestApp::new();
    let mut b = submitter(&app);
    let before = last_seen_of(&app, SAM);
    app.advance(30);
    for body in [String::new(), encode(&[("csrf", "0123456789abcdef")])] {
        let page = b.post_raw("/session/keepalive", body, json_header());
        assert_eq!(page.status, Status::Forbidden, "{}", page.body);
        assert!(page.header("Content-Type").unwrap().contains("json"));
    }
    assert_eq!(
        last_seen_of(&app, SAM),
        before,
        "a refused keepalive touches nothing"
    );
    assert!(app.audit_count("csrf.refused") >= 2);
}

#[test]
fn keepalive_touches_the_session_now_and_answers_the_seconds_left() {
    let app = TestApp::new();
    let mut b = submitter(&app);
    let idle = app.state().settings.session_idle_minutes * 60;
    let token = b.csrf();
    // Within the minute in which a page does not record a use: only the keepalive does.
    app.advance(45);
    let now = app.now();
    let page = b.post_raw(
        "/session/keepalive",
        encode(&[("csrf", &token)]),
        json_header(),
    );
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert_eq!(page.body, format!("{{\"idle_seconds_left\":{idle}}}"));
    let seen = last_seen_of(&app, SAM);
    assert!(seen.iter().all(|t| *t >= now), "{seen:?} vs {now}");
    // Kept alive: past the idle timeout counted from the sign-in, but not from the keepalive.
    app.advance(idle - 20);
    assert_eq!(b.get("/account").status, Status::Ok);
}

#[test]
fn the_page_signing_out_at_the_idle_timeout_is_audited_as_an_expiry_not_a_sign_out() {
    let app = TestApp::new();
    let mut b = submitter(&app);
    let token = b.csrf();
    let page = b.post("/logout", &[("reason", "idle")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("auth.session_expired"), 1);
    assert_eq!(app.audit_count("auth.logout"), 0);
    assert!(last_seen_of(&app, SAM).is_empty(), "the session is gone");
    // "Sign out" itself is still a sign-out.
    let mut b = app.browser();
    assert_eq!(b.login(SAM, PASSWORD), Status::SeeOther);
    assert_ne!(b.csrf(), token);
    assert_eq!(b.post("/logout", &[]).status, Status::SeeOther);
    assert_eq!(app.audit_count("auth.logout"), 1);
    assert_eq!(app.audit_count("auth.session_expired"), 1);
}

#[test]
fn signed_in_pages_carry_the_seconds_left_and_the_session_script() {
    let app = TestApp::new();
    let mut b = submitter(&app);
    let idle = app.state().settings.session_idle_minutes * 60;
    let page = b.get("/submissions/new");
    let shown: i64 = page
        .body
        .split("data-idle-seconds=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("the seconds left on the body");
    // What the server gives from the moment the page was made (a second may have passed since the sign-in).
    assert!((idle - 2..=idle).contains(&shown), "{shown} of {idle}");
    assert!(page.body.contains("/static/session.js"));
    assert!(page
        .body
        .contains("data-upload data-draft data-max-file-bytes=\""));
    let anonymous = app.browser().get("/login");
    assert!(!anonymous.body.contains("data-idle-seconds"));
    assert!(!anonymous.body.contains("/static/session.js"));
    let script = app.browser().get("/static/session.js");
    assert_eq!(script.status, Status::Ok);
    assert!(script.body.contains("/session/keepalive"));
}

// ---------------------------------------------------------------------------------------------
// Back where one was after signing in
// ---------------------------------------------------------------------------------------------

fn sign_in_with_next(b: &mut Browser<'_>, email: &str, next: &str) -> common::Page {
    b.post(
        "/login",
        &[("email", email), ("password", PASSWORD), ("next", next)],
    )
}

#[test]
fn sign_in_returns_to_a_safe_local_next() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, SAM, Some("Acme"));
    // The 401 page of a page asked for links to the sign-in with that page as `next`.
    let refused = app.browser().get("/submissions/new?x=1");
    assert_eq!(refused.status, Status::Unauthorized);
    assert!(
        refused
            .body
            .contains("login?next=%2Fsubmissions%2Fnew%3Fx%3D1"),
        "{}",
        refused.body
    );
    let mut b = app.browser();
    let form = b.get("/login?next=%2Fsubmissions%2Fnew%3Fx%3D1");
    assert!(
        form.body
            .contains(r#"name="next" value="&#x2F;submissions&#x2F;new?x=1""#),
        "{}",
        form.body
    );
    let done = sign_in_with_next(&mut b, SAM, "/submissions/new?x=1");
    assert_eq!(done.status, Status::SeeOther);
    assert_eq!(done.header("Location"), Some("/submissions/new?x=1"));
    // Signed in already: the sign-in page offers the page, it does not send there (another site's link reaches it
    // through a 401 page's "Sign in" button); without a `next` it sends to the dashboard.
    let offered = b.get("/login?next=%2Fsubmissions");
    assert_eq!(offered.status, Status::Ok);
    assert!(offered.body.contains("You are signed in already"));
    assert!(
        offered.body.contains(r#"href="&#x2F;submissions""#),
        "{}",
        offered.body
    );
    assert_eq!(b.get("/login").header("Location"), Some("/dashboard"));
}

#[test]
fn sign_in_ignores_a_next_that_leaves_the_portal() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, SAM, Some("Acme"));
    let long = format!("/{}", "a".repeat(600));
    for next in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/ok//evil.example",
        "/\t/evil.example",
        "/\r\nSet-Cookie: x=1",
        "evil.example",
        "javascript:alert(1)",
        long.as_str(),
    ] {
        let mut b = app.browser();
        let form = b.get(&format!("/login?next={}", common::urlencode(next)));
        assert!(!form.body.contains(r#"name="next""#), "{next:?}");
        let done = sign_in_with_next(&mut b, SAM, next);
        assert_eq!(done.status, Status::SeeOther, "{next:?}");
        assert_eq!(done.header("Location"), Some("/dashboard"), "{next:?}");
    }
}

#[test]
fn next_is_carried_through_the_second_factor_step() {
    let app = TestApp::new();
    let email = "olive@example.gov";
    app.create_user(Role::Officer, email, None);
    let mut b = app.browser();
    let password_step = sign_in_with_next(&mut b, email, "/account?tab=1");
    assert_eq!(
        password_step.header("Location"),
        Some("/login/second-factor?next=%2Faccount%3Ftab%3D1")
    );
    let page = b.get("/login/second-factor?next=%2Faccount%3Ftab%3D1");
    assert!(
        page.body
            .contains(r#"name="next" value="&#x2F;account?tab=1""#),
        "{}",
        page.body
    );
    let code = common::totp_code(app.state(), email);
    let done = b.post(
        "/login/second-factor",
        &[("factor_code", &code), ("next", "/account?tab=1")],
    );
    assert_eq!(done.status, Status::SeeOther, "{}", done.body);
    assert_eq!(done.header("Location"), Some("/account?tab=1"));

    // And an unsafe one, given at the second step, is not followed.
    let mut other = app.browser();
    let step = sign_in_with_next(&mut other, email, "//evil.example");
    assert_eq!(step.header("Location"), Some("/login/second-factor"));
    let code = common::totp_code(app.state(), email);
    let done = other.post(
        "/login/second-factor",
        &[("factor_code", &code), ("next", "//evil.example")],
    );
    assert_eq!(done.header("Location"), Some("/dashboard"));
}

/// A `next` that answers with a file (an export, a download, a package, a CSV) is not opened on the way in: another
/// site's link to `/login?next=…/export` would open an export in the officer's name as they sign in. It is
/// offered on the continue page, as it is to a browser signed in before; a page is still followed.
#[test]
fn a_next_that_answers_with_a_file_is_offered_after_signing_in_not_opened() {
    let app = TestApp::new();
    let email = "olive@example.gov";
    app.create_user(Role::Officer, email, None);
    let id = "0123456789abcdef0123456789abcdef";
    for next in [
        format!("/officer/submissions/{id}/export"),
        format!("/officer/submissions/{id}/expor%74"),
        format!("/officer/submissions/{id}/files/{id}"),
        format!("/officer//submissions/{id}/package"),
        "/officer/disseminations.csv?tracking=x".to_string(),
        "/audit/export".to_string(),
    ] {
        let mut b = app.browser();
        sign_in_with_next(&mut b, email, &next);
        let code = common::totp_code(app.state(), email);
        let done = b.post(
            "/login/second-factor",
            &[("factor_code", &code), ("next", &next)],
        );
        assert_eq!(done.status, Status::SeeOther, "{next}: {}", done.body);
        let to = done.header("Location").unwrap().to_string();
        if next.contains("//") {
            // Not a safe `next` at all.
            assert_eq!(to, "/dashboard", "{next}");
            continue;
        }
        assert!(to.starts_with("/login?next=%2F"), "{next}: {to}");
        let offered = b.get(&to);
        assert_eq!(offered.status, Status::Ok, "{next}");
        assert!(offered.body.contains("You are signed in already"), "{next}");
    }
    // A page is followed, as before.
    let mut b = app.browser();
    let next = format!("/officer/submissions/{id}");
    sign_in_with_next(&mut b, email, &next);
    let code = common::totp_code(app.state(), email);
    let done = b.post(
        "/login/second-factor",
        &[("factor_code", &code), ("next", &next)],
    );
    assert_eq!(done.header("Location"), Some(next.as_str()));
}

// ---------------------------------------------------------------------------------------------
// A file over a limit
// ---------------------------------------------------------------------------------------------

fn small_portal() -> TestApp {
    TestApp::with(|f| {
        f.merge(("max_file_bytes", 1024 * 1024))
            .merge(("max_submission_bytes", 1536 * 1024))
            .merge(("max_files", 3))
    })
}

#[test]
fn a_new_form_with_a_file_over_the_limit_comes_back_413_with_the_text_and_the_file_named() {
    let app = small_portal();
    let mut b = submitter(&app);
    let before = (app.blob_files(), counts(&app));
    let small = file_bytes(1000, 1, "");
    let big = file_bytes(1024 * 1024 + 1, 2, "");
    let narrative = "The relay settings of substation 14, typed with care <b>";
    let mut parts = complete_fields(narrative, "submit");
    // Both from the form's picker (several files in one input).
    parts.push(Part::File("files", "small.bin", &small));
    parts.push(Part::File("files", "big.bin", &big));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(
        page.body
            .contains("The relay settings of substation 14, typed with care &lt;b&gt;"),
        "the narrative is kept: {}",
        page.body
    );
    let named = "\u{201c}big.bin\u{201d} is larger than the limit of 1 MiB per file. Nothing was saved; attach a smaller file.";
    assert!(
        page.body
            .contains(&format!(r##"<a href="#files_1">{named}</a>"##)),
        "summary: {}",
        page.body
    );
    assert!(
        page.body.contains(r#"id="files_1-error""#),
        "field error: {}",
        page.body
    );
    assert!(
        page.body.contains("Substation 14 protection scheme"),
        "the title too"
    );
    assert!(page.body.contains(r#"action="&#x2F;submissions""#));
    assert_eq!((app.blob_files(), counts(&app)), before, "nothing stored");
}

/// A multipart boundary is 1 to 70 characters (RFC 2046): a longer one, which every read of the body would be
/// scanned for, is refused before the body is read; 70 is read as usual.
#[test]
fn a_multipart_boundary_over_seventy_characters_is_refused() {
    let app = small_portal();
    let mut b = submitter(&app);
    let before = counts(&app);
    let parts = complete_fields("n", "draft");
    let page = b.post_multipart_with_boundary("/submissions", &"b".repeat(71), &parts);
    assert_eq!(page.status, Status::BadRequest, "{}", page.body);
    assert!(
        page.body.contains("not 1 to 70 characters"),
        "{}",
        page.body
    );
    assert_eq!(counts(&app), before);
    let page = b.post_multipart_with_boundary("/submissions", &"b".repeat(70), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
}

/// The refusal names the file as every page does: a right-to-left override in its name is shown as an escape (it
/// would reverse the rest of the sentence), and a long name is shortened.
#[test]
fn a_file_over_the_limit_is_named_with_its_hidden_characters_visible() {
    let app = small_portal();
    let mut b = submitter(&app);
    let big = file_bytes(1024 * 1024 + 1, 2, "");
    let mut parts = complete_fields("n", "submit");
    parts.push(Part::File("files", "invoice\u{202E}fdp.exe", &big));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(
        page.body
            .contains("\u{201c}invoice&lt;U+202E&gt;fdp.exe\u{201d} is larger than"),
        "{}",
        page.body
    );
    assert!(!page.body.contains('\u{202E}'));
    let long = format!("{}.pdf", "a".repeat(400));
    let mut parts = complete_fields("n", "submit");
    parts.push(Part::File("files", &long, &big));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::PayloadTooLarge);
    assert!(!page.body.contains(&"a".repeat(200)), "the whole name");
    assert!(
        page.body.contains("a\u{2026}.pdf\u{201d} is larger than"),
        "{}",
        page.body
    );
}

#[test]
fn a_draft_sent_with_too_many_bytes_comes_back_413_as_its_edit_form_and_keeps_what_was_stored() {
    let app = small_portal();
    let mut b = submitter(&app);
    let saved = b.post_multipart("/submissions", &complete_fields("first words", "draft"));
    assert_eq!(saved.status, Status::SeeOther, "{}", saved.body);
    let id = saved
        .header("Location")
        .unwrap()
        .trim_start_matches("/submissions/")
        .to_string();
    let before = (app.blob_files(), counts(&app));
    let half = file_bytes(800 * 1024, 3, "");
    let mut parts = complete_fields("second words, not yet saved", "draft");
    parts.push(Part::File("file_1", "a.bin", &half));
    parts.push(Part::File("file_2", "b.bin", &half));
    let page = b.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(page.body.contains("second words, not yet saved"));
    assert!(page.body.contains(
        "\u{201c}b.bin\u{201d} takes the files over the limit of 1.5 MiB per submission."
    ));
    assert!(page
        .body
        .contains(&format!(r#"action="&#x2F;submissions&#x2F;{id}""#)));
    assert_eq!((app.blob_files(), counts(&app)), before, "nothing stored");
    // The stored draft still has its first words.
    let edit = b.get(&format!("/submissions/{id}/edit"));
    assert!(edit.body.contains("first words"));
    assert!(!edit.body.contains("second words"));
}

/// A draft at its limits can swap a file: one ticked "Remove this file" gives its place and its bytes back to the
/// files sent with it (the form lists the boxes before its file inputs). Only a file of that draft gives anything
/// back, and only once, whatever is posted.
#[test]
fn a_file_ticked_for_removal_makes_room_for_the_files_sent_with_it() {
    let app = small_portal();
    let mut b = submitter(&app);
    let draft = |b: &mut Browser<'_>, sizes: &[usize]| {
        let files: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| file_bytes(*n, i as u8 + 1, ""))
            .collect();
        let names = ["a.bin", "b.bin", "c.bin"];
        let mut parts = complete_fields("n", "draft");
        for (f, name) in files.iter().zip(names) {
            parts.push(Part::File("files", name, f));
        }
        common::submission_id(&b.post_multipart("/submissions", &parts))
    };
    // At the count: three files of three.
    let full = draft(&mut b, &[400 * 1024; 3]);
    let ids = app.attachment_ids(&full);
    let edit = b.get(&format!("/submissions/{full}/edit"));
    assert!(
        edit.body.contains(&format!(
            r#"name="remove" value="{}" data-size="409600">"#,
            ids[0]
        )),
        "the script is told what a tick gives back: {}",
        edit.body
    );
    let new = file_bytes(400 * 1024, 9, "");
    fn swap<'a>(remove: &[&'a str], files: usize, new: &'a [u8]) -> Vec<Part<'a>> {
        let mut parts = vec![Part::Text("action", "draft")];
        for id in remove {
            parts.push(Part::Text("remove", id));
        }
        for _ in 0..files {
            parts.push(Part::File("files", "new.bin", new));
        }
        parts
    }
    // The same file ticked twice gives one place back: two new files are one too many.
    let before = (app.blob_files(), counts(&app));
    let page = b.post_multipart(
        &format!("/submissions/{full}"),
        &swap(&[&ids[0], &ids[0]], 2, &new),
    );
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    // Refused as the body arrived (the file named), not only by the commit's count.
    assert!(
        page.body
            .contains("is one file too many: a submission holds at most 3 files"),
        "{}",
        page.body
    );
    assert_eq!((app.blob_files(), counts(&app)), before, "nothing stored");
    // A file of another draft gives nothing back.
    let other = draft(&mut b, &[1024]);
    let theirs = app.attachment_ids(&other);
    let page = b.post_multipart(
        &format!("/submissions/{full}"),
        &swap(&[&theirs[0]], 1, &new),
    );
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert_eq!(app.attachment_ids(&full), ids);
    assert_eq!(app.attachment_ids(&other), theirs);
    // One ticked, one sent: the swap is saved.
    let page = b.post_multipart(&format!("/submissions/{full}"), &swap(&[&ids[0]], 1, &new));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let now = app.attachment_ids(&full);
    assert_eq!(now.len(), 3);
    assert!(!now.contains(&ids[0]) && now.contains(&ids[1]) && now.contains(&ids[2]));

    // At the bytes: 1400 KiB of 1.5 MiB, 136 KiB left; removing a 700 KiB file makes room for another.
    let heavy = draft(&mut b, &[700 * 1024; 2]);
    let ids = app.attachment_ids(&heavy);
    let big = file_bytes(700 * 1024, 7, "");
    let page = b.post_multipart(
        &format!("/submissions/{heavy}"),
        &[
            Part::Text("action", "draft"),
            Part::File("files", "big.bin", &big),
        ],
    );
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    let page = b.post_multipart(
        &format!("/submissions/{heavy}"),
        &[
            Part::Text("action", "draft"),
            Part::Text("remove", &ids[1]),
            Part::File("files", "big.bin", &big),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let now = app.attachment_ids(&heavy);
    assert_eq!(now.len(), 2);
    assert!(now.contains(&ids[0]) && !now.contains(&ids[1]));
}

#[test]
fn the_form_carries_the_limits_the_script_checks_before_sending() {
    let app = small_portal();
    let mut b = submitter(&app);
    let page = b.get("/submissions/new");
    assert!(page.body.contains(
        r#"data-upload data-draft data-max-file-bytes="1048576" data-max-total-bytes="1572864" data-max-files="3""#
    ), "{}", page.body);
    assert!(page
        .body
        .contains(r#"<script src="/static/upload.js" defer></script>"#));
    assert!(page
        .body
        .contains(r#"name="files" multiple data-file-input"#));
    // A draft with a file has less left.
    let file = file_bytes(1024, 4, "");
    let mut parts = complete_fields("n", "draft");
    parts.push(Part::File("file_1", "one.bin", &file));
    let saved = b.post_multipart("/submissions", &parts);
    let id = saved.header("Location").unwrap().to_string();
    let edit = b.get(&format!("{id}/edit"));
    assert!(
        edit.body.contains(
            r#"data-max-file-bytes="1048576" data-max-total-bytes="1571840" data-max-files="2""#
        ),
        "{}",
        edit.body
    );
}

// ---------------------------------------------------------------------------------------------
// An upload that outlives the idle timeout
// ---------------------------------------------------------------------------------------------

/// The portal served on a loopback port (a real listener: a request whose body is still arriving while time
/// passes), with its clock, and how to stop it.
struct Served {
    port: u16,
    clock: pcii_portal::clock::Clock,
    db: pcii_portal::db::Db,
    idle_secs: i64,
    shutdown: rocket::Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.clone().notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve() -> Served {
    serve_with(|f| f)
}

fn serve_with(tweak: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let figment = pcii_portal::figment()
        .merge(("data_dir", dir.path().join("data")))
        .merge(("keys_dir", dir.path().join("keys")))
        .merge(("database_url", ""))
        .merge(("db_pool_size", 4))
        .merge(("address", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("shutdown.grace", 1))
        .merge(("shutdown.mercy", 1))
        .merge(("shutdown.ctrlc", false));
    let (rocket, _) = pcii_portal::build(tweak(figment)).expect("build");
    let (tx, rx) = std::sync::mpsc::channel();
    let rocket = rocket.attach(rocket::fairing::AdHoc::on_liftoff("port", move |r| {
        let port = r.config().port;
        Box::pin(async move {
            let _ = tx.send(port);
        })
    }));
    let runtime = rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rocket = runtime.block_on(rocket.ignite()).expect("ignite");
    let state = rocket.state::<pcii_portal::services::Services>().unwrap();
    let clock = state.clock.clone();
    let db = state.db.clone();
    let idle_secs = state.settings.session_idle_minutes * 60;
    pcii_portal::auth::accounts::create(
        &state.db,
        &state.audit,
        &state.hasher,
        &pcii_portal::audit::log::Actor::cli(),
        pcii_portal::auth::accounts::NewAccount {
            email: SAM.into(),
            display_name: "Sam".into(),
            role: Role::Submitter,
            membership: pcii_portal::auth::accounts::Membership::New("Acme".into()),
            org_admin: true,
            agency: None,
            password: PASSWORD.into(),
        },
        clock.now(),
    )
    .unwrap()
    .unwrap();
    let shutdown = rocket.shutdown();
    let thread = std::thread::spawn(move || {
        let _ = runtime.block_on(rocket.launch());
    });
    let port = rx.recv_timeout(Duration::from_secs(30)).expect("liftoff");
    Served {
        port,
        clock,
        db,
        idle_secs,
        shutdown,
        thread: Some(thread),
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The body's bytes as they arrived (not de-chunked).
    bytes: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        common::header(&self.headers, name)
    }
}

/// One HTTP/1.1 exchange: `head` (without Host, Cookie and Connection) and `body`, sent in two halves with `between`
/// run after the first.
fn exchange(
    port: u16,
    cookies: &mut Vec<(String, String)>,
    head: &str,
    body: &[u8],
    between: impl FnOnce(),
) -> Answer {
    let half = body.len() / 2;
    let mut stream = send_first_half(port, cookies, head, body);
    between();
    stream.write_all(&body[half..]).unwrap();
    read_answer(stream, cookies)
}

/// Opens a connection and sends `head` (with Host, Cookie, `Connection: close` and the whole body's length added)
/// and the first half of `body`.
fn send_first_half(port: u16, cookies: &[(String, String)], head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let cookie = cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let request = format!(
        "{head}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if cookie.is_empty() {
            String::new()
        } else {
            format!("Cookie: {cookie}\r\n")
        }
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream.flush().unwrap();
    stream
}

/// Reads the answer to the end of the connection, keeping the cookies it sets.
fn read_answer(mut stream: TcpStream, cookies: &mut Vec<(String, String)>) -> Answer {
    let mut raw = Vec::new();
    // A connection the server cuts may end in a reset rather than an orderly close: what arrived is what counts.
    let _ = stream.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let bytes = raw.get(end + 4..).unwrap_or_default().to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for (_, set) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Set-Cookie"))
    {
        let pair = set.split(';').next().unwrap_or("");
        if let Some((n, v)) = pair.split_once('=') {
            cookies.retain(|(k, _)| k != n);
            if !v.is_empty() && !set.contains("Max-Age=0") {
                cookies.push((n.to_string(), v.to_string()));
            }
        }
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

fn get(port: u16, cookies: &mut Vec<(String, String)>, path: &str) -> Answer {
    exchange(port, cookies, &format!("GET {path} HTTP/1.1"), b"", || {})
}

/// Posts the submission form `body` (multipart) over the connection, `between` run once half of it is sent.
fn post_submission(
    port: u16,
    cookies: &mut Vec<(String, String)>,
    body: &[u8],
    between: impl FnOnce(),
) -> Answer {
    exchange(
        port,
        cookies,
        &format!(
            "POST /submissions HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
        ),
        body,
        between,
    )
}

/// The submission a successful post redirected to the receipt of.
fn submitted_id(sent: &Answer) -> String {
    assert_eq!(sent.status, 303, "{}", sent.body);
    sent.header("Location")
        .and_then(|l| l.strip_prefix("/submissions/"))
        .and_then(|l| l.strip_suffix("/receipt"))
        .expect("the receipt")
        .to_string()
}

/// Signs in as Sam over the connection and opens the submission form: its session's form token.
fn sign_in_for_a_new_submission(port: u16, cookies: &mut Vec<(String, String)>) -> String {
    let login = get(port, cookies, "/login");
    let token = extract_csrf(&login.body).expect("a token");
    let signed_in = exchange(
        port,
        cookies,
        "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        encode(&[("csrf", &token), ("email", SAM), ("password", PASSWORD)]).as_bytes(),
        || {},
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let form = get(port, cookies, "/submissions/new");
    assert_eq!(form.status, 200, "{}", form.body);
    extract_csrf(&form.body).expect("the session's token")
}

#[test]
fn an_upload_that_outlives_the_idle_timeout_ends_on_its_receipt() {
    let served = serve();
    let port = served.port;
    let mut cookies = Vec::new();
    let token = sign_in_for_a_new_submission(port, &mut cookies);

    let file = file_bytes(4 * 1024 * 1024, 5, "slow");
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("sent over a slow link", "submit"));
    parts.push(Part::Text("description_1", "Relay settings"));
    parts.push(Part::File("file_1", "large.bin", &file));
    let body = common::multipart_body(&parts);
    let idle = served.idle_secs;
    let clock = served.clock.clone();
    let sent = post_submission(
        port,
        &mut cookies,
        &body,
        // Half the body is on its way (the session was admitted when the request began); the upload then takes
        // longer than the idle timeout.
        || {
            std::thread::sleep(Duration::from_millis(1500));
            clock.advance(idle + 120);
        },
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    let to = sent.header("Location").expect("a redirect").to_string();
    assert!(to.ends_with("/receipt"), "{to}");
    let receipt = get(port, &mut cookies, &to);
    assert_eq!(receipt.status, 200, "{}", receipt.body);
    assert!(receipt.body.contains("PCII-"), "a tracking number");
    assert!(receipt.body.contains("large.bin"));
}

// ---------------------------------------------------------------------------------------------
// An upload past its window
// ---------------------------------------------------------------------------------------------

/// The blob store's committed blobs (64 hex digits) and temporaries: everything in its directory but its lock.
fn stored_files(served: &Served) -> Vec<String> {
    std::fs::read_dir(served._dir.path().join("data").join("blobs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".owner-"))
        .collect()
}

/// A long upload's first file is committed to the store as soon as its part ends, and no row points to it until the
/// save commits at the end of the request; the orphan sweep deletes such blobs once they are older than
/// `blob_sweep_grace_minutes`. So a request may last only the upload's window (the grace less five minutes): one
/// whose body is still arriving past it is refused with 408, and the file it had already stored is removed, instead
/// of a receipt for a file the sweep may have taken.
#[test]
fn an_upload_still_arriving_past_its_window_is_refused_and_leaves_nothing() {
    let served = serve_with(|f| f.merge(("blob_sweep_grace_minutes", 30)));
    let window = pcii_portal::workflow::blobs::upload_window_secs(30);
    assert_eq!(window, 25 * 60);
    let port = served.port;
    let mut cookies = Vec::new();
    let token = sign_in_for_a_new_submission(port, &mut cookies);

    let early = file_bytes(64 * 1024, 3, "early");
    let late = file_bytes(4 * 1024 * 1024, 4, "late");
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields(
        "a small file, then a large one over a slow link",
        "submit",
    ));
    parts.push(Part::Text("description_1", "Relay settings"));
    parts.push(Part::File("file_1", "early.bin", &early));
    parts.push(Part::Text("description_2", "Historian export"));
    parts.push(Part::File("file_2", "late.bin", &late));
    let body = common::multipart_body(&parts);
    let clock = served.clock.clone();
    let mut committed_meanwhile = Vec::new();
    let sent = post_submission(
        port,
        &mut cookies,
        &body,
        // Half the body is on its way: the first file whole (committed to the store), part of the second. Then
        // the rest takes longer than the window.
        || {
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while committed_meanwhile.is_empty() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
                committed_meanwhile = stored_files(&served)
                    .into_iter()
                    .filter(|n| pcii_portal::storage::is_valid_blob_name(n))
                    .collect();
            }
            clock.advance(window + 1);
        },
    );
    assert!(
        !committed_meanwhile.is_empty(),
        "the first file was committed to the store while the body arrived"
    );
    assert_eq!(sent.status, 408, "{}", sent.body);
    assert!(
        sent.body.contains("took longer than the 25 minutes"),
        "{}",
        sent.body
    );
    assert!(sent.body.contains("Nothing was saved"), "{}", sent.body);
    // Nothing left: neither the first file's blob nor the second's temporary, and no row.
    assert_eq!(stored_files(&served), Vec::<String>::new());
    let mut conn = served.db.get().unwrap();
    let rows: i64 = submissions::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 0);
    let blob_rows: i64 = blobs::table.count().get_result(&mut conn).unwrap();
    assert_eq!(blob_rows, 0);
}

/// A client that stops sending mid-body cannot hold its connection and upload slot past the window: while the
/// portal waits for more it looks at the clock, and once the window is over it answers 408 without the rest and
/// removes what the request had stored.
#[test]
fn an_upload_that_stops_arriving_is_refused_when_its_window_is_over() {
    let window = pcii_portal::workflow::blobs::upload_window_secs(30);
    stall_then(window + 1, "stopped arriving");
}

/// A body that drips in (a byte every few seconds passes nginx's `client_body_timeout`) cannot hold its upload slot
/// for the whole window either: less than 512 KiB in two minutes of waiting ends it with 408, and nothing is kept.
#[test]
fn an_upload_that_arrives_too_slowly_is_refused_long_before_its_window() {
    stall_then(
        pcii_portal::web::multipart::PROGRESS_SECS + 1,
        "arrived too slowly (less than 512 KiB in 2 minutes)",
    );
}

/// Sends a form with two files up to the middle of the second, waits until the portal has read it all and waits for
/// more, advances the portal's clock by `advance` seconds, and expects a 408 that `says` so, with nothing kept.
fn stall_then(advance: i64, says: &str) {
    let served = serve_with(|f| f.merge(("blob_sweep_grace_minutes", 30)));
    let port = served.port;
    let mut cookies = Vec::new();
    let token = sign_in_for_a_new_submission(port, &mut cookies);
    let early = file_bytes(64 * 1024, 3, "early");
    let late = file_bytes(4 * 1024 * 1024, 4, "late");
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("a file, then a stall", "submit"));
    parts.push(Part::Text("description_1", "Relay settings"));
    parts.push(Part::File("file_1", "early.bin", &early));
    parts.push(Part::Text("description_2", "Historian export"));
    parts.push(Part::File("file_2", "late.bin", &late));
    let body = common::multipart_body(&parts);

    let stream = send_first_half(
        port,
        &cookies,
        &format!(
            "POST /submissions HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
        ),
        &body,
    );
    // The first file is committed to the store and the second's temporary stops growing: the portal has read all
    // that was sent and waits for more. Nothing more is sent, and the window passes.
    let dir = served._dir.path().join("data").join("blobs");
    let sizes = || -> Vec<(String, u64)> {
        let mut v: Vec<_> = stored_files(&served)
            .into_iter()
            .map(|n| {
                let len = std::fs::metadata(dir.join(&n))
                    .map(|m| m.len())
                    .unwrap_or(0);
                (n, len)
            })
            .collect();
        v.sort();
        v
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = sizes();
    let stalled = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = sizes();
        let committed = now
            .iter()
            .any(|(n, _)| pcii_portal::storage::is_valid_blob_name(n));
        if committed && now.len() == 2 && now == last {
            break true;
        }
        if std::time::Instant::now() > until {
            break false;
        }
        last = now;
    };
    // Positive control: the stall state was reached (the first file committed, the second's temporary there and no
    // longer growing), so the "nothing left" check below has something to clean up.
    assert!(
        stalled,
        "the portal never reached the stall state: {:?}",
        sizes()
    );
    served.clock.advance(advance);
    let started = std::time::Instant::now();
    let answer = read_answer(stream, &mut cookies);
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert!(answer.body.contains(says), "{}", answer.body);
    assert!(answer.body.contains("Nothing was saved"), "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered only after {:?}",
        started.elapsed()
    );
    // Nothing left: the first file's blob and the second's temporary are gone, and no row.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !stored_files(&served).is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored_files(&served), Vec::<String>::new());
    let mut conn = served.db.get().unwrap();
    let rows: i64 = submissions::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 0);
}

// ---------------------------------------------------------------------------------------------
// A damaged file over a real socket
// ---------------------------------------------------------------------------------------------

/// Over a real connection (not Rocket's local client, which reads the body itself), a file whose stored copy was
/// damaged past its first megabyte — sent after the headers went out — never arrives as a complete 200: the
/// answer declares the file's length and the connection closes short of it.
#[test]
fn a_damaged_file_past_its_first_megabyte_arrives_cut_short_over_a_real_connection() {
    let served = serve();
    let port = served.port;
    let mut cookies = Vec::new();
    let token = sign_in_for_a_new_submission(port, &mut cookies);
    let file = file_bytes(3 * 1024 * 1024, 7, "cut");
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("a file to damage", "submit"));
    parts.push(Part::Text("description_1", "Relay settings"));
    parts.push(Part::File("file_1", "settings.bin", &file));
    let sent = post_submission(port, &mut cookies, &common::multipart_body(&parts), || {});
    let id = submitted_id(&sent);
    let (att, name): (String, String) = {
        let mut conn = served.db.get().unwrap();
        attachments::table
            .inner_join(blobs::table.on(blobs::id.nullable().eq(attachments::blob_id)))
            .filter(attachments::submission_id.eq(&id))
            .select((attachments::id, blobs::storage_name))
            .first(&mut conn)
            .unwrap()
    };
    let uri = format!("/submissions/{id}/files/{att}");
    let declared = |a: &Answer| {
        a.header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok())
    };

    // Intact: the declared length, all of it, byte for byte.
    let intact = get(port, &mut cookies, &uri);
    assert_eq!(intact.status, 200, "{:?}", intact.headers);
    assert_eq!(
        intact.header("Transfer-Encoding"),
        None,
        "{:?}",
        intact.headers
    );
    assert_eq!(declared(&intact), Some(file.len()), "{:?}", intact.headers);
    assert!(intact.bytes == file, "the intact file arrives whole");

    // One bit flipped near the end of the stored copy.
    let path = served._dir.path().join("data").join("blobs").join(&name);
    let mut stored = std::fs::read(&path).unwrap();
    let at = stored.len() - 100;
    stored[at] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    let damaged = get(port, &mut cookies, &uri);
    assert_eq!(damaged.status, 200, "streamed: {:?}", damaged.headers);
    assert_eq!(
        declared(&damaged),
        Some(file.len()),
        "{:?}",
        damaged.headers
    );
    assert!(
        damaged.bytes.len() < file.len(),
        "a damaged file must arrive short of its declared length, got {} of {}",
        damaged.bytes.len(),
        file.len()
    );
    assert!(
        damaged.bytes.len() > 1024 * 1024,
        "the first megabyte went out"
    );
}

/// A longer stored file of the same submission copied over a file's stored copy decrypts (one data key for both),
/// but fails its recorded digest: the download must not end as a complete 200 carrying the other file's bytes. The
/// answer declares the file's length, and the last byte waits for the digest check, so it arrives short.
#[test]
fn another_file_of_the_submission_copied_over_a_stored_file_arrives_cut_short() {
    let served = serve();
    let port = served.port;
    let mut cookies = Vec::new();
    let token = sign_in_for_a_new_submission(port, &mut cookies);
    let short = file_bytes(2 * 1024 * 1024 + 12_345, 3, "short");
    let long = file_bytes(4 * 1024 * 1024, 4, "long");
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("two files", "submit"));
    parts.push(Part::Text("description_1", "short"));
    parts.push(Part::File("file_1", "short.bin", &short));
    parts.push(Part::Text("description_2", "long"));
    parts.push(Part::File("file_2", "long.bin", &long));
    let sent = post_submission(port, &mut cookies, &common::multipart_body(&parts), || {});
    let id = submitted_id(&sent);
    let files: Vec<(String, String, i64)> = {
        let mut conn = served.db.get().unwrap();
        attachments::table
            .inner_join(blobs::table.on(blobs::id.nullable().eq(attachments::blob_id)))
            .filter(attachments::submission_id.eq(&id))
            .select((attachments::id, blobs::storage_name, blobs::plaintext_len))
            .load(&mut conn)
            .unwrap()
    };
    let of_len = |len: usize| files.iter().find(|f| f.2 == len as i64).cloned().unwrap();
    let (short_id, short_name, _) = of_len(short.len());
    let (_, long_name, _) = of_len(long.len());
    let blobs_dir = served._dir.path().join("data").join("blobs");
    std::fs::copy(blobs_dir.join(&long_name), blobs_dir.join(&short_name)).unwrap();
    let uri = format!("/submissions/{id}/files/{short_id}");
    let swapped = get(port, &mut cookies, &uri);
    assert_eq!(swapped.status, 200, "streamed: {:?}", swapped.headers);
    assert_eq!(
        swapped
            .header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(short.len())
    );
    assert!(
        swapped.bytes.len() < short.len(),
        "a swapped file must arrive short of its declared length, got {} of {}",
        swapped.bytes.len(),
        short.len()
    );
}

/// Downloads hold a slot for as long as their body lives: a client that stops reading holds only its own account's
/// few (429 past them), the portal as many as it will send (503 past them), and a slot comes back when the
/// response is dropped.
#[test]
fn downloads_that_are_not_read_hold_their_account_s_slots_and_no_more() {
    let app = TestApp::with(|f| {
        f.merge(("max_downloads_per_account", 2))
            .merge(("max_concurrent_downloads", 3))
    });
    let mut ann = app.login_as(Role::Submitter, SAM, Some("Acme"));
    let file = file_bytes(3 * 1024 * 1024, 9, "held");
    let mut parts = complete_fields("downloads held open", "submit");
    parts.push(Part::Text("description_1", "d"));
    parts.push(Part::File("file_1", "big.bin", &file));
    let id = common::submission_id(&ann.post_multipart("/submissions", &parts));
    let att = app.attachment_ids(&id).remove(0);
    let uri = format!("/submissions/{id}/files/{att}");

    let first = ann.get_unread(&uri);
    assert_eq!(first.status(), Status::Ok);
    let second = ann.get_unread(&uri);
    assert_eq!(second.status(), Status::Ok);
    let third = ann.get(&uri);
    assert_eq!(third.status, Status::TooManyRequests, "{}", third.body);
    assert!(third.body.contains("downloads under way"), "{}", third.body);
    assert_eq!(app.state().downloads.in_use(), 2);

    // Another account of the organisation takes the last slot of the portal; then the portal is full.
    let mut bea = app.login_as(Role::Submitter, "bea@acme.example", Some("Acme"));
    let held = bea.get_unread(&uri);
    assert_eq!(held.status(), Status::Ok);
    let full = bea.get(&uri);
    assert_eq!(full.status, Status::ServiceUnavailable, "{}", full.body);

    // Dropped responses give their slots back; a download read to its end gives its own back too.
    drop((first, second, held));
    assert_eq!(app.state().downloads.in_use(), 0);
    let (status, body, _) = ann.get_bytes(&uri);
    assert_eq!(status, Status::Ok);
    assert!(body.unwrap() == file);
    assert_eq!(app.state().downloads.in_use(), 0);
}
