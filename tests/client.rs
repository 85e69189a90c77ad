//! The native client core (`ferrosocket::client`) over real sockets, without Node: a `ClientPool`
//! against a ferrosocket `Server` (started as tests/runtime.rs starts one) and against small
//! blocking peers (tungstenite's server side, or raw TCP) for what a ferrosocket server never
//! does (binary frames, vanishing without a close frame, not reading). The test plays the JS side
//! of both: it takes batches and, like the addon, releases each client batch once handled —
//! except where it withholds the release to see reading pause.
//!
//! Built without the `napi-addon` feature, like every integration test.

use ferrosocket::client::{ClientPool, ConnectOptions, PoolOptions, TakenBatch, Trust};
use ferrosocket::config::Config;
use ferrosocket::server::Server;
use ferrosocket::upgrade::AuthVerdict;
use serde_json::{json, Value};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message};

mod common;

const WAIT: Duration = Duration::from_secs(5);

/// A ferrosocket server plus the entries JS would see.
struct ServerSide {
    server: Server,
    port: u16,
    wakes: Receiver<()>,
    entries: Vec<Value>,
}

impl ServerSide {
    fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let (server, port, wakes) = common::start_server(1, configure);
        Self { server, port, wakes, entries: Vec::new() }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.entries.iter().position(&pred) {
                return self.entries.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "server: timed out waiting for {what}; entries: {:?}", self.entries);
            let _ = self.wakes.recv_timeout(left.min(Duration::from_millis(50)));
            let taken = self.server.take_batch();
            if !taken.json.is_empty() {
                let batch: Vec<Value> = serde_json::from_str(&taken.json).unwrap();
                self.entries.extend(batch);
            }
        }
    }
}

/// A client pool plus the entries JS would see.
struct ClientSide {
    pool: ClientPool,
    wakes: Receiver<()>,
    entries: Vec<Value>,
    /// Batches taken and not released (only while `hold` is set).
    held: Vec<TakenBatch>,
    hold: bool,
}

impl ClientSide {
    fn start() -> Self {
        Self::with(PoolOptions::default())
    }

    fn with(options: PoolOptions) -> Self {
        let (tx, wakes) = channel();
        let tx = Mutex::new(tx);
        let pool = ClientPool::new(options, Box::new(move || {
            let _ = tx.lock().unwrap().send(());
        }))
        .expect("pool starts");
        Self { pool, wakes, entries: Vec::new(), held: Vec::new(), hold: false }
    }

    fn connect(&self, url: &str, options: ConnectOptions) -> u64 {
        self.pool.connect(url, options, &Trust::default())
    }

    /// Takes one batch as the addon would (releasing it unless holding); true if it had entries.
    fn take(&mut self) -> bool {
        let taken = self.pool.take_batch();
        if taken.json.is_empty() {
            taken.release();
            return false;
        }
        let batch: Vec<Value> = serde_json::from_str(&taken.json).expect("a batch is a JSON array");
        self.entries.extend(batch);
        if self.hold {
            self.held.push(taken);
        } else {
            taken.release();
        }
        true
    }

    fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.entries.iter().position(&pred) {
                return self.entries.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "client: timed out waiting for {what}; entries: {:?}", self.entries);
            let _ = self.wakes.recv_timeout(left.min(Duration::from_millis(50)));
            self.take();
        }
    }

    /// The final entry (`closed` or `failed`) of connection `id`.
    fn end_of(&mut self, id: u64) -> Value {
        self.wait("the connection's end", |e| e[1] == id && (e[0] == 2 || e[0] == 3))
    }

    fn opened(&mut self, id: u64) -> Value {
        let entry = self.wait("opened or failed", |e| e[1] == id && (e[0] == 0 || e[0] == 3));
        assert_eq!(entry[0], 0, "expected the connection to open: {entry}");
        entry
    }

    /// Counts message entries of `id` that arrive within `window` (after a positive control).
    fn messages_within(&mut self, id: u64, window: Duration) -> usize {
        let until = Instant::now() + window;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let _ = self.wakes.recv_timeout(left);
            self.take();
        }
        self.count_messages(id)
    }

    fn count_messages(&self, id: u64) -> usize {
        self.entries.iter().filter(|e| e[0] == 1 && e[1] == id).count()
    }
}

/// A blocking one-connection WebSocket server (tungstenite's server side) on a thread, running
/// `serve` on the accepted socket. Returns the URL.
fn peer(serve: impl FnOnce(tungstenite::WebSocket<TcpStream>) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let ws = tungstenite::accept(stream).expect("the client's upgrade is valid");
        serve(ws);
    });
    format!("ws://127.0.0.1:{port}/")
}

