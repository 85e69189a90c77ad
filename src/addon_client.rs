//! The N-API surface of the native client transport (`crate::client`): converts JS values to core
//! types and back, and owns the threadsafe function that hands JS its event batches. Every export
//! catches panics (`catch_unwind`) so a bug surfaces as a JS exception, never as an abort.
//!
//! Two things happen here and not in the core, because they need the JS thread:
//! - Releasing a batch's inbound bytes. The callback is called with `call_with_return_value`, and
//!   the bytes of every batch JS received are released right after the JS function returns: the
//!   JS client handles messages synchronously, so "returned" means "processed". A connection
//!   whose bytes JS still holds above `maxInboundBytes` stops reading until then.
//! - Keeping Node alive. Open client connections keep the process running, as Node's own sockets
//!   do, and an idle pool must not: the threadsafe function starts unreferenced (weak), `connect`
//!   references it, and after a batch that left no connection opening or open it is unreferenced
//!   again. Both happen on the JS thread; a connection leaves the pool before its final event is
//!   queued, so the batch carrying the last final event sees zero live connections.

use crate::client::{ClientPool, ConnectOptions, PoolOptions, TakenBatch, Trust};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Pool-wide options; absent fields take `PoolOptions::default()`.
#[napi(object)]
pub struct ClientPoolOptions {
    pub worker_threads: Option<u32>,
    pub close_timeout_ms: Option<f64>,
}

/// One connection's options (`TransportConnectOptions` of ts/client/transport.ts); absent fields
/// take `ConnectOptions::default()`.
#[napi(object)]
pub struct ClientConnectOptions {
    pub headers: Option<HashMap<String, String>>,
    pub protocols: Option<Vec<String>>,
    pub ca: Option<String>,
    pub ca_only: Option<bool>,
    pub max_inbound_bytes: Option<f64>,
    pub max_outbound_bytes: Option<f64>,
    pub max_payload: Option<f64>,
    pub handshake_timeout_ms: Option<f64>,
}

fn bytes(v: Option<f64>, default: usize) -> usize {
    v.filter(|x| x.is_finite()).map_or(default, |x| x.max(0.0) as usize)
}

fn to_connect_options(o: ClientConnectOptions) -> (ConnectOptions, Trust) {
    let d = ConnectOptions::default();
    let options = ConnectOptions {
        headers: o.headers.map(|h| h.into_iter().collect()).unwrap_or_default(),
        protocols: o.protocols.unwrap_or_default(),
        max_inbound_bytes: bytes(o.max_inbound_bytes, d.max_inbound_bytes),
        max_outbound_bytes: bytes(o.max_outbound_bytes, d.max_outbound_bytes),
        max_payload: bytes(o.max_payload, d.max_payload).max(1),
        handshake_timeout: o.handshake_timeout_ms.map_or(d.handshake_timeout, |ms| Duration::from_millis(ms.max(0.0) as u64)),
    };
    (options, Trust { ca_pem: o.ca, ca_only: o.ca_only.unwrap_or(false) })
}

/// Delivers one batch (JSON text) to JS. Weak: unreferenced while the pool has no connections.
type BatchCallback = ThreadsafeFunction<(), (), String, Status, false, true>;

#[napi]
pub struct NativeClientPool {
    pool: Arc<ClientPool>,
    callback: Arc<Mutex<Option<BatchCallback>>>,
}

