//! The invariants behind each fuzz target, in one place for both users:
//! - the libFuzzer targets (`fuzz/fuzz_targets/*.rs`, nightly, `cargo fuzz run <target>`),
//! - `cargo test` in the main crate, which replays every file of `fuzz/corpus/<target>/`
//!   through the same function on stable (`fuzz/replay.rs`, a unit-test module of the crate).
//!
//! Each function takes one raw fuzz input and panics when an invariant does not hold.

use ferrosocket::envelope::{self, Frame};
use ferrosocket::protocol::close::is_valid_wire_code;
use ferrosocket::protocol::frame::{parse_header, FrameError};
use ferrosocket::protocol::handshake::{self, Decision, HeadRead, MAX_HEAD_BYTES};
use ferrosocket::protocol::reader::{Flow, Incoming, MessageReader};
use serde_json::Value;

/// `maxPayload` values the frame target picks from (input byte 0, low 3 bits): the edges of the
/// 7-bit and 16-bit length encodings and of control frames, small enough to hit in 4 KiB inputs.
const MAX_PAYLOADS: [usize; 8] = [0, 1, 2, 16, 125, 126, 300, 65536];

/// `MessageReader` fed a byte stream in chunks. Input: byte 0 picks `max_payload`, byte 1 the
/// chunking (0: one read; 1..=127: reads of that size; 128..=255: pseudo-random sizes), the rest
/// is the stream. The sink behaves like the server's: it stops at a close frame, and the caller
/// feeds nothing more after `Stop` or an error.
///
/// Checks: no panic; every message is within `max_payload`, a text is UTF-8 (checked again with
/// `std`), control frames are within 125 bytes and a close code is one a peer may send; nothing
/// follows a close; and the chunking changes nothing: the messages and the final result equal
/// those of the same stream read in one piece.
pub fn frame_reader(data: &[u8]) {
    let [config, chunking, stream @ ..] = data else { return };
    let max_payload = MAX_PAYLOADS[usize::from(config & 7)];
    frame_header(stream, max_payload);
    let whole = read_stream(stream, max_payload, &mut || usize::MAX);
    if *chunking == 0 {
        return;
    }
    let chunked = if chunking & 0x80 == 0 {
        read_stream(stream, max_payload, &mut || usize::from(*chunking))
    } else {
        let span = u32::from(chunking & 0x7F) + 1;
        let mut state = u32::from(*chunking);
        read_stream(stream, max_payload, &mut || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + ((state >> 16) % span) as usize
        })
    };
    assert_eq!(whole, chunked, "chunking changed the outcome (max_payload {max_payload})");
}

/// What the reader delivered, owned so two runs can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

fn read_stream(
    stream: &[u8],
    max_payload: usize,
    next_size: &mut dyn FnMut() -> usize,
) -> (Vec<Got>, Result<Flow, FrameError>) {
    let mut reader = MessageReader::new(max_payload);
    let mut got = Vec::new();
    let mut end = Ok(Flow::Continue);
    let mut rest = stream;
    while !rest.is_empty() {
        let n = next_size().clamp(1, rest.len());
        let mut chunk = rest[..n].to_vec();
        rest = &rest[n..];
        let mut closed = false;
        end = reader.feed(&mut chunk, &mut |message| {
            assert!(!closed, "{message:?} delivered after a close frame");
            let message = check_incoming(message, max_payload);
            closed = matches!(message, Got::Close(..));
            got.push(message);
            if closed {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        assert_eq!(end == Ok(Flow::Stop), closed, "Stop is returned exactly after a close frame");
        if end != Ok(Flow::Continue) {
            break;
        }
    }
    (got, end)
}

fn check_incoming(message: Incoming<'_>, max_payload: usize) -> Got {
    let len = match &message {
        Incoming::Text(t) => t.len(),
        Incoming::Binary(b) | Incoming::Ping(b) | Incoming::Pong(b) => b.len(),
        Incoming::Close(1005, _) => 0, // no status: the payload was empty
        Incoming::Close(_, reason) => 2 + reason.len(),
    };
    assert!(len <= max_payload, "{len}-byte message over max_payload {max_payload}");
    match message {
        Incoming::Text(t) => {
            assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "text is not UTF-8");
            Got::Text(t.to_owned())
        }
        Incoming::Binary(b) => Got::Binary(b.to_vec()),
        Incoming::Ping(p) => {
            assert!(p.len() <= 125, "ping over 125 bytes");
            Got::Ping(p.to_vec())
        }
        Incoming::Pong(p) => {
            assert!(p.len() <= 125, "pong over 125 bytes");
            Got::Pong(p.to_vec())
        }
        Incoming::Close(code, reason) => {
            assert!(
                is_valid_wire_code(code) || (code == 1005 && reason.is_empty()),
                "close code {code} a peer may not send"
            );
            assert!(2 + reason.len() <= 125, "close reason over 123 bytes");
            assert!(std::str::from_utf8(reason.as_bytes()).is_ok(), "close reason is not UTF-8");
            Got::Close(code, reason.to_owned())
        }
    }
}

/// `parse_header` on its own: a header it returns is well formed and is all it read (its own
/// bytes give the same header, any shorter prefix asks for more); 14 bytes always decide.
fn frame_header(buf: &[u8], max_payload: usize) {
    match parse_header(buf, max_payload) {
        Ok(Some(h)) => {
            assert!(matches!(h.header_len, 6 | 8 | 14), "{h:?}");
            assert!(h.header_len <= buf.len());
            assert!(h.payload_len <= max_payload, "{h:?}");
            assert!(matches!(h.opcode, 0 | 1 | 2 | 8 | 9 | 10), "{h:?}");
            if h.is_control() {
                assert!(h.fin && h.payload_len <= 125, "{h:?}");
            }
            assert_eq!(parse_header(&buf[..h.header_len], max_payload), Ok(Some(h)));
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&buf[..cut], max_payload), Ok(None), "prefix of {cut} bytes");
            }
        }
        Ok(None) => assert!(buf.len() < 14, "{} bytes and still no header", buf.len()),
        Err(_) => {}
    }
}

