//! The task that runs one WebSocket after the upgrade: reads and parses frames, hands messages
//! to the bridge, answers pings, drains the write queue when the socket was full, and walks the
//! close handshake (ours or the peer's) to the end. When the task ends for any reason, including
//! a panic, its [`Lifecycle`] guard unregisters the connection and reports the close to JS.

use crate::bridge::Bridge;
use crate::conn::Conn;
use crate::envelope::{self, Frame};
use crate::protocol::close;
use crate::protocol::frame::{self, FrameError};
use crate::protocol::reader::{Flow, Incoming, MessageReader};
use crate::reference;
use crate::server::Shared;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Per-thread read buffer: sockets are read into it and parsed in place, so an idle connection
/// holds no read buffer of its own.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads per wake-up before yielding to other connections on this thread.
const READS_PER_WAKE: usize = 8;
/// Loop iterations (each may read up to `READS_PER_WAKE` times) before yielding the thread.
const STEPS_PER_POLL: usize = 16;
/// How often a reader paused by global congestion re-checks the bridge.
const CONGESTION_POLL: Duration = Duration::from_millis(5);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// Invalid input the application layer cares about (design §4).
#[derive(Clone, Copy)]
enum Invalid {
    Payload,
    UnknownEvent,
}

impl Invalid {
    fn close(self) -> (u16, &'static str, &'static str) {
        match self {
            Invalid::Payload => (close::INVALID_PAYLOAD, "Invalid message payload", "invalid_payload"),
            Invalid::UnknownEvent => (close::POLICY_VIOLATION, "Unknown event", "unknown_event"),
        }
    }
}

/// Runs the connection to its end. `early` holds bytes that arrived with the HTTP head.
///
/// The whole connection is one poll function over the socket's readiness and the connection's
/// waker, so an idle connection's task holds little more than this session (timers are boxed
/// only while closing or congested).
pub(crate) async fn serve(conn: Arc<Conn>, shared: Arc<Shared>, mut early: Vec<u8>) {
    let _lifecycle = Lifecycle { conn: conn.clone(), shared: shared.clone() };
    let mut session = Session {
        reader: MessageReader::new(shared.config.max_payload),
        dispatch: Dispatch { conn: &conn, shared: &shared, peer_closed: false, corked: Vec::new() },
        discarding: false,
        read_eof: false,
        write_shut: false,
        close_timer: None,
        congestion_timer: None,
    };
    if !early.is_empty() {
        session.ingest(&mut early);
    }
    drop(early);
    std::future::poll_fn(|cx| session.poll(cx)).await;
}

struct Session<'a> {
    reader: MessageReader,
    dispatch: Dispatch<'a>,
    /// A frame error happened: input is read and thrown away until the peer closes.
    discarding: bool,
    read_eof: bool,
    write_shut: bool,
    /// Started when our close frame is queued: the peer has `closeTimeoutMs` to answer.
    close_timer: Option<Pin<Box<Sleep>>>,
    /// While JS is congested, re-check every few milliseconds.
    congestion_timer: Option<Pin<Box<Sleep>>>,
}

impl Session<'_> {
    /// One wake-up: flush, advance the close handshake, read what is available. `Ready` when the
    /// connection is over.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let conn = self.dispatch.conn;
        let shared = self.dispatch.shared;
        for _ in 0..STEPS_PER_POLL {
            conn.register_waker(cx.waker());
            if conn.is_terminated() {
                return Poll::Ready(());
            }
            let write_pending = match conn.flush() {
                Ok(drained) => !drained,
                Err(_) => return Poll::Ready(()),
            };
            if write_pending {
                match conn.stream().poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            let closing = conn.is_closing();
            if closing {
                let timer = self
                    .close_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(shared.config.close_timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(()); // the peer never completed the close handshake
                }
                if !write_pending {
                    // Our close frame is out. After a complete handshake the server closes the
                    // TCP connection first (RFC 6455 §7.1.1). After a frame error we cannot parse
                    // the rest, so we half-close and drain until the peer goes away (closing with
                    // unread input would send RST and could destroy the close frame in flight).
                    if self.dispatch.peer_closed {
                        return Poll::Ready(());
                    }
                    if self.discarding && !self.write_shut {
                        self.write_shut = true;
                        let _ = socket2::SockRef::from(conn.stream()).shutdown(std::net::Shutdown::Write);
                    }
                }
            }
            if self.read_eof {
                return Poll::Ready(()); // the peer is gone: nothing more can be delivered
            }
            let congested = shared.bridge.is_congested();
            let flow_paused = !closing && (conn.inflight_full() || congested);
            conn.set_reading_paused(flow_paused);
            if flow_paused {
                // An ack wakes us; global congestion has no owner to wake us, so poll for it.
                if congested {
                    let timer = self.congestion_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(CONGESTION_POLL)));
                    if timer.as_mut().poll(cx).is_ready() {
                        self.congestion_timer = None;
                        continue;
                    }
                }
                return Poll::Pending;
            }
            self.congestion_timer = None;
            match conn.stream().poll_read_ready(cx) {
                Poll::Ready(Ok(())) => self.read_available(),
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Plenty of work done in one go: let other connections on this thread run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads what the socket has (bounded per wake-up) and processes it in place.
    fn read_available(&mut self) {
        for _ in 0..READS_PER_WAKE {
            let outcome = SCRATCH.with(|scratch| {
                let mut buf = scratch.borrow_mut();
                match self.dispatch.conn.stream().try_read(&mut buf) {
                    Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        self.dispatch.conn.touch();
                        self.ingest(&mut buf[..n]);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            });
            match outcome {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.read_eof = true;
                    return;
                }
            }
            let conn = self.dispatch.conn;
            if !conn.is_closing() && (conn.inflight_full() || self.dispatch.shared.bridge.is_congested()) {
                return;
            }
        }
    }

    fn ingest(&mut self, bytes: &mut [u8]) {
        if self.discarding || self.dispatch.peer_closed {
            return;
        }
        let dispatch = &mut self.dispatch;
        let result = self.reader.feed(bytes, &mut |message| dispatch.on_incoming(message));
        if !dispatch.corked.is_empty() {
            reference::flush(&mut dispatch.corked);
        }
        let failure = match result {
            Ok(_) => return,
            Err(FrameError::Protocol(_)) => (close::PROTOCOL_ERROR, "Protocol error"),
            Err(FrameError::TooLarge) => (close::MESSAGE_TOO_BIG, "Message too large"),
            Err(FrameError::InvalidUtf8) => (close::INVALID_PAYLOAD, "Invalid message payload"),
        };
        self.discarding = true;
        self.reader = MessageReader::new(0);
        self.dispatch.conn.close(failure.0, failure.1);
    }
}

