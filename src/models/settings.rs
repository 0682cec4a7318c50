//! Portal-wide switches an administrator can change at run time (stored, so every instance sees them).

use diesel::prelude::*;

use crate::db::schema::settings;
use crate::db::DbConn;

pub const SELF_REGISTRATION: &str = "self_registration";

pub fn get(conn: &mut DbConn, name: &str) -> QueryResult<Option<String>> {
    settings::table
        .find(name)
        .select(settings::value)
        .first(conn)
        .optional()
}

pub fn set(conn: &mut DbConn, name: &str, value: &str) -> QueryResult<()> {
    let updated = diesel::update(settings::table.find(name))
        .set(settings::value.eq(value))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(settings::table)
            .values((settings::name.eq(name), settings::value.eq(value)))
            .execute(conn)?;
    }
    Ok(())
}

pub fn self_registration_open(conn: &mut DbConn) -> QueryResult<bool> {
    Ok(get(conn, SELF_REGISTRATION)?
        .map(|v| v != "off")
        .unwrap_or(true))
}
