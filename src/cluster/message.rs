//! The bytes one node sends the others for a publish or a close: pure encoding and decoding,
//! nothing about Redis. A bus message names the namespace by *name* (indexes are per process),
//! connections by their global ids (`"nodeId:n"`), and carries the payload already encoded by
//! the publishing node, so a receiving node only frames it.
//!
//! A publish to several rooms/users goes out once per target channel (only nodes with members
//! subscribe to a room's channel). Every copy carries the whole audience and the index of the
//! target it was sent for; a receiving node delivers copy `i` to its connections in target `i`
//! that are in no earlier target, so a connection in two of the rooms gets the publish once.
//! Targets are ordered rooms, then users, then the nodes of the named connections (first seen
//! first).
//!
//! Layout (integers little-endian, strings as `u32` length + UTF-8 bytes):
//! `version u8 | kind u8 | target u16 | origin str | namespace str | rooms u16+str* | users u16+str* |
//!  connections u16+str* | except u16+str* | [close: code u16, reason str] | payload (the rest)`

/// Bumped on any layout change; a node drops messages of another version (and counts them).
pub const VERSION: u8 = 1;
const KIND_PUBLISH: u8 = 1;
const KIND_CLOSE: u8 = 2;
/// Byte offset of the `target` field, patched per copy by [`set_target`].
const TARGET_AT: usize = 2;
/// The `target` of a message sent once (everyone, or a single target).
pub const NO_TARGET: u16 = u16::MAX;
/// At most this many rooms, users, connections or excepted ids in one message (`u16` counts).
pub const MAX_LIST: usize = u16::MAX as usize - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    /// Send the payload (an encoded envelope, sent as one text frame).
    Publish,
    /// Start the close handshake with this code and reason.
    Close { code: u16, reason: &'a str },
}

/// A decoded message, borrowing from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: Kind<'a>,
    /// Which target this copy was sent for (see the module doc); [`NO_TARGET`] when sent once.
    pub target: u16,
    pub origin: &'a str,
    pub namespace: &'a str,
    /// Every connection of the namespace (then `rooms`, `users`, `connections` are empty).
    pub everyone: bool,
    pub rooms: Vec<&'a str>,
    pub users: Vec<&'a str>,
    pub connections: Vec<&'a str>,
    pub except: Vec<&'a str>,
    pub payload: &'a [u8],
}

/// What a node sends, before encoding.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub kind: &'a Kind<'a>,
    pub origin: &'a str,
    pub namespace: &'a str,
    pub everyone: bool,
    pub rooms: &'a [String],
    pub users: &'a [String],
    pub connections: &'a [String],
    pub except: &'a [String],
    pub payload: &'a [u8],
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_list(out: &mut Vec<u8>, list: &[String]) {
    out.extend_from_slice(&(list.len().min(MAX_LIST) as u16).to_le_bytes());
    for s in list.iter().take(MAX_LIST) {
        put_str(out, s);
    }
}

/// Encodes a message with [`NO_TARGET`]; [`set_target`] makes the per-target copies.
/// `everyone` is written as an empty audience with the flag in the kind byte's high bit.
pub fn encode(m: &Outgoing<'_>) -> Vec<u8> {
    let lists: usize = [m.rooms, m.users, m.connections, m.except].iter().flat_map(|l| l.iter()).map(|s| s.len() + 4).sum();
    let mut out = Vec::with_capacity(16 + m.origin.len() + m.namespace.len() + lists + m.payload.len());
    let kind = match m.kind {
        Kind::Publish => KIND_PUBLISH,
        Kind::Close { .. } => KIND_CLOSE,
    };
    out.push(VERSION);
    out.push(kind | if m.everyone { 0x80 } else { 0 });
    out.extend_from_slice(&NO_TARGET.to_le_bytes());
    put_str(&mut out, m.origin);
    put_str(&mut out, m.namespace);
    for list in [m.rooms, m.users, m.connections, m.except] {
        put_list(&mut out, list);
    }
    if let Kind::Close { code, reason } = m.kind {
        out.extend_from_slice(&code.to_le_bytes());
        put_str(&mut out, reason);
    }
    out.extend_from_slice(m.payload);
    out
}

/// Marks an encoded message as the copy sent for target `target`.
pub fn set_target(encoded: &mut [u8], target: u16) {
    encoded[TARGET_AT..TARGET_AT + 2].copy_from_slice(&target.to_le_bytes());
}

