//! Rust → JS delivery for the client pool, the same idea as `crate::bridge` for the server: events
//! from every client connection are appended to ONE batch, a JSON array text, which JS turns into
//! values with a single `JSON.parse`. 10,000 connections receiving a message each cost one N-API
//! call, not 10,000.
//!
//! When to wake JS: as in the bridge, not on the first entry. The first entry marks the batch as
//! needing a wake; the pool's I/O thread delivers it when it is about to park
//! ([`Events::wake_if_pending`], called from the runtime's park hook), or at once when the batch is
//! already large.
//!
//! Entry shapes (first element is the kind; `id` is the connection id):
//! - `[0, id, "protocol"|null]`                opened (the subprotocol the server chose)
//! - `[1, id, "text"]`                         one text message
//! - `[2, id, code, "reason"]`                 closed after opening (1006: no close frame)
//! - `[3, id, status|null, "message"]`         never opened (`status`: a refused upgrade's HTTP
//!   status; null for DNS, TCP, TLS, timeout and abort failures)
//!
//! Inbound backpressure: a message's bytes are charged to its connection's [`InboundCredit`] when
//! appended, and stay charged while JS holds them: [`TakenBatch::release`] gives them back once JS
//! has processed the batch (the addon calls it right after the JS callback returns: the JS client
//! handles messages synchronously, so "returned" means "processed"). A connection whose charge is
//! above its bound stops reading its socket until then.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

pub const KIND_OPENED: u8 = 0;
pub const KIND_MESSAGE: u8 = 1;
pub const KIND_CLOSED: u8 = 2;
pub const KIND_FAILED: u8 = 3;

/// A batch this large wakes JS right away instead of waiting for the I/O thread to park.
const WAKE_AT_ENTRIES: usize = 512;
const WAKE_AT_BYTES: usize = 256 * 1024;

/// One connection's received bytes handed to JS and not yet released: the read side waits in
/// [`InboundCredit::wait_for_room`] while they are above `limit`.
pub struct InboundCredit {
    held: AtomicUsize,
    limit: usize,
    /// `notify_one` stores a permit, so a release between the check and the wait is not lost.
    room: Notify,
}

impl InboundCredit {
    pub fn new(limit: usize) -> Self {
        Self { held: AtomicUsize::new(0), limit, room: Notify::new() }
    }

    /// Bytes handed to JS and not yet released.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn charge(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        let before = self.held.fetch_sub(bytes, Ordering::AcqRel);
        if before > self.limit && before - bytes <= self.limit {
            self.room.notify_one();
        }
    }

    /// Returns once the bytes held by JS are at or below the limit.
    pub async fn wait_for_room(&self) {
        while self.held() > self.limit {
            self.room.notified().await;
        }
    }
}

#[derive(Default)]
struct Batch {
    /// `[` + comma-separated entries; closed with `]` when taken.
    json: Vec<u8>,
    entries: usize,
    /// What each message entry charged, released together once JS has processed the batch.
    charges: Vec<(Arc<InboundCredit>, usize)>,
}

/// What JS receives per wake-up, and what to give back after it processed it.
#[must_use = "the batch's bytes stay charged until `release` is called"]
pub struct TakenBatch {
    /// The JSON array text; empty when there was nothing to deliver.
    pub json: String,
    charges: Vec<(Arc<InboundCredit>, usize)>,
}

impl TakenBatch {
    /// JS has processed the batch: its message bytes no longer count against their connections.
    pub fn release(self) {
        for (credit, bytes) in self.charges {
            credit.release(bytes);
        }
    }

    /// Message bytes this batch charged (what `release` gives back).
    pub fn charged_bytes(&self) -> usize {
        self.charges.iter().map(|(_, n)| n).sum()
    }
}

pub struct Events {
    batch: Mutex<Batch>,
    /// The batch has entries JS has not been woken for yet.
    wake_pending: AtomicBool,
    /// Wakes the JS thread (a non-blocking threadsafe-function call in the addon).
    wake_js: Box<dyn Fn() + Send + Sync>,
}

impl Events {
    pub fn new(wake_js: Box<dyn Fn() + Send + Sync>) -> Self {
        Self { batch: Mutex::new(Batch::default()), wake_pending: AtomicBool::new(false), wake_js }
    }

    /// Appends one entry written by `write` (which must produce a JSON array literal).
    fn push(&self, write: impl FnOnce(&mut Batch)) {
        let large;
        {
            let mut batch = self.batch.lock();
            let was_empty = batch.json.is_empty();
            batch.json.push(if was_empty { b'[' } else { b',' });
            write(&mut batch);
            batch.entries += 1;
            if was_empty {
                self.wake_pending.store(true, Ordering::Release);
            }
            large = batch.entries >= WAKE_AT_ENTRIES || batch.json.len() >= WAKE_AT_BYTES;
        }
        if large {
            self.wake_if_pending();
        }
    }

