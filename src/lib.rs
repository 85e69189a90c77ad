//! ferrosocket core. Everything but `napi_api` is plain Rust, unit-tested with `cargo test`.

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
