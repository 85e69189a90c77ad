//! The native client transport: WebSocket client connections run on Rust threads, so one Node
//! process can hold 10,000+ of them cheaply. JS (`ts/client/native-transport.ts`) opens, sends to
//! and closes connections through a [`ClientPool`]; what happens to them comes back in batches
//! ([`events`]), one threadsafe-function call per batch whatever the number of connections.
//!
//! Modules, each depending only on those listed before it: `events` (the batch handed to JS and
//! the per-connection inbound credit), `tls` (rustls configs), `queue` (the bounded outbound
//! queue), `connection` (one connection's shared state and task). This file owns the runtime and
//! the id → connection map.
//!
//! Free of N-API types (the addon's `NativeClientPool` wraps it), so `tests/client.rs` drives it
//! directly.

pub mod connection;
pub mod events;
pub mod queue;
pub mod tls;

use self::connection::Connection;
pub use self::connection::ConnectOptions;
pub use self::events::TakenBatch;
use self::events::Events;
pub use self::tls::Trust;
use parking_lot::Mutex;
use rustls::ClientConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Pool-wide settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Threads of the pool's tokio runtime. One thread holds many thousands of mostly idle
    /// client connections; more only help with many busy TLS connections.
    pub worker_threads: usize,
    /// How long the peer has to finish a closing handshake before the socket is dropped (1006).
    pub close_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self { worker_threads: 1, close_timeout: Duration::from_secs(5) }
    }
}

/// Open (or opening) connections by id. A connection removes itself when it ends, before its final
/// event is queued, so "no live connections" holds once JS has seen every final event.
type Connections = Arc<Mutex<HashMap<u64, Arc<Connection>>>>;

pub struct ClientPool {
    runtime: Option<Runtime>,
    events: Arc<Events>,
    connections: Connections,
    next_id: AtomicU64,
    close_timeout: Duration,
    /// The bundled-roots config, built on first `wss://` use and shared by every connection.
    default_tls: Mutex<Option<Arc<ClientConfig>>>,
    /// The last custom-CA config: a pool's connections usually share one `ca`, and parsing the
    /// PEM once per connection would be wasted work. One entry, so it cannot grow.
    custom_tls: Mutex<Option<(Trust, Arc<ClientConfig>)>>,
}

impl ClientPool {
    /// `wake_js` is called (from the pool's threads) when a batch of events is ready for JS.
    pub fn new(options: PoolOptions, wake_js: Box<dyn Fn() + Send + Sync>) -> Result<Self, String> {
        if options.worker_threads == 0 {
            return Err("workerThreads must be at least 1".into());
        }
        let events = Arc::new(Events::new(wake_js));
        let park_events = events.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads)
            .thread_name("ferrosocket-client")
            // A thread that runs out of work hands JS what it produced meanwhile (as the server's).
            .on_thread_park(move || park_events.wake_if_pending())
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the client runtime: {e}"))?;
        Ok(Self {
            runtime: Some(runtime),
            events,
            connections: Arc::default(),
            next_id: AtomicU64::new(1),
            close_timeout: options.close_timeout,
            default_tls: Mutex::new(None),
            custom_tls: Mutex::new(None),
        })
    }

    /// Starts opening a connection; its outcome arrives as events. Never fails synchronously:
    /// a bad URL, bad CA PEM or network error is reported as `failed`.
    pub fn connect(&self, url: &str, options: ConnectOptions, trust: &Trust) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Connection::new(id, &options));
        self.connections.lock().insert(id, conn.clone());
        let tls = self.tls_config(trust);
        let connections = self.connections.clone();
        let departed = move || {
            connections.lock().remove(&id);
        };
        let task = connection::run(conn, url.to_owned(), options, tls, self.close_timeout, self.events.clone(), departed);
        if let Some(runtime) = &self.runtime {
            runtime.spawn(task);
        }
        id
    }

    fn tls_config(&self, trust: &Trust) -> Result<Arc<ClientConfig>, String> {
        if trust.ca_pem.is_none() && !trust.ca_only {
            let mut slot = self.default_tls.lock();
            if let Some(config) = &*slot {
                return Ok(config.clone());
            }
            let config = tls::client_config(trust)?;
            *slot = Some(config.clone());
            return Ok(config);
        }
        let mut slot = self.custom_tls.lock();
        if let Some((cached, config)) = &*slot {
            if cached == trust {
                return Ok(config.clone());
            }
        }
        let config = tls::client_config(trust)?;
        *slot = Some((trust.clone(), config.clone()));
        Ok(config)
    }

    fn get(&self, id: u64) -> Option<Arc<Connection>> {
        self.connections.lock().get(&id).cloned()
    }

    /// Queues one text frame; false when the connection is not open or its outbound bound is
    /// reached.
    pub fn send(&self, id: u64, text: String) -> bool {
        self.get(id).is_some_and(|c| c.send(text))
    }

    /// Starts the closing handshake, or aborts a connection still opening. Idempotent; unknown ids
    /// (already ended) are ignored.
    pub fn close(&self, id: u64, code: u16, reason: &str) {
        if let Some(conn) = self.get(id) {
            conn.close(code, reason);
        }
    }

    /// Bytes queued for sending and not yet written (0 for an ended connection).
    pub fn buffered_amount(&self, id: u64) -> usize {
        self.get(id).map_or(0, |c| c.buffered_amount())
    }

    /// Received bytes of a connection handed to JS and not yet released.
    pub fn inbound_held(&self, id: u64) -> usize {
        self.get(id).map_or(0, |c| c.inbound_held())
    }

    /// Connections opening or open (not yet reported as failed or closed).
    pub fn live_connections(&self) -> usize {
        self.connections.lock().len()
    }

    /// Takes the events queued so far. Call [`TakenBatch::release`] once JS has processed them.
    pub fn take_batch(&self) -> TakenBatch {
        self.events.take()
    }
}

impl Drop for ClientPool {
    /// Ends every connection at once: their tasks are dropped with their sockets (no close
    /// frames: a dropped pool has nobody left to report the closing handshake to).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
