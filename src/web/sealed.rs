//! The sealed portal (`master_key_protection = "shares"`): what answers before k custodians have given
//! their shares. Every page answers 503 "sealed" (JSON for machine clients) except `/unseal`, where a
//! custodian pastes its decrypted share, and `/healthz`, which says "sealed". The same security headers,
//! CSP and cross-site check as the real portal. On the k-th valid share the unlock key goes through a
//! channel to `main`, this Rocket shuts itself down, and the real one is built with the key and launched.
//!
//! Custodians paste the *decrypted* share (`rage -d -i their-key share-N.age` on their own machine): their
//! long-term age identity never reaches the server, and one share alone discloses nothing. Bad shares are
//! throttled per client address and overall, and every attempt is audited (the database is open while
//! sealed; the audit signing key is not, so these entries wait for the next checkpoint of the real log).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use base64::Engine;
use rand::RngCore;
use rocket::figment::Figment;
use rocket::form::{Form, FromForm};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::response::{self, Responder};
use rocket::serde::json::{json, Value};
use rocket::{Build, Request, Response, Rocket, Shutdown, State};
use zeroize::Zeroizing;

use crate::audit::log::{Actor, AuditLog, Event, Outcome as AuditOutcome};
use crate::audit::refusals::{self, RefusalTally};
use crate::clock::Clock;
use crate::crypto::keyfile::UnlockKey;
use crate::db::Db;
use crate::key_store::protection::{check_layout, Mode};
use crate::key_store::shares::{Collector, Manifest, Offered};
use crate::web::fairings::{self, request_id};
use crate::web::forms::{anonymous_token, tokens_match};
use crate::web::pages::{Page, Templates};

/// Wrong shares allowed per client address within [`WINDOW_SECONDS`].
pub const MAX_FAILURES_PER_ADDRESS: usize = 5;
/// Wrong shares allowed from everyone together within [`WINDOW_SECONDS`].
pub const MAX_FAILURES_OVERALL: usize = 20;
pub const WINDOW_SECONDS: i64 = 15 * 60;

/// Failed share attempts, per client address and overall, in a sliding window.
#[derive(Default)]
struct Throttle {
    by_address: HashMap<String, Vec<i64>>,
    overall: Vec<i64>,
}

impl Throttle {
    fn prune(&mut self, now: i64) {
        let live = |t: &i64| now - *t < WINDOW_SECONDS;
        self.overall.retain(live);
        self.by_address.retain(|_, v| {
            v.retain(live);
            !v.is_empty()
        });
    }

    /// Whether wrong shares from `address` are refused unread. The overall cap does not bind the local socket
    /// (0600 in the key directory: only the portal's own user reaches it), so that strangers on the network
    /// cannot lock out the custodian at the host.
    fn blocked(&mut self, address: &str, now: i64) -> bool {
        self.prune(now);
        address != LOCAL_SOCKET && self.overall.len() >= MAX_FAILURES_OVERALL
            || self
                .by_address
                .get(address)
                .is_some_and(|v| v.len() >= MAX_FAILURES_PER_ADDRESS)
    }

    fn fail(&mut self, address: &str, now: i64) {
        self.overall.push(now);
        self.by_address
            .entry(address.to_string())
            .or_default()
            .push(now);
    }
}

/// The address the local unseal socket's attempts are throttled and recorded under.
const LOCAL_SOCKET: &str = "local socket";

/// Longest line read from the socket (a share line is a few hundred bytes).
const SOCKET_LINE_MAX: u64 = 8 * 1024;

/// The sealed portal's state.
pub struct SealedPortal {
    socket: PathBuf,
    collector: Mutex<Collector>,
    throttle: Mutex<Throttle>,
    unlocked: Mutex<Option<mpsc::SyncSender<UnlockKey>>>,
    db: Db,
    audit: AuditLog,
    clock: Clock,
    /// Anonymous refusals (a missing form token, a throttled attempt) folded per address as the real portal
    /// folds them: a flood of them must not fill the append-only log (and take its head lock) once per request.
    refusals: Arc<RefusalTally>,
}

