//! The signed-in person's own account: details and password change.

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;

use crate::auth::accounts;
use crate::error::AppResult;
use crate::web::forms::CsrfForm;
use crate::web::guards::{Ctx, CurrentUser};
use crate::web::pages::{Notice, Page};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![account_page, change_password]
}

#[rocket::get("/account")]
async fn account_page(ctx: Ctx<'_>, user: CurrentUser<'_>) -> AppResult<Page> {
    let org = match user.user.organisation_id.clone() {
        Some(id) => Some(
            ctx.state
                .db
                .run(move |c| Ok(crate::models::account::organisation_name(c, &id)?))
                .await?,
        ),
        None => None,
    };
    Ok(Page::new("account.html.tera")
        .with("organisation", org)
        .with("account", account_view(&user.user)))
}

pub fn account_view(u: &crate::models::account::User) -> serde_json::Value {
    serde_json::json!({
        "id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "role": u.role,
        "role_label": u.role().label(),
        "disabled": u.disabled,
        "training_completed_at": u.training_completed_at,
        "nda_signed_at": u.nda_signed_at,
        "nda_reference": u.nda_reference,
        "created_at": u.created_at,
        "password_changed_at": u.password_changed_at,
    })
}

#[derive(FromForm)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

#[rocket::post("/account/password", data = "<form>")]
async fn change_password(
    ctx: Ctx<'_>,
    user: CurrentUser<'_>,
    form: CsrfForm<PasswordForm>,
) -> AppResult<Either<Notice, Page>> {
    let PasswordForm {
        current_password,
        new_password,
    } = form.0;
    let (audit, hasher, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
    );
    let (u, hash) = (user.user.clone(), user.session_hash.clone());
    let result = ctx
        .state
        .db
        .run(move |c| {
            accounts::change_password(
                c,
                &audit,
                &hasher,
                &actor,
                &u,
                &hash,
                &current_password,
                &new_password,
            )
        })
        .await?;
    match result {
        Ok(()) => Ok(Either::Left(Notice::redirect(
            "/account",
            "Your password is changed. Your other sessions have ended.",
        ))),
        Err(errors) => Ok(Either::Right(
            Page::new("account.html.tera")
                .status(Status::UnprocessableEntity)
                .with("account", account_view(&user.user))
                .with("errors", errors),
        )),
    }
}
