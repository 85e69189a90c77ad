//! The N-API surface: converts JS values to core types and back, nothing else. Every export
//! catches panics (`catch_unwind`) so a bug surfaces as a JS exception, never as an abort.

use crate::config::{ClusterConfig, Config, NamespaceConfig};
use crate::protocol::deflate::DeflateConfig;
use crate::fanout::RemoteIds;
use crate::metrics::Target;
use crate::protocol::policy::{IpRange, OriginPattern, TrustProxy};
use crate::upgrade::AuthVerdict;
use crate::registry::Audience;
use crate::hooks::{panic::PanicOnEvent, reference::ReferenceHandlers};
use crate::bridge::TakenBatch;
use crate::server::{HookFactory, Server};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

#[napi(object)]
pub struct NamespaceOptions {
    pub name: String,
    pub path: String,
    /// Event names of the contract (`in`); absent = any event.
    pub events: Option<Vec<String>>,
    /// Request names of the contract (`requests`); absent = any request.
    pub requests: Option<Vec<String>>,
    pub raw: Option<bool>,
}

/// `largestRooms`: parallel lists, largest room first, and the namespace's room count.
#[napi(object)]
pub struct RoomSizes {
    pub total: u32,
    pub names: Vec<String>,
    pub sizes: Vec<u32>,
}

/// Options as the JS layer passes them; absent fields take `Config::default()`.
#[napi(object)]
pub struct ServerOptions {
    pub host: Option<String>,
    pub port: Option<u32>,
    pub namespaces: Vec<NamespaceOptions>,
    pub max_payload: Option<f64>,
    pub heartbeat_interval_ms: Option<f64>,
    pub max_queued_messages: Option<f64>,
    pub max_buffered_bytes: Option<f64>,
    pub max_connections: Option<f64>,
    pub max_inflight_messages: Option<f64>,
    pub max_pending_bytes: Option<f64>,
    pub close_timeout_ms: Option<f64>,
    pub handshake_timeout_ms: Option<f64>,
    pub reply_on_invalid: Option<bool>,
    pub worker_threads: Option<u32>,
    /// `inlineIo` (default off).
    pub inline_io: Option<bool>,
    pub allowed_origins: Option<Vec<String>>,
    /// `trustProxy` normalised by JS: `all`, a hop count, or a list of addresses/CIDR ranges.
    pub trust_proxy_all: Option<bool>,
    pub trust_proxy_hops: Option<u32>,
    pub trust_proxy_list: Option<Vec<String>>,
    pub protocols: Option<Vec<String>>,
    pub require_protocol: Option<bool>,
    pub authenticate: Option<bool>,
    pub panic_on_event: Option<String>,
    pub reference_handlers: Option<bool>,
    pub node_id: Option<String>,
    /// Report refused upgrades and messages refused in Rust (telemetry at `warn` or below).
    pub report_rejections: Option<bool>,
    /// `cluster.redis` as a URL; absent = one process.
    pub cluster_redis_url: Option<String>,
    pub cluster_prefix: Option<String>,
    pub cluster_node_timeout_ms: Option<f64>,
    pub cluster_sharded: Option<bool>,
    /// `compression` normalised by JS: on, and its threshold, level and window bits.
    pub compression: Option<bool>,
    pub compression_threshold: Option<f64>,
    pub compression_level: Option<u32>,
    pub compression_window_bits: Option<u32>,
}

fn count(v: Option<f64>, default: usize) -> usize {
    v.map_or(default, |x| x.max(0.0) as usize)
}

fn millis(v: Option<f64>, default: Duration) -> Duration {
    v.map_or(default, |ms| Duration::from_millis(ms.max(0.0) as u64))
}

fn invalid(message: String) -> Error {
    Error::new(Status::InvalidArg, message)
}

