//! How many connections are open and whether the server is going away: `maxConnections` is
//! enforced here, connection ids are handed out here, and shutdown waits here until the last
//! connection has been reported closed. A leaf of the runtime: the upgrade reserves a slot, the
//! runtime releases it when a connection ends.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::Notify;

pub struct Lifecycle {
    open: AtomicUsize,
    /// `maxConnections`; 0 = unlimited.
    max: usize,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    all_closed: Notify,
}

impl Lifecycle {
    pub fn new(max_connections: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max: max_connections,
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            all_closed: Notify::new(),
        }
    }

    /// Reserves a slot under `maxConnections`; false when full.
    pub fn try_open(&self) -> bool {
        let max = self.max;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (max == 0 || n < max).then_some(n + 1))
            .is_ok()
    }

    /// A connection that held a slot is gone (its close was reported to JS).
    pub fn released(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_waiters();
        }
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Marks the server as going away; false when it already was.
    pub fn begin_shutdown(&self) -> bool {
        !self.shutting_down.swap(true, Ordering::AcqRel)
    }

    /// Waits until no connection is open, or `deadline` passes; true when all are closed.
    pub async fn wait_all_closed(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let notified = self.all_closed.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.open.load(Ordering::Acquire) == 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released() {
        let l = Lifecycle::new(2);
        assert!(l.try_open() && l.try_open());
        assert!(!l.try_open(), "maxConnections reached");
        l.released();
        assert!(l.try_open());
        assert!(Lifecycle::new(0).try_open(), "0 is unlimited");
        assert_eq!((l.next_connection_id(), l.next_connection_id()), (1, 2));
        assert!(l.begin_shutdown() && !l.begin_shutdown());
    }
}
