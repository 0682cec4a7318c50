//! The portal's one source of "now", in Unix seconds (UTC). Every rule that depends on time (deadlines,
//! expiries, throttles, session idleness, audit timestamps) reads it from here, so a test moves time by
//! advancing the clock instead of editing rows.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The system clock plus an offset shared by every copy (zero unless a test advances it).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock and every copy of it forward (or back, for a negative count) by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_the_offset() {
        let clock = Clock::system();
        let copy = clock.clone();
        let before = copy.now();
        clock.advance(3_600);
        assert!(copy.now() >= before + 3_600);
        assert!(copy.now() < before + 3_700);
    }
}
