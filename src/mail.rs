//! Outgoing mail: SMTP through `lettre` when `smtp_host` is set, otherwise `.eml` files in `data/outbox/`
//! (the embedded default needs no mail server). Messages carry a greeting, one link and what it is for:
//! never submission content, never another organisation's tracking numbers, never a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::file::FileTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use crate::config::Settings;

/// One message to one address.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

enum Route {
    Smtp(Box<SmtpTransport>),
    Outbox(FileTransport, PathBuf),
}

pub struct Mailer {
    route: Route,
    from: Mailbox,
    /// The origin links in messages point at (`https://pcii.example.gov`).
    origin: String,
    /// Messages handed off by [`send_detached`] and not yet through the route.
    in_flight: InFlight,
}

/// A count of detached sends, to wait for them (tests; an orderly stop).
#[derive(Default)]
struct InFlight {
    count: std::sync::Mutex<usize>,
    idle: std::sync::Condvar,
}

impl InFlight {
    fn begin(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn end(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the address could not be used")]
    Address,
    #[error("building the message: {0}")]
    Build(String),
    /// The mail server refused this message for good (a 5xx answer): sending it again will not help, but the route
    /// works.
    #[error("refused by the mail server: {0}")]
    Rejected(String),
    /// The route did not take it (server unreachable, timeout, a transient answer, the outbox unwritable): the
    /// route is down for now.
    #[error("sending: {0}")]
    Send(String),
}

impl MailError {
    /// Whether the route is down for now (worth trying the same mail later, not worth trying the next one now),
    /// rather than this one message being refused for good.
    pub fn route_is_down(&self) -> bool {
        matches!(self, MailError::Send(_))
    }
}

impl Mailer {
    /// The mail route the settings name. `origin` is where links in messages point.
    pub fn from_settings(settings: &Settings, origin: &str) -> Result<Mailer, String> {
        let from: Mailbox = settings
            .mail_from
            .parse()
            .map_err(|e| format!("mail_from `{}`: {e}", settings.mail_from))?;
        let route = if settings.smtp_host.trim().is_empty() {
            let dir = settings.outbox_dir();
            create_private_dir(&dir)?;
            Route::Outbox(FileTransport::new(&dir), dir)
        } else {
            Route::Smtp(Box::new(smtp_transport(settings)?))
        };
        Ok(Mailer {
            route,
            from,
            origin: origin.trim_end_matches('/').to_string(),
            in_flight: InFlight::default(),
        })
    }

    /// One line for the start banner: where messages go.
    pub fn describe(&self) -> String {
        match &self.route {
            Route::Smtp(_) => "mail is sent over SMTP".to_string(),
            Route::Outbox(_, dir) => format!(
                "no SMTP server configured: mail is written as .eml files to {}",
                crate::config::display_path(dir)
            ),
        }
    }

    /// Waits until every message handed off by [`send_detached`] has been through the route (sent or failed), at most
    /// `timeout`. Returns whether none is left.
    pub fn wait_for_detached(&self, timeout: Duration) -> bool {
        let n = self
            .in_flight
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (n, _) = self
            .in_flight
            .idle
            .wait_timeout_while(n, timeout, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *n == 0
    }

    /// An absolute link to `path` on this portal.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Sends one message (blocking: call it off the async executor). The body is never logged.
    pub fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::Address)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.route {
            Route::Smtp(t) => t.send(&message).map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    MailError::Rejected(e.to_string())
                } else {
                    MailError::Send(e.to_string())
                }
            }),
            Route::Outbox(t, _) => t
                .send(&message)
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
        }
    }
}

/// Hands `mail` to the route on a blocking thread and returns at once, not waiting for the exchange: for an answer
/// that must take as long whether or not a mail was sent (a reset request for an address that may have no account).
/// A failure is logged without the message (it may hold a link that is a credential); nothing retries it.
pub fn send_detached(mailer: &std::sync::Arc<Mailer>, mail: Mail) {
    /// Ends the count however the send ends (a panic included).
    struct Flight(std::sync::Arc<Mailer>);
    impl Drop for Flight {
        fn drop(&mut self) {
            self.0.in_flight.end();
        }
    }
    mailer.in_flight.begin();
    let flight = Flight(mailer.clone());
    // The handle is dropped: the task runs on by itself.
    drop(tokio::task::spawn_blocking(move || {
        if let Err(e) = flight.0.send(&mail) {
            tracing::error!(error = %e, "sending mail failed");
        }
    }));
}

/// [`Mailer::send`] on a blocking thread: an SMTP exchange must neither stall the async executor nor be made while
/// holding a database connection. A failed task reads as a failed send.
pub async fn send_off_executor(
    mailer: &std::sync::Arc<Mailer>,
    mail: Mail,
) -> Result<(), MailError> {
    let mailer = mailer.clone();
    tokio::task::spawn_blocking(move || mailer.send(&mail))
        .await
        .map_err(|e| MailError::Send(format!("the mail task failed: {e}")))?
}

