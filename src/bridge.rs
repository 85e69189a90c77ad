//! Rust → JS delivery. Events from every connection are appended to ONE batch: a JSON array text
//! that JS turns into values with a single `JSON.parse`, plus a side list of byte blobs for raw
//! messages, so under load one N-API call carries thousands of messages instead of one per message.
//!
//! When to wake JS: not on the first entry of a batch. Waking the JS thread makes the kernel switch
//! to it at once (on a busy or single core), JS then drains a batch of one, and the I/O thread
//! repeats that for every event. Instead the first entry marks the batch as needing a wake, and the
//! I/O thread delivers it when it is about to park ([`Bridge::wake_if_pending`], called from the
//! runtime's park hook), or at once when the batch is already large, so a busy I/O thread never
//! holds events back for long.
//!
//! Entry shapes (first element is the kind; `id` is the connection id):
//! - `[0, id, namespaceIndex, "remoteAddress", authId, "head"|null, "protocol"|null]`  connection
//!   opened (`head`: the HTTP request head, null when JS already got it with the handshake entry)
//! - `[1, id, "event", data, meta|null, size]`     event message (`data`, `meta` verbatim JSON)
//! - `[2, id, code, "reason", abandoned]`          connection closed (always after its messages);
//!   `abandoned`: the peer left while its input waited for JS and we gave up on it (see
//!   `Session::paused`): JS drops what it still has queued for the connection
//! - `[3]`                                         shutdown finished
//! - `[4, id, isBinary, blobIndex, size]`          raw-mode message, bytes in the blob list
//! - `[5, authId, namespaceIndex, "remoteAddress", "head"]`  upgrade held for `authenticate`
//! - `[6, authId]`                                 an accepted handshake failed before opening
//! - `[7, id, "event", data, meta|null, "reqId", size]`  request from the client. `reqId` is the
//!   request id's JSON text as a JSON string (`"7"`, `"\"a\""`), so JS can echo it byte for byte
//! - `[8, id, replyId, data|null, error|null, size]`  reply to a server request (`replyId` verbatim
//!   JSON, i.e. the parsed string or number; `error` the client's error object or null)
//! - `[9, callId, answer|null, "error"|null]`  a cluster call finished (`answer`: the presence
//!   script's JSON, verbatim)
//! - `[10, 0, status, "reason", "remoteAddress"]`  an upgrade was refused (only with
//!   `report_rejections`: telemetry listens)
//! - `[10, 1, id, code, "reason"]`  a message was refused in Rust (likewise)
//!
//! Messages, requests and replies all count as in flight for inbound flow control until JS
//! acknowledges them, and `size` (what the entry was charged to the [`InboundBudget`]) stays
//! charged until JS releases it: when the message was handled or dropped.

use crate::envelope::{Envelope, Reply};
use crate::inbound::InboundBudget;
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

pub const KIND_OPEN: u8 = 0;
pub const KIND_MESSAGE: u8 = 1;
pub const KIND_CLOSE: u8 = 2;
pub const KIND_SHUTDOWN: u8 = 3;
pub const KIND_RAW: u8 = 4;
pub const KIND_HANDSHAKE: u8 = 5;
pub const KIND_ABANDONED: u8 = 6;
pub const KIND_REQUEST: u8 = 7; // `push_message` writes KIND_MESSAGE and KIND_REQUEST as literals
pub const KIND_REPLY: u8 = 8;
pub const KIND_CLUSTER: u8 = 9;
pub const KIND_REJECTED: u8 = 10;

#[derive(Default)]
struct Batch {
    /// `[` + comma-separated entries; closed with `]` when taken.
    json: String,
    blobs: Vec<Vec<u8>>,
    entries: usize,
}

/// What JS receives per wake-up.
pub struct TakenBatch {
    pub json: String,
    pub blobs: Vec<Vec<u8>>,
}

/// A batch this large wakes JS right away instead of waiting for the I/O thread to park.
const WAKE_AT_ENTRIES: usize = 512;
const WAKE_AT_BYTES: usize = 256 * 1024;

