//! The node's connections to Redis and the three tasks that use them:
//! - the **publisher** drains the bounded publish queue a batch per round trip, in order,
//!   dropping and counting what cannot be sent within [`MAX_PUBLISH_DELAY`] (at most once:
//!   nothing queued during an outage arrives after it);
//! - the **subscriber** keeps the subscribed channels equal to what the membership wants
//!   (renewing all of them after a reconnect) and delivers what arrives (`deliver`);
//! - the **presence** task registers the node, writes membership ops in order, heartbeats,
//!   reaps dead nodes' keys a bounded amount at a time, and rewrites the whole presence under
//!   a new incarnation whenever Redis may have lost writes (a failed write, a restarted server,
//!   a node declared dead while it was cut off).
//!
//! Redis is spoken through `fred`: reconnection with a backoff policy, command pipelining, sharded pub/sub
//! and `EVALSHA` with reload after a Redis restart emptied the script cache.

use super::deliver::{self, Outcome};
use super::membership::{Membership, Op};
use super::message;
use crate::config::ClusterConfig;
use crate::protocol::deflate::DeflateConfig;
use crate::conn::Conn;
use crate::fanout::LocalFanOut;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::InfoKind;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Cross-node publishes waiting for Redis; past it they are dropped and counted (`busDropped`).
pub const MAX_QUEUED_PUBLISHES: usize = 16_384;
/// A cross-node publish not written to Redis within this time is dropped (and counted): when
/// Redis goes away, what was queued meanwhile must not arrive long after, out of its moment.
/// Also the bound on one batch's round trip.
const MAX_PUBLISH_DELAY: Duration = Duration::from_secs(1);
/// Received messages buffered between the Redis connection and the delivering task; a
/// subscriber that falls this far behind loses the oldest (counted in `busDropped`).
const RECEIVE_BUFFER: usize = 16_384;
/// Received messages delivered before the corked frames are flushed.
const RECEIVE_BURST: usize = 256;
/// Publishes issued together (one round trip).
const PUBLISH_BATCH: usize = 512;
/// Presence ops per script call.
const OPS_PER_CALL: usize = 512;
/// Connections of dead nodes deleted per heartbeat script.
const REAP_BUDGET: &str = "1000";
/// Channels per (un)subscribe command.
const CHANNELS_PER_COMMAND: usize = 256;

const COMMON_LUA: &str = include_str!("lua/common.lua");

fn script(body: &str) -> Script {
    Script::from_lua(format!("{COMMON_LUA}\n{body}"))
}

/// A cross-node publish waiting for Redis: when it was queued, the link's disruption count
/// then, its channel, its bytes.
type Queued = (Instant, u64, String, Bytes);

/// Counters, as a snapshot.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Bus messages handed to Redis.
    pub published: u64,
    /// Bus messages of other nodes received here.
    pub received: u64,
    /// Cross-node messages lost: not sent (Redis away, queue full) or not received in time.
    pub dropped: u64,
    /// Received messages that could not be decoded (another version, unknown namespace).
    pub invalid: u64,
    /// Reconnections to Redis after a lost connection.
    pub reconnects: u64,
    pub subscriptions: usize,
    pub connected: bool,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    invalid: AtomicU64,
    reconnects: AtomicU64,
    subscriptions: AtomicUsize,
}

struct Scripts {
    apply: Script,
    maintain: Script,
    query: Script,
}

pub struct Link {
    node_id: String,
    /// permessage-deflate for delivered messages (the server's `compression` option).
    compression: Option<DeflateConfig>,
    id_prefix: String,
    prefix: String,
    node_timeout: Duration,
    namespaces: Vec<String>,
    membership: Arc<Membership>,
    local: Arc<LocalFanOut>,
    /// Commands, publishes and scripts (multiplexed).
    client: Client,
    /// Subscriptions only.
    subscriber: Client,
    scripts: Scripts,
    outbox: mpsc::Sender<Queued>,
    counters: Counters,
    /// Ops of the membership written to Redis (for `sync`).
    written: watch::Sender<u64>,
    /// Version of the wanted channels that is subscribed (for `sync`); 0 after a reconnect
    /// until the subscriptions are renewed.
    subscribed: watch::Sender<u64>,
    /// Redis holds this node's presence as of `written` (false from a reconnect until a
    /// heartbeat found it intact or it was restored).
    registered: watch::Sender<bool>,
    /// The incarnation presence is written under, while registered.
    incarnation: Mutex<Option<String>>,
    /// Wakes the presence task at once (a reconnect: check whether Redis kept our presence).
    check_now: Notify,
    /// Connection errors and reconnections seen so far, on either connection. A publish queued
    /// before one is dropped rather than sent after it: it belongs to before the outage.
    disruptions: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn new_client(config: &Config, receive_buffer: usize) -> Result<Client, String> {
    Builder::from_config(config.clone())
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            // Commands issued while reconnecting wait in fred's buffer: bounded.
            c.max_command_buffer_len = 10_000;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_secs(5);
            p.broadcast_channel_capacity = receive_buffer;
        })
        // Forever, 100 ms doubling to 2 s: a node outlives any Redis outage.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()
        .map_err(|e| format!("cluster.redis: {e}"))
}

