//! The mail path through a real SMTP server: `.ci/run` starts aiosmtpd on loopback (its Mailbox handler writes
//! each received message to a maildir) and runs these with `--ignored`, with `PCII_TEST_SMTP_PORT` and
//! `PCII_TEST_SMTP_MAILDIR` set. They are ignored in the default `cargo test`, which needs no server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{complete_fields, submission_id, Part, TestApp, PASSWORD};
use rocket::http::Status;

use pcii_portal::models::account;

fn smtp_app() -> (TestApp, PathBuf) {
    let port: u16 = std::env::var("PCII_TEST_SMTP_PORT")
        .expect("PCII_TEST_SMTP_PORT: the port of the loopback SMTP server (see .ci/run)")
        .parse()
        .expect("a port number");
    let maildir = PathBuf::from(
        std::env::var("PCII_TEST_SMTP_MAILDIR").expect("PCII_TEST_SMTP_MAILDIR: its maildir"),
    );
    let app = TestApp::with(|f| {
        f.merge(("smtp_host", "127.0.0.1"))
            .merge(("smtp_port", port))
            .merge(("smtp_security", "none"))
            .merge(("mail_from", "PCII Portal <pcii@portal.test>"))
    });
    (app, maildir)
}

/// Waits for a message to `to` holding a link that starts with `prefix`, and returns the link's path.
fn received_link(maildir: &std::path::Path, to: &str, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for sub in ["new", "cur", "tmp"] {
            let Ok(dir) = std::fs::read_dir(maildir.join(sub)) else {
                continue;
            };
            for entry in dir.filter_map(Result::ok) {
                let text = std::fs::read_to_string(entry.path())
                    .unwrap_or_default()
                    .replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=");
                if !text.to_lowercase().contains(&format!("to: {to}")) {
                    continue;
                }
                if let Some(at) = text.find(prefix) {
                    let rest = &text[at..];
                    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                    return rest[..end].to_string();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no message to {to} with {prefix} reached the SMTP server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the loopback SMTP server that .ci/run starts"]
fn a_colleague_invited_by_email_reads_the_companys_submissions_until_removed() {
    let (app, maildir) = smtp_app();
    assert!(app.state().mailer.describe().contains("SMTP"));
    let mut lead = app.login_as(
        pcii_portal::domain::Role::Submitter,
        "lead@acme-smtp.example",
        Some("Acme"),
    );
    let mut parts = complete_fields("SMTP suite narrative", "submit");
    parts.push(Part::Text("description_1", "d"));
    parts.push(Part::File("file_1", "f.pdf", b"smtp suite file"));
    let sid = submission_id(&lead.post_multipart("/submissions", &parts));

    let invited = lead.post(
        "/organisation/invitations",
        &[
            ("email", "colleague@acme-smtp.example"),
            ("display_name", "Colin Colleague"),
        ],
    );
    assert_eq!(invited.status, Status::SeeOther, "{}", invited.body);
    let link = received_link(&maildir, "colleague@acme-smtp.example", "/invitations/");

    let mut colleague = app.browser();
    assert_eq!(colleague.get(&link).status, Status::Ok);
    assert_eq!(
        colleague
            .post(
                &link,
                &[
                    ("display_name", "Colin"),
                    ("password", "colin's own passphrase")
                ]
            )
            .status,
        Status::SeeOther
    );
    assert_eq!(
        colleague.login("colleague@acme-smtp.example", "colin's own passphrase"),
        Status::SeeOther
    );
    assert_eq!(colleague.get("/submissions").status, Status::Ok);
    assert_eq!(
        colleague.get(&format!("/submissions/{sid}")).status,
        Status::Ok
    );

    // Removed: signed out at once, and nothing of the company any more.
    let cid = app.with_conn(|c| {
        account::find_by_email(c, "colleague@acme-smtp.example")
            .unwrap()
            .unwrap()
            .id
    });
    assert_eq!(
        lead.post(
            &format!("/organisation/members/{cid}/remove"),
            &[("confirm", "yes")]
        )
        .status,
        Status::SeeOther
    );
    assert_eq!(colleague.get("/submissions").status, Status::Unauthorized);
    assert_eq!(
        colleague.get(&format!("/submissions/{sid}")).status,
        Status::Unauthorized
    );
    assert_eq!(
        app.browser()
            .login("colleague@acme-smtp.example", "colin's own passphrase"),
        Status::Unauthorized
    );
}

#[test]
#[ignore = "needs the loopback SMTP server that .ci/run starts"]
fn confirmation_and_reset_links_arrive_over_smtp() {
    let (app, maildir) = smtp_app();
    let mut b = app.browser();
    let res = b.post(
        "/register",
        &[
            ("display_name", "Rita Registrant"),
            ("organisation", "Rita's Utility"),
            ("email", "rita@utility-smtp.example"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    let confirm = received_link(&maildir, "rita@utility-smtp.example", "/verify-email/");
    assert_eq!(
        b.confirm_address(&confirm, "rita@utility-smtp.example", PASSWORD)
            .status,
        Status::SeeOther
    );
    assert_eq!(b.get("/submissions").status, Status::Ok);

    let mut anon = app.browser();
    anon.post(
        "/password/forgot",
        &[("email", "rita@utility-smtp.example")],
    );
    let reset = received_link(&maildir, "rita@utility-smtp.example", "/password/reset/");
    assert_eq!(
        anon.post(
            &reset,
            &[("new_password", "rita resets to this passphrase")]
        )
        .status,
        Status::SeeOther
    );
    assert_eq!(b.get("/submissions").status, Status::Unauthorized);
    assert_eq!(
        anon.login(
            "rita@utility-smtp.example",
            "rita resets to this passphrase"
        ),
        Status::SeeOther
    );
}

/// An SMTP server (aiosmtpd, as `.ci/run` starts it) on `port`, writing to `maildir`: stopped when dropped.
struct SmtpServer(std::process::Child);

impl SmtpServer {
    fn start(port: u16, maildir: &std::path::Path) -> SmtpServer {
        SmtpServer::start_with(port, maildir, "aiosmtpd.handlers.Mailbox")
    }

    /// With the handler `class` (a Mailbox or a class of `tests/smtp/`).
    fn start_with(port: u16, maildir: &std::path::Path, class: &str) -> SmtpServer {
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", class])
            .arg(maildir)
            .env(
                "PYTHONPATH",
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp"),
            )
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (Debian's python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        SmtpServer(child)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs aiosmtpd, which .ci/run installs"]
fn a_message_mail_refused_while_the_smtp_server_was_down_arrives_once_it_is_up() {
    // A port nothing listens on yet: the SMTP server is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::with(|f| {
        f.merge(("smtp_host", "127.0.0.1"))
            .merge(("smtp_port", port))
            .merge(("smtp_security", "none"))
            .merge(("mail_from", "PCII Portal <pcii@portal.test>"))
            .merge(("notification_interval_seconds", 0))
    });
    let mut ann = app.login_as(
        pcii_portal::domain::Role::Submitter,
        "ann@acme-down.example",
        Some("Acme"),
    );
    let mut olga = app.login_as(
        pcii_portal::domain::Role::Officer,
        "olga@pcii-down.example.gov",
        None,
    );
    let sid = submission_id(&ann.post_multipart(
        "/submissions",
        &complete_fields("SMTP down narrative", "submit"),
    ));

    let thread = format!("/officer/submissions/{sid}/messages");
    let page = olga.post_multipart(&thread, &[Part::Text("body", "DownMarker3391 a question")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(olga
        .get(&thread)
        .body
        .contains("could not go out yet; the portal tries again"));
    assert_eq!(app.pending_mail(), 1);

    // The server comes up; the next round after the at-once grace sends the mail over SMTP.
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let _server = SmtpServer::start(port, &maildir);
    app.advance(pcii_portal::workflow::pending_mail::AT_ONCE_GRACE + 1);
    let done = app.notification_round();
    assert_eq!((done.sent.len(), done.failed), (1, 0), "{done:?}");
    let link = received_link(&maildir, "ann@acme-down.example", "/submissions/");
    assert!(
        link.ends_with(&format!("/submissions/{sid}/messages")),
        "{link}"
    );
    assert_eq!(app.pending_mail(), 0);
}

#[test]
#[ignore = "needs aiosmtpd, which .ci/run installs"]
fn a_round_goes_on_past_addresses_the_smtp_server_refuses_for_good() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::users;
    use pcii_portal::domain::Role;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    // A server that works but has no mailbox for two of the officers (550 to their RCPT).
    let _server = SmtpServer::start_with(port, &maildir, "bounce.BounceSome");
    let app = TestApp::with(|f| {
        f.merge(("smtp_host", "127.0.0.1"))
            .merge(("smtp_port", port))
            .merge(("smtp_security", "none"))
            .merge(("mail_from", "PCII Portal <pcii@portal.test>"))
            .merge(("notification_interval_seconds", 0))
    });
    // Made first, so that the round meets them first.
    app.create_user(Role::Officer, "bounce-a@pcii-bounce.example.gov", None);
    app.create_user(Role::Officer, "bounce-b@pcii-bounce.example.gov", None);
    let mut ann = app.login_as(Role::Submitter, "ann@acme-bounce.example", Some("Acme"));
    app.create_user(
        Role::Submitter,
        "bounce-c@acme-bounce.example",
        Some("Acme"),
    );
    let mut olga = app.login_as(Role::Officer, "olga@pcii-bounce.example.gov", None);
    app.create_user(Role::Officer, "oscar@pcii-bounce.example.gov", None);
    let sid = submission_id(&ann.post_multipart(
        "/submissions",
        &complete_fields("SMTP bounce narrative", "submit"),
    ));
    let page = olga.post(
        &format!("/officer/submissions/{sid}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let tracking: String = app.with_conn(|c| {
        pcii_portal::db::schema::submissions::table
            .find(&sid)
            .select(pcii_portal::db::schema::submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    let analyst = app.create_user(Role::AuthorizedUser, "ana@dhs-bounce.example.gov", None);
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&analyst))
            .set((
                users::training_completed_at.eq(Some(now - 10 * pcii_portal::time::DAY)),
                users::nda_signed_at.eq(Some(now - 10 * pcii_portal::time::DAY)),
                users::agency.eq(Some("DHS Office of Intelligence")),
            ))
            .execute(c)
            .unwrap()
    });
    let mut ana = app.browser();
    assert_eq!(
        ana.login("ana@dhs-bounce.example.gov", PASSWORD),
        Status::SeeOther
    );
    let page = ana.post(
        "/analyst/access-requests",
        &[("tracking", &tracking), ("reason", "pump stations")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // The request waits: every officer is due a notice. The two refusals are this mail's, not the route's: the
    // round goes on, and the other two officers get theirs.
    let done = app.notification_round();
    assert_eq!((done.sent.len(), done.failed), (2, 2), "{done:?}");
    for to in [
        "olga@pcii-bounce.example.gov",
        "oscar@pcii-bounce.example.gov",
    ] {
        let link = received_link(&maildir, to, "/officer/");
        assert!(link.ends_with("/officer/access-requests"), "{link}");
    }

    // A message to Acme, sent at once after the commit: the server refuses its member "bounce-c" for good, so
    // that mail is dropped and the officer told; the other member gets hers.
    let thread = format!("/officer/submissions/{sid}/messages");
    let page = olga.post_multipart(
        &thread,
        &[Part::Text("body", "BounceMarker7710 a question")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = olga.get(&thread);
    assert!(
        page.body
            .contains("The mail server refused the email to 1 of the people told"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("could not go out yet"), "{}", page.body);
    assert_eq!(app.pending_mail(), 0, "nothing left to try again");
    // (Ann also has the validation's mail, linking to the submission itself: this one links to its thread.)
    let link = received_link(
        &maildir,
        "ann@acme-bounce.example",
        &format!("/submissions/{sid}/messages"),
    );
    assert!(
        link.ends_with(&format!("/submissions/{sid}/messages")),
        "{link}"
    );
}
