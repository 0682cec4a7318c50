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
