//! permessage-deflate (RFC 7692): choosing among a client's offers, and compressing and inflating
//! messages. Apart from the frame reader and writer, as `ws` keeps its extension apart.
//!
//! The server never keeps a compression context between messages, in either direction, and says
//! so in every response (`server_no_context_takeover; client_no_context_takeover`):
//! - without server context takeover a message compresses to the same bytes for every recipient,
//!   so a publish is compressed once and its frame shared, like a plain frame;
//! - without client context takeover every message inflates on its own, so one inflater per I/O
//!   thread serves all its connections and an idle connection owns no zlib state at all (a
//!   context with a 32 KiB window per connection would cost more than the rest of it together).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The negotiated extension's name.
pub const EXTENSION: &str = "permessage-deflate";
/// Smallest window zlib can honour: asked for 8 it uses 9, so offers of 8 are declined.
const MIN_SERVER_WINDOW_BITS: u8 = 9;
const MAX_WINDOW_BITS: u8 = 15;
/// The empty stored block that ends every compressed message (RFC 7692 §7.2.1), removed by the
/// sender and appended again by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Inflate output is produced in steps of this many bytes, each counted against the limit before
/// the next: a message never grows its buffer past the limit by more than one step.
const INFLATE_STEP: usize = 16 * 1024;

/// A thread's inflate output buffer is kept between messages up to this size (larger ones are
/// freed after the message that needed them).
const KEEP_SCRATCH_BYTES: usize = 256 * 1024;

/// What the server is willing to do (`compression` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Smaller outbound payloads are sent plain.
    pub threshold: usize,
    /// zlib level 0–9.
    pub level: u32,
    /// Most window bits the server compresses with (9–15).
    pub max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self { threshold: 256, level: 3, max_window_bits: MAX_WINDOW_BITS }
    }
}

