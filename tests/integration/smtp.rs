//! The mail path through a real SMTP server: `.ci/run` starts aiosmtpd on loopback (its Mailbox handler writes
//! each received message to a maildir) and runs these with `--ignored`, with `PCII_TEST_SMTP_PORT` and
//! `PCII_TEST_SMTP_MAILDIR` set. They are ignored in the default `cargo test`, which needs no server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{complete_fields, Part, TestApp, PASSWORD};
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
    let page = lead.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let sid = page
        .header("Location")
        .unwrap()
        .trim_start_matches("/submissions/")
        .trim_end_matches("/receipt")
        .to_string();

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
    assert_eq!(b.post(&confirm, &[]).status, Status::SeeOther);
    assert_eq!(
        b.login("rita@utility-smtp.example", PASSWORD),
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
