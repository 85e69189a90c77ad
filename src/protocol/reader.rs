//! Turns the byte stream of one connection into whole messages and control frames.
//!
//! Bytes are parsed in place from whatever buffer the caller read into (a per-thread scratch
//! buffer in the server), so an idle connection owns no read buffer at all: only the tail of a
//! frame that has not fully arrived yet is copied (into `Held::partial`), and only a fragmented
//! message in progress is kept (`Held::fragments`).
//!
//! Bounds on what a peer can make one connection hold: `partial` is at most one frame header plus
//! `max_payload` (a longer frame is refused from its header), `fragments` at most `max_payload`,
//! and one message at most [`max_fragments`] frames (empty continuation frames cost no memory, but
//! an endless message of them would cost CPU for nothing).

use super::close::parse_close_payload;
use super::deflate::{self, InflateError};
use super::frame::{
    apply_mask, parse_header, FrameError, FrameHeader, OP_BINARY, OP_CLOSE, OP_CONTINUATION,
    OP_PING, OP_PONG, OP_TEXT,
};

/// Fewest fragments a message may always have, whatever `max_payload` is.
const MIN_FRAGMENT_CAP: usize = 1024;
/// Above the minimum, a message may have one fragment per this many bytes of `max_payload`.
const BYTES_PER_FRAGMENT: usize = 64;

/// Most frames one message may arrive in: `max(1024, max_payload / 64)` (1024 at the default
/// 64 KiB; Autobahn's 4 MiB messages in 64-byte fragments need a `maxPayload` of 4 MiB or more).
pub fn max_fragments(max_payload: usize) -> usize {
    MIN_FRAGMENT_CAP.max(max_payload / BYTES_PER_FRAGMENT)
}

/// One thing the peer said.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A complete text message (checked UTF-8).
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The peer's close frame (`1005` when it carried no code).
    Close(u16, &'a str),
}

/// Whether the caller wants more frames from the current input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What a connection holds between reads: only while a frame or a fragmented message is
/// incomplete (boxed, so an idle connection's reader is two words).
#[derive(Debug, Default)]
struct Held {
    /// Start of a frame whose bytes have not all arrived yet.
    partial: Vec<u8>,
    /// Payload of a fragmented message so far.
    fragments: Vec<u8>,
    /// Opcode of the fragmented message in progress, `OP_CONTINUATION` when none.
    fragment_opcode: u8,
    /// For fragmented text: prefix of `fragments` known to be valid UTF-8 (fail fast).
    utf8_checked: usize,
    /// Frames of the fragmented message so far (bounded by [`max_fragments`]).
    fragment_count: usize,
    /// The fragmented message is compressed (its first frame had RSV1): `fragments` holds
    /// deflate data, inflated (and checked) once the message is complete.
    compressed: bool,
}

impl Held {
    fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.fragments.is_empty() && self.fragment_opcode == OP_CONTINUATION
    }
}

#[derive(Debug, Default)]
pub struct MessageReader {
    held: Option<Box<Held>>,
    max_payload: usize,
    /// permessage-deflate was negotiated: RSV1 messages are accepted and inflated.
    deflate: bool,
}

impl MessageReader {
    pub fn new(max_payload: usize) -> Self {
        Self { max_payload, held: None, deflate: false }
    }

    /// A reader for a connection that negotiated permessage-deflate. A compressed message's
    /// inflated size counts against `max_payload` too, as it is produced.
    pub fn with_deflate(max_payload: usize) -> Self {
        Self { max_payload, held: None, deflate: true }
    }

    /// True when no partial frame or message is held (the connection owns no read memory).
    pub fn is_idle(&self) -> bool {
        self.held.is_none()
    }

