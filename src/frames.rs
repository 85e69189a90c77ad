//! One outbound message encoded once per kind of recipient: the plain frame for connections
//! without permessage-deflate (and for payloads under the threshold), and one compressed frame
//! per window size among those that negotiated it (in practice one: every browser offers 15).
//! Each encoding is made on first need and shared by every recipient that takes it, so a publish
//! to 10,000 compressing connections is compressed once, as it is encoded once without
//! compression.

use crate::conn::Conn;
use crate::protocol::deflate::{self, DeflateConfig};
use crate::protocol::frame;
use bytes::Bytes;

pub struct OutboundFrames<'a> {
    opcode: u8,
    payload: &'a [u8],
    /// The server's `compression` option; `None`: every recipient gets the plain frame.
    deflate: Option<&'a DeflateConfig>,
    plain: Option<Bytes>,
    /// Compressed frames by window bits.
    compressed: Vec<(u8, Bytes)>,
}

impl<'a> OutboundFrames<'a> {
    pub fn new(opcode: u8, payload: &'a [u8], deflate: Option<&'a DeflateConfig>) -> Self {
        // Below the threshold nobody gets a compressed frame: decide once.
        let deflate = deflate.filter(|c| payload.len() >= c.threshold);
        Self { opcode, payload, deflate, plain: None, compressed: Vec::new() }
    }

    /// How many compressed encodings were made (for the metrics).
    pub fn compressions(&self) -> usize {
        self.compressed.len()
    }

    /// The frame for `conn`.
    pub fn for_conn(&mut self, conn: &Conn) -> &Bytes {
        let window = conn.deflate_window();
        match self.deflate {
            Some(config) if window != 0 => {
                let i = match self.compressed.iter().position(|(w, _)| *w == window) {
                    Some(i) => i,
                    None => {
                        let deflated = deflate::compress(self.payload, config.level, window);
                        self.compressed.push((window, frame::encode_compressed(self.opcode, &deflated)));
                        self.compressed.len() - 1
                    }
                };
                &self.compressed[i].1
            }
            _ => self.plain.get_or_insert_with(|| frame::encode(self.opcode, self.payload)),
        }
    }
}