/// Why a received message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Version(u8),
    Kind(u8),
    Truncated,
    NotUtf8,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(DecodeError::Truncated)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8)
    }

    fn list(&mut self) -> Result<Vec<&'a str>, DecodeError> {
        let n = self.u16()? as usize;
        // Each entry takes at least 4 bytes: a count larger than what is left is a lie, and
        // must not size an allocation.
        if n > (self.bytes.len() - self.at) / 4 {
            return Err(DecodeError::Truncated);
        }
        (0..n).map(|_| self.str()).collect()
    }
}

pub fn decode(bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut c = Cursor { bytes, at: 0 };
    let head = c.take(2)?;
    if head[0] != VERSION {
        return Err(DecodeError::Version(head[0]));
    }
    let everyone = head[1] & 0x80 != 0;
    let kind_byte = head[1] & 0x7f;
    let target = c.u16()?;
    let origin = c.str()?;
    let namespace = c.str()?;
    let rooms = c.list()?;
    let users = c.list()?;
    let connections = c.list()?;
    let except = c.list()?;
    let kind = match kind_byte {
        KIND_PUBLISH => Kind::Publish,
        KIND_CLOSE => Kind::Close { code: c.u16()?, reason: c.str()? },
        other => return Err(DecodeError::Kind(other)),
    };
    let payload = &bytes[c.at..];
    Ok(Message { kind, target, origin, namespace, everyone, rooms, users, connections, except, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_publish_round_trips_and_copies_differ_only_in_target() {
        let (rooms, users, conns, except) = (s(&["a", "b é"]), s(&["ada"]), s(&["n2:7"]), s(&["n3:1", "n2:9"]));
        let kind = Kind::Publish;
        let out = Outgoing { kind: &kind, origin: "n1", namespace: "/", everyone: false, rooms: &rooms, users: &users, connections: &conns, except: &except, payload: br#"{"event":"x"}"# };
        let mut bytes = encode(&out);
        let m = decode(&bytes).unwrap();
        assert_eq!(m.target, NO_TARGET);
        assert_eq!((m.origin, m.namespace, m.everyone), ("n1", "/", false));
        assert_eq!((m.rooms, m.users, m.connections, m.except), (vec!["a", "b é"], vec!["ada"], vec!["n2:7"], vec!["n3:1", "n2:9"]));
        assert_eq!(m.payload, br#"{"event":"x"}"#);
        set_target(&mut bytes, 2);
        assert_eq!(decode(&bytes).unwrap().target, 2);
    }

    #[test]
    fn a_close_to_everyone_round_trips() {
        let kind = Kind::Close { code: 4001, reason: "kicked" };
        let out = Outgoing { kind: &kind, origin: "n1", namespace: "/chat", everyone: true, rooms: &[], users: &[], connections: &[], except: &[], payload: b"" };
        let bytes = encode(&out);
        let m = decode(&bytes).unwrap();
        assert_eq!(m.kind, Kind::Close { code: 4001, reason: "kicked" });
        assert!(m.everyone && m.payload.is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let kind = Kind::Close { code: 1000, reason: "r" };
        let rooms = s(&["room"]);
        let good = encode(&Outgoing { kind: &kind, origin: "n", namespace: "/", everyone: false, rooms: &rooms, users: &[], connections: &[], except: &[], payload: b"p" });
        for cut in 0..good.len() - 1 {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        assert_eq!(decode(&[9, 1]), Err(DecodeError::Version(9)));
        let mut bad_kind = good.clone();
        bad_kind[1] = 5;
        assert_eq!(decode(&bad_kind), Err(DecodeError::Kind(5)));
        // A list count of 65,000 with 10 bytes left must not allocate for 65,000 entries.
        let mut lying = vec![VERSION, KIND_PUBLISH, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xe8, 0xfd];
        lying.extend_from_slice(&[0; 10]);
        assert_eq!(decode(&lying), Err(DecodeError::Truncated));
        let mut not_utf8 = encode(&Outgoing { kind: &Kind::Publish, origin: "n", namespace: "/", everyone: false, rooms: &rooms, users: &[], connections: &[], except: &[], payload: b"" });
        let at = not_utf8.len() - 3 * 2 - 4; // first byte of "room": three empty list counts follow it
        not_utf8[at] = 0xff;
        assert_eq!(decode(&not_utf8), Err(DecodeError::NotUtf8));
    }
}
