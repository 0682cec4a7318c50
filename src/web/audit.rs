//! The auditor's workspace: the log, checkpoints, verification status, export. Never submission content.

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![]
}
