//! The runtime driven over real sockets, without Node (in the style of mini-redis's
//! `tests/server.rs`): a `Server` listens on 127.0.0.1, raw TCP clients speak WebSocket to it, and
//! the test plays the JS side by taking batches, acknowledging and publishing. Covers the upgrade,
//! the connection drivers and sessions, fan-out, flow control and shutdown.
//!
//! Built without the `napi-addon` feature (an executable cannot link N-API symbols), which is the
//! default; `npm run build` turns it on.

use ferrosocket::config::{Config, NamespaceConfig};
use ferrosocket::fanout::RemoteIds;
use ferrosocket::metrics::Target;
use ferrosocket::registry::Audience;
use ferrosocket::server::Server;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

const WAIT: Duration = Duration::from_secs(5);

/// A running server plus what JS would see: every batch entry, in order.
struct Harness {
    server: Arc<Server>,
    port: u16,
    wakes: Receiver<()>,
    entries: Mutex<Vec<Value>>,
}

impl Harness {
    fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let (server, port, wakes) = common::start_server(2, configure);
        Self { server: Arc::new(server), port, wakes, entries: Mutex::new(Vec::new()) }
    }

    /// Waits for a batch entry matching `pred` (taking batches as JS would), and returns it.
    fn wait_entry(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let mut entries = self.entries.lock().unwrap();
                if let Some(i) = entries.iter().position(&pred) {
                    return entries.remove(i);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}; entries so far: {:?}", self.entries.lock().unwrap());
            let _ = self.wakes.recv_timeout(left.min(Duration::from_millis(50)));
            let taken = self.server.take_batch();
            if !taken.json.is_empty() {
                let batch: Vec<Value> = serde_json::from_str(&taken.json).expect("a batch is a JSON array");
                self.entries.lock().unwrap().extend(batch);
            }
        }
    }

    /// Asserts that no entry matching `pred` arrives within `window` (after a positive control).
    fn expect_no_entry(&self, window: Duration, pred: impl Fn(&Value) -> bool) {
        let until = Instant::now() + window;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let _ = self.wakes.recv_timeout(left);
            let taken = self.server.take_batch();
            if !taken.json.is_empty() {
                let batch: Vec<Value> = serde_json::from_str(&taken.json).unwrap();
                assert!(!batch.iter().any(&pred), "unexpected entry in {batch:?}");
                self.entries.lock().unwrap().extend(batch);
            }
        }
    }

    fn opened(&self) -> u64 {
        self.wait_entry("an open entry", |e| e[0] == 0)[1].as_u64().unwrap()
    }
}

/// A WebSocket client over a blocking socket: masked frames out, whole frames in.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn handshake_request(port: u16, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

impl Client {
    fn connect(port: u16) -> Self {
        let (client, head) = Self::try_connect(port, "/ws");
        assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
        client
    }

