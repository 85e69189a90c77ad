//! Handlers that live in Rust, installed by the addon through the [`InboundHook`] seam. Neither is
//! for applications: the bench's reference handlers show what crossing into JS costs, and the
//! panic hook lets the tests prove a panic stays inside its connection. Nothing below `hooks`
//! knows about them; with none installed the hot path pays one branch.
//!
//! [`InboundHook`]: crate::session::InboundHook

pub mod panic;
pub mod reference;
