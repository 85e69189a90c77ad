//! The echo, fanout and idle workloads of the batched shape (connect has its own loop in
//! connect.rs; `--shape fine` is fine.rs, which shares the phases, counters and reports here). Each mode owns
//! the timeline (connect, warm up, measure, stop) and reads the shared counters at the end;
//! connection tasks only count and record.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{sleep, timeout, Instant};

use crate::deflate;
use crate::hist::Hist;
use crate::payload::Body;
use crate::sys::{self, round3};
use crate::ws::{self, Conn};
use crate::{now_us, Args, Ctx};

pub(crate) const SETUP: u8 = 0;
pub(crate) const WARMUP: u8 = 1;
pub(crate) const MEASURE: u8 = 2;
pub(crate) const STOP: u8 = 3;

/// Phase shared by all tasks: a Cell for cheap checks on the hot path, a watch channel to wake
/// tasks that wait for a phase.
pub(crate) struct Phase {
    cur: Cell<u8>,
    tx: watch::Sender<u8>,
}

impl Phase {
    pub(crate) fn new() -> Self {
        Phase { cur: Cell::new(SETUP), tx: watch::channel(SETUP).0 }
    }
    #[inline]
    pub(crate) fn get(&self) -> u8 {
        self.cur.get()
    }
    pub(crate) fn set(&self, p: u8) {
        self.cur.set(p);
        self.tx.send_replace(p);
    }
    pub(crate) async fn wait_for(&self, p: u8) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v >= p).await;
    }
}

#[derive(Default)]
pub(crate) struct ConnStats {
    pub(crate) ok: Cell<usize>,
    pub(crate) failed: Cell<usize>,
    pub(crate) closed_early: Cell<usize>,
    first_error: RefCell<Option<String>>,
}

impl ConnStats {
    pub(crate) fn fail(&self, e: impl std::fmt::Display) {
        self.failed.set(self.failed.get() + 1);
        let mut fe = self.first_error.borrow_mut();
        if fe.is_none() {
            *fe = Some(e.to_string());
        }
    }
    pub(crate) fn json(&self) -> Value {
        json!({
            "ok": self.ok.get(),
            "failed": self.failed.get(),
            "closed_early": self.closed_early.get(),
            "first_error": *self.first_error.borrow(),
        })
    }
}

/// Open connection `i` to its target (round-robin over the URLs).
async fn open(ctx: &Ctx, i: usize, rbuf: usize) -> Result<Conn, String> {
    open_to(ctx, ctx.target_for(i), i, rbuf).await
}

async fn open_to(ctx: &Ctx, target: &ws::Target, i: usize, rbuf: usize) -> Result<Conn, String> {
    match timeout(ctx.connect_timeout, ws::connect(target, ctx.source(i), ctx.proto, rbuf, ctx.deflate.as_deref())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timeout".into()),
    }
}

/// Wait until `done()` or `limit` passes; returns false on timeout.
pub(crate) async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() >= end {
            return false;
        }
        sleep(Duration::from_millis(5)).await;
    }
    true
}

/// The measured window every throughput mode shares: warm up, sample the server, measure for
/// `dur`, sample again. Returns the window JSON (server CPU/RSS, wall time), the work counted in
/// the window (`count` must be zeroed or reset at MEASURE by the connections) and its rate.
pub(crate) async fn measure(ctx: &Ctx, phase: &Phase, dur: Duration, count: impl Fn() -> u64) -> (Value, u64, f64) {
    phase.set(WARMUP);
    sleep(ctx.warmup).await;
    let a = sys::sample(&ctx.server_pids, &ctx.aux_pids);
    phase.set(MEASURE);
    sleep(dur).await;
    phase.set(STOP);
    let b = sys::sample(&ctx.server_pids, &ctx.aux_pids);
    let n = count();
    let w = sys::window_json(&a, &b, n);
    let wall = w["wall_s"].as_f64().unwrap_or(1.0);
    (w, n, n as f64 / wall)
}

pub(crate) fn base_json(mode: &str, ctx: &Ctx, params: Value) -> Value {
    let mut j = json!({
        "mode": mode,
        "proto": ctx.proto.name(),
        "url": ctx.urls[0],
        "params": params,
        "sources": ctx.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    });
    if ctx.urls.len() > 1 {
        j["urls"] = json!(ctx.urls);
    }
    j
}

pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(ao), Value::Object(bo)) = (a.as_object_mut(), b) {
        for (k, v) in bo {
            ao.insert(k, v);
        }
    }
    a
}

pub(crate) fn fmt_server(w: &Value) -> String {
    match &w["server"] {
        Value::Null => format!("loadgen cpu {:.0}%", w["loadgen"]["cpu_util"].as_f64().unwrap_or(0.0) * 100.0),
        s => format!(
            "server cpu {:.0}%, loadgen cpu {:.0}%",
            s["cpu_util"].as_f64().unwrap_or(0.0) * 100.0,
            w["loadgen"]["cpu_util"].as_f64().unwrap_or(0.0) * 100.0
        ),
    }
}

// ------------------------------------------------------------------------------------------------
// echo
// ------------------------------------------------------------------------------------------------

