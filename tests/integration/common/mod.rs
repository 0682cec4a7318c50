//! A `TestApp` per test: its own temp dir, its own database (SQLite file, or a fresh PostgreSQL database when
//! `PCII_TEST_DATABASE_URL` is set), its own keys; and `Browser`s that keep their own cookies.
#![allow(dead_code)]

use std::path::PathBuf;

use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::{Client, LocalResponse};

use pcii_portal::audit::log::Actor;
use pcii_portal::auth::accounts::{self, Membership, NewAccount};
use pcii_portal::domain::Role;
use pcii_portal::services::Services;

pub const PASSWORD: &str = "correct horse battery staple";
/// The reason an officer gives for validating (every decision needs one).
pub const BASIS: &str = "Statement, certification and files checked";

pub struct TestApp {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub setup_token: Option<String>,
    pub database_url: String,
    #[cfg(feature = "postgres")]
    pg: Option<pg::TestDatabase>,
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::with(|f| f)
    }

    /// Builds the app on a fresh data directory; `tweak` may override settings.
    pub fn with(
        tweak: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment,
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        #[cfg(feature = "postgres")]
        let pg = pg::TestDatabase::create();
        #[cfg(feature = "postgres")]
        let database_url = pg.as_ref().map(|p| p.url.clone()).unwrap_or_default();
        #[cfg(not(feature = "postgres"))]
        let database_url = String::new();
        let figment = tweak(base_figment(dir.path(), &database_url));
        let (rocket, startup) = pcii_portal::build(figment).expect("build the portal");
        let client = Client::untracked(rocket).expect("rocket client");
        TestApp {
            client,
            setup_token: startup.setup_token,
            database_url,
            dir,
            #[cfg(feature = "postgres")]
            pg,
        }
    }

    pub fn state(&self) -> &Services {
        self.client.rocket().state::<Services>().expect("state")
    }

    /// The running portal's "now" (Unix seconds): the time its rules, its sessions and its audit log read.
    pub fn now(&self) -> i64 {
        self.state().clock.now()
    }

    /// Moves the running portal's time forward by `seconds`: every copy of its clock (its rules, its sessions,
    /// its audit log) moves with it. Tests travel in time this way, never by editing timestamps in rows.
    pub fn advance(&self, seconds: i64) {
        self.state().clock.advance(seconds)
    }

    /// The portal's binary, set up to work on this app's data, keys, database and blob store (as the operator's
    /// commands on the host would); add the arguments and run it.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"));
        cmd.env("PCII_CONFIG", "/nonexistent.toml")
            .env("PCII_DATA_DIR", self.data_dir())
            .env("PCII_KEYS_DIR", self.keys_dir())
            .env("PCII_DATABASE_URL", &self.database_url)
            .env("PCII_BLOB_STORE", &self.state().settings.blob_store)
            .env("PCII_LOG", "warn");
        cmd
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn browser(&self) -> Browser<'_> {
        Browser {
            client: &self.client,
            cookies: Vec::new(),
        }
    }

    /// Creates an account directly through the account service (as the host CLI would). For brevity the
    /// tests name organisations: the first account naming one creates it (and administers it), later ones
    /// join that same organisation *by its id*, looked up here in the test, never by the portal.
    pub fn create_user(&self, role: Role, email: &str, organisation: Option<&str>) -> String {
        let membership = match organisation {
            None => Membership::None,
            Some(name) => match self.organisation_id(name) {
                Some(id) => Membership::Existing(id),
                None => Membership::New(name.into()),
            },
        };
        let org_admin = matches!(membership, Membership::New(_)) && role == Role::Submitter;
        self.create_account(NewAccount {
            email: email.into(),
            display_name: format!("Test {email}"),
            role,
            membership,
            org_admin,
            agency: None,
            password: PASSWORD.into(),
        })
    }

    /// Creates an account through the account service. Staff accounts also get an authenticator app (a random
    /// seed, sealed and stored as the portal stores one), so that `Browser::login` can finish their sign-in with
    /// a code; the enrolment pages themselves are tried in `second_factor.rs`.
    pub fn create_account(&self, new: NewAccount) -> String {
        let state = self.state();
        let staff = new.role != Role::Submitter;
        let id = accounts::create(
            &state.db,
            &state.audit,
            &state.hasher,
            &Actor::cli(),
            new,
            state.clock.now(),
        )
        .expect("create")
        .expect("valid account");
        if staff {
            self.enrol_authenticator(&id);
        }
        id
    }

    /// Gives the account an authenticator app with a random seed (test setup, below the web pages).
    pub fn enrol_authenticator(&self, user_id: &str) {
        give_authenticator(self.state(), user_id);
    }

    /// The id of the (first-made) organisation with this exact name, if any: test bookkeeping only.
    pub fn organisation_id(&self, name: &str) -> Option<String> {
        use diesel::prelude::*;
        use pcii_portal::db::schema::organisations;
        self.with_conn(|c| {
            organisations::table
                .filter(organisations::name.eq(name))
                .order(organisations::created_at.asc())
                .select(organisations::id)
                .first(c)
                .optional()
                .unwrap()
        })
    }

    /// A new authorized user, its training and NDA recorded a day ago (both current): its id.
    pub fn create_trained_analyst(&self, email: &str) -> String {
        use diesel::prelude::*;
        use pcii_portal::db::schema::users;
        let id = self.create_user(Role::AuthorizedUser, email, None);
        let day_ago = self.now() - 86_400;
        self.with_conn(|c| {
            diesel::update(users::table.find(&id))
                .set((
                    users::training_completed_at.eq(Some(day_ago)),
                    users::nda_signed_at.eq(Some(day_ago)),
                ))
                .execute(c)
                .unwrap()
        });
        id
    }

    /// A browser signed in as a new account of `role`.
    pub fn login_as(&self, role: Role, email: &str, organisation: Option<&str>) -> Browser<'_> {
        self.create_user(role, email, organisation);
        let mut b = self.browser();
        let res = b.login(email, PASSWORD);
        assert_eq!(res, Status::SeeOther, "login of {email} should succeed");
        b
    }

    /// One signed-in browser for each role (the submitter of organisation "Acme").
    pub fn one_browser_per_role(&self) -> [(Role, Browser<'_>); 5] {
        [
            (
                Role::Submitter,
                self.login_as(Role::Submitter, "s@acme.example", Some("Acme")),
            ),
            (
                Role::Officer,
                self.login_as(Role::Officer, "o@example.gov", None),
            ),
            (
                Role::AuthorizedUser,
                self.login_as(Role::AuthorizedUser, "a@example.gov", None),
            ),
            (
                Role::Auditor,
                self.login_as(Role::Auditor, "u@example.gov", None),
            ),
            (
                Role::Administrator,
                self.login_as(Role::Administrator, "ad@example.gov", None),
            ),
        ]
    }

    /// Runs a closure on a database connection of the app.
    pub fn with_conn<R>(&self, f: impl FnOnce(&mut pcii_portal::db::DbConn) -> R) -> R {
        let mut conn = self.state().db.get().expect("conn");
        f(&mut conn)
    }

    /// The last verify's stored result, which must carry the portal's signature.
    pub fn last_verification(&self) -> Option<pcii_portal::audit::store::Verification> {
        let v = self
            .with_conn(|c| self.state().audit.last_verification(c))
            .expect("reading the last verification")?;
        assert_eq!(v.signed, Some(true), "{v:?}");
        Some(v.record)
    }

    /// The ids of a submission's attachments, in their order on the form.
    pub fn attachment_ids(&self, submission_id: &str) -> Vec<String> {
        use diesel::prelude::*;
        use pcii_portal::db::schema::attachments;
        self.with_conn(|c| {
            attachments::table
                .filter(attachments::submission_id.eq(submission_id))
                .order(attachments::position.asc())
                .select(attachments::id)
                .load(c)
                .unwrap()
        })
    }

    /// Builds a second instance on the same data directory, keys and database, as a restart would (after a
    /// `kill -9`, say): what its start-up did.
    pub fn restart(
        &self,
        tweak: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment,
    ) -> pcii_portal::Startup {
        let figment = tweak(base_figment(self.dir.path(), &self.database_url));
        pcii_portal::build(figment).expect("restart the portal").1
    }

    /// A submission's status, as stored.
    pub fn status_of(&self, id: &str) -> String {
        use diesel::prelude::*;
        use pcii_portal::db::schema::submissions;
        self.with_conn(|c| {
            submissions::table
                .find(id)
                .select(submissions::status)
                .first(c)
                .unwrap()
        })
    }

    /// The id of the account with this (normalised) email address.
    pub fn user_id(&self, email: &str) -> String {
        use diesel::prelude::*;
        use pcii_portal::db::schema::users;
        self.with_conn(|c| {
            users::table
                .filter(users::email.eq(email))
                .select(users::id)
                .first(c)
                .unwrap()
        })
    }

    pub fn audit_count(&self, action: &str) -> i64 {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        self.with_conn(|c| {
            audit_entries::table
                .filter(audit_entries::action.eq(action))
                .count()
                .get_result(c)
                .unwrap()
        })
    }

    /// One round of the server's hourly housekeeping (unconfirmed registrations, expired sessions, lapsed
    /// authenticator enrolments), as its periodic task runs it; `None` when another instance holds the lease.
    pub fn housekeeping_round(&self) -> Option<pcii_portal::auth::unconfirmed::Purge> {
        let rt = rocket::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(pcii_portal::workflow::unconfirmed_purge::round(
            self.state(),
            60,
        ))
        .unwrap()
    }

    /// The reasons recorded with `action`, oldest first.
    pub fn audit_reasons(&self, action: &str) -> Vec<String> {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        self.with_conn(|c| {
            audit_entries::table
                .filter(audit_entries::action.eq(action))
                .order(audit_entries::seq.asc())
                .select(audit_entries::reason)
                .load::<Option<String>>(c)
                .unwrap()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect()
        })
    }
}

