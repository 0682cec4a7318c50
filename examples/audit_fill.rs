//! Benchmark helper: fills a portal's audit log with N entries through the real append path (batched
//! transactions), then prints how many entries there are and how many bytes `audit verify --full` will hash
//! (canonical encodings + Merkle nodes). With `--append`, appends the N entries and prints only the new head.
//! Used by bench/audit_verify.sh; not part of the portal.
//!
//!     audit_fill [N] [--append]

use pcii_portal::audit::log::{lock_head, Actor, AuditLog, Event, Outcome};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let append = args.iter().any(|a| a == "--append");
    let n: i64 = args
        .iter()
        .find(|a| *a != "--append")
        .map(|a| {
            a.parse()
                .map_err(|_| format!("{a:?} is not a number of entries"))
        })
        .transpose()?
        .unwrap_or(1_000_000);
    let figment = pcii_portal::figment();
    let settings = pcii_portal::config::load(&figment)?;
    let opened = pcii_portal::key_store::open_all(&settings).map_err(|e| e.to_string())?;
    let audit = AuditLog::new(opened.audit_signer, settings.audit_checkpoint_every);
    let db = pcii_portal::db::Db::open(&settings.database_url(), 2).map_err(|e| e.to_string())?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let actor = Actor {
        user_id: Some("0123456789abcdef0123456789abcdef".into()),
        role: Some("officer".into()),
        client_addr: Some("127.0.0.1".into()),
        request_id: Some("00112233aabbccdd".into()),
        session: None,
    };
    let mut done = 0;
    while done < n {
        let batch = (n - done).min(5000);
        diesel::Connection::transaction::<_, pcii_portal::error::AppError, _>(&mut *conn, |tx| {
            lock_head(tx)?;
            for i in 0..batch {
                let event = Event::new("submission.open", Outcome::Success)
                    .object("submission", format!("{:032x}", done + i))
                    .tracking(Some(format!("PCII-2026-{:06}", (done + i) % 1_000_000)))
                    .reason("benchmark entry");
                audit.append(tx, &actor, &event)?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        done += batch;
    }
    if append {
        let (head, _) = pcii_portal::audit::store::head(&mut conn).map_err(|e| e.to_string())?;
        println!("{head}");
        return Ok(());
    }
    let mut bytes: u64 = 0;
    let mut after = 0;
    let mut count: u64 = 0;
    loop {
        let page = pcii_portal::audit::store::page_after(&mut conn, after, 20_000)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            let prev = pcii_portal::audit::chain::parse_hash_hex(&e.prev_hash).unwrap_or_default();
            bytes += e.canonical_encoding(&prev).len() as u64;
            count += 1;
        }
    }
    // Merkle tree over the leaves: one 33-byte leaf hash and one 65-byte node hash per entry (about).
    bytes += count * (33 + 65);
    println!("{count} {bytes}");
    Ok(())
}
