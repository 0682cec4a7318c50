//! Help for everyone, signed in or not: how to reach the Program Office, what PCII protection means, the privacy
//! notice and the accessibility statement. Linked from every page's footer.

use serde::Serialize;

use crate::web::guards::Ctx;
use crate::web::pages::Page;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![index, contact, pcii, privacy, accessibility]
}

/// The Program Office's details from the configuration (`office_*`).
#[derive(Serialize)]
struct Office<'a> {
    name: &'a str,
    email: &'a str,
    phone: &'a str,
    hours: &'a str,
    address: &'a str,
}

fn office<'a>(ctx: &'a Ctx<'_>) -> Office<'a> {
    let s = &ctx.state.settings;
    Office {
        name: &s.office_name,
        email: &s.office_email,
        phone: &s.office_phone,
        hours: &s.office_hours,
        address: &s.office_address,
    }
}

fn page(ctx: &Ctx<'_>, template: &'static str) -> Page {
    Page::new(template)
        .with("office", office(ctx))
        .with("max_file_mib", ctx.state.settings.max_file_bytes >> 20)
        .with("max_files", ctx.state.settings.max_files)
        .with("idle_minutes", ctx.state.settings.session_idle_minutes)
}

#[rocket::get("/help")]
fn index(ctx: Ctx<'_>) -> Page {
    page(&ctx, "help/index.html.tera")
}

#[rocket::get("/help/contact")]
fn contact(ctx: Ctx<'_>) -> Page {
    page(&ctx, "help/contact.html.tera")
}

#[rocket::get("/help/pcii")]
fn pcii(ctx: Ctx<'_>) -> Page {
    page(&ctx, "help/pcii.html.tera")
}

#[rocket::get("/help/privacy")]
fn privacy(ctx: Ctx<'_>) -> Page {
    page(&ctx, "help/privacy.html.tera")
}

#[rocket::get("/help/accessibility")]
fn accessibility(ctx: Ctx<'_>) -> Page {
    page(&ctx, "help/accessibility.html.tera")
}