/// What an echo run's connections share, whatever the client shape; `M` is the encoded message in
/// the form that shape sends it.
pub(crate) struct EchoState<M> {
    pub(crate) phase: Phase,
    pub(crate) conns: ConnStats,
    pub(crate) sem: Semaphore,
    pub(crate) msg: M,
    pub(crate) replies: Cell<u64>,
    pub(crate) other: Cell<u64>,
    pub(crate) hist: RefCell<Hist>,
}

pub async fn echo(ctx: Ctx, args: &Args) -> (Value, String) {
    run_echo(ctx, args, "echo", |msg| msg, echo_conn).await
}

/// An echo run in either client shape: opens `--conns` connections, each running `conn` with
/// `--inflight` messages in flight, measures the window and reports. `label` starts the human
/// line; `shape_msg` turns the encoded `echo` message into what `conn` sends.
pub(crate) async fn run_echo<M, Fut>(
    ctx: Ctx,
    args: &Args,
    label: &str,
    shape_msg: impl FnOnce(Vec<u8>) -> M,
    conn: impl Fn(Rc<Ctx>, Rc<EchoState<M>>, usize, usize) -> Fut,
) -> (Value, String)
where
    M: 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let n: usize = args.num("conns", 100);
    let k: usize = args.num("inflight", 16usize).max(1);
    let size: usize = args.num("size", 64);
    let dur = args.secs("duration", 5.0);
    let ctx = Rc::new(ctx);
    let mut data = Vec::with_capacity(size + 2);
    data.push(b'"');
    data.extend(std::iter::repeat_n(b'x', size));
    data.push(b'"');
    let mut msg = Vec::new();
    ctx.proto.encode_event(&mut msg, "echo", &data);
    let st = Rc::new(EchoState {
        phase: Phase::new(),
        conns: ConnStats::default(),
        sem: Semaphore::new(ctx.connect_concurrency),
        msg: shape_msg(msg),
        replies: Cell::new(0),
        other: Cell::new(0),
        hist: RefCell::new(Hist::new()),
    });
    for i in 0..n {
        tokio::task::spawn_local(conn(ctx.clone(), st.clone(), i, k));
    }
    let t_open = Instant::now();
    wait_until(ctx.connect_timeout * 4, || st.conns.ok.get() + st.conns.failed.get() >= n).await;
    let open_s = t_open.elapsed().as_secs_f64();
    let (w, count, rate) = measure(&ctx, &st.phase, dur, || st.replies.get()).await;
    let h = st.hist.borrow();
    let human = format!(
        "{label} {} conns x {k} in flight x {size} B: {:.0} msg/s, rtt p50 {} us p90 {} us p99 {} us; {} ({} ok, {} failed, {} closed early)",
        n,
        rate,
        h.percentile(50.0),
        h.percentile(90.0),
        h.percentile(99.0),
        fmt_server(&w),
        st.conns.ok.get(),
        st.conns.failed.get(),
        st.conns.closed_early.get()
    );
    let out = merge(
        base_json("echo", &ctx, json!({ "conns": n, "inflight": k, "size": size, "duration_s": dur.as_secs_f64(), "warmup_s": ctx.warmup.as_secs_f64() })),
        json!({
            "open_s": round3(open_s),
            "conns": st.conns.json(),
            "messages": count,
            "msgs_per_s": rate.round(),
            "unexpected_messages": st.other.get(),
            "rtt_us": h.json(),
            "window": w,
        }),
    );
    (out, human)
}

