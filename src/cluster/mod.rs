//! Several nodes over Redis: the [`FanOut`] of a node in a cluster ([`ClusterFanOut`]) and the
//! handle the server keeps ([`Cluster`]) for presence queries, `sync`, stats and shutdown.
//!
//! The design, in one place:
//! - **Publishes** are delivered locally at once, then handed to Redis as one [`message`] per
//!   target channel (`names`): a room's and a user's channel are subscribed only by nodes where
//!   they have members, so other nodes never see that traffic; broadcasts go to every node, and
//!   connections named by id to their own node's channel. Receiving nodes deliver in Rust
//!   (`deliver`), never entering JS. Sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) when the server
//!   has it.
//! - **Presence** is written to Redis by each node itself (`membership` turns index changes into
//!   ops, `link` writes them in order with Lua scripts, `lua/`), so any node answers a query in
//!   one script call, whatever the other nodes are doing. Each node heartbeats; a node silent for
//!   `nodeTimeoutMs` is left out of answers and its keys are reaped.
//! - **Outages**: the JS thread never waits for Redis (publishes go through a bounded queue,
//!   presence through the membership queue). While Redis is away, cross-node publishes are
//!   dropped and counted (at most once); when it is back, subscriptions are renewed and, if
//!   Redis lost our writes, the whole presence is rewritten from the local index.

pub mod deliver;
mod link;
pub mod membership;
pub mod message;
pub mod names;

use crate::config::{ClusterConfig, Config};
use crate::conn::Conn;
use crate::fanout::{Action, FanOut, LocalFanOut, Observer, RemoteIds};
use crate::registry::Audience;
use link::Link;
use membership::Membership;
use message::{Kind, Outgoing};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

pub use link::{Stats, MAX_QUEUED_PUBLISHES};

/// The fan-out of a node in a cluster: the local index, plus forwarding to the other nodes.
pub struct ClusterFanOut {
    local: Arc<LocalFanOut>,
    link: Arc<Link>,
}

impl FanOut for ClusterFanOut {
    fn open(&self, id: u64, namespace: usize, conn: Arc<Conn>, user: Option<&str>) {
        self.local.open(id, namespace, conn, user)
    }

    fn close(&self, id: u64) {
        self.local.close(id)
    }

    fn join(&self, id: u64, room: &str) -> bool {
        self.local.join(id, room)
    }

    fn leave(&self, id: u64, room: &str) -> bool {
        self.local.leave(id, room)
    }

    fn set_user(&self, id: u64, user: Option<&str>) -> bool {
        self.local.set_user(id, user)
    }

    fn deliver_local(&self, audience: &Audience<'_>, deliver: &mut dyn FnMut(&Arc<Conn>)) -> usize {
        self.local.deliver_local(audience, deliver)
    }

    fn forward(&self, audience: &Audience<'_>, remote: &RemoteIds<'_>, action: Action<'_>) {
        let link = &self.link;
        let Some(namespace) = link.namespace_name(audience.namespace) else { return };
        let (kind, payload) = match action {
            Action::Send(payload) => (Kind::Publish, payload),
            Action::Close(code, reason) => (Kind::Close { code, reason }, &b""[..]),
        };
        let prefix = link.prefix();
        let channels: Vec<String> = if audience.everyone {
            vec![names::everyone(prefix, namespace)]
        } else {
            let rooms = audience.rooms.iter().take(message::MAX_LIST).map(|r| names::room(prefix, namespace, r));
            let users = audience.users.iter().take(message::MAX_LIST).map(|u| names::user(prefix, namespace, u));
            let mut nodes: Vec<&str> = Vec::new();
            for id in remote.connections.iter().take(message::MAX_LIST) {
                if let Some(node) = names::node_of(id) {
                    if !nodes.contains(&node) {
                        nodes.push(node);
                    }
                }
            }
            rooms.chain(users).chain(nodes.into_iter().map(|n| names::node(prefix, n))).collect()
        };
        if channels.is_empty() {
            return;
        }
        let bytes = message::encode(&Outgoing {
            kind: &kind,
            origin: link.node_id(),
            namespace,
            everyone: audience.everyone,
            rooms: audience.rooms,
            users: audience.users,
            connections: remote.connections,
            except: remote.except,
            payload,
        });
        link.send_copies(channels, bytes);
    }

    fn connection(&self, id: u64) -> Option<Arc<Conn>> {
        self.local.connection(id)
    }

    fn connections(&self) -> Vec<Arc<Conn>> {
        self.local.connections()
    }

    fn room_members(&self, namespace: usize, room: &str) -> Vec<u64> {
        self.local.room_members(namespace, room)
    }

    fn count(&self, namespace: usize) -> usize {
        self.local.count(namespace)
    }

    fn user_connections(&self, namespace: usize, user: &str) -> Vec<u64> {
        self.local.user_connections(namespace, user)
    }

    fn totals(&self) -> (usize, usize, usize) {
        self.local.totals()
    }

    fn largest_rooms(&self, namespace: usize, limit: usize) -> (usize, Vec<(String, usize)>) {
        self.local.largest_rooms(namespace, limit)
    }
}

/// What the server keeps of its cluster.
pub struct Cluster {
    fanout: Arc<ClusterFanOut>,
    link: Arc<Link>,
}

impl Cluster {
    /// Builds the node's fan-out and starts talking to Redis in the background (on `runtime`):
    /// never waits for Redis; an unreachable server only means retries.
    pub fn start(config: &Config, cluster: &ClusterConfig, runtime: &Handle) -> Result<Self, String> {
        let namespaces: Vec<String> = config.namespaces.iter().map(|ns| ns.name.clone()).collect();
        let membership = Arc::new(Membership::new(&cluster.prefix, &config.node_id, namespaces.clone()));
        let observer: Arc<dyn Observer> = membership.clone();
        let local = Arc::new(LocalFanOut::new(namespaces.len(), vec![observer]));
        let link = Link::start(&config.node_id, config.compression, cluster, namespaces, membership, local.clone(), runtime)?;
        Ok(Self { fanout: Arc::new(ClusterFanOut { local, link: link.clone() }), link })
    }

    pub fn fanout(&self) -> Arc<dyn FanOut> {
        self.fanout.clone()
    }

    /// Runs one presence query script; resolves with its JSON answer.
    pub async fn query(&self, args: Vec<String>) -> Result<String, String> {
        self.link.query(args).await
    }

    /// Waits until this node's membership changes so far are in Redis and their subscriptions
    /// are active.
    pub async fn sync(&self, timeout: Duration) -> Result<(), String> {
        self.link.sync(timeout).await
    }

    pub fn stats(&self) -> Stats {
        self.link.stats()
    }

    /// Leaves the cluster: presence removed at once (bounded by `timeout`), connections to
    /// Redis closed.
    pub async fn shutdown(&self, timeout: Duration) {
        self.link.shutdown(timeout).await
    }
}
