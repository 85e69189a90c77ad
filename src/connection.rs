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
use crate::server::Shared;
use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Per-thread read buffer: sockets are read into it and parsed in place, so an idle connection
/// holds no read buffer of its own.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads per wake-up before yielding to other connections on this thread.
const READS_PER_WAKE: usize = 8;
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
pub(crate) async fn serve(conn: Arc<Conn>, shared: Arc<Shared>, mut early: Vec<u8>) {
    let _lifecycle = Lifecycle { conn: conn.clone(), shared: shared.clone() };
    let mut session = Session {
        reader: MessageReader::new(shared.config.max_payload),
        dispatch: Dispatch { conn: &conn, shared: &shared, peer_closed: false },
        discarding: false,
        read_eof: false,
        write_shut: false,
    };
    if !early.is_empty() {
        session.ingest(&mut early);
    }
    drop(early);
    let mut deadline: Option<Instant> = None;

    loop {
        if conn.is_terminated() {
            break;
        }
        let write_pending = match conn.flush() {
            Ok(drained) => !drained,
            Err(_) => break,
        };
        let closing = conn.is_closing();
        if closing {
            let now = Instant::now();
            let limit = *deadline.get_or_insert(now + shared.config.close_timeout);
            if now >= limit {
                break;
            }
            if !write_pending {
                // Our close frame is out. After a complete handshake the server closes the TCP
                // connection first (RFC 6455 §7.1.1). After a frame error we cannot parse the
                // rest, so we half-close and drain until the peer goes away (closing with
                // unread input would send RST and could destroy the close frame in flight).
                if session.dispatch.peer_closed {
                    break;
                }
                if session.discarding && !session.write_shut {
                    session.write_shut = true;
                    let _ = socket2::SockRef::from(conn.stream()).shutdown(std::net::Shutdown::Write);
                }
            }
        }
        if session.read_eof {
            // The peer is gone: nothing more can be delivered either way.
            break;
        }
        let congested = shared.bridge.is_congested();
        let flow_paused = !closing && (conn.inflight_full() || congested);
        conn.set_reading_paused(flow_paused);

        tokio::select! {
            biased;
            _ = conn.wake.notified() => {}
            r = conn.stream().writable(), if write_pending => {
                if r.is_err() { break; }
            }
            r = conn.stream().readable(), if !flow_paused => {
                if r.is_err() { break; }
                session.read_available();
            }
            _ = tokio::time::sleep(CONGESTION_POLL), if flow_paused && congested => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
    }
}

struct Session<'a> {
    reader: MessageReader,
    dispatch: Dispatch<'a>,
    /// A frame error happened: input is read and thrown away until the peer closes.
    discarding: bool,
    read_eof: bool,
    write_shut: bool,
}

impl Session<'_> {
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
