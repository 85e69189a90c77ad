//! Frame header parsing (client → server) and frame encoding (server → client).
//!
//! Server frames are never masked, so one encoded frame (header + payload) is valid for every
//! recipient: fan-out encodes once and shares the same `Bytes` across all write queues.

use bytes::{BufMut, Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub use super::error::FrameError;

/// A parsed frame header; `header_len` bytes precede `payload_len` payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: the message this frame starts is compressed (permessage-deflate).
    pub rsv1: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    pub payload_len: usize,
    pub header_len: usize,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a client frame header. `Ok(None)` means more bytes are needed.
/// Enforces the server-side rules: masked, no RSV2/RSV3, RSV1 only with permessage-deflate
/// negotiated (`deflate`) and only on the first frame of a data message, known opcodes, control
/// frames unfragmented and ≤ 125 bytes, and `max_payload`.
pub fn parse_header(buf: &[u8], max_payload: usize, deflate: bool) -> Result<Option<FrameHeader>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x30 != 0 || (rsv1 && !(deflate && (opcode == OP_TEXT || opcode == OP_BINARY))) {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(FrameError::Protocol("fragmented control frame"));
            }
        }
        _ => return Err(FrameError::Protocol("reserved opcode")),
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frame not masked"));
    }
    let len7 = (b1 & 0x7F) as usize;
    let (payload_len, mut pos) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(FrameError::Protocol("payload length high bit set"));
            }
            (usize::try_from(len).unwrap_or(usize::MAX), 10)
        }
        n => (n, 2),
    };
    if opcode & 0x8 != 0 && payload_len > 125 {
        return Err(FrameError::Protocol("control frame payload over 125 bytes"));
    }
    if payload_len > max_payload {
        return Err(FrameError::TooLarge);
    }
    if buf.len() < pos + 4 {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[pos..pos + 4]);
    pos += 4;
    Ok(Some(FrameHeader { fin, rsv1, opcode, mask, payload_len, header_len: pos }))
}

/// XORs `data` with `mask`, where `data` starts at payload offset `offset` (so a payload unmasked
/// in several pieces keeps the mask phase). Works a word at a time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) & 3];
    }
    let m64 = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")) ^ m64;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// Length of the header a server frame with `payload_len` bytes needs.
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes an unmasked, final server frame header.
pub fn put_header(out: &mut BytesMut, opcode: u8, payload_len: usize) {
    put_header_bits(out, 0x80 | opcode, payload_len);
}

/// Writes an unmasked server frame header whose first byte is `b0` (FIN, RSV and opcode bits).
fn put_header_bits(out: &mut BytesMut, b0: u8, payload_len: usize) {
    out.put_u8(b0);
    match payload_len {
        0..=125 => out.put_u8(payload_len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(payload_len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(payload_len as u64);
        }
    }
}

/// Encodes one complete server frame. The result is shared by every recipient of a publish.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Encodes one complete compressed message (RSV1 set): `deflated` is its permessage-deflate
/// payload. Shared by every recipient that negotiated the extension, like [`encode`]'s frames.
pub fn encode_compressed(opcode: u8, deflated: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(deflated.len()) + deflated.len());
    put_header_bits(&mut out, 0x80 | 0x40 | opcode, deflated.len());
    out.extend_from_slice(deflated);
    out.freeze()
}

/// Encodes a close frame; `reason` is truncated to 123 bytes on a UTF-8 boundary.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let reason = super::close::truncate_reason(reason);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode(OP_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode_byte: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut v = vec![opcode_byte];
        match payload.len() {
            0..=125 => v.push(0x80 | payload.len() as u8),
            126..=0xFFFF => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        apply_mask(&mut p, mask, 0);
        v.extend_from_slice(&p);
        v
    }

    #[test]
    fn parses_small_medium_and_large_lengths() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let frame = masked(0x81, &vec![b'a'; len], [1, 2, 3, 4]);
            let h = parse_header(&frame, 1 << 20, false).unwrap().unwrap();
            assert_eq!(h.payload_len, len);
            assert_eq!(h.frame_len(), frame.len());
            assert!(h.fin);
            assert_eq!(h.opcode, OP_TEXT);
        }
    }

    #[test]
    fn incomplete_header_asks_for_more() {
        let frame = masked(0x81, &[b'x'; 300], [9, 9, 9, 9]);
        for cut in 0..8 {
            assert_eq!(parse_header(&frame[..cut], 1 << 20, false), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        let unmasked = [0x81u8, 0x00];
        assert!(matches!(parse_header(&unmasked, 100, false), Err(FrameError::Protocol(_))));
        let rsv = masked(0xC1, b"", [0; 4]);
        assert!(matches!(parse_header(&rsv, 100, false), Err(FrameError::Protocol(_))));
        let reserved_op = masked(0x83, b"", [0; 4]);
        assert!(matches!(parse_header(&reserved_op, 100, false), Err(FrameError::Protocol(_))));
        let fragmented_ping = masked(0x09, b"", [0; 4]);
        assert!(matches!(parse_header(&fragmented_ping, 100, false), Err(FrameError::Protocol(_))));
        let big_ping = masked(0x89, &[0; 126], [0; 4]);
        assert!(matches!(parse_header(&big_ping, 1000, false), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn rsv1_only_on_a_first_data_frame_and_only_with_deflate() {
        let first = masked(0xC1, b"x", [0; 4]);
        assert!(parse_header(&first, 100, true).unwrap().unwrap().rsv1);
        assert!(parse_header(&masked(0x42, b"x", [0; 4]), 100, true).unwrap().unwrap().rsv1, "unfinished binary");
        assert!(!parse_header(&masked(0x81, b"x", [0; 4]), 100, true).unwrap().unwrap().rsv1);
        for bad in [0xC0u8, 0xC9, 0xC8, 0xCA, 0xA1, 0x91] {
            // continuation, ping, close, pong with RSV1; RSV2; RSV3
            assert!(matches!(parse_header(&masked(bad, b"", [0; 4]), 100, true), Err(FrameError::Protocol(_))), "{bad:#x}");
        }
        let encoded = encode_compressed(OP_TEXT, b"abc");
        assert_eq!(&encoded[..2], &[0xC1, 3]);
    }

    #[test]
    fn enforces_max_payload_from_header_alone() {
        let frame = masked(0x82, &[0; 2000], [1, 1, 1, 1]);
        assert_eq!(parse_header(&frame[..8], 1024, false), Err(FrameError::TooLarge));
    }

    #[test]
    fn mask_roundtrip_at_any_offset() {
        let original: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let mask = [0xde, 0xad, 0xbe, 0xef];
        let mut whole = original.clone();
        apply_mask(&mut whole, mask, 0);
        // Unmasking in uneven pieces must give the same result as one pass.
        let mut pieces = whole.clone();
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(500);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 3);
        apply_mask(c, mask, 503);
        assert_eq!(pieces, original);
    }

    #[test]
    fn encodes_unmasked_server_frames() {
        let f = encode(OP_TEXT, b"hi");
        assert_eq!(&f[..], &[0x81, 2, b'h', b'i']);
        let f = encode(OP_BINARY, &[7; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = encode(OP_TEXT, &vec![0; 70000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70010);
    }

    #[test]
    fn close_frame_carries_code_and_truncated_reason() {
        let f = encode_close(1013, "WebSocket backpressure overflow");
        assert_eq!(&f[..4], &[0x88, 2 + 31, 0x03, 0xF5]);
        let long = "é".repeat(100); // 200 bytes, 2 bytes per char
        let f = encode_close(1000, &long);
        assert_eq!(f[1] as usize, 2 + 122); // 123 would split a character
    }
}
