//! One Diesel connection type for SQLite and PostgreSQL, its pool, and the embedded migrations.

pub mod schema;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, CustomizeConnection, ManageConnection, Pool, PooledConnection};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{AppError, AppResult};

/// The connection every query runs on; the variant is picked by the database URL's scheme.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(diesel::sqlite::SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(diesel::pg::PgConnection),
}

impl DbConn {
    /// Runs `f` in a transaction: committed when it returns `Ok`, rolled back otherwise (nested calls
    /// become savepoints). The one way code above `models` groups statements, without naming Diesel.
    pub fn transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        Connection::transaction(self, f)
    }
}

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why the database could not be opened or migrated: said to the operator at start or by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "the database URL is PostgreSQL, but this binary was built without the `postgres` feature"
    )]
    PostgresNotBuilt,
    #[error("creating the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("creating the database file {path} private (0600): {source}")]
    PrivateFile {
        path: String,
        source: std::io::Error,
    },
    #[error("opening the SQLite database: {0}")]
    OpenSqlite(String),
    #[error("enabling WAL: {0}")]
    Wal(diesel::result::Error),
    #[error("opening the database pool: {0}")]
    Pool(r2d2::PoolError),
    #[error("{0}")]
    Connection(AppError),
    #[error("applying migrations: {0}")]
    Migrate(String),
    #[error("reverting migrations: {0}")]
    Revert(String),
    #[error(
        "no database at {path}: this command reads the portal's own, and creates none; check data_dir (or \
         database_url) and the working directory, or start the portal first"
    )]
    Missing { path: String },
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if cfg!(feature = "postgres") {
                Ok(Backend::Postgres)
            } else {
                Err(DbError::PostgresNotBuilt)
            }
        } else {
            Ok(Backend::Sqlite)
        }
    }
}

/// Pragmas every SQLite connection gets: integrity, wiping of deleted pages (the busy timeout is added per pool).
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; \
     PRAGMA trusted_schema = OFF; PRAGMA synchronous = FULL;";

/// How long a statement waits for another writer's lock before it fails (and the request is answered 503).
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5000;

// SQLite's own `lower()` folds ASCII letters only ("É" stays "É"), so the case-insensitive name searches
// (`lower(column) LIKE lower-cased text`) missed "Électricité" typed in small letters. Every SQLite connection
// replaces it with Unicode lower case, as PostgreSQL's `lower()` does under a UTF-8 `LC_CTYPE`. Registered only;
// queries call `models::organisation::lower`, which emits the same SQL name.
#[allow(dead_code)]
mod sqlite_functions {
    diesel::define_sql_function! {
        #[sql_name = "lower"]
        fn unicode_lower(
            x: diesel::sql_types::Nullable<diesel::sql_types::Text>,
        ) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
    }
}

/// A SQLite connection as the portal uses every one: [`SQLITE_PRAGMAS`] after the busy timeout (every later
/// statement, these pragmas included, waits for a lock), and `lower()` in Unicode.
fn open_sqlite(
    path: &str,
    busy_timeout_ms: u64,
) -> diesel::ConnectionResult<diesel::sqlite::SqliteConnection> {
    let mut c = diesel::sqlite::SqliteConnection::establish(path)?;
    let setup = c
        .batch_execute(&format!(
            "PRAGMA busy_timeout = {busy_timeout_ms}; {SQLITE_PRAGMAS}"
        ))
        .and_then(|()| {
            sqlite_functions::unicode_lower_utils::register_impl(&mut c, |x: Option<String>| {
                x.map(|s| s.to_lowercase())
            })
        });
    setup.map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(c)
}

pub struct Manager {
    url: String,
    backend: Backend,
    busy_timeout_ms: u64,
}

