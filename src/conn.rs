//! State of one open WebSocket shared between its driver and every thread that publishes to it.
//!
//! Writing: a publisher that finds the queue empty writes the frame straight to the socket with a
//! non-blocking write (no task wake-up, no channel hop); only what the kernel does not take is
//! queued, and the connection's driver drains the queue with vectored writes when the socket
//! becomes writable. One mutex orders direct writes, queued frames and control frames, so pongs,
//! fan-out frames and the close frame leave in the order they were produced.

use crate::outbound::{Push, WriteQueue, MAX_IOV};
use crate::protocol::{close, frame};
use bytes::Bytes;
use parking_lot::Mutex;
use crate::wakeups::Wakeups;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Frames queued for one socket up to this size in total leave as one copied buffer.
const COALESCE_BYTES: usize = 4096;

thread_local! {
    /// Where [`Conn::write_slices`] copies small frames together (one per thread, reused).
    static COALESCED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(COALESCE_BYTES));
}

const PING_FRAME: &[u8] = &[0x80 | frame::OP_PING, 0];
/// `slot` before the driver has adopted the connection.
const NO_SLOT: u32 = u32::MAX;

/// Microseconds on a process-wide monotonic clock (ping round-trips).
fn mono_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The kernel took nothing now; try again when the socket is writable.
fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// How the connection ended, as reported to `onClose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReport {
    pub code: u16,
    pub reason: String,
}

struct Outgoing {
    queue: WriteQueue,
    /// Set once a close frame is queued: no further frames may follow it.
    close_queued: bool,
    /// First close cause seen (ours or the peer's); what JS is told. Boxed: only closing
    /// connections have one, and every open connection would pay for the inline space.
    report: Option<Box<CloseReport>>,
    /// The queue overflowed and the connection was closed for it (a backpressure close).
    overflowed: bool,
    /// Application frames accepted for this connection (messages, then their bytes on the
    /// wire): counted here, under the lock every send takes anyway.
    sent: u64,
    sent_bytes: u64,
}

impl Outgoing {
    /// Keeps the first cause: whoever started the close decides what `onClose` reports.
    fn record_cause(&mut self, code: u16, reason: &str) {
        if self.report.is_none() {
            self.report = Some(Box::new(CloseReport { code, reason: reason.to_owned() }));
        }
    }
}

pub struct Conn {
    pub id: u64,
    /// Index into the config's namespaces (u32: packs with the descriptor).
    namespace: u32,
    /// Non-blocking; registered with the driver's epoll set.
    stream: TcpStream,
    out: Mutex<Outgoing>,
    /// Where we ask the driver that runs this connection for a run, and our slot in it once
    /// adopted.
    driver: Arc<Wakeups>,
    slot: AtomicU32,
    /// A wake-up is on its way to the driver. Others change state before waking and the driver
    /// takes the flag before running the connection, so no wake-up is lost and bursts of
    /// publishes cost one.
    wake_queued: AtomicBool,
    /// Messages handed to JS and not yet acknowledged (inbound flow control).
    inflight: AtomicU32,
    max_inflight: u32,
    /// A frame arrived since the last heartbeat tick.
    alive: AtomicBool,
    /// The driver stopped reading because JS is behind; heartbeats must not blame the peer.
    reading_paused: AtomicBool,
    /// Frames were queued while corked and this connection is on the server's flush list.
    corked_pending: AtomicBool,
    terminate: AtomicBool,
    ping_sent_at_us: AtomicU64,
    /// Unix time (ms) of the last read from the peer.
    last_seen_ms: AtomicU64,
    /// Saturates at ~71 minutes; u32 keeps `Conn` in a smaller allocation class.
    rtt_us: AtomicU32,
    /// Data messages received, and bytes read from the socket. Written by the one driver
    /// thread that runs the connection (uncontended), read by metrics.
    received: AtomicU64,
    received_bytes: AtomicU64,
    /// permessage-deflate: the window (bits) messages to this connection may be compressed
    /// with; 0 when the extension was not negotiated.
    deflate_window: u8,
}

