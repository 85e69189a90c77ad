//! The server: owns the tokio runtime and the listener, builds the narrow context each part runs
//! on ([`SessionContext`] for the connection drivers, [`UpgradeContext`] for handshakes), accepts
//! TCP connections, runs the heartbeat sweep, publishes frames to audiences and drives graceful
//! shutdown. The top of the core: it depends on every module below it, none depends on it.

use crate::bridge::{Bridge, TakenBatch};
use crate::config::Config;
use crate::frames::OutboundFrames;
use crate::conn::Conn;
use crate::session::{Departures, InboundHook, SessionContext};
use crate::driver;
use crate::lifecycle::Lifecycle;
use crate::metrics::{self, Metrics, Target};
use crate::protocol::close;
use crate::protocol::frame;
use crate::cluster::Cluster;
use crate::fanout::{Action, FanOut, LocalFanOut, RemoteIds};
use crate::registry::Audience;
use crate::upgrade::{self, AuthVerdict, PendingAuth, UpgradeContext};
use parking_lot::Mutex;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A closure the runtime calls once its fan-out exists, to build the [`InboundHook`] the addon
/// asked for (the bench's reference handlers publish through it; applications install none).
pub type HookFactory = Box<dyn FnOnce(&Arc<dyn FanOut>) -> Arc<dyn InboundHook>>;

/// The runtime's side of a departure (see [`Departures`]): out of the fan-out, then out of the
/// connection count.
struct Unregister {
    fanout: Arc<dyn FanOut>,
    lifecycle: Arc<Lifecycle>,
}

impl Departures for Unregister {
    fn unregister(&self, id: u64) {
        self.fanout.close(id);
    }

    fn released(&self) {
        self.lifecycle.released();
    }
}

/// What [`Server::metrics`] reports.
#[derive(Debug, Clone)]
pub struct MetricsReport {
    /// Counters; `departed[ns]` here holds every connection's traffic, live ones included.
    pub snapshot: metrics::Snapshot,
    /// Open connections per namespace.
    pub connections: Vec<usize>,
    pub inbound_pending_bytes: usize,
    pub cluster: Option<crate::cluster::Stats>,
}

pub struct Server {
    config: Arc<Config>,
    /// Every publish and membership change goes through it.
    fanout: Arc<dyn FanOut>,
    /// The other nodes, when `config.cluster` is set.
    cluster: Option<Arc<Cluster>>,
    bridge: Arc<Bridge>,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<Metrics>,
    /// What every handshake task gets (the pending `authenticate` verdicts live there).
    upgrades: Arc<UpgradeContext>,
    /// The drivers the JS thread assists between its batches (`inline_io`; empty without).
    drivers: Vec<Arc<driver::SharedDriver>>,
    /// Set while JS dispatches a batch: publishes only queue, and `uncork` writes each touched
    /// connection once, so k frames for one socket cost one syscall instead of k.
    corked: AtomicBool,
    /// Connections with corked frames waiting for `uncork`.
    corked_conns: Mutex<Vec<Arc<Conn>>>,
    runtime: Option<Runtime>,
    stop_accepting: Arc<Notify>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    port: Mutex<Option<u16>>,
}