impl Manager {
    fn sqlite_path(&self) -> &str {
        self.url.strip_prefix("sqlite://").unwrap_or(&self.url)
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        match self.backend {
            Backend::Sqlite => {
                let c = open_sqlite(self.sqlite_path(), self.busy_timeout_ms)
                    .map_err(r2d2::Error::ConnectionError)?;
                Ok(DbConn::Sqlite(c))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let mut c = diesel::pg::PgConnection::establish(&self.url)
                    .map_err(r2d2::Error::ConnectionError)?;
                // As SQLite's busy timeout: a statement waiting for another's lock gives up (and the request is
                // answered 503) instead of holding its connection without end.
                // Every audited act takes the audit head's row lock first and then reads what the previous
                // holder committed: that serialises check-then-act only under READ COMMITTED (a database whose
                // default a DBA raised would answer concurrent acts with serialization failures, 503s).
                c.batch_execute(&format!(
                    "SET lock_timeout = {}; \
                     SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED;",
                    self.busy_timeout_ms
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConn::Postgres(c))
            }
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres => Err(r2d2::Error::ConnectionError(
                diesel::ConnectionError::InvalidConnectionUrl(
                    "built without the postgres feature".into(),
                ),
            )),
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A connection given back by a panicking thread, or with a transaction still open or failed, is dropped, not
    /// pooled: a transaction left open would keep SQLite's write lock for ever, and the next holder's
    /// transactions would run as savepoints inside it, never committed (as diesel's own r2d2 manager does).
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        use diesel::connection::TransactionManager;
        std::thread::panicking()
            || <DbConn as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

#[derive(Debug)]
struct NoCustomizer;
impl CustomizeConnection<DbConn, r2d2::Error> for NoCustomizer {}

pub type PooledConn = PooledConnection<Manager>;

/// The pool, shared by every request; all database work runs on blocking threads through [`Db::run`].
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    pub backend: Backend,
}

impl Db {
    /// Opens the pool (creating the SQLite file and WAL mode on first use) and applies pending migrations.
    pub fn open(url: &str, pool_size: u32) -> Result<Db, DbError> {
        Db::open_with(url, pool_size, DEFAULT_BUSY_TIMEOUT_MS)
    }

    /// [`Db::open`] for a command that reads or acts on the portal's database and must not make one: a SQLite file
    /// that is not there is refused (a `status` or `backup` run from the wrong directory made a new, empty database
    /// and reported on it, exit status and all).
    pub fn open_existing(url: &str, pool_size: u32) -> Result<Db, DbError> {
        Db::open_existing_with(url, pool_size, DEFAULT_BUSY_TIMEOUT_MS)
    }

    /// [`Db::open_existing`] with SQLite's busy timeout (ms), as [`Db::open_with`].
    pub fn open_existing_with(
        url: &str,
        pool_size: u32,
        busy_timeout_ms: u64,
    ) -> Result<Db, DbError> {
        if Backend::from_url(url)? == Backend::Sqlite {
            let path = Manager {
                url: url.to_string(),
                backend: Backend::Sqlite,
                busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            }
            .sqlite_path()
            .to_string();
            if !std::path::Path::new(&path).exists() {
                return Err(DbError::Missing { path });
            }
        }
        Db::open_with(url, pool_size, busy_timeout_ms)
    }

    /// [`Db::open`] with SQLite's busy timeout (ms): how long a write waits for another's lock before failing.
    pub fn open_with(url: &str, pool_size: u32, busy_timeout_ms: u64) -> Result<Db, DbError> {
        let backend = Backend::from_url(url)?;
        let manager = Manager {
            url: url.to_string(),
            backend,
            busy_timeout_ms,
        };
        if backend == Backend::Sqlite {
            let path = manager.sqlite_path();
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|source| DbError::CreateDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
            }
            private_file(path)?;
            let mut c = manager
                .connect()
                .map_err(|e| DbError::OpenSqlite(e.to_string()))?;
            c.batch_execute("PRAGMA journal_mode = WAL;")
                .map_err(DbError::Wal)?;
            // Before the pool exists: the connections it opens in the background would otherwise wait on a long
            // migration's lock (rebuilding a large table) and log their failures.
            run_migrations(&mut c)?;
        }
        let pool = Pool::builder()
            .max_size(pool_size.max(2))
            .connection_timeout(Duration::from_secs(20))
            .connection_customizer(Box::new(NoCustomizer))
            .build(manager)
            .map_err(DbError::Pool)?;
        let db = Db { pool, backend };
        if backend != Backend::Sqlite {
            db.migrate()?;
        }
        Ok(db)
    }

    /// Connections of the pool taken and not yet given back.
    pub fn connections_in_use(&self) -> u32 {
        let state = self.pool.state();
        state.connections - state.idle_connections
    }

    pub fn get(&self) -> Result<PooledConn, AppError> {
        self.pool
            .get()
            .map_err(|e| AppError::Unavailable(format!("database pool: {e}")))
    }

    /// Runs blocking database work off the async executor.
    pub async fn run<F, R>(&self, f: F) -> Result<R, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<R, AppError> + Send + 'static,
        R: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| AppError::Internal(format!("blocking task failed: {e}")))?
    }

