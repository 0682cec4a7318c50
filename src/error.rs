//! One error type, mapped to a status by meaning. The public message is safe to show; details go to tracing only.

use std::sync::Mutex;

use rocket::http::Status;
use rocket::response::{self, Responder};
use rocket::Request;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Also used for objects the asker may not see: the same answer as for ids that do not exist.
    #[error("not found")]
    NotFound,
    #[error("gone: {0}")]
    Gone(String),
    #[error("login required")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn status(&self) -> Status {
        match self {
            AppError::NotFound => Status::NotFound,
            AppError::Gone(_) => Status::Gone,
            AppError::Unauthorized => Status::Unauthorized,
            AppError::Forbidden(_) => Status::Forbidden,
            AppError::BadRequest(_) => Status::BadRequest,
            AppError::Invalid(_) => Status::UnprocessableEntity,
            AppError::Conflict(_) => Status::Conflict,
            AppError::TooLarge(_) => Status::PayloadTooLarge,
            AppError::TooManyRequests(_) => Status::TooManyRequests,
            AppError::Unavailable(_) => Status::ServiceUnavailable,
            AppError::Internal(_) => Status::InternalServerError,
        }
    }

    /// What the person is told. Internal details never leave the server.
    pub fn public_message(&self) -> Option<String> {
        match self {
            AppError::Gone(m)
            | AppError::Forbidden(m)
            | AppError::BadRequest(m)
            | AppError::Invalid(m)
            | AppError::Conflict(m)
            | AppError::TooLarge(m)
            | AppError::TooManyRequests(m) => Some(m.clone()),
            _ => None,
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

/// The message an error wants shown, handed from the failing route to the catcher that renders the page.
#[derive(Default)]
pub struct ErrorMessage(pub Mutex<Option<String>>);

pub fn set_error_message(req: &Request<'_>, message: String) {
    let slot = req.local_cache(ErrorMessage::default);
    if let Ok(mut m) = slot.0.lock() {
        *m = Some(message);
    }
}

pub fn error_message(req: &Request<'_>) -> Option<String> {
    req.local_cache(ErrorMessage::default)
        .0
        .lock()
        .ok()
        .and_then(|m| m.clone())
}

impl<'r> Responder<'r, 'static> for AppError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        if status.code >= 500 {
            tracing::error!(status = status.code, error = %self, "request failed");
        } else {
            tracing::info!(status = status.code, "request refused");
        }
        if let Some(m) = self.public_message() {
            set_error_message(req, m);
        }
        // The catcher for this status renders the page (or JSON), so every error looks and is headed the same.
        Err(status)
    }
}