/// One connection's traffic so far (`conn.stats`, and the metrics' per-namespace sums).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub received: u64,
    pub received_bytes: u64,
    pub sent: u64,
    pub sent_bytes: u64,
    /// Frames and bytes waiting in the write queue now.
    pub queued: u64,
    pub queued_bytes: u64,
}

impl Traffic {
    /// Adds `other`'s messages and bytes in and out (not its queue: that is a level, not a count).
    pub fn add_counts(&mut self, other: &Traffic) {
        self.received += other.received;
        self.received_bytes += other.received_bytes;
        self.sent += other.sent;
        self.sent_bytes += other.sent_bytes;
    }
}

/// A connection's limits (from the server's options) and what its handshake negotiated.
#[derive(Debug, Clone, Copy)]
pub struct ConnOptions {
    pub max_queued_messages: usize,
    pub max_buffered_bytes: usize,
    pub max_inflight: u32,
    /// permessage-deflate window bits; 0 when not negotiated.
    pub deflate_window: u8,
}

impl Conn {
    pub fn new(id: u64, namespace: usize, stream: TcpStream, driver: Arc<Wakeups>, options: ConnOptions) -> Self {
        let ConnOptions { max_queued_messages, max_buffered_bytes, max_inflight, deflate_window } = options;
        Self {
            id,
            namespace: u32::try_from(namespace).expect("namespace index fits u32"),
            stream,
            out: Mutex::new(Outgoing {
                queue: WriteQueue::new(max_queued_messages, max_buffered_bytes),
                close_queued: false,
                report: None,
                overflowed: false,
                sent: 0,
                sent_bytes: 0,
            }),
            driver,
            slot: AtomicU32::new(NO_SLOT),
            wake_queued: AtomicBool::new(false),
            inflight: AtomicU32::new(0),
            max_inflight,
            alive: AtomicBool::new(true),
            reading_paused: AtomicBool::new(false),
            corked_pending: AtomicBool::new(false),
            terminate: AtomicBool::new(false),
            ping_sent_at_us: AtomicU64::new(0),
            last_seen_ms: AtomicU64::new(unix_ms()),
            rtt_us: AtomicU32::new(0),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            deflate_window,
        }
    }

    /// The window bits compressed messages to this connection use; 0: it negotiated no
    /// permessage-deflate (send plain frames only).
    pub fn deflate_window(&self) -> u8 {
        self.deflate_window
    }

