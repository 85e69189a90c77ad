//! The `data` of a fan-out broadcast: `{"room":…,"seq":n,"t":µs,…}` (the subscribers find `seq`
//! and `t` in every delivery), filled up so that the whole message the server delivers,
//! `{"event":"bcast","data":…}`, is `--size` bytes.
//!
//! - `pad` (default): `"pad":"xxxx…"`. Compresses to almost nothing, so it says little about
//!   compression.
//! - `json` / `json1k` (= json with --size 1024): a chat message like a real app would broadcast —
//!   message id, channel, author object, mentions, reactions, thread info and a text of random
//!   common English words. Keys repeat inside the message and the structure is the same every
//!   time, while the author, mention, counters and text change per message, so a compressor
//!   without context (server_no_context_takeover) gets roughly what it would on real chat JSON
//!   (about 2× on 1 KB), not the 20× of a run of x's. ASCII only, no escapes: every server
//!   re-serialises it byte for byte (JSON.parse → JSON.stringify).

use std::io::Write as _;

use crate::ws::xorshift;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pad,
    Json,
}

/// What publishers send: the kind and the size of the delivered message in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Body {
    pub kind: Kind,
    pub size: usize,
}

impl Body {
    /// From `--payload` and `--size` (default `default_size`; json1k makes it 1024).
    pub fn from_args(payload: Option<&str>, size: Option<usize>, default_size: usize) -> Result<Body, String> {
        match payload.unwrap_or("pad") {
            "pad" => Ok(Body { kind: Kind::Pad, size: size.unwrap_or(default_size) }),
            "json" => Ok(Body { kind: Kind::Json, size: size.unwrap_or(default_size) }),
            "json1k" => Ok(Body { kind: Kind::Json, size: 1024 }),
            p => Err(format!("unknown --payload {p} (pad, json, json1k)")),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Pad => "pad",
            Kind::Json => "json",
        }
    }

    /// Write the broadcast's `data` into `out` (cleared first). `overhead`: what the envelope adds
    /// around it (`Proto::envelope_overhead`).
    pub fn write(&self, out: &mut Vec<u8>, room_json: &str, seq: u64, t: u64, overhead: usize, rng: &mut u32) {
        out.clear();
        write!(out, "{{\"room\":{room_json},\"seq\":{seq},\"t\":{t},").unwrap();
        match self.kind {
            Kind::Pad => {
                out.extend_from_slice(b"\"pad\":\"");
                let pad = self.size.saturating_sub(overhead + out.len() + 2);
                out.extend(std::iter::repeat_n(b'x', pad));
            }
            Kind::Json => {
                chat_fields(out, seq, rng);
                // the text, then (like Slack's message events) the same text again as rich-text blocks
                const BLOCKS_A: &[u8] = b"\",\"blocks\":[{\"type\":\"rich_text\",\"block_id\":\"b";
                const BLOCKS_B: &[u8] = b"\",\"elements\":[{\"type\":\"rich_text_section\",\"elements\":[{\"type\":\"text\",\"text\":\"";
                const BLOCKS_END: &[u8] = b"\"}]}]}]}";
                out.extend_from_slice(b"\"text\":\"");
                let block_id = format!("{:08x}", seq.wrapping_mul(0x9e37_79b9) as u32);
                let fixed = BLOCKS_A.len() + block_id.len() + BLOCKS_B.len() + BLOCKS_END.len();
                let room = self.size.saturating_sub(overhead + out.len() + fixed);
                let (l1, l2) = (room - room / 2, room / 2);
                let t0 = out.len();
                words(out, l1, rng);
                out.extend_from_slice(BLOCKS_A);
                out.extend_from_slice(block_id.as_bytes());
                out.extend_from_slice(BLOCKS_B);
                out.extend_from_within(t0..t0 + l2);
                out.extend_from_slice(BLOCKS_END);
                return;
            }
        }
        out.extend_from_slice(b"\"}");
    }
}

const USERS: [(&str, &str, &str, &str); 8] = [
    ("U02A7K3LM", "alice.smith", "Alice Smith", "Europe/Berlin"),
    ("U03B8M4NP", "bob.jones", "Bob Jones", "America/New_York"),
    ("U04C9N5QR", "carol.white", "Carol White", "Europe/London"),
    ("U05D1P6ST", "dave.brown", "Dave Brown", "America/Los_Angeles"),
    ("U06E2Q7UV", "erin.davis", "Erin Davis", "Asia/Tokyo"),
    ("U07F3R8WX", "frank.miller", "Frank Miller", "Europe/Paris"),
    ("U08G4S9YZ", "grace.wilson", "Grace Wilson", "Australia/Sydney"),
    ("U09H5T1AB", "heidi.moore", "Heidi Moore", "America/Chicago"),
];

const REACTIONS: [&str; 6] = ["thumbsup", "eyes", "tada", "heart", "white_check_mark", "rocket"];

