//! Leases: background work runs once across instances on one database. Holders contending at once — one wins; a
//! lapsed lease (a crashed holder) is taken over, a live one is not; and through the portal's own start-up and its
//! periodic round, the blob sweep runs only on the instance that holds the `blob-sweep` lease.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rocket::http::Status;

use crate::common::TestApp;
use pcii_portal::models::{blob_deletion, lease};
use pcii_portal::workflow::blobs::{lease_holder, SWEEP_LEASE};

/// Another instance's name on leases (this process's is `lease_holder()`).
const OTHER: &str = "another-instance";

/// Waits until the lease `name` has lapsed by the database's clock (its holder stopped renewing it).
fn wait_until_lapsed(app: &TestApp, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (held, now) = app.with_conn(|c| {
            (
                lease::find(c, name).unwrap(),
                lease::database_now(c).unwrap(),
            )
        });
        if held.is_none_or(|l| l.expires_at <= now) {
            return;
        }
        assert!(Instant::now() < deadline, "the lease {name} never lapsed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A committed blob that no row points to.
fn orphan(app: &TestApp) -> String {
    let mut w = app.state().blobs.create().unwrap();
    std::io::Write::write_all(&mut w, b"age-encryption.org/v1 orphan").unwrap();
    w.commit().unwrap()
}

/// Hands the sweep's lease from this process to another instance, for `seconds`.
fn hand_sweep_lease_to_other(app: &TestApp, seconds: i64) {
    app.with_conn(|c| {
        lease::release(c, SWEEP_LEASE, lease_holder()).unwrap();
        assert!(lease::acquire(c, SWEEP_LEASE, OTHER, seconds).unwrap());
    });
}

#[test]
fn holders_contending_at_once_leave_exactly_one_holder() {
    let app = TestApp::new();
    // As many holders as the test pool has connections, each on its own, released together by a barrier.
    const HOLDERS: usize = 4;
    for round in 0..10 {
        let name = format!("contended-{round}");
        let barrier = Arc::new(Barrier::new(HOLDERS));
        let won: Vec<bool> = std::thread::scope(|s| {
            let tries: Vec<_> = (0..HOLDERS)
                .map(|h| {
                    let (barrier, name) = (barrier.clone(), name.clone());
                    let mut conn = app.state().db.get().expect("conn");
                    s.spawn(move || {
                        barrier.wait();
                        lease::acquire(&mut conn, &name, &format!("holder-{h}"), 60).unwrap()
                    })
                })
                .collect();
            tries.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
        let winner = won.iter().position(|w| *w).unwrap();
        let held = app.with_conn(|c| lease::find(c, &name).unwrap()).unwrap();
        assert_eq!(held.holder, format!("holder-{winner}"));
        // The others still cannot take it while it lasts; the winner renews it.
        app.with_conn(|c| {
            for h in (0..HOLDERS).filter(|h| *h != winner) {
                assert!(!lease::acquire(c, &name, &format!("holder-{h}"), 60).unwrap());
            }
            assert!(lease::acquire(c, &name, &held.holder, 60).unwrap());
        });
    }
}

#[test]
fn a_lapsed_lease_is_taken_over_and_a_live_one_is_not() {
    let app = TestApp::new();
    app.with_conn(|c| {
        let now = lease::database_now(c).unwrap();
        assert!(lease::acquire(c, "work", "a", 1).unwrap());
        let held = lease::find(c, "work").unwrap().unwrap();
        assert_eq!(held.holder, "a");
        assert!((now + 1..=now + 2).contains(&held.expires_at), "{held:?}");
        assert!(
            !lease::acquire(c, "work", "b", 60).unwrap(),
            "taken while live"
        );
    });
    // "a" crashes: it stops renewing, and its lease lapses by the database's clock.
    wait_until_lapsed(&app, "work");
    app.with_conn(|c| {
        assert!(
            lease::acquire(c, "work", "b", 60).unwrap(),
            "not taken over"
        );
        assert_eq!(lease::find(c, "work").unwrap().unwrap().holder, "b");
        // "a" comes back: the lease is no longer its own, and it cannot give it up either.
        assert!(!lease::acquire(c, "work", "a", 60).unwrap());
        assert!(!lease::release(c, "work", "a").unwrap());
        // Released by its holder, the lease is free at once.
        assert!(lease::release(c, "work", "b").unwrap());
        assert!(lease::find(c, "work").unwrap().is_none());
        assert!(lease::acquire(c, "work", "a", 60).unwrap());
    });
}

#[test]
fn the_start_up_sweep_runs_only_on_the_instance_holding_the_lease() {
    let app = TestApp::new();
    // The first start took the sweep's lease.
    let held = app.with_conn(|c| lease::find(c, SWEEP_LEASE).unwrap());
    assert_eq!(held.map(|l| l.holder).as_deref(), Some(lease_holder()));
    let name = orphan(&app);
    let grace_over = |f: rocket::figment::Figment| f.merge(("blob_sweep_grace_minutes", 0));
    let sqlite = app.database_url.is_empty();

    // Another holder has the lease when this instance starts again.
    hand_sweep_lease_to_other(&app, 3600);
    let startup = app.restart(grace_over);
    if sqlite {
        // One instance per SQLite file: the holder can only be this instance before a crash (its lease would hold
        // for an interval and a half), so the restart takes the lease over and sweeps what the crash left.
        assert_eq!(startup.swept_blobs, 1);
        assert!(!app.state().blobs.exists(&name).unwrap());
        assert_eq!(app.audit_count("blob.sweep"), 1);
    } else {
        // PostgreSQL: another instance's lease is respected; the sweep is left to it.
        assert_eq!(startup.swept_blobs, 0);
        assert!(app.state().blobs.exists(&name).unwrap());
        assert_eq!(app.audit_count("blob.sweep"), 0);
        // That instance crashed: once its lease lapses, the next start takes it over and sweeps.
        hand_sweep_lease_to_other(&app, 2);
        wait_until_lapsed(&app, SWEEP_LEASE);
        let startup = app.restart(grace_over);
        assert_eq!(startup.swept_blobs, 1);
        assert!(!app.state().blobs.exists(&name).unwrap());
        assert_eq!(app.audit_count("blob.sweep"), 1);
    }
    let held = app.with_conn(|c| lease::find(c, SWEEP_LEASE).unwrap());
    assert_eq!(held.map(|l| l.holder).as_deref(), Some(lease_holder()));
}

#[test]
fn a_sweep_round_deletes_nothing_more_once_another_instance_took_its_lease_over() {
    let app = TestApp::new();
    let queued = orphan(&app);
    app.with_conn(|c| blob_deletion::enqueue(c, std::slice::from_ref(&queued), app.now()).unwrap());
    let unreferenced = orphan(&app);
    // At its first deletion, the store sees another instance take the sweep's lease over (this round took longer
    // than the lease: a long queue after a store outage).
    let (db, taken) = (
        app.state().db.clone(),
        std::sync::atomic::AtomicBool::new(false),
    );
    let store = crate::common::BeforeDelete {
        inner: app.state().blobs.clone(),
        before_delete: move |_: &str| {
            if !taken.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let mut c = db.get().unwrap();
                lease::clear(&mut c, SWEEP_LEASE).unwrap();
                assert!(lease::acquire(&mut c, SWEEP_LEASE, OTHER, 3600).unwrap());
            }
        },
    };
    let swept = app.with_conn(|c| {
        pcii_portal::workflow::blobs::sweep_if_leased(
            &mut { c },
            &store,
            &app.state().audit,
            Duration::ZERO,
            lease_holder(),
            60,
        )
        .unwrap()
        .expect("this instance held the lease when the round began")
    });
    // The queued deletion it had begun is done; the orphans are the new holder's to look at.
    assert_eq!((swept.deleted, swept.orphans), (1, 0), "{swept:?}");
    assert!(!app.state().blobs.exists(&queued).unwrap());
    assert!(app.state().blobs.exists(&unreferenced).unwrap());
    let held = app.with_conn(|c| lease::find(c, SWEEP_LEASE).unwrap());
    assert_eq!(held.map(|l| l.holder).as_deref(), Some(OTHER));
}

#[test]
fn the_periodic_sweep_skips_its_rounds_while_another_instance_holds_the_lease() {
    let app = TestApp::with(|f| f.merge(("blob_sweep_interval_seconds", 1)));
    hand_sweep_lease_to_other(&app, 3600);
    // A file left queued by a crash: the holder's sweep would delete it.
    let name = orphan(&app);
    app.with_conn(|c| blob_deletion::enqueue(c, std::slice::from_ref(&name), 0).unwrap());
    // The rounds run on the server's runtime; a request drives the client's runtime while we wait.
    let mut b = app.browser();
    let mut wait = |until: Instant, done: &dyn Fn() -> bool| {
        while !done() && Instant::now() < until {
            assert_eq!(b.get("/healthz").status, Status::Ok);
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let gone = || !app.state().blobs.exists(&name).unwrap();
    // Three rounds pass: each is skipped.
    wait(Instant::now() + Duration::from_secs(3), &gone);
    assert!(!gone(), "swept while another instance held the lease");
    assert_eq!(app.audit_count("blob.sweep"), 0);

    // The other instance gives the lease up (a stop): the next round here takes it and sweeps. Done when the file
    // is gone, its name dequeued and the sweep audited (the sweep does these in that order).
    app.with_conn(|c| assert!(lease::release(c, SWEEP_LEASE, OTHER).unwrap()));
    let swept = || {
        gone()
            && app.with_conn(|c| blob_deletion::count(c).unwrap()) == 0
            && app.audit_count("blob.sweep") >= 1
    };
    wait(Instant::now() + Duration::from_secs(20), &swept);
    assert!(swept(), "the periodic sweep never took the lease over");
    assert_eq!(app.audit_count("blob.sweep"), 1);
    let held = app.with_conn(|c| lease::find(c, SWEEP_LEASE).unwrap());
    assert_eq!(held.map(|l| l.holder).as_deref(), Some(lease_holder()));
}

#[test]
fn a_restart_on_sqlite_clears_the_notification_lease_its_crashed_process_left() {
    use pcii_portal::workflow::notifications::LEASE;
    // No periodic round of this process's own: its first one (at liftoff) could take the lease after the restart
    // cleared it, and before the round this test runs.
    let app = TestApp::with(|f| f.merge(("notification_interval_seconds", 0)));
    // The lease as a killed process leaves it: held, for longer than anyone wants to wait.
    app.with_conn(|c| {
        lease::clear(c, LEASE).unwrap();
        assert!(lease::acquire(c, LEASE, OTHER, 3600).unwrap());
    });
    app.restart(|f| f);
    let held = app.with_conn(|c| lease::find(c, LEASE).unwrap());
    if app.database_url.is_empty() {
        // One instance per SQLite file: it was this instance's, before the restart; the next round runs at once.
        assert!(held.is_none(), "{:?}", held.map(|l| l.holder));
        let round =
            rocket::async_main(pcii_portal::workflow::notifications::round(app.state(), 60))
                .unwrap();
        assert!(round.is_some(), "the round after the restart ran");
    } else {
        // PostgreSQL: another instance may well hold it; it is respected.
        assert_eq!(held.map(|l| l.holder).as_deref(), Some(OTHER));
    }
}

/// A mail server that takes `delay` to accept each message (as a slow route does, up to the SMTP timeout) and
/// counts the messages it accepted. Minimal SMTP: every command gets 250, DATA 354, QUIT 221.
fn slow_smtp(delay: Duration) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut lines = BufReader::new(stream);
                let _ = out.write_all(b"220 slow.test ESMTP\r\n");
                let mut line = String::new();
                let mut in_data = false;
                while lines.read_line(&mut line).unwrap_or(0) > 0 {
                    let reply: &[u8] = if in_data {
                        if line.trim_end_matches(['\r', '\n']) == "." {
                            in_data = false;
                            std::thread::sleep(delay);
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            b"250 queued\r\n"
                        } else {
                            b""
                        }
                    } else {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        match verb.as_str() {
                            "DATA" => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = out.write_all(b"221 bye\r\n");
                                return;
                            }
                            _ => b"250 ok\r\n",
                        }
                    };
                    if !reply.is_empty() && out.write_all(reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    (port, accepted)
}

/// Four members of one organisation, each with a defect notice due: a round of four mails.
fn four_notices_due(app: &TestApp) {
    let emails = [
        "m1@acme.example",
        "m2@acme.example",
        "m3@acme.example",
        "m4@acme.example",
    ];
    let mut first = app.login_as(
        pcii_portal::domain::Role::Submitter,
        emails[0],
        Some("Acme"),
    );
    for e in &emails[1..] {
        app.login_as(pcii_portal::domain::Role::Submitter, e, Some("Acme"));
    }
    let page = first.post_multipart(
        "/submissions",
        &crate::common::complete_fields("Lease round report", "submit"),
    );
    let id = crate::common::submission_id(&page);
    let mut officer = app.login_as(
        pcii_portal::domain::Role::Officer,
        "olga@pcii.example.gov",
        None,
    );
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "defective"), ("reason", "File 2 unreadable")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
}

/// Runs one notification round with a lease of `lease_secs`, while "another instance" tries to take the lease
/// every 50 ms; returns the round and whether the other instance got the lease while the round ran.
fn round_against_another_instance(
    app: &TestApp,
    lease_secs: i64,
) -> (pcii_portal::workflow::notifications::Round, bool) {
    use pcii_portal::workflow::notifications::{round, LEASE};
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // This instance takes the lease first (the round renews it), then the other starts trying, on a connection of
    // its own (the test app stays on this thread).
    let db = app.state().db.clone();
    assert!(lease::acquire(&mut db.get().unwrap(), LEASE, lease_holder(), lease_secs).unwrap());
    let other_took_it = std::thread::scope(|s| {
        let watcher = s.spawn(|| loop {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            if lease::acquire(&mut db.get().unwrap(), LEASE, OTHER, 60).unwrap() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        let rt = rocket::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(round(app.state(), lease_secs)).unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (result, watcher.join().unwrap())
    });
    let (result, other) = other_took_it;
    (result.expect("the round took the lease"), other)
}

/// A notification round outlasting its lease (a slow mail route) keeps the lease by renewing it before each mail,
/// so no other instance starts the same round meanwhile; and a round whose lease another instance did take over
/// (a single mail outlasting the lease) stops before its next mail instead of sending what that instance sends.
#[test]
fn a_notification_round_renews_its_lease_and_stops_once_another_instance_has_it() {
    use pcii_portal::workflow::notifications::LEASE;
    let (port, accepted) = slow_smtp(Duration::from_millis(1500));
    let app = TestApp::with(|f| {
        f.merge(("smtp_host", "127.0.0.1"))
            .merge(("smtp_port", port))
            .merge(("smtp_security", "none"))
    });
    four_notices_due(&app);

    // Four mails of 1.5 s under a 4 s lease: the round lasts about 6 s and keeps its lease throughout.
    let (round, other_took_it) = round_against_another_instance(&app, 4);
    assert!(
        !other_took_it,
        "another instance took the lease while the round ran"
    );
    assert!(!round.lease_lost);
    assert_eq!(round.sent.len(), 4);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    app.with_conn(|c| lease::release(c, LEASE, lease_holder()).unwrap());

    // Four more due (a second submission), under a 1 s lease that lapses during the first 1.5 s mail: the other
    // instance takes it, and the round stops after that mail; the three left stay due for the other's round.
    four_more_notices_due(&app);
    let (round, other_took_it) = round_against_another_instance(&app, 1);
    assert!(other_took_it);
    assert!(round.lease_lost);
    assert_eq!(round.sent.len(), 1, "{:?}", round.sent);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    let reason: Option<String> = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        audit_entries::table
            .filter(audit_entries::action.eq("notifications.sent"))
            .order(audit_entries::seq.desc())
            .select(audit_entries::reason)
            .first(c)
            .unwrap()
    });
    assert!(
        reason
            .unwrap_or_default()
            .contains("another instance took the lease over"),
        "the round's entry says why it stopped"
    );
}

/// A second defect notice to each of the four members (their first, already sent, is not sent again).
fn four_more_notices_due(app: &TestApp) {
    let mut first = app.browser();
    assert_eq!(
        first.login("m1@acme.example", crate::common::PASSWORD),
        Status::SeeOther
    );
    let page = first.post_multipart(
        "/submissions",
        &crate::common::complete_fields("Second lease round report", "submit"),
    );
    let id = crate::common::submission_id(&page);
    let mut officer = app.browser();
    assert_eq!(
        officer.login("olga@pcii.example.gov", crate::common::PASSWORD),
        Status::SeeOther
    );
    let page = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[("decision", "defective"), ("reason", "File 3 unreadable")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
}
