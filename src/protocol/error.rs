//! Why a peer's bytes cannot be accepted: the leaf every protocol module shares (tungstenite keeps
//! its error type apart the same way), so the frame codec and the close rules depend on it and
//! not on each other.

/// Why a frame could not be accepted. Maps 1:1 onto a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 6455 violation (reserved bits/opcodes, unmasked client frame, bad control frame): 1002.
    Protocol(&'static str),
    /// Declared payload exceeds the configured `maxPayload`: 1009.
    TooLarge,
    /// Text payload or close reason is not UTF-8: 1007.
    InvalidUtf8,
    /// One message arrived in more fragments than the reader allows (see
    /// `reader::max_fragments`): 1009, since it is the message's cost that is refused.
    TooFragmented,
    /// A permessage-deflate message is not valid deflate data: 1007.
    InvalidCompressed,
}
