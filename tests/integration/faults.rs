//! Faults of ours get honest answers: a locked database or a disk nearly full is a 503 (try again, with
//! Retry-After) or a 507 (storage full), never a 500; `/healthz` says `degraded` while it lasts, and nothing is
//! left half-written.

use diesel::connection::SimpleConnection;
use rocket::http::Status;

use crate::common::*;
use pcii_portal::domain::Role;

fn healthz(app: &TestApp) -> (Status, serde_json::Value) {
    let res = app.client.get("/healthz").dispatch();
    let status = res.status();
    let body: serde_json::Value = serde_json::from_str(&res.into_string().unwrap()).unwrap();
    (status, body)
}

/// Takes the database's write lock on a connection of its own and keeps it until dropped (SQLite: an exclusive
/// transaction; PostgreSQL: the audit chain's head and the settings table locked).
struct WriteLock(pcii_portal::db::PooledConn);

impl WriteLock {
    fn take(app: &TestApp) -> WriteLock {
        WriteLock::take_on(app, "audit_head, settings")
    }

    /// SQLite: the whole database; PostgreSQL: the tables named (reads of them wait too).
    fn take_on(app: &TestApp, pg_tables: &str) -> WriteLock {
        let mut conn = app.state().db.get().expect("conn");
        let sql = if app.database_url.is_empty() {
            "BEGIN EXCLUSIVE".to_string()
        } else {
            format!("BEGIN; LOCK TABLE {pg_tables} IN ACCESS EXCLUSIVE MODE")
        };
        conn.batch_execute(&sql).expect("lock");
        WriteLock(conn)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.batch_execute("ROLLBACK");
    }
}

#[test]
fn a_locked_database_is_a_503_with_retry_after_and_healthz_degraded_until_it_frees() {
    let app = TestApp::with(|f| f.merge(("database_busy_timeout_ms", 300)));
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    assert_eq!(healthz(&app).0, Status::Ok);
    let mut b = app.browser();
    let token = b.csrf();
    let entries_before = app.with_conn(|c| pcii_portal::audit::store::head(c).unwrap().0);

    let lock = WriteLock::take(&app);
    let (status, body) = healthz(&app);
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["database"], "read-only or locked");
    // A sign-in must write (its audit entry, its session): it cannot, and says so, quickly and honestly.
    let page = b.post(
        "/login",
        &[
            ("csrf", &token),
            ("email", "ann@acme.example"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(page.status, Status::ServiceUnavailable, "{}", page.body);
    assert_eq!(page.header("Retry-After"), Some("5"));
    assert!(
        page.body.contains("Try again in a few seconds"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Something went wrong"));
    // Machines get JSON with the same status.
    let page = b.post_raw(
        "/login",
        encode(&[
            ("csrf", &token),
            ("email", "ann@acme.example"),
            ("password", PASSWORD),
        ]),
        Some(rocket::http::Header::new("Accept", "application/json")),
    );
    assert_eq!(page.status, Status::ServiceUnavailable);
    let json: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(json["status"], 503);
    drop(lock);

    // Nothing was half-done: no entry, no session; and now it works.
    assert_eq!(
        app.with_conn(|c| pcii_portal::audit::store::head(c).unwrap().0),
        entries_before
    );
    assert_eq!(healthz(&app).0, Status::Ok);
    assert_eq!(b.login("ann@acme.example", PASSWORD), Status::SeeOther);
}

#[test]
fn a_disk_under_the_free_space_threshold_refuses_uploads_with_507_and_keeps_nothing() {
    // A threshold larger than any disk: the portal must behave as on a full one.
    let app = TestApp::with(|f| f.merge(("min_free_disk_mib", 1u64 << 40)));
    let (status, body) = healthz(&app);
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["disk"], "low on free space");
    assert_eq!(body["database"], "ok");

    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let file = file_bytes(200_000, 7, "");
    let mut parts = complete_fields("A narrative.", "submit");
    parts.push(Part::Text("description_1", "Diagram"));
    parts.push(Part::File("file_1", "diagram.pdf", &file));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::InsufficientStorage, "{}", page.body);
    assert!(page.body.contains("storage is full"), "{}", page.body);
    let blobs: Vec<_> = std::fs::read_dir(app.data_dir().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".owner-"))
        .collect();
    assert!(blobs.is_empty(), "nothing may be stored: {blobs:?}");
    let rows: i64 = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::submissions::dsl::*;
        submissions.count().get_result(c).unwrap()
    });
    assert_eq!(rows, 0);
}

