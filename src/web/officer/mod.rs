//! PCII officers: the queue, one submission (content, decisions, grants, disseminations, export), the
//! dissemination log, and the organisations of the Program Office's submitters.

pub mod access_requests;
pub mod cases;
pub mod forms;
pub mod messages;
pub mod organisations;
pub mod queue;
pub mod submissions;

pub fn routes() -> Vec<rocket::Route> {
    let mut routes = queue::routes();
    routes.extend(submissions::routes());
    routes.extend(organisations::routes());
    routes.extend(access_requests::routes());
    routes.extend(cases::routes());
    routes.extend(messages::routes());
    routes
}