pub struct Bridge {
    batch: Mutex<Batch>,
    /// The batch has entries JS has not been woken for yet.
    wake_pending: AtomicBool,
    /// Inbound bytes handed to JS (in the batch or beyond) and not yet handled.
    budget: InboundBudget,
    /// Wakes the JS thread (a non-blocking threadsafe-function call in the addon).
    wake_js: Box<dyn Fn() + Send + Sync>,
    /// Whether refused upgrades and messages refused in Rust are reported (kind 10). A switch
    /// rather than a config value: JS turns it on when something starts listening at `warn`
    /// after the server was created (a dashboard mounted later).
    report_rejections: AtomicBool,
}

impl Bridge {
    pub fn new(max_pending_bytes: usize, wake_js: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            batch: Mutex::new(Batch::default()),
            wake_pending: AtomicBool::new(false),
            budget: InboundBudget::new(max_pending_bytes),
            wake_js,
            report_rejections: AtomicBool::new(false),
        }
    }

    /// Whether rejections are reported to JS (see `report_rejections`).
    pub fn reports_rejections(&self) -> bool {
        self.report_rejections.load(Ordering::Relaxed)
    }

    pub fn set_report_rejections(&self, on: bool) {
        self.report_rejections.store(on, Ordering::Relaxed);
    }

    /// The global inbound bound (JS releases what it handled through [`InboundBudget::release`]).
    pub fn budget(&self) -> &InboundBudget {
        &self.budget
    }

    /// Appends one entry written by `write` (which must produce a JSON array literal).
    fn push(&self, write: impl FnOnce(&mut Batch)) {
        let large;
        {
            let mut batch = self.batch.lock();
            let was_empty = batch.json.is_empty();
            batch.json.push(if was_empty { '[' } else { ',' });
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

    /// Wakes JS if entries arrived since the last wake. Called by I/O threads before they park.
    pub fn wake_if_pending(&self) {
        if self.wake_pending.swap(false, Ordering::AcqRel) {
            (self.wake_js)();
        }
    }

    pub fn push_open(
        &self,
        id: u64,
        namespace: usize,
        remote_address: &str,
        auth_id: u64,
        head: Option<&str>,
        protocol: Option<&str>,
    ) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_OPEN},{id},{namespace},");
            push_json_str(&mut b.json, remote_address);
            let _ = write!(b.json, ",{auth_id},");
            push_json_opt(&mut b.json, head);
            b.json.push(',');
            push_json_opt(&mut b.json, protocol);
            b.json.push(']');
        });
    }

    pub fn push_handshake(&self, auth_id: u64, namespace: usize, remote_address: &str, head: &str) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_HANDSHAKE},{auth_id},{namespace},");
            push_json_str(&mut b.json, remote_address);
            b.json.push(',');
            push_json_str(&mut b.json, head);
            b.json.push(']');
        });
    }

    pub fn push_abandoned(&self, auth_id: u64) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_ABANDONED},{auth_id}]");
        });
    }

    /// An event message, or a request when the envelope carries an `id`; `payload_len` is the
    /// size of the frame it came in (charged to the budget).
    pub fn push_message(&self, id: u64, envelope: &Envelope<'_>, payload_len: usize) {
        let size = self.budget.charge(payload_len);
        // The per-message path: plain pushes and `itoa`, no `fmt` machinery.
        self.push(|b| {
            let j = &mut b.json;
            j.push_str(if envelope.id.is_some() { "[7," } else { "[1," });
            push_int(j, id);
            j.push(',');
            j.push_str(envelope.event_json);
            j.push(',');
            j.push_str(envelope.data.map_or("null", |d| d.get()));
            j.push(',');
            j.push_str(envelope.meta.map_or("null", |d| d.get()));
            if let Some(req_id) = envelope.id {
                j.push(',');
                push_json_str(j, req_id.get());
            }
            j.push(',');
            push_int(j, size as u64);
            j.push(']');
        });
    }

    pub fn push_reply(&self, id: u64, reply: &Reply<'_>, payload_len: usize) {
        let size = self.budget.charge(payload_len);
        self.push(|b| {
            let j = &mut b.json;
            let _ = write!(j, "[{KIND_REPLY},{id},{},", reply.id.get());
            j.push_str(reply.data.map_or("null", |d| d.get()));
            j.push(',');
            j.push_str(reply.error.map_or("null", |d| d.get()));
            let _ = write!(j, ",{size}]");
        });
    }

    pub fn push_raw(&self, id: u64, binary: bool, payload: Vec<u8>) {
        let size = self.budget.charge(payload.len());
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_RAW},{id},{},{},{size}]", u8::from(binary), b.blobs.len());
            b.blobs.push(payload);
        });
    }

    /// `abandoned`: we gave up on input the peer left behind (JS drops what it still queues).
    pub fn push_close(&self, id: u64, code: u16, reason: &str, abandoned: bool) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_CLOSE},{id},{code},");
            push_json_str(&mut b.json, reason);
            let _ = write!(b.json, ",{}]", u8::from(abandoned));
        });
    }

    /// The end of a cluster call (a presence query or `sync`): `Ok` holds JSON text.
    pub fn push_cluster_answer(&self, call_id: u64, answer: Result<&str, &str>) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_CLUSTER},{call_id},");
            match answer {
                Ok(json) => {
                    b.json.push_str(if json.is_empty() { "null" } else { json });
                    b.json.push_str(",null]");
                }
                Err(message) => {
                    b.json.push_str("null,");
                    push_json_str(&mut b.json, message);
                    b.json.push(']');
                }
            }
        });
    }

    /// An upgrade refused with HTTP `status` (`reason`: the body, or the status's text).
    pub fn push_handshake_rejected(&self, status: u16, reason: &str, remote: &str) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_REJECTED},0,{status},");
            push_json_str(&mut b.json, reason);
            b.json.push(',');
            push_json_str(&mut b.json, remote);
            b.json.push(']');
        });
    }

    /// A message of connection `id` refused in Rust: closed with `code` (or answered, with
    /// `onInvalidMessage: 'reply'`) for `reason`.
    pub fn push_message_rejected(&self, id: u64, code: u16, reason: &str) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_REJECTED},1,{id},{code},");
            push_json_str(&mut b.json, reason);
            b.json.push(']');
        });
    }

    pub fn push_shutdown_complete(&self) {
        self.push(|b| {
            let _ = write!(b.json, "[{KIND_SHUTDOWN}]");
        });
    }

    /// Takes everything queued so far (empty `json` when nothing is). A wake still pending for
    /// these entries is cancelled: JS has them (it takes batches itself with `inline_io`).
    pub fn take(&self) -> TakenBatch {
        let mut guard = self.batch.lock();
        self.wake_pending.store(false, Ordering::Release);
        let mut batch = std::mem::take(&mut *guard);
        drop(guard);
        if !batch.json.is_empty() {
            batch.json.push(']');
        }
        TakenBatch { json: batch.json, blobs: batch.blobs }
    }
}

