//! Administrators: accounts (list, create, disable/enable, role, training, NDA) and portal settings.
//! Administrators never see submission content; nothing here reads it.

use rocket::form::FromForm;
use rocket::http::Status;
use rocket::Either;

use crate::auth::accounts::{self, AccountChange, FieldErrors, NewAccount};
use crate::error::{AppError, AppResult};
use crate::models::account::{self, Role, ACCOUNTS_PER_PAGE};
use crate::models::settings;
use crate::web::account::account_view;
use crate::web::forms::CsrfForm;
use crate::web::guards::{AdminUser, Ctx};
use crate::web::pages::{Notice, Page};

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        index,
        new_account_page,
        create_account,
        account_page,
        disable,
        enable,
        change_role,
        training,
        nda,
        registration
    ]
}

fn roles_view() -> Vec<serde_json::Value> {
    Role::ALL
        .iter()
        .map(|r| serde_json::json!({"value": r.as_str(), "label": r.label()}))
        .collect()
}

#[rocket::get("/?<role>&<page>")]
async fn index(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    role: Option<&str>,
    page: Option<i64>,
) -> AppResult<Page> {
    let role = role.and_then(Role::parse);
    let page = page.unwrap_or(0).max(0);
    let ((rows, total), open) = ctx
        .state
        .db
        .run(move |c| {
            Ok((
                account::list_accounts(c, role, page)?,
                settings::self_registration_open(c)?,
            ))
        })
        .await?;
    let pages = (total + ACCOUNTS_PER_PAGE - 1) / ACCOUNTS_PER_PAGE;
    Ok(Page::new("admin/index.html.tera")
        .with("accounts", rows)
        .with("total", total)
        .with("page", page)
        .with("pages", pages)
        .with("role_filter", role.map(|r| r.as_str()))
        .with("roles", roles_view())
        .with("registration_open", open))
}

#[rocket::get("/accounts/new")]
fn new_account_page(_admin: AdminUser<'_>) -> Page {
    Page::new("admin/new_account.html.tera").with("roles", roles_view())
}

#[derive(FromForm, serde::Serialize)]
struct NewAccountForm {
    email: String,
    display_name: String,
    role: String,
    organisation: String,
    #[serde(skip)]
    password: String,
}

#[rocket::post("/accounts", data = "<form>")]
async fn create_account(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    form: CsrfForm<NewAccountForm>,
) -> AppResult<Either<Notice, Page>> {
    let values = form.0;
    let Some(role) = Role::parse(&values.role) else {
        let mut errors = FieldErrors::default();
        errors.add("role", "Choose a role.");
        return Ok(Either::Right(new_account_errors(&values, errors)));
    };
    let new = NewAccount {
        email: values.email.clone(),
        display_name: values.display_name.clone(),
        role,
        organisation: Some(values.organisation.clone()).filter(|o| !o.trim().is_empty()),
        password: values.password.clone(),
    };
    let (audit, hasher, actor) = (
        ctx.state.audit.clone(),
        ctx.state.hasher.clone(),
        ctx.actor.clone(),
    );
    match ctx
        .state
        .db
        .run(move |c| accounts::create(c, &audit, &hasher, &actor, new, false))
        .await?
    {
        Ok(Some(id)) => Ok(Either::Left(Notice::redirect(
            format!("/admin/accounts/{id}"),
            "Account created.",
        ))),
        Ok(None) => Err(AppError::Internal("account creation returned no id".into())),
        Err(errors) => Ok(Either::Right(new_account_errors(&values, errors))),
    }
}

fn new_account_errors(values: &NewAccountForm, errors: FieldErrors) -> Page {
    Page::new("admin/new_account.html.tera")
        .status(Status::UnprocessableEntity)
        .with("roles", roles_view())
        .with("values", values)
        .with("errors", errors)
}

#[rocket::get("/accounts/<id>")]
async fn account_page(ctx: Ctx<'_>, _admin: AdminUser<'_>, id: &str) -> AppResult<Page> {
    let id = id.to_string();
    let (user, org) = ctx
        .state
        .db
        .run(move |c| {
            let u = account::find(c, &id)?;
            let org = match &u.organisation_id {
                Some(o) => Some(account::organisation_name(c, o)?),
                None => None,
            };
            Ok((u, org))
        })
        .await?;
    Ok(Page::new("admin/account.html.tera")
        .with("account", account_view(&user))
        .with("organisation", org)
        .with("roles", roles_view()))
}

