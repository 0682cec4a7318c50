//! Benchmark helper for `bench/officer_queue.sh`, run after `queue_fill`; not part of the portal.
//!
//! `cases_fill OFFICER_EMAIL`: gives every submission past the draft stage a data key (made and wrapped through the
//! library, `WrappedKey::generate` and `models::data_key::insert_current`) and a real sealed title
//! (`workflow::sealed_text::Sealer`, as the intake writes it); hands about 3% of the open submissions to the
//! officer OFFICER_EMAIL and 30% to a second bench officer; marks about 5% of the received ones
//! "cured — re-review". Settings come from the environment like the portal's (`PCII_DATA_DIR`, ...).

use std::thread;

use diesel::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use pcii_portal::db::schema::{submissions, users};
use pcii_portal::db::{self, DbConn};
use pcii_portal::key_store::data_keys::WrappedKey;
use pcii_portal::models::account::NewUser;
use pcii_portal::models::data_key as data_key_model;
use pcii_portal::workflow::sealed_text::Sealer;

/// Submissions per transaction.
const BATCH: usize = 5000;

const TOPICS: [&str; 8] = [
    "Substation protection scheme",
    "Pipeline SCADA network map",
    "Water treatment chlorine storage plan",
    "Dam spillway inspection report",
    "Hospital backup power assessment",
    "Rail signalling cyber incident",
    "Data centre cooling failure analysis",
    "Port container screening procedure",
];

fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = thread::available_parallelism().map_or(2, |n| n.get());
    let per = items.len().div_ceil(threads).max(1);
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

fn second_officer(conn: &mut DbConn, now: i64) -> QueryResult<String> {
    let id = db::new_id();
    diesel::insert_into(users::table)
        .values(NewUser {
            id: &id,
            email: "second.officer@bench.example",
            display_name: "Second Bench Officer",
            role: pcii_portal::domain::Role::Officer,
            organisation_id: None,
            password_hash: "!",
            disabled: false,
            created_at: now,
            password_changed_at: now,
            org_admin: false,
            email_verified_at: Some(now),
            agency: None,
        })
        .execute(conn)?;
    Ok(id)
}

fn main() -> Result<(), String> {
    let email = std::env::args()
        .nth(1)
        .ok_or("usage: cases_fill OFFICER_EMAIL")?;
    let figment = pcii_portal::figment();
    let settings = pcii_portal::config::load(&figment)?;
    let opened = pcii_portal::key_store::open_all(&settings).map_err(|e| e.to_string())?;
    let ring = opened.keyring;
    let pool = db::Db::open(&settings.database_url(), 2).map_err(|e| e.to_string())?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let now = pcii_portal::clock::Clock::system().now();
    let officer: String = users::table
        .filter(users::email.eq(&email))
        .select(users::id)
        .first(&mut conn)
        .map_err(|e| format!("officer {email}: {e}"))?;
    let other = second_officer(&mut conn, now).map_err(|e| e.to_string())?;
    let rows: Vec<(String, String)> = submissions::table
        .filter(submissions::status.ne("draft"))
        .filter(submissions::title_sealed.is_null())
        .order(submissions::id.asc())
        .select((submissions::id, submissions::status))
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(0xca5e_5eed);
    let (mut mine, mut theirs, mut cured) = (0, 0, 0);
    for (n, chunk) in rows.chunks(BATCH).enumerate() {
        // Keys and sealed titles are made on every core; the rows are written in one transaction per batch.
        let sealed = parallel(chunk, |(id, _)| -> Result<_, String> {
            let key = WrappedKey::generate(&ring).map_err(|e| e.to_string())?;
            let topic = TOPICS[id.as_bytes()[0] as usize % TOPICS.len()];
            let title = Sealer::to_key(&key.key_id)
                .map_err(|e| e.to_string())?
                .seal(&format!("{topic} {}", &id[..6]))
                .map_err(|e| e.to_string())?
                .stored;
            Ok((key, title))
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let plans: Vec<(Option<&str>, bool)> = chunk
            .iter()
            .map(|(_, status)| {
                let open = status == "received" || status == "defective";
                let r: f64 = rng.gen();
                let who = match r {
                    _ if !open => None,
                    r if r < 0.03 => Some(officer.as_str()),
                    r if r < 0.33 => Some(other.as_str()),
                    _ => None,
                };
                (who, status == "received" && rng.gen::<f64>() < 0.05)
            })
            .collect();
        conn.transaction(|c| {
            for (((id, _), (key, title)), (who, is_cured)) in chunk.iter().zip(&sealed).zip(&plans)
            {
                data_key_model::insert_current(c, &key.row(id, now))?;
                diesel::update(submissions::table.find(id))
                    .set((
                        submissions::title_sealed.eq(title),
                        submissions::assigned_to.eq(*who),
                        submissions::assigned_at.eq(who.map(|_| now)),
                        submissions::cured_at.eq(is_cured.then_some(now)),
                    ))
                    .execute(c)?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .map_err(|e| e.to_string())?;
        for (who, is_cured) in &plans {
            mine += usize::from(*who == Some(officer.as_str()));
            theirs += usize::from(*who == Some(other.as_str()));
            cured += usize::from(*is_cured);
        }
        eprintln!(
            "{} of {} titled",
            (n + 1) * BATCH.min(chunk.len()),
            rows.len()
        );
    }
    println!(
        "{} titles sealed with their own data keys in {:.1} s; assigned: {mine} to {email}, {theirs} to another officer; {cured} cured",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