    /// [`Db::run`], run again 250 and then 500 ms later while the database does not answer (`Unavailable`): for the
    /// record of something already done outside it (a mail that went), which a passing fault would otherwise have
    /// done twice.
    pub async fn run_retried<F, R>(&self, f: F) -> Result<R, AppError>
    where
        F: Fn(&mut DbConn) -> Result<R, AppError> + Clone + Send + 'static,
        R: Send + 'static,
    {
        let mut result = self.run(f.clone()).await;
        for wait_ms in [250, 500] {
            if !matches!(result, Err(AppError::Unavailable(_))) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            result = self.run(f.clone()).await;
        }
        result
    }

    /// Runs blocking work that takes its connections itself, only while it uses them: for work that waits on
    /// something else between two database steps (a password check) and must not hold a connection meanwhile.
    pub async fn run_lazily<F, R>(&self, f: F) -> Result<R, AppError>
    where
        F: FnOnce(&Db) -> Result<R, AppError> + Send + 'static,
        R: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| AppError::Internal(format!("blocking task failed: {e}")))?
    }

    pub fn migrate(&self) -> Result<usize, DbError> {
        let mut conn = self.get().map_err(DbError::Connection)?;
        run_migrations(&mut conn)
    }
}

/// Where work that alternates database steps with slow outside calls (the blob store) gets its connection for
/// each step: the one the caller holds, or one taken from the pool for that step only, so that none is held while
/// the outside call waits.
pub trait Connections {
    fn with<R>(&mut self, f: impl FnOnce(&mut DbConn) -> AppResult<R>) -> AppResult<R>;
}

impl Connections for &mut DbConn {
    fn with<R>(&mut self, f: impl FnOnce(&mut DbConn) -> AppResult<R>) -> AppResult<R> {
        f(self)
    }
}

impl Connections for &Db {
    fn with<R>(&mut self, f: impl FnOnce(&mut DbConn) -> AppResult<R>) -> AppResult<R> {
        f(&mut *self.get()?)
    }
}

/// A copy made by [`copy_into`], opened for reading only (no migrations, no pool): to read what it holds.
pub fn open_copy(path: &std::path::Path) -> Result<DbConn, DbError> {
    let mut c = diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy())
        .map_err(|e| DbError::OpenSqlite(e.to_string()))?;
    c.batch_execute("PRAGMA query_only = ON;")
        .map_err(|e| DbError::OpenSqlite(e.to_string()))?;
    Ok(DbConn::Sqlite(c))
}

/// SQLite: a consistent copy of the whole database written into the empty file `path` (`VACUUM INTO`: one read
/// transaction, beside running writers). `None` on PostgreSQL, whose tool for this is pg_dump.
pub fn copy_into(conn: &mut DbConn, path: &str) -> Option<diesel::QueryResult<()>> {
    match conn {
        DbConn::Sqlite(c) => Some(
            diesel::sql_query("VACUUM INTO ?")
                .bind::<diesel::sql_types::Text, _>(path)
                .execute(c)
                .map(|_| ()),
        ),
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => None,
    }
}

pub fn run_migrations(conn: &mut DbConn) -> Result<usize, DbError> {
    let applied = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            // Instances of a new version started together take turns: the second finds nothing pending instead of
            // applying the same migration and failing to start. (SQLite: its write lock does the same.)
            // Waited for as long as the other instance's migrations take: the connection's lock timeout (5 s) made
            // an instance that started during a longer migration fail to start. The migrations themselves keep it, so
            // one waiting on a table a running query reads gives up instead of blocking every query behind it.
            let migrate_err = |e: diesel::result::Error| DbError::Migrate(e.to_string());
            let prior: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "current_setting('lock_timeout')",
            ))
            .get_result(c)
            .map_err(migrate_err)?;
            c.batch_execute(&format!(
                "SET lock_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK})"
            ))
            .map_err(migrate_err)?;
            diesel::sql_query("SELECT set_config('lock_timeout', $1, false)")
                .bind::<diesel::sql_types::Text, _>(&prior)
                .execute(c)
                .map_err(migrate_err)?;
            let applied = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len());
            let unlocked = c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            if let Err(e) = unlocked {
                // The lock is the session's: it goes with the connection if this failed.
                tracing::warn!(error = %e, "releasing the migration lock failed");
            }
            applied
        }
    };
    applied.map_err(|e| DbError::Migrate(e.to_string()))
}