fn base_figment(dir: &std::path::Path, database_url: &str) -> rocket::figment::Figment {
    let figment = pcii_portal::figment()
        .merge(("data_dir", dir.join("data")))
        .merge(("keys_dir", dir.join("keys")))
        .merge(("database_url", database_url))
        .merge(("db_pool_size", 4))
        // Every /healthz checks afresh, so that tests see a fault at once (see faults::healthz_…_cached).
        .merge(("healthz_cache_ms", 0));
    match s3_test_store() {
        // Each app its own prefix in the test bucket (the temp dir's unique name), so that no app's sweep meets
        // another's blobs. Endpoint and credentials come from PCII_S3_* and AWS_* variables (see .ci/run).
        Some(bucket) => {
            let name = dir.file_name().unwrap().to_string_lossy();
            figment.merge((
                "blob_store",
                format!("{bucket}/{}", name.trim_start_matches('.')),
            ))
        }
        None => figment,
    }
}

/// Calls `f` with each of `inputs`, each on its own thread, all released at once: requests racing each other, as a
/// burst of them does. The answers come back in the order of `inputs`.
/// The actor a request of `user` records: the account and its role, no address or request id. For tests that call
/// the workflow directly, as a request begun earlier would.
pub fn actor_of(user: &pcii_portal::models::account::User) -> Actor {
    Actor {
        user_id: Some(user.id.clone()),
        role: Some(user.role().as_str().into()),
        client_addr: None,
        request_id: None,
        session: None,
    }
}

