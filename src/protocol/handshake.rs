//! The HTTP/1.1 upgrade (RFC 6455 §4.2): reading the request head, deciding accept or reject,
//! and writing the response. The decision is a pure function of the parsed request and the
//! mounted paths, so every status code is unit-tested.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Request heads larger than this are answered 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the server needs from the request head.
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl UpgradeRequest {
    /// First value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears (case-insensitive).
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).count()
    }

    /// True when the comma-separated header `name` contains `token` (case-insensitive).
    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Result of reading the head so far.
#[derive(Debug)]
pub enum HeadRead {
    /// Need more bytes.
    Partial,
    /// The head is complete; `len` bytes of the buffer belong to it (the rest are frames).
    Complete(UpgradeRequest, usize),
    /// Reject with this status before any upgrade.
    Reject(u16),
}

/// Parses the request head from `buf`.
pub fn read_head(buf: &[u8]) -> HeadRead {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD_BYTES {
                return HeadRead::Reject(431);
            }
            let target = req.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, q),
                None => (target, ""),
            };
            let headers = req
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            HeadRead::Complete(
                UpgradeRequest {
                    method: req.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers,
                },
                len,
            )
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => HeadRead::Reject(431),
        Ok(httparse::Status::Partial) => HeadRead::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadRead::Reject(431),
        Err(_) => HeadRead::Reject(400),
    }
}

/// Accept or reject an upgrade to a mounted path.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Accept { route: usize, accept_key: String },
    Reject(u16),
}

/// Applies RFC 6455 §4.2.1 to a complete request. `route` maps a path to a namespace index.
pub fn decide(req: &UpgradeRequest, route: impl Fn(&str) -> Option<usize>) -> Decision {
    let Some(route) = route(&req.path) else {
        return Decision::Reject(404);
    };
    if !req.header_has_token("upgrade", "websocket") {
        return Decision::Reject(426);
    }
    if req.method != "GET" || !req.header_has_token("connection", "upgrade") {
        return Decision::Reject(400);
    }
    // Exactly one of each: HTTP/1.1 requires one Host (RFC 9112 §3.2), and two keys or versions
    // leave it unclear which one the client meant (ws and Node's http answer 400 too).
    let once = |name| req.header_count(name) == 1;
    if !once("host") || !once("sec-websocket-key") || !once("sec-websocket-version") {
        return Decision::Reject(400);
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Decision::Reject(400);
    }
    let Some(key) = req.header("sec-websocket-key").map(str::trim) else {
        return Decision::Reject(400);
    };
    let valid_key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|raw| raw.len() == 16);
    if !valid_key {
        return Decision::Reject(400);
    }
    Decision::Accept { route, accept_key: accept_key(key) }
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` response, naming the chosen subprotocol and the accepted
/// extensions if any.
pub fn switching_protocols(accept_key: &str, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
    let protocol = protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    let extensions = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept_key}\r\n{protocol}{extensions}\r\n"
    )
    .into_bytes()
}

/// The reason phrase of the statuses we answer upgrades with.
pub fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        408 => "Request Timeout",
        404 => "Not Found",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete error response that closes the connection. 400 and 426 carry
/// `Sec-WebSocket-Version: 13` (RFC 6455 §4.4) and 426 names the protocol to upgrade to.
/// `body` replaces the default text (the reason phrase); CR/LF are not allowed in it.
pub fn error_response(status: u16, body: Option<&str>) -> Vec<u8> {
    let text = status_text(status);
    let extra = match status {
        // `Connection: close`, not `Upgrade`: clients (Node's http) treat the latter as a 101.
        426 => "Upgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n",
        400 => "Connection: close\r\nSec-WebSocket-Version: 13\r\n",
        _ => "Connection: close\r\n",
    };
    let body = body.filter(|b| !b.is_empty()).unwrap_or(text).replace(['\r', '\n'], " ");
    format!(
        "HTTP/1.1 {status} {text}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> UpgradeRequest {
        match read_head(s.as_bytes()) {
            HeadRead::Complete(r, len) => {
                assert_eq!(len, s.len());
                r
            }
            other => panic!("{other:?}"),
        }
    }

    fn ws_only(p: &str) -> Option<usize> {
        (p == "/ws").then_some(0)
    }

    #[test]
    fn rfc_sample_accept_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_a_valid_upgrade_and_splits_query() {
        let req = parse(GOOD);
        assert_eq!(req.path, "/ws");
        assert_eq!(req.query, "x=1");
        assert_eq!(
            decide(&req, ws_only),
            Decision::Accept { route: 0, accept_key: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into() }
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(decide(&parse(&GOOD.replace("/ws?x=1", "/other")), ws_only), Decision::Reject(404));
        let plain = "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(decide(&parse(plain), ws_only), Decision::Reject(426));
        assert_eq!(decide(&parse(&GOOD.replace("GET", "POST")), ws_only), Decision::Reject(400));
        assert_eq!(decide(&parse(&GOOD.replace("Version: 13", "Version: 8")), ws_only), Decision::Reject(400));
        assert_eq!(decide(&parse(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")), ws_only), Decision::Reject(400));
        assert_eq!(decide(&parse(&GOOD.replace("keep-alive, Upgrade", "keep-alive")), ws_only), Decision::Reject(400));
        assert_eq!(decide(&parse(&GOOD.replace("Host: a\r\n", "")), ws_only), Decision::Reject(400), "no Host");
        assert_eq!(decide(&parse(&GOOD.replace("Host: a\r\n", "Host: a\r\nHost: b\r\n")), ws_only), Decision::Reject(400));
        let two_keys = GOOD.replace("Sec-WebSocket-Version", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version");
        assert_eq!(decide(&parse(&two_keys), ws_only), Decision::Reject(400), "two keys");
        let two_versions = GOOD.replace("Version: 13\r\n", "Version: 13\r\nSec-WebSocket-Version: 13\r\n");
        assert_eq!(decide(&parse(&two_versions), ws_only), Decision::Reject(400), "two versions");
    }

    #[test]
    fn head_limits() {
        assert!(matches!(read_head(b"GET /ws HTTP/1.1\r\nHost: a\r\n"), HeadRead::Partial));
        let big = format!("GET /ws HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(read_head(big.as_bytes()), HeadRead::Reject(431)));
        assert!(matches!(read_head(b"\x00\x01garbage\r\n\r\n"), HeadRead::Reject(400)));
    }

    #[test]
    fn error_responses_name_the_version_where_rfc_asks() {
        let r = String::from_utf8(error_response(426, None)).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("Sec-WebSocket-Version: 13"));
        let r = String::from_utf8(error_response(404, None)).unwrap();
        assert!(!r.contains("Sec-WebSocket-Version"));
        let r = String::from_utf8(error_response(401, Some("bad\r\ntoken"))).unwrap();
        assert!(r.ends_with("Content-Length: 10\r\n\r\nbad  token"));
    }

    #[test]
    fn switching_protocols_names_the_subprotocol() {
        let r = String::from_utf8(switching_protocols("k", Some("v1.app"), None)).unwrap();
        assert!(r.contains("Sec-WebSocket-Protocol: v1.app\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = String::from_utf8(switching_protocols("k", None, Some("permessage-deflate"))).unwrap();
        assert!(!r.contains("Protocol:"));
        assert!(r.contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }
}