/// The accepted offer: what the response says and the window the server compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    pub window_bits: u8,
    /// The response names `server_max_window_bits` (the offer asked, or the server limits itself).
    pub announce_window: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` response value.
    pub fn response(&self) -> String {
        let mut out = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if self.announce_window {
            out.push_str(&format!("; server_max_window_bits={}", self.window_bits));
        }
        out
    }
}

/// Chooses the first acceptable permessage-deflate offer of `Sec-WebSocket-Extensions` header
/// values (RFC 7692 §5, §7.1). An offer is declined, and the next one considered, when it has an
/// unknown or repeated parameter, a value where none belongs, or a window size out of range;
/// `None` (no offer acceptable) means the connection goes on without the extension.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>, config: &DeflateConfig) -> Option<Agreement> {
    headers.into_iter().flat_map(split_outside_quotes).find_map(|offer| accept(offer, config))
}

/// Splits a header value on commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn accept(offer: &str, config: &DeflateConfig) -> Option<Agreement> {
    let mut params = offer.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut asked_window: Option<u8> = None;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"'))),
            None => (param.to_ascii_lowercase(), None),
        };
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => asked_window = Some(window_bits(v)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    let window_bits = asked_window.unwrap_or(MAX_WINDOW_BITS).min(config.max_window_bits);
    if window_bits < MIN_SERVER_WINDOW_BITS {
        return None;
    }
    Some(Agreement { window_bits, announce_window: asked_window.is_some() || window_bits < MAX_WINDOW_BITS })
}

/// A window size parameter: 8–15, digits only (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooLarge,
    /// Not a valid raw deflate stream.
    Invalid,
}

struct Inflater {
    zlib: Decompress,
    out: Vec<u8>,
}

thread_local! {
    /// This thread's inflater and output buffer, reset for every message (no client context
    /// takeover), created on first use: threads that never see a compressed message own none.
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
    /// This thread's compressors by (level, window bits), reset for every message.
    static COMPRESSORS: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// Inflates one message (its frames' payloads joined) and passes the result to `then`, never
/// holding more than `limit` bytes of output (plus one step) whatever the input claims.
pub fn inflate<R>(compressed: &[u8], limit: usize, then: impl FnOnce(&[u8]) -> R) -> Result<R, InflateError> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater = slot.get_or_insert_with(|| Inflater { zlib: Decompress::new(false), out: Vec::new() });
        inflater.zlib.reset(false);
        inflater.out.clear();
        let result = run_inflate(inflater, compressed, limit);
        let answer = result.map(|()| then(&inflater.out));
        if inflater.out.capacity() > KEEP_SCRATCH_BYTES {
            inflater.out = Vec::new();
        }
        answer
    })
}

fn run_inflate(inflater: &mut Inflater, compressed: &[u8], limit: usize) -> Result<(), InflateError> {
    let Inflater { zlib, out } = inflater;
    for input in [compressed, &TAIL[..]] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                // Grow by doubling, but never past one byte over the limit: that byte is how
                // "too large" is noticed without ever holding more.
                let room = out.capacity().max(INFLATE_STEP).min(limit + 1 - out.len());
                out.reserve_exact(room);
            }
            let (in_before, out_before) = (zlib.total_in(), out.len());
            let status = zlib.decompress_vec(&input[pos..], out, FlushDecompress::Sync).map_err(|_| InflateError::Invalid)?;
            pos += (zlib.total_in() - in_before) as usize;
            if out.len() > limit {
                return Err(InflateError::TooLarge);
            }
            if status == Status::StreamEnd {
                return Ok(()); // a final block ends the message (the tail is then not needed)
            }
            let full = out.len() == out.capacity();
            let stalled = zlib.total_in() == in_before && out.len() == out_before;
            if !full && (pos == input.len() || stalled) {
                break;
            }
        }
    }
    Ok(())
}

/// Compresses one message for a recipient whose window is `window_bits`, with no context kept:
/// the deflate stream, sync-flushed, without its final 4 bytes (RFC 7692 §7.2.1).
pub fn compress(payload: &[u8], level: u32, window_bits: u8) -> Vec<u8> {
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let index = match compressors.iter().position(|(l, w, _)| *l == level && *w == window_bits) {
            Some(i) => i,
            None => {
                compressors.push((level, window_bits, Compress::new_with_window_bits(Compression::new(level), false, window_bits)));
                compressors.len() - 1
            }
        };
        let zlib = &mut compressors[index].2;
        zlib.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        loop {
            let consumed = zlib.total_in() as usize;
            zlib.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync).expect("deflate never fails on valid state");
            if zlib.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(header: &str) -> Option<String> {
        negotiate([header], &DeflateConfig::default()).map(|a| a.response())
    }

    const PLAIN: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn accepts_valid_offers_and_always_answers_without_context_takeover() {
        assert_eq!(agree("permessage-deflate").as_deref(), Some(PLAIN));
        assert_eq!(agree("permessage-deflate; client_max_window_bits").as_deref(), Some(PLAIN));
        assert_eq!(agree("permessage-deflate; client_max_window_bits=10; server_no_context_takeover").as_deref(), Some(PLAIN));
        assert_eq!(agree("Permessage-Deflate; Client_No_Context_Takeover").as_deref(), Some(PLAIN));
        assert_eq!(agree("permessage-deflate; server_max_window_bits=10").unwrap(), format!("{PLAIN}; server_max_window_bits=10"));
        assert_eq!(agree("permessage-deflate; server_max_window_bits=\"12\"").unwrap(), format!("{PLAIN}; server_max_window_bits=12"));
    }

    #[test]
    fn declines_invalid_offers_and_takes_the_next() {
        for bad in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(agree(bad), None, "{bad}");
        }
        assert_eq!(agree("permessage-deflate; foo, permessage-deflate").as_deref(), Some(PLAIN));
        assert_eq!(negotiate(["x-other", "permessage-deflate; server_max_window_bits=9"], &DeflateConfig::default()).map(|a| a.window_bits), Some(9));
    }

    #[test]
    fn the_servers_own_window_limit_is_announced() {
        let config = DeflateConfig { max_window_bits: 11, ..DeflateConfig::default() };
        let a = negotiate(["permessage-deflate"], &config).unwrap();
        assert_eq!((a.window_bits, a.response().ends_with("server_max_window_bits=11")), (11, true));
        assert_eq!(negotiate(["permessage-deflate; server_max_window_bits=10"], &config).unwrap().window_bits, 10);
    }

    #[test]
    fn compress_then_inflate_round_trips_at_every_window() {
        let text = br#"{"event":"chat:message","data":{"room":"lobby","from":"ada","text":"hello hello hello"}}"#.repeat(40);
        for bits in 9..=15 {
            let packed = compress(&text, 1, bits);
            assert!(packed.len() < text.len() / 4, "compresses ({} of {})", packed.len(), text.len());
            assert_eq!(inflate(&packed, text.len(), <[u8]>::to_vec), Ok(text.clone()));
            // The same message compresses to the same bytes every time (shared frames).
            assert_eq!(compress(&text, 1, bits), packed);
        }
        assert_eq!(inflate(&compress(b"", 1, 15), 10, <[u8]>::to_vec), Ok(Vec::new()));
    }

    #[test]
    fn inflate_stops_at_the_limit_and_refuses_garbage() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = compress(&zeros, 9, 15);
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(inflate(&bomb, 1 << 20, |out| out.len()), Err(InflateError::TooLarge));
        assert_eq!(inflate(&bomb, 10 << 20, |out| out.len()), Ok(10 << 20));
        assert_eq!(inflate(&[0xff, 0xff, 0xff, 0xff, 0x00], 1000, |_| ()), Err(InflateError::Invalid));
        // The thread's buffer is not kept at bomb size.
        INFLATER.with(|cell| assert!(cell.borrow().as_ref().unwrap().out.capacity() <= KEEP_SCRATCH_BYTES));
    }
}