    /// Counts `n` bytes read from the socket (the driver thread that runs this connection).
    pub(crate) fn count_read(&self, n: usize) {
        self.received_bytes.store(self.received_bytes.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
    }

    /// Counts one data message received (the driver thread that runs this connection).
    pub(crate) fn count_message(&self) {
        self.received.store(self.received.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub fn traffic(&self) -> Traffic {
        let out = self.out.lock();
        Traffic {
            received: self.received.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            sent: out.sent,
            sent_bytes: out.sent_bytes,
            queued: out.queue.len() as u64,
            queued_bytes: out.queue.buffered_bytes() as u64,
        }
    }

    /// The queue overflowed and closed the connection (1013).
    pub fn overflowed(&self) -> bool {
        self.out.lock().overflowed
    }

    pub fn namespace(&self) -> usize {
        self.namespace as usize
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }

    /// The driver adopted the connection into `slot`.
    pub(crate) fn set_slot(&self, slot: u32) {
        self.slot.store(slot, Ordering::Release);
    }

    /// The driver is about to run the connection: wake-ups from now on queue a new run.
    pub(crate) fn take_wake(&self) {
        // A swap (not a store) so the waker's state changes happen-before this run.
        self.wake_queued.swap(false, Ordering::AcqRel);
    }

    fn wake(&self) {
        if self.wake_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let slot = self.slot.load(Ordering::Acquire);
        if slot != NO_SLOT {
            self.driver.push(slot, self.id);
        }
        // Not adopted yet: adoption runs the connection anyway, after taking the flag.
    }

    /// Sends an application frame. Returns false when the connection is closing (silent no-op)
    /// or the frame overflowed the queue (the connection is then closed 1013).
    pub fn send(&self, frame: &Bytes) -> bool {
        let mut out = self.out.lock();
        if out.close_queued {
            return false;
        }
        out.sent += 1;
        out.sent_bytes += frame.len() as u64;
        if out.queue.is_empty() {
            return self.write_or_queue(out, frame);
        }
        self.queue_data(out, frame)
    }

    /// Corked send: queues the frame without writing. Returns true when the caller must put this
    /// connection on its flush list (the first corked frame since the last flush), and later call
    /// [`Conn::flush_corked`]: all frames queued meanwhile then leave in one vectored write.
    pub fn send_corked(&self, frame: &Bytes) -> bool {
        let mut out = self.out.lock();
        if out.close_queued {
            return false;
        }
        out.sent += 1;
        out.sent_bytes += frame.len() as u64;
        if !self.queue_data(out, frame) {
            return false;
        }
        !self.corked_pending.swap(true, Ordering::AcqRel)
    }

    /// Writes what corked sends queued; leaves any rest to the driver.
    pub fn flush_corked(&self) {
        self.corked_pending.store(false, Ordering::Release);
        match self.flush() {
            Ok(true) => {}
            Ok(false) => self.wake(),
            Err(_) => self.terminate(),
        }
    }

    /// Queues an application frame under the limits; on overflow drops what was not started and
    /// closes 1013 (a stuck reader must not hold memory).
    fn queue_data(&self, mut out: parking_lot::MutexGuard<'_, Outgoing>, frame: &Bytes) -> bool {
        match out.queue.push_data(frame.clone()) {
            Push::Queued => true,
            Push::Overflow => {
                out.overflowed = true;
                out.queue.discard_unsent();
                Self::queue_close(&mut out, close::TRY_AGAIN_LATER, "WebSocket backpressure overflow");
                drop(out);
                self.wake();
                false
            }
        }
    }

    /// Sends a control frame (ping/pong) unless a close frame is already queued. Behind queued
    /// output it counts against the queue's limits like any frame: a peer that floods pings and
    /// never reads our pongs overflows the queue and is closed 1013 like any slow reader.
    pub fn send_control(&self, frame: &[u8]) {
        let out = self.out.lock();
        if out.close_queued {
            return;
        }
        let frame = Bytes::copy_from_slice(frame);
        if out.queue.is_empty() {
            self.write_or_queue(out, &frame);
        } else {
            self.queue_data(out, &frame);
        }
    }

    /// Writes `frame` directly; queues whatever the kernel did not take and wakes the driver.
    fn write_or_queue(&self, mut out: parking_lot::MutexGuard<'_, Outgoing>, frame: &Bytes) -> bool {
        match (&self.stream).write(frame) {
            Ok(n) if n == frame.len() => return true,
            Ok(n) => out.queue.push_started(frame.slice(n..)),
            Err(e) if would_block(&e) => out.queue.push_unbounded(frame.clone()),
            Err(_) => {
                drop(out);
                self.terminate();
                return false;
            }
        }
        drop(out);
        self.wake();
        true
    }

    /// Starts the closing handshake: queues a close frame after everything already queued.
    pub fn close(&self, code: u16, reason: &str) {
        let mut out = self.out.lock();
        if out.close_queued {
            return;
        }
        Self::queue_close(&mut out, code, reason);
        drop(out);
        self.wake();
    }

    /// Answers the peer's close frame (echoing its code) and records it as the close cause.
    pub(crate) fn reply_to_close(&self, code: u16, reason: &str) {
        let mut out = self.out.lock();
        out.record_cause(code, reason);
        if !out.close_queued {
            out.close_queued = true;
            let frame = if code == close::NO_STATUS {
                Bytes::from_static(&[0x80 | frame::OP_CLOSE, 0])
            } else {
                frame::encode_close(code, "")
            };
            out.queue.push_unbounded(frame);
        }
    }

    fn queue_close(out: &mut Outgoing, code: u16, reason: &str) {
        out.close_queued = true;
        let reason = close::truncate_reason(reason);
        out.record_cause(code, reason);
        out.queue.push_unbounded(frame::encode_close(code, reason));
    }

    pub fn is_closing(&self) -> bool {
        self.out.lock().close_queued
    }

    pub(crate) fn report(&self) -> Option<CloseReport> {
        self.out.lock().report.as_deref().cloned()
    }

    pub(crate) fn set_report_if_none(&self, code: u16, reason: &str) {
        self.out.lock().record_cause(code, reason);
    }

    /// Writes as much of the queue as the socket takes. `Ok(true)` when the queue is empty.
    pub(crate) fn flush(&self) -> io::Result<bool> {
        let mut out = self.out.lock();
        while !out.queue.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = out.queue.io_slices(&mut iov);
            match self.write_slices(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => out.queue.consume(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// One write of `slices`: `send` for one slice (the usual case: one frame per socket per
    /// flush), and for a few small frames copied together (copying a few hundred bytes is
    /// cheaper than `sendmsg`'s header and iovec import); `sendmsg` past [`COALESCE_BYTES`]. Not
    /// `writev`: on a socket it takes the file layer's path (`vfs_writev`, `fdget_pos`), which a
    /// profile of fine-grained fan-out showed costing about twice the socket calls' entry.
    fn write_slices(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match slices {
            [one] => (&self.stream).write(one),
            many if many.iter().map(|s| s.len()).sum::<usize>() <= COALESCE_BYTES => COALESCED.with(|buf| {
                let mut buf = buf.borrow_mut();
                buf.clear();
                for slice in many {
                    buf.extend_from_slice(slice);
                }
                (&self.stream).write(&buf)
            }),
            many => socket2::SockRef::from(&self.stream).send_vectored(many),
        }
    }

    /// Stops everything now: the driver ends the connection at its next run without waiting.
    pub fn terminate(&self) {
        self.terminate.store(true, Ordering::Release);
        self.wake();
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.terminate.load(Ordering::Acquire)
    }

    // ---- inbound flow control ----

    pub(crate) fn message_delivered(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    /// JS finished `n` messages (and released their bytes from the global bound just before):
    /// a paused reader runs again to see whether it may read now.
    ///
    /// The flag and the count are `SeqCst` on both sides: the driver publishes `reading_paused`
    /// and then re-reads the count, we change the count and then read the flag, so at least one
    /// of the two sees the other's write and no wake-up is lost.
    pub fn ack(&self, n: u32) {
        let _ = self.inflight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(v.saturating_sub(n)));
        if self.reading_paused.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    pub(crate) fn inflight_full(&self) -> bool {
        self.inflight.load(Ordering::SeqCst) >= self.max_inflight
    }

    /// Nothing of this connection waits in JS: it may use the inbound budget's reserve.
    pub(crate) fn nothing_inflight(&self) -> bool {
        self.inflight.load(Ordering::SeqCst) == 0
    }

    /// Stores only a change: a `SeqCst` store is a locked instruction and runs happen per read.
    pub(crate) fn set_reading_paused(&self, paused: bool) {
        if self.reading_paused.load(Ordering::Relaxed) != paused {
            self.reading_paused.store(paused, Ordering::SeqCst);
        }
    }

    // ---- liveness ----

    pub(crate) fn saw_frame(&self) {
        self.alive.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived from the peer (one clock read per socket read, not per frame).
    pub(crate) fn touch(&self) {
        self.last_seen_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn saw_pong(&self) {
        let sent = self.ping_sent_at_us.load(Ordering::Relaxed);
        if sent != 0 {
            let now = mono_us();
            let rtt = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
            self.rtt_us.store(rtt, Ordering::Relaxed);
        }
    }

    /// Last ping round-trip in microseconds (0 until the first pong).
    pub fn rtt_us(&self) -> u64 {
        u64::from(self.rtt_us.load(Ordering::Relaxed))
    }

    /// One heartbeat tick: false when the peer sent nothing (not even a pong) since the last
    /// tick; otherwise sends the next ping. A connection we stopped reading is never blamed.
    pub fn heartbeat(&self) -> bool {
        let alive = self.alive.swap(false, Ordering::Relaxed);
        if !alive && !self.reading_paused.load(Ordering::Relaxed) {
            return false;
        }
        self.ping_sent_at_us.store(mono_us() | 1, Ordering::Relaxed);
        self.send_control(PING_FRAME);
        true
    }
}