fn to_trust_proxy(o: &ServerOptions) -> Result<TrustProxy> {
    if o.trust_proxy_all == Some(true) {
        return Ok(TrustProxy::All);
    }
    if let Some(hops) = o.trust_proxy_hops {
        return Ok(if hops == 0 { TrustProxy::None } else { TrustProxy::Hops(hops as usize) });
    }
    if let Some(list) = &o.trust_proxy_list {
        let ranges = list.iter().map(|s| IpRange::parse(s)).collect::<std::result::Result<_, _>>();
        return ranges.map(TrustProxy::List).map_err(invalid);
    }
    Ok(TrustProxy::None)
}

/// The bench's reference handlers or the panic test hook, when the (private) options ask for one.
fn to_hook(o: &ServerOptions) -> Option<HookFactory> {
    if o.reference_handlers == Some(true) {
        return Some(Box::new(|fanout| Arc::new(ReferenceHandlers::new(fanout.clone()))));
    }
    let event = o.panic_on_event.clone()?;
    Some(Box::new(move |_| Arc::new(PanicOnEvent { event })))
}

fn to_config(o: ServerOptions) -> Result<Config> {
    let d = Config::default();
    let trust_proxy = to_trust_proxy(&o)?;
    let allowed_origins = match &o.allowed_origins {
        Some(list) => Some(
            list.iter().map(|p| OriginPattern::parse(p)).collect::<std::result::Result<Vec<_>, _>>().map_err(invalid)?,
        ),
        None => None,
    };
    Ok(Config {
        host: o.host.unwrap_or(d.host),
        port: o.port.map_or(d.port, |p| p as u16),
        namespaces: o
            .namespaces
            .into_iter()
            .map(|ns| NamespaceConfig {
                name: ns.name,
                path: ns.path,
                events: ns.events.map(|e| e.into_iter().collect()),
                requests: ns.requests.map(|r| r.into_iter().collect()),
                raw: ns.raw.unwrap_or(false),
            })
            .collect(),
        max_payload: count(o.max_payload, d.max_payload),
        heartbeat_interval: match o.heartbeat_interval_ms {
            Some(ms) if ms <= 0.0 => None,
            Some(ms) => Some(Duration::from_millis(ms as u64)),
            None => d.heartbeat_interval,
        },
        max_queued_messages: count(o.max_queued_messages, d.max_queued_messages),
        max_buffered_bytes: count(o.max_buffered_bytes, d.max_buffered_bytes),
        max_connections: count(o.max_connections, d.max_connections),
        max_inflight_messages: count(o.max_inflight_messages, d.max_inflight_messages as usize) as u32,
        max_pending_bytes: count(o.max_pending_bytes, d.max_pending_bytes),
        close_timeout: millis(o.close_timeout_ms, d.close_timeout),
        handshake_timeout: millis(o.handshake_timeout_ms, d.handshake_timeout),
        reply_on_invalid: o.reply_on_invalid.unwrap_or(d.reply_on_invalid),
        worker_threads: o.worker_threads.map_or(d.worker_threads, |n| n as usize),
        inline_io: o.inline_io.unwrap_or(d.inline_io),
        allowed_origins,
        trust_proxy,
        protocols: o.protocols.unwrap_or_default(),
        require_protocol: o.require_protocol.unwrap_or(false),
        authenticate: o.authenticate.unwrap_or(false),
        node_id: o.node_id.unwrap_or(d.node_id),
        report_rejections: o.report_rejections.unwrap_or(false),
        cluster: o.cluster_redis_url.map(|url| ClusterConfig {
            url,
            prefix: o.cluster_prefix.unwrap_or_else(|| "ferrosocket".into()),
            node_timeout: millis(o.cluster_node_timeout_ms, Duration::from_secs(10)),
            sharded: o.cluster_sharded,
        }),
        compression: o.compression.unwrap_or(false).then(|| {
            let d = DeflateConfig::default();
            DeflateConfig {
                threshold: count(o.compression_threshold, d.threshold),
                level: o.compression_level.unwrap_or(d.level),
                max_window_bits: o.compression_window_bits.map_or(d.max_window_bits, |b| b as u8),
            }
        }),
    })
}

