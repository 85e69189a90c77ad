//! Server options after validation. Built once by the N-API adapter from the JS options object;
//! everything downstream reads plain Rust values.

use crate::protocol::deflate::DeflateConfig;
use crate::protocol::policy::{OriginPattern, TrustProxy};
use std::collections::HashSet;
use std::time::Duration;

/// One mounted namespace.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    /// `'/'` for the default namespace, otherwise the name given in `namespaces`.
    pub name: String,
    /// Upgrade path, e.g. `/ws` or `/ws/game`.
    pub path: String,
    /// Event names the contract accepts (`in`); `None` accepts any event (no contract).
    pub events: Option<HashSet<String>>,
    /// Request names the contract answers (`requests`); `None` accepts any request (no contract).
    pub requests: Option<HashSet<String>>,
    /// Raw mode: messages go to JS as they are (no envelope), e.g. for an echo server.
    pub raw: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub namespaces: Vec<NamespaceConfig>,
    pub max_payload: usize,
    /// `None` disables heartbeats.
    pub heartbeat_interval: Option<Duration>,
    pub max_queued_messages: usize,
    pub max_buffered_bytes: usize,
    /// `0` = unlimited.
    pub max_connections: usize,
    pub max_inflight_messages: u32,
    pub max_pending_bytes: usize,
    pub close_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Answer invalid input with an `error` event instead of closing.
    pub reply_on_invalid: bool,
    pub worker_threads: usize,
    /// The JS thread reads and writes sockets itself between its batches (see
    /// `driver::SharedDriver::assist`), and the I/O threads yield the CPU to it. Meant for a
    /// process on one CPU, where the I/O and JS threads otherwise hand every batch back and forth
    /// through the scheduler. Off by default: on one pinned core it cut context switches in
    /// fine-grained echo from ~75,000 to ~11,000 a second but gained only 1.5–5% there, and it
    /// sometimes settled fine-grained fan-out to 10,000 into a mode at half the throughput
    /// (broadcasts read and written one at a time).
    pub inline_io: bool,
    /// Allowed `Origin`s; `None` allows any.
    pub allowed_origins: Option<Vec<OriginPattern>>,
    pub trust_proxy: TrustProxy,
    /// Subprotocols we speak, in no particular order (the client's preference wins).
    pub protocols: Vec<String>,
    /// Refuse (400) clients that offer none of `protocols`.
    pub require_protocol: bool,
    /// Hold each upgrade until JS decides (`authenticate`).
    pub authenticate: bool,
    /// Names this process in global connection ids (`"{node_id}:{n}"`).
    pub node_id: String,
    /// Tell JS about refused upgrades and messages refused in Rust (telemetry listens); the
    /// initial value of a switch JS can flip later (`Server::set_report_rejections`).
    pub report_rejections: bool,
    /// Several nodes over Redis; `None` = this process alone.
    pub cluster: Option<ClusterConfig>,
    /// permessage-deflate (`compression` option); `None`: never negotiated.
    pub compression: Option<DeflateConfig>,
}

/// `cluster: { redis, prefix, nodeTimeoutMs, sharded }`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Start of every key and channel name, so several apps can share one Redis.
    pub prefix: String,
    /// A node whose heartbeat is older than this is dead: gone from presence.
    pub node_timeout: Duration,
    /// `SSUBSCRIBE`/`SPUBLISH` (`Some(true)`), plain channels (`Some(false)`), or whatever the
    /// server supports (`None`: sharded from Redis 7).
    pub sharded: Option<bool>,
}

impl ClusterConfig {
    /// The shortest `node_timeout` accepted: heartbeats go out every third of it.
    pub const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(300);
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 0,
            namespaces: vec![NamespaceConfig {
                name: "/".into(),
                path: "/ws".into(),
                events: None,
                requests: None,
                raw: false,
            }],
            max_payload: 64 * 1024,
            heartbeat_interval: Some(Duration::from_secs(30)),
            max_queued_messages: 1000,
            max_buffered_bytes: 1 << 20,
            max_connections: 0,
            max_inflight_messages: 100,
            // Measured (issue 9's churn flood: 10 clients × 100 × 64 KB messages at a 100 ms
            // handler): server RSS grew 118 MB at 16 MiB, 125–215 MB at 32 MiB, 272 MB at 64 MiB.
            max_pending_bytes: 16 << 20,
            close_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            reply_on_invalid: false,
            allowed_origins: None,
            trust_proxy: TrustProxy::None,
            protocols: Vec::new(),
            require_protocol: false,
            authenticate: false,
            node_id: "node".into(),
            report_rejections: false,
            cluster: None,
            compression: None,
            worker_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            inline_io: false,
        }
    }
}

