//! From an accepted (or handed-over) TCP socket to a running WebSocket: read the request head
//! (bounded in size and time), validate it, apply the origin and subprotocol policy, work out the
//! client address, hold the upgrade while JS `authenticate` decides, answer, register, and hand
//! the socket to a connection [driver](crate::driver).
//!
//! One deadline (`handshakeTimeoutMs`) covers reading the head and authentication, so a slowloris
//! client or a hung `authenticate` cannot hold a socket forever. Each handshake is its own task:
//! one slow `authenticate` never delays another handshake.

use crate::config::Config;
use crate::conn::{Conn, ConnOptions};
use crate::protocol::close;
use crate::protocol::deflate::{self, Agreement};
use crate::protocol::frame;
use crate::protocol::handshake::{self, Decision, HeadRead, UpgradeRequest};
use crate::protocol::policy;
use crate::bridge::Bridge;
use crate::driver::DriverHandle;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::fanout::FanOut;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

/// What a handshake needs from the rest of the server: owned by this module, built once by the
/// runtime and shared by every handshake task.
pub struct UpgradeContext {
    pub config: Arc<Config>,
    pub fanout: Arc<dyn FanOut>,
    pub bridge: Arc<Bridge>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    pub pending_auth: PendingAuth,
    /// One connection driver per I/O thread; a connection's id picks its driver.
    pub drivers: Vec<Arc<DriverHandle>>,
}

impl UpgradeContext {
    fn driver_for(&self, id: u64) -> &Arc<DriverHandle> {
        &self.drivers[(id % self.drivers.len() as u64) as usize]
    }
}

/// What JS decided about a held upgrade.
#[derive(Debug)]
pub enum AuthVerdict {
    Accept { user: Option<String> },
    Reject { status: u16, message: String },
}

/// Upgrades waiting for JS, by handshake id. Bound: one entry per open socket in its handshake,
/// each for at most `handshakeTimeoutMs` (its head at most 16 KiB, `MAX_HEAD_BYTES`).
#[derive(Default)]
pub struct PendingAuth {
    waiting: Mutex<HashMap<u64, oneshot::Sender<AuthVerdict>>>,
    next_id: AtomicU64,
}

impl PendingAuth {
    fn register(&self) -> (u64, oneshot::Receiver<AuthVerdict>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        (id, rx)
    }

    /// Delivers JS's verdict; false when the handshake is no longer waiting (timed out, gone).
    pub fn resolve(&self, id: u64, verdict: AuthVerdict) -> bool {
        match self.waiting.lock().remove(&id) {
            Some(tx) => tx.send(verdict).is_ok(),
            None => false,
        }
    }

    fn forget(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    /// Shutdown: every held upgrade is answered 503 at once.
    pub(crate) fn reject_all(&self) {
        self.waiting.lock().clear();
    }
}

/// An HTTP answer instead of an upgrade.
struct Rejection {
    status: u16,
    message: Option<String>,
}

impl From<u16> for Rejection {
    fn from(status: u16) -> Self {
        Self { status, message: None }
    }
}

/// A request that passed every check but authentication.
struct Upgrade {
    namespace: usize,
    accept_key: String,
    protocol: Option<String>,
    /// permessage-deflate, when enabled and offered acceptably.
    deflate: Option<Agreement>,
    remote: IpAddr,
    head_len: usize,
    head_text: String,
}

/// Runs the handshake on `stream`; `buf` holds bytes already read (handed-over sockets).
pub(crate) async fn handshake_then_serve(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<UpgradeContext>, mut buf: Vec<u8>) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + ctx.config.handshake_timeout;
    let upgrade = match timeout_at(deadline, read_and_check(&mut stream, peer, &ctx.config, &mut buf)).await {
        Ok(Ok(upgrade)) => upgrade,
        Ok(Err(Some(rejection))) => return reject(&ctx, stream, rejection).await,
        Ok(Err(None)) | Err(_) => return, // EOF, or too slow (slowloris): drop without a word
    };

    let (user, auth_id) = if ctx.config.authenticate {
        let (auth_id, verdict) = ctx.pending_auth.register();
        ctx.bridge.push_handshake(auth_id, upgrade.namespace, &upgrade.remote.to_string(), &upgrade.head_text);
        let verdict = tokio::select! {
            verdict = timeout_at(deadline, verdict) => verdict,
            () = peer_gone(&stream) => {
                // The client left while JS was deciding: no connection, and JS's late verdict
                // finds nothing waiting.
                ctx.pending_auth.forget(auth_id);
                return;
            }
        };
        ctx.pending_auth.forget(auth_id);
        match verdict {
            Ok(Ok(AuthVerdict::Accept { user })) => (user, auth_id),
            Ok(Ok(AuthVerdict::Reject { status, message })) => {
                return reject(&ctx, stream, Rejection { status, message: Some(message) }).await
            }
            Ok(Err(_)) => return reject(&ctx, stream, 503.into()).await, // server going away
            Err(_) => {
                let message = Some("Authentication timed out".to_string());
                return reject(&ctx, stream, Rejection { status: 503, message }).await;
            }
        }
    } else {
        (None, 0)
    };
    let abandon = |ctx: &UpgradeContext| {
        if auth_id != 0 {
            ctx.bridge.push_abandoned(auth_id);
        }
    };

