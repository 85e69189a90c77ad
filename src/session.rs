//! What one WebSocket does each time its [driver](crate::driver) runs it: flush what is queued,
//! advance the close handshake (ours or the peer's), read and parse what the socket has and hand
//! messages to the bridge, answer pings. The state here is the part only the driver touches; the
//! part publishers share lives in [`Conn`]. When [`Session::run`] reports [`Step::Done`], the
//! driver calls [`finish`]: unregister the connection and report its close to JS.
//!
//! Names: a WebSocket is a [`Conn`] where publishers meet it (crate::conn), a [`Session`] where
//! its driver runs it (here), and a `Connection` in the JS API.
//!
//! What a session needs from the rest of the server is one narrow [`SessionContext`]: the
//! options, the bridge to JS, the runtime's side of a departure ([`Departures`]) and an optional
//! [`InboundHook`]. This module knows nothing of the runtime, the fan-out index or the hooks.

use crate::bridge::Bridge;
use crate::conn::Conn;
use crate::metrics::Metrics;
use crate::envelope::{self, Envelope, Frame};
use crate::protocol::close;
use crate::protocol::frame::{self, FrameError};
use crate::protocol::reader::{Flow, Incoming, MessageReader};
use crate::config::Config;
use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// Per-thread read buffer: sockets are read into it and parsed in place, so an idle connection
/// holds no read buffer of its own.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads per run before letting other connections on this driver go first.
const READS_PER_RUN: usize = 8;
/// Loop iterations (each may read up to `READS_PER_RUN` times) per run.
const STEPS_PER_RUN: usize = 16;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// What running connections needs from the rest of the server, and nothing more. One per server,
/// shared by every driver.
pub struct SessionContext {
    pub config: Arc<Config>,
    pub bridge: Arc<Bridge>,
    pub departures: Arc<dyn Departures>,
    pub metrics: Arc<Metrics>,
    /// Code that answers messages in Rust (bench/test scaffolding installed by the addon);
    /// applications run without one, which costs one branch per message.
    pub hook: Option<Arc<dyn InboundHook>>,
}

/// The runtime's side of a connection ending (its fan-out index, its connection count).
pub trait Departures: Send + Sync {
    /// Before JS hears of the close: from now on no publish reaches the connection.
    fn unregister(&self, id: u64);
    /// After JS was told: the connection no longer counts (shutdown waits for this).
    fn released(&self);
}

/// A seam for handling messages inside Rust instead of JS: the bench's reference handlers and the
/// panic test hook (`crate::hooks`). It sees every event or request that passed the contract
/// checks, in the driver thread, before it would be charged to the inbound budget.
pub trait InboundHook: Send + Sync {
    /// True when the hook handled the message (JS never sees it).
    fn on_event(&self, conn: &Arc<Conn>, envelope: &Envelope<'_>) -> bool;
    /// After the input of one socket read was dispatched (e.g. to write what `on_event` queued).
    fn after_input(&self) {}
}

/// Inbound flow control: the connection's own window has room and the global bound admits it.
fn may_read(conn: &Conn, ctx: &SessionContext) -> bool {
    !conn.inflight_full() && ctx.bridge.budget().admits(conn.nothing_inflight())
}

/// Invalid input the application layer cares about.
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

/// What the driver should do with a connection after running it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do until the socket is ready or something wakes the connection.
    Wait,
    /// Still has input to read: run it again after the others.
    Again,
    /// Closing: run it again at this instant at the latest (the peer's close deadline).
    WaitUntil(Instant),
    /// JS is congested: poll again shortly (nothing else would wake this connection).
    Congested,
    /// The connection is over: call [`finish`].
    Done,
}

/// The driver's per-connection state.
pub(crate) struct Session {
    reader: MessageReader,
    /// The socket reported readable and we have not seen `WouldBlock` since (edge-triggered).
    pub(crate) readable: bool,
    /// The peer's close frame arrived (and was answered).
    peer_closed: bool,
    /// A frame error happened: input is read and thrown away until the peer closes.
    discarding: bool,
    read_eof: bool,
    write_shut: bool,
    /// The peer half-closed (FIN: it will send nothing more). Set by the driver from epoll, so it
    /// is seen even while we are not reading.
    pub(crate) peer_hung_up: bool,
    /// The connection was reset or failed (RST, socket error): nothing can be read or written.
    pub(crate) peer_reset: bool,
    /// We ended the connection with input still unread because the peer left while reading was
    /// paused (see [`Session::paused`]).
    abandoned: bool,
    /// Set when our close frame is queued: the peer has `closeTimeoutMs` to answer. Also set
    /// when the peer hung up while reading was paused: JS then has `closeTimeoutMs` to catch up
    /// before what is left unread is dropped.
    close_deadline: Option<Instant>,
}

