//! permessage-deflate (RFC 7692), receiving side only, for `--deflate`: the offer, the check of the
//! server's response, and inflating messages whose first frame has RSV1. The load generator never
//! compresses what it sends (RSV1 is per message, so uncompressed messages are always allowed).
//!
//! Inflate contexts:
//! - the server answered `server_no_context_takeover`: every message is a complete raw deflate
//!   stream on its own, so one inflater shared by every connection of the (single) thread is reset
//!   after each message, and an idle connection owns no zlib state. Because the output is then a
//!   pure function of the compressed bytes, the last few (compressed → inflated) pairs are cached:
//!   a fan-out delivers the same compressed bytes to every subscriber (a server that compresses
//!   once per publish, or any deterministic deflate with a fresh context), and comparing bytes is
//!   much cheaper than inflating 10,000 copies on the load generator's one core. A hit is a
//!   byte-for-byte equal input, so the delivered message is exactly what inflating would give.
//! - the server keeps its context (no `server_no_context_takeover` in the response, e.g. `ws` when
//!   the offer does not ask for it): each connection gets its own inflater, created on its first
//!   compressed message and kept for the connection's life, and no cache is used.

use std::cell::{Cell, RefCell};

use flate2::{Decompress, FlushDecompress, Status};
use serde_json::{json, Value};

/// What `--deflate` offers (`--deflate-offer` replaces it).
pub const DEFAULT_OFFER: &str = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// RFC 7692 §7.2.2: the sender removed these 4 bytes from the end of every message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A message inflating past this is an error (the bench never sends anything near it).
const MAX_MESSAGE: usize = 64 << 20;

/// Cached (compressed → inflated) pairs for the shared inflater.
const CACHE: usize = 16;

/// The parameters the server agreed to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Agreed {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

/// An extension and its parameters (name, value if any), names lowercased.
type Ext = (String, Vec<(String, Option<String>)>);

/// Split an extension header value into extensions.
fn parse_list(v: &str) -> Result<Vec<Ext>, String> {
    let mut out = Vec::new();
    for ext in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = ext.split(';').map(str::trim);
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("empty extension name in {v:?}"));
        }
        let mut params = Vec::new();
        for p in parts {
            if p.is_empty() {
                return Err(format!("empty parameter in {v:?}"));
            }
            let (k, val) = match p.split_once('=') {
                Some((k, val)) => (k.trim(), Some(val.trim().trim_matches('"').to_string())),
                None => (p, None),
            };
            params.push((k.to_ascii_lowercase(), val));
        }
        out.push((name, params));
    }
    Ok(out)
}

fn window_bits(k: &str, v: &Option<String>) -> Result<u8, String> {
    let s = v.as_deref().ok_or_else(|| format!("{k} without a value"))?;
    match s.parse::<u8>() {
        Ok(b @ 8..=15) if s.bytes().all(|c| c.is_ascii_digit()) => Ok(b),
        _ => Err(format!("{k}={s} is not 8..15")),
    }
}

/// Check the server's `Sec-WebSocket-Extensions` (all its values joined with ", ") against our
/// offer. `Ok(None)`: the server declined (no extension). `Err`: the client must fail the
/// connection (RFC 7692 §5: an extension or parameter we did not offer, an invalid value, a
/// duplicate parameter, more than one extension).
pub fn parse_response(resp: &str, offer: &str) -> Result<Option<Agreed>, String> {
    let exts = parse_list(resp)?;
    if exts.is_empty() {
        return Ok(None);
    }
    if exts.len() > 1 {
        return Err(format!("more than one extension accepted: {resp:?}"));
    }
    let (name, params) = &exts[0];
    if name != "permessage-deflate" {
        return Err(format!("extension we did not offer: {resp:?}"));
    }
    let offered = parse_list(offer)?;
    let offered_client_bits = offered.iter().any(|(_, ps)| ps.iter().any(|(k, _)| k == "client_max_window_bits"));
    let mut a = Agreed::default();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return Err(format!("duplicate parameter {k}: {resp:?}"));
        }
        seen.push(k);
        match k.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" if v.is_some() => {
                return Err(format!("{k} with a value: {resp:?}"));
            }
            "server_no_context_takeover" => a.server_no_context_takeover = true,
            "client_no_context_takeover" => a.client_no_context_takeover = true,
            "server_max_window_bits" => a.server_max_window_bits = Some(window_bits(k, v)?),
            "client_max_window_bits" if !offered_client_bits => {
                return Err(format!("client_max_window_bits not offered: {resp:?}"));
            }
            "client_max_window_bits" => a.client_max_window_bits = Some(window_bits(k, v)?),
            _ => return Err(format!("unknown parameter {k}: {resp:?}")),
        }
    }
    Ok(Some(a))
}