fn ids(values: &[f64]) -> Vec<u64> {
    values.iter().map(|&v| v as u64).collect()
}

/// An audience as JS passes it (`publishToAudience`, `closeConnections`): names, ids of this
/// process (`connections`, `except`), and global ids of other nodes' connections (`remote*`,
/// which a cluster carries to them).
#[napi(object)]
pub struct AudienceParts {
    pub rooms: Vec<String>,
    pub users: Vec<String>,
    pub connections: Vec<f64>,
    pub except: Vec<f64>,
    pub remote_connections: Vec<String>,
    pub remote_except: Vec<String>,
}

impl AudienceParts {
    /// Calls `f` with the core's view of this audience in `namespace`.
    fn with<R>(&self, namespace: u32, f: impl FnOnce(&Audience<'_>, &RemoteIds<'_>) -> R) -> R {
        let (connections, except) = (ids(&self.connections), ids(&self.except));
        let local = Audience {
            namespace: namespace as usize,
            everyone: false,
            rooms: &self.rooms,
            users: &self.users,
            connections: &connections,
            except: &except,
        };
        f(&local, &RemoteIds { connections: &self.remote_connections, except: &self.remote_except })
    }
}

/// Gives JS a batch taken from Rust: its raw payloads wait in `blobs` for `takeBlobs()`, and a
/// non-empty batch corks the server, so the sends its handlers make only queue until
/// `finishBatch` ends it.
fn hand_over(server: &Server, blobs: &Mutex<Vec<Vec<u8>>>, taken: TakenBatch) -> String {
    if !taken.blobs.is_empty() {
        blobs.lock().extend(taken.blobs);
    }
    if !taken.json.is_empty() {
        server.cork();
    }
    taken.json
}

/// Threadsafe function that delivers one batch (JSON text) to JS. Weak: it never keeps the
/// process alive by itself; the JS layer holds a handle while the server listens.
type BatchCallback = ThreadsafeFunction<(), (), String, Status, false, true>;

#[napi]
pub struct NativeServer {
    server: Arc<Server>,
    /// Raw-mode payloads of the batch last handed to JS, fetched with `takeBlobs()`.
    blobs: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[napi]
impl NativeServer {
    #[napi(constructor, catch_unwind)]
    pub fn new(options: ServerOptions, on_batch: Function<'_, String, ()>) -> Result<Self> {
        let slot: Arc<OnceLock<BatchCallback>> = Arc::new(OnceLock::new());
        let wake_slot = slot.clone();
        let wake = Box::new(move || {
            if let Some(callback) = wake_slot.get() {
                callback.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        let hook = to_hook(&options);
        let server = Arc::new(Server::new(to_config(options)?, wake, hook).map_err(invalid)?);
        let blobs = Arc::new(Mutex::new(Vec::new()));
        // Weak: the callback must not keep the server (and its runtime) alive after JS drops it.
        let source: Weak<Server> = Arc::downgrade(&server);
        let blob_slot = blobs.clone();
        let callback = on_batch
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_ctx| {
                let json = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    source.upgrade().map(|s| hand_over(&s, &blob_slot, s.take_batch()))
                }));
                Ok(json.ok().flatten().unwrap_or_default())
            })?;
        let _ = slot.set(callback);
        Ok(Self { server, blobs })
    }

    /// Binds and starts accepting; returns the port.
    #[napi(catch_unwind)]
    pub fn listen(&self) -> Result<u32> {
        self.server.listen().map(u32::from).map_err(|e| Error::from_reason(format!("listen failed: {e}")))
    }

    /// Whether `finishBatch` should read sockets on this thread (`inlineIo`, resolved).
    #[napi(getter)]
    pub fn inline_io(&self) -> bool {
        self.server.inline_io()
    }

