//! The domain's one error type: what went wrong, in the terms of the work, not of the transport. The web
//! layer maps it to a status, a page or JSON (`web::error`); the CLI prints it. A message carried by a
//! variant is safe to show the person who asked; `Internal` details go to tracing only.

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Also used for objects the asker may not see: the same answer as for ids that do not exist.
    #[error("not found")]
    NotFound,
    /// It existed and no longer does (content destroyed, link used).
    #[error("gone: {0}")]
    Gone(String),
    /// The person may not do this, and is told why.
    #[error("refused: {0}")]
    Refused(String),
    /// The request could not be understood (a form that is not the portal's, a broken upload).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Understood, but breaks a rule of the work (a missing reason, a step the lifecycle forbids).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A PCII officer asked to act where it has a conflict of interest (a submission of its own organisation, a
    /// decision about that organisation). Refused like [`AppError::Refused`], and recorded: [`crate::audit::log::AuditLog::fact`]
    /// rolls the act back and appends the refusal; a check made outside an act records it with
    /// `AuditLog::record_conflict`.
    #[error("conflict of interest: {}", .0.message)]
    ConflictOfInterest(Box<ConflictOfInterest>),
    /// The state changed underneath (taken, already decided, a race lost).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Larger than a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Too many attempts; try later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The request took longer than the portal allows (an upload past its window): nothing of it was kept.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// Ours, and passing: the database or the store is busy, locked, read-only or down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Ours: the disk (or the database's) is full; what was being written is not kept.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// Ours, and a fault.
    #[error("internal: {0}")]
    Internal(String),
    /// The act was done and its commit failed on PostgreSQL: whether the database kept it cannot be told (the server
    /// may have committed before the connection was lost; on SQLite a failed commit is a rollback). Nothing it wrote may be undone on that guess: files stay for the
    /// orphan sweep, which removes only what no committed row names. The error inside says why (503, or 507).
    #[error("not confirmed: {0}")]
    Unconfirmed(Box<AppError>),
}

pub type AppResult<T> = Result<T, AppError>;

/// What an officer was refused for a conflict of interest: the object it asked to act on, why (for the audit
/// entry), and what it is told.
#[derive(Debug)]
pub struct ConflictOfInterest {
    pub object_kind: &'static str,
    pub object_id: String,
    pub tracking_number: Option<String>,
    pub reason: &'static str,
    pub message: &'static str,
}

impl AppError {
    /// A refusal for a conflict of interest about `object_kind` `object_id` (see [`AppError::ConflictOfInterest`]).
    pub fn conflict_of_interest(
        object_kind: &'static str,
        object_id: &str,
        tracking_number: Option<&str>,
        reason: &'static str,
        message: &'static str,
    ) -> AppError {
        AppError::ConflictOfInterest(Box::new(ConflictOfInterest {
            object_kind,
            object_id: object_id.to_owned(),
            tracking_number: tracking_number.map(str::to_owned),
            reason,
            message,
        }))
    }

    /// An I/O failure while doing `what`: a full disk (507) and a store that does not answer (503) keep their own
    /// answer; anything else is ours (500), named for the log.
    pub fn io(what: &str, e: std::io::Error) -> AppError {
        match AppError::from(e) {
            AppError::Internal(m) => AppError::Internal(format!("{what}: {m}")),
            other => other,
        }
    }