/// A raw-deflate inflater (window 15: inflates any server_max_window_bits).
pub struct Inflater {
    d: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        Inflater { d: Decompress::new(false) }
    }

    /// Feed `input`; returns true when the deflate stream ended (a final block).
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        loop {
            if out.capacity() - out.len() < 512 {
                out.reserve(out.len().max(2048));
            }
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let st = self.d.decompress_vec(input, out, FlushDecompress::Sync).map_err(|e| format!("invalid deflate data: {e}"))?;
            let used = (self.d.total_in() - in0) as usize;
            let produced = self.d.total_out() - out0;
            input = &input[used..];
            if st == Status::StreamEnd {
                return Ok(true);
            }
            if out.len() > MAX_MESSAGE {
                return Err(format!("message inflates past {MAX_MESSAGE} bytes"));
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(false);
            }
            if used == 0 && produced == 0 && out.len() < out.capacity() {
                return Err("inflate made no progress".into());
            }
        }
    }

    /// Inflate one message (its frames' payloads concatenated) into `out` (cleared first). With
    /// `reset` (no context takeover) the inflater starts afresh for the next message; it also does
    /// after a final block (the next message is a new deflate stream).
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, reset: bool) -> Result<(), String> {
        out.clear();
        let r = match self.feed(input, out) {
            Ok(true) => Ok(true),
            Ok(false) => self.feed(&TAIL, out),
            Err(e) => Err(e),
        };
        if reset || !matches!(r, Ok(false)) {
            self.d.reset(false);
        }
        r.map(|_| ())
    }
}

/// How a connection inflates.
pub enum Mode {
    /// Extension not negotiated: RSV1 is not interpreted (as without `--deflate`).
    Off,
    /// server_no_context_takeover: the thread's shared inflater and its cache.
    Shared,
    /// The server keeps its compression context: this connection's own inflater (created lazily).
    Own(Option<Box<Inflater>>),
}

impl Mode {
    pub fn for_agreed(a: &Option<Agreed>) -> Mode {
        match a {
            None => Mode::Off,
            Some(a) if a.server_no_context_takeover => Mode::Shared,
            Some(_) => Mode::Own(None),
        }
    }

    #[inline]
    pub fn on(&self) -> bool {
        !matches!(self, Mode::Off)
    }

    /// Inflate one compressed message into `out`; false (and counted) on error.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let r = match self {
            Mode::Off => return false,
            Mode::Own(inf) => {
                STATS.with(|s| s.inflated.set(s.inflated.get() + 1));
                inf.get_or_insert_with(|| Box::new(Inflater::new())).inflate(input, out, false)
            }
            Mode::Shared => SHARED.with(|sh| sh.borrow_mut().inflate(input, out)),
        };
        STATS.with(|s| {
            s.compressed.set(s.compressed.get() + 1);
            if let Err(e) = &r {
                s.errors.set(s.errors.get() + 1);
                s.first_error.borrow_mut().get_or_insert_with(|| e.clone());
            }
        });
        r.is_ok()
    }
}

