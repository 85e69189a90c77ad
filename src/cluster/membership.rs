//! What a node's membership changes mean for the cluster, kept in order as they happen (an
//! [`Observer`] of the local fan-out, called under its ordering lock):
//! - presence operations queued for Redis ([`Op`]), written by the presence task in batches;
//! - the channels this node must listen on: a room's or a user's channel while it has a local
//!   member (reference counts), plus the node's own channel and every namespace's broadcast
//!   channel, always.
//!
//! Both are bounded by what the local index holds, except the queue while Redis is slow or away:
//! past [`MAX_QUEUED_OPS`] it is dropped and the node restores its whole presence from a
//! snapshot of the index instead (same result, bounded memory).

use super::names;
use crate::fanout::{Change, Observer};
use crate::registry::Snapshot;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use tokio::sync::Notify;

/// Presence operations waiting for Redis before the queue is given up for a full restore.
pub const MAX_QUEUED_OPS: usize = 100_000;

/// One presence operation, with global connection ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Open { id: String, namespace: String, user: Option<String> },
    Close { id: String },
    Join { id: String, room: String },
    Leave { id: String, room: String },
    User { id: String, user: Option<String> },
}

impl Op {
    /// Appends the op in the presence script's argument form (`lua/apply.lua`).
    pub fn push_args(&self, args: &mut Vec<String>) {
        let user = |u: &Option<String>| u.clone().unwrap_or_default();
        match self {
            Op::Open { id, namespace, user: u } => args.extend(["o".into(), id.clone(), namespace.clone(), user(u)]),
            Op::Close { id } => args.extend(["c".into(), id.clone()]),
            Op::Join { id, room } => args.extend(["j".into(), id.clone(), room.clone()]),
            Op::Leave { id, room } => args.extend(["l".into(), id.clone(), room.clone()]),
            Op::User { id, user: u } => args.extend(["u".into(), id.clone(), user(u)]),
        }
    }
}

/// Presence work handed to the writer.
#[derive(Debug, Default)]
pub struct Pending {
    pub ops: VecDeque<Op>,
    /// Set when the queue overflowed (or Redis lost our writes): rewrite everything.
    pub restore: bool,
}

struct State {
    pending: Pending,
    /// Ops ever queued (a restore counts as covering all of them).
    queued: u64,
    /// Channel → local members that need it.
    wanted: HashMap<String, usize>,
    /// Bumped on every change of the set of wanted channels.
    wanted_version: u64,
}

pub struct Membership {
    prefix: String,
    /// `"{nodeId}:"`, the start of every global id of this node.
    id_prefix: String,
    namespaces: Vec<String>,
    state: Mutex<State>,
    /// Woken when ops are queued.
    pub ops_ready: Notify,
    /// Woken when the wanted channels change.
    pub channels_changed: Notify,
}

impl Membership {
    pub fn new(prefix: &str, node_id: &str, namespaces: Vec<String>) -> Self {
        let mut wanted: HashMap<String, usize> = namespaces.iter().map(|ns| (names::everyone(prefix, ns), 1)).collect();
        wanted.insert(names::node(prefix, node_id), 1);
        Self {
            prefix: prefix.to_owned(),
            id_prefix: format!("{node_id}:"),
            namespaces,
            state: Mutex::new(State { pending: Pending::default(), queued: 0, wanted, wanted_version: 1 }),
            ops_ready: Notify::new(),
            channels_changed: Notify::new(),
        }
    }

    pub fn global_id(&self, id: u64) -> String {
        format!("{}{id}", self.id_prefix)
    }

    fn namespace(&self, index: usize) -> &str {
        self.namespaces.get(index).map_or("/", String::as_str)
    }

    /// Takes what the presence writer should do next, and how many ops it covers.
    pub fn take(&self, max: usize) -> (Pending, u64) {
        let mut state = self.state.lock();
        let restore = std::mem::take(&mut state.pending.restore);
        let n = state.pending.ops.len().min(max);
        let ops = if restore { VecDeque::new() } else { state.pending.ops.drain(..n).collect() };
        let covered = state.queued - state.pending.ops.len() as u64;
        (Pending { ops, restore }, covered)
    }

    /// Asks the writer to rewrite the whole presence (Redis lost writes, or was restarted).
    pub fn request_restore(&self) {
        self.state.lock().pending.restore = true;
        self.ops_ready.notify_one();
    }

    /// The ops that recreate `snapshot` from nothing, replacing the queue (call under the
    /// fan-out's snapshot lock so nothing slips between); returns them and the ops they cover.
    pub fn restart_from(&self, snapshot: Vec<Snapshot>) -> (Vec<Op>, u64) {
        let mut ops = Vec::with_capacity(snapshot.len());
        for s in snapshot {
            let id = self.global_id(s.id);
            let namespace = self.namespace(s.namespace).to_owned();
            ops.push(Op::Open { id: id.clone(), namespace, user: s.user.map(String::from) });
            ops.extend(s.rooms.into_iter().map(|room| Op::Join { id: id.clone(), room }));
        }
        let mut state = self.state.lock();
        state.pending.ops.clear();
        state.pending.restore = false;
        (ops, state.queued)
    }

    pub fn has_pending(&self) -> bool {
        let state = self.state.lock();
        state.pending.restore || !state.pending.ops.is_empty()
    }

    /// Ops queued so far (for `sync`).
    pub fn queued(&self) -> u64 {
        self.state.lock().queued
    }

    /// The wanted channels and their version.
    pub fn wanted(&self) -> (Vec<String>, u64) {
        let state = self.state.lock();
        (state.wanted.keys().cloned().collect(), state.wanted_version)
    }

