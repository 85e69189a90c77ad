//! ferrosocket benchmark load generator. See bench/README.md.
//!
//! Single-threaded on purpose (tokio current_thread; the connect mode uses its own epoll loop):
//! the benchmark pins it to one core and the server to the other, and the server must be the busy
//! process.

mod connect;
mod hist;
mod modes;
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
    pub target: Target,
    pub url: String,
    pub proto: Proto,
    pub sources: Vec<IpAddr>,
    pub server_pid: Option<u32>,
    pub warmup: Duration,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
}

impl Ctx {
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[i % self.sources.len()])
        }
    }
}

pub struct Args {
    map: HashMap<String, String>,
}

impl Args {
    pub fn str(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(|s| s.as_str())
    }
    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        match self.map.get(k) {
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
  fanout  --subs N --window W --size B --duration S
  idle    --conns N --hold S
  connect --conns C --duration S
common options:
  --proto plain|socketio     wire protocol (default plain: {\"event\",\"data\"} JSON)
  --sources 127.0.0.1,127.0.0.2,...   local source addresses, used round-robin
  --server-pid PID           sample this process's CPU and RSS (from /proc) around the measured window
  --warmup S                 seconds of load before measuring (default 1; echo/fanout/connect)
  --connect-concurrency N    handshakes in progress at once while opening connections (default 64)
  --connect-timeout S        per-connection handshake timeout (default 10)
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
    let mut i = 1;
    while i < argv.len() {
        let k = argv[i].strip_prefix("--").unwrap_or_else(|| die(&format!("unexpected argument {}\n{USAGE}", argv[i])));
        if let Some((k, v)) = k.split_once('=') {
            map.insert(k.to_string(), v.to_string());
            i += 1;
        } else {
            let v = argv.get(i + 1).unwrap_or_else(|| die(&format!("--{k} needs a value")));
            map.insert(k.to_string(), v.clone());
            i += 2;
        }
    }
    let args = Args { map };
    let url = args.str("url").unwrap_or_else(|| die("--url is required")).to_string();
    let target = ws::parse_url(&url).unwrap_or_else(|e| die(&e));
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
        target,
        url,
        proto,
        sources,
        server_pid: args.str("server-pid").map(|p| p.parse().unwrap_or_else(|_| die("--server-pid: not a pid"))),
        warmup: args.secs("warmup", 1.0),
        connect_concurrency: args.num("connect-concurrency", 64usize).max(1),
        connect_timeout: args.secs("connect-timeout", 10.0),
    };

    let result = if mode == "connect" {
        // Its own epoll loop on raw sockets, no tokio (see connect.rs).
        connect::run(ctx, &args)
    } else {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            match mode.as_str() {
                "echo" => modes::echo(ctx, &args).await,
                "fanout" => modes::fanout(ctx, &args).await,
                "idle" => modes::idle(ctx, &args).await,
                m => die(&format!("unknown mode {m}\n{USAGE}")),
            }
        })
    };
    let (mut json, human) = result;
    if let Some(o) = json.as_object_mut() {
        o.insert("nofile_limit".into(), serde_json::json!({ "soft": soft, "hard": hard }));
    }
    println!("{}", json);
    eprintln!("{human}");
    // Do not wait for connection tasks to wind down: exiting closes every socket.
    std::process::exit(0);
}