fn push_int(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

fn push_json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping is correct for every code point; the String write cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::MESSAGE_OVERHEAD;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn bridge() -> (Bridge, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        (Bridge::new(100, Box::new(move || { w.fetch_add(1, Ordering::SeqCst); })), wakes)
    }

    fn frame(text: &str) -> crate::envelope::Frame<'_> {
        crate::envelope::parse(text).unwrap()
    }

    #[test]
    fn one_wake_per_batch_and_valid_json() {
        let (b, wakes) = bridge();
        b.push_open(1, 0, "127.0.0.1", 0, Some("GET / HTTP/1.1\r\n\r\n"), None);
        let text = r#"{"event":"e","data":{"x":"\u00e9"}}"#;
        let crate::envelope::Frame::Event(env) = frame(text) else { panic!() };
        b.push_message(1, &env, text.len());
        b.push_close(1, 1000, "bye \"now\"", false);
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "no wake until the I/O thread parks");
        b.wake_if_pending();
        b.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "one wake per batch");
        let taken = b.take();
        let v: serde_json::Value = serde_json::from_str(&taken.json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                [0, 1, 0, "127.0.0.1", 0, "GET / HTTP/1.1\r\n\r\n", null],
                [1, 1, "e", {"x": "é"}, null, text.len() + MESSAGE_OVERHEAD],
                [2, 1, 1000, "bye \"now\"", 0]
            ])
        );
        assert!(b.take().json.is_empty());
        b.push_shutdown_complete();
        b.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "a new batch wakes JS again");
        b.push_handshake(7, 1, "::1", "GET /ws HTTP/1.1\r\n\r\n");
        b.push_abandoned(7);
        let v: serde_json::Value = serde_json::from_str(&b.take().json).unwrap();
        assert_eq!(v, serde_json::json!([[3], [5, 7, 1, "::1", "GET /ws HTTP/1.1\r\n\r\n"], [6, 7]]));
    }

    #[test]
    fn a_batch_js_took_by_itself_needs_no_wake() {
        let (b, wakes) = bridge();
        b.push_shutdown_complete();
        assert!(!b.take().json.is_empty(), "taken inline (assist_io)");
        b.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "nothing left to wake JS for");
        b.push_shutdown_complete();
        b.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "new entries still wake it");
    }

    #[test]
    fn requests_carry_their_id_as_json_text() {
        let (b, _) = bridge();
        for text in [
            r#"{"event":"q","data":[1],"meta":{"traceparent":"t"},"id":"r\u0031"}"#,
            r#"{"event":"q","id":1.50}"#,
        ] {
            let crate::envelope::Frame::Event(env) = frame(text) else { panic!() };
            b.push_message(2, &env, 10);
        }
        let v: serde_json::Value = serde_json::from_str(&b.take().json).unwrap();
        let size = 10 + MESSAGE_OVERHEAD;
        assert_eq!(
            v,
            serde_json::json!([[7, 2, "q", [1], {"traceparent": "t"}, "\"r\\u0031\"", size], [7, 2, "q", null, null, "1.50", size]])
        );
    }

    #[test]
    fn replies_keep_data_and_error_verbatim() {
        let (b, _) = bridge();
        for text in [r#"{"id":4,"data":{"a":1}}"#, r#"{"id":"x","error":{"code":"no","message":"m"}}"#, r#"{"id":5,"data":null}"#] {
            let crate::envelope::Frame::Reply(reply) = frame(text) else { panic!() };
            b.push_reply(9, &reply, 0);
        }
        let taken = b.take();
        let s = MESSAGE_OVERHEAD;
        assert_eq!(
            taken.json,
            format!(r#"[[8,9,4,{{"a":1}},null,{s}],[8,9,"x",null,{{"code":"no","message":"m"}},{s}],[8,9,5,null,null,{s}]]"#)
        );
    }

    #[test]
    fn raw_payloads_travel_as_blobs() {
        let (b, _) = bridge();
        b.push_raw(3, true, vec![0, 255]);
        b.push_raw(3, false, b"hi".to_vec());
        let t = b.take();
        let (s2, s3) = (2 + MESSAGE_OVERHEAD, 2 + MESSAGE_OVERHEAD);
        assert_eq!(t.json, format!("[[4,3,1,0,{s2}],[4,3,0,1,{s3}]]"));
        assert_eq!(t.blobs, vec![vec![0, 255], b"hi".to_vec()]);
    }

    #[test]
    fn a_large_batch_wakes_js_without_waiting_for_park() {
        let (b, wakes) = bridge();
        for _ in 0..WAKE_AT_ENTRIES {
            b.push_shutdown_complete();
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        b.wake_if_pending();
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "already woken for this batch");
    }

    #[test]
    fn congestion_lasts_until_js_releases_not_until_it_takes() {
        let b = Bridge::new(2 * MESSAGE_OVERHEAD, Box::new(|| {}));
        b.push_raw(1, true, vec![0; 10]);
        assert!(b.budget().admits(false));
        b.push_raw(1, true, vec![0; 10]);
        assert!(!b.budget().admits(false));
        b.take();
        assert!(!b.budget().admits(false), "taken by JS is not handled by JS");
        b.budget().release(10 + MESSAGE_OVERHEAD);
        assert!(b.budget().admits(false));
        b.push_close(1, 1000, "0123456789", false);
        assert!(b.budget().admits(false), "lifecycle entries are bounded by connections, not charged");
    }
}
