//! RFC 6455 pieces that know nothing about sockets or the runtime: frame codec, message
//! reassembly, close-frame rules, the HTTP upgrade, and the permessage-deflate extension (RFC 7692). Pure functions over byte slices, so every
//! rule is unit-tested without a network.

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod policy;
pub mod reader;
