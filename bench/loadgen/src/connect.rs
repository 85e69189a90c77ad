//! The `connect` workload: C lanes, each looping TCP connect → WebSocket opening handshake
//! (Socket.IO: + Engine.IO open and namespace connect) → close handshake → TCP close.
//!
//! Unlike the other modes this one does not use tokio: almost all of its CPU time is the kernel's
//! loopback TCP work for each connection (on loopback the server side's receive processing of
//! every packet we send runs on our CPU too), so the only thing left to save is our own overhead
//! per connection. One epoll loop drives raw non-blocking sockets, every lane reuses its buffers,
//! and the syscalls per connection are the minimum: socket, setsockopt(IP_BIND_ADDRESS_NO_PORT)
//! and bind (only with --sources), connect, epoll_ctl(ADD), send(request), recv(101),
//! send(close frame), recv(close frame + EOF), close. No epoll_ctl(DEL) (close() removes the fd),
//! no getsockopt(SO_ERROR) (a failed connect shows up as the error of the first send), no
//! TCP_NODELAY (each write is sent at once anyway: the request is the first data on the
//! connection and every later write follows a server reply that acknowledged everything before it,
//! so Nagle never holds anything back; the packets on the wire are the same).
//!
//! The protocol work is not reduced: every connection gets a fresh random Sec-WebSocket-Key, the
//! response must be `101` with `Upgrade: websocket`, `Connection: Upgrade`, the matching
//! `Sec-WebSocket-Accept` and no extension or subprotocol we did not offer; then we send a masked
//! close frame (1000), read frames until the server's close frame, read until the server's FIN
//! (the server closes TCP first, so the TIME_WAIT is on its side and our ephemeral ports are free
//! again at once), and only then close the socket, which sends our FIN (never an RST: everything
//! the server sent has been read).
//!
//! Unsafe code here is only the libc calls on fds; each block says why it is sound.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::hist::Hist;
use crate::modes::{base_json, fmt_server, merge};
use crate::sys;
use crate::ws::{xorshift, Proto};
use crate::{now_us, Args, Ctx};

/// How long a lane waits for the server's close frame and FIN after sending its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause of a lane after a failed attempt (so a dead server does not make us spin).
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Read buffer per lane: the response head must fit (same limit as the tokio client).
const BUF: usize = 8192;
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// No socket; (re)connect when the deadline passes.
    Pause,
    /// Request queued, waiting for the TCP connection to complete (EPOLLOUT).
    Connecting,
    /// Request sent, waiting for the response head.
    Response,
    /// Socket.IO: waiting for the Engine.IO open packet `0{...}`.
    EioOpen,
    /// Socket.IO: `40` sent, waiting for the namespace connect ack `40{...}`.
    SioAck,
    /// Handshake done, close frame sent: waiting for the server's close frame and FIN.
    Closing,
}

struct Lane {
    /// The lane's socket while it has one; dropping it closes the socket (and so removes it from
    /// the epoll set: nothing else holds a duplicate of it).
    fd: Option<OwnedFd>,
    /// Bumped whenever `fd` is closed, so an event for an earlier socket of this lane is ignored.
    gen: u32,
    state: State,
    deadline: u64,
    t0: u64,
    /// Connection counter for the round-robin over --sources (lane, lane + C, lane + 2C, ...).
    seq: usize,
    /// The handshake completed inside the measured window (then an unclean close is counted).
    counted: bool,
    got_close: bool,
    rng: u32,
    /// Bytes to send; `wpos` of them are sent.
    out: Vec<u8>,
    wpos: usize,
    /// EPOLLOUT is in the registered event mask.
    want_out: bool,
    expect: [u8; 28],
    buf: Box<[u8]>,
    len: usize,
}

impl Lane {
    /// The socket's fd for a syscall, or -1 (the call then fails with EBADF) if there is none.
    #[inline]
    fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }
}

struct Stats {
    phase: u8,
    handshakes: u64,
    failed: u64,
    unclean_close: u64,
    /// Server close frames (after a counted handshake) whose code was not our 1000 (or empty).
    close_code_not_1000: u64,
    first_unexpected_close_code: Option<u16>,
    first_error: Option<String>,
    hist: Hist,
}

const WARMUP: u8 = 1;
const MEASURE: u8 = 2;
const STOP: u8 = 3;

struct Engine {
    ep: RawFd,
    proto: Proto,
    dst: SocketAddr,
    sources: Vec<IpAddr>,
    connect_timeout: u64,
    /// The request with a placeholder key at `key_at`.
    request: Vec<u8>,
    key_at: usize,
    lanes: Vec<Lane>,
    /// No lane deadline is earlier than this (lanes are scanned when it passes).
    next_deadline: u64,
    st: Stats,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// Build the opening handshake request for `path`/`host` with a 24-character placeholder key;
/// returns the request and the key's offset.
fn request_template(path: &str, host: &str) -> (Vec<u8>, usize) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    let mut req = head.clone().into_bytes();
    req.extend_from_slice(&[b'A'; 24]);
    req.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
    (req, head.len())
}

