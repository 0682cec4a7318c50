//! The audit chain under concurrent writers (several "instances" with their own pools on one database), and
//! `audit verify` on the live database.

use crate::common::TestApp;

use pcii_portal::audit::log::{Actor, AuditLog, Event, Outcome};
use pcii_portal::db::Db;

#[test]
fn concurrent_writers_leave_a_gapless_linear_verifiable_chain() {
    let app = TestApp::new();
    let url = app.state().settings.database_url();
    let before = app.with_conn(|c| pcii_portal::audit::store::head(c).unwrap().0);
    const INSTANCES: usize = 4;
    const PER_INSTANCE: usize = 40;
    let threads: Vec<_> = (0..INSTANCES)
        .map(|i| {
            let url = url.clone();
            let keys = app.keys_dir();
            std::thread::spawn(move || {
                // Each thread is a separate portal instance: its own pool, its own AuditLog over the shared key.
                let db = Db::open(&url, 2).unwrap();
                let seed = std::fs::read_to_string(keys.join("audit-signing.key")).unwrap();
                let signer =
                    pcii_portal::audit::checkpoint::CheckpointSigner::from_seed_hex(seed.trim())
                        .unwrap();
                let audit = AuditLog::new(signer, 25);
                let mut conn = db.get().unwrap();
                let actor = Actor {
                    request_id: Some(format!("instance-{i}")),
                    ..Actor::cli()
                };
                for n in 0..PER_INSTANCE {
                    audit
                        .record(
                            &mut conn,
                            &actor,
                            Event::new("test.concurrent", Outcome::Success)
                                .reason(format!("{i}/{n}")),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (head, _) = app.with_conn(|c| pcii_portal::audit::store::head(c).unwrap());
    assert_eq!(head, before + (INSTANCES * PER_INSTANCE) as i64);
    let entries = app.with_conn(|c| pcii_portal::audit::store::page_after(c, 0, 100_000).unwrap());
    // Gapless and linear: seq 1..=head, each linking to the one before.
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        if i > 0 {
            assert_eq!(e.prev_hash, entries[i - 1].entry_hash);
        }
    }
    let own_key = app.state().audit.public_key_hex();
    let summary = app
        .with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], Some(&own_key)))
        .expect("the chain verifies");
    assert_eq!(summary.count as i64, head);
    assert!(
        summary.checkpoints_checked >= 4,
        "checkpoints were signed along the way"
    );
}

#[test]
fn verify_live_catches_a_changed_entry_on_sqlite() {
    use diesel::RunQueryDsl;
    let app = TestApp::new();
    if app.database_url.starts_with("postgres") {
        return; // the append-only trigger there needs the table owner to drop; covered on SQLite
    }
    app.create_user(pcii_portal::domain::Role::Auditor, "aud@example.gov", None);
    let own_key = app.state().audit.public_key_hex();
    app.with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], Some(&own_key)))
        .expect("intact at first");
    app.with_conn(|c| {
        // A database administrator bypasses the portal: drops the guard and edits a reason.
        diesel::sql_query("DROP TRIGGER audit_entries_no_update")
            .execute(c)
            .unwrap();
        diesel::sql_query("UPDATE audit_entries SET reason = 'nothing happened' WHERE seq = 2")
            .execute(c)
            .unwrap();
    });
    let problem = app
        .with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], Some(&own_key)))
        .expect_err("caught");
    assert_eq!(problem.seq, 2, "{problem}");
}

/// Migration 18 (SQLite: the audit table keyed by `seq` itself) on a populated log: every entry kept as it was,
/// the chain and its checkpoints still verify, appends go on after it, and a range is read without the old
/// separate index.
#[test]
fn the_audit_table_rekeyed_by_seq_keeps_every_entry_and_verifies() {
    use diesel::RunQueryDsl;
    let app = TestApp::new();
    if app.database_url.starts_with("postgres") {
        return; // SQLite only: the PostgreSQL migration is empty
    }
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let plan = |app: &TestApp| -> String {
        app.with_conn(|c| {
            diesel::sql_query(
                "EXPLAIN QUERY PLAN SELECT * FROM audit_entries WHERE seq >= 1 AND seq <= 9",
            )
            .load::<Plan>(c)
            .unwrap()
            .into_iter()
            .map(|p| p.detail)
            .collect::<Vec<_>>()
            .join("; ")
        })
    };
    let record = |app: &TestApp, n: usize, what: &str| {
        let audit = &app.state().audit;
        app.with_conn(|c| {
            for i in 0..n {
                audit
                    .record(
                        c,
                        &Actor::cli(),
                        Event::new("test.migration", Outcome::Success)
                            .reason(format!("{what} {i}")),
                    )
                    .unwrap();
            }
        });
    };
    let own_key = app.state().audit.public_key_hex();

    // The schema as it was (BIGINT PRIMARY KEY: an index beside the rows), with a log and checkpoints on it: every
    // migration after 18 reverted first, then 18.
    let mut reverted = 0;
    while !plan(&app).contains("sqlite_autoindex_audit_entries") {
        assert!(
            reverted < 20,
            "migration 18 was never reverted: {}",
            plan(&app)
        );
        app.with_conn(|c| pcii_portal::db::revert_last_migration(c).unwrap());
        reverted += 1;
    }
    record(&app, 120, "before");
    app.with_conn(|c| app.state().audit.checkpoint_now(c, &Actor::cli()).unwrap());
    let before = app.with_conn(|c| pcii_portal::audit::store::page_after(c, 0, 100_000).unwrap());
    let checkpoints = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap());
    assert!(before.len() >= 120 && !checkpoints.is_empty());

    app.with_conn(|c| assert_eq!(pcii_portal::db::run_migrations(c).unwrap(), reverted));
    assert!(!plan(&app).contains("autoindex"), "{}", plan(&app));
    let after = app.with_conn(|c| pcii_portal::audit::store::page_after(c, 0, 100_000).unwrap());
    assert_eq!(after, before, "every entry kept, byte for byte");
    let summary = app
        .with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], Some(&own_key)))
        .expect("the chain verifies after the migration");
    assert_eq!(summary.count, before.len() as u64);
    assert_eq!(summary.checkpoints_checked, checkpoints.len());

    // Still append-only, and appends go on from the same head.
    let changed = app.with_conn(|c| {
        diesel::sql_query("UPDATE audit_entries SET reason = 'nothing' WHERE seq = 2").execute(c)
    });
    assert!(changed.is_err(), "the append-only triggers came back");
    record(&app, 30, "after");
    let summary = app
        .with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], Some(&own_key)))
        .expect("the chain verifies with entries appended after the migration");
    assert_eq!(summary.count, before.len() as u64 + 30);
}

/// Checkpoints are append-only like the entries they sign (migration 19): deleting the newest ones would turn what
/// they covered back into an unsigned tail, so the database refuses to update or delete one, on either backend.
#[test]
fn checkpoints_are_append_only_like_the_entries() {
    use diesel::RunQueryDsl;
    let app = TestApp::new();
    app.create_user(
        pcii_portal::domain::Role::Officer,
        "olga@pcii.example.gov",
        None,
    );
    app.with_conn(|c| app.state().audit.checkpoint_now(c, &Actor::cli()).unwrap());
    let checkpoints = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap());
    assert!(!checkpoints.is_empty());
    for sql in [
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_checkpoints SET at = at + 1",
    ] {
        let refused = app.with_conn(|c| diesel::sql_query(sql).execute(c));
        let e = refused.expect_err(sql).to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    let after = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap());
    assert_eq!(after.len(), checkpoints.len());
}