impl SealedPortal {
    /// Writes this portal's folded refusals, as the real portal's are written.
    fn refusal_flusher(&self) -> refusals::Flusher {
        refusals::Flusher {
            db: self.db.clone(),
            audit: self.audit.clone(),
            tally: self.refusals.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// Builds the sealed portal on the figment's address. The receiver yields the unlock key once k valid
/// shares were given.
pub fn build(figment: Figment) -> Result<(Rocket<Build>, mpsc::Receiver<UnlockKey>), String> {
    build_with_clock(figment, Clock::system())
}

/// [`build`] with the clock the throttle and the audit entries read.
pub fn build_with_clock(
    figment: Figment,
    clock: Clock,
) -> Result<(Rocket<Build>, mpsc::Receiver<UnlockKey>), String> {
    let settings = crate::config::load(&figment)?;
    check_layout(&settings.keys_dir, Mode::Shares).map_err(|e| e.to_string())?;
    let manifest = Manifest::read(&settings.keys_dir).map_err(|e| e.to_string())?;
    crate::create_private_dir(&settings.data_dir)?;
    let db = Db::open_with(
        &settings.database_url(),
        2,
        settings.database_busy_timeout_ms,
    )
    .map_err(|e| e.to_string())?;
    // The signing key is sealed too: entries are recorded unsigned, and the real log's next checkpoint covers them.
    let audit = AuditLog::unsigned().with_clock(clock.clone());
    let (tx, rx) = mpsc::sync_channel(1);
    // The cookie secret is sealed as well: the anti-forgery cookie of the unseal form uses a key that
    // lives as long as this sealed process.
    let mut secret = Zeroizing::new([0u8; 64]);
    rand::rngs::OsRng.fill_bytes(secret.as_mut());
    let secret_b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&secret[..]));
    let figment = figment.merge(("secret_key", secret_b64.as_str()));
    let state = SealedPortal {
        socket: settings.keys_dir.join(crate::key_store::UNSEAL_SOCKET),
        collector: Mutex::new(Collector::new(manifest)),
        throttle: Mutex::new(Throttle::default()),
        unlocked: Mutex::new(Some(tx)),
        db,
        audit,
        clock,
        refusals: Arc::new(RefusalTally::new(refusals::WINDOW_SECS)),
    };
    let rocket = rocket::custom(figment)
        .manage(Arc::new(state))
        .attach(rocket::fairing::AdHoc::on_liftoff(
            "unseal socket",
            |rocket| {
                Box::pin(async move {
                    if let Some(state) = rocket.state::<Arc<SealedPortal>>() {
                        serve_socket(state.clone(), rocket.shutdown());
                        state.refusal_flusher().spawn_periodic(rocket.shutdown());
                    }
                })
            },
        ))
        .attach(rocket::fairing::AdHoc::on_shutdown(
            "folded refusals",
            |rocket| {
                Box::pin(async move {
                    if let Some(state) = rocket.state::<Arc<SealedPortal>>() {
                        state.refusal_flusher().flush(true).await;
                    }
                })
            },
        ))
        .manage(crate::web::guards::PublicOrigin(
            settings.public_origin.clone(),
        ))
        .attach(rocket::shield::Shield::new())
        .attach(fairings::RequestLog)
        .attach(fairings::SecurityHeaders)
        .attach(fairings::HostCheck {
            public_origin: settings.public_origin.clone(),
        })
        .attach(fairings::OriginCheck)
        .attach(fairings::NulCheck)
        .attach(Templates::fairing())
        .mount(
            "/",
            rocket::routes![unseal_page, unseal, healthz, cross_site_refused],
        )
        .mount("/", fairings::refusal_routes())
        .register("/", rocket::catchers![sealed_catcher]);
    Ok((rocket, rx))
}

/// The client address and request id, for the throttle and the audit entries.
struct Client {
    address: String,
    request_id: String,
    csrf: String,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Client {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        Outcome::Success(Client {
            address: req
                .client_ip()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into()),
            request_id: request_id(req),
            csrf: anonymous_token(req),
        })
    }
}