    pub fn wanted_version(&self) -> u64 {
        self.state.lock().wanted_version
    }

    pub fn wanted_count(&self) -> usize {
        self.state.lock().wanted.len()
    }

    fn want(state: &mut State, channel: String, delta: isize) -> bool {
        if delta > 0 {
            let refs = state.wanted.entry(channel).or_insert(0);
            *refs += 1;
            *refs == 1
        } else {
            match state.wanted.get_mut(&channel) {
                Some(refs) if *refs > 1 => {
                    *refs -= 1;
                    false
                }
                Some(_) => {
                    state.wanted.remove(&channel);
                    true
                }
                None => false,
            }
        }
    }
}

impl Observer for Membership {
    fn changed(&self, change: &Change<'_>) {
        let (op, channels): (Op, Vec<(String, isize)>) = match *change {
            Change::Opened { id, namespace, user } => {
                let ns = self.namespace(namespace);
                let channels = user.map(|u| (names::user(&self.prefix, ns, u), 1)).into_iter().collect();
                (Op::Open { id: self.global_id(id), namespace: ns.to_owned(), user: user.map(str::to_owned) }, channels)
            }
            Change::Closed { id, namespace, user, rooms } => {
                let ns = self.namespace(namespace);
                let mut channels: Vec<_> = rooms.iter().map(|r| (names::room(&self.prefix, ns, r), -1)).collect();
                channels.extend(user.map(|u| (names::user(&self.prefix, ns, u), -1)));
                (Op::Close { id: self.global_id(id) }, channels)
            }
            Change::Joined { id, namespace, room } => {
                let channel = names::room(&self.prefix, self.namespace(namespace), room);
                (Op::Join { id: self.global_id(id), room: room.to_owned() }, vec![(channel, 1)])
            }
            Change::Left { id, namespace, room } => {
                let channel = names::room(&self.prefix, self.namespace(namespace), room);
                (Op::Leave { id: self.global_id(id), room: room.to_owned() }, vec![(channel, -1)])
            }
            Change::User { id, namespace, user, previous } => {
                let ns = self.namespace(namespace);
                let mut channels: Vec<_> = previous.map(|u| (names::user(&self.prefix, ns, u), -1)).into_iter().collect();
                channels.extend(user.map(|u| (names::user(&self.prefix, ns, u), 1)));
                (Op::User { id: self.global_id(id), user: user.map(str::to_owned) }, channels)
            }
        };
        let mut state = self.state.lock();
        state.queued += 1;
        if !state.pending.restore {
            if state.pending.ops.len() >= MAX_QUEUED_OPS {
                state.pending.ops.clear();
                state.pending.restore = true;
            } else {
                state.pending.ops.push_back(op);
            }
        }
        let mut changed = false;
        for (channel, delta) in channels {
            changed |= Self::want(&mut state, channel, delta);
        }
        if changed {
            state.wanted_version += 1;
        }
        drop(state);
        self.ops_ready.notify_one();
        if changed {
            self.channels_changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn channels_follow_first_and_last_local_member() {
        let m = Membership::new("p", "n1", vec!["/".into()]);
        let base = sorted(vec!["p:b:1:/".into(), "p:n:n1".into()]);
        assert_eq!(sorted(m.wanted().0), base);
        m.changed(&Change::Opened { id: 1, namespace: 0, user: Some("ada") });
        m.changed(&Change::Opened { id: 2, namespace: 0, user: None });
        m.changed(&Change::Joined { id: 1, namespace: 0, room: "r" });
        let v = m.wanted_version();
        m.changed(&Change::Joined { id: 2, namespace: 0, room: "r" });
        assert_eq!(m.wanted_version(), v, "a second member changes no subscription");
        m.changed(&Change::Left { id: 2, namespace: 0, room: "r" });
        assert!(m.wanted().0.contains(&"p:r:1:/:r".to_string()));
        let rooms = ["r".to_string()];
        m.changed(&Change::Closed { id: 1, namespace: 0, user: Some("ada"), rooms: &rooms });
        m.changed(&Change::User { id: 2, namespace: 0, user: Some("bob"), previous: None });
        m.changed(&Change::User { id: 2, namespace: 0, user: None, previous: Some("bob") });
        assert_eq!(sorted(m.wanted().0), base, "last member gone: channel dropped");
        let (pending, covered) = m.take(100);
        assert_eq!(covered, 8);
        assert_eq!(pending.ops.len(), 8);
        assert_eq!(pending.ops[0], Op::Open { id: "n1:1".into(), namespace: "/".into(), user: Some("ada".into()) });
        let mut args = Vec::new();
        pending.ops[2].push_args(&mut args);
        assert_eq!(args, ["j", "n1:1", "r"]);
    }

    #[test]
    fn an_overflowing_queue_turns_into_one_restore() {
        let m = Membership::new("p", "n1", vec!["/".into()]);
        for id in 0..=MAX_QUEUED_OPS as u64 {
            m.changed(&Change::Opened { id, namespace: 0, user: None });
        }
        let (pending, covered) = m.take(10);
        assert!(pending.restore && pending.ops.is_empty());
        assert_eq!(covered, MAX_QUEUED_OPS as u64 + 1);
        let snapshot = vec![Snapshot { id: 7, namespace: 0, user: None, rooms: vec!["a".into()] }];
        let (ops, covers) = m.restart_from(snapshot);
        assert_eq!(ops, vec![Op::Open { id: "n1:7".into(), namespace: "/".into(), user: None }, Op::Join { id: "n1:7".into(), room: "a".into() }]);
        assert_eq!(covers, MAX_QUEUED_OPS as u64 + 1);
        assert!(!m.has_pending());
    }
}