impl Session {
    pub(crate) fn new(ctx: &SessionContext, conn: &Conn) -> Self {
        let max_payload = ctx.config.max_payload;
        Self {
            reader: if conn.deflate_window() != 0 { MessageReader::with_deflate(max_payload) } else { MessageReader::new(max_payload) },
            readable: false,
            peer_closed: false,
            discarding: false,
            read_eof: false,
            write_shut: false,
            peer_hung_up: false,
            peer_reset: false,
            abandoned: false,
            close_deadline: None,
        }
    }

    /// See the field: JS then drops what it still has queued for this connection.
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// One run: flush, advance the close handshake, read what is available (bounded).
    pub(crate) fn run(&mut self, conn: &Arc<Conn>, ctx: &SessionContext) -> Step {
        for _ in 0..STEPS_PER_RUN {
            if conn.is_terminated() {
                return Step::Done;
            }
            // A full socket needs no tracking here: its writable edge runs us again.
            let write_pending = match conn.flush() {
                Ok(drained) => !drained,
                Err(_) => return Step::Done,
            };
            let closing = conn.is_closing();
            if closing {
                let deadline = *self.close_deadline.get_or_insert_with(|| Instant::now() + ctx.config.close_timeout);
                if Instant::now() >= deadline {
                    return Step::Done; // the peer never completed the close handshake
                }
                if !write_pending {
                    // Our close frame is out. After a complete handshake the server closes the
                    // TCP connection first (RFC 6455 §7.1.1). After a frame error we cannot parse
                    // the rest, so we half-close and drain until the peer goes away (closing with
                    // unread input would send RST and could destroy the close frame in flight).
                    if self.peer_closed {
                        return Step::Done;
                    }
                    if self.discarding && !self.write_shut {
                        self.write_shut = true;
                        let _ = socket2::SockRef::from(conn.stream()).shutdown(std::net::Shutdown::Write);
                    }
                }
            }
            if self.read_eof {
                return Step::Done; // the peer is gone: nothing more can be delivered
            }
            let flow_paused = !closing && !may_read(conn, ctx);
            conn.set_reading_paused(flow_paused);
            if flow_paused {
                // Published the flag, then look again: an ack racing with us either saw the flag
                // (and wakes us) or is seen here (see `Conn::ack`).
                if may_read(conn, ctx) {
                    continue;
                }
                return self.paused(conn, ctx);
            }
            if !self.readable {
                return match self.close_deadline {
                    Some(deadline) if closing => Step::WaitUntil(deadline),
                    _ => Step::Wait,
                };
            }
            self.read_available(conn, ctx);
        }
        Step::Again
    }

    /// Reading is paused (flow control): wait for JS, unless the peer has left. A peer that
    /// reset the connection is gone at once; one that hung up (FIN) gets `closeTimeoutMs` for JS
    /// to catch up and read the rest normally, so a slow handler loses nothing. After that, what
    /// it sent and we never read is dropped, so a handler that never settles cannot hold a
    /// departed peer's socket.
    fn paused(&mut self, conn: &Conn, ctx: &SessionContext) -> Step {
        // With messages in flight, their ack wakes us (it also brings the bytes JS released).
        // With none, only the global bound holds us and nobody owns that: the driver polls.
        let polled = conn.nothing_inflight();
        let wait = if polled { Step::Congested } else { Step::Wait };
        if self.peer_reset {
            self.abandoned = true;
            return Step::Done;
        }
        if !self.peer_hung_up {
            return wait;
        }
        let deadline = *self.close_deadline.get_or_insert_with(|| Instant::now() + ctx.config.close_timeout);
        if Instant::now() >= deadline {
            self.abandoned = true;
            return Step::Done;
        }
        if polled {
            Step::Congested // polled often, which also checks the deadline
        } else {
            Step::WaitUntil(deadline)
        }
    }