impl Client {
    fn actor(&self) -> Actor {
        Actor {
            user_id: None,
            role: Some("custodian".into()),
            client_addr: Some(self.address.clone()),
            request_id: Some(self.request_id.clone()),
            session: None,
        }
    }
}

fn unseal_view(state: &SealedPortal, status: Status, message: Option<&str>) -> Page {
    let c = state.collector.lock().unwrap_or_else(|p| p.into_inner());
    Page::new("unseal.html.tera")
        .status(status)
        .with("have", c.have())
        .with("need", c.need())
        .with("custodians", c.custodians())
        .with("message", message)
        .with("unsealed", false)
}

/// Where `fairings::OriginCheck` sends a request another site made (a cross-site form, a read embedded in another
/// site's page): 403 with what was wrong, folded in the log like the unseal form's refusals.
#[rocket::get("/__refused/cross-site")]
async fn cross_site_refused(state: &State<Arc<SealedPortal>>, client: Client) -> SealedAnswer {
    audit_folded(
        state,
        &client.actor(),
        Event::new("csrf.refused", AuditOutcome::Refused)
            .object("route", fairings::REFUSED_PATH)
            .reason("a request another site's page made"),
    )
    .await;
    SealedAnswer {
        refused: refused_reason(Status::Forbidden).map(|reason| (Status::Forbidden, reason)),
    }
}

#[rocket::get("/unseal")]
fn unseal_page(state: &State<Arc<SealedPortal>>) -> Page {
    unseal_view(state, Status::Ok, None)
}

#[derive(FromForm)]
struct UnsealForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    share: String,
}

/// Records an unseal attempt; whether it was recorded.
async fn audit(state: &SealedPortal, actor: &Actor, event: Event) -> bool {
    let audit = state.audit.clone();
    let actor = actor.clone();
    match state.db.run(move |c| audit.record(c, &actor, event)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "auditing an unseal attempt failed");
            false
        }
    }
}

/// An anonymous refusal, recorded or folded (see [`refusals`]).
async fn audit_folded(state: &SealedPortal, actor: &Actor, event: Event) {
    let (audit, tally, now) = (
        state.audit.clone(),
        state.refusals.clone(),
        state.clock.now(),
    );
    let actor = actor.clone();
    let recorded = state
        .db
        .run(move |c| refusals::record_anonymous(c, &audit, &tally, &actor, event, now))
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "auditing an unseal attempt failed");
    }
}

#[rocket::post("/unseal", data = "<form>")]
async fn unseal(
    state: &State<Arc<SealedPortal>>,
    client: Client,
    form: Form<UnsealForm>,
    shutdown: Shutdown,
) -> Page {
    let form = form.into_inner();
    let share = Zeroizing::new(form.share);
    if !tokens_match(&form.csrf, &client.csrf) {
        audit_folded(
            state,
            &client.actor(),
            Event::new("csrf.refused", AuditOutcome::Refused)
                .object("route", "/unseal")
                .reason("missing or wrong token"),
        )
        .await;
        return unseal_view(
            state,
            Status::Forbidden,
            Some("The form was stale. Reload the page and try again."),
        );
    }
    match offer_share(state, &client.actor(), &client.address, &share, &shutdown).await {
        Answer::Throttled => unseal_view(
            state,
            Status::TooManyRequests,
            Some("Too many wrong shares. Wait a quarter of an hour and try again."),
        )
        .retry_after(15 * 60),
        Answer::Accepted { .. } => unseal_view(state, Status::Ok, Some("Share accepted.")),
        Answer::Duplicate => unseal_view(state, Status::Ok, Some("That share was given already.")),
        Answer::Unsealed { need } => Page::new("unseal.html.tera")
            .with("unsealed", true)
            .with("have", need)
            .with("need", need),
        Answer::Refused => unseal_view(
            state,
            Status::UnprocessableEntity,
            Some("That is not a share of this portal's key. Check that you pasted the whole decrypted share."),
        ),
        Answer::NotRecorded => unseal_view(state, Status::ServiceUnavailable, Some(NOT_RECORDED)),
    }
}

