//! RFC 6455 pieces that know nothing about sockets or the runtime: frame codec, message
//! reassembly, close-frame rules and the HTTP upgrade. Pure functions over byte slices, so every
//! rule is unit-tested without a network.

pub mod close;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod policy;
pub mod reader;
