//! The queue through which connections ask their driver for a run.
//!
//! Publishers, acks and `close` change a connection's state from any thread, then push its
//! (slot, id) here and wake the driver task. A leaf on purpose: connections hold it without
//! knowing the driver, and the driver drains it without the connections knowing the driver's
//! internals (no connection ↔ driver dependency).
//!
//! Bound: one entry per connection until the driver runs it (`Conn`'s `wake_queued` flag), so
//! bursts of publishes or acks cost one entry, whatever the peers do.

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use std::task::Waker;

#[derive(Default)]
pub struct Wakeups {
    /// (slot, connection id) of connections with new work.
    woken: Mutex<Vec<(u32, u64)>>,
    waker: AtomicWaker,
}

impl Wakeups {
    /// Asks for a run of connection `id` in `slot` (a stale pair only costs a run that finds
    /// another connection, or none, there and does nothing).
    pub fn push(&self, slot: u32, id: u64) {
        self.woken.lock().push((slot, id));
        self.waker.wake();
    }

    /// Wakes the driver without queueing a connection (it has other work, e.g. adoptions).
    pub fn notify(&self) {
        self.waker.wake();
    }

    /// The driver task's waker, registered at each poll.
    pub fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// Swaps the queued wake-ups into `spare` (cleared by the caller after use); false when none.
    pub fn take(&self, spare: &mut Vec<(u32, u64)>) -> bool {
        let mut woken = self.woken.lock();
        if woken.is_empty() {
            return false;
        }
        std::mem::swap(&mut *woken, spare);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_swaps_what_was_pushed() {
        let w = Wakeups::default();
        let mut spare = Vec::new();
        assert!(!w.take(&mut spare));
        w.push(3, 30);
        w.push(4, 40);
        assert!(w.take(&mut spare));
        assert_eq!(spare, vec![(3, 30), (4, 40)]);
        assert!(!w.take(&mut Vec::new()), "taken once");
    }
}