/// Write a fresh random key into `key` (24 base64 characters) and its expected accept into `expect`.
fn new_key(rng: &mut u32, key: &mut [u8], expect: &mut [u8; 28]) {
    let mut nonce = [0u8; 16];
    for ch in nonce.chunks_mut(4) {
        ch.copy_from_slice(&xorshift(rng).to_le_bytes());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let n = b64.encode_slice(nonce, key).expect("24-byte key slot");
    debug_assert_eq!(n, 24);
    accept_for(key, expect);
}

fn accept_for(key: &[u8], expect: &mut [u8; 28]) {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    let n = base64::engine::general_purpose::STANDARD.encode_slice(h.finalize(), expect).expect("28-byte accept");
    debug_assert_eq!(n, 28);
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|c| !matches!(c, b' ' | b'\t')).unwrap_or(s.len());
    let b = s.iter().rposition(|c| !matches!(c, b' ' | b'\t')).map_or(a, |i| i + 1);
    &s[a..b.max(a)]
}

/// Check a response head (everything up to and including the blank line) as RFC 6455 §4.1 asks
/// of a client: status 101, `Upgrade: websocket`, `Connection` containing `Upgrade`, the expected
/// `Sec-WebSocket-Accept`, and no extension or subprotocol (we offered none).
fn check_response(head: &[u8], expect: &[u8]) -> Result<(), String> {
    let mut lines = head.split(|&c| c == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines.next().unwrap_or(b"");
    let ok_status = status.starts_with(b"HTTP/1.1 101") && matches!(status.get(12), None | Some(b' '));
    if !ok_status {
        return Err(format!("unexpected status: {}", String::from_utf8_lossy(status)));
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, None);
    for line in lines {
        let Some(colon) = line.iter().position(|&c| c == b':') else { continue };
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            accept = Some(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= value.split(|&c| c == b',').any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"));
        } else if (name.eq_ignore_ascii_case(b"sec-websocket-extensions") || name.eq_ignore_ascii_case(b"sec-websocket-protocol"))
            && !value.is_empty()
        {
            return Err(format!("server selected {} we did not offer", String::from_utf8_lossy(line)));
        }
    }
    if accept != Some(expect) {
        return Err(format!("bad Sec-WebSocket-Accept: {:?}", accept.map(String::from_utf8_lossy)));
    }
    if !upgrade {
        return Err("no `Upgrade: websocket` in the response".into());
    }
    if !connection {
        return Err("no `Connection: Upgrade` in the response".into());
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Not complete yet.
    Partial,
    Bad(&'static str),
    /// fin, opcode, payload range in the buffer, total frame length.
    Frame { fin: bool, op: u8, start: usize, end: usize },
}

/// Parse the server frame at the start of `b`. Server frames must not be masked (RFC 6455 §5.1).
fn parse_frame(b: &[u8]) -> Parsed {
    if b.len() < 2 {
        return Parsed::Partial;
    }
    if b[1] & 0x80 != 0 {
        return Parsed::Bad("masked frame from the server");
    }
    if b[0] & 0x70 != 0 {
        return Parsed::Bad("reserved bits set (no extension was negotiated)");
    }
    let (len, hlen) = match b[1] & 0x7f {
        126 if b.len() < 4 => return Parsed::Partial,
        126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() < 10 => return Parsed::Partial,
        127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()).min(usize::MAX as u64 / 2) as usize, 10),
        l => (l as usize, 2),
    };
    if hlen + len > BUF {
        return Parsed::Bad("frame larger than the read buffer");
    }
    if b.len() < hlen + len {
        return Parsed::Partial;
    }
    Parsed::Frame { fin: b[0] & 0x80 != 0, op: b[0] & 0x0f, start: hlen, end: hlen + len }
}

/// Append a masked frame (payload ≤ 125 bytes).
fn push_frame(out: &mut Vec<u8>, rng: &mut u32, op: u8, payload: &[u8]) {
    debug_assert!(payload.len() <= 125);
    let key = xorshift(rng).to_le_bytes();
    out.push(0x80 | op);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// A socket address in the layout bind()/connect() take, built from safe struct literals (no
/// zeroed sockaddr_storage and no pointer casts to fill it in).
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    fn new(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(v4) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(v6) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            }),
        }
    }

    /// Pointer and length to pass to bind()/connect(): the pointer is to the struct inside `self`
    /// (valid while `self` is alive and not moved) and the length is exactly that struct's size.
    fn as_ptr(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            RawAddr::V4(sin) => (std::ptr::from_ref(sin).cast(), std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t),
            RawAddr::V6(sin6) => (std::ptr::from_ref(sin6).cast(), std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t),
        }
    }
}