#[napi]
impl NativeClientPool {
    /// `onBatch(json)`: a JSON array of event entries (see src/client/events.rs), or "" when a
    /// wake-up found nothing left to deliver.
    #[napi(constructor, catch_unwind)]
    pub fn new(options: Option<ClientPoolOptions>, on_batch: Function<'_, String, ()>) -> Result<Self> {
        let d = PoolOptions::default();
        let options = PoolOptions {
            worker_threads: options.as_ref().and_then(|o| o.worker_threads).map_or(d.worker_threads, |n| n as usize),
            close_timeout: options
                .as_ref()
                .and_then(|o| o.close_timeout_ms)
                .map_or(d.close_timeout, |ms| Duration::from_millis(ms.max(0.0) as u64)),
        };
        let callback: Arc<Mutex<Option<BatchCallback>>> = Arc::new(Mutex::new(None));
        // Batches JS was handed and has not returned from yet.
        let delivered: Arc<Mutex<Vec<TakenBatch>>> = Arc::default();
        // The pool is created after the wake closure that names it: filled in below.
        let pool_slot: Arc<Mutex<Weak<ClientPool>>> = Arc::new(Mutex::new(Weak::new()));

        let wake = {
            let callback = callback.clone();
            let delivered = delivered.clone();
            let pool_slot = pool_slot.clone();
            Box::new(move || {
                let guard = callback.lock();
                let Some(tsfn) = guard.as_ref() else { return };
                let (delivered, pool_slot, callback) = (delivered.clone(), pool_slot.clone(), callback.clone());
                tsfn.call_with_return_value((), ThreadsafeFunctionCallMode::NonBlocking, move |returned: Result<()>, env| {
                    for batch in std::mem::take(&mut *delivered.lock()) {
                        batch.release();
                    }
                    let idle = pool_slot.lock().upgrade().is_none_or(|p| p.live_connections() == 0);
                    if idle {
                        if let Some(tsfn) = callback.lock().as_mut() {
                            // Deprecated only in favour of clone-based thread counting, which
                            // is another thing: this is napi_unref_threadsafe_function.
                            #[allow(deprecated)]
                            let _ = tsfn.unref(&env);
                        }
                    }
                    // A JS exception stays uncaught (as with a plain call); the release happened.
                    match returned {
                        Err(e) if e.status == Status::PendingException => Err(e),
                        _ => Ok(()),
                    }
                });
            })
        };
        let pool = Arc::new(ClientPool::new(options, wake).map_err(|e| Error::new(Status::InvalidArg, e))?);
        *pool_slot.lock() = Arc::downgrade(&pool);

        // Weak: the callback must not keep the pool (and its runtime) alive after JS drops it.
        let source = Arc::downgrade(&pool);
        let tsfn = on_batch
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_ctx| {
                let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.upgrade().map(|p| p.take_batch())));
                match taken {
                    Ok(Some(mut batch)) => {
                        let json = std::mem::take(&mut batch.json);
                        delivered.lock().push(batch);
                        Ok(json)
                    }
                    _ => Ok(String::new()),
                }
            })?;
        *callback.lock() = Some(tsfn);
        Ok(Self { pool, callback })
    }

    /// Starts opening a connection and returns its id; the outcome arrives in a batch. Throws
    /// only for non-network misuse (never for DNS/TCP/TLS/upgrade failures: those are `failed`).
    #[napi(catch_unwind)]
    pub fn connect(&self, env: Env, url: String, options: Option<ClientConnectOptions>) -> Result<f64> {
        let (options, trust) = to_connect_options(options.unwrap_or(ClientConnectOptions {
            headers: None,
            protocols: None,
            ca: None,
            ca_only: None,
            max_inbound_bytes: None,
            max_outbound_bytes: None,
            max_payload: None,
            handshake_timeout_ms: None,
        }));
        if let Some(tsfn) = self.callback.lock().as_mut() {
            // See the module doc: referenced while connections exist.
            #[allow(deprecated)]
            tsfn.refer(&env)?;
        }
        Ok(self.pool.connect(&url, options, &trust) as f64)
    }

    /// Queues one text frame; false when not open or past `maxOutboundBytes`.
    #[napi(catch_unwind)]
    pub fn send(&self, id: f64, text: String) -> bool {
        self.pool.send(id as u64, text)
    }

    /// Starts the closing handshake (or aborts a connection still opening). Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&self, id: f64, code: Option<u32>, reason: Option<String>) {
        let code = code.map_or(1000, |c| u16::try_from(c).unwrap_or(1000));
        self.pool.close(id as u64, code, reason.as_deref().unwrap_or(""))
    }

    /// Bytes queued for sending and not yet written to the socket.
    #[napi(catch_unwind)]
    pub fn buffered_amount(&self, id: f64) -> f64 {
        self.pool.buffered_amount(id as u64) as f64
    }

    /// Connections opening or open.
    #[napi(catch_unwind)]
    pub fn live_connections(&self) -> u32 {
        self.pool.live_connections() as u32
    }
}
