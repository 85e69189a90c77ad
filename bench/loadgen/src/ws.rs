//! A small hand-rolled WebSocket client (RFC 6455), tuned to cost the load generator as little CPU
//! as possible: one read buffer per connection, frames parsed in place, outgoing frames batched
//! into one write buffer and written with a single syscall per flush. No per-message allocation.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::deflate;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    /// ferrosocket's `{"event":..,"data":..}` envelope in plain text frames.
    Plain,
    /// Engine.IO v4 / Socket.IO v5 packets (`42["event",data]`) over the websocket transport.
    SocketIo,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Plain => "plain",
            Proto::SocketIo => "socketio",
        }
    }

    /// Append an event frame's payload (not the WebSocket header) to `out`; `data` is raw JSON.
    pub fn encode_event(self, out: &mut Vec<u8>, event: &str, data: &[u8]) {
        match self {
            Proto::Plain => {
                out.extend_from_slice(b"{\"event\":\"");
                out.extend_from_slice(event.as_bytes());
                out.extend_from_slice(b"\",\"data\":");
                out.extend_from_slice(data);
                out.push(b'}');
            }
            Proto::SocketIo => {
                out.extend_from_slice(b"42[\"");
                out.extend_from_slice(event.as_bytes());
                out.extend_from_slice(b"\",");
                out.extend_from_slice(data);
                out.push(b']');
            }
        }
    }

    /// Length of what `encode_event` adds around `data`.
    pub fn envelope_overhead(self, event: &str) -> usize {
        match self {
            Proto::Plain => "{\"event\":\"\",\"data\":}".len() + event.len(),
            Proto::SocketIo => "42[\"\",]".len() + event.len(),
        }
    }

    /// Does this message carry `event`?
    #[inline]
    pub fn is_event(self, msg: &[u8], event: &str) -> bool {
        let (pre, post): (&[u8], &[u8]) = match self {
            Proto::Plain => (b"{\"event\":\"", b"\""),
            Proto::SocketIo => (b"42[\"", b"\""),
        };
        let e = event.as_bytes();
        msg.len() > pre.len() + e.len()
            && msg.starts_with(pre)
            && &msg[pre.len()..pre.len() + e.len()] == e
            && &msg[pre.len() + e.len()..pre.len() + e.len() + 1] == post
    }
}

pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
}

/// Parse `ws://host:port/path?query` (host: an IP or `localhost`).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rfind(':') {
        Some(i) => (&hostport[..i], hostport[i + 1..].parse::<u16>().map_err(|e| format!("bad port in {url}: {e}"))?),
        None => (hostport, 80),
    };
    let ip: IpAddr = if host == "localhost" {
        "127.0.0.1".parse().unwrap()
    } else {
        host.trim_start_matches('[').trim_end_matches(']').parse().map_err(|e| format!("bad host in {url}: {e}"))?
    };
    Ok(Target { addr: SocketAddr::new(ip, port), host_header: hostport.to_string(), path: path.to_string() })
}

/// xorshift32: mask keys and handshake nonces. Not cryptographic; servers cannot tell.
#[inline]
pub fn xorshift(s: &mut u32) -> u32 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    x
}

fn seed() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CTR: AtomicU32 = AtomicU32::new(0x9e37_79b9);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let s = CTR.fetch_add(0x6d2b_79f5, Ordering::Relaxed) ^ t;
    if s == 0 { 1 } else { s }
}

pub struct Conn {
    pub stream: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    pub wbuf: Vec<u8>,
    rng: u32,
    frag: Vec<u8>,
    in_frag: bool,
    /// The server sent a close frame (we queued our reply).
    pub got_close: bool,
    pub close_code: u16,
    sent_close: bool,
    pub proto: Proto,
    /// permessage-deflate as negotiated (`--deflate`); `Off` otherwise.
    inflate: deflate::Mode,
    /// The fragmented message being collected has RSV1 (compressed).
    frag_compressed: bool,
    /// The last inflated message.
    inflated: Vec<u8>,
    /// Bytes read from the socket by `read_some` (after the handshake response: frames as they
    /// are on the wire, compressed or not, headers included).
    pub wire_in: u64,
}

#[derive(Debug)]
pub enum ConnectError {
    Tcp(io::Error),
    Handshake(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "tcp: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Tcp(e)
    }
}