/// A non-blocking TCP socket, bound to `src` if given, with connect() started.
fn start_connect(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<OwnedFd> {
    let domain = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket() takes no pointers; any argument values are sound (bad ones give an error).
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(errno());
    }
    // SAFETY: `raw` is a new open fd (socket() succeeded) that nothing else refers to; the OwnedFd
    // becomes its only owner and closes it exactly once, also on the error returns below.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(ip) = src {
        // Let connect() pick the source port per 4-tuple, so one source address can reach many
        // ports per destination instead of exhausting its ephemeral range at bind() time.
        let one: libc::c_int = 1;
        // SAFETY: optval points to `one`, a live c_int on this stack frame, and optlen is
        // size_of::<c_int>(), so the kernel reads exactly that int; `raw` is open (owned by `fd`).
        // The result is ignored: where the option is unsupported, bind() still works (it then
        // reserves a port itself).
        unsafe {
            libc::setsockopt(
                raw,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                std::ptr::from_ref(&one).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let sa = RawAddr::new(SocketAddr::new(ip, 0));
        let (ptr, len) = sa.as_ptr();
        // SAFETY: `ptr`/`len` describe the sockaddr_in/sockaddr_in6 inside `sa`, which lives until
        // the end of this block; the kernel only reads `len` bytes during the call. `raw` is open.
        if unsafe { libc::bind(raw, ptr, len) } < 0 {
            return Err(errno());
        }
    }
    let sa = RawAddr::new(dst);
    let (ptr, len) = sa.as_ptr();
    // SAFETY: as for bind(): `ptr`/`len` describe the struct inside `sa`, alive for the whole
    // call, and the kernel copies the address before connect() returns. `raw` is open.
    if unsafe { libc::connect(raw, ptr, len) } < 0 {
        let e = errno();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(fd)
}

/// What a lane's I/O step ended with.
enum Step {
    /// Waiting for the next event.
    Wait,
    /// The attempt failed before the handshake completed.
    Fail(String),
    /// The connection is over after a completed handshake (clean: the close handshake completed).
    Done { clean: bool },
}

impl Engine {
    fn phase(&self) -> u8 {
        self.st.phase
    }

    fn set_deadline(&mut self, i: usize, at: u64) {
        self.lanes[i].deadline = at;
        self.next_deadline = self.next_deadline.min(at);
    }

    fn epoll_ctl(&self, op: libc::c_int, i: usize, out: bool) -> io::Result<()> {
        let l = &self.lanes[i];
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET | if out { libc::EPOLLOUT } else { 0 }) as u32,
            u64: ((l.gen as u64) << 32) | i as u64,
        };
        // SAFETY: `ev` is a live, initialised epoll_event on this stack frame for the whole call
        // (the kernel copies it; it keeps no pointer). `self.ep` is the epoll fd this engine owns
        // until the end of run(), and the lane's fd is its own open socket (or -1: EBADF).
        if unsafe { libc::epoll_ctl(self.ep, op, l.raw_fd(), &mut ev) } < 0 {
            return Err(errno());
        }
        Ok(())
    }

    /// Start the next connection of lane `i`.
    fn start(&mut self, i: usize) {
        let now = now_us();
        let src = if self.sources.is_empty() { None } else { Some(self.sources[self.lanes[i].seq % self.sources.len()]) };
        self.lanes[i].seq += self.lanes.len();
        self.lanes[i].t0 = now;
        let fd = match start_connect(self.dst, src) {
            Ok(fd) => fd,
            Err(e) => return self.fail(i, format!("tcp: {e}")),
        };
        let key_at = self.key_at;
        let l = &mut self.lanes[i];
        l.fd = Some(fd);
        l.len = 0;
        l.got_close = false;
        l.counted = false;
        l.want_out = false;
        l.out.clear();
        l.out.extend_from_slice(&self.request);
        l.wpos = 0;
        new_key(&mut l.rng, &mut l.out[key_at..key_at + 24], &mut l.expect);
        if let Err(e) = self.epoll_ctl(libc::EPOLL_CTL_ADD, i, false) {
            return self.fail(i, format!("epoll_ctl: {e}"));
        }
        self.set_deadline(i, now + self.connect_timeout);
        // On loopback the TCP handshake has normally completed by the time connect() returns, so
        // the request usually goes out right away; otherwise flush() waits for EPOLLOUT.
        self.lanes[i].state = State::Connecting;
        match self.flush(i) {
            Ok(true) => self.lanes[i].state = State::Response,
            Ok(false) => {}
            Err(e) => self.fail(i, format!("tcp: {e}")),
        }
    }

    /// Send what is queued. Ok(true): all sent; Ok(false): waiting for EPOLLOUT.
    fn flush(&mut self, i: usize) -> io::Result<bool> {
        loop {
            let l = &mut self.lanes[i];
            if l.wpos == l.out.len() {
                l.out.clear();
                l.wpos = 0;
                return Ok(true);
            }
            let rest = &l.out[l.wpos..];
            // SAFETY: `rest` borrows `l.out`, which is not touched during the call, so the pointer
            // is valid for reads of exactly `rest.len()` bytes; the kernel only reads them.
            // MSG_NOSIGNAL: a peer reset gives EPIPE instead of SIGPIPE.
            let n = unsafe { libc::send(l.raw_fd(), rest.as_ptr().cast::<libc::c_void>(), rest.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                l.wpos += n as usize;
                continue;
            }
            let e = errno();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    if !l.want_out {
                        l.want_out = true;
                        self.epoll_ctl(libc::EPOLL_CTL_MOD, i, true)?;
                    }
                    return Ok(false);
                }
                _ => return Err(e),
            }
        }
    }

    fn close_fd(&mut self, i: usize) {
        let l = &mut self.lanes[i];
        if let Some(fd) = l.fd.take() {
            drop(fd); // close()
            l.gen = l.gen.wrapping_add(1);
        }
    }

    fn fail(&mut self, i: usize, e: String) {
        self.close_fd(i);
        if self.phase() == MEASURE {
            self.st.failed += 1;
        }
        if self.st.first_error.is_none() {
            self.st.first_error = Some(e);
        }
        self.lanes[i].state = State::Pause;
        self.set_deadline(i, now_us() + us(RETRY_PAUSE));
    }

    fn done(&mut self, i: usize, clean: bool) {
        self.close_fd(i);
        if !clean && self.lanes[i].counted {
            self.st.unclean_close += 1;
        }
        if self.phase() < STOP {
            self.start(i);
        }
    }

    fn finish(&mut self, i: usize, step: Step) {
        match step {
            Step::Wait => {}
            Step::Fail(e) => self.fail(i, e),
            Step::Done { clean } => self.done(i, clean),
        }
    }

    /// The opening handshake of lane `i` completed: count it, start the close handshake.
    fn handshake_done(&mut self, i: usize) -> Step {
        let now = now_us();
        let measuring = self.phase() == MEASURE;
        if measuring {
            self.st.handshakes += 1;
            self.st.hist.record(now - self.lanes[i].t0);
        }
        let l = &mut self.lanes[i];
        l.counted = measuring;
        l.state = State::Closing;
        push_frame(&mut l.out, &mut l.rng, 0x8, &1000u16.to_be_bytes());
        self.set_deadline(i, now + us(CLOSE_TIMEOUT));
        match self.flush(i) {
            Ok(_) => Step::Wait,
            Err(_) => Step::Done { clean: false },
        }
    }

    fn on_event(&mut self, i: usize, events: u32) {
        let step = if self.lanes[i].state == State::Connecting {
            match self.flush(i) {
                Ok(true) => {
                    self.lanes[i].state = State::Response;
                    self.on_readable(i, events)
                }
                Ok(false) => Step::Wait,
                Err(e) => Step::Fail(format!("tcp: {e}")),
            }
        } else {
            if self.lanes[i].wpos < self.lanes[i].out.len() {
                if let Err(e) = self.flush(i) {
                    let step = if self.lanes[i].state == State::Closing { Step::Done { clean: false } } else { Step::Fail(format!("tcp: {e}")) };
                    return self.finish(i, step);
                }
            }
            self.on_readable(i, events)
        };
        self.finish(i, step);
    }

    /// Read what the socket has and act on it.
    fn on_readable(&mut self, i: usize, events: u32) -> Step {
        let hup = events & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        loop {
            let l = &mut self.lanes[i];
            let space = l.buf.len() - l.len;
            if space == 0 {
                return self.fail_or_unclean(i, "response head too large".into());
            }
            let fd = l.raw_fd();
            let dst = &mut l.buf[l.len..];
            // SAFETY: `dst` is an exclusive borrow of the lane's buffer with `dst.len() == space`,
            // so the kernel may write up to `space` bytes there; u8 has no invalid values and
            // `l.len` is advanced only by the count recv() reports as written.
            let n = unsafe { libc::recv(fd, dst.as_mut_ptr().cast::<libc::c_void>(), dst.len(), 0) };
            let eof = if n > 0 {
                l.len += n as usize;
                // A short read drained the socket; if the FIN had already arrived when epoll
                // reported this event, everything before it has now been read: that is EOF, no
                // need for one more recv() to see it return 0.
                (n as usize) < space && hup
            } else if n == 0 {
                true
            } else {
                let e = errno();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => false,
                    _ => return self.fail_or_unclean(i, format!("tcp: {e}")),
                }
            };
            match self.process(i) {
                Step::Wait => {}
                step => return step,
            }
            if eof {
                return match self.lanes[i].state {
                    State::Closing => Step::Done { clean: self.lanes[i].got_close },
                    State::Response => Step::Fail("handshake: connection closed during handshake".into()),
                    _ => Step::Fail("handshake: closed during socket.io connect".into()),
                };
            }
            if n <= 0 || (n as usize) < space {
                return Step::Wait;
            }
        }
    }

    fn fail_or_unclean(&self, i: usize, e: String) -> Step {
        if self.lanes[i].state == State::Closing {
            Step::Done { clean: false }
        } else {
            Step::Fail(e)
        }
    }

    /// Consume complete units (the response head, then frames) from lane `i`'s buffer.
    fn process(&mut self, i: usize) -> Step {
        let mut pos = 0;
        let step = loop {
            let l = &mut self.lanes[i];
            let b = &l.buf[pos..l.len];
            if l.state == State::Response {
                let Some(end) = crate::ws::find(b, b"\r\n\r\n") else { break Step::Wait };
                if let Err(e) = check_response(&b[..end + 4], &l.expect) {
                    break Step::Fail(format!("handshake: {e}"));
                }
                pos += end + 4;
                if self.proto == Proto::SocketIo {
                    l.state = State::EioOpen;
                } else if let s @ (Step::Fail(_) | Step::Done { .. }) = self.handshake_done(i) {
                    break s;
                }
                continue;
            }
            let (fin, op, start, end) = match parse_frame(b) {
                Parsed::Partial => break Step::Wait,
                Parsed::Bad(_) if l.state == State::Closing => break Step::Done { clean: false },
                Parsed::Bad(e) => break Step::Fail(format!("handshake: {e}")),
                Parsed::Frame { fin, op, start, end } => (fin, op, pos + start, pos + end),
            };
            pos = end;
            if l.state == State::Closing {
                if op == 0x8 && !l.got_close {
                    l.got_close = true;
                    let code = match end - start {
                        0 => 1005,
                        1 => 1002, // a 1-byte close payload is itself a protocol error
                        _ => u16::from_be_bytes([l.buf[start], l.buf[start + 1]]),
                    };
                    if code != 1000 && code != 1005 && l.counted {
                        self.st.close_code_not_1000 += 1;
                        self.st.first_unexpected_close_code.get_or_insert(code);
                    }
                }
                // After the close frame the server sends nothing more; anything else before it
                // (a late message) is read and ignored.
                continue;
            }
            // Socket.IO connect: EioOpen / SioAck.
            let msg = &l.buf[start..end];
            match op {
                0x8 => break Step::Fail("handshake: closed during socket.io connect".into()),
                0x9 => {
                    let (buf, out, rng) = (&l.buf, &mut l.out, &mut l.rng);
                    push_frame(out, rng, 0xA, &buf[start..end]);
                }
                0x0..=0x2 if !fin => break Step::Fail("handshake: fragmented message during socket.io connect".into()),
                0x1 | 0x2 => {
                    if msg == b"2" {
                        push_frame(&mut l.out, &mut l.rng, 0x1, b"3");
                    } else if l.state == State::EioOpen && msg.first() == Some(&b'0') {
                        push_frame(&mut l.out, &mut l.rng, 0x1, b"40");
                        l.state = State::SioAck;
                    } else if l.state == State::SioAck && msg.starts_with(b"40") {
                        if let s @ (Step::Fail(_) | Step::Done { .. }) = self.handshake_done(i) {
                            break s;
                        }
                    } else if l.state == State::SioAck && msg.starts_with(b"44") {
                        break Step::Fail(format!("handshake: socket.io connect refused: {}", String::from_utf8_lossy(msg)));
                    }
                }
                _ => {}
            }
            if !self.lanes[i].out.is_empty() && self.lanes[i].state != State::Closing {
                if let Err(e) = self.flush(i) {
                    break Step::Fail(format!("tcp: {e}"));
                }
            }
        };
        if !matches!(step, Step::Wait) {
            return step;
        }
        let l = &mut self.lanes[i];
        if pos > 0 {
            l.buf.copy_within(pos..l.len, 0);
            l.len -= pos;
        }
        Step::Wait
    }

    /// Handle lanes whose deadline passed.
    fn expire(&mut self, now: u64) {
        let mut next = u64::MAX;
        for i in 0..self.lanes.len() {
            if self.lanes[i].deadline <= now {
                match self.lanes[i].state {
                    State::Pause => self.start(i),
                    State::Closing => self.done(i, false),
                    State::Connecting | State::Response => self.fail(i, "handshake timeout".into()),
                    State::EioOpen | State::SioAck => self.fail(i, "handshake timeout (socket.io connect)".into()),
                }
            }
            next = next.min(self.lanes[i].deadline);
        }
        self.next_deadline = next;
    }
}