impl Link {
    pub fn start(
        node_id: &str,
        compression: Option<DeflateConfig>,
        cluster: &ClusterConfig,
        namespaces: Vec<String>,
        membership: Arc<Membership>,
        local: Arc<LocalFanOut>,
        runtime: &Handle,
    ) -> Result<Arc<Self>, String> {
        let mut config = Config::from_url(&cluster.url).map_err(|e| format!("cluster.redis: invalid URL: {e}"))?;
        config.fail_fast = false; // Redis not there yet: keep trying in the background
        let client = new_client(&config, 64)?;
        let subscriber = new_client(&config, RECEIVE_BUFFER)?;
        let (outbox, queue) = mpsc::channel(MAX_QUEUED_PUBLISHES);
        let link = Arc::new(Self {
            node_id: node_id.to_owned(),
            compression,
            id_prefix: format!("{node_id}:"),
            prefix: cluster.prefix.clone(),
            node_timeout: cluster.node_timeout,
            namespaces,
            membership,
            local,
            client,
            subscriber,
            scripts: Scripts {
                apply: script(include_str!("lua/apply.lua")),
                maintain: script(include_str!("lua/maintain.lua")),
                query: script(include_str!("lua/query.lua")),
            },
            outbox,
            counters: Counters::default(),
            written: watch::Sender::new(0),
            subscribed: watch::Sender::new(0),
            registered: watch::Sender::new(false),
            incarnation: Mutex::new(None),
            check_now: Notify::new(),
            disruptions: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let sharded = cluster.sharded;
        let l = link.clone();
        let main = runtime.spawn(async move {
            // `init` resolves once connected (retrying with the policy meanwhile).
            let (a, b) = tokio::join!(l.client.init(), l.subscriber.init());
            if a.is_err() || b.is_err() {
                return; // the policy gave up: impossible with unlimited attempts
            }
            let sharded = match sharded {
                Some(s) => s,
                None => l.server_has_sharded_pubsub().await,
            };
            let tasks = [
                tokio::spawn(publish_loop(l.clone(), queue, sharded)),
                tokio::spawn(subscribe_loop(l.clone(), sharded)),
                tokio::spawn(presence_loop(l.clone())),
                tokio::spawn(watch_connections(l.clone())),
            ];
            l.tasks.lock().extend(tasks);
        });
        link.tasks.lock().push(main);
        Ok(link)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn namespace_name(&self, index: usize) -> Option<&str> {
        self.namespaces.get(index).map(String::as_str)
    }

    /// Queues one message per channel: as encoded when there is one channel, else one copy per
    /// target (see `message.rs`). Never waits: a full queue drops and counts.
    pub fn send_copies(&self, channels: Vec<String>, mut bytes: Vec<u8>) {
        if !self.is_up() {
            // At most once: nothing is kept for after an outage.
            self.counters.dropped.fetch_add(channels.len() as u64, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let disruptions = self.disruptions.load(Ordering::Acquire);
        let single = channels.len() == 1;
        for (target, channel) in channels.into_iter().enumerate() {
            let copy = if single {
                Bytes::from(std::mem::take(&mut bytes))
            } else {
                message::set_target(&mut bytes, target as u16);
                Bytes::copy_from_slice(&bytes)
            };
            if self.outbox.try_send((now, disruptions, channel, copy)).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Both connections up: a cross-node message can be sent and the answers received.
    fn is_up(&self) -> bool {
        self.client.is_connected() && self.subscriber.is_connected()
    }

    async fn server_has_sharded_pubsub(&self) -> bool {
        let info: Result<String, _> = self.client.info(Some(InfoKind::Server)).await;
        let major = info.ok().and_then(|text| {
            let version = text.lines().find_map(|l| l.strip_prefix("redis_version:"))?.trim().to_owned();
            version.split('.').next()?.parse::<u32>().ok()
        });
        major.is_some_and(|m| m >= 7)
    }

    fn timeout_ms(&self) -> String {
        self.node_timeout.as_millis().to_string()
    }

    pub async fn query(&self, mut args: Vec<String>) -> Result<String, String> {
        if !self.client.is_connected() {
            return Err("Redis is unavailable".into());
        }
        args.splice(0..0, [self.prefix.clone(), self.timeout_ms()]);
        let answer: Result<String, Error> = self.scripts.query.evalsha_with_reload(&self.client, Vec::<String>::new(), args).await;
        answer.map_err(|e| format!("presence query failed: {e}"))
    }

    pub async fn sync(&self, timeout: Duration) -> Result<(), String> {
        let (ops, channels) = (self.membership.queued(), self.membership.wanted_version());
        let mut written = self.written.subscribe();
        let mut subscribed = self.subscribed.subscribe();
        let mut registered = self.registered.subscribe();
        let wait = async {
            let _ = registered.wait_for(|&r| r).await;
            let _ = written.wait_for(|&w| w >= ops).await;
            let _ = subscribed.wait_for(|&s| s >= channels).await;
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| format!("cluster sync timed out after {} ms (Redis unavailable?)", timeout.as_millis()))
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            published: c.published.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            subscriptions: c.subscriptions.load(Ordering::Relaxed),
            connected: self.is_up(),
        }
    }

    async fn maintain(&self, incarnation: &str, mode: &str) -> Result<(i64, i64), Error> {
        let args = vec![self.prefix.clone(), incarnation.to_owned(), self.node_id.clone(), mode.to_owned(), self.timeout_ms(), REAP_BUDGET.to_owned()];
        self.scripts.maintain.evalsha_with_reload(&self.client, Vec::<String>::new(), args).await
    }

    /// Writes ops for `incarnation`; false when Redis says it is not live (lost: restore).
    async fn apply(&self, incarnation: &str, check: bool, ops: &[Op]) -> Result<bool, Error> {
        let mut args = vec![self.prefix.clone(), incarnation.to_owned(), if check { "1" } else { "0" }.to_owned()];
        for op in ops {
            op.push_args(&mut args);
        }
        let live: i64 = self.scripts.apply.evalsha_with_reload(&self.client, Vec::<String>::new(), args).await?;
        Ok(live == 1)
    }

    /// Rewrites the node's whole presence under a new incarnation, then makes it the live one
    /// (retiring the previous one, whose keys get reaped).
    async fn restore(&self) -> Result<String, Error> {
        let incarnation = format!("{}#{:x}", self.node_id, epoch());
        let (ops, covers) = self.local.with_snapshot(|snapshot| self.membership.restart_from(snapshot));
        let written = async {
            for chunk in ops.chunks(OPS_PER_CALL) {
                self.apply(&incarnation, false, chunk).await?;
            }
            self.maintain(&incarnation, "hello").await
        };
        if let Err(error) = written.await {
            // Best effort: what was written of it gets reaped instead of staying behind.
            let _ = self.maintain(&incarnation, "bye").await;
            return Err(error);
        }
        *self.incarnation.lock() = Some(incarnation.clone());
        self.registered.send_replace(true);
        self.written.send_if_modified(|w| {
            let advanced = covers > *w;
            *w = (*w).max(covers);
            advanced
        });
        Ok(incarnation)
    }

    pub async fn shutdown(&self, timeout: Duration) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let incarnation = self.incarnation.lock().take();
        if let Some(incarnation) = incarnation {
            let leave = async {
                let mut left = self.maintain(&incarnation, "bye").await.map(|(_, left)| left);
                // Reap our own keys now rather than leave them to the other nodes.
                while matches!(left, Ok(n) if n > 0) {
                    left = self.maintain(&incarnation, "reap").await.map(|(_, left)| left);
                }
            };
            let _ = tokio::time::timeout(timeout, leave).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let _ = self.client.quit().await;
            let _ = self.subscriber.quit().await;
        })
        .await;
    }
}

/// A fresh incarnation suffix: time plus a process-wide counter, unique per node id.
fn epoch() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 48)
}

async fn publish_loop(link: Arc<Link>, mut queue: mpsc::Receiver<Queued>, sharded: bool) {
    // At most once: a publish that cannot be written now fails at once (fail_fast, no retry, a
    // bounded wait) instead of waiting in fred's buffer for a reconnection and arriving late.
    let options = Options { fail_fast: true, max_attempts: Some(1), timeout: Some(MAX_PUBLISH_DELAY), ..Default::default() };
    let fast = link.client.with_options(&options);
    let mut batch: Vec<Queued> = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let n = batch.len() as u64;
        let up = link.is_up();
        let disruptions = link.disruptions.load(Ordering::Acquire);
        // Queued before a connection error or reconnection, too old (behind a batch that waited
        // for a dying connection), or no connection: dropped, not sent late.
        let now = Instant::now();
        batch.retain(|(queued, seen, _, _)| up && *seen == disruptions && now.duration_since(*queued) < MAX_PUBLISH_DELAY);
        // Issued in order on the multiplexed connection (fred pipelines concurrent commands):
        // one round trip per batch.
        let sends = batch.drain(..).map(|(_, _, channel, bytes)| {
            let fast = &fast;
            async move {
                let sent: Result<Value, Error> = if sharded { fast.spublish(channel, bytes).await } else { fast.publish(channel, bytes).await };
                sent.is_ok()
            }
        });
        let ok = futures::future::join_all(sends).await.into_iter().filter(|&sent| sent).count() as u64;
        link.counters.published.fetch_add(ok, Ordering::Relaxed);
        link.counters.dropped.fetch_add(n - ok, Ordering::Relaxed);
    }
}

async fn subscribe_loop(link: Arc<Link>, sharded: bool) {
    let namespaces: HashMap<String, usize> = link.namespaces.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
    let mut messages = link.subscriber.message_rx();
    let mut reconnects = link.subscriber.reconnect_rx();
    let mut active: HashSet<String> = HashSet::new();
    let mut corked: Vec<Arc<Conn>> = Vec::new();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    loop {
        tokio::select! {
            received = messages.recv() => match received {
                Ok(first) => {
                    // The burst: this message and whatever else already arrived, written corked.
                    let mut next = Some(first);
                    let mut burst = 0;
                    while let Some(m) = next.take() {
                        receive(&link, &m, &namespaces, &mut corked);
                        burst += 1;
                        if burst < RECEIVE_BURST {
                            match messages.try_recv() {
                                Ok(m) => next = Some(m),
                                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                                    link.counters.dropped.fetch_add(n, Ordering::Relaxed);
                                    next = messages.try_recv().ok();
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    for conn in corked.drain(..) {
                        conn.flush_corked();
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    link.counters.dropped.fetch_add(n, Ordering::Relaxed);
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            reconnected = reconnects.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = reconnected {
                    return;
                }
                active.clear(); // a new connection has no subscriptions
                link.subscribed.send_replace(0);
                dirty = true;
            }
            _ = link.membership.channels_changed.notified() => dirty = true,
            _ = retry.tick() => {}
        }
        if dirty && link.subscriber.is_connected() {
            dirty = !reconcile(&link, &mut active, sharded).await;
            link.counters.subscriptions.store(active.len(), Ordering::Relaxed);
        }
    }
}

/// Delivers one message from Redis (corked: see `deliver::deliver`) and counts it.
fn receive(link: &Link, m: &fred::types::Message, namespaces: &HashMap<String, usize>, corked: &mut Vec<Arc<Conn>>) {
    let bytes = match &m.value {
        Value::Bytes(b) => &b[..],
        Value::String(s) => s.as_bytes(),
        _ => &[],
    };
    let counter = match deliver::deliver(bytes, &link.node_id, &link.id_prefix, namespaces, &*link.local, corked, link.compression.as_ref()) {
        Outcome::Own => return,
        Outcome::Delivered(_) => &link.counters.received,
        Outcome::Invalid => &link.counters.invalid,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Subscribes to what is wanted and not active, unsubscribes the reverse; true when done.
async fn reconcile(link: &Link, active: &mut HashSet<String>, sharded: bool) -> bool {
    let (wanted, version) = link.membership.wanted();
    let wanted: HashSet<String> = wanted.into_iter().collect();
    let add: Vec<String> = wanted.difference(active).cloned().collect();
    let remove: Vec<String> = active.difference(&wanted).cloned().collect();
    for chunk in add.chunks(CHANNELS_PER_COMMAND) {
        let done = if sharded { link.subscriber.ssubscribe(chunk.to_vec()).await } else { link.subscriber.subscribe(chunk.to_vec()).await };
        if done.is_err() {
            return false;
        }
        active.extend(chunk.iter().cloned());
    }
    for chunk in remove.chunks(CHANNELS_PER_COMMAND) {
        let done = if sharded { link.subscriber.sunsubscribe(chunk.to_vec()).await } else { link.subscriber.unsubscribe(chunk.to_vec()).await };
        if done.is_err() {
            return false;
        }
        for channel in chunk {
            active.remove(channel);
        }
    }
    link.subscribed.send_if_modified(|s| {
        let advanced = version > *s;
        *s = (*s).max(version);
        advanced
    });
    true
}

/// Runs from after the first connection: every reconnection of the command connection may be
/// to a restarted, empty server, so presence is checked at once. Every error or reconnection of
/// either connection counts as a disruption (see [`Queued`]).
async fn watch_connections(link: Arc<Link>) {
    let mut reconnects = link.client.reconnect_rx();
    let mut errors = link.client.error_rx();
    let mut subscriber_reconnects = link.subscriber.reconnect_rx();
    let mut subscriber_errors = link.subscriber.error_rx();
    loop {
        let closed = tokio::select! {
            event = reconnects.recv() => {
                link.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                link.registered.send_replace(false);
                link.check_now.notify_one();
                is_closed(&event)
            }
            event = errors.recv() => is_closed(&event),
            event = subscriber_reconnects.recv() => is_closed(&event),
            event = subscriber_errors.recv() => is_closed(&event),
        };
        if closed {
            return;
        }
        link.disruptions.fetch_add(1, Ordering::AcqRel);
    }
}

fn is_closed<T>(event: &Result<T, tokio::sync::broadcast::error::RecvError>) -> bool {
    matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed))
}

async fn presence_loop(link: Arc<Link>) {
    let mut beat = tokio::time::interval(link.node_timeout / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut incarnation: Option<String> = None;
    let mut reap_left = false;
    loop {
        let mut beat_due = false;
        tokio::select! {
            _ = link.membership.ops_ready.notified() => {}
            _ = link.check_now.notified() => beat_due = true,
            _ = beat.tick() => beat_due = true,
        }
        if !link.client.is_connected() {
            continue; // retried on the next beat or reconnect
        }
        if incarnation.is_none() {
            match link.restore().await {
                Ok(i) => incarnation = Some(i),
                Err(_) => continue,
            }
        }
        let Some(current) = incarnation.clone() else { continue };
        // Ops, in order, a batch per script call.
        while link.membership.has_pending() {
            let (pending, covered) = link.membership.take(OPS_PER_CALL);
            if pending.restore {
                incarnation = None;
                link.membership.request_restore();
                break;
            }
            match link.apply(&current, true, &Vec::from(pending.ops)).await {
                Ok(true) => {
                    link.written.send_if_modified(|w| {
                        let advanced = covered > *w;
                        *w = (*w).max(covered);
                        advanced
                    });
                }
                // Retired (declared dead while cut off) or Redis restarted: write it all again.
                // A failed call may or may not have applied: the same.
                Ok(false) | Err(_) => {
                    incarnation = None;
                    link.registered.send_replace(false);
                    link.membership.request_restore();
                    break;
                }
            }
        }
        if (beat_due || reap_left) && incarnation.is_some() {
            // A failed beat is retried on the next tick; a missed one only ages the heartbeat.
            if let Ok((alive, left)) = link.maintain(&current, "beat").await {
                reap_left = left > 0;
                if alive == 0 {
                    incarnation = None;
                    link.registered.send_replace(false);
                    link.membership.request_restore();
                } else {
                    link.registered.send_replace(true);
                }
                if reap_left {
                    link.check_now.notify_one(); // keep reaping, a bounded step at a time
                }
            }
        }
    }
}