/// The PostgreSQL advisory lock key the migrations are applied under (any fixed number no other lock uses).
#[cfg(feature = "postgres")]
pub const MIGRATION_LOCK: i64 = 0x5043_4949_4d49_4752; // "PCIIMIGR"

/// Reverts every applied migration (for `migrate --down-all` and the up/down/up test).
pub fn revert_all_migrations(conn: &mut DbConn) -> Result<usize, DbError> {
    let reverted = match conn {
        DbConn::Sqlite(c) => c.revert_all_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => c
            .revert_all_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    };
    reverted.map_err(|e| DbError::Revert(e.to_string()))
}

/// Creates the SQLite file 0600 (or tightens an existing one, with its WAL and shared-memory files) before SQLite
/// opens it: SQLite gives the `-wal` and `-shm` files the mode of the database file, so none of the three is ever
/// readable by another account on the machine.
fn private_file(path: &str) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path == ":memory:" || path.is_empty() {
        return Ok(());
    }
    let fail = |source| DbError::PrivateFile {
        path: path.to_string(),
        source,
    };
    // Never open (and close) a database file that exists: closing any descriptor of it drops the POSIX locks
    // that SQLite connections of this process hold on it. A new file has no connection yet.
    if std::fs::symlink_metadata(path).is_err() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
    }
    for p in [
        path.to_string(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        match std::fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .map_err(fail)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reverts the last applied migration (for the test of a migration on a populated database).
pub fn revert_last_migration(conn: &mut DbConn) -> Result<(), DbError> {
    let reverted = match conn {
        DbConn::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS).map(|_| ()),
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => c.revert_last_migration(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    reverted.map_err(|e| DbError::Revert(e.to_string()))
}

/// True when the database takes a write: a transaction that updates nothing, rolled back. A locked, busy or
/// read-only database (or a full one that cannot journal) fails it, as it would fail the next real write.
pub fn accepts_writes(conn: &mut DbConn) -> bool {
    let tried: Result<(), diesel::result::Error> = conn.transaction(|tx| {
        diesel::sql_query("UPDATE settings SET value = value WHERE name = '' AND 1 = 0")
            .execute(tx)?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    matches!(tried, Err(diesel::result::Error::RollbackTransaction))
}

/// The column of `PRAGMA wal_checkpoint`'s answer that says whether it was kept from finishing.
#[derive(diesel::QueryableByName)]
struct WalCheckpoint {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
}

/// SQLite: copies every page of the write-ahead log into the database file and truncates the log to nothing
/// (`PRAGMA wal_checkpoint(TRUNCATE)`), for after a deletion that must leave no copy behind (a destruction's wrapped
/// data keys). `secure_delete` zeroes the deleted bytes in the new page image, but until a checkpoint the database
/// file keeps the old page and the log every earlier image of it. It waits for writers, and for readers of older
/// snapshots, up to the busy timeout: `Ok(false)` (or a busy error) when some were still reading; SQLite's automatic
/// checkpoint catches up later. Nothing to do on PostgreSQL (`Ok(true)`).
pub fn checkpoint_truncate(conn: &mut DbConn) -> diesel::QueryResult<bool> {
    match conn {
        DbConn::Sqlite(c) => {
            let answer: WalCheckpoint =
                diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(c)?;
            Ok(answer.busy == 0)
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => Ok(true),
    }
}

/// True when the database answers a trivial query (for `/healthz`).
pub fn ping(conn: &mut DbConn) -> bool {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
        .execute(conn)
        .is_ok()
}

/// A fresh 128-bit random identifier, hex-encoded: ids never reveal counts or order.
pub fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}