    fn held(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Box::default)
    }

    fn fragment_opcode(&self) -> u8 {
        self.held.as_ref().map_or(OP_CONTINUATION, |h| h.fragment_opcode)
    }

    fn fragments_len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.fragments.len())
    }

    /// Feeds freshly read bytes (unmasked in place) and hands every complete message or control
    /// frame to `sink` in order. Stops early when `sink` returns [`Flow::Stop`] or after a close
    /// frame; an error means the stream can no longer be trusted and must be failed.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        sink: &mut dyn FnMut(Incoming<'_>) -> Flow,
    ) -> Result<Flow, FrameError> {
        let partial = self.held.as_mut().map(|h| std::mem::take(&mut h.partial)).unwrap_or_default();
        let flow = if partial.is_empty() {
            let (used, flow) = self.process(input, sink)?;
            if flow == Flow::Continue && used < input.len() {
                self.held().partial.extend_from_slice(&input[used..]);
            }
            flow
        } else {
            let mut buf = partial;
            buf.extend_from_slice(input);
            let (used, flow) = self.process(&mut buf, sink)?;
            if flow == Flow::Continue && used < buf.len() {
                buf.drain(..used);
                self.held().partial = buf;
            }
            flow
        };
        if self.held.as_ref().is_some_and(|h| h.is_idle()) {
            self.held = None;
        }
        Ok(flow)
    }

    fn process(
        &mut self,
        buf: &mut [u8],
        sink: &mut dyn FnMut(Incoming<'_>) -> Flow,
    ) -> Result<(usize, Flow), FrameError> {
        let mut pos = 0;
        while let Some(header) = parse_header(&buf[pos..], self.max_payload, self.deflate)? {
            if header.frame_len() > buf.len() - pos {
                // A continuation that cannot fit the message fails before its payload is
                // buffered. Only a continuation: any other data frame here is a protocol error,
                // reported once complete, as when the same bytes arrive in one read.
                if header.opcode == OP_CONTINUATION
                    && self.fragments_len() + header.payload_len > self.max_payload
                {
                    return Err(FrameError::TooLarge);
                }
                break;
            }
            let payload = &mut buf[pos + header.header_len..pos + header.frame_len()];
            apply_mask(payload, header.mask, 0);
            pos += header.frame_len();
            if self.on_frame(header, payload, sink)? == Flow::Stop {
                return Ok((pos, Flow::Stop));
            }
        }
        Ok((pos, Flow::Continue))
    }

    fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        sink: &mut dyn FnMut(Incoming<'_>) -> Flow,
    ) -> Result<Flow, FrameError> {
        match header.opcode {
            OP_TEXT | OP_BINARY => {
                if self.fragment_opcode() != OP_CONTINUATION {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                if header.fin {
                    return deliver(header.opcode, payload, header.rsv1, self.max_payload, sink);
                }
                let held = self.held();
                held.fragment_opcode = header.opcode;
                held.compressed = header.rsv1;
                self.append_fragment(payload)?;
                Ok(Flow::Continue)
            }
            OP_CONTINUATION => {
                if self.fragment_opcode() == OP_CONTINUATION {
                    return Err(FrameError::Protocol("continuation without a message"));
                }
                self.append_fragment(payload)?;
                if !header.fin {
                    return Ok(Flow::Continue);
                }
                let max_payload = self.max_payload;
                let held = self.held();
                let opcode = std::mem::replace(&mut held.fragment_opcode, OP_CONTINUATION);
                let message = std::mem::take(&mut held.fragments);
                let compressed = std::mem::take(&mut held.compressed);
                held.utf8_checked = 0;
                held.fragment_count = 0;
                deliver(opcode, &message, compressed, max_payload, sink)
            }
            OP_PING => Ok(sink(Incoming::Ping(payload))),
            OP_PONG => Ok(sink(Incoming::Pong(payload))),
            OP_CLOSE => {
                let (code, reason) = parse_close_payload(payload)?;
                sink(Incoming::Close(code, reason));
                Ok(Flow::Stop)
            }
            _ => Err(FrameError::Protocol("reserved opcode")),
        }
    }

    fn append_fragment(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        let max_payload = self.max_payload;
        let held = self.held();
        if held.fragments.len() + payload.len() > max_payload {
            return Err(FrameError::TooLarge);
        }
        held.fragment_count += 1;
        if held.fragment_count > max_fragments(max_payload) {
            return Err(FrameError::TooFragmented);
        }
        held.fragments.extend_from_slice(payload);
        if held.fragment_opcode == OP_TEXT && !held.compressed {
            // Fail fast: reject as soon as the bytes so far cannot start valid UTF-8.
            match simdutf8::compat::from_utf8(&held.fragments[held.utf8_checked..]) {
                Ok(_) => held.utf8_checked = held.fragments.len(),
                Err(e) if e.error_len().is_none() => held.utf8_checked += e.valid_up_to(),
                Err(_) => return Err(FrameError::InvalidUtf8),
            }
        }
        Ok(())
    }
}

/// Hands a complete message to `sink`; a compressed one is inflated first (at most `max_payload`
/// bytes of output, on this thread's inflater).
fn deliver(
    opcode: u8,
    payload: &[u8],
    compressed: bool,
    max_payload: usize,
    sink: &mut dyn FnMut(Incoming<'_>) -> Flow,
) -> Result<Flow, FrameError> {
    if !compressed {
        return deliver_plain(opcode, payload, sink);
    }
    match deflate::inflate(payload, max_payload, |inflated| deliver_plain(opcode, inflated, sink)) {
        Ok(result) => result,
        Err(InflateError::TooLarge) => Err(FrameError::TooLarge),
        Err(InflateError::Invalid) => Err(FrameError::InvalidCompressed),
    }
}

fn deliver_plain(
    opcode: u8,
    payload: &[u8],
    sink: &mut dyn FnMut(Incoming<'_>) -> Flow,
) -> Result<Flow, FrameError> {
    if opcode == OP_TEXT {
        let text = simdutf8::basic::from_utf8(payload).map_err(|_| FrameError::InvalidUtf8)?;
        Ok(sink(Incoming::Text(text)))
    } else {
        Ok(sink(Incoming::Binary(payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut v = vec![b0];
        if payload.len() < 126 {
            v.push(0x80 | payload.len() as u8);
        } else {
            v.push(0x80 | 126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        apply_mask(&mut p, mask, 0);
        v.extend(p);
        v
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(u16, String),
    }

    fn run(reader: &mut MessageReader, bytes: &[u8]) -> (Vec<Got>, Result<Flow, FrameError>) {
        let mut got = Vec::new();
        let mut input = bytes.to_vec();
        let r = reader.feed(&mut input, &mut |m| {
            got.push(match m {
                Incoming::Text(t) => Got::Text(t.to_string()),
                Incoming::Binary(b) => Got::Binary(b.to_vec()),
                Incoming::Ping(p) => Got::Ping(p.to_vec()),
                Incoming::Pong(_) => Got::Pong,
                Incoming::Close(c, r) => Got::Close(c, r.to_string()),
            });
            Flow::Continue
        });
        (got, r)
    }

    #[test]
    fn whole_messages_in_one_read() {
        let mut r = MessageReader::new(1024);
        let mut bytes = frame(0x81, b"hello");
        bytes.extend(frame(0x82, &[1, 2, 3]));
        let (got, res) = run(&mut r, &bytes);
        assert_eq!(res, Ok(Flow::Continue));
        assert_eq!(got, vec![Got::Text("hello".into()), Got::Binary(vec![1, 2, 3])]);
        assert!(r.is_idle());
    }

    #[test]
    fn compressed_messages_are_inflated_whole_or_fragmented() {
        use crate::protocol::deflate::compress;
        let text = "{\"event\":\"chat\",\"data\":\"hello hello hello hello\"}".repeat(20);
        let packed = compress(text.as_bytes(), 6, 15);
        let mut r = MessageReader::with_deflate(4096);
        let mut bytes = frame(0xC1, &packed);
        // The same message in three fragments: RSV1 on the first only.
        let (a, rest) = packed.split_at(packed.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        bytes.extend(frame(0x41, a));
        bytes.extend(frame(0x89, b"ping"));
        bytes.extend(frame(0x00, b));
        bytes.extend(frame(0x80, c));
        bytes.extend(frame(0x81, b"plain"));
        let (got, res) = run(&mut r, &bytes);
        assert_eq!(res, Ok(Flow::Continue));
        assert_eq!(got, vec![Got::Text(text.clone()), Got::Ping(b"ping".to_vec()), Got::Text(text), Got::Text("plain".into())]);
        assert!(r.is_idle());
    }

    #[test]
    fn compressed_input_is_bounded_checked_and_only_with_deflate() {
        use crate::protocol::deflate::compress;
        let bomb = compress(&vec![b'a'; 100_000], 9, 15);
        assert!(bomb.len() < 1024);
        assert_eq!(run(&mut MessageReader::with_deflate(1024), &frame(0xC1, &bomb)).1, Err(FrameError::TooLarge));
        assert_eq!(run(&mut MessageReader::with_deflate(1024), &frame(0xC1, &[0xff; 8])).1, Err(FrameError::InvalidCompressed));
        let not_utf8 = compress(&[0xff, 0xfe], 1, 15);
        assert_eq!(run(&mut MessageReader::with_deflate(1024), &frame(0xC1, &not_utf8)).1, Err(FrameError::InvalidUtf8));
        assert!(matches!(run(&mut MessageReader::new(1024), &frame(0xC1, &bomb)).1, Err(FrameError::Protocol(_))));
    }

    #[test]
    fn byte_by_byte_delivery_reassembles() {
        let mut r = MessageReader::new(1024);
        let msg = "x".repeat(300);
        let bytes = frame(0x81, msg.as_bytes());
        let mut all = Vec::new();
        for b in &bytes {
            let (got, res) = run(&mut r, std::slice::from_ref(b));
            assert_eq!(res, Ok(Flow::Continue));
            all.extend(got);
        }
        assert_eq!(all, vec![Got::Text(msg)]);
        assert!(r.is_idle());
    }

    #[test]
    fn fragments_with_interleaved_ping() {
        let mut r = MessageReader::new(1024);
        let mut bytes = frame(0x01, b"fra");
        bytes.extend(frame(0x89, b"p"));
        bytes.extend(frame(0x00, b"gme"));
        bytes.extend(frame(0x80, b"nted"));
        let (got, _) = run(&mut r, &bytes);
        assert_eq!(got, vec![Got::Ping(b"p".to_vec()), Got::Text("fragmented".into())]);
        assert!(r.is_idle());
    }

    #[test]
    fn fragmentation_errors() {
        let mut r = MessageReader::new(1024);
        assert!(matches!(run(&mut r, &frame(0x80, b"x")).1, Err(FrameError::Protocol(_))));
        let mut r = MessageReader::new(1024);
        let mut bytes = frame(0x01, b"a");
        bytes.extend(frame(0x81, b"b"));
        assert!(matches!(run(&mut r, &bytes).1, Err(FrameError::Protocol(_))));
    }

    #[test]
    fn utf8_fails_fast_across_fragments_but_allows_split_chars() {
        let euro = "€".as_bytes(); // 3 bytes split across two fragments is fine
        let mut r = MessageReader::new(1024);
        let mut bytes = frame(0x01, &euro[..1]);
        bytes.extend(frame(0x80, &euro[1..]));
        assert_eq!(run(&mut r, &bytes).0, vec![Got::Text("€".into())]);

        let mut r = MessageReader::new(1024);
        let (_, res) = run(&mut r, &frame(0x01, &[0xce, 0xba, 0xff]));
        assert_eq!(res, Err(FrameError::InvalidUtf8), "rejected before the final fragment");
        let mut r = MessageReader::new(1024);
        assert_eq!(run(&mut r, &frame(0x81, &[0xc0, 0x80])).1, Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn too_large_single_and_fragmented() {
        let mut r = MessageReader::new(10);
        assert_eq!(run(&mut r, &frame(0x81, &[b'a'; 11])).1, Err(FrameError::TooLarge));
        let mut r = MessageReader::new(10);
        let mut bytes = frame(0x01, &[b'a'; 6]);
        bytes.extend(frame(0x80, &[b'a'; 6]));
        assert_eq!(run(&mut r, &bytes).1, Err(FrameError::TooLarge));
    }

    #[test]
    fn fragment_count_is_capped() {
        assert_eq!(max_fragments(65536), 1024);
        assert_eq!(max_fragments(64 << 20), 1 << 20);
        let empty_continuations = |n: usize| {
            let mut bytes = frame(0x01, b"a");
            for _ in 0..n {
                bytes.extend(frame(0x00, b""));
            }
            bytes.extend(frame(0x80, b"z"));
            bytes
        };
        let mut r = MessageReader::new(65536);
        let (got, res) = run(&mut r, &empty_continuations(1022));
        assert_eq!((got, res), (vec![Got::Text("az".into())], Ok(Flow::Continue)), "1024 frames in all is allowed");
        let (got, _) = run(&mut r, &empty_continuations(1022));
        assert_eq!(got.len(), 1, "the count starts again with each message");
        let mut r = MessageReader::new(65536);
        assert_eq!(run(&mut r, &empty_continuations(1023)).1, Err(FrameError::TooFragmented));
    }

    #[test]
    fn new_message_inside_a_fragmented_one_fails_the_same_however_split() {
        // Found by fuzz/ (frame_reader): once the header of the second frame had arrived but not
        // its payload, the "would exceed maxPayload" pre-check answered TooLarge (1009), while the
        // same bytes in one read gave the protocol error (1002) that the frame really is.
        let mut bytes = frame(0x01, &[b'a'; 6]);
        bytes.extend(frame(0x81, &[b'b'; 6]));
        let mut r = MessageReader::new(10);
        assert!(matches!(run(&mut r, &bytes).1, Err(FrameError::Protocol(_))));
        let mut r = MessageReader::new(10);
        let mut results = bytes.iter().map(|b| run(&mut r, std::slice::from_ref(b)).1);
        assert!(matches!(results.find(Result::is_err), Some(Err(FrameError::Protocol(_)))));
    }

    #[test]
    fn close_stops_processing() {
        let mut r = MessageReader::new(1024);
        let mut bytes = frame(0x88, b"\x03\xe8done");
        bytes.extend(frame(0x81, b"after"));
        let (got, res) = run(&mut r, &bytes);
        assert_eq!(res, Ok(Flow::Stop));
        assert_eq!(got, vec![Got::Close(1000, "done".into())]);
    }

    #[test]
    fn pong_is_reported() {
        let mut r = MessageReader::new(1024);
        assert_eq!(run(&mut r, &frame(0x8A, b"")).0, vec![Got::Pong]);
    }
}
