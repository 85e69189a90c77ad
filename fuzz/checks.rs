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

/// `maxPayload` values the frame target picks from (input byte 0, low 3 bits): the edges of the
/// 7-bit and 16-bit length encodings and of control frames, small enough to hit in 4 KiB inputs.
const MAX_PAYLOADS: [usize; 8] = [0, 1, 2, 16, 125, 126, 300, 65536];

/// `MessageReader` fed a byte stream in chunks. Input: byte 0 picks `max_payload` (low 3 bits)
/// and whether permessage-deflate was negotiated (bit 3: RSV1 messages are inflated), byte 1 the
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
    let deflate = config & 8 != 0;
    frame_header(stream, max_payload, deflate);
    let whole = read_stream(stream, max_payload, deflate, &mut || usize::MAX);
    if *chunking == 0 {
        return;
    }
    let chunked = if chunking & 0x80 == 0 {
        read_stream(stream, max_payload, deflate, &mut || usize::from(*chunking))
    } else {
        let span = u32::from(chunking & 0x7F) + 1;
        let mut state = u32::from(*chunking);
        read_stream(stream, max_payload, deflate, &mut || {
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
    deflate: bool,
    next_size: &mut dyn FnMut() -> usize,
) -> (Vec<Got>, Result<Flow, FrameError>) {
    let mut reader = if deflate { MessageReader::with_deflate(max_payload) } else { MessageReader::new(max_payload) };
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
fn frame_header(buf: &[u8], max_payload: usize, deflate: bool) {
    match parse_header(buf, max_payload, deflate) {
        Ok(Some(h)) => {
            assert!(matches!(h.header_len, 6 | 8 | 14), "{h:?}");
            assert!(h.header_len <= buf.len());
            assert!(h.payload_len <= max_payload, "{h:?}");
            assert!(matches!(h.opcode, 0 | 1 | 2 | 8 | 9 | 10), "{h:?}");
            if h.is_control() {
                assert!(h.fin && h.payload_len <= 125, "{h:?}");
            }
            assert!(!h.rsv1 || (deflate && matches!(h.opcode, 1 | 2)), "{h:?}");
            assert_eq!(parse_header(&buf[..h.header_len], max_payload, deflate), Ok(Some(h)));
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&buf[..cut], max_payload, deflate), Ok(None), "prefix of {cut} bytes");
            }
        }
        Ok(None) => assert!(buf.len() < 14, "{} bytes and still no header", buf.len()),
        Err(_) => {}
    }
}

/// `envelope::parse` on any UTF-8 text. For an event: a non-empty name whose raw token
/// `event_json` decodes to it; `data`, `meta` (an object) and `id` (a string or number) are JSON
/// values sliced from the input. For a reply: a string or number id, JSON `data` or an object
/// `error`, never both. Whenever it accepts, the whole text is one JSON object.
///
/// "JSON" is judged by [`json_kind`], a grammar check written here, not by serde_json: the
/// slices end up in `JSON.parse`, which follows the grammar, while `serde_json::Value`
/// refuses numbers beyond f64, unpaired surrogate escapes and nesting deeper than 128, and reads
/// an object keyed `$serde_json::private::RawValue` as the value inside (found by fuzzing).
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match envelope::parse(text) {
        Ok(Frame::Event(e)) => {
            assert!(!e.event.is_empty(), "empty event name: {text:?}");
            assert_eq!(json(text, "event", e.event_json), JsonKind::String);
            let name: String = serde_json::from_str(e.event_json)
                .unwrap_or_else(|err| panic!("event_json {:?} does not decode: {err}", e.event_json));
            assert_eq!(name, e.event, "event_json does not decode to event");
            if let Some(data) = e.data {
                json(text, "data", data.get());
            }
            if let Some(meta) = e.meta {
                assert_eq!(json(text, "meta", meta.get()), JsonKind::Object, "{text:?}");
            }
            if let Some(id) = e.id {
                assert_id(text, id.get());
            }
        }
        Ok(Frame::Reply(r)) => {
            assert_id(text, r.id.get());
            if let Some(data) = r.data {
                json(text, "data", data.get());
            }
            if let Some(error) = r.error {
                assert!(r.data.is_none(), "reply with both data and error: {text:?}");
                assert_eq!(json(text, "error", error.get()), JsonKind::Object, "{text:?}");
            }
        }
        Err(_) => return,
    }
    assert_eq!(json(text, "frame", text), JsonKind::Object);
}