struct Dispatch<'a> {
    conn: &'a Arc<Conn>,
    shared: &'a Arc<Shared>,
    peer_closed: bool,
    /// Connections with frames queued by the Rust reference handlers, written after each read.
    corked: Vec<Arc<Conn>>,
}

impl Dispatch<'_> {
    fn bridge(&self) -> &Bridge {
        &self.shared.bridge
    }

    fn on_incoming(&mut self, message: Incoming<'_>) -> Flow {
        self.conn.saw_frame();
        match message {
            Incoming::Text(text) => self.on_message(text.as_bytes(), false),
            Incoming::Binary(bytes) => self.on_message(bytes, true),
            Incoming::Ping(payload) => {
                let mut pong = bytes::BytesMut::with_capacity(2 + payload.len());
                frame::put_header(&mut pong, frame::OP_PONG, payload.len());
                pong.extend_from_slice(payload);
                self.conn.send_control(&pong);
            }
            Incoming::Pong(_) => self.conn.saw_pong(),
            Incoming::Close(code, reason) => {
                self.peer_closed = true;
                self.conn.reply_to_close(code, reason);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn on_message(&mut self, payload: &[u8], binary: bool) {
        if self.conn.is_closing() {
            return; // we are closing: nothing more reaches the application
        }
        let namespace = &self.shared.config.namespaces[self.conn.namespace];
        if namespace.raw {
            self.bridge().push_raw(self.conn.id, binary, payload.to_vec());
            self.conn.message_delivered();
            return;
        }
        let Ok(text) = simdutf8::basic::from_utf8(payload) else {
            return self.invalid(Invalid::Payload);
        };
        let envelope = match envelope::parse(text) {
            Ok(Frame::Event(envelope)) => envelope,
            Ok(Frame::Reply(reply)) => {
                // Replies bypass the contract: JS matches them to its pending requests.
                self.bridge().push_reply(self.conn.id, &reply);
                self.conn.message_delivered();
                return;
            }
            Err(_) => return self.invalid(Invalid::Payload),
        };
        if let Some(req_id) = envelope.id {
            if !namespace.accepts_request(&envelope.event) {
                // Answered here, the connection stays open (design §3: a request gets a reply).
                let message = format!("Unknown request \"{}\"", envelope.event);
                let reply = envelope::error_reply(req_id.get(), "unknown_request", &message);
                self.conn.send(&frame::encode(frame::OP_TEXT, reply.as_bytes()));
                return;
            }
        } else if !namespace.accepts_event(&envelope.event) {
            return self.invalid(Invalid::UnknownEvent);
        }
        if self.shared.config.panic_on_event.as_deref() == Some(envelope.event.as_ref()) {
            panic!("ferrosocket test hook: panic on event {:?}", envelope.event);
        }
        if self.shared.config.reference_handlers
            && reference::handle(self.conn, self.shared, &envelope, &mut self.corked)
        {
            return;
        }
        self.bridge().push_message(self.conn.id, &envelope);
        self.conn.message_delivered();
    }

    fn invalid(&self, kind: Invalid) {
        let (code, reason, error_code) = kind.close();
        if self.shared.config.reply_on_invalid {
            let data = serde_json::json!({ "code": error_code, "message": reason });
            let payload = envelope::event_payload("error", &data);
            self.conn.send(&frame::encode(frame::OP_TEXT, payload.as_bytes()));
        } else {
            self.conn.close(code, reason);
        }
    }
}

/// Runs when the connection task ends (normally, by error or by panic): removes the connection
/// from every index, releases the socket and tells JS how it closed — always after its messages.
struct Lifecycle {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.conn.set_report_if_none(close::INTERNAL_ERROR, "Internal error");
        }
        let report = self.conn.report();
        let (code, reason) = report
            .as_ref()
            .map_or((close::ABNORMAL, ""), |r| (r.code, r.reason.as_str()));
        self.shared.registry.remove(self.conn.id);
        let _ = socket2::SockRef::from(self.conn.stream()).shutdown(std::net::Shutdown::Both);
        self.shared.bridge.push_close(self.conn.id, code, reason);
        self.shared.connection_closed();
    }
}