    /// Sends the upgrade request; returns the client and the response head.
    fn try_connect(port: u16, path: &str) -> (Self, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(handshake_request(port, path).as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).expect("reads the response head");
            assert!(n > 0, "closed before the response head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        (Self { stream, buf }, head)
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.stream.write_all(&masked(opcode, payload)).unwrap();
    }

    fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes());
    }

    /// The next frame from the server: (opcode, payload).
    fn next_frame(&mut self) -> (u8, Vec<u8>) {
        let mut chunk = [0u8; 4096];
        loop {
            if self.buf.len() >= 2 {
                let (len, off) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10),
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= off + len {
                    assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[off..off + len].to_vec();
                    self.buf.drain(..off + len);
                    return (opcode, payload);
                }
            }
            let n = self.stream.read(&mut chunk).expect("a frame within the deadline");
            assert!(n > 0, "the server closed the TCP connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn next_text(&mut self) -> Value {
        loop {
            let (opcode, payload) = self.next_frame();
            if opcode == 0x1 {
                return serde_json::from_slice(&payload).expect("JSON text");
            }
        }
    }

    /// Reads until the server ends the TCP connection; true if it did within the deadline.
    fn ends(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn a_message_reaches_the_batch_and_a_reply_reaches_the_client() {
    let h = Harness::start(|_| {});
    let mut client = Client::connect(h.port);
    let id = h.opened();
    client.send_text(r#"{"event":"hello","data":{"n":1}}"#);
    let entry = h.wait_entry("the message", |e| e[0] == 1);
    assert_eq!((entry[1].as_u64(), &entry[2], &entry[3]), (Some(id), &json!("hello"), &json!({"n": 1})));
    assert!(entry[5].as_u64().unwrap() > 0, "the entry carries what it was charged");
    assert!(h.server.send_to(id, br#"{"event":"hi","data":2}"#, false));
    assert_eq!(client.next_text(), json!({"event": "hi", "data": 2}));
}

#[test]
fn upgrades_to_unmounted_paths_are_refused_404() {
    let h = Harness::start(|_| {});
    let (_, head) = Client::try_connect(h.port, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn a_publish_reaches_every_room_member_once_and_nobody_else() {
    let h = Harness::start(|_| {});
    let mut members: Vec<(Client, u64)> = (0..3).map(|_| {
        let client = Client::connect(h.port);
        (client, h.opened())
    }).collect();
    let mut outsider = Client::connect(h.port);
    let outsider_id = h.opened();
    for (_, id) in &members {
        assert!(h.server.join(*id, "r"));
    }
    let rooms = ["r".to_string()];
    let reached = h.server.publish(Target::Room, &Audience { rooms: &rooms, ..Default::default() }, &RemoteIds::NONE, br#"{"event":"room","data":1}"#);
    assert_eq!(reached, 3);
    for (client, _) in &mut members {
        assert_eq!(client.next_text(), json!({"event": "room", "data": 1}));
    }
    // The outsider's next message is the one sent to it directly, not the room's.
    assert!(h.server.send_to(outsider_id, br#"{"event":"direct","data":0}"#, false));
    assert_eq!(outsider.next_text(), json!({"event": "direct", "data": 0}));
}

#[test]
fn the_peer_closing_completes_the_handshake_and_reports_its_code() {
    let h = Harness::start(|_| {});
    let mut client = Client::connect(h.port);
    let id = h.opened();
    client.send_frame(0x8, &[0x03, 0xe8]);
    let (opcode, payload) = client.next_frame();
    assert_eq!((opcode, close_code(&payload)), (0x8, 1000));
    assert!(client.ends(), "the server closes TCP after the handshake");
    let entry = h.wait_entry("the close", |e| e[0] == 2);
    assert_eq!(entry, json!([2, id, 1000, "", 0]));
}

#[test]
fn a_protocol_violation_closes_1002_and_only_that_connection() {
    let h = Harness::start(|_| {});
    let mut good = Client::connect(h.port);
    let good_id = h.opened();
    let mut bad = Client::connect(h.port);
    h.opened();
    bad.stream.write_all(&[0x81, 0x05, b'h', b'e', b'l', b'l', b'o']).unwrap(); // unmasked
    let (opcode, payload) = bad.next_frame();
    assert_eq!((opcode, close_code(&payload)), (0x8, 1002));
    assert!(h.server.send_to(good_id, br#"{"event":"still","data":true}"#, false));
    assert_eq!(good.next_text(), json!({"event": "still", "data": true}));
}

#[test]
fn reading_pauses_at_max_inflight_and_resumes_on_ack() {
    let h = Harness::start(|c| c.max_inflight_messages = 3);
    let mut client = Client::connect(h.port);
    let id = h.opened();
    // Ten messages in one write arrive in one read: past the window of 3, so reading pauses.
    let burst: Vec<u8> = (0..10).flat_map(|i| masked(0x1, format!(r#"{{"event":"n","data":{i}}}"#).as_bytes())).collect();
    client.stream.write_all(&burst).unwrap();
    h.wait_entry("the tenth message", |e| e[0] == 1 && e[3] == 9);
    client.send_text(r#"{"event":"n","data":"after"}"#);
    h.expect_no_entry(Duration::from_millis(300), |e| e[3] == "after");
    h.server.ack(std::iter::once((id, 11)), 0);
    h.wait_entry("the message sent after the pause", |e| e[0] == 1 && e[3] == "after");
}

#[test]
fn a_peer_that_leaves_while_reading_is_paused_is_given_up_after_close_timeout() {
    let h = Harness::start(|c| {
        c.max_inflight_messages = 2;
        c.close_timeout = Duration::from_millis(300);
        c.heartbeat_interval = None;
    });
    let mut client = Client::connect(h.port);
    let id = h.opened();
    for i in 0..20 {
        client.send_text(&format!(r#"{{"event":"n","data":{i}}}"#));
    }
    h.wait_entry("a message", |e| e[0] == 1);
    let left = Instant::now();
    client.stream.shutdown(std::net::Shutdown::Write).unwrap(); // FIN, never acked
    let entry = h.wait_entry("the close", |e| e[0] == 2);
    assert_eq!((entry[1].as_u64(), &entry[2], &entry[4]), (Some(id), &json!(1006), &json!(1)), "abandoned: JS drops its queue");
    let waited = left.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "given up after {waited:?}");
}

#[test]
fn shutdown_closes_everyone_1001_and_reports_completion_last() {
    let h = Harness::start(|_| {});
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(h.port)).collect();
    for _ in 0..3 {
        h.opened();
    }
    h.server.shutdown(1001, "bye", Duration::from_secs(2));
    for client in &mut clients {
        let (opcode, payload) = client.next_frame();
        assert_eq!((opcode, close_code(&payload), &payload[2..]), (0x8, 1001, &b"bye"[..]));
        client.send_frame(0x8, &payload);
    }
    h.wait_entry("shutdown finished", |e| e[0] == 3);
    // Every close entry was already delivered (in this batch or an earlier one).
    let closes = h.entries.lock().unwrap().iter().filter(|e| e[0] == 2).count();
    assert_eq!(closes, 3, "all three onClose reports precede the shutdown report");
    assert!(TcpStream::connect(("127.0.0.1", h.port)).is_err(), "the port is released");
}

#[test]
fn namespaces_route_by_path_and_contracts_refuse_unknown_events_1008() {
    let h = Harness::start(|c| {
        c.namespaces.push(NamespaceConfig {
            name: "game".into(),
            path: "/ws/game".into(),
            events: Some(["move".to_string()].into_iter().collect()),
            requests: Some(Default::default()),
            raw: false,
        });
    });
    let (mut client, head) = Client::try_connect(h.port, "/ws/game");
    assert!(head.starts_with("HTTP/1.1 101"));
    let open = h.wait_entry("the open", |e| e[0] == 0);
    assert_eq!(open[2], json!(1), "namespace index of /ws/game");
    client.send_text(r#"{"event":"move","data":1}"#);
    h.wait_entry("the contract event", |e| e[0] == 1 && e[2] == "move");
    client.send_text(r#"{"event":"jump","data":1}"#);
    let (opcode, payload) = client.next_frame();
    assert_eq!((opcode, close_code(&payload)), (0x8, 1008));
}

#[test]
fn inline_io_lets_the_js_thread_read_every_message_once_in_order() {
    // One I/O thread and the test thread as "JS": both run the driver, whoever gets it.
    let (server, port, _wakes) = common::start_server(1, |c| c.inline_io = true);
    assert!(server.inline_io());
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    const N: usize = 400;
    // Each client writes its messages one frame per write, as a browser would.
    let writers: Vec<_> = clients
        .iter_mut()
        .map(|c| c.stream.try_clone().unwrap())
        .map(|mut stream| {
            std::thread::spawn(move || {
                for i in 0..N {
                    stream.write_all(&masked(0x1, format!(r#"{{"event":"n","data":{i}}}"#).as_bytes())).unwrap();
                }
            })
        })
        .collect();
    let mut seen: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    let (mut assisted, deadline) = (0, Instant::now() + WAIT);
    while seen.values().map(Vec::len).sum::<usize>() < 3 * N {
        assert!(Instant::now() < deadline, "timed out; per connection: {:?}", seen.values().map(Vec::len).collect::<Vec<_>>());
        // What JS does after each batch (assist), and when woken (take).
        let from_assist = server.assist_io();
        assisted += usize::from(!from_assist.json.is_empty());
        for json in [from_assist.json, server.take_batch().json] {
            if json.is_empty() {
                continue;
            }
            let batch: Vec<Value> = serde_json::from_str(&json).unwrap();
            let mut acks = Vec::new();
            for e in batch.iter().filter(|e| e[0] == 1) {
                let id = e[1].as_u64().unwrap();
                seen.entry(id).or_default().push(e[3].as_u64().unwrap());
                acks.push((id, 1));
            }
            server.ack(acks.into_iter(), 0);
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(seen.len(), 3);
    for got in seen.values() {
        assert_eq!(*got, (0..N as u64).collect::<Vec<_>>(), "once each, in order");
    }
    assert!(assisted > 0, "the assisting thread read some of them itself");
    // Replies still go out from this thread.
    let id = *seen.keys().next().unwrap();
    assert!(server.send_to(id, br#"{"event":"done"}"#, false));
    let client = clients.iter_mut().find_map(|c| {
        c.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut probe = [0u8; 2];
        (c.stream.peek(&mut probe).is_ok_and(|n| n == 2)).then_some(c)
    });
    assert_eq!(client.expect("the addressed client got a frame").next_text(), json!({"event": "done"}));
}
