//! Benchmark helper for `bench/rotate.sh`; not part of the portal.
//!
//! - `data_keys_fill fill [N] [BLOBS]`: N submissions (default 100,000), each with a data key made and wrapped
//!   through the library (`WrappedKey::generate`, `models::data_key::insert_current`), in large transactions;
//!   the first BLOBS (default 3) also get a small sealed blob, so that reading one back after a rotation is tried.
//! - `data_keys_fill baseline [N]`: the bare age work of re-wrapping N stored data keys (decrypt each wrapped key
//!   with the ring, encrypt the same bytes to the ring's current recipients), in memory, on every core, no
//!   database: the floor under `keys rotate`. Prints `<count> <seconds> <threads>`.
//! - `data_keys_fill verify [BLOBS]`: every data key is wrapped to the ring's current master and unwraps with the
//!   ring as it is now; the first BLOBS blobs read back (verified) to what was sealed. Exits non-zero otherwise.
//!
//! Settings come from the environment like the portal's (`PCII_DATA_DIR`, `PCII_KEYS_DIR`, ...).

use std::io::{Cursor, Read, Write};
use std::thread;
use std::time::Instant;

use diesel::prelude::*;

use pcii_portal::crypto::data_key::DataKey;
use pcii_portal::crypto::keys::KeyRing;
use pcii_portal::crypto::stream::{seal_reader, Recipients};
use pcii_portal::db::schema::{blobs, data_keys, organisations, submissions, users};
use pcii_portal::db::{self, DbConn};
use pcii_portal::key_store::data_keys::{blob_keys, open_blob, WrappedKey};
use pcii_portal::models::account::NewUser;
use pcii_portal::models::data_key::{self as data_key_model, DataKeyRow};
use pcii_portal::storage::fs::FsBlobStore;

/// Submissions (and data keys) per transaction.
const BATCH: usize = 5000;

#[derive(Insertable)]
#[diesel(table_name = submissions)]
struct NewSubmission {
    id: String,
    organisation_id: String,
    submitter_id: String,
    status: &'static str,
    sector: &'static str,
    file_count: i32,
    total_bytes: i64,
    created_at: i64,
    updated_at: i64,
}

fn threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over `items` on every core, results in order.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let per = items.len().div_ceil(threads()).max(1);
    thread::scope(|s| {
        let f = &f;
        let workers: Vec<_> = items
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker panicked"))
            .collect()
    })
}

struct Portal {
    settings: pcii_portal::config::Settings,
    ring: KeyRing,
    db: db::Db,
}

fn open() -> Result<Portal, String> {
    let figment = pcii_portal::figment();
    let settings = pcii_portal::config::load(&figment)?;
    let opened = pcii_portal::key_store::open_all(&settings).map_err(|e| e.to_string())?;
    let db = db::Db::open(&settings.database_url(), 2).map_err(|e| e.to_string())?;
    Ok(Portal {
        settings,
        ring: opened.keyring,
        db,
    })
}

/// The plaintext of the bench blob number `i`.
fn blob_content(i: usize) -> Vec<u8> {
    format!("benchmark blob {i}\n").repeat(1000).into_bytes()
}