/// `localhost` or a loopback address: a server that traffic to never leaves this machine.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn smtp_transport(s: &Settings) -> Result<SmtpTransport, String> {
    let host = s.smtp_host.trim();
    let tls =
        || TlsParameters::new(host.to_string()).map_err(|e| format!("SMTP TLS for {host}: {e}"));
    let tls = match s.smtp_security.as_str() {
        "tls" => Tls::Wrapper(tls()?),
        "starttls" => Tls::Required(tls()?),
        "none" if is_loopback_host(host) => Tls::None,
        "none" => {
            return Err(format!(
                "smtp_security = \"none\" sends the SMTP password and every link in clear: it is allowed only for \
                 a server on this machine (localhost, 127.0.0.1, ::1), not {host}; use `starttls` or `tls`"
            ))
        }
        other => {
            return Err(format!(
                "smtp_security must be `starttls`, `tls` or `none`, not `{other}`"
            ))
        }
    };
    let mut builder = SmtpTransport::builder_dangerous(host)
        .port(s.smtp_port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(20)));
    if !s.smtp_username.is_empty() {
        let password = if s.smtp_password_file.as_os_str().is_empty() {
            s.smtp_password.0.clone()
        } else {
            // A secret like the key files: refused when others may read it.
            crate::crypto::keyfile::read_private(&s.smtp_password_file)
                .map_err(|e| format!("smtp_password_file: {e}"))?
                .trim_end_matches(['\r', '\n'])
                .to_string()
        };
        builder = builder.credentials(Credentials::new(s.smtp_username.clone(), password));
    }
    Ok(builder.build())
}

/// The outbox holds live links (reset, invitation, confirmation): only the portal's user may list or read it. An
/// outbox that already exists (made by hand, or by an older version) is narrowed to that too, since the files
/// lettre writes in it take the process's umask.
fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating the mail outbox {}: {e}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| format!("reading the mail outbox {}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        // Warned of, not fatal: an outbox owned by another account (a CLI run as another user) worked before.
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            tracing::warn!(error = %e, outbox = %dir.display(), "the mail outbox could not be made private (0700)");
        }
    }
    Ok(())
}

/// The messages the portal sends. Each names what the link does and how long it lives; none carries content.
pub mod messages {
    use super::Mail;

    const SIGNATURE: &str = "\n-- \nPCII Program Office intake portal\nIf you did not expect this message, you can ignore it.\n";

    /// `removed_after_days`: when a registration never confirmed is removed (`unconfirmed_account_days`).
    /// Greets no one by name: the address is not confirmed yet, and the name is whatever the registrant typed.
    pub fn verify_email(to: &str, link: &str, hours: i64, removed_after_days: i64) -> Mail {
        Mail {
            to: to.into(),
            subject: "Confirm your email address for the PCII portal".into(),
            body: format!(
                "Hello,\n\nThis address was used to register at the PCII Program Office intake portal. If it was you, open this link within {hours} hours and sign in there with the password you chose: that confirms the address is yours.\n\n{link}\n\nUntil you do, your account cannot sign in. A registration not confirmed within {removed_after_days} days is removed, with its organisation. If the link has expired, use \"Forgot your password?\" on the sign-in page: a password reset confirms the address too. If you did not register, do nothing: the link confirms the address only for whoever registered it, with the password they chose.\n{SIGNATURE}"
            ),
        }
    }

