//! Start-up: key files generated private and reused, `/healthz`, the one-time setup link for the first
//! administrator, and migrations up/down/up on a populated database.

use crate::common::{TestApp, PASSWORD};
use rocket::http::Status;

use pcii_portal::domain::Role;

#[test]
fn healthz_reports_database_and_key_store() {
    let app = TestApp::new();
    let page = app.browser().get("/healthz");
    assert_eq!(page.status, Status::Ok);
    let v: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"], "ok");
    assert_eq!(v["key_store"], "ok");
    // The suite really runs on the backend CI asked for. CI states it in `PCII_TEST_EXPECT_BACKEND`,
    // independently of `PCII_TEST_DATABASE_URL` (which selects it): if that selector were lost, the
    // PostgreSQL pass would fall back to SQLite, and only an independent expectation catches it.
    // Without the variable (a plain `cargo test`), the expectation follows the selector.
    let expected = match std::env::var("PCII_TEST_EXPECT_BACKEND") {
        Ok(b) if !b.is_empty() => {
            assert!(
                b == "sqlite" || b == "postgres",
                "PCII_TEST_EXPECT_BACKEND must be sqlite or postgres, not {b:?}"
            );
            b
        }
        _ if cfg!(feature = "postgres")
            && std::env::var("PCII_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) =>
        {
            "postgres".to_owned()
        }
        _ => "sqlite".to_owned(),
    };
    assert_eq!(
        format!("{:?}", app.state().db.backend).to_lowercase(),
        expected,
        "the suite runs on another backend than PCII_TEST_EXPECT_BACKEND / PCII_TEST_DATABASE_URL say"
    );
    // Which database it is, is the operator's to know (the Operations page), not any caller's.
    assert!(v.get("backend").is_none(), "{v}");
}

#[test]
fn keys_are_generated_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::new();
    let keys = app.keys_dir();
    for name in [
        "age-identities.txt",
        "rocket-secret.key",
        "audit-signing.key",
    ] {
        let mode = std::fs::metadata(keys.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} must be 0600");
    }
    assert!(std::fs::read_to_string(keys.join(".gitignore"))
        .unwrap()
        .contains('*'));
    let before = std::fs::read(keys.join("age-identities.txt")).unwrap();
    // A second start on the same directories reuses the keys.
    let figment = pcii_portal::figment()
        .merge(("data_dir", app.data_dir()))
        .merge(("keys_dir", keys.clone()))
        .merge(("database_url", app.database_url.clone()));
    let (_, startup) = pcii_portal::build(figment.clone()).unwrap();
    assert!(startup.generated_keys.is_empty());
    assert_eq!(
        before,
        std::fs::read(keys.join("age-identities.txt")).unwrap()
    );
    // A key file readable by others is refused at start.
    std::fs::set_permissions(
        keys.join("rocket-secret.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = pcii_portal::build(figment).err().expect("refused");
    assert!(err.contains("rocket-secret.key"), "{err}");
}

#[test]
fn setup_link_creates_the_first_administrator_once() {
    let app = TestApp::new();
    let token = app
        .setup_token
        .clone()
        .expect("a setup link at first start");
    let mut b = app.browser();
    assert_eq!(b.get(&format!("/setup/{token}")).status, Status::Ok);
    assert_eq!(b.get("/setup/not-a-token").status, Status::Gone);
    // A start while no administrator exists prints a new link, and the earlier one stops working.
    let newer = app
        .with_conn(|c| {
            pcii_portal::auth::accounts::issue_setup_token(c, &app.state().audit, 30, app.now())
        })
        .unwrap()
        .expect("no administrator yet");
    assert_eq!(b.get(&format!("/setup/{token}")).status, Status::Gone);
    let token = newer;
    assert_eq!(b.get(&format!("/setup/{token}")).status, Status::Ok);
    let done = b.post(
        &format!("/setup/{token}"),
        &[
            ("email", "admin@example.gov"),
            ("display_name", "Ada Admin"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(done.status, Status::SeeOther);
    assert_eq!(b.login("admin@example.gov", PASSWORD), Status::SeeOther);
    // The first administrator, too, enrols a second factor before anything else.
    b.enrol_authenticator_on_pages();
    assert_eq!(b.get("/admin").status, Status::Ok);
    // Spent: the link no longer works, and no second administrator can be made with it.
    let mut other = app.browser();
    assert_eq!(other.get(&format!("/setup/{token}")).status, Status::Gone);
    let runs = app.state().hasher.runs();
    let again = other.post(
        &format!("/setup/{token}"),
        &[
            ("email", "mallory@example.com"),
            ("display_name", "M"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(again.status, Status::Gone);
    // Refused before the password is hashed: a spent or made-up link costs no argon2 run.
    let made_up = other.post(
        "/setup/made-up-token",
        &[
            ("email", "mallory@example.com"),
            ("display_name", "M"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(made_up.status, Status::Gone);
    assert_eq!(app.state().hasher.runs(), runs);
    assert_eq!(
        other.login("mallory@example.com", PASSWORD),
        Status::Unauthorized
    );
}

#[test]
fn migrations_run_up_down_up_on_a_populated_database() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut conn = app.state().db.get().unwrap();
    let reverted = pcii_portal::db::revert_all_migrations(&mut conn).unwrap();
    assert!(reverted >= 2);
    let applied = pcii_portal::db::run_migrations(&mut conn).unwrap();
    assert_eq!(applied, reverted);
    drop(conn);
    // The schema works again after up/down/up.
    app.create_user(Role::Submitter, "sam2@acme.example", Some("Acme"));
}

#[test]
fn the_sqlite_database_and_its_wal_and_shm_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::new();
    if !app.database_url.is_empty() {
        return; // PostgreSQL: the server owns its files
    }
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let db = app.data_dir().join("pcii.sqlite3");
    let mut seen = 0;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        if let Ok(meta) = std::fs::metadata(&path) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path}");
            seen += 1;
        }
    }
    assert_eq!(
        seen, 3,
        "the database runs in WAL mode with its -wal and -shm files"
    );
    // An existing database left readable by others is tightened at the next start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    app.restart(|f| f);
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Instances of a new version started together on one PostgreSQL database take turns applying its migrations (an
/// advisory lock): each starts, none fails on a migration the other applied meanwhile. (SQLite is one instance.)
#[test]
fn instances_starting_together_apply_pending_migrations_once() {
    let app = TestApp::new();
    if app.database_url.is_empty() {
        return;
    }
    app.with_conn(|c| {
        for _ in 0..3 {
            pcii_portal::db::revert_last_migration(c).unwrap();
        }
    });
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = app.database_url.clone();
            std::thread::spawn(move || pcii_portal::db::Db::open(&url, 2).map(|_| ()))
        })
        .collect();
    for start in starts {
        start
            .join()
            .unwrap()
            .expect("every instance starts, the migrations applied once");
    }
    app.with_conn(|c| assert_eq!(pcii_portal::db::run_migrations(c).unwrap(), 0));
}

/// An instance that starts while another applies a migration waits for it, however long it takes: the migration
/// lock was taken under the connection's lock timeout (5 s by default), and a start during a longer migration failed.
#[cfg(feature = "postgres")]
#[test]
fn an_instance_waits_for_the_migration_lock_past_its_lock_timeout() {
    use diesel::connection::SimpleConnection;
    let app = TestApp::new();
    if app.database_url.is_empty() {
        return;
    }
    let lock = pcii_portal::db::MIGRATION_LOCK;
    let (held, holding) = std::sync::mpsc::channel();
    let url = app.database_url.clone();
    let holder = std::thread::spawn(move || {
        let db = pcii_portal::db::Db::open(&url, 1).unwrap();
        let mut c = db.get().unwrap();
        c.batch_execute(&format!("SELECT pg_advisory_lock({lock})"))
            .unwrap();
        held.send(()).unwrap();
        // Held well past the other's lock timeout (200 ms).
        std::thread::sleep(std::time::Duration::from_millis(1500));
        c.batch_execute(&format!("SELECT pg_advisory_unlock({lock})"))
            .unwrap();
    });
    holding.recv().unwrap();
    pcii_portal::db::Db::open_with(&app.database_url, 2, 200)
        .expect("started once the other instance let the lock go");
    holder.join().unwrap();
}
