//! The one bound on inbound memory, across every connection.
//!
//! Per-connection flow control (`maxInflightMessages`) bounds what one socket may have waiting for
//! JS, but not what many sockets have together, nor what outlives a connection: messages still
//! queued in JS after their connection closed, or buffered for an event without a handler. So
//! every message, request, reply and raw payload is charged here when it enters the batch for JS
//! and released only when JS reports it handled or dropped (its size travels with the entry, so
//! JS releases exactly what was charged). While the total is at `maxPendingBytes`, every reader
//! pauses (TCP pushes back on the peers) and resumes as JS catches up.
//!
//! Fairness: at the bound, busy connections (something of theirs still waiting in JS) compete for
//! every byte JS frees, and a mostly idle connection would wait behind them for seconds. So a
//! connection with nothing in flight may still read into a reserve of a quarter of the bound: an
//! interactive client stays responsive while a flood is being pushed back, and the total never
//! passes `maxPendingBytes × 1.25` (plus what one read can bring, see `SCRATCH_BYTES`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Charged per message on top of its payload: what a parsed entry costs in JS besides its text
/// (the entry array, the message record, the parsed value's objects), so a flood of tiny
/// messages is bounded too.
pub const MESSAGE_OVERHEAD: usize = 256;

pub struct InboundBudget {
    /// Bytes charged and not yet released.
    held: AtomicUsize,
    /// `maxPendingBytes`.
    max: usize,
}

impl InboundBudget {
    pub fn new(max: usize) -> Self {
        Self { held: AtomicUsize::new(0), max }
    }

    /// Charges one message of `payload_len` bytes; returns the amount JS must release for it.
    pub fn charge(&self, payload_len: usize) -> usize {
        let cost = payload_len.saturating_add(MESSAGE_OVERHEAD);
        self.held.fetch_add(cost, Ordering::Relaxed);
        cost
    }

    /// JS handled or dropped messages worth `bytes`. Saturates: a confused caller can make the
    /// bound looser for a moment, never wrap it into a permanent pause.
    pub fn release(&self, bytes: usize) {
        let _ = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(bytes)));
    }

    /// Whether a connection may read now; `idle`: nothing of it is waiting in JS (see the
    /// module docs on the reserve).
    pub fn admits(&self, idle: bool) -> bool {
        let held = self.held.load(Ordering::Relaxed);
        held < self.max || (idle && held < self.max.saturating_add(self.max / 4))
    }

    /// Bytes charged and not yet released (`server.stats.inboundPendingBytes`).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_payload_plus_overhead_until_released() {
        let b = InboundBudget::new(1000);
        let cost = b.charge(500);
        assert_eq!(cost, 500 + MESSAGE_OVERHEAD);
        assert!(b.admits(false));
        let second = b.charge(300);
        assert!(!b.admits(false), "at the bound every reader pauses");
        b.release(cost);
        assert!(b.admits(false));
        assert_eq!(b.held(), second);
    }

    #[test]
    fn idle_connections_may_use_a_reserve_of_a_quarter() {
        let b = InboundBudget::new(4000);
        b.charge(4000 - MESSAGE_OVERHEAD);
        assert!(!b.admits(false), "a busy connection waits at the bound");
        assert!(b.admits(true), "an idle one may read into the reserve");
        b.charge(1000 - MESSAGE_OVERHEAD);
        assert!(!b.admits(true), "and not past it");
    }

    #[test]
    fn over_release_saturates_at_zero() {
        let b = InboundBudget::new(10);
        b.charge(0);
        b.release(usize::MAX);
        assert_eq!(b.held(), 0);
        b.charge(0);
        assert_eq!(b.held(), MESSAGE_OVERHEAD);
    }
}
