//! Leases (`leases`): work that must run once across several instances on one database (the blob sweep) is done
//! by whichever instance holds its lease; a backup holds one while it copies (deletions wait for it). Times are the
//! database's clock (Unix seconds): every instance reads the same one, so clock skew between machines cannot make
//! two of them think they hold a lease at once.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::db::schema::leases;
use crate::db::DbConn;

/// Who holds a lease, and until when (the database's clock).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = leases)]
pub struct Lease {
    pub holder: String,
    pub expires_at: i64,
}

/// The database's clock, in Unix seconds (the one expression that differs between the backends).
pub fn database_now(conn: &mut DbConn) -> QueryResult<i64> {
    let now = match conn {
        DbConn::Sqlite(_) => "CAST(strftime('%s', 'now') AS BIGINT)",
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => "CAST(FLOOR(EXTRACT(EPOCH FROM CLOCK_TIMESTAMP())) AS BIGINT)",
    };
    diesel::select(diesel::dsl::sql::<BigInt>(now)).get_result(conn)
}

/// Takes the lease `name` for `holder` until `seconds` from now by the database's clock — when nobody holds it,
/// when its holder's time has run out, or when `holder` holds it already (renewed). Returns whether `holder` holds
/// it now. Each step is one statement, safe against any number of instances trying at once: the conditional
/// UPDATE takes over (PostgreSQL re-checks its condition on a row another updated meanwhile; SQLite has one
/// writer), and of concurrent INSERTs of an absent lease the primary key lets one through.
pub fn acquire(conn: &mut DbConn, name: &str, holder: &str, seconds: i64) -> QueryResult<bool> {
    let now = database_now(conn)?;
    let taken = diesel::update(
        leases::table
            .find(name)
            .filter(leases::holder.eq(holder).or(leases::expires_at.le(now))),
    )
    .set((
        leases::holder.eq(holder),
        leases::expires_at.eq(now + seconds),
    ))
    .execute(conn)?;
    if taken > 0 {
        return Ok(true);
    }
    // No row, or a live one of another holder. The INSERT's unique-key refusal (someone else's lease) is rolled
    // back to a savepoint, so that a caller's transaction goes on.
    let inserted = conn.transaction(|tx| {
        diesel::insert_into(leases::table)
            .values((
                leases::name.eq(name),
                leases::holder.eq(holder),
                leases::expires_at.eq(now + seconds),
            ))
            .execute(tx)
    });
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A lease taken for a run of work made of steps (a notification round's mails): renewed before each step, so a
/// run longer than the lease keeps it, and stopped at the first step after another instance took it over.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub name: &'static str,
    pub holder: &'static str,
    pub seconds: i64,
}

impl Held {
    /// Renews the lease for another `seconds` from now; `false` when another instance holds it (stop the run).
    pub fn renew(&self, conn: &mut DbConn) -> QueryResult<bool> {
        acquire(conn, self.name, self.holder, self.seconds)
    }
}

/// Forgets the lease whoever holds it (a holder known to be gone: see `workflow::blobs::sweep_at_start`).
pub fn clear(conn: &mut DbConn, name: &str) -> QueryResult<()> {
    diesel::delete(leases::table.find(name))
        .execute(conn)
        .map(|_| ())
}

/// At start, on SQLite: a lease found can only be this instance's own from before a restart (one instance per
/// database file), so it is cleared and the first round runs at once instead of waiting, after a `kill -9`, for the
/// dead process's lease to lapse. On PostgreSQL another instance may hold it: kept.
pub fn clear_own_at_start(conn: &mut DbConn, name: &str) -> QueryResult<()> {
    if matches!(conn, DbConn::Sqlite(_)) {
        clear(conn, name)?;
    }
    Ok(())
}

/// Gives the lease up, if `holder` holds it: another instance may take it at once. Returns whether it did.
pub fn release(conn: &mut DbConn, name: &str, holder: &str) -> QueryResult<bool> {
    diesel::delete(leases::table.find(name).filter(leases::holder.eq(holder)))
        .execute(conn)
        .map(|n| n > 0)
}

/// Whether anyone holds the lease `name` now (by the database's clock).
pub fn is_held(conn: &mut DbConn, name: &str) -> QueryResult<bool> {
    let now = database_now(conn)?;
    Ok(find(conn, name)?.is_some_and(|lease| lease.expires_at > now))
}

/// The lease's row, held or lapsed (for the tests and an operator's look).
pub fn find(conn: &mut DbConn, name: &str) -> QueryResult<Option<Lease>> {
    leases::table
        .find(name)
        .select(Lease::as_select())
        .first(conn)
        .optional()
}