/// The thread's shared inflater (no context takeover) with its small cache.
struct Shared {
    inf: Inflater,
    cache: Vec<(Vec<u8>, Vec<u8>)>,
    next: usize,
}

impl Shared {
    fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if let Some((_, o)) = self.cache.iter().find(|(i, _)| i.as_slice() == input) {
            out.clear();
            out.extend_from_slice(o);
            STATS.with(|s| s.cache_hits.set(s.cache_hits.get() + 1));
            return Ok(());
        }
        STATS.with(|s| s.inflated.set(s.inflated.get() + 1));
        self.inf.inflate(input, out, true)?;
        if self.cache.len() < CACHE {
            self.cache.push((input.to_vec(), out.clone()));
        } else {
            let (i, o) = &mut self.cache[self.next];
            i.clear();
            i.extend_from_slice(input);
            o.clear();
            o.extend_from_slice(out);
        }
        self.next = (self.next + 1) % CACHE;
        Ok(())
    }
}

/// Counters over every connection of the thread (the load generator has one).
#[derive(Default)]
struct Stats {
    offered: Cell<u64>,
    negotiated: Cell<u64>,
    server_takeover: Cell<u64>,
    declined: Cell<u64>,
    first_response: RefCell<Option<String>>,
    compressed: Cell<u64>,
    inflated: Cell<u64>,
    cache_hits: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

thread_local! {
    static STATS: Stats = Stats::default();
    static SHARED: RefCell<Shared> = RefCell::new(Shared { inf: Inflater::new(), cache: Vec::new(), next: 0 });
}

/// Record one handshake's outcome (`resp`: the server's extension header, if any).
pub fn record_handshake(agreed: &Option<Agreed>, resp: Option<&str>) {
    STATS.with(|s| {
        s.offered.set(s.offered.get() + 1);
        match agreed {
            Some(a) => {
                s.negotiated.set(s.negotiated.get() + 1);
                if !a.server_no_context_takeover {
                    s.server_takeover.set(s.server_takeover.get() + 1);
                }
            }
            None => s.declined.set(s.declined.get() + 1),
        }
        if let Some(r) = resp {
            s.first_response.borrow_mut().get_or_insert_with(|| r.to_string());
        }
    });
}

/// Compressed messages received so far (all connections).
pub fn compressed_count() -> u64 {
    STATS.with(|s| s.compressed.get())
}

/// The `deflate` object of the JSON output.
pub fn stats_json(offer: &str) -> Value {
    STATS.with(|s| {
        json!({
            "offer": offer,
            "handshakes": s.offered.get(),
            "negotiated": s.negotiated.get(),
            "server_context_takeover": s.server_takeover.get(),
            "declined": s.declined.get(),
            "response": *s.first_response.borrow(),
            "compressed_messages": s.compressed.get(),
            "inflate_calls": s.inflated.get(),
            "inflate_cache_hits": s.cache_hits.get(),
            "inflate_errors": s.errors.get(),
            "first_inflate_error": *s.first_error.borrow(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Compress like a server would: raw deflate, sync flush, the trailing 00 00 ff ff removed.
    fn deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + 64);
        c.compress_vec(msg, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn response_parsing() {
        let a = parse_response("permessage-deflate; server_no_context_takeover; client_no_context_takeover", DEFAULT_OFFER).unwrap().unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        let a = parse_response("permessage-deflate; server_max_window_bits=10", DEFAULT_OFFER).unwrap().unwrap();
        assert_eq!((a.server_no_context_takeover, a.server_max_window_bits), (false, Some(10)));
        assert_eq!(parse_response("", DEFAULT_OFFER).unwrap(), None);
        assert!(parse_response("permessage-deflate; client_max_window_bits=15", DEFAULT_OFFER).is_err());
        let a = parse_response("permessage-deflate; client_max_window_bits=15", "permessage-deflate; client_max_window_bits").unwrap().unwrap();
        assert_eq!(a.client_max_window_bits, Some(15));
        assert!(parse_response("permessage-deflate; server_max_window_bits=16", DEFAULT_OFFER).is_err());
        assert!(parse_response("permessage-deflate; server_max_window_bits", DEFAULT_OFFER).is_err());
        assert!(parse_response("permessage-deflate; server_no_context_takeover; server_no_context_takeover", DEFAULT_OFFER).is_err());
        assert!(parse_response("permessage-deflate; server_no_context_takeover=1", DEFAULT_OFFER).is_err());
        assert!(parse_response("permessage-deflate; foo", DEFAULT_OFFER).is_err());
        assert!(parse_response("x-webkit-deflate-frame", DEFAULT_OFFER).is_err());
        assert!(parse_response("permessage-deflate, permessage-deflate", DEFAULT_OFFER).is_err());
    }

    #[test]
    fn inflate_without_context_takeover() {
        let msgs: [&[u8]; 3] = [b"{\"event\":\"bcast\",\"data\":{\"seq\":1}}", b"hello hello hello hello", b""];
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        for m in msgs {
            // a fresh compressor per message, like server_no_context_takeover
            let z = deflate(&mut Compress::new(Compression::fast(), false), m);
            inf.inflate(&z, &mut out, true).unwrap();
            assert_eq!(out, m);
        }
    }

    #[test]
    fn inflate_with_context_takeover() {
        // one compressor for the connection's life: later messages refer back to earlier ones
        let mut c = Compress::new(Compression::default(), false);
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        let m = b"{\"event\":\"bcast\",\"data\":{\"room\":\"bench\",\"text\":\"the same words again and again\"}}";
        let first = deflate(&mut c, m);
        inf.inflate(&first, &mut out, false).unwrap();
        assert_eq!(out, m);
        let second = deflate(&mut c, m);
        assert!(second.len() < first.len() / 2, "the second copy refers to the first");
        inf.inflate(&second, &mut out, false).unwrap();
        assert_eq!(out, m);
        // a shared-context inflater (reset per message) cannot read it
        let mut fresh = Inflater::new();
        assert!(fresh.inflate(&second, &mut out, true).is_err() || out != m);
    }

    #[test]
    fn inflate_large_and_bfinal() {
        let big: Vec<u8> = (0..200_000u32).map(|i| b"abcdefghij"[(i * 7 % 10) as usize] ^ (i / 1000) as u8).collect();
        let z = deflate(&mut Compress::new(Compression::fast(), false), &big);
        let mut inf = Inflater::new();
        let mut out = Vec::new();
        inf.inflate(&z, &mut out, false).unwrap();
        assert_eq!(out, big);
        // a message ending with a final block (no 00 00 ff ff to append, a new stream follows)
        let mut c = Compress::new(Compression::fast(), false);
        let mut fin = Vec::with_capacity(256);
        c.compress_vec(b"final block", &mut fin, FlushCompress::Finish).unwrap();
        inf.inflate(&fin, &mut out, false).unwrap();
        assert_eq!(out, b"final block");
        let z = deflate(&mut Compress::new(Compression::fast(), false), b"next");
        inf.inflate(&z, &mut out, false).unwrap();
        assert_eq!(out, b"next");
    }

    #[test]
    fn shared_mode_caches_identical_inputs() {
        let z = deflate(&mut Compress::new(Compression::fast(), false), b"same bytes for every subscriber");
        let mut m = Mode::for_agreed(&Some(Agreed { server_no_context_takeover: true, ..Default::default() }));
        let mut out = Vec::new();
        let hits0 = STATS.with(|s| s.cache_hits.get());
        for _ in 0..3 {
            assert!(m.inflate(&z, &mut out));
            assert_eq!(out, b"same bytes for every subscriber");
        }
        assert_eq!(STATS.with(|s| s.cache_hits.get()) - hits0, 2);
        assert!(!m.inflate(b"\xff\xff\xff", &mut out));
    }
}