impl Server {
    /// `wake_js` is called (from any thread) when a new batch of events is ready for JS; `hook`
    /// builds the optional [`InboundHook`] (see [`HookFactory`]).
    pub fn new(config: Config, wake_js: Box<dyn Fn() + Send + Sync>, hook: Option<HookFactory>) -> Result<Self, String> {
        config.validate()?;
        let config = Arc::new(config);
        let bridge = Arc::new(Bridge::new(config.max_pending_bytes, wake_js));
        bridge.set_report_rejections(config.report_rejections);
        let park_bridge = bridge.clone();
        let inline_io = config.inline_io;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name("ferrosocket-io")
            // An I/O thread that runs out of work hands JS what it produced meanwhile.
            .on_thread_park(move || park_bridge.wake_if_pending())
            .on_thread_start(move || {
                if inline_io {
                    yield_to_js_thread();
                }
            })
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
        let (shared_drivers, polls): (Vec<_>, Vec<_>) = (0..config.worker_threads)
            .map(|_| driver::new_driver())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot start the connection drivers: {e}"))?
            .into_iter()
            .unzip();
        let cluster = match &config.cluster {
            Some(options) => Some(Arc::new(Cluster::start(&config, options, runtime.handle())?)),
            None => None,
        };
        let fanout: Arc<dyn FanOut> = match &cluster {
            Some(cluster) => cluster.fanout(),
            None => Arc::new(LocalFanOut::new(config.namespaces.len(), Vec::new())),
        };
        let lifecycle = Arc::new(Lifecycle::new(config.max_connections));
        let metrics = Arc::new(Metrics::new(config.namespaces.len()));
        let sessions = Arc::new(SessionContext {
            config: config.clone(),
            bridge: bridge.clone(),
            departures: Arc::new(Unregister { fanout: fanout.clone(), lifecycle: lifecycle.clone() }),
            metrics: metrics.clone(),
            hook: hook.map(|build| build(&fanout)),
        });
        let upgrades = Arc::new(UpgradeContext {
            config: config.clone(),
            fanout: fanout.clone(),
            bridge: bridge.clone(),
            lifecycle: lifecycle.clone(),
            metrics: metrics.clone(),
            pending_auth: PendingAuth::default(),
            drivers: shared_drivers.iter().map(|d| d.handle().clone()).collect(),
        });
        for (shared, poll) in shared_drivers.iter().zip(polls) {
            runtime.spawn(driver::run(shared.clone(), poll, sessions.clone()));
        }
        Ok(Self {
            config,
            fanout,
            cluster,
            bridge,
            lifecycle,
            metrics,
            upgrades,
            runtime: Some(runtime),
            drivers: if inline_io { shared_drivers } else { Vec::new() },
            corked: AtomicBool::new(false),
            corked_conns: Mutex::new(Vec::new()),
            stop_accepting: Arc::new(Notify::new()),
            tasks: Mutex::new(Vec::new()),
            accept_task: Mutex::new(None),
            port: Mutex::new(None),
        })
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime lives as long as the server")
    }