/// `envelope::parse` on any UTF-8 text. For an event: a non-empty name whose raw token
/// `event_json` decodes to it; `data`, `meta` (an object) and `id` (a string or number) are JSON
/// slices of the input. For a reply: a string or number id, JSON `data` or an object `error`,
/// never both. Whenever it accepts, the whole text is one JSON object.
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match envelope::parse(text) {
        Ok(Frame::Event(e)) => {
            assert!(!e.event.is_empty(), "empty event name: {text:?}");
            assert_slice_of(text, e.event_json);
            let name: String = serde_json::from_str(e.event_json)
                .unwrap_or_else(|err| panic!("event_json {:?} is not a JSON string: {err}", e.event_json));
            assert_eq!(name, e.event, "event_json does not decode to event");
            if let Some(data) = e.data {
                json(text, "data", data.get());
            }
            if let Some(meta) = e.meta {
                assert!(matches!(json(text, "meta", meta.get()), None | Some(Value::Object(_))), "meta is not an object: {text:?}");
            }
            if let Some(id) = e.id {
                assert_id(text, id.get());
            }
            json(text, "frame", text);
        }
        Ok(Frame::Reply(r)) => {
            assert_id(text, r.id.get());
            if let Some(data) = r.data {
                json(text, "data", data.get());
            }
            if let Some(error) = r.error {
                assert!(r.data.is_none(), "reply with both data and error: {text:?}");
                assert!(matches!(json(text, "error", error.get()), None | Some(Value::Object(_))), "error is not an object: {text:?}");
            }
            json(text, "frame", text);
        }
        Err(_) => {}
    }
}

fn assert_id(text: &str, id: &str) {
    assert!(
        matches!(json(text, "id", id), None | Some(Value::String(_) | Value::Number(_))),
        "id {id:?} is not a string or number: {text:?}"
    );
}

fn assert_slice_of(text: &str, part: &str) {
    let range = text.as_bytes().as_ptr_range();
    let part_range = part.as_bytes().as_ptr_range();
    assert!(range.start <= part_range.start && part_range.end <= range.end, "{part:?} is not a slice of the frame");
}

/// `slice` must be exactly one JSON value, taken from `text`. The oracle is `serde_json::Value`,
/// except for what the JSON grammar (and `JSON.parse`, where these slices end up) allows but
/// `Value` refuses: numbers beyond f64, unpaired UTF-16 surrogate escapes, nesting deeper than
/// 128, and objects keyed `$serde_json::private::RawValue` (serde_json's raw-value marker,
/// found by the fuzzer). Those must still pass a grammar-only parse of the slice alone (`None`).
fn json(text: &str, what: &str, slice: &str) -> Option<Value> {
    assert_slice_of(text, slice);
    match serde_json::from_str::<Value>(slice) {
        Ok(value) => Some(value),
        Err(err) => {
            let message = err.to_string();
            let tolerated = ["number out of range", "surrogate", "end of hex escape", "recursion limit", "raw value"];
            assert!(tolerated.iter().any(|t| message.contains(t)), "{what} {slice:?} is not JSON ({err}): {text:?}");
            let grammar = serde_json::from_str::<serde::de::IgnoredAny>(slice);
            assert!(grammar.is_ok(), "{what} {slice:?} is not JSON ({err}): {text:?}");
            None
        }
    }
}

/// `read_head` on any bytes, then `decide` with one mounted path `/ws`. A complete head is at most
/// the input (and 16 KiB), parses the same from its own bytes, and no shorter prefix of it is
/// rejected or complete: the server reads it in pieces. Statuses are the documented ones and
/// an accepted upgrade is a GET of `/ws` with a 20-byte SHA-1 accept key.
pub fn upgrade_head(data: &[u8]) {
    match handshake::read_head(data) {
        HeadRead::Complete(req, len) => {
            assert!(len <= data.len() && len <= MAX_HEAD_BYTES, "head of {len} bytes from {}", data.len());
            assert!(matches!(handshake::read_head(&data[..len]), HeadRead::Complete(_, l) if l == len));
            for cut in [len - 1, len.saturating_sub(2), len / 2] {
                let prefix = handshake::read_head(&data[..cut]);
                assert!(matches!(prefix, HeadRead::Partial), "prefix of {cut} bytes: {prefix:?}");
            }
            assert!(!req.path.contains('?'));
            match handshake::decide(&req, |p| (p == "/ws").then_some(0)) {
                Decision::Accept { route, accept_key } => {
                    assert_eq!((route, req.path.as_str(), req.method.as_str()), (0, "/ws", "GET"));
                    assert_eq!(accept_key.len(), 28, "{accept_key:?}");
                    let _ = handshake::switching_protocols(&accept_key, None);
                }
                Decision::Reject(status) => {
                    assert!(matches!(status, 400 | 404 | 426), "status {status}");
                    let _ = handshake::error_response(status, None);
                }
            }
        }
        HeadRead::Partial => assert!(data.len() < MAX_HEAD_BYTES),
        HeadRead::Reject(status) => assert!(matches!(status, 400 | 431), "status {status}"),
    }
}
