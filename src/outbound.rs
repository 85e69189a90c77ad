//! One connection's outbound queue: encoded frames waiting for the socket to accept them.
//!
//! Bounded by messages and bytes (`backpressure` options). Frames are `Bytes`, so a fan-out
//! frame queued for 10,000 connections is one allocation with 10,000 reference counts. Only the
//! frame at the head can be partially written; overflow keeps that one (its tail must still go
//! out or the stream is corrupt) and drops the rest, so a stuck reader frees its memory at once.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Most frames handed to one vectored write.
pub const MAX_IOV: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue is full: the connection must be closed with 1013.
    Overflow,
}

#[derive(Debug)]
pub struct WriteQueue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The head frame has been partially written.
    head_started: bool,
    // u32: limits above 4 Gi are no limits in practice, and every connection carries them.
    max_messages: u32,
    max_bytes: u32,
}

impl WriteQueue {
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self { frames: VecDeque::new(), bytes: 0, head_started: false, max_messages: clamp(max_messages), max_bytes: clamp(max_bytes) }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Queues an application frame, enforcing the limits.
    pub fn push_data(&mut self, frame: Bytes) -> Push {
        if self.frames.len() >= self.max_messages as usize || self.bytes + frame.len() > self.max_bytes as usize {
            return Push::Overflow;
        }
        self.push_unbounded(frame);
        Push::Queued
    }

    /// Queues a frame regardless of the limits. Only for frames that cannot repeat: the one
    /// close frame, the unwritten tail of a frame partially written straight to the socket, and
    /// a frame that found the queue empty but the socket full (the queue is then not empty, so
    /// the next frame goes through [`WriteQueue::push_data`]). Pings and pongs use `push_data`.
    pub fn push_unbounded(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Queues the tail of a frame whose beginning already reached the socket.
    pub fn push_started(&mut self, tail: Bytes) {
        debug_assert!(self.frames.is_empty());
        self.push_unbounded(tail);
        self.head_started = true;
    }

    /// Drops every frame not yet started (overflow, termination).
    pub fn discard_unsent(&mut self) {
        let keep = usize::from(self.head_started);
        self.frames.truncate(keep);
        self.bytes = self.frames.iter().map(Bytes::len).sum();
    }

    /// Fills `out` with the queued frames for one vectored write; returns how many.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, frame) in out.iter_mut().zip(self.frames.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        n
    }

    /// Records that the socket accepted `written` bytes from the front of the queue.
    pub fn consume(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let head = self.frames.front_mut().expect("consumed more than queued");
            if written >= head.len() {
                written -= head.len();
                self.frames.pop_front();
                self.head_started = false;
            } else {
                head.advance(written);
                self.head_started = true;
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn limits_by_messages_and_bytes() {
        let mut q = WriteQueue::new(2, 100);
        assert_eq!(q.push_data(b(10)), Push::Queued);
        assert_eq!(q.push_data(b(10)), Push::Queued);
        assert_eq!(q.push_data(b(1)), Push::Overflow, "message limit");
        let mut q = WriteQueue::new(10, 100);
        assert_eq!(q.push_data(b(60)), Push::Queued);
        assert_eq!(q.push_data(b(41)), Push::Overflow, "byte limit");
        q.push_unbounded(b(500));
        assert_eq!(q.buffered_bytes(), 560, "a close frame bypasses the limits");
    }

    #[test]
    fn partial_writes_advance_the_head() {
        let mut q = WriteQueue::new(10, 1000);
        q.push_data(Bytes::from_static(b"abc"));
        q.push_data(Bytes::from_static(b"defg"));
        q.consume(4);
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = q.io_slices(&mut iov);
        assert_eq!(n, 1);
        assert_eq!(&*iov[0], b"efg");
        assert_eq!(q.buffered_bytes(), 3);
        q.consume(3);
        assert!(q.is_empty());
    }

    #[test]
    fn overflow_keeps_only_a_started_head() {
        let mut q = WriteQueue::new(10, 1000);
        q.push_data(b(10));
        q.push_data(b(10));
        q.consume(5);
        q.discard_unsent();
        assert_eq!((q.len(), q.buffered_bytes()), (1, 5));
        let mut q = WriteQueue::new(10, 1000);
        q.push_data(b(10));
        q.discard_unsent();
        assert!(q.is_empty(), "an unstarted head is dropped too");
        q.push_started(b(3));
        q.push_data(b(4));
        q.discard_unsent();
        assert_eq!(q.buffered_bytes(), 3);
    }
}