/// The reasons of the audit log's `access.refused` entries, oldest first.
fn refusal_reasons(app: &TestApp) -> Vec<String> {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("access.refused"))
            .order(audit_entries::seq)
            .select(audit_entries::reason)
            .load::<Option<String>>(c)
            .unwrap()
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
    })
}

#[test]
fn a_flood_of_anonymous_refusals_is_one_entry_and_a_count_per_address_route_and_minute() {
    let app = TestApp::new();
    for _ in 0..50 {
        assert_eq!(
            app.client.get("/officer").dispatch().status(),
            Status::Unauthorized
        );
    }
    // Another route from the same address has its own first entry.
    assert_eq!(
        app.client.get("/admin").dispatch().status(),
        Status::Unauthorized
    );
    assert_eq!(
        app.audit_count("access.refused"),
        2,
        "{:?}",
        refusal_reasons(&app)
    );

    // A signed-in person's refusals are each recorded: who tried what.
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    for _ in 0..3 {
        assert_eq!(b.get("/officer").status, Status::Forbidden);
    }
    assert_eq!(app.audit_count("access.refused"), 5);

    // A minute on, the next anonymous refusal closes the window: its 49 others become one entry with their count.
    app.advance(61);
    assert_eq!(
        app.client.get("/officer").dispatch().status(),
        Status::Unauthorized
    );
    let reasons = refusal_reasons(&app);
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    assert!(
        reasons[5].starts_with("49 more like this from this address"),
        "{reasons:?}"
    );
    assert_eq!(reasons[6], "not logged in", "{reasons:?}");

    // Addresses of one IPv6 /64 are one party: rotating through them buys no entries; the next /64 is another.
    let at = |s: &str| std::net::SocketAddr::new(s.parse().unwrap(), 40000);
    for i in 1..=20 {
        let from = at(&format!("2001:db8:9:1::{i:x}"));
        let res = app.client.get("/officer").remote(from).dispatch();
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let res = app
        .client
        .get("/officer")
        .remote(at("2001:db8:9:2::1"))
        .dispatch();
    assert_eq!(res.status(), Status::Unauthorized);
    assert_eq!(
        refusal_reasons(&app).len(),
        9,
        "{:?}",
        refusal_reasons(&app)
    );
    app.advance(61);
    let res = app
        .client
        .get("/officer")
        .remote(at("2001:db8:9:1::99"))
        .dispatch();
    assert_eq!(res.status(), Status::Unauthorized);
    let reasons = refusal_reasons(&app);
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("19 more like this from this network")),
        "{reasons:?}"
    );
    // The chain is whole.
    assert!(app
        .with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], None))
        .is_ok());
}

#[test]
fn sign_in_attempts_are_rate_limited_per_address_before_any_password_is_checked() {
    let app = TestApp::with(|f| f.merge(("login_attempts_per_minute", 5)));
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut b = app.browser();
    // Five attempts a minute from this address, each for another account (so no account's own lock applies).
    for i in 0..5 {
        assert_eq!(
            b.login(&format!("nobody{i}@acme.example"), PASSWORD),
            Status::Unauthorized
        );
    }
    // Past the rate, even the right password is refused unchecked; the flood is one folded entry.
    for _ in 0..10 {
        assert_eq!(
            b.login("ann@acme.example", PASSWORD),
            Status::TooManyRequests
        );
    }
    let refused = |app: &TestApp| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries as a;
        app.with_conn(|c| {
            a::table
                .filter(a::action.eq("auth.login"))
                .filter(a::outcome.eq("refused"))
                .count()
                .get_result::<i64>(c)
                .unwrap()
        })
    };
    assert_eq!(refused(&app), 1);
    // A minute on, this address may sign in again.
    app.advance(61);
    assert_eq!(b.login("ann@acme.example", PASSWORD), Status::SeeOther);
}

