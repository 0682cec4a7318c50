//! The session seen from a page's script (static/session.js, static/upload.js): a keepalive that a person still
//! at work, or an upload still running, sends so that the session does not run out under them.

use rocket::data::{Data, ToByteUnit};
use rocket::http::Status;
use rocket::serde::json::{json, Json, Value};

use crate::auth::sessions;
use crate::web::forms::{decoded_fields, TokenCheck, CSRF_FIELD};
use crate::web::guards::Ctx;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![keepalive]
}

/// A keepalive body holds the form token and nothing else.
const KEEPALIVE_BODY_MAX: u64 = 1024;

fn answer(status: Status, body: Value) -> (Status, Json<Value>) {
    (status, Json(body))
}

/// Records a use of the signed-in session now (not only once a minute, as a page does) and answers the seconds
/// it then has left: `{"idle_seconds_left": N}`. The form token is required as for any form (the field `csrf` of a
/// urlencoded body). Always JSON: 401 without a live session, 403 without the right token. Not audited: keeping a
/// session is no decision, and its token is never logged.
#[rocket::post("/session/keepalive", data = "<data>")]
async fn keepalive(ctx: Ctx<'_>, token: TokenCheck<'_>, data: Data<'_>) -> (Status, Json<Value>) {
    let Some(who) = ctx.who else {
        return answer(
            Status::Unauthorized,
            json!({ "error": "not signed in", "idle_seconds_left": 0 }),
        );
    };
    let body = match data.open(KEEPALIVE_BODY_MAX.bytes()).into_string().await {
        Ok(body) if body.is_complete() => body.into_inner(),
        _ => {
            return answer(
                Status::BadRequest,
                json!({ "error": "the body is not a small form" }),
            )
        }
    };
    let given = decoded_fields(&body)
        .into_iter()
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value)
        .unwrap_or_default();
    if !token.matches(&given) {
        token
            .refused(if given.is_empty() {
                "missing token"
            } else {
                "wrong token"
            })
            .await;
        return answer(
            Status::Forbidden,
            json!({ "error": "the form's security token did not match" }),
        );
    }
    let state = ctx.state;
    let (hash, now) = (who.session_hash.clone(), state.clock.now());
    let (idle, absolute) = state.settings.session_timeouts();
    match state
        .db
        .run(move |c| sessions::keep_alive(c, &hash, now, idle, absolute))
        .await
    {
        Ok(Some(left)) => answer(Status::Ok, json!({ "idle_seconds_left": left })),
        Ok(None) => answer(
            Status::Unauthorized,
            json!({ "error": "not signed in", "idle_seconds_left": 0 }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "keeping a session alive failed");
            answer(
                Status::ServiceUnavailable,
                json!({ "error": "the session store did not answer" }),
            )
        }
    }
}