    /// What the person is told. Internal details never leave the server.
    pub fn public_message(&self) -> Option<String> {
        match self {
            AppError::Gone(m)
            | AppError::Refused(m)
            | AppError::Malformed(m)
            | AppError::Invalid(m)
            | AppError::Conflict(m)
            | AppError::TooLarge(m)
            | AppError::Throttled(m)
            | AppError::TimedOut(m) => Some(m.clone()),
            AppError::ConflictOfInterest(c) => Some(c.message.to_owned()),
            AppError::Unconfirmed(_) => Some(
                "The portal could not confirm that this was recorded. Look whether it was before you try again."
                    .into(),
            ),
            AppError::NotFound
            | AppError::Unavailable(_)
            | AppError::StorageFull(_)
            | AppError::Internal(_) => None,
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match e {
            Error::NotFound => AppError::NotFound,
            // Passing states of the database, not faults of the request: the caller is told to try again (503),
            // or that the storage is full (507). SQLite says which only in its message.
            Error::DatabaseError(kind, info) => {
                let message = info.message().to_ascii_lowercase();
                let detail = format!("database: {}", info.message());
                // PostgreSQL refuses a NUL character in text (SQLite stores it): the caller sent one, in a path,
                // a query or a field, where no value the portal keeps can hold it.
                if message.contains("invalid byte sequence for encoding") {
                    return AppError::Malformed(
                        "The request holds a character no value here can hold (a NUL).".into(),
                    );
                }
                if message.contains("disk is full")
                    || message.contains("no space left")
                    || message.contains("could not extend file")
                {
                    AppError::StorageFull(detail)
                } else if matches!(
                    kind,
                    Kind::ReadOnlyTransaction
                        | Kind::ClosedConnection
                        | Kind::SerializationFailure
                        | Kind::UnableToSendCommand
                ) || message.contains("database is locked")
                    // PostgreSQL: one of two transactions waiting on each other was cancelled; the other went on.
                    || message.contains("deadlock detected")
                    || message.contains("terminating connection")
                    || message.contains("table is locked")
                    || message.contains("schema is locked")
                    || message.contains("readonly database")
                    || message.contains("read-only")
                    || message.contains("disk i/o error")
                    || message.contains("lock timeout")
                    // A statement timeout set on the role, or a cancel by the operator (pg_cancel_backend).
                    || message.contains("canceling statement due to")
                {
                    AppError::Unavailable(detail)
                } else {
                    AppError::Internal(detail)
                }
            }
            // The commit's own failure says what happened (a rollback that also failed adds nothing to do).
            Error::RollbackErrorOnCommit { commit_error, .. } => AppError::from(*commit_error),
            other => AppError::Internal(format!("database: {other}")),
        }
    }
}

impl AppError {
    /// The `AppError` an I/O error carries (a database step inside a reader: busy stays 503), or else the I/O error
    /// as `doing` met it.
    pub fn carried_by(e: std::io::Error, doing: &str) -> AppError {
        match e.downcast::<AppError>() {
            Ok(carried) => carried,
            Err(e) => AppError::io(doing, e),
        }
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                AppError::StorageFull(format!("io: {e}"))
            }
            // A read-only disk, or a network store (S3) that did not answer: ours, and passing.
            ErrorKind::ReadOnlyFilesystem
            | ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::TimedOut
            | ErrorKind::NotConnected
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable => AppError::Unavailable(format!("io: {e}")),
            // Out of file descriptors under load (EMFILE, ENFILE): passing, like a busy database.
            _ if matches!(e.raw_os_error(), Some(23 | 24)) => {
                AppError::Unavailable(format!("io: {e}"))
            }
            _ => AppError::Internal(format!("io: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};

    #[test]
    fn a_read_only_or_locked_database_is_unavailable_not_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let path = path.to_str().unwrap();
        let mut rw = diesel::sqlite::SqliteConnection::establish(path).unwrap();
        rw.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        // Read-only as SQLite enforces it (file permissions would not stop root).
        let mut ro =
            diesel::sqlite::SqliteConnection::establish(&format!("file:{path}?mode=ro")).unwrap();
        let e = diesel::sql_query("INSERT INTO t VALUES (1)")
            .execute(&mut ro)
            .unwrap_err();
        assert!(matches!(AppError::from(e), AppError::Unavailable(_)));
        // A broken statement is still ours.
        let e = diesel::sql_query("INSERT INTO nowhere VALUES (2)")
            .execute(&mut rw)
            .unwrap_err();
        assert!(matches!(AppError::from(e), AppError::Internal(_)));
        // Locked by another writer, past the busy timeout.
        rw.batch_execute("BEGIN EXCLUSIVE").unwrap();
        let mut other = diesel::sqlite::SqliteConnection::establish(path).unwrap();
        other.batch_execute("PRAGMA busy_timeout = 10").unwrap();
        let e = diesel::sql_query("INSERT INTO t VALUES (2)")
            .execute(&mut other)
            .unwrap_err();
        assert!(matches!(AppError::from(e), AppError::Unavailable(_)));
    }

    #[test]
    fn postgresql_deadlocks_lost_connections_and_failed_commits_are_unavailable() {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        let db = |kind, message: &str| Error::DatabaseError(kind, Box::new(message.to_string()));
        for e in [
            db(Kind::Unknown, "deadlock detected"),
            db(Kind::UnableToSendCommand, "no connection to the server"),
            db(
                Kind::Unknown,
                "terminating connection due to administrator command",
            ),
            Error::RollbackErrorOnCommit {
                rollback_error: Box::new(Error::BrokenTransactionManager),
                commit_error: Box::new(db(Kind::SerializationFailure, "could not serialize")),
            },
            db(
                Kind::Unknown,
                "canceling statement due to statement timeout",
            ),
            db(Kind::Unknown, "canceling statement due to user request"),
        ] {
            let shown = e.to_string();
            assert!(
                matches!(AppError::from(e), AppError::Unavailable(_)),
                "{shown}"
            );
        }
        assert!(matches!(
            AppError::from(db(Kind::Unknown, "syntax error at or near")),
            AppError::Internal(_)
        ));
        // A NUL the caller sent, which PostgreSQL text cannot hold: the caller's mistake.
        assert!(matches!(
            AppError::from(db(
                Kind::Unknown,
                "invalid byte sequence for encoding \"UTF8\": 0x00"
            )),
            AppError::Malformed(_)
        ));
    }

    #[test]
    fn an_error_carried_through_a_reader_keeps_its_kind() {
        let busy = std::io::Error::other(AppError::Unavailable("database is locked".into()));
        assert!(matches!(
            AppError::carried_by(busy, "sizing"),
            AppError::Unavailable(_)
        ));
        let plain = std::io::Error::other("something else");
        assert!(
            matches!(AppError::carried_by(plain, "sizing"), AppError::Internal(m) if m.starts_with("sizing"))
        );
    }

    #[test]
    fn a_full_disk_is_storage_full_and_a_read_only_one_unavailable() {
        // The errno values as the kernel reports them (Linux: ENOSPC 28, EDQUOT 122, EROFS 30).
        // Out of file descriptors (ENFILE 23, EMFILE 24) passes too.
        for (errno, full) in [
            (28, true),
            (122, true),
            (30, false),
            (23, false),
            (24, false),
        ] {
            match AppError::from(std::io::Error::from_raw_os_error(errno)) {
                AppError::StorageFull(_) => assert!(full, "errno {errno}"),
                AppError::Unavailable(_) => assert!(!full, "errno {errno}"),
                other => panic!("errno {errno}: {other}"),
            }
        }
    }
}