#[test]
fn rotating_through_the_64s_of_one_ipv6_48_does_not_multiply_the_sign_in_allowance() {
    // One attempt a minute per /64, sixteen per /48.
    let app = TestApp::with(|f| f.merge(("login_attempts_per_minute", 1)));
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut b = app.browser();
    let from = |net: u16| {
        std::net::SocketAddr::new(format!("2001:db8:7:{net:x}::1").parse().unwrap(), 4000)
    };
    // Sixteen /64s of 2001:db8:7::/48 each have their one attempt (for accounts that do not exist)...
    for net in 0..16u16 {
        let status = b.login_from(&format!("nobody{net}@acme.example"), PASSWORD, from(net));
        assert_eq!(status, Status::Unauthorized, "/64 number {net}");
    }
    // ...and a seventeenth /64 of the same /48 is refused unchecked, even with the right password.
    assert_eq!(
        b.login_from("ann@acme.example", PASSWORD, from(16)),
        Status::TooManyRequests
    );
    // Another /48 is another site.
    let elsewhere = std::net::SocketAddr::new("2001:db8:8::1".parse().unwrap(), 4000);
    assert_eq!(
        b.login_from("ann@acme.example", PASSWORD, elsewhere),
        Status::SeeOther
    );
    // A minute on, the site may sign in again.
    app.advance(61);
    let mut c = app.browser();
    assert_eq!(
        c.login_from("ann@acme.example", PASSWORD, from(17)),
        Status::SeeOther
    );
}

#[test]
fn invalid_utf8_anywhere_is_a_4xx_never_a_500() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    // In a path, a parameter, a page number: refused or ignored, never a fault.
    for uri in [
        "/submissions/%FF%FE",
        "/submissions/new?x=%FF",
        "/%FF",
        "/dashboard?page=%C3%28",
    ] {
        let page = b.get(uri);
        assert!(page.status.code < 500, "{uri}: {}", page.status);
    }
    assert_eq!(b.get("/submissions/%FF%FE").status, Status::NotFound);
    assert_eq!(
        b.get("/submissions?page=%FF").status,
        Status::UnprocessableEntity
    );
    // In a form's fields.
    let token = b.csrf();
    let page = b.post_raw(
        "/account/password",
        format!("csrf={token}&current_password=%FF&new_password=%FE%FF"),
        None,
    );
    assert!((400..500).contains(&page.status.code), "{}", page.status);
}

/// A session store that does not answer while a form arrives is a 503 ("try again"), not a stale-form 403: the
/// token must not be checked against the anonymous one when the person may well be signed in.
#[test]
fn a_form_sent_while_the_session_store_does_not_answer_is_a_503_not_a_stale_form() {
    let app = TestApp::with(|f| f.merge(("database_busy_timeout_ms", 300)));
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut b = app.browser();
    assert_eq!(b.login("ann@acme.example", PASSWORD), Status::SeeOther);
    let token = b.csrf();
    // Past the idle timeout the lookup must delete the session (a write); the store is locked, so it cannot.
    app.advance(31 * 60);
    let lock = WriteLock::take_on(&app, "sessions");
    // The sign-in form has no session guard of its own: only the token check looks at the session.
    let page = b.post_raw(
        "/login",
        encode(&[
            ("csrf", &token),
            ("email", "ann@acme.example"),
            ("password", PASSWORD),
        ]),
        None,
    );
    assert_eq!(page.status, Status::ServiceUnavailable, "{}", page.body);
    assert!(!page.body.contains("stale"), "{}", page.body);
    drop(lock);
    assert_eq!(app.audit_count("csrf.refused"), 0);
}

/// Whoever holds one address of an IPv6 /64 holds them all: sign-in attempts from its addresses count together,
/// and rotating through them buys nothing; the next /64 is another party.
#[test]
fn sign_in_attempts_from_one_ipv6_64_count_together() {
    let app = TestApp::with(|f| f.merge(("login_attempts_per_minute", 3)));
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let at = |s: &str| std::net::SocketAddr::new(s.parse().unwrap(), 40000);
    let mut b = app.browser();
    for (i, from) in ["2001:db8:7:1::1", "2001:db8:7:1::2", "2001:db8:7:1:a:b:c:d"]
        .into_iter()
        .enumerate()
    {
        let email = format!("nobody{i}@acme.example");
        let page = b.post_from(
            "/login",
            &[("email", &email), ("password", PASSWORD)],
            at(from),
        );
        assert_eq!(page.status, Status::Unauthorized, "attempt {i} from {from}");
    }
    let page = b.post_from(
        "/login",
        &[("email", "ann@acme.example"), ("password", PASSWORD)],
        at("2001:db8:7:1:ffff::9"),
    );
    assert_eq!(page.status, Status::TooManyRequests, "{}", page.body);
    let page = b.post_from(
        "/login",
        &[("email", "ann@acme.example"), ("password", PASSWORD)],
        at("2001:db8:7:2::1"),
    );
    assert_ne!(page.status, Status::TooManyRequests, "{}", page.body);
}

