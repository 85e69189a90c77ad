//! One client connection: its state shared with JS calls ([`Connection`]: state, outbound queue,
//! inbound credit) and the tokio task that runs it ([`run`]): TCP (TCP_NODELAY) → TLS for `wss://`
//! → the upgrade (tokio-tungstenite), then a reader and a writer over the split stream, in one
//! task. Every outcome reaches JS as exactly one final event, after the connection left the pool.
//!
//! Lifecycle as the transport interface states it: `opened`, then messages, then one `closed`; or
//! one `failed` alone when the connection never opened (DNS, TCP, TLS, refused upgrade, handshake
//! timeout, or `close()` while still connecting).

use super::events::{Events, InboundCredit};
use super::queue::{OutboundQueue, Outgoing};
use futures::{SinkExt, StreamExt};
use rustls::ClientConfig;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// tungstenite's read buffer is allocated eagerly per connection; its 128 KiB default would cost
/// 10,000 idle client connections 1.3 GB. Larger messages still arrive (the buffer is a read
/// chunk, messages are assembled separately, bounded by `max_payload`).
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Frames are written out once this much is buffered, and on every flush (the writer flushes
/// after each batch it takes from the queue).
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// Close codes ([RFC 6455 §7.4](https://www.rfc-editor.org/rfc/rfc6455#section-7.4.1)).
pub const NORMAL: u16 = 1000;
const PROTOCOL_ERROR: u16 = 1002;
const UNSUPPORTED_DATA: u16 = 1003;
const NO_STATUS: u16 = 1005;
const ABNORMAL: u16 = 1006;
const INVALID_PAYLOAD: u16 = 1007;
const MESSAGE_TOO_BIG: u16 = 1009;

/// What `connect` was asked for, with the TLS config already resolved (or why it could not be).
pub struct ConnectOptions {
    /// Extra upgrade request headers.
    pub headers: Vec<(String, String)>,
    /// Sec-WebSocket-Protocol offers.
    pub protocols: Vec<String>,
    pub max_inbound_bytes: usize,
    pub max_outbound_bytes: usize,
    /// Limit on one received message (and frame); larger closes 1009.
    pub max_payload: usize,
    pub handshake_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            protocols: Vec::new(),
            max_inbound_bytes: 1 << 20,
            max_outbound_bytes: 1 << 20,
            max_payload: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

const CONNECTING: u8 = 0;
const OPEN: u8 = 1;
/// `close()` after opening, the peer's close frame, or a local failure: no more sends.
const CLOSING: u8 = 2;
/// `close()` while connecting: the task gives up and reports `failed`.
const ABORTED: u8 = 3;

/// A connection's state shared between its task and the JS thread's calls.
pub struct Connection {
    pub id: u64,
    state: AtomicU8,
    outbound: OutboundQueue,
    inbound: Arc<InboundCredit>,
    /// Wakes the task for `close()`: aborts a handshake, or starts the close timeout.
    closing: Notify,
}

impl Connection {
    pub fn new(id: u64, options: &ConnectOptions) -> Self {
        Self {
            id,
            state: AtomicU8::new(CONNECTING),
            outbound: OutboundQueue::new(options.max_outbound_bytes),
            inbound: Arc::new(InboundCredit::new(options.max_inbound_bytes)),
            closing: Notify::new(),
        }
    }

    /// Queues one text frame; false when not open or the outbound bound is reached.
    pub fn send(&self, text: String) -> bool {
        self.state.load(Ordering::Acquire) == OPEN && self.outbound.push_text(text)
    }

    /// Starts the closing handshake, or aborts a connection still opening. Idempotent.
    pub fn close(&self, code: u16, reason: &str) {
        if self.state.compare_exchange(CONNECTING, ABORTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.closing.notify_one();
        } else if self.begin_closing() {
            self.outbound.push_close(sendable_code(code), truncate_reason(reason).to_owned());
            self.closing.notify_one();
        }
    }

    /// Bytes queued for sending and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.outbound.unwritten()
    }

    /// Bytes received, handed to JS and not yet released.
    pub fn inbound_held(&self) -> usize {
        self.inbound.held()
    }

    /// OPEN → CLOSING; false when it was not open.
    fn begin_closing(&self) -> bool {
        self.state.compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// A code JS may put in a close frame: 1000–1003, 1007–1014, 3000–4999. Others (1004–1006 and
/// 1015 are reserved, the rest unassigned) become 1000 rather than a protocol error on the wire.
fn sendable_code(code: u16) -> u16 {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => code,
        _ => NORMAL,
    }
}

/// A close reason fits a control frame: at most 123 bytes, cut on a character boundary.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection did not open: the refused upgrade's HTTP status when there was one.
struct Failure {
    status: Option<u16>,
    message: String,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self { status: None, message: message.into() }
    }
}

/// Runs connection `conn` to its end, then calls `departed` (the pool forgets it) and reports the
/// final event. `tls`: the config for `wss://`, or why it could not be built (reported as failed).
pub async fn run(
    conn: Arc<Connection>,
    url: String,
    options: ConnectOptions,
    tls: Result<Arc<ClientConfig>, String>,
    close_timeout: Duration,
    events: Arc<Events>,
    departed: impl FnOnce(),
) {
    // Boxed: the handshake's state (TLS setup, request, response, tungstenite's handshake
    // machine) is several KB that the task would otherwise keep, inline, for its whole life.
    let opening = Box::pin(async {
        let tls = tls.map_err(Failure::new)?;
        match tokio::time::timeout(options.handshake_timeout, open(&url, &options, tls)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(format!("handshake timed out after {} ms", options.handshake_timeout.as_millis()))),
        }
    });
    let opened = tokio::select! {
        result = opening => result,
        () = conn.closing.notified() => Err(Failure::new("aborted by close() before the connection opened")),
    };
    let (ws, protocol) = match opened {
        Ok(pair) if conn.state.compare_exchange(CONNECTING, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() => pair,
        Ok(_) => {
            departed();
            events.push_failed(conn.id, None, "aborted by close() before the connection opened");
            return;
        }
        Err(failure) => {
            departed();
            events.push_failed(conn.id, failure.status, &failure.message);
            return;
        }
    };
    events.push_opened(conn.id, protocol.as_deref());
    let (code, reason) = serve(&conn, ws, close_timeout, &events).await;
    departed();
    events.push_closed(conn.id, code, &reason);
}

/// TCP, TLS and the upgrade; returns the stream and the subprotocol the server chose.
/// The stream is boxed: unboxed it is large (rustls' connection state sits inside it), and the
/// task would keep room for it for its whole life after `split` moved it to the heap anyway.
async fn open(url: &str, options: &ConnectOptions, tls: Arc<ClientConfig>) -> Result<(Box<Ws>, Option<String>), Failure> {
    let mut request = url.into_client_request().map_err(|e| Failure::new(e.to_string()))?;
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Failure::new(format!("invalid header name: {name}")))?;
        let value = HeaderValue::from_str(value).map_err(|_| Failure::new(format!("invalid value for header {name}")))?;
        request.headers_mut().insert(name, value);
    }
    if !options.protocols.is_empty() {
        let offers = HeaderValue::from_str(&options.protocols.join(", ")).map_err(|_| Failure::new("invalid subprotocol name"))?;
        request.headers_mut().insert("sec-websocket-protocol", offers);
    }
    let uri = request.uri();
    let host = uri.host().ok_or_else(|| Failure::new("the URL has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| Failure::new(format!("cannot connect to {host}:{port}: {e}")))?;
    // Small frames (requests, acks) go out at once instead of waiting for Nagle's timer.
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(options.max_payload))
        .max_frame_size(Some(options.max_payload));
    let (ws, response) = tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), Some(Connector::Rustls(tls)))
        .await
        .map_err(describe)?;
    let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((Box::new(ws), protocol))
}