pub fn all_at_once<T: Sync, R: Send>(inputs: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let start = std::sync::Barrier::new(inputs.len());
    std::thread::scope(|s| {
        let threads: Vec<_> = inputs
            .iter()
            .map(|input| {
                let (start, f) = (&start, &f);
                s.spawn(move || {
                    start.wait();
                    f(input)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// `PCII_TEST_BLOB_STORE` (`s3://bucket`): the suites run with their blobs in that S3 bucket.
pub fn s3_test_store() -> Option<String> {
    std::env::var("PCII_TEST_BLOB_STORE")
        .ok()
        .filter(|s| !s.is_empty())
}

impl TestApp {
    /// What the blob store holds: every committed blob's name, and (filesystem store) every other file in its
    /// directory too — temporaries included, so that "nothing left behind" sees them — but its owner lock.
    pub fn blob_files(&self) -> Vec<String> {
        let mut names: Vec<String> = if self.state().settings.blob_store.is_empty() {
            // The store always exists while the app runs, holding its owner lock: a missing directory or no lock
            // means this is not the live store, and "nothing in it" would prove nothing.
            let dir = self.data_dir().join("blobs");
            let all: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("the blob store directory {}: {e}", dir.display()))
                .map(|e| {
                    e.expect("a blob store directory entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            assert!(
                all.iter().any(|n| n.starts_with(".owner-")),
                "no owner lock in {}: not the live blob store ({all:?})",
                dir.display()
            );
            all.into_iter()
                .filter(|n| !n.starts_with(".owner-"))
                .collect()
        } else {
            self.state()
                .blobs
                .list()
                .expect("list the blob store")
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        names.sort();
        names
    }

    pub fn blob_exists(&self, name: &str) -> bool {
        self.state().blobs.exists(name).expect("ask the blob store")
    }

    pub fn read_blob(&self, name: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut self.state().blobs.open(name).expect("open a blob"),
            &mut bytes,
        )
        .expect("read a blob");
        bytes
    }

    /// Replaces a committed blob's bytes in place, as an intruder with write access to the store would.
    pub fn overwrite_blob(&self, name: &str, bytes: &[u8]) {
        let settings = &self.state().settings;
        if settings.blob_store.is_empty() {
            std::fs::write(self.data_dir().join("blobs").join(name), bytes).unwrap();
            return;
        }
        let location = pcii_portal::storage::s3::S3Location::parse(&settings.blob_store).unwrap();
        let store =
            pcii_portal::storage::S3BlobStore::open(location, &settings.s3_options()).unwrap();
        store.overwrite(name, bytes.to_vec()).unwrap();
    }
}

/// One person's browser: its own cookie jar over the shared client.
pub struct Browser<'c> {
    pub client: &'c Client,
    pub cookies: Vec<rocket::http::Cookie<'static>>,
}

pub struct Page {
    pub status: Status,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// The id of the submission a form made or saved: its answer redirects to `/submissions/<id>/receipt` (sent),
/// `/submissions/<id>` or `/submissions/<id>/edit#files` (a draft).
pub fn submission_id(page: &Page) -> String {
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    page.header("Location")
        .unwrap()
        .trim_start_matches("/submissions/")
        .split(['/', '#', '?'])
        .next()
        .unwrap()
        .to_string()
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The value of the header `name` (any case) among a response's headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl<'c> Browser<'c> {
    fn absorb(&mut self, res: &LocalResponse<'_>) {
        for c in res.cookies().iter() {
            self.cookies.retain(|k| k.name() != c.name());
            let removed =
                c.value().is_empty() || c.max_age().is_some_and(|a| a.is_zero() || a.is_negative());
            if !removed {
                self.cookies.push(c.clone().into_owned());
            }
        }
    }

    fn finish(&mut self, res: LocalResponse<'_>) -> Page {
        self.absorb(&res);
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        let body = res.into_string().unwrap_or_default();
        Page {
            status,
            body,
            headers,
        }
    }

    pub fn get(&mut self, uri: &str) -> Page {
        let mut req = self.client.get(uri.to_string());
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        let res = req.dispatch();
        self.finish(res)
    }

    pub fn post_raw(&mut self, uri: &str, body: String, extra: Option<Header<'static>>) -> Page {
        let mut req = self
            .client
            .post(uri.to_string())
            .header(ContentType::Form)
            .body(body);
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        if let Some(h) = extra {
            req = req.header(h);
        }
        let res = req.dispatch();
        self.finish(res)
    }

    /// Posts a form with the page's anti-forgery token added.
    pub fn post(&mut self, uri: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(uri, encode(&all), None)
    }

    /// The anti-forgery token the current session's forms carry.
    pub fn csrf(&mut self) -> String {
        let pages: &[&str] = if self
            .cookies
            .iter()
            .any(|c| c.name() == "pcii_session" || c.name() == "__Host-pcii_session")
        {
            // Signed in; owing the second factor; or enrolling one.
            &[
                "/account",
                "/login/second-factor",
                "/account/security",
                "/login",
            ]
        } else {
            &["/login"]
        };
        for uri in pages {
            if let Some(token) = extract_csrf(&self.get(uri).body) {
                return token;
            }
        }
        panic!("no page with a csrf field")
    }

    /// Signs in with the password and, when the portal then asks for the account's second factor, gives a code
    /// from its authenticator app. Returns the status of the password step.
    pub fn login(&mut self, email: &str, password: &str) -> Status {
        let page = self.post("/login", &[("email", email), ("password", password)]);
        if page.header("Location") == Some("/login/second-factor") {
            let done = self.give_second_factor(email);
            assert_eq!(
                done.status,
                Status::SeeOther,
                "the second factor of {email}: {}",
                done.body
            );
        }
        page.status
    }

    /// Opens a confirmation link (`/verify-email/<token>`), as a registrant does, and signs in on its page with
    /// `email` and `password`: the answer to that sign-in (303 to the dashboard once the address is confirmed).
    pub fn confirm_address(&mut self, link: &str, email: &str, password: &str) -> Page {
        let page = self.get(link);
        assert_eq!(page.status, Status::Ok, "{link}: {}", page.body);
        assert!(
            page.body.contains("Confirm your email address"),
            "{}",
            page.body
        );
        let token = link.trim_start_matches("/verify-email/");
        self.post(
            "/login",
            &[("email", email), ("password", password), ("confirm", token)],
        )
    }

    /// Posts a fresh authenticator code of `email` to finish signing in.
    pub fn give_second_factor(&mut self, email: &str) -> Page {
        let code = totp_code(self.state(), email);
        self.post("/login/second-factor", &[("factor_code", &code)])
    }

    pub fn state(&self) -> &Services {
        self.client.rocket().state::<Services>().expect("state")
    }

    /// Enrols an authenticator app through the pages, as a person would: opens the setup page, reads the secret
    /// shown as text, and confirms it with a code computed from it. Returns the seed and the recovery codes shown.
    pub fn enrol_authenticator_on_pages(&mut self) -> (Vec<u8>, Vec<String>) {
        let setup = self.get("/account/security/totp");
        assert_eq!(setup.status, Status::Ok, "{}", setup.body);
        let seed = shown_secret(&setup.body);
        let clock = self.state().clock.clone();
        let code = code_for(&seed, 0, &clock);
        let done = self.post("/account/security/totp", &[("code", &code)]);
        assert_eq!(
            done.header("Location"),
            Some("/account/security/recovery-codes"),
            "{}",
            done.body
        );
        (seed, self.recovery_codes_shown_once())
    }

    /// The recovery codes page a new set redirects to: its codes (shown once; a second look finds none).
    pub fn recovery_codes_shown_once(&mut self) -> Vec<String> {
        let page = self.get("/account/security/recovery-codes");
        assert_eq!(page.status, Status::Ok, "{}", page.body);
        let codes = shown_recovery_codes(&page.body);
        let again = self.get("/account/security/recovery-codes");
        assert_eq!(again.header("Location"), Some("/account/security"));
        codes
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.name() == "pcii_session")
            .map(|c| c.value().to_string())
    }
}

/// The TOTP seed a setup page shows as text (base32 in groups of four).
pub fn shown_secret(html: &str) -> Vec<u8> {
    let start = html
        .find(r#"id="totp-secret">"#)
        .expect("the secret on the page")
        + 17;
    let end = start + html[start..].find("</code>").unwrap();
    let text: String = html[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    totp_rs::Secret::try_from_base32(&text)
        .expect("base32")
        .as_ref()
        .to_vec()
}

/// The recovery codes a page shows (each in a `<code>` of the list `recovery-codes`).
pub fn shown_recovery_codes(html: &str) -> Vec<String> {
    let Some(start) = html.find(r#"id="recovery-codes""#) else {
        return Vec::new();
    };
    let end = start + html[start..].find("</ul>").unwrap();
    html[start..end]
        .split("<code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap().to_string())
        .collect()
}

/// Gives the account an authenticator app with a random seed, sealed and stored as the portal stores one.
pub fn give_authenticator(state: &Services, user_id: &str) {
    use rand::RngCore;
    let mut seed = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let sealed = {
        let ring = state.current_keys();
        let ring = ring.read().unwrap();
        pcii_portal::key_store::account_secrets::seal(&ring, &seed).unwrap()
    };
    let mut conn = state.db.get().expect("conn");
    pcii_portal::models::second_factor::put_totp(
        &mut conn,
        user_id,
        &sealed.stored,
        &sealed.master_key_id,
        0,
        state.clock.now(),
    )
    .unwrap();
}

/// For a client that keeps its own cookies: the second step of signing in, with a code of `email`'s app.
pub fn finish_sign_in(client: &Client, email: &str) -> Status {
    let page = client
        .get("/login/second-factor")
        .dispatch()
        .into_string()
        .unwrap();
    let token = extract_csrf(&page).expect("the second-factor page");
    let state = client.rocket().state::<Services>().unwrap();
    let code = totp_code(state, email);
    client
        .post("/login/second-factor")
        .header(ContentType::Form)
        .body(encode(&[("csrf", &token), ("factor_code", &code)]))
        .dispatch()
        .status()
}

/// A code from the authenticator app of `email` (its seed read as the portal reads it), for a time step later than
/// any it has used: a code is accepted once, so a third sign-in within one 30-second step moves the portal's clock on.
pub fn totp_code(state: &Services, email: &str) -> String {
    use pcii_portal::models::{account, second_factor};
    let mut conn = state.db.get().expect("conn");
    let user = account::find_by_email(&mut conn, &account::normalize_email(email))
        .unwrap()
        .expect("the account");
    let factor = second_factor::find_totp(&mut conn, &user.id)
        .unwrap()
        .expect("an authenticator app");
    let seed = {
        let ring = state.current_keys();
        let ring = ring.read().unwrap();
        pcii_portal::key_store::account_secrets::open(&ring, &factor.secret_sealed).unwrap()
    };
    code_for(&seed, factor.last_step, &state.clock)
}

/// A code of `seed` for the earliest time step after `last_step` the portal accepts now (one step of skew).
pub fn code_for(seed: &[u8], last_step: i64, clock: &pcii_portal::clock::Clock) -> String {
    let current = clock.now() / 30;
    let step = current.max(last_step + 1);
    if step > current + 1 {
        clock.advance(30 * (step - current - 1));
    }
    totp_rs::Builder::new()
        .with_secret(seed.to_vec())
        .build()
        .unwrap()
        .generate((step * 30) as u64)
        .to_string()
}

/// One part of a multipart/form-data body.
pub enum Part<'a> {
    Text(&'a str, &'a str),
    /// Field name, file name (sent as-is), bytes.
    File(&'a str, &'a str, &'a [u8]),
}

pub const BOUNDARY: &str = "----pcii-test-boundary-7MA4YWxkTrZu0gW";

/// Builds a multipart/form-data body (file names are written as given, between quotes).
pub fn multipart_body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(value.as_bytes());
            }
            Part::File(name, file_name, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl<'c> Browser<'c> {
    /// Posts a multipart body as is (no token added).
    pub fn post_multipart_raw(&mut self, uri: &str, body: Vec<u8>) -> Page {
        self.send_multipart(uri, body, None)
    }

    /// Posts a multipart form with the session's anti-forgery token as its first part.
    pub fn post_multipart(&mut self, uri: &str, parts: &[Part<'_>]) -> Page {
        let body = self.multipart_with_token(parts);
        self.send_multipart(uri, body, None)
    }

    /// Posts a multipart form as `static/upload.js` does: asking for a redirect as data (`Pcii-Redirect: json`).
    pub fn post_multipart_as_script(&mut self, uri: &str, parts: &[Part<'_>]) -> Page {
        let body = self.multipart_with_token(parts);
        self.send_multipart(uri, body, Some(Header::new("Pcii-Redirect", "json")))
    }

    fn multipart_with_token(&mut self, parts: &[Part<'_>]) -> Vec<u8> {
        let token = self.csrf();
        let mut all = vec![Part::Text("csrf", token.as_str())];
        for p in parts {
            all.push(match p {
                Part::Text(n, v) => Part::Text(n, v),
                Part::File(n, f, b) => Part::File(n, f, b),
            });
        }
        multipart_body(&all)
    }

    /// Posts a form with the session's token, framed with `boundary` instead of the usual one.
    pub fn post_multipart_with_boundary(
        &mut self,
        uri: &str,
        boundary: &str,
        parts: &[Part<'_>],
    ) -> Page {
        let body = String::from_utf8(self.multipart_with_token(parts))
            .expect("text parts")
            .replace(BOUNDARY, boundary);
        let ct = ContentType::new("multipart", "form-data")
            .with_params(("boundary", boundary.to_string()));
        let mut req = self.client.post(uri.to_string()).header(ct).body(body);
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        let res = req.dispatch();
        self.finish(res)
    }

    fn send_multipart(&mut self, uri: &str, body: Vec<u8>, extra: Option<Header<'static>>) -> Page {
        let ct = ContentType::new("multipart", "form-data").with_params(("boundary", BOUNDARY));
        let mut req = self.client.post(uri.to_string()).header(ct).body(body);
        if let Some(h) = extra {
            req = req.header(h);
        }
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        let res = req.dispatch();
        self.finish(res)
    }

    /// GETs without reading the body: the response, and whatever its body holds, stays alive until dropped (a
    /// client that stopped reading).
    pub fn get_unread(&mut self, uri: &str) -> rocket::local::blocking::LocalResponse<'c> {
        let mut req = self.client.get(uri.to_string());
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        req.dispatch()
    }

    /// Posts a form (the anti-forgery token added) without reading the answer's body (as [`Self::get_unread`]).
    pub fn post_unread(
        &mut self,
        uri: &str,
        fields: &[(&str, &str)],
    ) -> rocket::local::blocking::LocalResponse<'c> {
        let token = self.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let mut req = self
            .client
            .post(uri.to_string())
            .header(ContentType::Form)
            .body(encode(&all));
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        req.dispatch()
    }

    /// Posts a form (the anti-forgery token added) whose answer is a file: its status, bytes and headers.
    pub fn post_bytes(
        &mut self,
        uri: &str,
        fields: &[(&str, &str)],
    ) -> (Status, Option<Vec<u8>>, Vec<(String, String)>) {
        let res = self.post_unread(uri, fields);
        self.bytes_of(res)
    }

    /// GETs a binary body: status, the body if it was read to a clean end, headers.
    pub fn get_bytes(&mut self, uri: &str) -> (Status, Option<Vec<u8>>, Vec<(String, String)>) {
        let mut req = self.client.get(uri.to_string());
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        let res = req.dispatch();
        self.bytes_of(res)
    }

    /// GETs a binary body as [`Self::get_bytes`] does, with extra request headers (a browser's fetch metadata).
    pub fn get_bytes_with(
        &mut self,
        uri: &str,
        extra: &[(&'static str, &'static str)],
    ) -> (Status, Option<Vec<u8>>, Vec<(String, String)>) {
        let mut req = self.client.get(uri.to_string());
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        for (name, value) in extra {
            req = req.header(Header::new(*name, *value));
        }
        let res = req.dispatch();
        self.bytes_of(res)
    }

    fn bytes_of(
        &mut self,
        res: rocket::local::blocking::LocalResponse<'_>,
    ) -> (Status, Option<Vec<u8>>, Vec<(String, String)>) {
        self.absorb(&res);
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        (status, res.into_bytes(), headers)
    }
}

/// The fields of a complete submission form (statement and certifications ticked).
pub const STATEMENT_PARTS: [(&str, &str); 4] = [
    ("express_statement", "yes"),
    ("cert_not_public", "yes"),
    ("cert_not_regulatory", "yes"),
    ("cert_authorized", "yes"),
];

pub fn complete_fields<'a>(narrative: &'a str, action: &'a str) -> Vec<Part<'a>> {
    let mut parts = vec![
        Part::Text("sector", "Energy"),
        Part::Text("title", "Substation 14 protection scheme"),
        Part::Text("narrative", narrative),
        Part::Text("primary_name", "Ann Operator"),
        Part::Text("primary_email", "ann@acme.example"),
        Part::Text("primary_phone", "+1 555 0100"),
        Part::Text("federal_requirement", "no"),
    ];
    for (k, v) in STATEMENT_PARTS {
        parts.push(Part::Text(k, v));
    }
    parts.push(Part::Text("action", action));
    parts
}

/// A zip's comment and its members (name, bytes), in archive order.
pub fn zip_members(bytes: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a valid zip");
    let comment = String::from_utf8_lossy(z.comment()).into_owned();
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap();
        out.push((f.name().unwrap().to_string(), v));
    }
    (comment, out)
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Pseudo-random bytes with a marker in the middle.
pub fn file_bytes(len: usize, seed: u8, marker: &str) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect();
    let at = len / 2;
    v[at..at + marker.len()].copy_from_slice(marker.as_bytes());
    v
}

pub fn extract_csrf(html: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

pub fn encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(feature = "postgres")]
mod pg {
    use diesel::{Connection, RunQueryDsl};

    /// A fresh PostgreSQL database per test, dropped at the end.
    pub struct TestDatabase {
        pub url: String,
        admin_url: String,
        name: String,
    }

    impl TestDatabase {
        pub fn create() -> Option<TestDatabase> {
            let admin_url = std::env::var("PCII_TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())?;
            let name = format!("pcii_test_{}", pcii_portal::db::new_id());
            let mut c = diesel::pg::PgConnection::establish(&admin_url)
                .expect("connect to PCII_TEST_DATABASE_URL");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .expect("create test database");
            let (base, _) = admin_url
                .rsplit_once('/')
                .expect("database URL with a database name");
            Some(TestDatabase {
                url: format!("{base}/{name}"),
                admin_url,
                name,
            })
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            if let Ok(mut c) = diesel::pg::PgConnection::establish(&self.admin_url) {
                let _ = diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut c);
            }
        }
    }
}

/// Requests from a given client address (Rocket's `LocalRequest::remote`), for limits kept per address.
impl<'c> Browser<'c> {
    /// Posts a form (anti-forgery token added) from `addr`, with extra headers; keeps the cookies it sets.
    pub fn post_with(
        &mut self,
        uri: &str,
        fields: &[(&str, &str)],
        addr: std::net::SocketAddr,
        extra: &[Header<'static>],
    ) -> Page {
        let token = self.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let mut req = self
            .client
            .post(uri.to_string())
            .header(ContentType::Form)
            .remote(addr)
            .body(encode(&all));
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        for h in extra {
            req = req.header(h.clone());
        }
        let res = req.dispatch();
        self.finish(res)
    }

    /// Posts a form (anti-forgery token added) from `addr`.
    pub fn post_from(
        &mut self,
        uri: &str,
        fields: &[(&str, &str)],
        addr: std::net::SocketAddr,
    ) -> Page {
        self.post_with(uri, fields, addr, &[])
    }

    /// Signs in from `addr`; keeps the session cookie on success.
    pub fn login_from(
        &mut self,
        email: &str,
        password: &str,
        addr: std::net::SocketAddr,
    ) -> Status {
        self.post_from("/login", &[("email", email), ("password", password)], addr)
            .status
    }
}

impl TestApp {
    /// Every message the portal wrote to its outbox (no SMTP configured), oldest first, with
    /// quoted-printable soft line breaks undone.
    pub fn outbox(&self) -> Vec<String> {
        // A reset request answers before its mail is written: wait for such mail to be through.
        assert!(self
            .state()
            .mailer
            .wait_for_detached(std::time::Duration::from_secs(30)));
        let dir = self.data_dir().join("outbox");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=")
            })
            .collect()
    }

    /// Makes the mail route refuse every message, as an SMTP server that is down would: a file where the outbox
    /// directory was. [`TestApp::mend_outbox`] puts the directory back, with what it held.
    pub fn break_outbox(&self) {
        let dir = self.data_dir().join("outbox");
        std::fs::rename(&dir, self.data_dir().join("outbox.away")).unwrap();
        std::fs::write(&dir, b"").unwrap();
    }

    pub fn mend_outbox(&self) {
        let dir = self.data_dir().join("outbox");
        std::fs::remove_file(&dir).unwrap();
        std::fs::rename(self.data_dir().join("outbox.away"), &dir).unwrap();
    }

    /// Mail acts promised that the mail route has not taken yet.
    pub fn pending_mail(&self) -> i64 {
        self.with_conn(|c| pcii_portal::models::pending_mail::count(c).unwrap())
    }

    /// One notification round, as the periodic task runs it (this test app is the only instance: it holds the
    /// lease).
    pub fn notification_round(&self) -> pcii_portal::workflow::notifications::Round {
        let rt = rocket::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(pcii_portal::workflow::notifications::round(
            self.state(),
            60,
        ))
        .unwrap()
        .expect("the only instance holds the lease")
    }

    /// The path of the link starting with `prefix` (e.g. "/invitations/") in the newest message to `to`.
    pub fn mailed_link(&self, to: &str, prefix: &str) -> Option<String> {
        self.outbox()
            .into_iter()
            .rev()
            .filter(|m| {
                m.to_lowercase()
                    .contains(&format!("to: {}", to.to_lowercase()))
            })
            .find_map(|m| {
                let at = m.find(prefix)?;
                let rest = &m[at..];
                let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                Some(rest[..end].to_string())
            })
    }
}

/// Reads the first piece of a 200 response, does `meanwhile`, then reads what else comes: how many bytes arrived in
/// all (a response cut off ends early, short of its declared length).
pub fn received_around(
    mut res: rocket::local::blocking::LocalResponse<'_>,
    meanwhile: impl FnOnce(),
) -> usize {
    use std::io::Read;
    assert_eq!(res.status(), Status::Ok);
    let mut first = vec![0u8; 64 * 1024];
    let n = res.read(&mut first).unwrap();
    assert!(n > 0);
    meanwhile();
    let mut rest = Vec::new();
    let _ = res.read_to_end(&mut rest);
    n + rest.len()
}

/// A blob store that hands every call to `inner` and runs `before_delete` (with the blob's name) before each
/// deletion: for tests that act, or look, at the moment the store is asked to delete.
pub struct BeforeDelete<F> {
    pub inner: std::sync::Arc<dyn pcii_portal::storage::BlobStore>,
    pub before_delete: F,
}

impl<F: Fn(&str) + Send + Sync + 'static> pcii_portal::storage::BlobStore for BeforeDelete<F> {
    fn create(&self) -> std::io::Result<Box<dyn pcii_portal::storage::BlobWriter>> {
        self.inner.create()
    }
    fn open(&self, name: &str) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        self.inner.open(name)
    }
    fn delete(&self, name: &str) -> std::io::Result<()> {
        (self.before_delete)(name);
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> std::io::Result<bool> {
        self.inner.exists(name)
    }
    fn list(&self) -> std::io::Result<Vec<(String, std::time::Duration)>> {
        self.inner.list()
    }
    fn sweep_temporaries(&self, older_than: std::time::Duration) -> std::io::Result<usize> {
        self.inner.sweep_temporaries(older_than)
    }
    fn is_available(&self) -> bool {
        self.inner.is_available()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
