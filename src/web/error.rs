//! The one place a domain error becomes HTTP: its status, and the message the catcher shows (as a page
//! for people, JSON for machines).

use std::sync::Mutex;

use rocket::http::Status;
use rocket::response::{self, Responder};
use rocket::Request;

use crate::error::AppError;

pub fn status(e: &AppError) -> Status {
    match e {
        AppError::NotFound => Status::NotFound,
        AppError::Gone(_) => Status::Gone,
        AppError::Refused(_) | AppError::ConflictOfInterest(_) => Status::Forbidden,
        AppError::Malformed(_) => Status::BadRequest,
        AppError::Invalid(_) => Status::UnprocessableEntity,
        AppError::Conflict(_) => Status::Conflict,
        AppError::TooLarge(_) => Status::PayloadTooLarge,
        AppError::Throttled(_) => Status::TooManyRequests,
        AppError::TimedOut(_) => Status::RequestTimeout,
        AppError::Unavailable(_) => Status::ServiceUnavailable,
        AppError::StorageFull(_) => Status::InsufficientStorage,
        AppError::Internal(_) => Status::InternalServerError,
        // Passing either way: the person looks whether it was recorded, then tries again.
        AppError::Unconfirmed(inner) => match **inner {
            AppError::StorageFull(_) => Status::InsufficientStorage,
            _ => Status::ServiceUnavailable,
        },
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

/// Set when an act's outcome is unknown ([`AppError::Unconfirmed`]): its 503 carries no `Retry-After`, which would
/// invite a client to send it again before anyone looked whether it was recorded.
pub struct OutcomeUnknown(pub bool);

pub fn outcome_unknown(req: &Request<'_>) -> bool {
    req.local_cache(|| OutcomeUnknown(false)).0
}

pub fn error_message(req: &Request<'_>) -> Option<String> {
    req.local_cache(ErrorMessage::default)
        .0
        .lock()
        .ok()
        .and_then(|m| m.clone())
}

/// Logs a refusal as its answer does: a passing one (busy) as a warning, a fault of ours as an error, the caller's
/// mistakes at info without their words. For pages that answer a refusal themselves (a form shown again).
pub fn log_refusal(e: &AppError) {
    let status = status(e);
    if matches!(e, AppError::Unavailable(_)) {
        // Passing by its nature (every worker or slot busy, the database locked for a moment): a warning, so
        // that the error level stays for faults. An outage shows as a run of these and a failing `/healthz`.
        tracing::warn!(status = status.code, error = %e, "request refused for now");
    } else if status.code >= 500 {
        tracing::error!(status = status.code, error = %e, "request failed");
    } else {
        tracing::info!(status = status.code, "request refused");
    }
}

impl<'r> Responder<'r, 'static> for AppError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = status(&self);
        log_refusal(&self);
        if let Some(m) = self.public_message() {
            set_error_message(req, m);
        }
        if matches!(self, AppError::Unconfirmed(_)) {
            req.local_cache(|| OutcomeUnknown(true));
        }
        // The catcher for this status renders the page (or JSON), so every error looks and is headed the same.
        Err(status)
    }
}
