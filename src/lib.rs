//! ferrosocket core. Everything but `napi_api` is plain Rust, unit-tested with `cargo test`.

/// jemalloc for the addon's own allocations: tokio's task cells and I/O registrations are
/// 128-byte-aligned, which glibc serves with `memalign` and up to an alignment's worth of waste
/// each; jemalloc's aligned size classes cut idle memory per connection by ~9% (measured in the
/// commit that added it). `disable_initial_exec_tls`: the addon is `dlopen`ed.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod bridge;
pub mod config;
pub mod conn;
pub mod connection;
pub mod envelope;
pub mod outbound;
pub mod protocol;
pub mod reference;
pub mod registry;
pub mod server;
pub mod upgrade;

/// The N-API adapter. Left out of `cargo test`: test binaries cannot link N-API symbols.
#[cfg(not(test))]
mod addon;
