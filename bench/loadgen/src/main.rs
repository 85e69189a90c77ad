//! ferrosocket benchmark load generator. See bench/README.md.
//!
//! Single-threaded on purpose (tokio current_thread; the connect mode uses its own epoll loop):
//! the benchmark pins it to one core and the server to the other, and the server must be the busy
//! process.

mod connect;
mod deflate;
mod fine;
mod hist;
mod modes;
mod payload;
mod sys;
mod ws;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ws::{Proto, Target};

static START: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the load generator started (monotonic).
#[inline]
pub fn now_us() -> u64 {
    START.get().expect("START set in main").elapsed().as_micros() as u64
}

pub struct Ctx {
    /// Every `--url` / `--urls` target in order; the first is "the" server (publishers, echo with
    /// one URL, connect). Connections of the echo/fanout/rooms/idle modes go round-robin over them.
    pub targets: Vec<Target>,
    pub urls: Vec<String>,
    pub proto: Proto,
    pub sources: Vec<IpAddr>,
    /// `--server-pid` (repeatable, or comma-separated): processes whose CPU and RSS are summed.
    pub server_pids: Vec<u32>,
    /// `--aux-pid` (repeatable): other processes (e.g. redis-server) whose CPU is reported apart.
    pub aux_pids: Vec<u32>,
    pub warmup: Duration,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    /// `--deflate` / `--deflate-offer`: the permessage-deflate offer every connection makes.
    pub deflate: Option<String>,
}

impl Ctx {
    /// The target connection `i` goes to (round-robin over the URLs).
    pub fn target_for(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[i % self.sources.len()])
        }
    }
}

pub struct Args {
    /// Every value given for each option, in order (an option may be repeated).
    map: HashMap<String, Vec<String>>,
}

