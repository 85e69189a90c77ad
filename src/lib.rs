//! ferrosocket core. Everything but `napi_api` is plain Rust, unit-tested with `cargo test`.

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
pub mod config;
pub mod conn;
pub mod connection;
pub mod driver;
pub mod envelope;
pub mod inbound;
pub mod outbound;
pub mod protocol;
pub mod reference;
pub mod registry;
pub mod server;
pub mod upgrade;

/// The N-API adapter. Left out of `cargo test` and of builds without the `napi-addon` feature
/// (the fuzz targets): executables cannot link N-API symbols.
#[cfg(all(feature = "napi-addon", not(test)))]
mod addon;

/// Replays the committed fuzz corpus through the fuzz targets' own checks on stable Rust. A unit
/// test rather than `tests/`: integration tests link the rlib with the addon in it.
#[cfg(test)]
#[path = "../fuzz/replay.rs"]
mod fuzz_corpus;

/// Lets the shared fuzz checks name the crate `ferrosocket` from inside it, as the targets do.
#[cfg(test)]
extern crate self as ferrosocket;