impl NamespaceConfig {
    /// An event message (no `id`) must be in the contract's `in` map.
    pub fn accepts_event(&self, event: &str) -> bool {
        self.events.as_ref().is_none_or(|events| events.contains(event))
    }

    /// A request (an event with an `id`) must be in the contract's `requests` map.
    pub fn accepts_request(&self, event: &str) -> bool {
        self.requests.as_ref().is_none_or(|requests| requests.contains(event))
    }
}

impl Config {
    /// Checks the options that would otherwise fail later and far from their cause.
    pub fn validate(&self) -> Result<(), String> {
        if self.namespaces.is_empty() {
            return Err("at least one namespace is required".into());
        }
        if let Some(c) = &self.compression {
            if c.level > 9 || !(9..=15).contains(&c.max_window_bits) {
                return Err("compression: level must be 0-9 and serverMaxWindowBits 9-15".into());
            }
        }
        let mut paths = HashSet::new();
        for ns in &self.namespaces {
            if !ns.path.starts_with('/') {
                return Err(format!("namespace path must start with '/': {:?}", ns.path));
            }
            if !paths.insert(ns.path.as_str()) {
                return Err(format!("two namespaces share the path {:?}", ns.path));
            }
        }
        if self.max_payload == 0 {
            return Err("maxPayload must be positive".into());
        }
        if self.max_queued_messages == 0 || self.max_buffered_bytes == 0 {
            return Err("backpressure limits must be positive".into());
        }
        if self.max_inflight_messages == 0 {
            return Err("maxInflightMessages must be positive".into());
        }
        if self.require_protocol && self.protocols.is_empty() {
            return Err("requireProtocol needs at least one entry in protocols".into());
        }
        if self.worker_threads == 0 {
            return Err("workerThreads must be positive".into());
        }
        if self.node_id.is_empty() {
            return Err("nodeId must be non-empty".into());
        }
        if let Some(cluster) = &self.cluster {
            if cluster.node_timeout < ClusterConfig::MIN_NODE_TIMEOUT {
                return Err(format!("cluster.nodeTimeoutMs must be at least {}", ClusterConfig::MIN_NODE_TIMEOUT.as_millis()));
            }
            if cluster.prefix.is_empty() {
                return Err("cluster.prefix must be non-empty".into());
            }
        }
        Ok(())
    }

    /// Namespace index for an upgrade path.
    pub fn route(&self, path: &str) -> Option<usize> {
        self.namespaces.iter().position(|ns| ns.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.max_payload, 65536);
        assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(30)));
        assert_eq!((c.max_queued_messages, c.max_buffered_bytes), (1000, 1 << 20));
        assert_eq!(c.max_inflight_messages, 100);
        assert_eq!(c.max_pending_bytes, 16 << 20);
        assert_eq!(c.close_timeout, Duration::from_secs(5));
        assert!(c.validate().is_ok());
        assert_eq!(c.route("/ws"), Some(0));
        assert_eq!(c.route("/nope"), None);
    }

    #[test]
    fn events_and_requests_are_checked_against_separate_sets() {
        let set = |names: &[&str]| Some(names.iter().map(|s| s.to_string()).collect());
        let untyped = NamespaceConfig { name: "/".into(), path: "/ws".into(), events: None, requests: None, raw: false };
        assert!(untyped.accepts_event("anything") && untyped.accepts_request("anything"));
        let typed = NamespaceConfig { events: set(&["chat:send", "both"]), requests: set(&["room:join", "both"]), ..untyped };
        assert!(typed.accepts_event("chat:send") && !typed.accepts_request("chat:send"));
        assert!(typed.accepts_request("room:join") && !typed.accepts_event("room:join"));
        assert!(typed.accepts_event("both") && typed.accepts_request("both"));
        assert!(!typed.accepts_event("nope") && !typed.accepts_request("nope"));
    }

    #[test]
    fn rejects_duplicate_paths() {
        let mut c = Config::default();
        c.namespaces.push(c.namespaces[0].clone());
        assert!(c.validate().unwrap_err().contains("share the path"));
    }
}