    if ctx.lifecycle.is_shutting_down() {
        abandon(&ctx);
        return reject(&ctx, stream, 503.into()).await;
    }
    let extensions = upgrade.deflate.map(|agreement| agreement.response());
    let response = handshake::switching_protocols(&upgrade.accept_key, upgrade.protocol.as_deref(), extensions.as_deref());
    if stream.write_all(&response).await.is_err() {
        return abandon(&ctx);
    }
    if !ctx.lifecycle.try_open() {
        abandon(&ctx);
        return refuse_over_capacity(stream, &ctx.config).await;
    }

    // From here the connection's driver owns the socket (tokio lets go of it).
    let Ok(stream) = stream.into_std() else {
        ctx.lifecycle.released();
        return abandon(&ctx);
    };
    let config = &ctx.config;
    let id = ctx.lifecycle.next_connection_id();
    let driver = ctx.driver_for(id);
    let conn = Arc::new(Conn::new(
        id,
        upgrade.namespace,
        stream,
        driver.wakeups().clone(),
        ConnOptions {
            max_queued_messages: config.max_queued_messages,
            max_buffered_bytes: config.max_buffered_bytes,
            max_inflight: config.max_inflight_messages,
            deflate_window: upgrade.deflate.map_or(0, |agreement| agreement.window_bits),
        },
    ));
    ctx.fanout.open(id, upgrade.namespace, conn.clone(), user.as_deref());
    ctx.metrics.opened();
    // With authentication JS already holds the request head from the handshake entry.
    let head = (auth_id == 0).then_some(upgrade.head_text.as_str());
    ctx.bridge.push_open(id, upgrade.namespace, &upgrade.remote.to_string(), auth_id, head, upgrade.protocol.as_deref());
    if ctx.lifecycle.is_shutting_down() {
        // Shutdown began while we were registering: close like every other connection.
        conn.close(close::GOING_AWAY, "Server shutting down");
    }
    // Everything the handshake held (request, buffers) is freed when this task ends.
    let early = buf.split_off(upgrade.head_len);
    driver.adopt(conn, early);
}

/// Resolves when the peer closes or resets the connection. Data it sends early (frames before our
/// 101) is left unread for the WebSocket; we then cannot tell, and simply never resolve.
async fn peer_gone(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Reads the head and applies every check that needs no JS. `Err(None)`: drop silently.
async fn read_and_check(
    stream: &mut TcpStream,
    peer: SocketAddr,
    config: &Config,
    buf: &mut Vec<u8>,
) -> Result<Upgrade, Option<Rejection>> {
    let (request, head_len) = read_head(stream, buf).await?;
    let (namespace, accept_key) = match handshake::decide(&request, |path| config.route(path)) {
        Decision::Accept { route, accept_key } => (route, accept_key),
        Decision::Reject(status) => return Err(Some(status.into())),
    };
    if !policy::origin_allowed(config.allowed_origins.as_deref(), request.header("origin")) {
        return Err(Some(403.into()));
    }
    let offered = request.header("sec-websocket-protocol");
    let protocol = policy::choose_protocol(&config.protocols, offered, config.require_protocol).map_err(|_| {
        Some(Rejection { status: 400, message: Some("No supported subprotocol".into()) })
    })?;
    let remote = policy::client_address(
        peer.ip(),
        request.header("x-forwarded-for"),
        request.header("x-real-ip"),
        &config.trust_proxy,
    );
    let deflate = config.compression.as_ref().and_then(|c| deflate::negotiate(request.header_values("sec-websocket-extensions"), c));
    let head_text = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    Ok(Upgrade { namespace, accept_key, protocol, deflate, remote, head_len, head_text })
}

/// Reads until the request head is complete (checking what `buf` already holds first).
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(UpgradeRequest, usize), Option<Rejection>> {
    loop {
        if !buf.is_empty() {
            match handshake::read_head(buf) {
                HeadRead::Partial => {}
                HeadRead::Complete(req, len) => return Ok((req, len)),
                HeadRead::Reject(status) => return Err(Some(status.into())),
            }
        }
        if stream.read_buf(buf).await.map_err(|_| None)? == 0 {
            return Err(None);
        }
    }
}

async fn reject(ctx: &UpgradeContext, mut stream: TcpStream, rejection: Rejection) {
    ctx.metrics.handshake_rejected(rejection.status);
    if ctx.bridge.reports_rejections() {
        let remote = stream.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        let reason = rejection.message.as_deref().filter(|m| !m.is_empty()).unwrap_or_else(|| handshake::status_text(rejection.status));
        ctx.bridge.push_handshake_rejected(rejection.status, reason, &remote);
    }
    let response = handshake::error_response(rejection.status, rejection.message.as_deref());
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// Over `maxConnections`: complete the upgrade only to say why (1013), never reaching JS.
async fn refuse_over_capacity(mut stream: TcpStream, config: &Config) {
    let frame = frame::encode_close(close::TRY_AGAIN_LATER, "concurrency-limit-exceeded");
    if stream.write_all(&frame).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Drain until the peer closes so our close frame is not destroyed by a reset.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(config.close_timeout, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
