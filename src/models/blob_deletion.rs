//! The durable queue of ciphertexts to delete from the blob store. A decision that destroys content writes its
//! blobs' names here in its own transaction; the names leave the queue only once the store confirms the files are
//! gone, so a crash at any point leaves the work queued, never forgotten.

use diesel::prelude::*;

use crate::db::schema::blob_deletions;
use crate::db::DbConn;

/// Queues store names for deletion (a name already queued stays queued once).
pub fn enqueue(conn: &mut DbConn, names: &[String], now: i64) -> QueryResult<()> {
    for name in names {
        let exists: i64 = blob_deletions::table.find(name).count().get_result(conn)?;
        if exists == 0 {
            diesel::insert_into(blob_deletions::table)
                .values((
                    blob_deletions::storage_name.eq(name),
                    blob_deletions::queued_at.eq(now),
                    blob_deletions::attempts.eq(0),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Up to `limit` queued names, those tried least first.
pub fn pending(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<String>> {
    blob_deletions::table
        .order((
            blob_deletions::attempts.asc(),
            blob_deletions::queued_at.asc(),
        ))
        .limit(limit)
        .select(blob_deletions::storage_name)
        .load(conn)
}

/// The store confirmed the file is gone.
pub fn done(conn: &mut DbConn, name: &str) -> QueryResult<()> {
    diesel::delete(blob_deletions::table.find(name)).execute(conn)?;
    Ok(())
}

/// Deleting failed this time; it stays queued.
pub fn failed(conn: &mut DbConn, name: &str) -> QueryResult<()> {
    diesel::update(blob_deletions::table.find(name))
        .set(blob_deletions::attempts.eq(blob_deletions::attempts + 1))
        .execute(conn)?;
    Ok(())
}

/// How many names are queued.
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    blob_deletions::table.count().get_result(conn)
}

/// The queue at a glance (the operator's view).
pub fn summary(conn: &mut DbConn) -> QueryResult<super::QueueSummary> {
    use diesel::dsl::{count_star, max, min};
    let (count, oldest_at, most): (i64, Option<i64>, Option<i32>) = blob_deletions::table
        .select((
            count_star(),
            min(blob_deletions::queued_at),
            max(blob_deletions::attempts),
        ))
        .first(conn)?;
    Ok(super::QueueSummary {
        count,
        oldest_at,
        most_attempts: most.map_or(0, i64::from),
    })
}

/// Those of `names` waiting in the deletion queue (the orphan sweep leaves them to the queue).
pub fn queued_among(
    conn: &mut DbConn,
    names: &[String],
) -> QueryResult<std::collections::HashSet<String>> {
    let queued: Vec<String> = blob_deletions::table
        .filter(blob_deletions::storage_name.eq_any(names))
        .select(blob_deletions::storage_name)
        .load(conn)?;
    Ok(queued.into_iter().collect())
}
