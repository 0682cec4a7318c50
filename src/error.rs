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
    /// The state changed underneath (taken, already decided, a race lost).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Larger than a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Too many attempts; try later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Ours, and passing: the database or the store is busy or down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Ours, and a fault.
    #[error("internal: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// What the person is told. Internal details never leave the server.
    pub fn public_message(&self) -> Option<String> {
        match self {
            AppError::Gone(m)
            | AppError::Refused(m)
            | AppError::Malformed(m)
            | AppError::Invalid(m)
            | AppError::Conflict(m)
            | AppError::TooLarge(m)
            | AppError::Throttled(m) => Some(m.clone()),
            AppError::NotFound | AppError::Unavailable(_) | AppError::Internal(_) => None,
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => AppError::NotFound,
            other => AppError::Internal(format!("database: {other}")),
        }
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        AppError::Internal(format!("io: {e}"))
    }
}
