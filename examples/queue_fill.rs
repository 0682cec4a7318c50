//! Benchmark helper: fills a portal's database with N submissions (default 100,000) spread over organisations,
//! sectors, statuses and receipt dates, in batched inserts, then prints what the officer's queue holds.
//! Used by bench/officer_queue.sh; not part of the portal. Rows are written directly (no blobs, no audit
//! entries): the queue reads only the clear columns.

use diesel::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use pcii_portal::db::schema::{organisations, submissions, users};
use pcii_portal::db::{self, DbConn};
use pcii_portal::models::account::NewUser;
use pcii_portal::models::sectors::SECTORS;
use pcii_portal::time::DAY;

const ORGANISATIONS: usize = 200;
const BATCH: usize = 1000;

/// Status and its weight out of 100: about 28% of the submissions are open (received or defective).
const STATUSES: [(&str, u32); 9] = [
    ("received", 20),
    ("defective", 8),
    ("validated", 40),
    ("not_validated", 8),
    ("withdrawn", 6),
    ("protection_removed", 2),
    ("returned", 6),
    ("destroyed", 5),
    ("draft", 5),
];

#[derive(Insertable)]
#[diesel(table_name = submissions)]
#[diesel(treat_none_as_default_value = false)]
struct NewSubmission {
    id: String,
    tracking_number: Option<String>,
    organisation_id: String,
    submitter_id: String,
    status: &'static str,
    sector: &'static str,
    statement_version: Option<&'static str>,
    statement_affirmed_at: Option<i64>,
    certified_at: Option<i64>,
    file_count: i32,
    total_bytes: i64,
    created_at: i64,
    updated_at: i64,
    received_at: Option<i64>,
    defect_notice_at: Option<i64>,
    cure_due_at: Option<i64>,
    decided_at: Option<i64>,
    disposition: Option<&'static str>,
    closed_at: Option<i64>,
}

fn pick_status(rng: &mut StdRng) -> &'static str {
    let mut r = rng.gen_range(0..100);
    for (status, weight) in STATUSES {
        if r < weight {
            return status;
        }
        r -= weight;
    }
    "validated"
}

fn year_of(ts: i64) -> i32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.year())
        .unwrap_or(2026)
}

fn submission(rng: &mut StdRng, i: usize, now: i64, orgs: &[(String, String)]) -> NewSubmission {
    let status = pick_status(rng);
    // A few organisations submit much more than the rest.
    let org = ((rng.gen::<f64>().powi(3)) * orgs.len() as f64) as usize;
    let (organisation_id, submitter_id) = orgs[org.min(orgs.len() - 1)].clone();
    let sector = SECTORS[rng.gen_range(0..SECTORS.len())];
    // Open submissions arrived within the last 120 days (most of the received ones past the 30-day notice
    // window, so "overdue" is a large set too); closed ones over three years.
    let open = matches!(status, "received" | "defective");
    let age = if open {
        rng.gen_range(0..120 * DAY)
    } else {
        rng.gen_range(0..3 * 365 * DAY)
    };
    let received_at = (status != "draft").then_some(now - age);
    let created_at = now - age - rng.gen_range(0..7 * DAY);
    let (defect_notice_at, cure_due_at) = match (status, received_at) {
        ("defective", Some(r)) => {
            let notice = (r + rng.gen_range(DAY..30 * DAY)).min(now);
            (Some(notice), Some(notice + 30 * DAY))
        }
        _ => (None, None),
    };
    let decided = !open && status != "draft";
    let decided_at = received_at
        .filter(|_| decided)
        .map(|r| (r + rng.gen_range(DAY..45 * DAY)).min(now));
    let closed = matches!(status, "returned" | "destroyed");
    NewSubmission {
        id: db::new_id(),
        tracking_number: received_at.map(|r| format!("PCII-{}-{:06}", year_of(r), i + 1)),
        organisation_id,
        submitter_id,
        status,
        sector,
        statement_version: received_at.map(|_| "2026-1"),
        statement_affirmed_at: received_at,
        certified_at: received_at,
        file_count: rng.gen_range(0..6),
        total_bytes: rng.gen_range(0..50_000_000),
        created_at,
        updated_at: decided_at
            .or(defect_notice_at)
            .or(received_at)
            .unwrap_or(created_at),
        received_at,
        defect_notice_at,
        cure_due_at,
        decided_at,
        disposition: match status {
            "returned" => Some("return"),
            "destroyed" => Some("destroy"),
            _ => None,
        },
        closed_at: decided_at.filter(|_| closed),
    }
}

/// One organisation and one submitter each (a password hash nobody can match: these accounts never sign in).
fn organisations(conn: &mut DbConn, now: i64) -> QueryResult<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(ORGANISATIONS);
    for i in 0..ORGANISATIONS {
        let org = db::new_id();
        let user = db::new_id();
        diesel::insert_into(organisations::table)
            .values((
                organisations::id.eq(&org),
                organisations::name.eq(format!("Benchmark Utility {:03}", i + 1)),
                organisations::created_at.eq(now),
            ))
            .execute(conn)?;
        let email = format!("submitter{:03}.{}@bench.example", i + 1, &org[..8]);
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
            .execute(conn)?;
        out.push((org, user));
    }
    Ok(out)
}

fn main() -> Result<(), String> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let figment = pcii_portal::figment();
    let settings = pcii_portal::config::load(&figment)?;
    let pool = db::Db::open(&settings.database_url(), 2).map_err(|e| e.to_string())?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let now = pcii_portal::clock::Clock::system().now();
    let mut rng = StdRng::seed_from_u64(0x0ff1_ce25);
    let orgs = conn
        .transaction(|c| organisations(c, now))
        .map_err(|e| format!("organisations: {e}"))?;
    let mut done = 0;
    while done < n {
        let rows: Vec<NewSubmission> = (done..(done + BATCH).min(n))
            .map(|i| submission(&mut rng, i, now, &orgs))
            .collect();
        // Multi-row inserts are backend-specific in Diesel: one arm per backend, the same statement.
        match &mut *conn {
            DbConn::Sqlite(c) => c.transaction(|c| {
                diesel::insert_into(submissions::table)
                    .values(&rows)
                    .execute(c)
            }),
            #[cfg(feature = "postgres")]
            DbConn::Postgres(c) => c.transaction(|c| {
                diesel::insert_into(submissions::table)
                    .values(&rows)
                    .execute(c)
            }),
        }
        .map_err(|e| format!("submissions: {e}"))?;
        done += rows.len();
    }
    let by_status: Vec<(String, i64)> = submissions::table
        .group_by(submissions::status)
        .select((submissions::status, diesel::dsl::count_star()))
        .order(submissions::status.asc())
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    let overdue = pcii_portal::models::queue::queue(
        &mut conn,
        &pcii_portal::models::queue::QueueFilter {
            status: Some(pcii_portal::models::queue::QueueStatus::Overdue),
            ..Default::default()
        },
        now,
    )
    .map_err(|e| e.to_string())?
    .total;
    let summary: Vec<String> = by_status.iter().map(|(s, c)| format!("{s}={c}")).collect();
    println!(
        "{n} submissions, {} organisations: {}; overdue={overdue}",
        orgs.len(),
        summary.join(" ")
    );
    Ok(())
}
