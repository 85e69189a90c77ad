//! Counters of what the server does, kept next to the work and read when someone asks (a
//! Prometheus scrape, `server.stats`). Nothing here allocates or locks per message: per-message
//! counts live in each connection (`Conn::traffic`, counted under locks the I/O takes anyway) and
//! are summed at scrape time with what departed connections left behind; the rest are rare
//! events (opens, closes, rejected handshakes, one count per publish call).

use crate::conn::Traffic;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a publish call addressed (the `target` label of `ferrosocket_publishes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Connection = 0,
    Room = 1,
    User = 2,
    Audience = 3,
    Broadcast = 4,
}

impl Target {
    pub const ALL: [Target; 5] = [Target::Connection, Target::Room, Target::User, Target::Audience, Target::Broadcast];

    pub fn label(self) -> &'static str {
        match self {
            Target::Connection => "connection",
            Target::Room => "room",
            Target::User => "user",
            Target::Audience => "audience",
            Target::Broadcast => "broadcast",
        }
    }
}

#[derive(Default)]
struct Namespace {
    /// Messages refused in Rust (not JSON, not an envelope, an event or request not in the contract).
    rejected: AtomicU64,
    /// Traffic of the connections that have closed.
    departed: Mutex<Traffic>,
}

pub struct Metrics {
    opened: AtomicU64,
    closed: Mutex<BTreeMap<u16, u64>>,
    handshakes_rejected: Mutex<BTreeMap<u16, u64>>,
    backpressure_closes: AtomicU64,
    publishes: [AtomicU64; 5],
    /// Messages compressed (permessage-deflate): once per publish and window size, however many
    /// recipients share the compressed frame.
    compressed: AtomicU64,
    namespaces: Vec<Namespace>,
}

/// Everything, at one moment; per-namespace traffic still needs the live connections added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub opened: u64,
    /// Close code → connections closed with it.
    pub closed: BTreeMap<u16, u64>,
    /// HTTP status → upgrades refused with it.
    pub handshakes_rejected: BTreeMap<u16, u64>,
    pub backpressure_closes: u64,
    pub compressed: u64,
    /// By [`Target`] index.
    pub publishes: [u64; 5],
    /// Per namespace: messages refused in Rust, and the departed connections' traffic.
    pub rejected: Vec<u64>,
    pub departed: Vec<Traffic>,
}

impl Metrics {
    pub fn new(namespaces: usize) -> Self {
        Self {
            opened: AtomicU64::new(0),
            closed: Mutex::new(BTreeMap::new()),
            handshakes_rejected: Mutex::new(BTreeMap::new()),
            backpressure_closes: AtomicU64::new(0),
            publishes: Default::default(),
            compressed: AtomicU64::new(0),
            namespaces: (0..namespaces).map(|_| Namespace::default()).collect(),
        }
    }

    pub fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended with `code`; `traffic` is what it did, `overflowed` whether its
    /// write queue overflowed (a backpressure close).
    pub fn closed(&self, namespace: usize, code: u16, traffic: Traffic, overflowed: bool) {
        *self.closed.lock().entry(code).or_insert(0) += 1;
        if overflowed {
            self.backpressure_closes.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(ns) = self.namespaces.get(namespace) {
            ns.departed.lock().add_counts(&traffic);
        }
    }

    /// An upgrade refused with HTTP `status`. The map holds at most one entry per status code
    /// the server itself chooses (or `authenticate` returns: 400–599), so it stays small.
    pub fn handshake_rejected(&self, status: u16) {
        *self.handshakes_rejected.lock().entry(status).or_insert(0) += 1;
    }

    pub fn rejected(&self, namespace: usize) {
        if let Some(ns) = self.namespaces.get(namespace) {
            ns.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn compressed(&self, messages: usize) {
        if messages > 0 {
            self.compressed.fetch_add(messages as u64, Ordering::Relaxed);
        }
    }

    pub fn published(&self, target: Target) {
        self.publishes[target as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            opened: self.opened.load(Ordering::Relaxed),
            closed: self.closed.lock().clone(),
            handshakes_rejected: self.handshakes_rejected.lock().clone(),
            backpressure_closes: self.backpressure_closes.load(Ordering::Relaxed),
            compressed: self.compressed.load(Ordering::Relaxed),
            publishes: std::array::from_fn(|i| self.publishes[i].load(Ordering::Relaxed)),
            rejected: self.namespaces.iter().map(|ns| ns.rejected.load(Ordering::Relaxed)).collect(),
            departed: self.namespaces.iter().map(|ns| *ns.departed.lock()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_code_status_target_and_namespace() {
        let m = Metrics::new(2);
        m.opened();
        m.opened();
        let t = Traffic { received: 3, received_bytes: 30, sent: 4, sent_bytes: 40, queued: 9, queued_bytes: 90 };
        m.closed(1, 1000, t, false);
        m.closed(1, 1013, t, true);
        m.handshake_rejected(401);
        m.handshake_rejected(401);
        m.rejected(0);
        m.rejected(7); // unknown namespace: ignored, not a panic
        m.published(Target::Room);
        let s = m.snapshot();
        assert_eq!(s.opened, 2);
        assert_eq!(s.closed, BTreeMap::from([(1000, 1), (1013, 1)]));
        assert_eq!(s.handshakes_rejected, BTreeMap::from([(401, 2)]));
        assert_eq!(s.backpressure_closes, 1);
        assert_eq!(s.publishes, [0, 1, 0, 0, 0]);
        assert_eq!(s.rejected, vec![1, 0]);
        assert_eq!(s.departed[1], Traffic { received: 6, received_bytes: 60, sent: 8, sent_bytes: 80, queued: 0, queued_bytes: 0 });
        assert_eq!(s.departed[0], Traffic::default());
    }
}