    /// Ends the dispatch of a batch, in one crossing: hands over its collected sends (as
    /// `sendMany`), uncorks (each touched socket is written once), acknowledges what JS handled
    /// (as `ack`), and with `assist` runs the connection drivers on this thread and returns the
    /// batch they produced, corked again for its dispatch ("" when nothing arrived; raw payloads
    /// wait for `takeBlobs()`). Every batch the `onBatch` callback or this returns must end with
    /// a call to this.
    #[napi(catch_unwind)]
    pub fn finish_batch(
        &self,
        ids: Option<Float64Array>,
        payloads: Option<String>,
        acks: Option<Float64Array>,
        released_bytes: f64,
        assist: bool,
    ) -> String {
        if let (Some(ids), Some(payloads)) = (ids, payloads) {
            self.send_many(ids, payloads);
        }
        self.server.uncork();
        if let Some(pairs) = acks {
            self.ack(pairs, released_bytes);
        }
        if !assist {
            return String::new();
        }
        hand_over(&self.server, &self.blobs, self.server.assist_io())
    }

    #[napi(catch_unwind)]
    pub fn take_blobs(&self) -> Vec<Buffer> {
        std::mem::take(&mut *self.blobs.lock()).into_iter().map(Buffer::from).collect()
    }

    #[napi(catch_unwind)]
    pub fn send(&self, id: f64, payload: String) -> bool {
        self.server.send_to(id as u64, payload.as_bytes(), false)
    }

    /// The sends of one JS batch (ts/outbox.ts): `payloads[i]` to connection `ids[i]`, the
    /// payloads joined by NUL (envelope JSON never holds a raw NUL). A connection that is gone or
    /// closing drops its share, as `send` would.
    #[napi(catch_unwind)]
    pub fn send_many(&self, ids: Float64Array, payloads: String) {
        for (id, payload) in ids.iter().zip(payloads.split('\0')) {
            self.server.send_to(*id as u64, payload.as_bytes(), false);
        }
    }

    #[napi(catch_unwind)]
    pub fn send_binary(&self, id: f64, payload: Buffer) -> bool {
        self.server.send_to(id as u64, &payload, true)
    }

    #[napi(catch_unwind)]
    pub fn broadcast(&self, namespace: u32, payload: String) -> u32 {
        let audience = Audience { namespace: namespace as usize, everyone: true, ..Default::default() };
        self.server.publish(Target::Broadcast, &audience, &RemoteIds::NONE, payload.as_bytes()) as u32
    }

    #[napi(catch_unwind)]
    pub fn publish_to_room(&self, namespace: u32, room: String, payload: String) -> u32 {
        let rooms = [room];
        let audience = Audience { namespace: namespace as usize, rooms: &rooms, ..Default::default() };
        self.server.publish(Target::Room, &audience, &RemoteIds::NONE, payload.as_bytes()) as u32
    }

    #[napi(catch_unwind)]
    pub fn publish_to_user(&self, namespace: u32, user: String, payload: String) -> u32 {
        let users = [user];
        let audience = Audience { namespace: namespace as usize, users: &users, ..Default::default() };
        self.server.publish(Target::User, &audience, &RemoteIds::NONE, payload.as_bytes()) as u32
    }

    #[napi(catch_unwind)]
    pub fn publish_to_audience(&self, namespace: u32, audience: AudienceParts, payload: String) -> u32 {
        audience.with(namespace, |local, remote| self.server.publish(Target::Audience, local, remote, payload.as_bytes()) as u32)
    }

    /// Ids of the members of a room (this process).
    #[napi(catch_unwind)]
    pub fn room_members(&self, namespace: u32, room: String) -> Vec<f64> {
        self.server.room_members(namespace as usize, &room).into_iter().map(|id| id as f64).collect()
    }

    /// Ids of a user's connections in one namespace (this process).
    #[napi(catch_unwind)]
    pub fn user_connections(&self, namespace: u32, user: String) -> Vec<f64> {
        self.server.user_connections(namespace as usize, &user).into_iter().map(|id| id as f64).collect()
    }

