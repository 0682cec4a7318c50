//! Sends a message after the fact that produced it has committed, on a blocking thread (an SMTP exchange
//! must neither hold a database connection nor stall the async executor).

use crate::mail::Mail;
use crate::AppState;

/// True when the message was handed to the mail route. A failure is logged without the message (it holds a
/// link that is a credential) and reported to the caller, which tells the person what to do.
pub async fn send(state: &AppState, mail: Mail) -> bool {
    let mailer = state.mailer.clone();
    match rocket::tokio::task::spawn_blocking(move || mailer.send(&mail)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "sending mail failed");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the mail task failed");
            false
        }
    }
}
