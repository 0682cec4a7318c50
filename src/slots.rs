//! Caps on work a client holds open for as long as its connection lasts — forms with files being received, files
//! and packages being sent — in all and per account. Past a cap the next one is refused at once, not queued: a
//! queue would hold the very connections and memory the cap is there to bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Slots {
    total: usize,
    per_account: usize,
    busy: Mutex<HashMap<String, usize>>,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The account holds this many already (its cap).
    Account(usize),
    /// Every slot is taken.
    All,
}

/// A slot in use; given back when dropped (the request or the response body ended, however).
pub struct Slot {
    slots: Arc<Slots>,
    account: String,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

impl Slots {
    pub fn new(total: u32, per_account: u32) -> Arc<Slots> {
        Arc::new(Slots {
            total: total as usize,
            per_account: per_account as usize,
            busy: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `account`, unless it holds its cap already or every slot is taken.
    pub fn enter(self: &Arc<Self>, account: &str) -> Result<Slot, Full> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let mine = busy.get(account).copied().unwrap_or(0);
        if mine >= self.per_account {
            return Err(Full::Account(mine));
        }
        if busy.values().sum::<usize>() >= self.total {
            return Err(Full::All);
        }
        *busy.entry(account.to_string()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            account: account.to_string(),
        })
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.slots.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                // An account's entry goes with its last slot: the map holds only the accounts busy now.
                busy.remove(&self.account);
            }
        }
    }
}

/// A response body that keeps its slot until it is dropped: sent in full, failed, or left by the client.
pub struct HeldBody<R> {
    inner: R,
    _slot: Slot,
}

impl<R> HeldBody<R> {
    pub fn new(inner: R, slot: Slot) -> Self {
        HeldBody { inner, _slot: slot }
    }
}

impl<R> std::fmt::Debug for HeldBody<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBody").finish_non_exhaustive()
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for HeldBody<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_account_and_in_all_and_slots_come_back_when_dropped() {
        let slots = Slots::new(3, 2);
        let a1 = slots.enter("a").unwrap();
        let _a2 = slots.enter("a").unwrap();
        assert_eq!(slots.enter("a").unwrap_err(), Full::Account(2));
        let _b1 = slots.enter("b").unwrap();
        assert_eq!(slots.enter("c").unwrap_err(), Full::All);
        assert_eq!(slots.in_use(), 3);
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        let _c1 = slots.enter("c").unwrap();
        assert_eq!(slots.busy.lock().unwrap().len(), 3);
    }
}
