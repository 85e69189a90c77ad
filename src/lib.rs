//! ferrosocket's core: a WebSocket runtime whose transport is Rust, driven from Node through the
//! N-API adapter (`addon`, left out of tests and of builds without the `napi-addon` feature).
//!
//! Layout, bottom to top; a module depends only on modules above it in this list (checked by
//! `scripts/check-deps.mjs`):
//! - `protocol`: RFC 6455 as pure functions over bytes (`error` is the leaf, then `close`, `frame`,
//!   `reader`, `handshake`, `policy`).
//! - `config`: validated options.
//! - `envelope`, `inbound`, `bridge`: splitting JSON envelopes, the global inbound bound, and the
//!   batch handed to JS.
//! - transport: `outbound` (write queue), `wakeups`, `conn` (state shared with publishers, and
//!   its traffic counters), `metrics` (opens, closes, rejections, publishes, departed traffic),
//!   `session` (what a run of one WebSocket does, and the `SessionContext`, `Departures` and
//!   `InboundHook` seams), `driver` (many connections per I/O thread).
//! - fan-out: `registry` (who is in an audience) under `fanout` (the one interface every publish
//!   and membership change goes through, reporting changes to observers).
//! - `cluster`: the fan-out of a node among several, over Redis (bus messages, presence
//!   scripts, the tasks that talk to Redis); wraps the local fan-out.
//! - runtime: `lifecycle` (connection count, ids, shutdown waiting), `upgrade` (handshakes),
//!   `server` (builds the contexts, publishes, heartbeats, shuts down).
//! - `hooks`: Rust-side handlers the addon may install (bench reference, panic test hook).
//! - `client`: the native client transport (WebSocket client connections over tokio-tungstenite
//!   on its own runtime, events batched to JS); independent of the server modules.
//!
//! Unit tests sit next to the logic they test; the runtime is driven over real sockets by the
//! Node suites in `__test__/` and `test/abuse/`.

/// jemalloc for the addon's own allocations: its size classes fit our small per-connection
/// allocations and tokio's 128-byte-aligned task cells (handshakes) better than glibc's
/// `memalign`; it cut idle memory per connection by ~9% (measured in the commit that added it). `disable_initial_exec_tls`: the addon is `dlopen`ed.
#[cfg(feature = "napi-addon")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// The connection drivers run on epoll/kqueue with raw descriptors (mio + tokio's AsyncFd).
#[cfg(not(unix))]
compile_error!("ferrosocket needs a Unix platform (Linux, or macOS untested)");

pub mod bridge;
pub mod client;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod driver;
pub mod envelope;
pub mod fanout;
pub mod frames;
pub mod hooks;
pub mod inbound;
pub mod lifecycle;
pub mod metrics;
pub mod outbound;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod session;
pub mod upgrade;
pub mod wakeups;

/// The N-API adapter. Left out of `cargo test` and of builds without the `napi-addon` feature
/// (the fuzz targets): executables cannot link N-API symbols.
#[cfg(all(feature = "napi-addon", not(test)))]
mod addon;

/// The N-API class of the native client transport (`NativeClientPool` over `client`); gated as
/// `addon` is.
#[cfg(all(feature = "napi-addon", not(test)))]
mod addon_client;

/// Replays the committed fuzz corpus through the fuzz targets' own checks on stable Rust. A unit
/// test rather than `tests/`: integration tests link the rlib with the addon in it.
#[cfg(test)]
#[path = "../fuzz/replay.rs"]
mod fuzz_corpus;

/// Lets the shared fuzz checks name the crate `ferrosocket` from inside it, as the targets do.
#[cfg(test)]
extern crate self as ferrosocket;
