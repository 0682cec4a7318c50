//! `pcii-portal keys rotate`: every blob re-encrypted to the new identity, resumable, old identity retired.

use crate::common::{self, TestApp};
use diesel::prelude::*;

use pcii_portal::crypto::keys::KeyRing;
use pcii_portal::crypto::stream::{open_verified, seal_reader};
use pcii_portal::db::schema::{blobs, submissions};
use pcii_portal::domain::Role;
use pcii_portal::models::blob::{self, BlobRow};
use pcii_portal::storage::fs::FsBlobStore;

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .args(args)
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .output()
        .unwrap()
}

#[test]
fn rotation_of_200_blobs_interrupted_midway_resumes_and_leaves_every_blob_readable_with_the_new_key_alone(
) {
    let app = TestApp::new();
    let user_id = app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let org = app.with_conn(|c| {
        pcii_portal::models::account::find(c, &user_id)
            .unwrap()
            .organisation_id
            .unwrap()
    });
    let store = FsBlobStore::open(&app.data_dir().join("blobs")).unwrap();
    let old_ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let old_key = old_ring.current_key_id().to_string();
    let now = app.now();
    let sub = pcii_portal::db::new_id();
    app.with_conn(|c| {
        diesel::insert_into(submissions::table)
            .values((
                submissions::id.eq(&sub),
                submissions::organisation_id.eq(&org),
                submissions::submitter_id.eq(&user_id),
                submissions::status.eq("draft"),
                submissions::sector.eq("Energy"),
                submissions::created_at.eq(now),
                submissions::updated_at.eq(now),
            ))
            .execute(c)
            .unwrap();
    });
    let mut plaintexts = Vec::new();
    for i in 0..200 {
        let text = format!("blob {i}: ").repeat(i * 37 + 1);
        let sealed = seal_reader(&store, &old_ring, text.as_bytes()).unwrap();
        app.with_conn(|c| {
            blob::insert(c, &format!("b{i:03}"), &sub, "attachment", &sealed, now).unwrap()
        });
        plaintexts.push(text);
    }

    // A rotation interrupted part-way, leaving every kind of partial state the CLI can leave: the new
    // identity generated; blobs 0..70 resealed, their rows updated and the old ciphertexts deleted; blobs
    // 70..80 resealed and rows updated but the old ciphertexts still there; blob 80 resealed but its row
    // not updated yet; the rest untouched.
    let mut ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let new_key = ring.rotate().unwrap();
    for i in 0..81 {
        let id = format!("b{i:03}");
        let row: BlobRow = app.with_conn(|c| blob::find(c, &id).unwrap());
        let old = row.blob_ref().unwrap();
        let sealed = pcii_portal::crypto::stream::reseal(&store, &old, &ring).unwrap();
        if i == 80 {
            break;
        }
        app.with_conn(|c| blob::switch_ciphertext(c, &id, &row.storage_name, &sealed).unwrap());
        if i < 70 {
            pcii_portal::storage::BlobStore::delete(&store, &old.name).unwrap();
        }
    }
    drop(ring);

    let out = cli(&app, &["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming"));

    // Only the new identity is left in the key store, and it reads everything.
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let ids: Vec<String> = ring.keys().into_iter().map(|k| k.key_id).collect();
    assert_eq!(ids, vec![new_key.clone()]);
    assert!(!ring.contains(&old_key));
    let rows: Vec<BlobRow> = app.with_conn(|c| {
        blobs::table
            .order(blobs::id.asc())
            .select(BlobRow::as_select())
            .load(c)
            .unwrap()
    });
    assert_eq!(rows.len(), 200);
    for (row, text) in rows.iter().zip(&plaintexts) {
        assert_eq!(row.key_id, new_key);
        let r = row.blob_ref().unwrap();
        let mut reader = open_verified(
            &store,
            &r.name,
            &ring,
            &r.ciphertext_sha256,
            &r.plaintext_sha256,
        )
        .unwrap();
        let mut back = String::new();
        std::io::Read::read_to_string(&mut reader, &mut back).unwrap();
        assert_eq!(&back, text);
    }
    // Left by the interruption: the 10 old ciphertexts whose deletion never happened and the resealed
    // copy whose row never pointed to it. Nothing references them; the orphan sweep removes exactly those.
    assert_eq!(
        pcii_portal::storage::BlobStore::list(&store).unwrap().len(),
        211
    );
    let referenced: std::collections::HashSet<String> =
        rows.iter().map(|r| r.storage_name.clone()).collect();
    let swept = pcii_portal::storage::sweep_orphans(&store, std::time::Duration::ZERO, &mut |n| {
        referenced.contains(n)
    })
    .unwrap();
    assert_eq!(swept, 11);
    assert_eq!(
        pcii_portal::storage::BlobStore::list(&store).unwrap().len(),
        200
    );

    // A later rotation starts afresh (new identity) and `keys list` counts the blobs per key.
    let out = cli(&app, &["keys", "rotate"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("resuming"));
    let list = cli(&app, &["keys", "list"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(listing.contains("current"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.contains("current") && l.contains(" 200 ")),
        "{listing}"
    );
}

#[test]
fn a_running_portal_seals_to_the_new_key_after_a_cli_rotation_and_old_uploads_stay_readable() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let upload = |b: &mut common::Browser<'_>, data: &[u8]| {
        let mut parts = common::complete_fields("rotation", "submit");
        parts.push(common::Part::Text("description_1", "d"));
        parts.push(common::Part::File("file_1", "f.bin", data));
        let page = b.post_multipart("/submissions", &parts);
        assert_eq!(page.status, rocket::http::Status::SeeOther, "{}", page.body);
        page.header("Location")
            .unwrap()
            .split('/')
            .nth(2)
            .unwrap()
            .to_string()
    };
    let first = common::file_bytes(100_000, 1, "");
    let id1 = upload(&mut b, &first);
    let out = cli(&app, &["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_key = KeyRing::load(&app.keys_dir(), &[])
        .unwrap()
        .current_key_id()
        .to_string();
    // Read first: the running portal must pick up the new identity to open the resealed blobs.
    let page = b.get(&format!("/submissions/{id1}"));
    assert_eq!(page.status, rocket::http::Status::Ok);
    assert!(page.body.contains("rotation"));
    let id2 = upload(&mut b, &first);
    let keys: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id2))
            .select(blobs::key_id)
            .load(c)
            .unwrap()
    });
    assert!(
        !keys.is_empty() && keys.iter().all(|k| *k == new_key),
        "{keys:?}"
    );
}