    /// Open connections of one namespace (this process).
    #[napi(catch_unwind)]
    pub fn namespace_count(&self, namespace: u32) -> u32 {
        self.server.connection_count(namespace as usize) as u32
    }

    /// The `limit` largest rooms of a namespace (this process), and how many rooms it has.
    #[napi(catch_unwind)]
    pub fn largest_rooms(&self, namespace: u32, limit: u32) -> RoomSizes {
        let (total, rooms) = self.server.largest_rooms(namespace as usize, limit as usize);
        let (names, sizes) = rooms.into_iter().map(|(name, size)| (name, size as u32)).unzip();
        RoomSizes { total: total as u32, names, sizes }
    }

    /// Turns reporting of refused upgrades and messages (entry kind 10) on or off.
    #[napi(catch_unwind)]
    pub fn set_report_rejections(&self, on: bool) {
        self.server.set_report_rejections(on);
    }

    /// `[connections, rooms, users]` of this process.
    #[napi(catch_unwind)]
    pub fn totals(&self) -> Vec<u32> {
        let (connections, rooms, users) = self.server.totals();
        vec![connections as u32, rooms as u32, users as u32]
    }

    /// Closes every connection in an audience (as `publishToAudience` selects), on every node;
    /// returns how many of this process.
    #[napi(catch_unwind)]
    pub fn close_audience(&self, namespace: u32, audience: AudienceParts, code: u32, reason: String) -> u32 {
        audience.with(namespace, |local, remote| self.server.close_audience(local, remote, code as u16, &reason) as u32)
    }

    #[napi(catch_unwind)]
    pub fn join(&self, id: f64, room: String) -> bool {
        self.server.join(id as u64, &room)
    }

    #[napi(catch_unwind)]
    pub fn leave(&self, id: f64, room: String) -> bool {
        self.server.leave(id as u64, &room)
    }

    #[napi(catch_unwind)]
    pub fn set_user(&self, id: f64, user: Option<String>) -> bool {
        self.server.set_user(id as u64, user.as_deref())
    }

    #[napi(catch_unwind)]
    pub fn close(&self, id: f64, code: u32, reason: String) {
        self.server.close(id as u64, code as u16, &reason)
    }

    /// Last ping round-trip in milliseconds, if the connection exists.
    /// Whether a connection negotiated permessage-deflate (false when it is gone).
    #[napi(catch_unwind)]
    pub fn compression(&self, id: f64) -> bool {
        self.server.deflate_window(id as u64).is_some_and(|bits| bits != 0)
    }

    #[napi(catch_unwind)]
    pub fn rtt(&self, id: f64) -> Option<f64> {
        self.server.rtt_us(id as u64).map(|us| us as f64 / 1000.0)
    }

    /// Unix time in milliseconds of the last bytes received on a connection.
    #[napi(catch_unwind)]
    pub fn last_seen(&self, id: f64) -> Option<f64> {
        self.server.last_seen_ms(id as u64).map(|ms| ms as f64)
    }

    /// Answers a held upgrade: accept (optionally as `user`) or reject with `status`/`message`.
    /// Returns false when the handshake is no longer waiting (timed out or the client left).
    #[napi(catch_unwind)]
    pub fn resolve_handshake(
        &self,
        auth_id: f64,
        accept: bool,
        user: Option<String>,
        status: Option<u32>,
        message: Option<String>,
    ) -> bool {
        let verdict = if accept {
            AuthVerdict::Accept { user }
        } else {
            let status = status.filter(|s| (400..600).contains(s)).unwrap_or(401) as u16;
            AuthVerdict::Reject { status, message: message.unwrap_or_default() }
        };
        self.server.resolve_handshake(auth_id as u64, verdict)
    }

    /// Takes over an upgrade read by Node's HTTP server: `fd` is duplicated, so the caller must
    /// destroy its socket afterwards; `initial` = request head + bytes received after it.
    #[napi(catch_unwind)]
    pub fn adopt(&self, fd: i32, initial: Buffer) -> Result<()> {
        self.server.adopt(fd, initial.to_vec()).map_err(|e| Error::from_reason(format!("cannot adopt socket: {e}")))
    }