pub fn run(ctx: Ctx, args: &Args) -> (Value, String) {
    let n: usize = args.num("conns", 50usize).max(1);
    let dur = args.secs("duration", 5.0);
    let (request, key_at) = request_template(&ctx.targets[0].path, &ctx.targets[0].host_header);
    // SAFETY: epoll_create1() takes no pointers. The fd it returns is closed once, at the end of
    // this function, after its last use.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        crate::die(&format!("epoll_create1: {}", errno()));
    }
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos() | 1;
    let lanes = (0..n)
        .map(|i| Lane {
            fd: None,
            gen: 0,
            state: State::Pause,
            deadline: 0,
            t0: 0,
            seq: i,
            counted: false,
            got_close: false,
            rng: (seed ^ (i as u32).wrapping_mul(0x9e37_79b9)).max(1),
            out: Vec::with_capacity(request.len() + 64),
            wpos: 0,
            want_out: false,
            expect: [0; 28],
            buf: vec![0u8; BUF].into_boxed_slice(),
            len: 0,
        })
        .collect();
    let mut e = Engine {
        ep,
        proto: ctx.proto,
        dst: ctx.targets[0].addr,
        sources: ctx.sources.clone(),
        connect_timeout: us(ctx.connect_timeout),
        request,
        key_at,
        lanes,
        next_deadline: u64::MAX,
        st: Stats { phase: WARMUP, handshakes: 0, failed: 0, unclean_close: 0, close_code_not_1000: 0, first_unexpected_close_code: None, first_error: None, hist: Hist::new() },
    };
    for i in 0..n {
        e.start(i);
    }
    // Timeline as in the other modes: warm up, sample, measure, sample.
    let mut phase_end = now_us() + us(ctx.warmup);
    let mut a = None;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n.min(1024)];
    let b = loop {
        let now = now_us();
        if now >= phase_end {
            if e.st.phase == WARMUP {
                a = Some(sys::sample(&ctx.server_pids, &ctx.aux_pids));
                e.st.phase = MEASURE;
                phase_end = now_us() + us(dur);
            } else {
                e.st.phase = STOP;
                break sys::sample(&ctx.server_pids, &ctx.aux_pids);
            }
            continue;
        }
        if now >= e.next_deadline {
            e.expire(now);
        }
        let wake = phase_end.min(e.next_deadline);
        let timeout_ms = (wake.saturating_sub(now)).div_ceil(1000).min(1000) as libc::c_int;
        // SAFETY: `events` is a Vec of `events.len()` (1..=1024, fits c_int) initialised
        // epoll_events, exclusively borrowed for the call, and maxevents is that length, so the
        // kernel writes only inside it (epoll_event is plain data: any bytes are a valid value).
        // `e.ep` is the open epoll fd created above.
        let k = unsafe { libc::epoll_wait(e.ep, events.as_mut_ptr(), events.len() as libc::c_int, timeout_ms) };
        if k < 0 {
            let err = errno();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            crate::die(&format!("epoll_wait: {err}"));
        }
        for ev in &events[..k as usize] {
            let (flags, data) = (ev.events, ev.u64);
            let i = (data & 0xffff_ffff) as usize;
            let l = &e.lanes[i];
            if l.fd.is_none() || l.gen != (data >> 32) as u32 {
                continue;
            }
            e.on_event(i, flags);
        }
    };
    let a = a.expect("sampled at the end of the warm-up");
    let count = e.st.handshakes;
    let w = sys::window_json(&a, &b, count);
    let rate = count as f64 / w["wall_s"].as_f64().unwrap_or(1.0);
    let h = &e.st.hist;
    let human = format!(
        "connect {n} loops: {:.0} handshakes/s, handshake p50 {} us p99 {} us, {} failed, {} unclean closes; {}",
        rate,
        h.percentile(50.0),
        h.percentile(99.0),
        e.st.failed,
        e.st.unclean_close,
        fmt_server(&w)
    );
    let out = merge(
        base_json("connect", &ctx, json!({ "conns": n, "duration_s": dur.as_secs_f64(), "warmup_s": ctx.warmup.as_secs_f64() })),
        json!({
            "handshakes": count,
            "handshakes_per_s": rate.round(),
            "failed": e.st.failed,
            "unclean_close": e.st.unclean_close,
            "close_code_not_1000": e.st.close_code_not_1000,
            "first_unexpected_close_code": e.st.first_unexpected_close_code,
            "first_error": e.st.first_error,
            "handshake_us": h.json(),
            "window": w,
        }),
    );
    for i in 0..n {
        e.close_fd(i);
    }
    // SAFETY: `e.ep` came from epoll_create1() above, is owned by this function alone and is not
    // used after this (the lane sockets registered in it are already closed).
    unsafe { libc::close(e.ep) };
    (out, human)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn rfc_example_accept() {
        let mut e = [0u8; 28];
        accept_for(b"dGhlIHNhbXBsZSBub25jZQ==", &mut e);
        assert_eq!(&e, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn request_and_fresh_keys() {
        let (mut req, at) = request_template("/ws", "127.0.0.1:9000");
        let mut rng = 7u32;
        let mut e1 = [0u8; 28];
        new_key(&mut rng, &mut req[at..at + 24], &mut e1);
        let k1 = req[at..at + 24].to_vec();
        let text = String::from_utf8(req.clone()).unwrap();
        assert!(text.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(text.contains(&format!("\r\nSec-WebSocket-Key: {}\r\n", String::from_utf8_lossy(&k1))));
        assert!(text.ends_with("\r\nSec-WebSocket-Version: 13\r\n\r\n"));
        let mut check = [0u8; 28];
        accept_for(&k1, &mut check);
        assert_eq!(e1, check);
        let mut e2 = [0u8; 28];
        new_key(&mut rng, &mut req[at..at + 24], &mut e2);
        assert_ne!(&req[at..at + 24], &k1[..], "a new key per connection");
        assert_ne!(e1, e2);
    }

    fn head(accept: &str, extra: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
            .into_bytes()
    }

    #[test]
    fn response_checks() {
        let ok = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert_eq!(check_response(&head("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ""), ok), Ok(()));
        // header names are case-insensitive, values trimmed, Connection is a token list
        let h = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, upgrade\r\nsec-websocket-accept:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n\r\n";
        assert_eq!(check_response(h, ok), Ok(()));
        assert!(check_response(&head("AAAALMBiTxaQ9kYGzzhZRbK+xOo=", ""), ok).unwrap_err().contains("Accept"));
        let h = b"HTTP/1.1 200 OK\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(h, ok).unwrap_err().contains("status"));
        let h = b"HTTP/1.1 1010 x\r\n\r\n";
        assert!(check_response(h, ok).unwrap_err().contains("status"));
        let h = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(h, ok).unwrap_err().contains("Upgrade: websocket"));
        let h = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(h, ok).unwrap_err().contains("Connection"));
        let h = head("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(check_response(&h, ok).unwrap_err().contains("did not offer"));
    }

    #[test]
    fn frames() {
        assert_eq!(parse_frame(&[0x88]), Parsed::Partial);
        assert_eq!(parse_frame(&[0x88, 0x02, 0x03]), Parsed::Partial);
        assert_eq!(parse_frame(&[0x88, 0x02, 0x03, 0xe8, 0xff]), Parsed::Frame { fin: true, op: 8, start: 2, end: 4 });
        assert_eq!(parse_frame(&[0x81, 0x7e, 0x00]), Parsed::Partial);
        let mut big = vec![0x01, 0x7e, 0x01, 0x00];
        big.resize(4 + 256, b'x');
        assert_eq!(parse_frame(&big), Parsed::Frame { fin: false, op: 1, start: 4, end: 260 });
        assert!(matches!(parse_frame(&[0x81, 0x82, 1, 2, 3, 4, 0, 0]), Parsed::Bad(_)), "masked server frame");
        assert!(matches!(parse_frame(&[0xc1, 0x00]), Parsed::Bad(_)), "RSV1 without an extension");
        assert!(matches!(parse_frame(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]), Parsed::Bad(_)), "too large");
        let mut out = Vec::new();
        let mut rng = 1u32;
        push_frame(&mut out, &mut rng, 0x8, &1000u16.to_be_bytes());
        assert_eq!(out.len(), 8);
        assert_eq!(&out[..2], &[0x88, 0x82]);
        assert_eq!([out[6] ^ out[2], out[7] ^ out[3]], [0x03, 0xe8]);
    }

    // ---- end to end against small blocking test servers ----

    #[derive(Clone, Copy, PartialEq)]
    enum Srv {
        /// Correct server; the 101 response is written in two pieces.
        Good,
        /// Correct Socket.IO server.
        SocketIo,
        /// Wrong Sec-WebSocket-Accept.
        BadAccept,
        /// Answers our close frame by closing TCP without a close frame.
        NoCloseFrame,
        /// Replies to our close with code 1002.
        Close1002,
    }

    fn read_head(s: &mut TcpStream) -> Option<String> {
        let mut v = Vec::new();
        let mut b = [0u8; 1];
        while !v.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).ok()? == 0 {
                return None;
            }
            v.push(b[0]);
        }
        String::from_utf8(v).ok()
    }

    /// Read one client frame; returns (first byte, masked?, payload unmasked).
    fn read_frame(s: &mut TcpStream) -> Option<(u8, bool, Vec<u8>)> {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).ok()?;
        let masked = h[1] & 0x80 != 0;
        let len = (h[1] & 0x7f) as usize;
        if len >= 126 {
            return Some((h[0], masked, vec![0; 126]));
        }
        let mut key = [0u8; 4];
        if masked {
            s.read_exact(&mut key).ok()?;
        }
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).ok()?;
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
        Some((h[0], masked, p))
    }

    fn frame(op: u8, p: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | op, p.len() as u8];
        v.extend_from_slice(p);
        v
    }

    /// One connection of a test server. Err: the client broke the protocol. An I/O error (the
    /// client went away, e.g. when the run ends) is not an error here.
    fn serve(mut s: TcpStream, kind: Srv) -> Result<(), String> {
        let Some(h) = read_head(&mut s) else { return Ok(()) };
        let Some(key) = h.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")) else { return Err(format!("no key in {h}")) };
        let mut acc = [0u8; 28];
        accept_for(key.as_bytes(), &mut acc);
        if kind == Srv::BadAccept {
            acc[0] ^= 1;
        }
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            String::from_utf8_lossy(&acc)
        );
        let (a, b) = resp.as_bytes().split_at(30);
        let io = |r: std::io::Result<()>| r.is_ok();
        if !io(s.write_all(a)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
        if !io(s.write_all(b)) {
            return Ok(());
        }
        if kind == Srv::SocketIo {
            if !io(s.write_all(&frame(1, br#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#))) {
                return Ok(());
            }
            match read_frame(&mut s) {
                None => return Ok(()),
                Some((0x81, true, p)) if p == b"40" => {}
                Some(f) => return Err(format!("expected a masked text frame 40, got {f:?}")),
            }
            if !io(s.write_all(&frame(1, br#"40{"sid":"y"}"#))) {
                return Ok(());
            }
        }
        let code = match read_frame(&mut s) {
            None => return Ok(()),
            Some((0x88, true, code)) if code == 1000u16.to_be_bytes() => code,
            Some(f) => return Err(format!("expected a masked close frame 1000, got {f:?}")),
        };
        let ok = match kind {
            Srv::NoCloseFrame => true,
            Srv::Close1002 => io(s.write_all(&frame(8, &1002u16.to_be_bytes()))),
            _ => io(s.write_all(&frame(8, &code))),
        };
        // Server closes TCP first, then sees the client's FIN (and nothing else).
        if !ok || s.shutdown(std::net::Shutdown::Write).is_err() {
            return Ok(());
        }
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) if !rest.is_empty() => Err(format!("{} bytes after the close frame", rest.len())),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                RESETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Connections the client reset instead of closing with a FIN (all tests together).
    static RESETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn run_against(kind: Srv) -> Value {
        crate::START.get_or_init(std::time::Instant::now);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let violations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let v2 = violations.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let v = v2.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(s, kind) {
                        v.lock().unwrap().push(e);
                    }
                });
            }
        });
        let (url, proto) = if kind == Srv::SocketIo {
            (format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"), Proto::SocketIo)
        } else {
            (format!("ws://127.0.0.1:{port}/ws"), Proto::Plain)
        };
        let ctx = Ctx {
            targets: vec![crate::ws::parse_url(&url).unwrap()],
            urls: vec![url],
            proto,
            sources: vec!["127.0.0.1".parse().unwrap()],
            server_pids: vec![],
            aux_pids: vec![],
            warmup: Duration::from_millis(50),
            connect_concurrency: 1,
            connect_timeout: Duration::from_secs(2),
            deflate: None,
        };
        let map: HashMap<String, Vec<String>> = [("conns", "4"), ("duration", "0.4")].iter().map(|(k, v)| (k.to_string(), vec![v.to_string()])).collect();
        let j = run(ctx, &crate::Args { map }).0;
        let v = violations.lock().unwrap();
        assert!(v.is_empty(), "the test server saw protocol errors: {v:?}");
        j
    }

    /// Handshakes whose close was still in progress when the run stopped are neither clean nor
    /// unclean; there is at most one per lane.
    fn about(j: &Value, k: &str, n: u64) -> bool {
        let v = j[k].as_u64().unwrap();
        v <= n && v + 4 >= n
    }

    #[test]
    fn end_to_end_good() {
        let j = run_against(Srv::Good);
        assert!(j["handshakes"].as_u64().unwrap() > 10, "{j}");
        assert_eq!(j["failed"], 0, "{j}");
        assert_eq!(j["unclean_close"], 0, "{j}");
        assert_eq!(j["close_code_not_1000"], 0, "{j}");
        // The client closes with a FIN once it has read everything: no RST, except for the few
        // connections cut when the runs stop (at most one per lane per test run).
        assert!(RESETS.load(std::sync::atomic::Ordering::Relaxed) <= 4 * 5, "{} resets", RESETS.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn end_to_end_socketio() {
        let j = run_against(Srv::SocketIo);
        assert!(j["handshakes"].as_u64().unwrap() > 10, "{j}");
        assert_eq!(j["failed"], 0, "{j}");
        assert_eq!(j["unclean_close"], 0, "{j}");
    }

    #[test]
    fn end_to_end_bad_accept_is_a_failure() {
        let j = run_against(Srv::BadAccept);
        assert_eq!(j["handshakes"], 0, "{j}");
        assert!(j["failed"].as_u64().unwrap() > 0, "{j}");
        assert!(j["first_error"].as_str().unwrap().contains("Sec-WebSocket-Accept"), "{j}");
    }

    #[test]
    fn end_to_end_missing_close_frame_is_unclean() {
        let j = run_against(Srv::NoCloseFrame);
        assert!(j["handshakes"].as_u64().unwrap() > 10, "{j}");
        assert!(about(&j, "unclean_close", j["handshakes"].as_u64().unwrap()), "{j}");
    }

    #[test]
    fn end_to_end_other_close_code_is_reported() {
        let j = run_against(Srv::Close1002);
        assert_eq!(j["unclean_close"], 0, "{j}");
        assert!(about(&j, "close_code_not_1000", j["handshakes"].as_u64().unwrap()), "{j}");
        assert_eq!(j["first_unexpected_close_code"], 1002, "{j}");
    }
}