impl Args {
    /// The last value given for `k`.
    pub fn str(&self, k: &str) -> Option<&str> {
        self.map.get(k).and_then(|v| v.last()).map(|s| s.as_str())
    }
    /// Every value given for `k` (repeated options), each also split on commas; empty parts dropped.
    pub fn all(&self, k: &str) -> Vec<String> {
        self.map
            .get(k)
            .map(|vs| vs.iter().flat_map(|v| v.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        match self.str(k) {
            Some(v) => v.parse().unwrap_or_else(|_| die(&format!("--{k}: not a number: {v}"))),
            None => default,
        }
    }
    pub fn secs(&self, k: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.num(k, default))
    }
}

pub fn die(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

const USAGE: &str = "usage: loadgen <mode> --url ws://127.0.0.1:PORT/ws [options]
modes:
  echo    --conns N --inflight K --size B --duration S
  fanout  --subs N --window W --size B --duration S [--room NAME] [--settle S] [--loss-timeout S]
  rooms   --rooms R --members M --publishers P --window W --size B --duration S [--settle S] [--loss-timeout S]
          fanout, rooms: [--warmup-completions N [--warmup-completions-timeout S]]
          (before the --warmup seconds, publish until N broadcasts reached all their members)
  chat    --conns N --room-min 10 --room-max 50 --interval-ms I --window W --size B --duration S
          (--shape fine only) rooms of room-min..room-max members (fixed seed, --seed), every member
          sends one bcast to its room every I ms +-50%, at most W of its own in flight
  idle    --conns N --hold S
  connect --conns C --duration S
common options:
  --shape batched|fine       echo, fanout, chat: the client shape (default batched: the hand-rolled
                             client, many frames per write). fine: every connection a tokio-tungstenite
                             WebSocketStream, one message per write, the next sent only when a reply
                             (echo) or a completed broadcast (fanout, chat) frees a window slot
  --proto plain|socketio     wire protocol (default plain: {\"event\",\"data\"} JSON)
  --url URL                  repeatable (or --urls A,B,C): connections go round-robin over the URLs,
                             publishers (fanout, rooms) to the first; connect takes one URL only
  --sources 127.0.0.1,127.0.0.2,...   local source addresses, used round-robin
  --server-pid PID           sample this process's CPU and RSS (from /proc) around the measured window;
                             repeatable (or comma list): CPU and RSS are summed, per-PID CPU reported too
  --aux-pid PID              repeatable: another process (e.g. redis-server) whose CPU is reported apart
  --warmup S                 seconds of load before measuring (default 1; echo/fanout/connect)
  --connect-concurrency N    handshakes in progress at once while opening connections (default 64)
  --connect-timeout S        per-connection handshake timeout (default 10)
  --deflate                  offer permessage-deflate (client_no_context_takeover; server_no_context_takeover)
                             and inflate compressed messages (RSV1); what we send stays uncompressed.
                             Output gets a `deflate` object; fanout/rooms also report wire bytes (not connect)
  --deflate-offer OFFER      the same with another offer, e.g. 'permessage-deflate; client_max_window_bits'
                             (a browser's: a server that keeps its context gets an inflater per connection)
  --payload pad|json|json1k  fanout/rooms broadcast data: pad (default: `pad` of x's up to --size),
                             json (a chat-message-like object, --size bytes, compressible like real JSON),
                             json1k (json with --size 1024)
output: one JSON object on stdout, one human-readable line on stderr";

fn main() {
    START.get_or_init(Instant::now);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv[0] == "-h" || argv[0] == "--help" {
        println!("{USAGE}");
        return;
    }
    let mode = argv[0].clone();
    let mut map = HashMap::new();
    // options that take no value
    const FLAGS: [&str; 1] = ["deflate"];
    let mut i = 1;
    while i < argv.len() {
        let k = argv[i].strip_prefix("--").unwrap_or_else(|| die(&format!("unexpected argument {}\n{USAGE}", argv[i])));
        if FLAGS.contains(&k) {
            map.entry(k.to_string()).or_insert_with(Vec::new).push("1".to_string());
            i += 1;
        } else if let Some((k, v)) = k.split_once('=') {
            map.entry(k.to_string()).or_insert_with(Vec::new).push(v.to_string());
            i += 1;
        } else {
            let v = argv.get(i + 1).unwrap_or_else(|| die(&format!("--{k} needs a value")));
            map.entry(k.to_string()).or_insert_with(Vec::new).push(v.clone());
            i += 2;
        }
    }
    let args = Args { map };
    let urls: Vec<String> = args.all("url").into_iter().chain(args.all("urls")).collect();
    if urls.is_empty() {
        die("--url is required");
    }
    let targets = urls.iter().map(|u| ws::parse_url(u).unwrap_or_else(|e| die(&e))).collect();
    let pids = |k: &str| -> Vec<u32> {
        args.all(k).iter().map(|p| p.parse().unwrap_or_else(|_| die(&format!("--{k}: not a pid: {p}")))).collect()
    };
    let proto = match args.str("proto").unwrap_or("plain") {
        "plain" | "ferrosocket" | "json" => Proto::Plain,
        "socketio" | "socket.io" => Proto::SocketIo,
        p => die(&format!("unknown --proto {p}")),
    };
    let sources = match args.str("sources") {
        Some(s) if !s.is_empty() => s
            .split(',')
            .map(|a| a.trim().parse::<IpAddr>().unwrap_or_else(|e| die(&format!("--sources {a}: {e}"))))
            .collect(),
        _ => Vec::new(),
    };
    let (soft, hard) = sys::raise_nofile();
    let ctx = Ctx {
        targets,
        urls,
        proto,
        sources,
        server_pids: pids("server-pid"),
        aux_pids: pids("aux-pid"),
        warmup: args.secs("warmup", 1.0),
        connect_concurrency: args.num("connect-concurrency", 64usize).max(1),
        connect_timeout: args.secs("connect-timeout", 10.0),
        deflate: match (args.str("deflate-offer"), args.str("deflate")) {
            (Some(o), _) => Some(o.to_string()),
            (None, Some("1" | "true")) => Some(deflate::DEFAULT_OFFER.to_string()),
            (None, Some("0" | "false") | None) => None,
            (None, Some(v)) => die(&format!("--deflate takes no value (got {v}); see --deflate-offer")),
        },
    };

    let fine = match args.str("shape").unwrap_or("batched") {
        "batched" => false,
        "fine" => true,
        s => die(&format!("unknown --shape {s} (batched, fine)")),
    };
    if fine && !matches!(mode.as_str(), "echo" | "fanout" | "chat") {
        die(&format!("{mode}: --shape fine is for echo, fanout and chat"));
    }
    if mode == "chat" && !fine {
        die("chat: only with --shape fine");
    }
    if fine && ctx.deflate.is_some() {
        die("--shape fine: --deflate is not supported");
    }
    let shaped = matches!(mode.as_str(), "echo" | "fanout" | "rooms" | "chat");
    let deflate_offer = ctx.deflate.clone();
    let result = if mode == "connect" {
        if ctx.targets.len() > 1 {
            die("connect: one --url only");
        }
        if ctx.deflate.is_some() {
            die("connect: --deflate is not supported");
        }
        // Its own epoll loop on raw sockets, no tokio (see connect.rs).
        connect::run(ctx, &args)
    } else {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            match mode.as_str() {
                "echo" if fine => fine::echo(ctx, &args).await,
                "fanout" if fine => fine::fanout(ctx, &args).await,
                "chat" => fine::chat(ctx, &args).await,
                "echo" => modes::echo(ctx, &args).await,
                "fanout" => modes::fanout(ctx, &args).await,
                "rooms" => modes::rooms(ctx, &args).await,
                "idle" => modes::idle(ctx, &args).await,
                m => die(&format!("unknown mode {m}\n{USAGE}")),
            }
        })
    };
    let (mut json, human) = result;
    if let Some(o) = json.as_object_mut() {
        if shaped {
            o.insert("shape".into(), serde_json::json!(if fine { "fine" } else { "batched" }));
        }
        o.insert("nofile_limit".into(), serde_json::json!({ "soft": soft, "hard": hard }));
        if let Some(offer) = &deflate_offer {
            o.insert("deflate".into(), deflate::stats_json(offer));
        }
    }
    println!("{}", json);
    eprintln!("{human}");
    // Do not wait for connection tasks to wind down: exiting closes every socket.
    std::process::exit(0);
}