async fn apply(ctx: &Ctx<'_>, id: &str, change: AccountChange, done: &str) -> AppResult<Notice> {
    let (audit, actor, uid) = (ctx.state.audit.clone(), ctx.actor.clone(), id.to_string());
    ctx.state
        .db
        .run(move |c| accounts::change_account(c, &audit, &actor, &uid, change))
        .await?;
    Ok(Notice::redirect(format!("/admin/accounts/{id}"), done))
}

#[rocket::post("/accounts/<id>/disable", data = "<_form>")]
async fn disable(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    _form: CsrfForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    apply(
        &ctx,
        id,
        AccountChange::Disable,
        "Account disabled; its sessions have ended.",
    )
    .await
}

#[rocket::post("/accounts/<id>/enable", data = "<_form>")]
async fn enable(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    _form: CsrfForm<crate::web::forms::NoFields>,
) -> AppResult<Notice> {
    apply(&ctx, id, AccountChange::Enable, "Account enabled.").await
}

#[derive(FromForm)]
struct RoleForm {
    role: String,
}

#[rocket::post("/accounts/<id>/role", data = "<form>")]
async fn change_role(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    form: CsrfForm<RoleForm>,
) -> AppResult<Notice> {
    let role = Role::parse(&form.0.role)
        .ok_or_else(|| AppError::Invalid("Choose one of the listed roles.".into()))?;
    apply(
        &ctx,
        id,
        AccountChange::Role(role),
        "Role changed; the account's sessions have ended.",
    )
    .await
}

#[derive(FromForm)]
struct DateForm {
    date: String,
    #[field(default = String::new())]
    reference: String,
}

fn parse_optional_date(s: &str) -> AppResult<Option<i64>> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let ts = crate::time::parse_date(s)
        .ok_or_else(|| AppError::Invalid("Enter the date as YYYY-MM-DD.".into()))?;
    if ts > crate::db::now() {
        return Err(AppError::Invalid(
            "The date cannot be in the future.".into(),
        ));
    }
    Ok(Some(ts))
}

#[rocket::post("/accounts/<id>/training", data = "<form>")]
async fn training(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    form: CsrfForm<DateForm>,
) -> AppResult<Notice> {
    let at = parse_optional_date(&form.0.date)?;
    apply(
        &ctx,
        id,
        AccountChange::Training(at),
        "Training record saved.",
    )
    .await
}

#[rocket::post("/accounts/<id>/nda", data = "<form>")]
async fn nda(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    id: &str,
    form: CsrfForm<DateForm>,
) -> AppResult<Notice> {
    let signed_at = parse_optional_date(&form.0.date)?;
    let reference = Some(form.0.reference.trim().to_string()).filter(|r| !r.is_empty());
    if reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control))
    {
        return Err(AppError::Invalid(
            "The NDA reference must be one line of at most 200 characters.".into(),
        ));
    }
    apply(
        &ctx,
        id,
        AccountChange::Nda {
            signed_at,
            reference,
        },
        "Non-disclosure agreement record saved.",
    )
    .await
}

#[derive(FromForm)]
struct RegistrationForm {
    open: bool,
}

#[rocket::post("/settings/registration", data = "<form>")]
async fn registration(
    ctx: Ctx<'_>,
    _admin: AdminUser<'_>,
    form: CsrfForm<RegistrationForm>,
) -> AppResult<Notice> {
    let open = form.0.open;
    let (audit, actor) = (ctx.state.audit.clone(), ctx.actor.clone());
    ctx.state
        .db
        .run(move |c| {
            audit.fact(c, &actor, |tx| {
                settings::set(
                    tx,
                    settings::SELF_REGISTRATION,
                    if open { "on" } else { "off" },
                )?;
                let event = crate::audit::log::Event::new(
                    "settings.self_registration",
                    crate::audit::log::Outcome::Success,
                )
                .reason(if open { "opened" } else { "closed" });
                Ok(((), event))
            })
        })
        .await?;
    Ok(Notice::redirect(
        "/admin",
        if open {
            "Self-registration is open."
        } else {
            "Self-registration is closed."
        },
    ))
}
