//! Repeated refusals of people who are not signed in, folded: the first refusal of an address on a route in a
//! window is recorded at once; the rest of that window become one entry with their count, written when the window
//! has closed (at the next refusal of that key, or by the periodic flush). A flood of anonymous requests then costs
//! the log two entries per address, route and window instead of one per request, and still shows how many there
//! were. Signed-in people's refusals are not folded (each says who tried what), except those another site's page
//! makes their browser send (`fairings::OriginCheck`), which are recorded as anonymous ones. An address is counted as the
//! throttles count it ([`network`]): an IPv6 address by its /64, so rotating through one buys no entries.

use std::collections::HashMap;
use std::sync::Mutex;

use super::log::{Actor, AuditLog, Event, Outcome};
use crate::auth::throttle::network;
use crate::db::DbConn;
use crate::error::AppResult;
use crate::time::rfc3339;

/// The window anonymous refusals are folded over.
pub const WINDOW_SECS: i64 = 60;
/// Keys tracked at most; past this, refusals of new keys are folded into one per action and route (address `*`).
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: String,
    action: &'static str,
    route: String,
}

#[derive(Debug)]
struct Window {
    started: i64,
    more: u64,
    reason: String,
}

/// The refusals folded since their window's first one, to be recorded as one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub addr: String,
    pub action: &'static str,
    pub route: String,
    pub count: u64,
    pub from: i64,
    pub until: i64,
    pub reason: String,
}

impl Folded {
    pub fn event(&self) -> (Actor, Event) {
        let actor = Actor {
            client_addr: Some(self.addr.clone()),
            ..Actor::default()
        };
        let event = Event::new(self.action, Outcome::Refused)
            .object("route", self.route.clone())
            .reason(format!(
                "{} more like this from this {} between {} and {} ({})",
                self.count,
                if self.addr.ends_with("/64") {
                    "network"
                } else {
                    "address"
                },
                rfc3339(self.from),
                rfc3339(self.until),
                self.reason
            ));
        (actor, event)
    }
}

/// What to do with an anonymous refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Noted {
    /// Record it now; first record the folded rest of the key's previous window, if there is one.
    Record(Option<Folded>),
    /// Counted; its window's entry will say so.
    Folded,
}

pub struct RefusalTally {
    window_secs: i64,
    windows: Mutex<HashMap<Key, Window>>,
}