/// A TCP socket for `addr`, bound to source address `src` when given (both client shapes).
pub fn socket_for(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpSocket> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = src {
        // Let connect() pick the source port per 4-tuple, so one source address can reach many
        // ports per destination instead of exhausting its ephemeral range at bind() time.
        let one: libc::c_int = 1;
        // SAFETY: the socket fd is open (owned by `sock`), and the option value points to a live
        // c_int whose size is passed as the length.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(sock)
}

/// Open a TCP connection (optionally from a given loopback source address) and do the WebSocket
/// handshake; for Socket.IO also the Engine.IO open packet and the Socket.IO namespace connect.
/// `deflate`: the permessage-deflate offer to make (`--deflate`), None to offer no extension.
pub async fn connect(target: &Target, src: Option<IpAddr>, proto: Proto, rbuf_size: usize, deflate: Option<&str>) -> Result<Conn, ConnectError> {
    let stream = socket_for(target.addr, src)?.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let mut c = Conn {
        stream,
        rbuf: vec![0u8; rbuf_size.max(512)],
        rstart: 0,
        rend: 0,
        wbuf: Vec::with_capacity(256),
        rng: seed(),
        frag: Vec::new(),
        in_frag: false,
        got_close: false,
        close_code: 0,
        sent_close: false,
        proto,
        inflate: deflate::Mode::Off,
        frag_compressed: false,
        inflated: Vec::new(),
        wire_in: 0,
    };
    c.handshake(target, deflate).await?;
    if proto == Proto::SocketIo {
        c.socketio_connect().await?;
    }
    Ok(c)
}

impl Conn {
    async fn handshake(&mut self, target: &Target, offer: Option<&str>) -> Result<(), ConnectError> {
        let mut nonce = [0u8; 16];
        for ch in nonce.chunks_mut(4) {
            ch.copy_from_slice(&xorshift(&mut self.rng).to_le_bytes());
        }
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let ext = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
            target.path, target.host_header, key
        );
        self.stream.write_all(req.as_bytes()).await?;
        // Read until the end of the response head; anything after it is already frames.
        let head_end = loop {
            if let Some(i) = find(&self.rbuf[..self.rend], b"\r\n\r\n") {
                break i + 4;
            }
            if self.rend >= 8192 {
                return Err(ConnectError::Handshake("response head too large".into()));
            }
            if self.rend == self.rbuf.len() {
                self.rbuf.resize(self.rbuf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
            if n == 0 {
                return Err(ConnectError::Handshake("connection closed during handshake".into()));
            }
            self.rend += n;
        };
        let head = String::from_utf8_lossy(&self.rbuf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            return Err(ConnectError::Handshake(format!("unexpected status: {status}")));
        }
        let mut h = Sha1::new();
        h.update(key.as_bytes());
        h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let expect = base64::engine::general_purpose::STANDARD.encode(h.finalize());
        let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let accept = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-accept")).map(|(_, v)| v.to_string());
        if accept.as_deref() != Some(expect.as_str()) {
            return Err(ConnectError::Handshake(format!("bad Sec-WebSocket-Accept: {accept:?}")));
        }
        if let Some(offer) = offer {
            let ext: Vec<&str> = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-extensions")).map(|(_, v)| *v).collect();
            let resp = ext.join(", ");
            let agreed = deflate::parse_response(&resp, offer).map_err(|e| ConnectError::Handshake(format!("Sec-WebSocket-Extensions: {e}")))?;
            deflate::record_handshake(&agreed, (!resp.is_empty()).then_some(resp.as_str()));
            self.inflate = deflate::Mode::for_agreed(&agreed);
        }
        self.rstart = head_end;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        Ok(())
    }

    /// Engine.IO `0{...}` open packet, then Socket.IO CONNECT `40` to the main namespace, until `40{...}`.
    async fn socketio_connect(&mut self) -> Result<(), ConnectError> {
        let mut stage = 0u8; // 0: waiting for EIO open, 1: waiting for SIO connect ack, 2: done
        let mut err = None;
        loop {
            let mut got_open = false;
            self.drain(|m| {
                if stage == 0 && m.first() == Some(&b'0') {
                    got_open = true;
                    stage = 1;
                } else if stage == 1 && m.starts_with(b"40") {
                    stage = 2;
                } else if stage == 1 && m.starts_with(b"44") {
                    err = Some(String::from_utf8_lossy(m).into_owned());
                }
            });
            if got_open {
                self.queue_text(b"40");
            }
            self.flush().await?;
            if let Some(e) = err {
                return Err(ConnectError::Handshake(format!("socket.io connect refused: {e}")));
            }
            if stage == 2 {
                return Ok(());
            }
            if self.got_close {
                return Err(ConnectError::Handshake("closed during socket.io connect".into()));
            }
            if self.read_some().await? == 0 {
                return Err(ConnectError::Handshake("EOF during socket.io connect".into()));
            }
        }
    }

    /// Read whatever the socket has into the buffer. Returns bytes read (0 = EOF). Cancel-safe.
    pub async fn read_some(&mut self) -> io::Result<usize> {
        let free = self.rbuf.len() - self.rend;
        if free < 256 || (self.rstart > 0 && free < self.rbuf.len() / 4) {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
            if self.rbuf.len() - self.rend < 256 {
                let n = self.rbuf.len() * 2;
                self.rbuf.resize(n, 0);
            }
        }
        let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
        self.rend += n;
        self.wire_in += n as u64;
        Ok(n)
    }

    /// Parse every complete frame in the buffer: data messages go to `f`; pings are answered
    /// (queued pong), Engine.IO pings `2` answered with `3`; a close frame is answered and sets
    /// `got_close`. Queued replies are sent by the next `flush()`.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        loop {
            let avail = self.rend - self.rstart;
            if avail < 2 {
                break;
            }
            let b = &self.rbuf[self.rstart..self.rend];
            let fin = b[0] & 0x80 != 0;
            // RSV1: a compressed message (only interpreted when permessage-deflate was negotiated)
            let rsv1 = b[0] & 0x40 != 0 && self.inflate.on();
            let op = b[0] & 0x0f;
            let masked = b[1] & 0x80 != 0;
            let (len, hlen) = match b[1] & 0x7f {
                126 => {
                    if avail < 4 {
                        break;
                    }
                    (u16::from_be_bytes([b[2], b[3]]) as usize, 4)
                }
                127 => {
                    if avail < 10 {
                        break;
                    }
                    (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10)
                }
                l => (l as usize, 2),
            };
            let mlen = if masked { 4 } else { 0 };
            let total = hlen + mlen + len;
            if avail < total {
                if total > self.rbuf.len() {
                    // make room for a frame larger than the buffer
                    self.rbuf.copy_within(self.rstart..self.rend, 0);
                    self.rend -= self.rstart;
                    self.rstart = 0;
                    self.rbuf.resize(total.next_power_of_two(), 0);
                }
                break;
            }
            let p0 = self.rstart + hlen + mlen;
            if masked {
                let key: [u8; 4] = self.rbuf[self.rstart + hlen..p0].try_into().unwrap();
                mask(&mut self.rbuf[p0..p0 + len], key);
            }
            self.rstart += total;
            match op {
                0x1 | 0x2 => {
                    if fin {
                        if rsv1 {
                            if self.inflate.inflate(&self.rbuf[p0..p0 + len], &mut self.inflated) {
                                Self::deliver(self.proto, &mut self.wbuf, &mut self.rng, &mut f, &self.inflated);
                            }
                        } else {
                            Self::deliver(self.proto, &mut self.wbuf, &mut self.rng, &mut f, &self.rbuf[p0..p0 + len]);
                        }
                    } else {
                        self.frag.clear();
                        self.frag.extend_from_slice(&self.rbuf[p0..p0 + len]);
                        self.in_frag = true;
                        self.frag_compressed = rsv1;
                    }
                }
                0x0 if self.in_frag => {
                    self.frag.extend_from_slice(&self.rbuf[p0..p0 + len]);
                    if fin {
                        self.in_frag = false;
                        if self.frag_compressed {
                            if self.inflate.inflate(&self.frag, &mut self.inflated) {
                                Self::deliver(self.proto, &mut self.wbuf, &mut self.rng, &mut f, &self.inflated);
                            }
                        } else {
                            Self::deliver(self.proto, &mut self.wbuf, &mut self.rng, &mut f, &self.frag);
                        }
                    }
                }
                0x9 => {
                    let (rbuf, wbuf, rng) = (&self.rbuf, &mut self.wbuf, &mut self.rng);
                    Self::frame_into(wbuf, rng, 0xA, &rbuf[p0..p0 + len]);
                }
                0x8 => {
                    self.got_close = true;
                    self.close_code = if len >= 2 { u16::from_be_bytes([self.rbuf[p0], self.rbuf[p0 + 1]]) } else { 1005 };
                    if !self.sent_close {
                        self.sent_close = true;
                        let code = if len >= 2 { [self.rbuf[p0], self.rbuf[p0 + 1]] } else { [0x03, 0xe8] };
                        Self::frame_into(&mut self.wbuf, &mut self.rng, 0x8, &code);
                    }
                    self.rstart = self.rend;
                    break;
                }
                _ => {}
            }
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
    }

    /// One complete (inflated) data message: Engine.IO pings are answered here, the rest go to `f`.
    #[inline]
    fn deliver(proto: Proto, wbuf: &mut Vec<u8>, rng: &mut u32, f: &mut impl FnMut(&[u8]), msg: &[u8]) {
        if proto == Proto::SocketIo && msg == b"2" {
            Self::frame_into(wbuf, rng, 0x1, b"3");
        } else {
            f(msg);
        }
    }

    #[inline]
    fn frame_into(wbuf: &mut Vec<u8>, rng: &mut u32, op: u8, payload: &[u8]) {
        let len = payload.len();
        wbuf.push(0x80 | op);
        if len < 126 {
            wbuf.push(0x80 | len as u8);
        } else if len < 65536 {
            wbuf.push(0x80 | 126);
            wbuf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            wbuf.push(0x80 | 127);
            wbuf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let key = xorshift(rng).to_le_bytes();
        wbuf.extend_from_slice(&key);
        let start = wbuf.len();
        wbuf.extend_from_slice(payload);
        mask(&mut wbuf[start..], key);
    }

    /// Queue one masked text frame.
    #[inline]
    pub fn queue_text(&mut self, payload: &[u8]) {
        Self::frame_into(&mut self.wbuf, &mut self.rng, 0x1, payload);
    }

    /// Write everything queued, in one write when the kernel takes it.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Shrink buffers for a connection that will only sit idle.
    pub fn shrink(&mut self) {
        if self.rstart == self.rend && self.rbuf.len() > 512 {
            self.rbuf = vec![0u8; 512];
            self.rstart = 0;
            self.rend = 0;
        }
        self.wbuf.shrink_to(64);
        self.inflated = Vec::new();
    }
}

#[inline]
fn mask(buf: &mut [u8], key: [u8; 4]) {
    let k = u32::from_ne_bytes(key);
    let k64 = (k as u64) | ((k as u64) << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap()) ^ k64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse the unsigned integer that follows `key` (e.g. `"seq":`) in `msg`, searching from `from`.
/// Returns the value and the index just past it.
#[inline]
pub fn field_u64(msg: &[u8], key: &[u8], from: usize) -> Option<(u64, usize)> {
    let i = find(&msg[from.min(msg.len())..], key)? + from + key.len();
    let mut v: u64 = 0;
    let mut j = i;
    while j < msg.len() && msg[j].is_ascii_digit() {
        v = v * 10 + (msg[j] - b'0') as u64;
        j += 1;
    }
    if j == i {
        None
    } else {
        Some((v, j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_roundtrip() {
        let mut v: Vec<u8> = (0..37).collect();
        let orig = v.clone();
        mask(&mut v, [1, 2, 3, 4]);
        assert_eq!(v[0], 1);
        assert_eq!(v[5], 5 ^ 2);
        mask(&mut v, [1, 2, 3, 4]);
        assert_eq!(v, orig);
    }

    #[test]
    fn fields() {
        let m = br#"{"event":"bcast","data":{"room":"bench","seq":42,"t":123456,"pad":"xx"}}"#;
        let (s, e) = field_u64(m, b"\"seq\":", 0).unwrap();
        assert_eq!(s, 42);
        assert_eq!(field_u64(m, b"\"t\":", e).unwrap().0, 123456);
        assert!(Proto::Plain.is_event(m, "bcast"));
        assert!(!Proto::Plain.is_event(m, "bcas"));
        assert!(Proto::SocketIo.is_event(br#"42["echo","x"]"#, "echo"));
    }

    #[test]
    fn url() {
        let t = parse_url("ws://127.0.0.1:9000/socket.io/?EIO=4&transport=websocket").unwrap();
        assert_eq!(t.addr.port(), 9000);
        assert_eq!(t.path, "/socket.io/?EIO=4&transport=websocket");
    }
}
