//! One client connection's outbound queue: what JS sent and the connection's writer has not yet
//! written to the socket. Bounded in bytes (`maxOutboundBytes`): `send` is refused past it, so a
//! peer that stops reading cannot make the client buffer without limit. The writer takes
//! everything queued at once and flushes once per take (k frames, one flush).

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// What the writer sends, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    /// A close frame; nothing queued after it is written.
    Close(u16, String),
}

impl Outgoing {
    /// What it counts against the bound (a close frame: code and reason).
    pub fn wire_bytes(&self) -> usize {
        match self {
            Outgoing::Text(t) => t.len(),
            Outgoing::Close(_, reason) => 2 + reason.len(),
        }
    }
}

pub struct OutboundQueue {
    items: Mutex<VecDeque<Outgoing>>,
    /// Bytes queued or taken by the writer and not yet flushed to the socket (`bufferedAmount`).
    unwritten: AtomicUsize,
    limit: usize,
    /// `notify_one` stores a permit: a push while the writer is busy is seen on its next wait.
    ready: Notify,
}

impl OutboundQueue {
    pub fn new(limit: usize) -> Self {
        Self { items: Mutex::new(VecDeque::new()), unwritten: AtomicUsize::new(0), limit, ready: Notify::new() }
    }

    /// Queues one text frame; false when it would take the unwritten bytes past the limit. An
    /// empty queue always takes one message, so a message larger than the limit can still be sent
    /// (the bound is the limit plus at most one message).
    pub fn push_text(&self, text: String) -> bool {
        let mut items = self.items.lock();
        let unwritten = self.unwritten.load(Ordering::Acquire);
        if unwritten > 0 && unwritten + text.len() > self.limit {
            return false;
        }
        self.unwritten.fetch_add(text.len(), Ordering::AcqRel);
        items.push_back(Outgoing::Text(text));
        drop(items);
        self.ready.notify_one();
        true
    }

    /// Queues a close frame after what is queued (never refused: it is bounded by one per
    /// connection, the caller's state machine sees to that).
    pub fn push_close(&self, code: u16, reason: String) {
        let item = Outgoing::Close(code, reason);
        self.unwritten.fetch_add(item.wire_bytes(), Ordering::AcqRel);
        self.items.lock().push_back(item);
        self.ready.notify_one();
    }

    /// Waits until something is queued, then takes all of it.
    pub async fn take_all(&self) -> Vec<Outgoing> {
        loop {
            {
                let mut items = self.items.lock();
                if !items.is_empty() {
                    return items.drain(..).collect();
                }
            }
            self.ready.notified().await;
        }
    }

    /// The writer wrote (and flushed) items of `bytes` (their [`Outgoing::wire_bytes`]), or gave up
    /// on them: they no longer count as unwritten.
    pub fn written(&self, bytes: usize) {
        self.unwritten.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes queued for sending and not yet written to the socket.
    pub fn unwritten(&self) -> usize {
        self.unwritten.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_are_refused_past_the_bound_until_the_writer_writes() {
        let q = OutboundQueue::new(10);
        assert!(q.push_text("123456".into()));
        assert!(q.push_text("7890".into()));
        assert!(!q.push_text("x".into()), "11 > 10");
        assert_eq!(q.unwritten(), 10);
        let taken = q.take_all().await;
        assert_eq!(taken.len(), 2);
        assert!(!q.push_text("x".into()), "taken is not written");
        q.written(taken.iter().map(Outgoing::wire_bytes).sum());
        assert_eq!(q.unwritten(), 0);
        assert!(q.push_text("a message larger than the bound".into()), "an empty queue takes one message");
        assert!(!q.push_text("y".into()));
    }

    #[tokio::test]
    async fn a_close_follows_what_was_queued_before_it() {
        let q = OutboundQueue::new(1);
        assert!(q.push_text("a".into()));
        q.push_close(1000, "bye".into());
        assert_eq!(q.take_all().await, vec![Outgoing::Text("a".into()), Outgoing::Close(1000, "bye".into())]);
    }
}