fn assert_id(text: &str, id: &str) {
    let kind = json(text, "id", id);
    assert!(matches!(kind, JsonKind::String | JsonKind::Number), "id {id:?} is a {kind:?}: {text:?}");
}

/// `slice` lies within `text` and is exactly one JSON value.
fn json(text: &str, what: &str, slice: &str) -> JsonKind {
    let range = text.as_bytes().as_ptr_range();
    let slice_range = slice.as_bytes().as_ptr_range();
    assert!(
        range.start <= slice_range.start && slice_range.end <= range.end,
        "{what} {slice:?} is not a slice of the frame"
    );
    json_kind(slice).unwrap_or_else(|| panic!("{what} {slice:?} is not JSON: {text:?}"))
}

/// The type of a JSON value, by its first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Object,
    Array,
    String,
    Number,
    Literal,
}

/// RFC 8259: `text` is one JSON value with optional whitespace around it. Shares no code with
/// serde_json; iterative, so nesting depth is unbounded (as in `JSON.parse`).
pub fn json_kind(text: &str) -> Option<JsonKind> {
    let mut p = Grammar { b: text.as_bytes(), i: 0 };
    p.ws();
    let kind = match p.b.get(p.i)? {
        b'{' => JsonKind::Object,
        b'[' => JsonKind::Array,
        b'"' => JsonKind::String,
        b'-' | b'0'..=b'9' => JsonKind::Number,
        _ => JsonKind::Literal,
    };
    let mut open = Vec::new(); // the closing bracket each open container waits for
    'value: loop {
        p.ws();
        match *p.b.get(p.i)? {
            b'{' => {
                p.i += 1;
                p.ws();
                if !p.eat(b'}') {
                    p.member_key()?;
                    open.push(b'}');
                    continue 'value;
                }
            }
            b'[' => {
                p.i += 1;
                p.ws();
                if !p.eat(b']') {
                    open.push(b']');
                    continue 'value;
                }
            }
            b'"' => p.string()?,
            b'-' | b'0'..=b'9' => p.number()?,
            _ => {
                if !(p.literal(b"true") || p.literal(b"false") || p.literal(b"null")) {
                    return None;
                }
            }
        }
        // After a value: a comma continues the innermost container, its bracket closes it.
        while let Some(&close) = open.last() {
            p.ws();
            if p.eat(b',') {
                if close == b'}' {
                    p.ws();
                    p.member_key()?;
                }
                continue 'value;
            }
            if !p.eat(close) {
                return None;
            }
            open.pop();
        }
        break;
    }
    p.ws();
    (p.i == p.b.len()).then_some(kind)
}

struct Grammar<'a> {
    b: &'a [u8],
    i: usize,
}

impl Grammar<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.b.get(self.i) == Some(&byte);
        self.i += usize::from(hit);
        hit
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let hit = self.b[self.i..].starts_with(word);
        self.i += if hit { word.len() } else { 0 };
        hit
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.i;
        while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    /// `"key"`, whitespace, `:`.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        self.ws();
        self.eat(b':').then_some(())
    }

    /// A string: no raw control characters, only the escapes JSON has (`\uXXXX` may be a lone
    /// surrogate: the grammar allows it). The input is a `&str`, so the bytes are UTF-8.
    fn string(&mut self) -> Option<()> {
        if !self.eat(b'"') {
            return None;
        }
        loop {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            match byte {
                b'"' => return Some(()),
                b'\\' => match *self.b.get(self.i)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                    b'u' => {
                        let hex = self.b.get(self.i + 1..self.i + 5)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 5;
                    }
                    _ => return None,
                },
                0..=0x1F => return None,
                _ => {}
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if !self.eat(b'0') {
            if !matches!(self.b.get(self.i), Some(b'1'..=b'9')) {
                return None;
            }
            self.digits()?;
        }
        if self.eat(b'.') {
            self.digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.digits()?;
        }
        Some(())
    }
}

/// `read_head` on any bytes, then `decide` with one mounted path `/ws`. A complete head is at most
/// the input (and 16 KiB), parses the same from its own bytes, and its shorter prefixes (three
/// sampled) are partial, not rejected or complete: the server reads it in pieces. Statuses are the documented ones and
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
                    let _ = handshake::switching_protocols(&accept_key, None, None);
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