    /// Binds and starts accepting; returns the bound port.
    pub fn listen(&self) -> io::Result<u16> {
        if let Some(port) = *self.port.lock() {
            return Ok(port);
        }
        if self.lifecycle.is_shutting_down() {
            return Err(io::Error::other("the server was shut down"));
        }
        let config = &self.config;
        let addr = (config.host.as_str(), config.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host resolves to no address"))?;
        let listener = bind(addr)?;
        let port = listener.local_addr()?.port();
        let _guard = self.runtime().enter();
        let listener = TcpListener::from_std(listener)?;
        let accept = self.runtime().spawn(accept_loop(listener, self.upgrades.clone(), self.stop_accepting.clone()));
        *self.accept_task.lock() = Some(accept);
        if let Some(interval) = config.heartbeat_interval {
            self.tasks.lock().push(self.runtime().spawn(heartbeat_loop(self.fanout.clone(), interval)));
        }
        *self.port.lock() = Some(port);
        Ok(port)
    }

    pub fn port(&self) -> Option<u16> {
        *self.port.lock()
    }

    /// Encodes `payload` once as a text frame and queues it for every connection of this process
    /// in the audience (returns how many), then hands it to the other nodes of a cluster, with
    /// the `remote` ids only they can resolve. `target` is what the caller addressed (metrics).
    pub fn publish(&self, target: Target, audience: &Audience<'_>, remote: &RemoteIds<'_>, payload: &[u8]) -> usize {
        self.metrics.published(target);
        let n = self.publish_local(audience, payload);
        self.fanout.forward(audience, remote, Action::Send(payload));
        n
    }

    fn publish_local(&self, audience: &Audience<'_>, payload: &[u8]) -> usize {
        let mut frames = OutboundFrames::new(frame::OP_TEXT, payload, self.config.compression.as_ref());
        let n = if self.corked.load(Ordering::Relaxed) {
            let mut pending = self.corked_conns.lock();
            self.fanout.deliver_local(audience, &mut |conn| {
                if conn.send_corked(frames.for_conn(conn)) {
                    pending.push(conn.clone());
                }
            })
        } else {
            self.fanout.deliver_local(audience, &mut |conn| {
                conn.send(frames.for_conn(conn));
            })
        };
        self.metrics.compressed(frames.compressions());
        n
    }

    /// Sends a frame to one connection; false when it does not exist or is closing.
    /// Replies and requests use it too, so publishes to one connection are counted by JS
    /// (`conn.publish`), not here.
    pub fn send_to(&self, id: u64, payload: &[u8], binary: bool) -> bool {
        let opcode = if binary { frame::OP_BINARY } else { frame::OP_TEXT };
        let Some(conn) = self.fanout.connection(id) else { return false };
        let mut frames = OutboundFrames::new(opcode, payload, self.config.compression.as_ref());
        let frame = frames.for_conn(&conn).clone();
        self.metrics.compressed(frames.compressions());
        if self.corked.load(Ordering::Relaxed) {
            if conn.send_corked(&frame) {
                self.corked_conns.lock().push(conn);
            }
            true
        } else {
            conn.send(&frame)
        }
    }

    /// Publishes until [`Server::uncork`] only queue (called around JS batch dispatch).
    pub fn cork(&self) {
        self.corked.store(true, Ordering::Relaxed);
    }

    /// Writes everything queued since [`Server::cork`]: one vectored write per connection.
    pub fn uncork(&self) {
        self.corked.store(false, Ordering::Relaxed);
        let pending = std::mem::take(&mut *self.corked_conns.lock());
        for conn in pending {
            conn.flush_corked();
        }
    }

    pub fn join(&self, id: u64, room: &str) -> bool {
        self.fanout.join(id, room)
    }

    /// Ids of the members of `room` in namespace `namespace` (this process).
    pub fn room_members(&self, namespace: usize, room: &str) -> Vec<u64> {
        self.fanout.room_members(namespace, room)
    }

    /// Open connections of namespace `namespace` (this process).
    pub fn connection_count(&self, namespace: usize) -> usize {
        self.fanout.count(namespace)
    }

    /// Ids of the connections speaking for `user` in namespace `namespace` (this process).
    pub fn user_connections(&self, namespace: usize, user: &str) -> Vec<u64> {
        self.fanout.user_connections(namespace, user)
    }

    /// (connections, rooms, users) of this process.
    pub fn totals(&self) -> (usize, usize, usize) {
        self.fanout.totals()
    }

    /// The `limit` largest rooms of `namespace` and its room count (this process).
    pub fn largest_rooms(&self, namespace: usize, limit: usize) -> (usize, Vec<(String, usize)>) {
        self.fanout.largest_rooms(namespace, limit)
    }

    /// Starts or stops reporting rejections to JS (see [`Bridge::reports_rejections`]).
    pub fn set_report_rejections(&self, on: bool) {
        self.bridge.set_report_rejections(on);
    }

    /// Starts the close handshake with every connection in `audience`, on every node; returns
    /// how many of this process.
    pub fn close_audience(&self, audience: &Audience<'_>, remote: &RemoteIds<'_>, code: u16, reason: &str) -> usize {
        let mut closing = Vec::new();
        let n = self.fanout.deliver_local(audience, &mut |conn| closing.push(conn.clone()));
        for conn in closing {
            conn.close(code, reason); // outside the index's lock: closing wakes the driver
        }
        self.fanout.forward(audience, remote, Action::Close(code, reason));
        n
    }

    /// Every counter, with the live connections' traffic summed per namespace (what departed
    /// connections did is in the snapshot already).
    pub fn metrics(&self) -> MetricsReport {
        let mut snapshot = self.metrics.snapshot();
        let mut connections = vec![0usize; self.config.namespaces.len()];
        for conn in self.fanout.connections() {
            let ns = conn.namespace();
            let t = conn.traffic();
            if let (Some(count), Some(sum)) = (connections.get_mut(ns), snapshot.departed.get_mut(ns)) {
                *count += 1;
                sum.add_counts(&t);
                sum.queued += t.queued;
                sum.queued_bytes += t.queued_bytes;
            }
        }
        MetricsReport { snapshot, connections, inbound_pending_bytes: self.bridge.budget().held(), cluster: self.cluster_stats() }
    }

    /// One connection's traffic so far (`conn.stats`).
    pub fn traffic(&self, id: u64) -> Option<crate::conn::Traffic> {
        self.fanout.connection(id).map(|c| c.traffic())
    }

    /// Counters of the cluster link, when there is one.
    pub fn cluster_stats(&self) -> Option<crate::cluster::Stats> {
        self.cluster.as_ref().map(|c| c.stats())
    }

    /// Runs a presence query (`args` as `lua/query.lua` takes them) in the background; its
    /// answer reaches JS through the bridge as call `call_id`.
    pub fn cluster_query(&self, call_id: u64, args: Vec<String>) {
        let (cluster, bridge) = (self.cluster.clone(), self.bridge.clone());
        self.runtime().spawn(async move {
            let answer = match cluster {
                Some(cluster) => cluster.query(args).await,
                None => Err("this server has no cluster".into()),
            };
            bridge.push_cluster_answer(call_id, answer.as_deref().map_err(String::as_str));
        });
    }

    /// Answers call `call_id` once this node's membership so far is visible cluster-wide.
    pub fn cluster_sync(&self, call_id: u64, timeout: Duration) {
        let (cluster, bridge) = (self.cluster.clone(), self.bridge.clone());
        self.runtime().spawn(async move {
            let done = match cluster {
                Some(cluster) => cluster.sync(timeout).await,
                None => Ok(()),
            };
            bridge.push_cluster_answer(call_id, done.as_ref().map(|_| "true").map_err(String::as_str));
        });
    }

    pub fn leave(&self, id: u64, room: &str) -> bool {
        self.fanout.leave(id, room)
    }

    pub fn set_user(&self, id: u64, user: Option<&str>) -> bool {
        self.fanout.set_user(id, user)
    }

    pub fn close(&self, id: u64, code: u16, reason: &str) {
        if let Some(conn) = self.fanout.connection(id) {
            conn.close(code, reason);
        }
    }

    /// Last ping round-trip of a connection in microseconds.
    /// The permessage-deflate window of a connection (0: not negotiated); `None` when it is gone.
    pub fn deflate_window(&self, id: u64) -> Option<u8> {
        self.fanout.connection(id).map(|conn| conn.deflate_window())
    }

    pub fn rtt_us(&self, id: u64) -> Option<u64> {
        self.fanout.connection(id).map(|c| c.rtt_us())
    }

    /// JS finished with messages: `(connection id, count)` pairs for per-connection flow control
    /// (closed connections need none), and `released` bytes for the global inbound budget (the
    /// sizes of messages handled or dropped, whatever their connection's state).
    pub fn ack(&self, acks: impl Iterator<Item = (u64, u32)>, released: usize) {
        self.bridge.budget().release(released);
        for (id, n) in acks {
            if let Some(conn) = self.fanout.connection(id) {
                conn.ack(n);
            }
        }
    }

    /// Inbound bytes charged to the global budget and not yet released by JS.
    pub fn inbound_pending_bytes(&self) -> usize {
        self.bridge.budget().held()
    }

    /// JS's answer to a held upgrade; false when that handshake is no longer waiting.
    pub fn resolve_handshake(&self, id: u64, verdict: AuthVerdict) -> bool {
        self.upgrades.pending_auth.resolve(id, verdict)
    }

    /// Takes over a socket whose HTTP request another server (Node's `http`) has read: `fd` is
    /// duplicated (the caller then closes its own descriptor) and `initial` holds the request
    /// head and any bytes read after it. The handshake then runs exactly as for our listener.
    pub fn adopt(&self, fd: i32, initial: Vec<u8>) -> io::Result<()> {
        use std::os::fd::BorrowedFd;
        if self.lifecycle.is_shutting_down() {
            return Err(io::Error::other("the server was shut down"));
        }
        // SAFETY: the caller guarantees `fd` is an open socket descriptor for the duration of
        // this call (Node's handle is still open); we only borrow it to duplicate it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed.try_clone_to_owned()?;
        let std_stream = std::net::TcpStream::from(owned);
        std_stream.set_nonblocking(true)?;
        let peer = std_stream.peer_addr()?;
        let _guard = self.runtime().enter();
        let stream = tokio::net::TcpStream::from_std(std_stream)?;
        self.runtime().spawn(upgrade::handshake_then_serve(stream, peer, self.upgrades.clone(), initial));
        Ok(())
    }

    /// Unix time in milliseconds of the last frame from a connection.
    pub fn last_seen_ms(&self, id: u64) -> Option<u64> {
        self.fanout.connection(id).map(|c| c.last_seen_ms())
    }

    pub fn take_batch(&self) -> TakenBatch {
        self.bridge.take()
    }

    pub fn inline_io(&self) -> bool {
        !self.drivers.is_empty()
    }

    /// `inline_io`: the JS thread, done with a batch, runs the drivers itself (see
    /// [`driver::SharedDriver::assist`]) and takes the batch they produced (empty when nothing
    /// arrived, or without `inline_io`).
    pub fn assist_io(&self) -> TakenBatch {
        let mut any = false;
        for driver in &self.drivers {
            any |= driver.assist();
        }
        if any {
            self.bridge.take()
        } else {
            TakenBatch { json: String::new(), blobs: Vec::new() }
        }
    }

    /// Graceful shutdown: stop accepting and release the port, queue a close frame behind what
    /// each connection already has queued, wait up to `timeout` for close handshakes, terminate
    /// the rest, then report completion through the bridge (after every close event).
    pub fn shutdown(&self, code: u16, reason: &str, timeout: Duration) {
        if !self.lifecycle.begin_shutdown() {
            return;
        }
        self.upgrades.pending_auth.reject_all();
        self.stop_accepting.notify_one();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        for conn in self.fanout.connections() {
            conn.close(code, reason);
        }
        let (fanout, lifecycle, bridge) = (self.fanout.clone(), self.lifecycle.clone(), self.bridge.clone());
        let cluster = self.cluster.clone();
        let accept = self.accept_task.lock().take();
        self.runtime().spawn(async move {
            if let Some(accept) = accept {
                let _ = accept.await; // the listener is dropped: the port is free
            }
            let deadline = tokio::time::Instant::now() + timeout;
            if !lifecycle.wait_all_closed(deadline).await {
                for conn in fanout.connections() {
                    conn.terminate();
                }
                let grace = tokio::time::Instant::now() + Duration::from_secs(5);
                lifecycle.wait_all_closed(grace).await;
            }
            // Out of the cluster last: until every connection is closed, other nodes'
            // publishes still reach them.
            if let Some(cluster) = cluster {
                cluster.shutdown(Duration::from_secs(2)).await;
            }
            bridge.push_shutdown_complete();
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never block the JS thread waiting for I/O threads to wind down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

async fn accept_loop(listener: TcpListener, upgrades: Arc<UpgradeContext>, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(upgrade::handshake_then_serve(stream, peer, upgrades.clone(), Vec::new()));
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stop.notified() => return,
        }
    }
}

async fn heartbeat_loop(fanout: Arc<dyn FanOut>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticks.tick().await;
        for conn in fanout.connections() {
            if !conn.heartbeat() {
                conn.close(close::GOING_AWAY, "Heartbeat timeout");
            }
        }
    }
}

/// Called on each I/O thread in `inline_io` mode: `SCHED_BATCH`, so that when epoll wakes it
/// while the JS thread runs on the one CPU they share, it does not preempt JS at once (the
/// scheduler's wake-up preemption skips batch threads); it runs when JS waits, or at the next
/// tick, by which time JS has usually read that input itself. Best effort: without it the
/// server only switches threads more often.
fn yield_to_js_thread() {
    use thread_priority::unix::{set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
    use thread_priority::ThreadPriority;
    // Nice 0 (the OS value's default): only the policy changes.
    let (policy, nice) = (ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch), ThreadPriority::Os(Default::default()));
    let _ = set_thread_priority_and_policy(thread_native_id(), nice, policy);
}