    /// Sent when someone registers with an address that already has an account: the visitor is told the same
    /// as any other registrant, and the owner of the address learns what happened.
    pub fn already_registered(to: &str, reset_link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "Someone tried to register your address at the PCII portal".into(),
            body: format!(
                "Hello,\n\nSomeone tried to register a new account with this address, which already has one. No new account was made.\n\nIf it was you and you have forgotten your password, reset it here:\n\n{reset_link}\n{SIGNATURE}"
            ),
        }
    }

    /// `name` only once the address is confirmed (before, it is whatever the registrant typed).
    pub fn reset_password(to: &str, name: Option<&str>, link: &str, minutes: i64) -> Mail {
        let hello = name.map_or_else(|| "Hello".to_string(), |n| format!("Hello {n}"));
        Mail {
            to: to.into(),
            subject: "Reset your PCII portal password".into(),
            body: format!(
                "{hello},\n\nSomeone (we hope you) asked to reset the password of your PCII portal account. Open this link within {minutes} minutes to choose a new one; it works once:\n\n{link}\n\nEvery session of your account ends when the password changes.\n{SIGNATURE}"
            ),
        }
    }

    pub fn invitation(
        to: &str,
        name: &str,
        standing: Option<&str>,
        what: &str,
        link: &str,
        days: i64,
    ) -> Mail {
        let standing = standing.map(|s| format!("{s}\n\n")).unwrap_or_default();
        Mail {
            to: to.into(),
            subject: "You are invited to the PCII portal".into(),
            body: format!(
                "Hello {name},\n\n{standing}You are invited to the PCII Program Office intake portal {what}. Open this link within {days} days to choose your password; it works once:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }

    /// Sent when a PCII officer decided an authorized user's request for access. It says that much only: not
    /// which submission (no tracking number, no title) and not how it was decided, which the portal shows.
    pub fn access_request_decided(to: &str, name: &str, link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "Your request for access was decided".into(),
            body: format!(
                "Hello {name},\n\nYour request for access to a submission was decided \u{2014} sign in to see it:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }

    /// Sent to the organisation's members when a PCII officer records a final decision on one of its submissions
    /// (validated, not validated, protection removed). It says neither which submission nor how it was decided:
    /// the portal shows both, and what the organisation may have to choose.
    pub fn decided(to: &str, name: &str, link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "A decision on one of your organisation's PCII submissions".into(),
            body: format!(
                "Hello {name},\n\nThe PCII Program Office recorded a decision on one of your organisation's \
                 submissions. Sign in to read it; a submission that was not validated waits for your organisation \
                 to choose whether it is returned or destroyed:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }

    /// Sent to a person whose passkey was refused and removed because it signed with a counter it had already used
    /// (the sign of a copy). Names neither the passkey nor where it was used; says what was reset and what to do.
    pub fn passkey_removed(to: &str, name: &str, link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "A passkey was removed from your PCII portal account".into(),
            body: format!(
                "Hello {name},\n\nA passkey of your PCII portal account was used with a signature count it had \
                 already used: the sign that it may have been copied. The portal refused it, removed it from your \
                 account and ended your account's other sessions. If it was your only second factor, your \
                 password and recovery codes were reset as well: choose a new password with \"Forgot your \
                 password?\" on the sign-in page, then set up a second factor again.\n\nIf you did not expect \
                 this, tell the PCII Program Office at once: someone may hold a copy of your passkey and your \
                 password. Where to go on:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }

    /// Sent to the organisation's members when the Program Office destroyed a submission's information because the
    /// organisation did not choose return or destruction, or take its return package, in time. Names nothing of it.
    pub fn destroyed(to: &str, name: &str, link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "The PCII Program Office destroyed a submission's information".into(),
            body: format!(
                "Hello {name},\n\nThe PCII Program Office destroyed the information of one of your organisation's \
                 submissions: its deadline to choose return or destruction, or to take the return package, had \
                 passed. Sign in to see the destruction record:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }

    /// Sent to each organisation administrator of both companies when an officer proposes to merge them. It names
    /// neither company nor the officer's reason: the proposal is read, and answered, on the organisation page.
    pub fn merge_proposed(to: &str, name: &str, link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "A merge of your organisation is proposed".into(),
            body: format!(
                "Hello {name},\n\nA PCII officer proposed merging your organisation with another one. Nothing changes \
                 unless an administrator of each organisation accepts it \u{2014} sign in to read the proposal and \
                 accept or refuse it:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }

    /// Sent when the other side wrote in a submission's message thread. It names neither the submission (no
    /// tracking number, no title) nor who wrote nor a word of the message: the link leads to the thread after
    /// sign-in.
    pub fn new_message(to: &str, name: &str, link: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "You have a new message about a submission".into(),
            body: format!(
                "Hello {name},\n\nYou have a new message about a submission \u{2014} sign in to read it:\n\n{link}\n{SIGNATURE}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str, security: &str) -> Settings {
        Settings {
            smtp_host: host.into(),
            smtp_security: security.into(),
            ..Settings::default()
        }
    }

    #[test]
    fn an_outbox_others_may_read_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        create_private_dir(&outbox).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&outbox), 0o700);
        std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&outbox).unwrap();
        assert_eq!(mode(&outbox), 0o700);
    }

    #[test]
    fn mail_in_clear_only_to_a_server_on_this_machine() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.53"] {
            assert!(smtp_transport(&settings(host, "none")).is_ok(), "{host}");
        }
        for host in [
            "mail.example.gov",
            "10.0.0.25",
            "192.0.2.1",
            "localhost.example.gov",
        ] {
            let e = smtp_transport(&settings(host, "none")).unwrap_err();
            assert!(e.contains("in clear"), "{host}: {e}");
            assert!(
                smtp_transport(&settings(host, "starttls")).is_ok(),
                "{host}"
            );
        }
    }
}