const NOT_RECORDED: &str = "The portal could not record the unsealing (its database did not answer), so it stays \
     sealed and the shares given so far are forgotten. Once the database answers, the custodians give their shares \
     again.";

/// What became of one offered share.
enum Answer {
    Throttled,
    Accepted {
        have: usize,
        need: usize,
    },
    Duplicate,
    Unsealed {
        need: usize,
    },
    Refused,
    /// The k-th share completed the key but its `key.unseal` entry could not be written: the key is dropped.
    NotRecorded,
}

impl Answer {
    /// The socket's one-line reply.
    fn line(&self) -> String {
        match self {
            Answer::Throttled => {
                "throttled: too many wrong shares; wait a quarter of an hour".into()
            }
            Answer::Accepted { have, need } => format!("accepted: {have} of {need} shares"),
            Answer::Duplicate => "accepted: that share was given already".into(),
            Answer::Unsealed { need } => {
                format!("unsealed: with {need} shares; the portal is starting")
            }
            Answer::Refused => "refused: not a share of this portal's key".into(),
            Answer::NotRecorded => format!("failed: {NOT_RECORDED}"),
        }
    }
}

/// Offers one share, audited whoever gave it; on the k-th the unlock key is handed over and the sealed portal
/// shuts down. A true share is always taken, even from an address over its limit: a share cannot be guessed
/// (it must match its digest in the manifest), so the throttle only stops wrong ones, and strangers sending
/// wrong shares cannot keep the custodians from unsealing.
async fn offer_share(
    state: &SealedPortal,
    actor: &Actor,
    address: &str,
    share: &str,
    shutdown: &Shutdown,
) -> Answer {
    let now = state.clock.now();
    let address = crate::auth::throttle::network(address);
    let address = address.as_str();
    let (blocked, offered) = {
        let mut throttle = state.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let blocked = throttle.blocked(address, now);
        let offered = state
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .offer(share);
        // Counted under the lock the check was made under: wrong shares sent at once cannot pass the cap between
        // the two.
        if offered.is_err() && !blocked {
            throttle.fail(address, now);
        }
        (blocked, offered)
    };
    match offered {
        Err(_) if blocked => {
            audit_folded(
                state,
                actor,
                Event::new("key.unseal", AuditOutcome::Refused)
                    .object("route", "/unseal")
                    .reason("throttled"),
            )
            .await;
            Answer::Throttled
        }
        Ok(Offered::Accepted { have, need }) => {
            audit(
                state,
                actor,
                Event::new("key.unseal", AuditOutcome::Success)
                    .reason(format!("share accepted ({have} of {need})")),
            )
            .await;
            Answer::Accepted { have, need }
        }
        Ok(Offered::Duplicate { have, need }) => {
            audit(
                state,
                actor,
                Event::new("key.unseal", AuditOutcome::Success).reason(format!(
                    "share given again, counted once ({have} of {need})"
                )),
            )
            .await;
            Answer::Duplicate
        }
        Ok(Offered::Complete(key)) => {
            let need = state
                .collector
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .need();
            // Fails closed: a portal is never unsealed without the entry that says who unsealed it.
            let recorded = audit(
                state,
                actor,
                Event::new("key.unseal", AuditOutcome::Success)
                    .reason(format!("unsealed with {need} shares")),
            )
            .await;
            if !recorded {
                drop(key);
                return Answer::NotRecorded;
            }
            let sender = state
                .unlocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(tx) = sender {
                let _ = tx.try_send(key);
            }
            shutdown.clone().notify();
            Answer::Unsealed { need }
        }
        Err(e) => {
            // The error names no share; the pasted text is never recorded.
            audit(
                state,
                actor,
                Event::new("key.unseal", AuditOutcome::Refused).reason(e.to_string()),
            )
            .await;
            Answer::Refused
        }
    }
}

