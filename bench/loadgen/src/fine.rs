//! `--shape fine`: clients shaped like real ones. Every connection is a tokio-tungstenite
//! `WebSocketStream` (TCP_NODELAY, `write_buffer_size` 0), every message is its own `send` — one
//! frame per write syscall — and a connection with W messages in flight sends the next one only
//! when a reply (echo) or a completed broadcast (fanout, chat) frees a slot.
//!
//! The measurements are the batched shape's (modes.rs): the same phases, counters, histograms and
//! report functions; only the client side differs. Workloads: `echo`, `fanout` and `chat` (many
//! rooms of 10–50 members, each member sending to its room now and then).

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::modes::{
    base_json, body_arg, fan_report, finish_fanout, measure, merge, room_sub_msg, run_echo, spawn_reaper, wait_until, EchoState, FanArgs,
    FanState, Pending, MEASURE, STOP, WARMUP,
};
use crate::payload::Body;
use crate::sys::round3;
use crate::ws::{self, Proto};
use crate::{now_us, Args, Ctx};

type Ws = WebSocketStream<TcpStream>;

/// Open a fine-shaped connection to `ctx.urls[url]` (index into the targets) as connection `i`
/// (source address round-robin like the batched shape). For Socket.IO, also the Engine.IO open
/// packet and the namespace CONNECT round trip.
async fn connect(ctx: &Ctx, url: usize, i: usize, read_buf: usize) -> Result<Ws, String> {
    let fut = async {
        let target = &ctx.targets[url];
        let sock = ws::socket_for(target.addr, ctx.source(i)).map_err(|e| e.to_string())?;
        let stream = sock.connect(target.addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        // write_buffer_size 0: every message is written to the socket as soon as it is sent (and
        // `send` flushes anyway), so no two frames share a write.
        let cfg = WebSocketConfig::default().write_buffer_size(0).read_buffer_size(read_buf);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(ctx.urls[url].as_str(), stream, Some(cfg)).await.map_err(|e| e.to_string())?;
        if ctx.proto == Proto::SocketIo {
            socketio_connect(&mut ws).await?;
        }
        Ok(ws)
    };
    match timeout(ctx.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err("handshake timeout".into()),
    }
}

/// Engine.IO v4 open packet `0{…}`, then the Socket.IO v5 namespace CONNECT `40` → `40{…}`.
async fn socketio_connect(ws: &mut Ws) -> Result<(), String> {
    let mut opened = false;
    while let Some(m) = ws.next().await {
        let m = m.map_err(|e| e.to_string())?;
        let Some(b) = payload(&m) else { continue };
        if !opened && b.first() == Some(&b'0') {
            opened = true;
            ws.send(Message::text("40")).await.map_err(|e| e.to_string())?;
        } else if opened && b.starts_with(b"40") {
            return Ok(());
        } else if b == b"2" {
            ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
        }
    }
    Err("socket.io: closed during connect".into())
}

/// The bytes of a data message (text or binary); None for control frames.
#[inline]
fn payload(m: &Message) -> Option<&[u8]> {
    match m {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// What a fine connection does with a message that is not the one it waits for: answers an
/// Engine.IO ping (`2` → `3`, one write); returns whether it was one.
async fn engine_ping(ws: &mut Ws, proto: Proto, b: &[u8]) -> bool {
    if proto == Proto::SocketIo && b == b"2" {
        let _ = ws.send(Message::text("3")).await;
        return true;
    }
    false
}

/// Wire bytes of a server frame carrying `n` payload bytes (unmasked, uncompressed).
#[inline]
fn frame_bytes(n: usize) -> u64 {
    (n + if n < 126 {
        2
    } else if n < 65536 {
        4
    } else {
        10
    }) as u64
}

fn text(bytes: Vec<u8>) -> Message {
    Message::Text(Utf8Bytes::try_from(bytes).expect("the load generator sends ASCII"))
}

// ------------------------------------------------------------------------------------------------
// echo
// ------------------------------------------------------------------------------------------------

pub async fn echo(ctx: Ctx, args: &Args) -> (Value, String) {
    run_echo(ctx, args, "echo (fine)", |msg| Utf8Bytes::try_from(msg).expect("ascii"), echo_conn).await
}

async fn echo_conn(ctx: Rc<Ctx>, st: Rc<EchoState<Utf8Bytes>>, i: usize, k: usize) {
    let permit = st.sem.acquire().await.unwrap();
    let r = connect(&ctx, i % ctx.targets.len(), i, 16 * 1024).await;
    drop(permit);
    let mut ws = match r {
        Ok(c) => c,
        Err(e) => return st.conns.fail(e),
    };
    st.conns.ok.set(st.conns.ok.get() + 1);
    st.phase.wait_for(WARMUP).await;
    let proto = ctx.proto;
    let closed_early = || {
        if st.phase.get() < STOP {
            st.conns.closed_early.set(st.conns.closed_early.get() + 1);
        }
    };
    // W messages in flight, each its own write.
    let mut sent_at: VecDeque<u64> = VecDeque::with_capacity(k);
    for _ in 0..k {
        sent_at.push_back(now_us());
        if ws.send(Message::Text(st.msg.clone())).await.is_err() {
            return closed_early();
        }
    }
    while let Some(m) = ws.next().await {
        let Ok(m) = m else { break };
        let Some(b) = payload(&m) else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        if !proto.is_event(b, "echo") {
            if !engine_ping(&mut ws, proto, b).await {
                st.other.set(st.other.get() + 1);
            }
            continue;
        }
        let now = now_us();
        let t = sent_at.pop_front().unwrap_or(now);
        let phase = st.phase.get();
        if phase == MEASURE {
            st.hist.borrow_mut().record(now.saturating_sub(t));
            st.replies.set(st.replies.get() + 1);
        }
        if phase >= STOP {
            return;
        }
        // The reply freed a slot: the next message, in its own write.
        sent_at.push_back(now_us());
        if ws.send(Message::Text(st.msg.clone())).await.is_err() {
            break;
        }
    }
    closed_early()
}

// ------------------------------------------------------------------------------------------------
// fanout and chat: subscribers/members, publishers
// ------------------------------------------------------------------------------------------------

/// Join `room` (send `sub`, wait for `subscribed`); counts the member on success.
async fn join(ctx: &Ctx, st: &FanState, ws: &mut Ws, i: usize, room: usize, sub_msg: &[u8]) -> Result<(), String> {
    let proto = ctx.proto;
    ws.send(text(sub_msg.to_vec())).await.map_err(|e| format!("subscriber {i}: {e}"))?;
    let deadline = Instant::now() + ctx.connect_timeout;
    loop {
        let m = match timeout(deadline.saturating_duration_since(Instant::now()), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => return Err(format!("subscriber {i}: no `subscribed` reply")),
        };
        let Some(b) = payload(&m) else { continue };
        if proto.is_event(b, "subscribed") {
            break;
        }
        engine_ping(ws, proto, b).await;
    }
    st.subscribed.set(st.subscribed.get() + 1);
    let u = &st.subscribed_per_url[i % ctx.targets.len()];
    u.set(u.get() + 1);
    st.room_members[room].set(st.room_members[room].get() + 1);
    Ok(())
}

/// A delivered message: a `bcast` is counted against its broadcast; anything else is `other`.
/// Returns false when the connection should stop (close frame).
async fn on_message(st: &FanState, ws: &mut Ws, proto: Proto, m: &Message) -> bool {
    let Some(b) = payload(m) else {
        return !matches!(m, Message::Close(_));
    };
    if proto.is_event(b, "bcast") {
        if let Some((seq, e)) = ws::field_u64(b, b"\"seq\":", 0) {
            if let Some((t, _)) = ws::field_u64(b, b"\"t\":", e) {
                if st.phase.get() == MEASURE {
                    st.wire_bytes.set(st.wire_bytes.get() + frame_bytes(b.len()));
                    st.payload_bytes.set(st.payload_bytes.get() + b.len() as u64);
                }
                st.delivered(seq, t, now_us());
                return true;
            }
        }
    }
    if !engine_ping(ws, proto, b).await {
        st.other.set(st.other.get() + 1);
    }
    true
}

/// Connects member `i` (a bounded number of handshakes at a time, `st.sem`) and joins its room;
/// `None` when either failed (counted in `st.conns`).
async fn open_member(ctx: &Ctx, st: &FanState, i: usize, room: usize, sub_msg: &[u8]) -> Option<Ws> {
    let permit = st.sem.acquire().await.unwrap();
    let mut ws = match connect(ctx, i % ctx.targets.len(), i, 4096).await {
        Ok(c) => c,
        Err(e) => {
            st.conns.fail(e);
            return None;
        }
    };
    st.conns.ok.set(st.conns.ok.get() + 1);
    let joined = join(ctx, st, &mut ws, i, room, sub_msg).await;
    drop(permit);
    match joined {
        Ok(()) => Some(ws),
        Err(e) => {
            st.conns.fail(e);
            None
        }
    }
}

/// A fan-out subscriber: joins, then only reads.
async fn fan_sub(ctx: Rc<Ctx>, st: Rc<FanState>, i: usize, room: usize, sub_msg: Rc<Vec<u8>>) {
    let Some(mut ws) = open_member(&ctx, &st, i, room, &sub_msg).await else { return };
    let proto = ctx.proto;
    while let Some(Ok(m)) = ws.next().await {
        if !on_message(&st, &mut ws, proto, &m).await {
            break;
        }
    }
    if st.phase.get() < STOP {
        st.conns.closed_early.set(st.conns.closed_early.get() + 1);
    }
}

/// Builds the broadcasts of one sender: `{"event":"bcast","data":{"room":…,"seq":n,"t":µs,…}}`.
struct Bcaster {
    body: Body,
    overhead: usize,
    proto: Proto,
    data: Vec<u8>,
    rng: u32,
}

impl Bcaster {
    fn new(proto: Proto, body: Body, seed: usize) -> Self {
        Bcaster {
            body,
            overhead: proto.envelope_overhead("bcast"),
            proto,
            data: Vec::with_capacity(body.size + 64),
            rng: 0x9e37_79b9u32.wrapping_mul(seed as u32 + 1) | 1,
        }
    }

    /// The next broadcast to `room_json` (with `members` joined), registered as pending for
    /// sender `p` (its window slot is taken until every member has it).
    fn next(&mut self, st: &FanState, p: usize, room_json: &str, members: usize) -> Message {
        let seq = st.next_seq.get();
        st.next_seq.set(seq + 1);
        let t = now_us();
        self.body.write(&mut self.data, room_json, seq, t, self.overhead, &mut self.rng);
        let mut msg = Vec::with_capacity(self.data.len() + self.overhead);
        self.proto.encode_event(&mut msg, "bcast", &self.data);
        st.pending.borrow_mut().insert(seq, Pending { t, remaining: members, publisher: p });
        st.inflight[p].set(st.inflight[p].get() + 1);
        st.sent.set(st.sent.get() + 1);
        text(msg)
    }
}

/// The fan-out publisher (not a member): keeps at most `window` broadcasts in flight, one write
/// each; a completed broadcast frees its slot.
async fn fan_pub(ctx: Rc<Ctx>, st: Rc<FanState>, mut ws: Ws, window: usize, body: Body, room: String, members: usize) {
    let proto = ctx.proto;
    let room_json = serde_json::to_string(&room).unwrap();
    let mut b = Bcaster::new(proto, body, 0);
    loop {
        if st.phase.get() >= STOP {
            return;
        }
        while st.inflight[0].get() < window {
            let m = b.next(&st, 0, &room_json, members);
            if ws.send(m).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = st.notify[0].notified() => {}
            m = ws.next() => match m {
                Some(Ok(m)) => {
                    if !on_message(&st, &mut ws, proto, &m).await {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

pub async fn fanout(ctx: Ctx, args: &Args) -> (Value, String) {
    let fa = FanArgs::from(args);
    let n = fa.subs;
    let ctx = Rc::new(ctx);
    let st = Rc::new(FanState::new(&ctx, 1, 1, fa.window));
    let t_open = Instant::now();
    let sub_msg = room_sub_msg(ctx.proto, &fa.room);
    for i in 0..n {
        tokio::task::spawn_local(fan_sub(ctx.clone(), st.clone(), i, 0, sub_msg.clone()));
    }
    wait_until(ctx.connect_timeout * 4 + Duration::from_secs((n / 500) as u64), || {
        st.subscribed.get() + st.conns.failed.get() + st.conns.closed_early.get() >= n
    })
    .await;
    let open_s = t_open.elapsed().as_secs_f64();
    let members = st.subscribed.get();
    let pub_error = match connect(&ctx, 0, n, 4096).await {
        Ok(_) if members == 0 => Some("no subscriber joined".to_string()),
        Ok(ws) => {
            if !fa.settle.is_zero() {
                sleep(fa.settle).await;
            }
            tokio::task::spawn_local(fan_pub(ctx.clone(), st.clone(), ws, fa.window, fa.body, fa.room.clone(), members));
            None
        }
        Err(e) => Some(format!("publisher: {e}")),
    };
    finish_fanout(&ctx, args, &st, &fa, "fanout (fine)", open_s, pub_error).await
}

// ------------------------------------------------------------------------------------------------
// chat
// ------------------------------------------------------------------------------------------------

/// Room sizes for `conns` members: uniform in `min..=max` from a fixed seed (the same rooms every
/// run); the remainder, if smaller than `min`, goes to the last room.
pub fn chat_rooms(conns: usize, min: usize, max: usize, seed: u32) -> Vec<usize> {
    let (min, max) = (min.max(1), max.max(min.max(1)));
    let mut rng = seed | 1;
    let mut sizes = Vec::new();
    let mut left = conns;
    while left > 0 {
        let s = min + ws::xorshift(&mut rng) as usize % (max - min + 1);
        if left < min && !sizes.is_empty() {
            *sizes.last_mut().unwrap() += left;
            break;
        }
        let s = s.min(left);
        sizes.push(s);
        left -= s;
    }
    sizes
}

struct ChatPlan {
    interval: Duration,
    window: usize,
    body: Body,
}

struct ChatExtra {
    /// Send times in the measured window that came while an earlier one still waited for a window
    /// slot, and were dropped (the offered rate was not met: the server, or the load generator,
    /// fell behind).
    skipped: Cell<u64>,
}

/// A chat member: joins its room, then sends a `bcast` to it every `interval` ± 50 % (the first
/// at a random point of the first interval) while reading everything its room delivers. At most
/// `window` of its own messages are in flight (not yet delivered to every member); a send time that
/// finds the window full waits for a slot, and while one send waits, further send times are
/// dropped and counted.
#[allow(clippy::too_many_arguments)]
async fn chat_member(
    ctx: Rc<Ctx>,
    st: Rc<FanState>,
    ex: Rc<ChatExtra>,
    plan: Rc<ChatPlan>,
    i: usize,
    room: usize,
    room_json: Rc<str>,
    sub_msg: Rc<Vec<u8>>,
) {
    let Some(mut ws) = open_member(&ctx, &st, i, room, &sub_msg).await else { return };
    let proto = ctx.proto;
    let mut b = Bcaster::new(proto, plan.body, i);
    let interval_us = plan.interval.as_micros().max(1) as u64;
    let jitter = |b: &mut Bcaster, frac: u64| Duration::from_micros(interval_us * frac / 1000 + ws::xorshift(&mut b.rng) as u64 % interval_us.max(1));
    let mut closed = false;
    // Read (and count) deliveries while waiting for the start.
    let start = st.phase.wait_for(WARMUP);
    tokio::pin!(start);
    loop {
        tokio::select! {
            _ = &mut start => break,
            m = ws.next() => match m {
                Some(Ok(m)) if on_message(&st, &mut ws, proto, &m).await => {}
                _ => { closed = true; break }
            }
        }
    }
    let members = st.room_members[room].get();
    let mut next = Instant::now() + jitter(&mut b, 0);
    let mut due = false;
    while !closed {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(m)) if on_message(&st, &mut ws, proto, &m).await => {}
                _ => break,
            },
            _ = sleep_until(next) => {
                if due && st.phase.get() == MEASURE {
                    ex.skipped.set(ex.skipped.get() + 1);
                }
                due = true;
                next += jitter(&mut b, 500);
            }
            _ = st.notify[i].notified(), if due => {}
        }
        if due && st.inflight[i].get() < plan.window && st.phase.get() < STOP {
            due = false;
            let m = b.next(&st, i, &room_json, members);
            if ws.send(m).await.is_err() {
                closed = true;
            }
        }
    }
    if st.phase.get() < STOP {
        st.conns.closed_early.set(st.conns.closed_early.get() + 1);
    }
}

pub async fn chat(ctx: Ctx, args: &Args) -> (Value, String) {
    let n: usize = args.num("conns", 2000usize).max(1);
    let min: usize = args.num("room-min", 10usize).max(1);
    let max: usize = args.num("room-max", 50usize).max(min);
    let interval = Duration::from_secs_f64(args.num("interval-ms", 1000.0f64).max(1.0) / 1000.0);
    let window: usize = args.num("window", 1usize).max(1);
    let seed: u32 = args.num("seed", 16u32);
    let body = body_arg(args);
    let size = body.size;
    let dur = args.secs("duration", 5.0);
    let loss_timeout = args.secs("loss-timeout", 5.0);
    let prefix = args.str("room-prefix").unwrap_or("chat-").to_string();
    let sizes = chat_rooms(n, min, max, seed);
    let nrooms = sizes.len();
    let ctx = Rc::new(ctx);
    // Every member is a sender: one window (and one wake-up) per connection.
    let st = Rc::new(FanState::new(&ctx, nrooms, n, window));
    let ex = Rc::new(ChatExtra { skipped: Cell::new(0) });
    let plan = Rc::new(ChatPlan { interval, window, body });
    let names: Vec<String> = (0..nrooms).map(|r| format!("{prefix}{r}")).collect();
    let room_json: Vec<Rc<str>> = names.iter().map(|r| Rc::from(serde_json::to_string(r).unwrap())).collect();
    let sub_msgs: Vec<Rc<Vec<u8>>> = names.iter().map(|r| room_sub_msg(ctx.proto, r)).collect();
    let t_open = Instant::now();
    let mut i = 0;
    for (r, &s) in sizes.iter().enumerate() {
        for _ in 0..s {
            tokio::task::spawn_local(chat_member(ctx.clone(), st.clone(), ex.clone(), plan.clone(), i, r, room_json[r].clone(), sub_msgs[r].clone()));
            i += 1;
        }
    }
    wait_until(ctx.connect_timeout * 4 + Duration::from_secs((n / 500) as u64), || {
        st.subscribed.get() + st.conns.failed.get() + st.conns.closed_early.get() >= n
    })
    .await;
    let open_s = t_open.elapsed().as_secs_f64();
    let members = st.subscribed.get();
    st.last_progress.set(now_us());
    spawn_reaper(&st, loss_timeout);
    let (w, deliveries, _) = measure(&ctx, &st.phase, dur, || st.deliveries.get()).await;
    let report = fan_report(&st, w, deliveries);
    let mean = n as f64 / nrooms as f64;
    let offered_msgs = n as f64 / interval.as_secs_f64();
    let offered_deliveries: f64 = sizes.iter().map(|&s| (s * s) as f64).sum::<f64>() / interval.as_secs_f64();
    let human = format!(
        "chat (fine) {nrooms} rooms of {min}-{max} (mean {mean:.1}), {members}/{n} members, one message per {:.0} ms each (offered {offered_msgs:.0} msg/s, {offered_deliveries:.0} deliveries/s), window {window}, {size} B: {}{}",
        interval.as_secs_f64() * 1000.0,
        report.text,
        if ex.skipped.get() > 0 { format!(", {} send times skipped (window full)", ex.skipped.get()) } else { String::new() }
    );
    let out = merge(
        base_json(
            "chat",
            &ctx,
            json!({ "conns": n, "rooms": nrooms, "room_min": min, "room_max": max, "seed": seed, "interval_ms": interval.as_secs_f64() * 1000.0, "window": window, "size": size, "payload": body.name(), "duration_s": dur.as_secs_f64(), "warmup_s": ctx.warmup.as_secs_f64(), "loss_timeout_s": loss_timeout.as_secs_f64() }),
        ),
        json!({
            "open_s": round3(open_s),
            "conns": st.conns.json(),
            "subscribed": members,
            "room_sizes": { "rooms": nrooms, "min": sizes.iter().min(), "max": sizes.iter().max(), "mean": round3(mean) },
            "offered_msgs_per_s": offered_msgs.round(),
            "offered_deliveries_per_s": offered_deliveries.round(),
            "skipped_sends": ex.skipped.get(),
            "rooms_without_members": st.room_members.iter().filter(|c| c.get() == 0).count(),
            "subscribed_per_url": st.subscribed_per_url_json(),
        }),
    );
    (merge(out, report.json), human)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_rooms_cover_every_connection_within_bounds() {
        for n in [1usize, 9, 10, 49, 2000, 9999] {
            let s = chat_rooms(n, 10, 50, 16);
            assert_eq!(s.iter().sum::<usize>(), n, "n = {n}");
            // every room but a lone small one is at least 10; only the last can exceed 50 (by < 10)
            if n >= 10 {
                assert!(s.iter().all(|&x| x >= 10), "{s:?}");
            }
            assert!(s.iter().all(|&x| x < 60), "{s:?}");
        }
        assert_eq!(chat_rooms(2000, 10, 50, 16), chat_rooms(2000, 10, 50, 16));
        let mean = 2000.0 / chat_rooms(2000, 10, 50, 16).len() as f64;
        assert!((20.0..40.0).contains(&mean), "{mean}");
    }

    #[test]
    fn frame_header_sizes() {
        assert_eq!(frame_bytes(100), 102);
        assert_eq!(frame_bytes(1024), 1028);
        assert_eq!(frame_bytes(70_000), 70_010);
    }
}