fn chat_fields(out: &mut Vec<u8>, seq: u64, rng: &mut u32) {
    let r = xorshift(rng);
    let (uid, name, display, tz) = USERS[r as usize % USERS.len()];
    let (mid, mname, _, _) = USERS[(r >> 8) as usize % USERS.len()];
    let (ra, rb) = (REACTIONS[(r >> 16) as usize % REACTIONS.len()], REACTIONS[(r >> 20) as usize % REACTIONS.len()]);
    let ts = 1_700_000_000 + seq;
    write!(
        out,
        "\"type\":\"message\",\"id\":\"msg-{seq:012}\",\"channel\":{{\"id\":\"C01BENCH42\",\"name\":\"general\",\"topic\":\"Release planning and day-to-day chat\"}},\
\"user\":{{\"id\":\"{uid}\",\"name\":\"{name}\",\"display_name\":\"{display}\",\"avatar\":\"https://cdn.example.com/avatars/{uid}/72.png\",\"status\":\"online\",\"tz\":\"{tz}\"}},\
\"mentions\":[{{\"id\":\"{mid}\",\"name\":\"{mname}\"}}],\
\"reactions\":[{{\"name\":\"{ra}\",\"count\":{}}},{{\"name\":\"{rb}\",\"count\":{}}}],\
\"attachments\":[],\"edited\":false,\"thread\":{{\"reply_count\":{},\"last_reply_at\":{ts}}},\"created_at\":{ts},",
        1 + (r >> 24) % 9,
        1 + (r >> 28) % 4,
        (r >> 4) % 12,
    )
    .unwrap();
}

const WORDS: [&str; 96] = [
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with", "his",
    "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were",
    "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if",
    "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
    "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
    "people", "my", "than", "first", "water", "been", "call", "who", "deploy", "build", "release", "review", "ticket",
    "meeting", "today", "tomorrow", "branch", "merge", "test",
];

/// Exactly `n` bytes of sentences of random words.
fn words(out: &mut Vec<u8>, n: usize, rng: &mut u32) {
    let end = out.len() + n;
    let mut in_sentence = 0;
    while out.len() < end {
        let w = WORDS[xorshift(rng) as usize % WORDS.len()].as_bytes();
        if in_sentence == 0 {
            out.push(w[0].to_ascii_uppercase());
            out.extend_from_slice(&w[1..]);
        } else {
            out.extend_from_slice(w);
        }
        in_sentence += 1;
        if in_sentence > 6 && xorshift(rng).is_multiple_of(4) {
            out.extend_from_slice(b". ");
            in_sentence = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{field_u64, Proto};

    #[test]
    fn sizes_and_fields() {
        let overhead = Proto::Plain.envelope_overhead("bcast");
        let mut rng = 7u32;
        let mut data = Vec::new();
        for body in [Body::from_args(Some("json1k"), None, 100).unwrap(), Body::from_args(None, Some(100), 64).unwrap(), Body::from_args(Some("json"), Some(2000), 100).unwrap()] {
            for seq in [0u64, 7, 123_456_789] {
                body.write(&mut data, "\"bench\"", seq, 987_654_321, overhead, &mut rng);
                let mut msg = Vec::new();
                Proto::Plain.encode_event(&mut msg, "bcast", &data);
                assert_eq!(msg.len(), body.size, "{}", String::from_utf8_lossy(&msg));
                let v: serde_json::Value = serde_json::from_slice(&msg).expect("valid JSON");
                // compact and escape-free: re-serialising gives as many bytes (serde_json sorts the
                // keys; JSON.stringify, which the servers use, keeps them, so gives the same bytes)
                assert_eq!(serde_json::to_vec(&v).unwrap().len(), msg.len());
                let (s, e) = field_u64(&msg, b"\"seq\":", 0).unwrap();
                assert_eq!((s, field_u64(&msg, b"\"t\":", e).unwrap().0), (seq, 987_654_321));
            }
        }
        assert!(Body::from_args(Some("nope"), None, 1).is_err());
    }

    #[test]
    fn json_compresses_like_json() {
        use flate2::{Compress, Compression, FlushCompress};
        let body = Body::from_args(Some("json1k"), None, 100).unwrap();
        let mut rng = 1u32;
        let mut data = Vec::new();
        body.write(&mut data, "\"bench\"", 42, 1, 0, &mut rng);
        let mut z = Vec::with_capacity(2048);
        // level 6: zlib-rs's level 1 uses static Huffman codes only (like zlib-ng's deflate_quick)
        // and gets 1.57× on this message; Node's zlib gets 1.99× at level 1 and 2.04× at level 6
        Compress::new(Compression::new(6), false).compress_vec(&data, &mut z, FlushCompress::Sync).unwrap();
        let ratio = data.len() as f64 / z.len() as f64;
        assert!((1.5..4.0).contains(&ratio), "ratio {ratio}");
    }
}