/// Listens on the local unseal socket until the sealed portal shuts down, then removes it.
fn serve_socket(state: Arc<SealedPortal>, shutdown: Shutdown) {
    use std::os::unix::fs::PermissionsExt;
    let path = state.socket.clone();
    // Whoever can connect may offer shares and read the progress, and a new socket takes the process's umask until it
    // is made 0600: it opens only in a key directory no other account can enter (the portal makes it 0700).
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let private = std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o077 == 0);
    if !private {
        tracing::warn!(
            dir = %dir.display(),
            "the key directory is open to other accounts (chmod 700 it): the local unseal socket is not opened; \
             unseal on the /unseal page"
        );
        return;
    }
    // A socket left by a process that died: nothing listens on it any more.
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the local unseal socket is not available");
            return;
        }
    };
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e, "the local unseal socket could not be made 0600: not opened");
        drop(listener);
        let _ = std::fs::remove_file(&path);
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.clone() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (state, shutdown) = (state.clone(), shutdown.clone());
                    tokio::spawn(async move { answer_socket(&state, stream, &shutdown).await });
                }
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
    });
}

async fn answer_socket(state: &SealedPortal, stream: tokio::net::UnixStream, shutdown: &Shutdown) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut line = Zeroizing::new(String::new());
    let mut reader = BufReader::new(read.take(SOCKET_LINE_MAX));
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        reader.read_line(&mut line),
    )
    .await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        return;
    }
    let actor = Actor {
        user_id: None,
        role: Some("custodian".into()),
        client_addr: Some(LOCAL_SOCKET.into()),
        request_id: None,
        session: None,
    };
    let answer = offer_share(state, &actor, LOCAL_SOCKET, line.trim(), shutdown).await;
    let _ = write
        .write_all(format!("{}\n", answer.line()).as_bytes())
        .await;
    let _ = write.shutdown().await;
}

#[rocket::get("/healthz")]
fn healthz() -> (Status, Value) {
    (
        Status::ServiceUnavailable,
        json!({ "status": "sealed", "unseal": "/unseal" }),
    )
}

fn wants_json(req: &Request<'_>) -> bool {
    req.uri().path().starts_with("/api/")
        || req
            .headers()
            .get_one("Accept")
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// Every other request, whatever its method: 503, the portal is sealed. A request a route or guard refused as the
/// caller's mistake (a form too large or not understood, a wrong host) gets that status and what was wrong
/// instead: telling a custodian to wait would not help.
struct SealedAnswer {
    refused: Option<(Status, &'static str)>,
}

/// What a client error the unseal routes or guards answered means, in words (`None`: no route took the request,
/// or not the caller's mistake).
fn refused_reason(status: Status) -> Option<&'static str> {
    match status.code {
        400 | 422 => Some("The form was not understood. Reload the unseal page and give the share again."),
        403 => Some("The request was refused: a form from another site, or a stale one. Reload the unseal page."),
        413 => Some("The form was too large: give one share at a time, as its custodian received it."),
        421 => Some("This address is not one the portal answers to."),
        _ => None,
    }
}

impl<'r> Responder<'r, 'static> for SealedAnswer {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        if let Some((status, reason)) = self.refused {
            let mut res = if wants_json(req) {
                let body = json!({
                    "error": "Refused",
                    "message": reason,
                    "status": status.code,
                    "request_id": request_id(req),
                });
                Response::build_from(body.respond_to(req)?)
            } else {
                let page = match req.rocket().state::<Arc<SealedPortal>>() {
                    Some(state) => unseal_view(state, status, Some(reason)),
                    None => Page::new("sealed.html.tera").status(status),
                };
                Response::build_from(page.respond_to(req)?)
            };
            return res.status(status).ok();
        }
        let status = Status::ServiceUnavailable;
        let mut res = if wants_json(req) {
            let body = json!({
                "error": "Sealed",
                "message": "The portal is sealed until its custodians unseal it.",
                "status": status.code,
                "request_id": request_id(req),
            });
            Response::build_from(body.respond_to(req)?)
        } else {
            Response::build_from(
                Page::new("sealed.html.tera")
                    .status(status)
                    .respond_to(req)?,
            )
        };
        res.status(status).raw_header("Retry-After", "60").ok()
    }
}

#[rocket::catch(default)]
fn sealed_catcher(status: Status, _req: &Request<'_>) -> SealedAnswer {
    SealedAnswer {
        refused: refused_reason(status).map(|reason| (status, reason)),
    }
}