/// A failed opening: a refused upgrade carries its HTTP status and the body (or the status's
/// reason phrase) as the message.
fn describe(error: WsError) -> Failure {
    match error {
        WsError::Http(response) => {
            let status = response.status();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let message = if body.trim().is_empty() {
                format!("upgrade refused: {status}")
            } else {
                format!("upgrade refused: {status}: {}", body.trim())
            };
            Failure { status: Some(status.as_u16()), message }
        }
        other => Failure::new(other.to_string()),
    }
}

/// The open connection: reads (pausing while JS holds more than the inbound bound) and writes
/// (all that is queued, then one flush) until it ends; returns the close code and reason to
/// report.
async fn serve(conn: &Connection, ws: Box<Ws>, close_timeout: Duration, events: &Events) -> (u16, String) {
    let (mut sink, mut stream) = (*ws).split();
    // Set when a close frame was sent or received, or writing failed: the peer then has
    // `close_timeout` to finish the closing handshake before the socket is dropped (1006).
    let mut deadline: Option<Instant> = None;
    let mut peer_close: Option<(u16, String)> = None;
    let write_failed = Notify::new();
    // A local failure to report (and to send as a close frame after the loop).
    let failure: Option<(u16, String)>;
    {
        let writer = write_loop(&conn.outbound, &mut sink, &write_failed);
        tokio::pin!(writer);
        failure = loop {
            let next = async {
                conn.inbound.wait_for_room().await;
                stream.next().await
            };
            let message = tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break None,
                () = conn.closing.notified(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + close_timeout);
                    continue;
                }
                () = write_failed.notified(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + close_timeout);
                    continue;
                }
                () = &mut writer => unreachable!("the writer never returns"),
                message = next => message,
            };
            match message {
                None => break None,
                Some(Ok(Message::Text(text))) => {
                    // After close() JS no longer receives messages (as a browser's WebSocket).
                    if conn.state.load(Ordering::Acquire) == OPEN {
                        events.push_message(conn.id, text.as_str(), &conn.inbound);
                    }
                }
                Some(Ok(Message::Binary(_))) => break Some((UNSUPPORTED_DATA, "binary frames are not supported".to_owned())),
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite answers it; the server then ends the TCP connection.
                    conn.state.store(CLOSING, Ordering::Release);
                    peer_close = Some(frame.map_or((NO_STATUS, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned())));
                    deadline.get_or_insert_with(|| Instant::now() + close_timeout);
                }
                Some(Ok(_)) => {} // ping (tungstenite queues the pong), pong
                Some(Err(WsError::Capacity(e))) => break Some((MESSAGE_TOO_BIG, e.to_string())),
                Some(Err(WsError::Utf8(e))) => break Some((INVALID_PAYLOAD, e)),
                // TCP ended without a close frame: 1006, not a protocol error.
                Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => break None,
                Some(Err(WsError::Protocol(e))) => break Some((PROTOCOL_ERROR, e.to_string())),
                Some(Err(_)) => break None, // the socket failed: no close frame
            }
        };
    }
    if let Some((code, reason)) = &failure {
        conn.state.store(CLOSING, Ordering::Release);
        if peer_close.is_none() {
            // Fail the connection: one close frame, then drop the socket without waiting.
            let frame = CloseFrame { code: CloseCode::from(*code), reason: reason.as_str().into() };
            let _ = tokio::time::timeout(close_timeout, sink.send(Message::Close(Some(frame)))).await;
        }
    }
    match (peer_close, failure) {
        (Some(close), _) | (None, Some(close)) => close,
        (None, None) => (ABNORMAL, String::new()),
    }
}