/// The next close frame the peer receives: (code, reason).
fn peer_close(ws: &mut tungstenite::WebSocket<TcpStream>) -> (u16, String) {
    loop {
        match ws.read().expect("a close frame within the deadline") {
            Message::Close(Some(frame)) => return (u16::from(frame.code), frame.reason.to_string()),
            Message::Close(None) => return (1005, String::new()),
            _ => {}
        }
    }
}

#[test]
fn text_flows_both_ways_and_the_clients_close_code_reaches_the_server() {
    let mut server = ServerSide::start(|_| {});
    let mut client = ClientSide::start();
    let id = client.connect(&server.url(), ConnectOptions::default());
    assert_eq!(client.opened(id), json!([0, id, null]));
    let server_id = server.wait("the open", |e| e[0] == 0)[1].as_u64().unwrap();

    assert!(client.pool.send(id, r#"{"event":"hello","data":"é"}"#.into()));
    let entry = server.wait("the message", |e| e[0] == 1);
    assert_eq!((&entry[2], &entry[3]), (&json!("hello"), &json!("é")));

    assert!(server.server.send_to(server_id, br#"{"event":"hi","data":[1,2]}"#, false));
    let message = client.wait("the server's message", |e| e[0] == 1);
    assert_eq!(message, json!([1, id, r#"{"event":"hi","data":[1,2]}"#]));

    client.pool.close(id, 4000, "bye");
    client.pool.close(id, 4001, "ignored: close is idempotent");
    assert_eq!(server.wait("the close", |e| e[0] == 2), json!([2, server_id, 4000, "bye", 0]));
    // What the server's close frame said (as a browser reports it): ferrosocket echoes the code.
    assert_eq!(client.end_of(id), json!([2, id, 4000, ""]));
    assert!(!client.pool.send(id, "{}".into()), "no sends after the end");
    assert_eq!(client.pool.live_connections(), 0);
}

#[test]
fn a_server_initiated_close_reports_its_code_and_reason() {
    let mut server = ServerSide::start(|_| {});
    let mut client = ClientSide::start();
    let id = client.connect(&server.url(), ConnectOptions::default());
    client.opened(id);
    let server_id = server.wait("the open", |e| e[0] == 0)[1].as_u64().unwrap();
    server.server.close(server_id, 4321, "go away");
    assert_eq!(client.end_of(id), json!([2, id, 4321, "go away"]));
}

#[test]
fn a_refused_upgrade_reports_its_http_status() {
    let mut server = ServerSide::start(|c| c.authenticate = true);
    let mut client = ClientSide::start();
    let id = client.connect(&server.url(), ConnectOptions::default());
    let held = server.wait("the held handshake", |e| e[0] == 5);
    let verdict = AuthVerdict::Reject { status: 401, message: "who are you".into() };
    assert!(server.server.resolve_handshake(held[1].as_u64().unwrap(), verdict));
    let end = client.end_of(id);
    assert_eq!((&end[0], &end[2]), (&json!(3), &json!(401)), "{end}");
    assert!(end[3].as_str().unwrap().contains("401"), "{end}");
}

#[test]
fn a_refused_tcp_connection_fails_without_a_status() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // now closed
    let mut client = ClientSide::start();
    let id = client.connect(&format!("ws://127.0.0.1:{port}/"), ConnectOptions::default());
    let end = client.end_of(id);
    assert_eq!((&end[0], &end[2]), (&json!(3), &json!(null)), "{end}");
    let bad = client.connect("http://127.0.0.1/", ConnectOptions::default());
    assert_eq!(client.end_of(bad)[0], 3, "a URL that is not ws:// or wss:// fails asynchronously too");
}

#[test]
fn close_while_connecting_aborts_and_a_silent_server_times_the_handshake_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog), never answers
    let url = format!("ws://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let mut client = ClientSide::start();
    let aborted = client.connect(&url, ConnectOptions::default());
    client.pool.close(aborted, 1000, "");
    let end = client.end_of(aborted);
    assert_eq!(end[0], 3, "{end}");
    assert!(end[3].as_str().unwrap().contains("aborted"), "{end}");
    let timed = client.connect(&url, ConnectOptions { handshake_timeout: Duration::from_millis(200), ..Default::default() });
    let end = client.end_of(timed);
    assert!(end[0] == 3 && end[3].as_str().unwrap().contains("timed out"), "{end}");
}

#[test]
fn a_peer_vanishing_without_a_close_frame_is_1006() {
    let (tx, rx) = channel();
    let url = peer(move |mut ws| {
        ws.send(Message::text("last words")).unwrap();
        rx.recv().unwrap(); // until the client has seen them
        drop(ws); // TCP closed, no close frame
    });
    let mut client = ClientSide::start();
    let id = client.connect(&url, ConnectOptions::default());
    client.opened(id);
    client.wait("the message", |e| e[0] == 1 && e[2] == "last words");
    tx.send(()).unwrap();
    assert_eq!(client.end_of(id), json!([2, id, 1006, ""]));
}

#[test]
fn a_message_over_max_payload_closes_1009() {
    let mut server = ServerSide::start(|_| {});
    let mut client = ClientSide::start();
    let id = client.connect(&server.url(), ConnectOptions { max_payload: 100, ..Default::default() });
    client.opened(id);
    let server_id = server.wait("the open", |e| e[0] == 0)[1].as_u64().unwrap();
    assert!(server.server.send_to(server_id, br#"{"event":"small","data":1}"#, false));
    let big = format!(r#"{{"event":"big","data":"{}"}}"#, "x".repeat(200));
    assert!(server.server.send_to(server_id, big.as_bytes(), false));
    client.wait("the small message", |e| e[0] == 1);
    let end = client.end_of(id);
    assert_eq!((&end[0], &end[2]), (&json!(2), &json!(1009)), "{end}");
    assert_eq!(server.wait("the close", |e| e[0] == 2)[2], 1009, "the server got the 1009 frame");
    assert_eq!(client.count_messages(id), 0, "the big message was not delivered");
}

#[test]
fn a_binary_frame_closes_1003() {
    let (tx, rx) = channel();
    let url = peer(move |mut ws| {
        ws.send(Message::binary(vec![1, 2, 3])).unwrap();
        tx.send(peer_close(&mut ws)).unwrap();
    });
    let mut client = ClientSide::start();
    let id = client.connect(&url, ConnectOptions::default());
    let end = client.end_of(id);
    assert_eq!((&end[0], &end[2]), (&json!(2), &json!(1003)), "{end}");
    assert_eq!(rx.recv_timeout(WAIT).unwrap().0, 1003);
}

#[test]
fn subprotocol_offers_and_extra_headers_reach_the_server() {
    let (tx, rx) = channel();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        #[allow(clippy::result_large_err)] // the signature tungstenite's `Callback` asks for
        let callback = |req: &tungstenite::handshake::server::Request, mut res: tungstenite::handshake::server::Response| {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            tx.send((header("x-token"), header("sec-websocket-protocol"))).unwrap();
            res.headers_mut().insert("sec-websocket-protocol", "chat.v2".parse().unwrap());
            Ok(res)
        };
        let mut ws = tungstenite::accept_hdr(stream, callback).unwrap();
        let _ = ws.read();
    });
    let mut client = ClientSide::start();
    let options = ConnectOptions {
        headers: vec![("X-Token".into(), "abc".into())],
        protocols: vec!["chat.v1".into(), "chat.v2".into()],
        ..Default::default()
    };
    let id = client.connect(&format!("ws://127.0.0.1:{port}/"), options);
    assert_eq!(client.opened(id), json!([0, id, "chat.v2"]));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), ("abc".to_owned(), "chat.v1, chat.v2".to_owned()));
}

#[test]
fn reading_pauses_while_js_holds_more_than_max_inbound_bytes() {
    const COUNT: usize = 200;
    let mut server = ServerSide::start(|_| {});
    let mut client = ClientSide::start();
    client.hold = true;
    let id = client.connect(&server.url(), ConnectOptions { max_inbound_bytes: 1000, ..Default::default() });
    client.opened(id);
    let server_id = server.wait("the open", |e| e[0] == 0)[1].as_u64().unwrap();
    let message = format!(r#"{{"event":"n","data":"{}"}}"#, "x".repeat(77)); // 100 bytes
    assert_eq!(message.len(), 100);
    for _ in 0..COUNT {
        assert!(server.server.send_to(server_id, message.as_bytes(), false));
    }
    let first = client.wait("a first message", |e| e[0] == 1 && e[1] == id);
    client.entries.push(first); // counted below
    // Positive control above; now nothing past the bound arrives while JS holds the batches.
    let delivered = client.messages_within(id, Duration::from_millis(300));
    assert!(client.pool.inbound_held(id) > 1000, "paused only above the bound");
    assert!(delivered <= 11, "reading stopped at the bound (+1 message): {delivered} delivered");
    // JS processes what it holds: reading resumes and everything arrives.
    client.hold = false;
    for batch in client.held.drain(..) {
        batch.release();
    }
    let deadline = Instant::now() + WAIT;
    while client.count_messages(id) < COUNT {
        assert!(Instant::now() < deadline, "only {} of {COUNT} after the release", client.count_messages(id));
        let _ = client.wakes.recv_timeout(Duration::from_millis(50));
        client.take();
    }
    assert_eq!(client.pool.inbound_held(id), 0);
}

#[test]
fn sends_are_refused_past_max_outbound_bytes_while_the_peer_does_not_read() {
    const LIMIT: usize = 256 * 1024;
    const CHUNK: usize = 64 * 1024;
    let (resume_tx, resume_rx) = channel::<()>();
    let (count_tx, count_rx) = channel();
    let url = peer(move |mut ws| {
        resume_rx.recv().unwrap(); // not reading: the kernel buffers fill, then the client's queue
        let mut received = 0;
        while let Ok(message) = ws.read() {
            if message.is_text() {
                received += 1;
            }
            if message.is_close() {
                break;
            }
        }
        count_tx.send(received).unwrap();
    });
    let mut client = ClientSide::start();
    let id = client.connect(&url, ConnectOptions { max_outbound_bytes: LIMIT, ..Default::default() });
    client.opened(id);
    let chunk = "x".repeat(CHUNK);
    let mut accepted = 0usize;
    let started = Instant::now();
    // Send until refused, then give the writer time to drain into the kernel; refused for good
    // (buffered stays near the bound) means the socket no longer takes anything.
    'fill: loop {
        assert!(started.elapsed() < Duration::from_secs(20), "the bound was never reached");
        // Bounded even if `send` never refused (the assertion below then fails).
        for _ in 0..64 {
            if !client.pool.send(id, chunk.clone()) {
                break;
            }
            accepted += 1;
        }
        let buffered = client.pool.buffered_amount(id);
        assert!(buffered <= LIMIT, "buffered {buffered} > bound");
        let refused_at = Instant::now();
        while refused_at.elapsed() < Duration::from_millis(300) {
            if client.pool.buffered_amount(id) + CHUNK <= LIMIT {
                continue 'fill;
            }
            thread::sleep(Duration::from_millis(5));
        }
        break;
    }
    assert!(client.pool.buffered_amount(id) + CHUNK > LIMIT);
    assert!(!client.pool.send(id, chunk.clone()), "refused while the peer does not read");
    assert!(accepted * CHUNK > LIMIT, "the kernel took some before the queue filled: {accepted} chunks");
    // The peer reads again: everything accepted arrives, and the queue empties.
    resume_tx.send(()).unwrap();
    let deadline = Instant::now() + WAIT;
    while client.pool.buffered_amount(id) > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain");
        thread::sleep(Duration::from_millis(5));
    }
    client.pool.close(id, 1000, "");
    assert_eq!(count_rx.recv_timeout(WAIT).unwrap(), accepted, "every accepted send arrived");
}

#[test]
fn dropping_the_pool_ends_its_connections() {
    let (tx, rx) = channel();
    let url = peer(move |mut ws| {
        let mut buf = [0u8; 1];
        let _ = ws.read(); // ends when the client's socket goes
        let _ = ws.get_mut().read(&mut buf);
        tx.send(()).unwrap();
    });
    let mut client = ClientSide::start();
    let id = client.connect(&url, ConnectOptions::default());
    client.opened(id);
    drop(client);
    rx.recv_timeout(WAIT).expect("the peer saw the socket close");
}

#[test]
fn a_peer_that_never_answers_close_is_dropped_after_close_timeout_as_1006() {
    let (tx, rx) = channel::<()>();
    let url = peer(move |ws| {
        let _ = rx.recv(); // holds the socket open, reads nothing, until the test ends
        drop(ws);
    });
    let mut client = ClientSide::with(PoolOptions { close_timeout: Duration::from_millis(300), ..Default::default() });
    let id = client.connect(&url, ConnectOptions::default());
    client.opened(id);
    let closing = Instant::now();
    client.pool.close(id, 1000, "");
    assert_eq!(client.end_of(id), json!([2, id, 1006, ""]), "no close frame came back");
    let waited = closing.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "dropped after {waited:?}");
    drop(tx);
}
