//! Sends a message after the fact that produced it has committed, on a blocking thread (an SMTP exchange
//! must neither hold a database connection nor stall the async executor).

use crate::mail::Mail;
use crate::services::Services;

/// True when the message was handed to the mail route. A failure is logged without the message (it holds a
/// link that is a credential) and reported to the caller, which tells the person what to do.
pub async fn send(state: &Services, mail: Mail) -> bool {
    match crate::mail::send_off_executor(&state.mailer, mail).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "sending mail failed");
            false
        }
    }
}

/// Approves an invitation waiting for `who` (an administrator, an organisation administrator or an officer:
/// the service decides who may) and sends its link. Returns the invitee's address and whether the message
/// went out.
pub async fn approve_invitation(
    ctx: &crate::web::guards::Ctx<'_>,
    who: &crate::models::account::User,
    id: &str,
) -> crate::error::AppResult<(String, bool)> {
    let state = ctx.state;
    let (audit, mailer, settings, actor, who, id) = (
        state.audit.clone(),
        state.mailer.clone(),
        state.settings.clone(),
        ctx.actor.clone(),
        who.clone(),
        id.to_string(),
    );
    let now = state.clock.now();
    let mail = state
        .db
        .run(move |c| {
            crate::auth::invitations::approve(c, &audit, &mailer, &settings, &actor, &who, &id, now)
        })
        .await?;
    let to = mail.to.clone();
    Ok((to, send(state, mail).await))
}

/// Refuses an invitation waiting for `who`: it never takes effect.
pub async fn refuse_invitation(
    ctx: &crate::web::guards::Ctx<'_>,
    who: &crate::models::account::User,
    id: &str,
) -> crate::error::AppResult<()> {
    let (audit, actor, who, id) = (
        ctx.state.audit.clone(),
        ctx.actor.clone(),
        who.clone(),
        id.to_string(),
    );
    let now = ctx.state.clock.now();
    ctx.state
        .db
        .run(move |c| crate::auth::invitations::refuse(c, &audit, &actor, &who, &id, now))
        .await
}