    /// Flat `[id, count, id, count, …]` pairs of handled messages, and the bytes of messages
    /// handled or dropped (released from the global inbound budget).
    #[napi(catch_unwind)]
    pub fn ack(&self, pairs: Float64Array, released_bytes: f64) {
        self.server.ack(pairs.chunks_exact(2).map(|p| (p[0] as u64, p[1] as u32)), released_bytes.max(0.0) as usize);
    }

    /// Inbound bytes waiting for JS or being handled (the global budget's use).
    #[napi(catch_unwind)]
    pub fn inbound_pending_bytes(&self) -> f64 {
        self.server.inbound_pending_bytes() as f64
    }

    /// Starts a presence query (`lua/query.lua`'s arguments); answered in a batch as call `call_id`.
    #[napi(catch_unwind)]
    pub fn cluster_query(&self, call_id: f64, args: Vec<String>) {
        self.server.cluster_query(call_id as u64, args)
    }

    /// Answered (as call `call_id`) once this node's membership so far is visible cluster-wide.
    #[napi(catch_unwind)]
    pub fn cluster_sync(&self, call_id: f64, timeout_ms: f64) {
        self.server.cluster_sync(call_id as u64, Duration::from_millis(timeout_ms.max(0.0) as u64))
    }

    /// Every counter as JSON (see `ts/metrics.ts` for the shape and the Prometheus names).
    #[napi(catch_unwind)]
    pub fn metrics(&self) -> String {
        let r = self.server.metrics();
        let s = &r.snapshot;
        let codes = |m: &std::collections::BTreeMap<u16, u64>| m.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>();
        let namespaces: Vec<_> = (0..r.connections.len())
            .map(|i| {
                let t = s.departed[i];
                serde_json::json!({
                    "connections": r.connections[i],
                    "received": t.received,
                    "rejected": s.rejected[i],
                    "receivedBytes": t.received_bytes,
                    "sent": t.sent,
                    "sentBytes": t.sent_bytes,
                    "queued": t.queued,
                    "queuedBytes": t.queued_bytes,
                })
            })
            .collect();
        let publishes: serde_json::Map<_, _> = Target::ALL.iter().map(|t| (t.label().to_string(), serde_json::json!(s.publishes[*t as usize]))).collect();
        let cluster = r.cluster.map(|c| {
            serde_json::json!({ "published": c.published, "received": c.received, "dropped": c.dropped, "invalid": c.invalid, "reconnects": c.reconnects, "subscriptions": c.subscriptions, "connected": c.connected })
        });
        serde_json::json!({
            "opened": s.opened,
            "closed": codes(&s.closed),
            "handshakesRejected": codes(&s.handshakes_rejected),
            "backpressureCloses": s.backpressure_closes,
            "compressed": s.compressed,
            "publishes": publishes,
            "namespaces": namespaces,
            "inboundPendingBytes": r.inbound_pending_bytes,
            "cluster": cluster,
        })
        .to_string()
    }

    /// `[received, receivedBytes, sent, sentBytes, queued, queuedBytes]` of one connection.
    #[napi(catch_unwind)]
    pub fn connection_stats(&self, id: f64) -> Option<Vec<f64>> {
        self.server.traffic(id as u64).map(|t| {
            [t.received, t.received_bytes, t.sent, t.sent_bytes, t.queued, t.queued_bytes].map(|n| n as f64).to_vec()
        })
    }

    #[napi(catch_unwind)]
    pub fn shutdown(&self, code: u32, reason: String, timeout_ms: f64) {
        self.server.shutdown(code as u16, &reason, Duration::from_millis(timeout_ms.max(0.0) as u64))
    }
}

/// Test hook: proves a panic inside an export becomes a JS exception.
#[napi(catch_unwind)]
pub fn test_panic() {
    panic!("ferrosocket test panic");
}