fn fill(n: usize, blob_count: usize) -> Result<(), String> {
    let p = open()?;
    let mut conn = p.db.get().map_err(|e| e.to_string())?;
    let store = FsBlobStore::open(&p.settings.blob_dir()).map_err(|e| e.to_string())?;
    let now = pcii_portal::clock::Clock::system().now();
    let org = db::new_id();
    let user = db::new_id();
    conn.transaction(|c| {
        diesel::insert_into(organisations::table)
            .values((
                organisations::id.eq(&org),
                organisations::name.eq("Benchmark Utility"),
                organisations::created_at.eq(now),
            ))
            .execute(c)?;
        let email = format!("rotate.{}@bench.example", &org[..8]);
        diesel::insert_into(users::table)
            .values(NewUser {
                id: &user,
                email: &email,
                display_name: "Benchmark submitter",
                role: pcii_portal::domain::Role::Submitter,
                organisation_id: Some(&org),
                password_hash: "!",
                disabled: true,
                created_at: now,
                password_changed_at: now,
                org_admin: true,
                email_verified_at: Some(now),
                agency: None,
            })
            .execute(c)
    })
    .map_err(|e: diesel::result::Error| format!("organisation: {e}"))?;

    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let ids: Vec<usize> = (done..(done + BATCH).min(n)).collect();
        let keys = parallel(&ids, |_| WrappedKey::generate(&p.ring))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let rows: Vec<NewSubmission> = ids
            .iter()
            .map(|_| NewSubmission {
                id: db::new_id(),
                organisation_id: org.clone(),
                submitter_id: user.clone(),
                status: "validated",
                sector: "Energy",
                file_count: 0,
                total_bytes: 0,
                created_at: now,
                updated_at: now,
            })
            .collect();
        // Blobs first (committed files), then the rows that point at them.
        let mut sealed = Vec::new();
        for (&i, key) in ids.iter().zip(&keys) {
            if i < blob_count {
                let to = Recipients::from_key_id(&key.key_id).map_err(|e| e.to_string())?;
                let blob = seal_reader(&store, &to, Cursor::new(blob_content(i)))
                    .map_err(|e| format!("sealing a blob: {e}"))?;
                sealed.push((i - done, blob));
            }
        }
        conn.transaction(|c| {
            let c: &mut DbConn = c;
            match c {
                DbConn::Sqlite(c) => diesel::insert_into(submissions::table)
                    .values(&rows)
                    .execute(c)?,
                #[cfg(feature = "postgres")]
                DbConn::Postgres(c) => diesel::insert_into(submissions::table)
                    .values(&rows)
                    .execute(c)?,
            };
            for (row, key) in rows.iter().zip(&keys) {
                data_key_model::insert_current(c, &key.row(&row.id, now))?;
            }
            for (k, blob) in &sealed {
                pcii_portal::models::blob::insert(
                    c,
                    &db::new_id(),
                    &rows[*k].id,
                    "attachment",
                    blob,
                    now,
                )?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .map_err(|e| format!("data keys: {e}"))?;
        done += ids.len();
    }
    println!(
        "{n} submissions with a data key each ({} blobs) in {:.1} s, wrapped to {}",
        blob_count.min(n),
        started.elapsed().as_secs_f64(),
        p.ring.current_key_id()
    );
    Ok(())
}

/// Every stored data key, in pages.
fn all_keys(conn: &mut DbConn, limit: usize) -> Result<Vec<DataKeyRow>, String> {
    let mut out = Vec::new();
    let mut after = String::new();
    while out.len() < limit {
        let page: Vec<DataKeyRow> = data_keys::table
            .filter(data_keys::key_id.gt(&after))
            .order(data_keys::key_id.asc())
            .limit(10_000.min((limit - out.len()) as i64))
            .select(DataKeyRow::as_select())
            .load(conn)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.key_id.clone();
        out.extend(page);
    }
    Ok(out)
}

fn baseline(n: usize) -> Result<(), String> {
    let p = open()?;
    let mut conn = p.db.get().map_err(|e| e.to_string())?;
    let rows = all_keys(&mut conn, n)?;
    let ring = &p.ring;
    let started = Instant::now();
    let failures: usize = parallel(&rows, |row| {
        let rewrap = || -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let decryptor = age::Decryptor::new(&row.wrapped[..])?;
            let mut reader = decryptor.decrypt(ring.identities())?;
            let mut secret = zeroize::Zeroizing::new(Vec::with_capacity(128));
            reader.read_to_end(&mut secret)?;
            let recipients = ring.encryption_recipients();
            let encryptor = age::Encryptor::with_recipients(
                recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
            )?;
            let mut out = Vec::with_capacity(512);
            let mut w = encryptor.wrap_output(&mut out)?;
            w.write_all(&secret)?;
            w.finish()?;
            Ok(out)
        };
        usize::from(rewrap().is_err())
    })
    .into_iter()
    .sum();
    let secs = started.elapsed().as_secs_f64();
    if failures > 0 {
        return Err(format!("{failures} data keys did not re-wrap"));
    }
    println!("{} {secs:.3} {}", rows.len(), threads());
    Ok(())
}

fn verify(blob_count: usize) -> Result<(), String> {
    let p = open()?;
    let mut conn = p.db.get().map_err(|e| e.to_string())?;
    let rows = all_keys(&mut conn, usize::MAX)?;
    let current = p.ring.current_key_id();
    let on_current = rows.iter().filter(|r| r.master_key_id == current).count();
    let ring = &p.ring;
    let opened = parallel(&rows, |row| {
        DataKey::unwrap(&row.wrapped, ring).is_ok_and(|k| k.key_id() == row.key_id)
    })
    .into_iter()
    .filter(|ok| *ok)
    .count();
    let store = FsBlobStore::open(&p.settings.blob_dir()).map_err(|e| e.to_string())?;
    let blob_rows: Vec<(String, String)> = blobs::table
        .select((blobs::id, blobs::submission_id))
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    let mut read_back = 0;
    for (id, _) in &blob_rows {
        let keys = blob_keys(&mut conn, id).map_err(|e| e.to_string())?;
        let mut plain = Vec::new();
        open_blob(&store, ring, &keys)
            .and_then(|mut r| r.read_to_end(&mut plain))
            .map_err(|e| format!("blob {id}: {e}"))?;
        if (0..blob_count).any(|i| blob_content(i) == plain) {
            read_back += 1;
        }
    }
    println!(
        "{} data keys: {on_current} wrapped to the current master {current}, {opened} unwrap with the ring; \
         {read_back} of {} blobs read back intact",
        rows.len(),
        blob_rows.len()
    );
    if on_current != rows.len() || opened != rows.len() || read_back != blob_rows.len() {
        return Err("verification FAILED".into());
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| {
        args.get(i)
            .and_then(|a| a.replace('_', "").parse().ok())
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("fill") | None => fill(num(1, 100_000), num(2, 3)),
        Some("baseline") => baseline(num(1, 100_000)),
        Some("verify") => verify(num(1, 3)),
        Some(other) => Err(format!(
            "unknown mode {other:?}: fill [N] [BLOBS] | baseline [N] | verify [BLOBS]"
        )),
    }
}