/// With `healthz_cache_ms` set (1 s by default), `/healthz` answers from its last check within it: a flood of it
/// costs the database and the store one check, not one per request. Seen here with the database locked meanwhile:
/// a check would find it locked (503, as above); the answers within the interval are the last check's.
#[test]
fn healthz_within_its_interval_answers_from_the_last_check() {
    let app = TestApp::with(|f| {
        f.merge(("healthz_cache_ms", 60_000))
            .merge(("database_busy_timeout_ms", 300))
    });
    assert_eq!(healthz(&app).0, Status::Ok);
    let lock = WriteLock::take(&app);
    for _ in 0..20 {
        let (status, body) = healthz(&app);
        assert_eq!(status, Status::Ok, "{body}");
    }
    drop(lock);
}

/// Makes every commit that appended an audit entry fail at COMMIT, after the act's statements all succeeded: a
/// deferred constraint on the audit table (SQLite checks a deferred foreign key at COMMIT; PostgreSQL runs a
/// deferred constraint trigger there). Dropped again by `disarm`.
fn arm_commit_trap(app: &TestApp) {
    let sql = if app.database_url.is_empty() {
        "CREATE TABLE IF NOT EXISTS commit_trap_target (id TEXT PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS commit_trap (ref TEXT REFERENCES commit_trap_target (id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER commit_trap AFTER INSERT ON audit_entries BEGIN INSERT INTO commit_trap VALUES ('none'); END;"
    } else {
        "CREATE OR REPLACE FUNCTION commit_trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trap'; END $$;
         CREATE CONSTRAINT TRIGGER commit_trap AFTER INSERT ON audit_entries DEFERRABLE INITIALLY DEFERRED
             FOR EACH ROW EXECUTE FUNCTION commit_trap();"
    };
    app.with_conn(|c| c.batch_execute(sql))
        .expect("arm the trap");
}

fn disarm_commit_trap(app: &TestApp) {
    let sql = if app.database_url.is_empty() {
        "DROP TRIGGER commit_trap"
    } else {
        "DROP TRIGGER commit_trap ON audit_entries"
    };
    app.with_conn(|c| c.batch_execute(sql))
        .expect("disarm the trap");
}

fn submission_count(app: &TestApp) -> i64 {
    use diesel::{QueryDsl, RunQueryDsl};
    use pcii_portal::db::schema::submissions;
    app.with_conn(|c| submissions::table.count().get_result(c).unwrap())
}