    /// Reads what the socket has (bounded per run) and processes it in place.
    fn read_available(&mut self, conn: &Arc<Conn>, ctx: &SessionContext) {
        for _ in 0..READS_PER_RUN {
            let outcome = SCRATCH.with(|scratch| {
                let mut buf = scratch.borrow_mut();
                match conn.read(&mut buf) {
                    Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        conn.touch();
                        conn.count_read(n);
                        self.ingest(conn, ctx, &mut buf[..n]);
                        Ok(n < buf.len())
                    }
                    Err(e) => Err(e),
                }
            });
            match outcome {
                // A short read emptied the socket: no second read only to hear `WouldBlock`.
                // Edge-triggered epoll reports every later arrival (data or FIN) as a new event,
                // so nothing that comes after it is missed (in fine-grained traffic this halves
                // the reads). A FIN reported already still needs the read that returns 0.
                Ok(true) if !self.peer_hung_up && !self.peer_reset => {
                    self.readable = false;
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.read_eof = true;
                    return;
                }
            }
            if !conn.is_closing() && !may_read(conn, ctx) {
                // `run` decides how to wait.
                return;
            }
        }
    }

    /// Parses bytes read from the socket (or that arrived with the HTTP head) and dispatches them.
    pub(crate) fn ingest(&mut self, conn: &Arc<Conn>, ctx: &SessionContext, bytes: &mut [u8]) {
        if self.discarding || self.peer_closed {
            return;
        }
        let mut dispatch = Dispatch { conn, ctx, peer_closed: false };
        let result = self.reader.feed(bytes, &mut |message| dispatch.on_incoming(message));
        self.peer_closed = dispatch.peer_closed;
        if let Some(hook) = &ctx.hook {
            hook.after_input();
        }
        let failure = match result {
            Ok(_) => return,
            Err(FrameError::Protocol(_)) => (close::PROTOCOL_ERROR, "Protocol error"),
            Err(FrameError::TooLarge) => (close::MESSAGE_TOO_BIG, "Message too large"),
            Err(FrameError::InvalidUtf8) => (close::INVALID_PAYLOAD, "Invalid message payload"),
            Err(FrameError::TooFragmented) => (close::MESSAGE_TOO_BIG, "Too many fragments"),
            Err(FrameError::InvalidCompressed) => (close::INVALID_PAYLOAD, "Invalid compressed data"),
        };
        self.discarding = true;
        self.reader = MessageReader::new(0);
        conn.close(failure.0, failure.1);
    }
}

struct Dispatch<'a> {
    conn: &'a Arc<Conn>,
    ctx: &'a SessionContext,
    peer_closed: bool,
}

impl Dispatch<'_> {
    fn bridge(&self) -> &Bridge {
        &self.ctx.bridge
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
        self.conn.count_message();
        let namespace = &self.ctx.config.namespaces[self.conn.namespace()];
        if namespace.raw {
            self.bridge().push_raw(self.conn.id, binary, payload.to_vec()); // charged to the budget
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
                self.bridge().push_reply(self.conn.id, &reply, payload.len());
                self.conn.message_delivered();
                return;
            }
            Err(_) => return self.invalid(Invalid::Payload),
        };
        if let Some(req_id) = envelope.id {
            if !namespace.accepts_request(&envelope.event) {
                // Answered here, the connection stays open: a request always gets a reply.
                let message = format!("Unknown request \"{}\"", envelope.event);
                let reply = envelope::error_reply(req_id.get(), "unknown_request", &message);
                self.ctx.metrics.rejected(self.conn.namespace());
                if self.bridge().reports_rejections() {
                    self.bridge().push_message_rejected(self.conn.id, 0, &message);
                }
                self.conn.send(&frame::encode(frame::OP_TEXT, reply.as_bytes()));
                return;
            }
        } else if !namespace.accepts_event(&envelope.event) {
            return self.invalid(Invalid::UnknownEvent);
        }
        if let Some(hook) = &self.ctx.hook {
            if hook.on_event(self.conn, &envelope) {
                return;
            }
        }
        self.bridge().push_message(self.conn.id, &envelope, payload.len());
        self.conn.message_delivered();
    }

    fn invalid(&self, kind: Invalid) {
        self.ctx.metrics.rejected(self.conn.namespace());
        let (code, reason, error_code) = kind.close();
        if self.bridge().reports_rejections() {
            self.bridge().push_message_rejected(self.conn.id, code, reason);
        }
        if self.ctx.config.reply_on_invalid {
            let data = serde_json::json!({ "code": error_code, "message": reason });
            let payload = envelope::event_payload("error", &data);
            self.conn.send(&frame::encode(frame::OP_TEXT, payload.as_bytes()));
        } else {
            self.conn.close(code, reason);
        }
    }
}

/// Ends a connection (normally, by error, or after its run panicked): removes it from every
/// index, releases the socket and tells JS how it closed, always after its messages.
/// `abandoned`: see [`Session::abandoned`].
pub(crate) fn finish(conn: &Conn, ctx: &SessionContext, panicked: bool, abandoned: bool) {
    if panicked {
        conn.set_report_if_none(close::INTERNAL_ERROR, "Internal error");
    }
    let report = conn.report();
    let (code, reason) = report.as_ref().map_or((close::ABNORMAL, ""), |r| (r.code, r.reason.as_str()));
    ctx.departures.unregister(conn.id);
    ctx.metrics.closed(conn.namespace(), code, conn.traffic(), conn.overflowed());
    // Closing the descriptor (when the last `Arc<Conn>` goes) also removes it from the driver's
    // epoll set; shutting down now makes the peer see the end even while publishers hold it.
    let _ = socket2::SockRef::from(conn.stream()).shutdown(std::net::Shutdown::Both);
    ctx.bridge.push_close(conn.id, code, reason, abandoned);
    ctx.departures.released();
}