impl RefusalTally {
    pub fn new(window_secs: i64) -> RefusalTally {
        RefusalTally {
            window_secs: window_secs.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn note(
        &self,
        addr: &str,
        action: &'static str,
        route: &str,
        reason: &str,
        now: i64,
    ) -> Noted {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Key {
            addr: addr.to_string(),
            action,
            route: route.to_string(),
        };
        if windows.len() >= MAX_KEYS && !windows.contains_key(&key) {
            key.addr = "*".into();
        }
        let window_secs = self.window_secs;
        match windows.get_mut(&key) {
            // Open only from its start on: a clock set back does not keep a window folding until it catches up.
            Some(w) if (w.started..w.started + window_secs).contains(&now) => {
                w.more += 1;
                Noted::Folded
            }
            Some(w) => {
                let folded = (w.more > 0).then(|| folded(&key, w, w.started + window_secs));
                *w = Window {
                    started: now,
                    more: 0,
                    reason: reason.to_string(),
                };
                Noted::Record(folded)
            }
            None => {
                windows.insert(
                    key,
                    Window {
                        started: now,
                        more: 0,
                        reason: reason.to_string(),
                    },
                );
                Noted::Record(None)
            }
        }
    }

    /// Takes the windows that have closed by `now` (all of them when `all`), with their folded counts.
    pub fn take_closed(&self, now: i64, all: bool) -> Vec<Folded> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window_secs = self.window_secs;
        let closed: Vec<Key> = windows
            .iter()
            .filter(|(_, w)| all || !(w.started..w.started + window_secs).contains(&now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in closed {
            if let Some(w) = windows.remove(&key) {
                if w.more > 0 {
                    out.push(folded(&key, &w, now.min(w.started + window_secs)));
                }
            }
        }
        out
    }

    /// Records every closed window's folded count (or all, at shutdown).
    pub fn flush(
        &self,
        conn: &mut DbConn,
        audit: &AuditLog,
        now: i64,
        all: bool,
    ) -> AppResult<usize> {
        let folded = self.take_closed(now, all);
        for f in &folded {
            let (actor, event) = f.event();
            audit.record(conn, &actor, event)?;
        }
        Ok(folded.len())
    }
}

fn folded(key: &Key, w: &Window, until: i64) -> Folded {
    Folded {
        addr: key.addr.clone(),
        action: key.action,
        route: key.route.clone(),
        count: w.more,
        from: w.started,
        until,
        reason: w.reason.clone(),
    }
}

/// Records an anonymous refusal, or folds it (see the module's comment).
pub fn record_anonymous(
    conn: &mut DbConn,
    audit: &AuditLog,
    tally: &RefusalTally,
    actor: &Actor,
    event: Event,
    now: i64,
) -> AppResult<()> {
    let addr = network(actor.client_addr.as_deref().unwrap_or("unknown"));
    let route = event.object_id.clone().unwrap_or_default();
    let reason = event.reason.clone().unwrap_or_default();
    match tally.note(&addr, event.action, &route, &reason, now) {
        Noted::Folded => Ok(()),
        Noted::Record(previous) => audit.fact(conn, actor, |tx| {
            if let Some(f) = previous {
                let (actor, event) = f.event();
                audit.record(tx, &actor, event)?;
            }
            Ok(((), event))
        }),
    }
}

/// What writing the folded counts needs (the periodic task outlives any borrow of the services): the portal's,
/// or the sealed portal's own.
#[derive(Clone)]
pub struct Flusher {
    pub db: crate::db::Db,
    pub audit: AuditLog,
    pub tally: std::sync::Arc<RefusalTally>,
    pub clock: crate::clock::Clock,
}

impl Flusher {
    fn of(state: &crate::services::Services) -> Flusher {
        Flusher {
            db: state.db.clone(),
            audit: state.audit.clone(),
            tally: state.refusals.clone(),
            clock: state.clock.clone(),
        }
    }

    /// Writes the folded counts of closed windows (or of all, at shutdown).
    pub async fn flush(&self, all: bool) {
        let (audit, tally, now) = (self.audit.clone(), self.tally.clone(), self.clock.now());
        if let Err(e) = self.db.run(move |c| tally.flush(c, &audit, now, all)).await {
            tracing::warn!(error = %e, all, "writing folded refusals failed");
        }
    }

    /// Writes the folded counts of closed windows every window, until `stop` completes.
    pub fn spawn_periodic(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(std::time::Duration::from_secs(WINDOW_SECS as u64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tick.tick() => self.flush(false).await,
                }
            }
        });
    }
}

/// Writes the folded counts of closed windows every window while the server runs.
pub fn spawn_periodic_flush(state: &crate::services::Services) {
    Flusher::of(state).spawn_periodic(std::future::pending());
}

/// At shutdown: every window's folded count, closed or not.
pub async fn flush_all(state: &crate::services::Services) {
    Flusher::of(state).flush(true).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_recorded_the_rest_of_its_window_folded_into_one_count() {
        let t = RefusalTally::new(60);
        assert_eq!(
            t.note(
                "1.2.3.4",
                "access.refused",
                "/officer",
                "not signed in",
                100
            ),
            Noted::Record(None)
        );
        for i in 0..49 {
            assert_eq!(
                t.note(
                    "1.2.3.4",
                    "access.refused",
                    "/officer",
                    "not signed in",
                    101 + i / 10
                ),
                Noted::Folded
            );
        }
        // Another address, another route: each its own first entry.
        assert_eq!(
            t.note("5.6.7.8", "access.refused", "/officer", "x", 110),
            Noted::Record(None)
        );
        assert_eq!(
            t.note("1.2.3.4", "access.refused", "/admin", "x", 110),
            Noted::Record(None)
        );
        // Nothing has closed yet.
        assert!(t.take_closed(150, false).is_empty());
        // The next refusal after the window: recorded, with the previous window's 49.
        match t.note(
            "1.2.3.4",
            "access.refused",
            "/officer",
            "not signed in",
            170,
        ) {
            Noted::Record(Some(f)) => {
                assert_eq!((f.count, f.from, f.until), (49, 100, 160));
                assert_eq!(f.addr, "1.2.3.4");
            }
            other => panic!("{other:?}"),
        }
        t.note(
            "1.2.3.4",
            "access.refused",
            "/officer",
            "not signed in",
            171,
        );
        // Closed windows without folded refusals are forgotten silently; the one with a count comes out once.
        let closed = t.take_closed(300, false);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].count, 1);
        assert!(t.take_closed(400, true).is_empty());
    }

    #[test]
    fn a_clock_set_back_does_not_keep_a_window_folding_until_it_catches_up() {
        let t = RefusalTally::new(60);
        let note = |now| t.note("1.2.3.4", "csrf.refused", "/login", "stale form", now);
        assert_eq!(note(1000), Noted::Record(None));
        assert_eq!(note(1001), Noted::Folded);
        // The clock steps back an hour: the window (1000..1060) is not open at 400, so this refusal is recorded, with
        // the folded one.
        match note(400) {
            Noted::Record(Some(f)) => assert_eq!(f.count, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(note(401), Noted::Folded);
        // Set back again: the flush sees the window that began "later" (400..460) as closed, and writes its count.
        let closed = t.take_closed(300, false);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].count, closed[0].from), (1, 400));
    }
}
