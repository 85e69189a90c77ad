//! Close-frame rules: which codes a peer may send, how a received close payload is read, and how
//! reasons are bounded (a close frame's payload is at most 125 bytes: 2 for the code, 123 reason).

use super::error::FrameError;

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const NO_STATUS: u16 = 1005;
pub const ABNORMAL: u16 = 1006;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_VIOLATION: u16 = 1008;
pub const MESSAGE_TOO_BIG: u16 = 1009;
pub const INTERNAL_ERROR: u16 = 1011;
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Longest close reason that fits a control frame.
pub const MAX_REASON_BYTES: usize = 123;

/// Truncates `reason` to at most 123 bytes without splitting a UTF-8 character.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Codes a peer may put on the wire (RFC 6455 §7.4.1 and the IANA registry); 1005/1006/1015 are
/// reserved for local reporting and must never appear in a frame.
pub fn is_valid_wire_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Codes an application may ask us to send; same set as the wire, as we are the one sending it.
pub fn is_sendable_code(code: u16) -> bool {
    is_valid_wire_code(code)
}

/// Reads a received close payload into `(code, reason)`. An empty payload means "no status".
pub fn parse_close_payload(payload: &[u8]) -> Result<(u16, &str), FrameError> {
    match payload.len() {
        0 => Ok((NO_STATUS, "")),
        1 => Err(FrameError::Protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_wire_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason =
                simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| FrameError::InvalidUtf8)?;
            Ok((code, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_wire_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_wire_code(bad), "{bad}");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close_payload(b""), Ok((NO_STATUS, "")));
        assert!(parse_close_payload(b"\x03").is_err());
        assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok((1000, "bye")));
        assert_eq!(parse_close_payload(b"\x03\xed"), Err(FrameError::Protocol("invalid close code")));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn reasons_truncate_on_char_boundary() {
        assert_eq!(truncate_reason("short"), "short");
        let s = "a".repeat(200);
        assert_eq!(truncate_reason(&s).len(), 123);
        let s = format!("{}€", "a".repeat(121)); // € is 3 bytes: 121+3 = 124
        assert_eq!(truncate_reason(&s), "a".repeat(121));
    }
}