/// A COMMIT that fails after every statement of a save or a message succeeded. On SQLite that is a rollback, and
/// the new files are deleted at once. On PostgreSQL a connection lost during COMMIT leaves the outcome unknown (the
/// server may have committed): the answer is 503 "could not confirm", with no `Retry-After` inviting a resend, and
/// the files are not deleted on a guess but left to the orphan sweep, which removes only what no committed row names.
#[test]
fn a_failed_commit_deletes_files_only_when_its_outcome_is_known() {
    let app = TestApp::new();
    let unknown = !app.database_url.is_empty();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let kept = file_bytes(5_000, 1, "");
    let mut parts = complete_fields("Kept", "submit");
    parts.push(Part::Text("description_1", "Kept"));
    parts.push(Part::File("file_1", "kept.bin", &kept));
    let id = submission_id(&b.post_multipart("/submissions", &parts));
    let (blobs_before, count_before) = (app.blob_files(), submission_count(&app));
    let answered = |page: &Page| {
        if unknown {
            assert_eq!(page.status, Status::ServiceUnavailable, "{}", page.body);
            assert!(page.body.contains("could not confirm"), "{}", page.body);
            assert_eq!(page.header("Retry-After"), None);
        } else {
            assert_eq!(page.status, Status::InternalServerError, "{}", page.body);
        }
        assert!(
            !page.body.contains("trap") && !page.body.contains("FOREIGN KEY"),
            "no internals"
        );
    };

    arm_commit_trap(&app);
    let file = file_bytes(70_000, 2, "");
    let mut parts = complete_fields("Lost at commit", "submit");
    parts.push(Part::Text("description_1", "Report"));
    parts.push(Part::File("file_1", "report.bin", &file));
    let page = b.post_multipart("/submissions", &parts);
    disarm_commit_trap(&app);
    answered(&page);
    assert_eq!(submission_count(&app), count_before);
    // Its files: the content and the attachment.
    let left = app.blob_files();
    assert_eq!(
        left.len(),
        blobs_before.len() + if unknown { 2 } else { 0 },
        "{left:?}"
    );

    // A message with a file, the same.
    arm_commit_trap(&app);
    let page = b.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[
            Part::Text("body", "Lost at commit too"),
            Part::File("file_1", "m.bin", &file),
        ],
    );
    disarm_commit_trap(&app);
    answered(&page);
    let left = if unknown { 3 } else { 0 };
    assert_eq!(app.blob_files().len(), blobs_before.len() + left);

    // The sweep removes what no committed row names, and keeps the rest.
    let state = app.state();
    let swept = app.with_conn(|c| {
        pcii_portal::workflow::blobs::sweep(
            &mut { c },
            state.blobs.as_ref(),
            &state.audit,
            &pcii_portal::audit::log::Actor::system(),
            std::time::Duration::ZERO,
            None,
        )
    });
    assert_eq!(swept.expect("sweep").orphans, left);
    assert_eq!(app.blob_files(), blobs_before);
}

/// A made-up confirmation link's page is refused from a read: a flood of them does not queue for the write lock
/// (seen here with the database locked meanwhile: the answer is still 410, not a 503 after the busy timeout).
#[test]
fn a_made_up_confirmation_link_is_refused_without_the_write_lock() {
    let app = TestApp::with(|f| f.merge(("database_busy_timeout_ms", 300)));
    let mut b = app.browser();
    let lock = WriteLock::take(&app);
    let page = b.get("/verify-email/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    drop(lock);
    assert_eq!(page.status, Status::Gone, "{}", page.body);
}

/// A bug that panics inside a transaction must not leave that transaction open in a pooled connection: the lock
/// it holds would refuse every other writer, and the next holder's transactions would run inside it as
/// savepoints, never committed. The pool drops such a connection (closing it rolls the transaction back).
#[test]
fn a_connection_given_back_by_a_panic_mid_transaction_is_not_pooled() {
    use diesel::Connection;
    use pcii_portal::audit::log::{Actor, Event, Outcome};
    use pcii_portal::error::AppError;
    let app = TestApp::with(|f| f.merge(("database_busy_timeout_ms", 2000)));
    let state = app.state();
    let before = app.audit_count("auth.logout");
    // The panic must come after the transaction wrote (so that it holds the write lock): on a loaded machine the
    // write can meet the app's own start-up work holding the lock past the busy timeout, and is then tried again.
    let mut panicked = false;
    for _ in 0..20 {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut conn = state.db.get().expect("conn");
            conn.transaction::<(), AppError, _>(|tx| {
                let event = Event::new("auth.logout", Outcome::Success);
                state.audit.append(tx, &Actor::system(), &event)?;
                panic!("a bug inside a transaction");
            })
        }));
        if outcome.is_err() {
            panicked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(panicked, "the transaction never wrote");
    // Every connection of the pool at once, so the one the panic gave back is among them if it was pooled: each
    // writes and commits.
    let mut all: Vec<_> = (0..state.settings.db_pool_size.max(2))
        .map(|_| state.db.get().expect("conn"))
        .collect();
    for conn in all.iter_mut() {
        let event = Event::new("auth.logout", Outcome::Success);
        state
            .audit
            .record(conn, &Actor::system(), event)
            .expect("a write after the panic commits");
    }
    drop(all);
    let written = state.settings.db_pool_size.max(2) as i64;
    assert_eq!(app.audit_count("auth.logout"), before + written);
}