    /// Wakes JS if entries arrived since the last wake. Called by the I/O thread before it parks.
    pub fn wake_if_pending(&self) {
        if self.wake_pending.swap(false, Ordering::AcqRel) {
            (self.wake_js)();
        }
    }

    pub fn push_opened(&self, id: u64, protocol: Option<&str>) {
        self.push(|b| {
            push_head(&mut b.json, KIND_OPENED, id);
            match protocol {
                Some(p) => push_json_str(&mut b.json, p),
                None => b.json.extend_from_slice(b"null"),
            }
            b.json.push(b']');
        });
    }

    /// One text message, charged to `credit` until the batch carrying it is released.
    pub fn push_message(&self, id: u64, text: &str, credit: &Arc<InboundCredit>) {
        credit.charge(text.len());
        self.push(|b| {
            push_head(&mut b.json, KIND_MESSAGE, id);
            push_json_str(&mut b.json, text);
            b.json.push(b']');
            b.charges.push((credit.clone(), text.len()));
        });
    }

    pub fn push_closed(&self, id: u64, code: u16, reason: &str) {
        self.push(|b| {
            push_head(&mut b.json, KIND_CLOSED, id);
            push_int(&mut b.json, u64::from(code));
            b.json.push(b',');
            push_json_str(&mut b.json, reason);
            b.json.push(b']');
        });
    }

    pub fn push_failed(&self, id: u64, status: Option<u16>, message: &str) {
        self.push(|b| {
            push_head(&mut b.json, KIND_FAILED, id);
            match status {
                Some(s) => push_int(&mut b.json, u64::from(s)),
                None => b.json.extend_from_slice(b"null"),
            }
            b.json.push(b',');
            push_json_str(&mut b.json, message);
            b.json.push(b']');
        });
    }

    /// Takes everything queued so far (empty `json` when nothing is).
    pub fn take(&self) -> TakenBatch {
        let mut batch = std::mem::take(&mut *self.batch.lock());
        if !batch.json.is_empty() {
            batch.json.push(b']');
        }
        // Every byte written is ASCII punctuation, digits or serde_json's escaping of a `&str`.
        let json = String::from_utf8(batch.json).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        TakenBatch { json, charges: batch.charges }
    }
}

/// `[kind,id,`
fn push_head(out: &mut Vec<u8>, kind: u8, id: u64) {
    out.push(b'[');
    push_int(out, u64::from(kind));
    out.push(b',');
    push_int(out, id);
    out.push(b',');
}

fn push_int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `s` as a JSON string literal, escaped in place (no intermediate String).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn events() -> (Events, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        (Events::new(Box::new(move || { w.fetch_add(1, Ordering::SeqCst); })), wakes)
    }

    #[test]
    fn entries_form_one_json_array_and_one_wake_per_batch() {
        let (e, wakes) = events();
        let credit = Arc::new(InboundCredit::new(100));
        e.push_opened(1, Some("v1"));
        e.push_message(1, "{\"x\":\"é\\n\"}", &credit);
        e.push_closed(1, 1000, "bye \"now\"");
        e.push_failed(2, Some(401), "refused");
        e.push_failed(3, None, "connection refused");
        e.push_opened(4, None);
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "no wake until the I/O thread parks");
        e.wake_if_pending();
        e.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        let taken = e.take();
        let v: serde_json::Value = serde_json::from_str(&taken.json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                [0, 1, "v1"],
                [1, 1, "{\"x\":\"é\\n\"}"],
                [2, 1, 1000, "bye \"now\""],
                [3, 2, 401, "refused"],
                [3, 3, null, "connection refused"],
                [0, 4, null]
            ])
        );
        taken.release();
        assert!(e.take().json.is_empty());
    }

    #[test]
    fn message_bytes_stay_charged_until_the_batch_is_released() {
        let (e, _) = events();
        let credit = Arc::new(InboundCredit::new(5));
        e.push_message(1, "abcd", &credit);
        e.push_message(1, "ef", &credit);
        assert_eq!(credit.held(), 6);
        let taken = e.take();
        assert_eq!(credit.held(), 6, "taken by JS is not processed by JS");
        assert_eq!(taken.charged_bytes(), 6);
        taken.release();
        assert_eq!(credit.held(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reader_resumes_when_js_releases() {
        let (e, _) = events();
        let credit = Arc::new(InboundCredit::new(3));
        e.push_message(1, "abcdef", &credit);
        let taken = e.take();
        let waiter = tokio::spawn({
            let credit = credit.clone();
            async move { credit.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        taken.release();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("resumed").unwrap();
    }

    #[test]
    fn a_large_batch_wakes_js_without_waiting_for_park() {
        let (e, wakes) = events();
        for i in 0..WAKE_AT_ENTRIES as u64 {
            e.push_opened(i, None);
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        e.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "already woken for this batch");
    }
}