/// Writes whatever is queued, then flushes once; repeats. On a write error it stops writing,
/// tells the reader (which gives the peer `close_timeout` to end) and never returns.
async fn write_loop<S>(queue: &OutboundQueue, sink: &mut S, failed: &Notify)
where
    S: futures::Sink<Message, Error = WsError> + Unpin,
{
    loop {
        let items = queue.take_all().await;
        let bytes: usize = items.iter().map(Outgoing::wire_bytes).sum();
        let mut result = Ok(());
        for item in items {
            let message = match item {
                Outgoing::Text(text) => Message::text(text),
                Outgoing::Close(code, reason) => Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() })),
            };
            result = sink.feed(message).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = sink.flush().await;
        }
        queue.written(bytes);
        if result.is_err() {
            failed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_codes_are_not_sent_and_reasons_fit_a_control_frame() {
        assert_eq!(sendable_code(4000), 4000);
        assert_eq!(sendable_code(1001), 1001);
        assert_eq!(sendable_code(1006), NORMAL);
        assert_eq!(sendable_code(0), NORMAL);
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123 && cut.len() == 122);
    }

    #[test]
    fn close_while_connecting_aborts_and_close_is_idempotent() {
        let c = Connection::new(1, &ConnectOptions::default());
        assert!(!c.send("x".into()), "not open yet");
        c.close(1000, "");
        c.close(1000, "");
        assert_eq!(c.state.load(Ordering::Acquire), ABORTED);
        assert_eq!(c.buffered_amount(), 0, "nothing queued for an aborted connection");
    }

    #[test]
    fn close_after_open_queues_one_close_frame() {
        let c = Connection::new(1, &ConnectOptions::default());
        c.state.store(OPEN, Ordering::Release);
        assert!(c.send("abc".into()));
        c.close(4001, "done");
        c.close(4002, "again");
        assert!(!c.send("late".into()), "no sends after close()");
        assert_eq!(c.buffered_amount(), 3 + 2 + 4);
    }

    #[test]
    fn an_open_connections_task_stays_small() {
        // Every client connection's task holds this future for its whole life: the handshake
        // state and the unsplit stream are boxed so they do not inflate it (10 KB before).
        let conn = Arc::new(Connection::new(1, &ConnectOptions::default()));
        let events = Arc::new(Events::new(Box::new(|| {})));
        let task = run(conn, String::new(), ConnectOptions::default(), Err(String::new()), Duration::ZERO, events, || {});
        assert!(std::mem::size_of_val(&task) <= 2048, "{} bytes", std::mem::size_of_val(&task));
    }
}
