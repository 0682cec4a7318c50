//! `GET /healthz`: can the portal do its work now — the database answers and takes writes, the key store is usable,
//! the blob store is there with room to spare. `ok` (200) or `degraded` (503) with what is wrong; no secrets, no
//! counts of content. A load balancer takes an instance out on 503. Answered from the last check for
//! `healthz_cache_ms` (1 s), one check at a time: anyone may call it, and a flood must not reach the database and
//! the store once per request.

use rocket::http::Status;
use rocket::serde::json::{json, Value};
use rocket::State;

use crate::services::Services;

/// The last answer of `/healthz` and when it was found; its lock lets one check run at a time.
#[derive(Default)]
pub struct LastCheck(rocket::tokio::sync::Mutex<Option<(std::time::Instant, Status, Value)>>);

#[rocket::get("/healthz")]
async fn healthz(state: &State<Services>, last: &State<LastCheck>) -> (Status, Value) {
    let fresh_for = std::time::Duration::from_millis(state.settings.healthz_cache_ms);
    // Held while checking: requests arriving meanwhile wait for this check's answer instead of making their own.
    let mut last = last.0.lock().await;
    if let Some((at, status, body)) = &*last {
        if at.elapsed() < fresh_for {
            return (*status, body.clone());
        }
    }
    let (status, body) = check(state).await;
    *last = Some((std::time::Instant::now(), status, body.clone()));
    (status, body)
}

async fn check(state: &Services) -> (Status, Value) {
    let (reads, writes) = state
        .db
        .run(|c| Ok((crate::db::ping(c), crate::db::accepts_writes(c))))
        .await
        .unwrap_or((false, false));
    // The identity file and the audit signing key, in clear or sealed (`.age`) as the protection mode keeps them.
    let signing = state
        .settings
        .keys_dir
        .join(crate::key_store::AUDIT_SIGNING_FILE);
    let keys = state
        .keys
        .read()
        .map(|k| !k.current_key_id().is_empty() && k.path().exists())
        .unwrap_or(false)
        && (signing.exists() || signing.with_extension("key.age").exists());
    let store = state.blobs.clone();
    let blobs = rocket::tokio::task::spawn_blocking(move || store.is_available())
        .await
        .unwrap_or(false);
    let room = crate::storage::free_space(&state.settings.data_dir)
        .is_ok_and(|free| free >= state.settings.min_free_disk_mib << 20);
    let ok = reads && writes && keys && blobs && room;
    let status = if ok {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    let word = |b: bool| if b { "ok" } else { "unavailable" };
    let database = match (reads, writes) {
        (true, true) => "ok",
        (true, false) => "read-only or locked",
        _ => "unavailable",
    };
    (
        status,
        json!({
            "status": if ok { "ok" } else { "degraded" },
            "database": database,
            "key_store": word(keys),
            "blob_store": word(blobs),
            // Whether there is room, not how much: free space over time would tell an outsider how much is uploaded.
            "disk": if room { "ok" } else { "low on free space" },
        }),
    )
}

/// The one HEAD the portal answers (a load balancer's check); every other HEAD is 405 ([`head_refused`]).
#[rocket::head("/healthz")]
async fn healthz_head(state: &State<Services>, last: &State<LastCheck>) -> Status {
    healthz(state, last).await.0
}

/// HEAD anywhere else is 405. Rocket answers a HEAD by running the GET route and dropping its body, so a HEAD on a
/// file or on a submission's page would decrypt content, take a download slot and record a download or a view
/// that nothing received.
#[rocket::head("/<_..>", rank = 100)]
fn head_refused() -> Status {
    Status::MethodNotAllowed
}

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![healthz, healthz_head, head_refused]
}