async fn echo_conn(ctx: Rc<Ctx>, st: Rc<EchoState<Vec<u8>>>, i: usize, k: usize) {
    let permit = st.sem.acquire().await.unwrap();
    let r = open(&ctx, i, 16 * 1024).await;
    drop(permit);
    let mut c = match r {
        Ok(c) => c,
        Err(e) => return st.conns.fail(e),
    };
    st.conns.ok.set(st.conns.ok.get() + 1);
    st.phase.wait_for(WARMUP).await;
    let proto = ctx.proto;
    let mut sent_at: VecDeque<u64> = VecDeque::with_capacity(k);
    let now = now_us();
    for _ in 0..k {
        c.queue_text(&st.msg);
        sent_at.push_back(now);
    }
    if c.flush().await.is_err() {
        st.conns.closed_early.set(st.conns.closed_early.get() + 1);
        return;
    }
    loop {
        match c.read_some().await {
            Ok(0) | Err(_) => {
                if st.phase.get() < STOP {
                    st.conns.closed_early.set(st.conns.closed_early.get() + 1);
                }
                return;
            }
            Ok(_) => {}
        }
        let mut replies = 0u64;
        let mut other = 0u64;
        c.drain(|m| {
            if proto.is_event(m, "echo") {
                replies += 1
            } else {
                other += 1
            }
        });
        let phase = st.phase.get();
        if other > 0 {
            st.other.set(st.other.get() + other);
        }
        if replies > 0 {
            let now = now_us();
            if phase == MEASURE {
                let mut h = st.hist.borrow_mut();
                for _ in 0..replies {
                    let t = sent_at.pop_front().unwrap_or(now);
                    h.record(now.saturating_sub(t));
                }
                st.replies.set(st.replies.get() + replies);
            } else {
                for _ in 0..replies {
                    sent_at.pop_front();
                }
            }
            if phase < STOP && !c.got_close {
                for _ in 0..replies {
                    c.queue_text(&st.msg);
                    sent_at.push_back(now);
                }
            }
        }
        let closed = c.got_close;
        if c.flush().await.is_err() || closed {
            if st.phase.get() < STOP {
                st.conns.closed_early.set(st.conns.closed_early.get() + 1);
            }
            return;
        }
        if phase >= STOP && sent_at.is_empty() {
            return;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// fanout and rooms
// ------------------------------------------------------------------------------------------------
//
// Both modes are the same machinery: subscribers that each join one room (`sub` → `subscribed`),
// and publisher connections (to the first URL) that each keep at most W broadcasts in flight, each
// to one room. `fanout` is one room with every subscriber and one publisher; `rooms` is R rooms of
// M members and P publishers that pick a random room per broadcast. A broadcast completes when all
// members of its room have it, which frees its publisher's window slot.

pub(crate) struct Pending {
    pub(crate) t: u64,
    pub(crate) remaining: usize,
    pub(crate) publisher: usize,
}

pub(crate) struct FanState {
    pub(crate) phase: Phase,
    pub(crate) conns: ConnStats,
    pub(crate) sem: Semaphore,
    pub(crate) subscribed: Cell<usize>,
    /// Subscribers joined, per URL (index of the target they connected to).
    pub(crate) subscribed_per_url: Vec<Cell<usize>>,
    /// Subscribers joined, per room.
    pub(crate) room_members: Vec<Cell<usize>>,
    pub(crate) deliveries: Cell<u64>,
    pub(crate) sent: Cell<u64>,
    pub(crate) completed: Cell<u64>,
    /// Broadcasts completed in any phase (`completed` counts the measured window only).
    pub(crate) completed_total: Cell<u64>,
    /// Broadcasts in flight, per publisher.
    pub(crate) inflight: Vec<Cell<usize>>,
    pub(crate) next_seq: Cell<u64>,
    pub(crate) pending: RefCell<HashMap<u64, Pending>>,
    pub(crate) unknown: Cell<u64>,
    pub(crate) other: Cell<u64>,
    /// Broadcasts given up after `--loss-timeout` (some member never got them) and the deliveries
    /// they lacked.
    pub(crate) lost: Cell<u64>,
    pub(crate) missing: Cell<u64>,
    pub(crate) delivery: RefCell<Hist>,
    pub(crate) completion: RefCell<Hist>,
    /// In the measured window, over all subscribers: bytes read from their sockets (frames as sent,
    /// compressed or not), the delivered messages' bytes (after inflating), and how many of the
    /// deliveries came compressed.
    pub(crate) wire_bytes: Cell<u64>,
    pub(crate) payload_bytes: Cell<u64>,
    pub(crate) compressed_deliveries: Cell<u64>,
    /// Wakes a publisher when one of its broadcasts completes (or is given up).
    pub(crate) notify: Vec<Notify>,
    pub(crate) last_progress: Cell<u64>,
    /// When the last delivery arrived (µs): progress even while no broadcast completes (a slow
    /// server that takes longer than the window to reach every subscriber).
    pub(crate) last_delivery: Cell<u64>,
}

impl FanState {
    pub(crate) fn new(ctx: &Ctx, rooms: usize, publishers: usize, window: usize) -> Self {
        FanState {
            phase: Phase::new(),
            conns: ConnStats::default(),
            sem: Semaphore::new(ctx.connect_concurrency),
            subscribed: Cell::new(0),
            subscribed_per_url: (0..ctx.targets.len()).map(|_| Cell::new(0)).collect(),
            room_members: (0..rooms).map(|_| Cell::new(0)).collect(),
            deliveries: Cell::new(0),
            sent: Cell::new(0),
            completed: Cell::new(0),
            completed_total: Cell::new(0),
            inflight: (0..publishers).map(|_| Cell::new(0)).collect(),
            next_seq: Cell::new(0),
            pending: RefCell::new(HashMap::with_capacity(window * publishers * 2)),
            unknown: Cell::new(0),
            other: Cell::new(0),
            lost: Cell::new(0),
            missing: Cell::new(0),
            delivery: RefCell::new(Hist::new()),
            completion: RefCell::new(Hist::new()),
            wire_bytes: Cell::new(0),
            payload_bytes: Cell::new(0),
            compressed_deliveries: Cell::new(0),
            notify: (0..publishers).map(|_| Notify::new()).collect(),
            last_progress: Cell::new(0),
            last_delivery: Cell::new(0),
        }
    }

    fn release(&self, publisher: usize) {
        let f = &self.inflight[publisher];
        f.set(f.get() - 1);
        self.notify[publisher].notify_one();
    }

    #[inline]
    pub(crate) fn delivered(&self, seq: u64, t: u64, now: u64) {
        let measuring = self.phase.get() == MEASURE;
        self.last_delivery.set(now);
        if measuring {
            self.deliveries.set(self.deliveries.get() + 1);
            self.delivery.borrow_mut().record(now.saturating_sub(t));
        }
        let mut p = self.pending.borrow_mut();
        match p.get_mut(&seq) {
            Some(e) => {
                e.remaining -= 1;
                if e.remaining == 0 {
                    let (t0, publisher) = (e.t, e.publisher);
                    p.remove(&seq);
                    self.completed_total.set(self.completed_total.get() + 1);
                    if measuring {
                        self.completed.set(self.completed.get() + 1);
                        self.completion.borrow_mut().record(now.saturating_sub(t0));
                    }
                    self.last_progress.set(now);
                    self.release(publisher);
                }
            }
            None => self.unknown.set(self.unknown.get() + 1),
        }
    }

    /// Give up broadcasts older than `limit_us` (counted as lost; late deliveries of them then
    /// count as `unknown_seq`), freeing their publishers' window slots.
    fn expire(&self, now: u64, limit_us: u64) {
        let mut gone = Vec::new();
        self.pending.borrow_mut().retain(|_, e| {
            let keep = now.saturating_sub(e.t) < limit_us;
            if !keep {
                gone.push((e.publisher, e.remaining));
            }
            keep
        });
        for (publisher, remaining) in gone {
            self.lost.set(self.lost.get() + 1);
            self.missing.set(self.missing.get() + remaining as u64);
            self.release(publisher);
        }
    }

    pub(crate) fn subscribed_per_url_json(&self) -> Value {
        json!(self.subscribed_per_url.iter().map(|c| c.get()).collect::<Vec<_>>())
    }
}

pub(crate) fn room_sub_msg(proto: ws::Proto, room: &str) -> Rc<Vec<u8>> {
    let mut m = Vec::new();
    proto.encode_event(&mut m, "sub", format!("{{\"room\":{}}}", serde_json::to_string(room).unwrap()).as_bytes());
    Rc::new(m)
}

/// Open the subscribers (`room_of(i)` for subscriber i) and wait until each joined or failed.
async fn open_subscribers(ctx: &Rc<Ctx>, st: &Rc<FanState>, n: usize, sub_msgs: &[Rc<Vec<u8>>], room_of: impl Fn(usize) -> usize) {
    for i in 0..n {
        let r = room_of(i);
        tokio::task::spawn_local(fan_sub(ctx.clone(), st.clone(), i, r, sub_msgs[r].clone()));
    }
    wait_until(ctx.connect_timeout * 4 + Duration::from_secs((n / 500) as u64), || {
        st.subscribed.get() + st.conns.failed.get() + st.conns.closed_early.get() >= n
    })
    .await;
}

/// `--payload` and `--size` of the fan-out modes.
pub(crate) fn body_arg(args: &Args) -> Body {
    let size = args.str("size").map(|_| args.num("size", 100usize));
    Body::from_args(args.str("payload"), size, 100).unwrap_or_else(|e| crate::die(&e))
}

/// How the publishers of a fan-out run behave.
struct Publishers {
    /// Connection index of the first publisher (after the subscribers).
    first_index: usize,
    count: usize,
    /// Broadcasts in flight per publisher.
    window: usize,
    /// What each broadcast carries, and its size.
    body: Body,
    /// Wait between connecting them and starting.
    settle: Duration,
}

/// Connect the publisher connections to the first URL, wait `settle`, then start them.
/// `rooms` lists (room name, members) of the rooms they publish to. Returns the errors.
async fn start_publishers(ctx: &Rc<Ctx>, st: &Rc<FanState>, plan: Publishers, rooms: Vec<(String, usize)>) -> Vec<String> {
    let Publishers { first_index, count: publishers, window, body, settle } = plan;
    let rooms: Rc<Vec<(String, usize)>> = Rc::new(rooms.into_iter().filter(|(_, m)| *m > 0).collect());
    let mut errors = Vec::new();
    let mut conns = Vec::new();
    for p in 0..publishers {
        match open_to(ctx, &ctx.targets[0], first_index + p, 4096).await {
            Ok(c) if !rooms.is_empty() => conns.push(c),
            Ok(_) => errors.push("no subscriber joined".to_string()),
            Err(e) => errors.push(format!("publisher: {e}")),
        }
    }
    if !settle.is_zero() {
        sleep(settle).await;
    }
    for (p, c) in conns.into_iter().enumerate() {
        tokio::task::spawn_local(fan_pub(ctx.clone(), st.clone(), c, p, window, body, rooms.clone()));
    }
    errors.sort();
    errors.dedup();
    errors
}

/// `--warmup-completions N`: before the timed warm-up, keep publishing until N broadcasts reached
/// every member (at most `--warmup-completions-timeout` seconds, default 60), so that the window
/// starts after each subscriber got a message — e.g. after a server that compresses per socket
/// (ws) created every socket's zlib stream, which for 10,000 subscribers takes longer than a
/// quick run's warm-up. Returns (completed, seconds waited) for the JSON.
pub(crate) async fn warm_until_completed(st: &Rc<FanState>, args: &Args) -> Value {
    let n: u64 = args.num("warmup-completions", 0u64);
    if n == 0 {
        return Value::Null;
    }
    let cap = args.secs("warmup-completions-timeout", 60.0);
    st.phase.set(WARMUP);
    let t0 = Instant::now();
    let reached = wait_until(cap, || st.completed_total.get() >= n).await;
    json!({ "wanted": n, "completed": st.completed_total.get(), "reached": reached, "waited_s": round3(t0.elapsed().as_secs_f64()) })
}

pub(crate) fn spawn_reaper(st: &Rc<FanState>, loss_timeout: Duration) {
    if loss_timeout.is_zero() {
        return;
    }
    let st = st.clone();
    let limit = loss_timeout.as_micros() as u64;
    tokio::task::spawn_local(async move {
        while st.phase.get() < STOP {
            sleep(Duration::from_millis(50)).await;
            st.expire(now_us(), limit);
        }
    });
}

/// What a fan-out run measured, for the summary line and the JSON of `fanout` and `rooms`.
pub(crate) struct FanReport {
    /// `N deliveries/s (M bcast/s), delivery p50 … us p99 … us, completion …; <server>[, lost]`
    pub(crate) text: String,
    /// The measurements both modes report.
    pub(crate) json: Value,
}

pub(crate) fn fan_report(st: &FanState, w: Value, deliveries: u64) -> FanReport {
    let wall = w["wall_s"].as_f64().unwrap_or(1.0);
    let stalled_ms = (now_us() - st.last_progress.get()) / 1000;
    let quiet_ms = (now_us() - st.last_delivery.get().max(st.last_progress.get())) / 1000;
    let d = st.delivery.borrow();
    let c = st.completion.borrow();
    let rate = deliveries as f64 / wall;
    let per_delivery = |b: u64| if deliveries > 0 { round3(b as f64 / deliveries as f64) } else { 0.0 };
    let text = format!(
        "{:.0} deliveries/s ({:.0} bcast/s), delivery p50 {} us p99 {} us, completion p50 {} us p99 {} us; {}{}{}",
        rate,
        st.completed.get() as f64 / wall,
        d.percentile(50.0),
        d.percentile(99.0),
        c.percentile(50.0),
        c.percentile(99.0),
        fmt_server(&w),
        if st.lost.get() > 0 { format!(", {} broadcasts lost", st.lost.get()) } else { String::new() },
        if st.compressed_deliveries.get() > 0 {
            format!(
                "; {:.0} wire B / {:.0} payload B per delivery, {:.0}% compressed",
                per_delivery(st.wire_bytes.get()),
                per_delivery(st.payload_bytes.get()),
                st.compressed_deliveries.get() as f64 * 100.0 / deliveries.max(1) as f64
            )
        } else {
            String::new()
        },
    );
    let json = json!({
        "deliveries": deliveries,
        "deliveries_per_s": rate.round(),
        "broadcasts_sent": st.sent.get(),
        "broadcasts_completed": st.completed.get(),
        "broadcasts_per_s": (st.completed.get() as f64 / wall).round(),
        "ms_since_last_completion": stalled_ms,
        "ms_since_last_delivery": quiet_ms,
        "lost_broadcasts": st.lost.get(),
        "missing_deliveries": st.missing.get(),
        "unknown_seq": st.unknown.get(),
        "unexpected_messages": st.other.get(),
        "wire_bytes": st.wire_bytes.get(),
        "wire_bytes_per_delivery": per_delivery(st.wire_bytes.get()),
        "payload_bytes": st.payload_bytes.get(),
        "payload_bytes_per_delivery": per_delivery(st.payload_bytes.get()),
        "compressed_deliveries": st.compressed_deliveries.get(),
        "delivery_us": d.json(),
        "completion_us": c.json(),
        "window": w,
    });
    FanReport { text, json }
}

/// The fan-out workload's options, as both client shapes read them.
pub(crate) struct FanArgs {
    pub subs: usize,
    pub window: usize,
    pub body: Body,
    pub dur: Duration,
    pub settle: Duration,
    pub loss_timeout: Duration,
    pub room: String,
}

impl FanArgs {
    pub fn from(args: &Args) -> Self {
        Self {
            subs: args.num("subs", 1000),
            window: args.num("window", 8usize).max(1),
            body: body_arg(args),
            dur: args.secs("duration", 5.0),
            settle: args.secs("settle", 0.0),
            loss_timeout: args.secs("loss-timeout", 0.0),
            room: args.str("room").unwrap_or("bench").to_string(),
        }
    }
}

/// The rest of a fan-out run once its subscribers are open and its publisher started, the same
/// for both client shapes: warm-up, the measured window, and the report. `label` starts the
/// human line (`fanout`, `fanout (fine)`).
pub(crate) async fn finish_fanout(ctx: &Rc<Ctx>, args: &Args, st: &Rc<FanState>, fa: &FanArgs, label: &str, open_s: f64, pub_error: Option<String>) -> (Value, String) {
    let FanArgs { subs: n, window, dur, settle, loss_timeout, .. } = *fa;
    let size = fa.body.size;
    let members = st.subscribed.get();
    st.last_progress.set(now_us());
    spawn_reaper(st, loss_timeout);
    let warmed = warm_until_completed(st, args).await;
    let (w, deliveries, _) = measure(ctx, &st.phase, dur, || st.deliveries.get()).await;
    let report = fan_report(st, w, deliveries);
    let human = format!(
        "{label} {members}/{n} subs, window {window}, {size} B: {}{}",
        report.text,
        pub_error.as_ref().map(|e| format!(" ERROR {e}")).unwrap_or_default()
    );
    let out = merge(
        base_json(
            "fanout",
            ctx,
            json!({ "subs": n, "window": window, "size": size, "payload": fa.body.name(), "duration_s": dur.as_secs_f64(), "warmup_s": ctx.warmup.as_secs_f64(), "settle_s": settle.as_secs_f64(), "loss_timeout_s": loss_timeout.as_secs_f64() }),
        ),
        json!({
            "open_s": round3(open_s),
            "conns": st.conns.json(),
            "subscribed": members,
            "publisher_error": pub_error,
            "warmup_completions": warmed,
        }),
    );
    let mut out = merge(out, report.json);
    if ctx.targets.len() > 1 {
        out["subscribed_per_url"] = st.subscribed_per_url_json();
    }
    (out, human)
}

pub async fn fanout(ctx: Ctx, args: &Args) -> (Value, String) {
    let fa = FanArgs::from(args);
    let ctx = Rc::new(ctx);
    let st = Rc::new(FanState::new(&ctx, 1, 1, fa.window));
    let t_open = Instant::now();
    open_subscribers(&ctx, &st, fa.subs, &[room_sub_msg(ctx.proto, &fa.room)], |_| 0).await;
    let open_s = t_open.elapsed().as_secs_f64();
    let members = st.subscribed.get();
    let publishers = Publishers { first_index: fa.subs, count: 1, window: fa.window, body: fa.body, settle: fa.settle };
    let pub_errors = start_publishers(&ctx, &st, publishers, vec![(fa.room.clone(), members)]).await;
    finish_fanout(&ctx, args, &st, &fa, "fanout", open_s, pub_errors.first().cloned()).await
}

pub async fn rooms(ctx: Ctx, args: &Args) -> (Value, String) {
    let nrooms: usize = args.num("rooms", 100usize).max(1);
    let m: usize = args.num("members", 10usize).max(1);
    let publishers: usize = args.num("publishers", 4usize).max(1);
    let window: usize = args.num("window", 4usize).max(1);
    let body = body_arg(args);
    let size = body.size;
    let dur = args.secs("duration", 5.0);
    let settle = args.secs("settle", 0.0);
    let loss_timeout = args.secs("loss-timeout", 0.0);
    let prefix = args.str("room-prefix").unwrap_or("room-").to_string();
    let n = nrooms * m;
    let ctx = Rc::new(ctx);
    let st = Rc::new(FanState::new(&ctx, nrooms, publishers, window));
    let names: Vec<String> = (0..nrooms).map(|r| format!("{prefix}{r}")).collect();
    let sub_msgs: Vec<Rc<Vec<u8>>> = names.iter().map(|r| room_sub_msg(ctx.proto, r)).collect();
    let t_open = Instant::now();
    // Subscriber i joins room i / M and connects to URL i % (number of URLs): with several URLs
    // every room has members on several servers (M = 10 over 3 servers: 4 + 3 + 3).
    open_subscribers(&ctx, &st, n, &sub_msgs, |i| i / m).await;
    let open_s = t_open.elapsed().as_secs_f64();
    let members = st.subscribed.get();
    let rooms: Vec<(String, usize)> = names.into_iter().zip(st.room_members.iter().map(|c| c.get())).collect();
    let pub_errors = start_publishers(&ctx, &st, Publishers { first_index: n, count: publishers, window, body, settle }, rooms).await;
    st.last_progress.set(now_us());
    spawn_reaper(&st, loss_timeout);
    let warmed = warm_until_completed(&st, args).await;
    let (w, deliveries, _) = measure(&ctx, &st.phase, dur, || st.deliveries.get()).await;
    let report = fan_report(&st, w, deliveries);
    let human = format!(
        "rooms {nrooms} x {m} ({members}/{n} subs), {publishers} publishers x window {window}, {size} B: {}{}",
        report.text,
        pub_errors.first().map(|e| format!(" ERROR {e}")).unwrap_or_default()
    );
    let out = merge(
        base_json(
            "rooms",
            &ctx,
            json!({ "rooms": nrooms, "members": m, "subs": n, "publishers": publishers, "window": window, "size": size, "payload": body.name(), "duration_s": dur.as_secs_f64(), "warmup_s": ctx.warmup.as_secs_f64(), "settle_s": settle.as_secs_f64(), "loss_timeout_s": loss_timeout.as_secs_f64() }),
        ),
        json!({
            "open_s": round3(open_s),
            "conns": st.conns.json(),
            "subscribed": members,
            "subscribed_per_url": st.subscribed_per_url_json(),
            "rooms_without_members": st.room_members.iter().filter(|c| c.get() == 0).count(),
            "warmup_completions": warmed,
            "publisher_error": pub_errors.first(),
            "publisher_errors": pub_errors,
        }),
    );
    let out = merge(out, report.json);
    (out, human)
}

async fn fan_sub(ctx: Rc<Ctx>, st: Rc<FanState>, i: usize, room: usize, sub_msg: Rc<Vec<u8>>) {
    let permit = st.sem.acquire().await.unwrap();
    let mut c = match open(&ctx, i, 4096).await {
        Ok(c) => c,
        Err(e) => return st.conns.fail(e),
    };
    st.conns.ok.set(st.conns.ok.get() + 1);
    let proto = ctx.proto;
    c.queue_text(&sub_msg);
    let mut joined = false;
    let mut eof = c.flush().await.is_err();
    while !joined && !eof {
        let r = timeout(ctx.connect_timeout, c.read_some()).await;
        if !matches!(r, Ok(Ok(n)) if n > 0) {
            break;
        }
        c.drain(|m| {
            if proto.is_event(m, "subscribed") {
                joined = true
            }
        });
        eof |= c.flush().await.is_err() || c.got_close;
    }
    drop(permit);
    if !joined {
        return st.conns.fail(format!("subscriber {i}: no `subscribed` reply"));
    }
    st.subscribed.set(st.subscribed.get() + 1);
    let u = &st.subscribed_per_url[i % ctx.targets.len()];
    u.set(u.get() + 1);
    st.room_members[room].set(st.room_members[room].get() + 1);
    loop {
        let n = match c.read_some().await {
            Ok(0) | Err(_) => break,
            Ok(n) => n as u64,
        };
        let measuring = st.phase.get() == MEASURE;
        let mut now = 0u64;
        let mut other = 0u64;
        let mut payload = 0u64;
        let compressed0 = deflate::compressed_count();
        c.drain(|m| {
            if proto.is_event(m, "bcast") {
                if let Some((seq, e)) = ws::field_u64(m, b"\"seq\":", 0) {
                    if let Some((t, _)) = ws::field_u64(m, b"\"t\":", e) {
                        if now == 0 {
                            now = now_us();
                        }
                        payload += m.len() as u64;
                        st.delivered(seq, t, now);
                        return;
                    }
                }
            }
            other += 1;
        });
        if other > 0 {
            st.other.set(st.other.get() + other);
        }
        if measuring {
            st.wire_bytes.set(st.wire_bytes.get() + n);
            st.payload_bytes.set(st.payload_bytes.get() + payload);
            st.compressed_deliveries.set(st.compressed_deliveries.get() + deflate::compressed_count() - compressed0);
        }
        if c.flush().await.is_err() || c.got_close {
            break;
        }
    }
    if st.phase.get() < STOP {
        st.conns.closed_early.set(st.conns.closed_early.get() + 1);
    }
}

/// Publisher `p`: keeps at most `window` broadcasts in flight, each to a random room of `rooms`
/// ((name, members joined), none empty).
async fn fan_pub(ctx: Rc<Ctx>, st: Rc<FanState>, mut c: Conn, p: usize, window: usize, body: Body, rooms: Rc<Vec<(String, usize)>>) {
    let proto = ctx.proto;
    let room_json: Vec<String> = rooms.iter().map(|(r, _)| serde_json::to_string(r).unwrap()).collect();
    let overhead = proto.envelope_overhead("bcast");
    let mut data = Vec::with_capacity(body.size + 64);
    let mut msg = Vec::with_capacity(body.size + 64);
    let mut rng: u32 = 0x9e37_79b9u32.wrapping_mul(p as u32 + 1) | 1;
    loop {
        if st.phase.get() >= STOP {
            return;
        }
        while st.inflight[p].get() < window {
            let r = if rooms.len() == 1 { 0 } else { ws::xorshift(&mut rng) as usize % rooms.len() };
            let seq = st.next_seq.get();
            st.next_seq.set(seq + 1);
            let t = now_us();
            body.write(&mut data, &room_json[r], seq, t, overhead, &mut rng);
            msg.clear();
            proto.encode_event(&mut msg, "bcast", &data);
            st.pending.borrow_mut().insert(seq, Pending { t, remaining: rooms[r].1, publisher: p });
            st.inflight[p].set(st.inflight[p].get() + 1);
            st.sent.set(st.sent.get() + 1);
            c.queue_text(&msg);
        }
        if c.flush().await.is_err() {
            return;
        }
        tokio::select! {
            _ = st.notify[p].notified() => {}
            r = c.read_some() => {
                match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let mut other = 0;
                        c.drain(|_| other += 1);
                        st.other.set(st.other.get() + other);
                        if c.got_close {
                            let _ = c.flush().await;
                            return;
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// idle
// ------------------------------------------------------------------------------------------------

struct IdleState {
    phase: Phase,
    conns: ConnStats,
    sem: Semaphore,
    open_now: Cell<usize>,
    pings: Cell<u64>,
}

pub async fn idle(ctx: Ctx, args: &Args) -> (Value, String) {
    let n: usize = args.num("conns", 1000);
    let hold = args.secs("hold", 10.0);
    let settle = args.secs("settle", 1.0);
    let ctx = Rc::new(ctx);
    let st = Rc::new(IdleState {
        phase: Phase::new(),
        conns: ConnStats::default(),
        sem: Semaphore::new(ctx.connect_concurrency),
        open_now: Cell::new(0),
        pings: Cell::new(0),
    });
    // Baseline: the server before any connection of ours exists.
    let base = sys::sample(&ctx.server_pids, &ctx.aux_pids);
    let t_open = Instant::now();
    for i in 0..n {
        tokio::task::spawn_local(idle_conn(ctx.clone(), st.clone(), i));
    }
    wait_until(ctx.connect_timeout * 4 + Duration::from_secs((n / 200) as u64), || {
        st.conns.ok.get() + st.conns.failed.get() >= n
    })
    .await;
    let open_s = t_open.elapsed().as_secs_f64();
    eprintln!(
        "IDLE_OPEN ok={} failed={} in {:.2}s",
        st.conns.ok.get(),
        st.conns.failed.get(),
        open_s
    );
    st.phase.set(MEASURE);
    sleep(settle).await;
    let held = sys::sample(&ctx.server_pids, &ctx.aux_pids);
    let open_at_sample = st.open_now.get();
    let hold_left = hold.saturating_sub(settle);
    sleep(hold_left).await;
    let end = sys::sample(&ctx.server_pids, &ctx.aux_pids);
    let still_open = st.open_now.get();
    st.phase.set(STOP);
    let rss_per_conn = match (base.server_rss_kb, held.server_rss_kb) {
        (Some(b), Some(h)) if open_at_sample > 0 => Some(((h as f64 - b as f64) * 1024.0 / open_at_sample as f64).round()),
        _ => None,
    };
    let server = if !ctx.server_pids.is_empty() {
        json!({
            "rss_kb_baseline": base.server_rss_kb,
            "rss_kb_held": held.server_rss_kb,
            "rss_kb_end": end.server_rss_kb,
            "rss_bytes_per_conn": rss_per_conn,
            "cpu_s_while_held": match (held.server_cpu, end.server_cpu) { (Some(a), Some(b)) => Some(round3(b - a)), _ => None },
            "cpu_s_opening": match (base.server_cpu, held.server_cpu) { (Some(a), Some(b)) => Some(round3(b - a)), _ => None },
        })
    } else {
        Value::Null
    };
    let human = format!(
        "idle {n}: opened {} failed {} closed early {} still open {} after {:.1}s hold; open took {:.2}s{}",
        st.conns.ok.get(),
        st.conns.failed.get(),
        st.conns.closed_early.get(),
        still_open,
        hold.as_secs_f64(),
        open_s,
        rss_per_conn
            .map(|r| format!(
                "; server RSS {} -> {} KiB = {:.0} B/conn",
                base.server_rss_kb.unwrap_or(0),
                held.server_rss_kb.unwrap_or(0),
                r
            ))
            .unwrap_or_default()
    );
    let out = merge(
        base_json("idle", &ctx, json!({ "conns": n, "hold_s": hold.as_secs_f64(), "settle_s": settle.as_secs_f64() })),
        json!({
            "open_s": round3(open_s),
            "conns": st.conns.json(),
            "opened": st.conns.ok.get(),
            "failed": st.conns.failed.get(),
            "closed_early": st.conns.closed_early.get(),
            "open_at_rss_sample": open_at_sample,
            "still_open": still_open,
            "pings_answered": st.pings.get(),
            "server": server,
            "loadgen_cpu_s": round3(end.self_cpu - base.self_cpu),
        }),
    );
    (out, human)
}

async fn idle_conn(ctx: Rc<Ctx>, st: Rc<IdleState>, i: usize) {
    let permit = st.sem.acquire().await.unwrap();
    let r = open(&ctx, i, 512).await;
    drop(permit);
    let mut c = match r {
        Ok(c) => c,
        Err(e) => return st.conns.fail(e),
    };
    c.shrink();
    st.conns.ok.set(st.conns.ok.get() + 1);
    st.open_now.set(st.open_now.get() + 1);
    loop {
        match c.read_some().await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        c.drain(|_| {});
        if !c.wbuf.is_empty() {
            st.pings.set(st.pings.get() + 1);
        }
        if c.flush().await.is_err() || c.got_close {
            break;
        }
        c.shrink();
    }
    st.open_now.set(st.open_now.get() - 1);
    if st.phase.get() < STOP {
        st.conns.closed_early.set(st.conns.closed_early.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(urls: usize) -> Ctx {
        let urls: Vec<String> = (0..urls).map(|i| format!("ws://127.0.0.1:{}/ws", 9000 + i)).collect();
        Ctx {
            targets: urls.iter().map(|u| ws::parse_url(u).unwrap()).collect(),
            urls,
            proto: ws::Proto::Plain,
            sources: vec![],
            server_pids: vec![],
            aux_pids: vec![],
            warmup: Duration::from_millis(0),
            connect_concurrency: 1,
            connect_timeout: Duration::from_secs(1),
            deflate: None,
        }
    }

    #[test]
    fn round_robin_targets() {
        let c = ctx(3);
        assert_eq!(c.target_for(0).addr.port(), 9000);
        assert_eq!(c.target_for(4).addr.port(), 9001);
        assert_eq!(c.target_for(1502).addr.port(), 9002);
    }

    #[test]
    fn completion_loss_and_late_deliveries() {
        let st = FanState::new(&ctx(3), 2, 2, 4);
        st.phase.set(MEASURE);
        // publisher 0: seq 0 to a room of 2; publisher 1: seq 1 to a room of 3
        for (seq, remaining, publisher) in [(0u64, 2usize, 0usize), (1, 3, 1)] {
            st.pending.borrow_mut().insert(seq, Pending { t: 1_000, remaining, publisher });
            st.inflight[publisher].set(1);
        }
        st.delivered(0, 1_000, 1_050);
        st.delivered(0, 1_000, 1_070);
        assert_eq!((st.completed.get(), st.inflight[0].get(), st.inflight[1].get()), (1, 0, 1));
        st.delivered(1, 1_000, 1_080);
        // seq 1 still lacks 2 deliveries: given up after 1 ms (now = 2_500 us)
        st.expire(1_900, 1_000);
        assert_eq!(st.lost.get(), 0);
        st.expire(2_500, 1_000);
        assert_eq!((st.lost.get(), st.missing.get(), st.inflight[1].get()), (1, 2, 0));
        // a late delivery of it, or a duplicate of a completed one, is unknown
        st.delivered(1, 1_000, 3_000);
        st.delivered(0, 1_000, 3_000);
        assert_eq!(st.unknown.get(), 2);
        assert_eq!(st.deliveries.get(), 5);
        // latencies 50, 70, 80 µs in the window (exact below 128 µs), then 2 s late ones
        assert_eq!(st.delivery.borrow().percentile(50.0), 80);
    }
}
