//! Where every publish and every membership change of a server goes: one interface, [`FanOut`]
//! (socket.io-adapter's role, but in Rust where the bytes are). [`LocalFanOut`] is the
//! implementation for one process, over the [`Registry`]; a cluster bus implements the same trait
//! by wrapping a local one: it forwards membership changes to shared presence and sends each
//! publish to the other nodes (namespace *name*, audience with global ids, the encoded frame),
//! which deliver it with their own `deliver_local`.
//!
//! Membership changes are reported, in the order they were applied, to [`Observer`]s given at
//! construction (presence and telemetry will listen there). A change that does not apply (a join
//! of a room the connection is already in, anything for a connection that is gone) is not
//! reported.

use crate::conn::Conn;
use crate::registry::{Audience, Registry, Snapshot};
use parking_lot::{Mutex, MutexGuard};
use std::sync::Arc;

/// One membership change, with what an observer needs to follow it without asking the index
/// (a cluster keeps per-room subscription counts from these alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A connection opened in `namespace` (index), speaking for `user` if `authenticate` named one.
    Opened { id: u64, namespace: usize, user: Option<&'a str> },
    /// A connection left; `user` and `rooms` are what it had.
    Closed { id: u64, namespace: usize, user: Option<&'a str>, rooms: &'a [String] },
    Joined { id: u64, namespace: usize, room: &'a str },
    Left { id: u64, namespace: usize, room: &'a str },
    /// The connection's user was set, or cleared with `None`; `previous` is the one it replaced.
    User { id: u64, namespace: usize, user: Option<&'a str>, previous: Option<&'a str> },
}

/// Listens to membership changes. Called while changes are serialised: keep it quick and never
/// call back into the fan-out.
pub trait Observer: Send + Sync {
    fn changed(&self, change: &Change<'_>);
}

/// Connection ids of other nodes named by an audience (`"nodeId:n"`): only a cluster can reach
/// them, so they travel beside the local [`Audience`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RemoteIds<'a> {
    pub connections: &'a [String],
    pub except: &'a [String],
}

impl RemoteIds<'_> {
    pub const NONE: RemoteIds<'static> = RemoteIds { connections: &[], except: &[] };
}

/// What a publish asks of the connections it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send this text payload.
    Send(&'a [u8]),
    /// Start the close handshake with this code and reason.
    Close(u16, &'a str),
}

/// Every publish and membership change of a server goes through this interface.
pub trait FanOut: Send + Sync {
    fn open(&self, id: u64, namespace: usize, conn: Arc<Conn>, user: Option<&str>);
    fn close(&self, id: u64);
    /// False when the connection is gone or already in the room.
    fn join(&self, id: u64, room: &str) -> bool;
    /// False when the connection is gone or not in the room.
    fn leave(&self, id: u64, room: &str) -> bool;
    /// Sets (or with `None` clears) the user a connection speaks for; false when it is gone.
    fn set_user(&self, id: u64, user: Option<&str>) -> bool;
    /// Calls `deliver` once for every connection of this process in `audience`; returns how many.
    /// Runs under the index's read lock: `deliver` must be quick and not call back in.
    fn deliver_local(&self, audience: &Audience<'_>, deliver: &mut dyn FnMut(&Arc<Conn>)) -> usize;
    /// Hands what was just done for `audience` on this process to the other nodes, which do it
    /// for their own connections (and `remote` ids). Nothing to do for one process.
    fn forward(&self, _audience: &Audience<'_>, _remote: &RemoteIds<'_>, _action: Action<'_>) {}
    fn connection(&self, id: u64) -> Option<Arc<Conn>>;
    /// Every connection of this process (heartbeats, shutdown).
    fn connections(&self) -> Vec<Arc<Conn>>;
    /// Ids of the members of `room` in `namespace` (this process).
    fn room_members(&self, namespace: usize, room: &str) -> Vec<u64>;
    /// Connections of `namespace` (this process).
    fn count(&self, namespace: usize) -> usize;
    /// Ids of the connections speaking for `user` in `namespace` (this process).
    fn user_connections(&self, namespace: usize, user: &str) -> Vec<u64>;
    /// (connections, rooms, users) over every namespace (this process).
    fn totals(&self) -> (usize, usize, usize);
    /// The `limit` largest rooms of `namespace` and its room count (this process).
    fn largest_rooms(&self, namespace: usize, limit: usize) -> (usize, Vec<(String, usize)>);
}

/// The fan-out of one process.
pub struct LocalFanOut {
    registry: Registry<Arc<Conn>>,
    observers: Vec<Arc<dyn Observer>>,
    /// Held while a change is applied and reported, so observers see changes in the order they
    /// were applied (only when there are observers).
    ordering: Mutex<()>,
}

impl LocalFanOut {
    pub fn new(namespaces: usize, observers: Vec<Arc<dyn Observer>>) -> Self {
        Self { registry: Registry::new(namespaces), observers, ordering: Mutex::new(()) }
    }

    /// Serialises changes while there are observers to report them to.
    fn order(&self) -> Option<MutexGuard<'_, ()>> {
        (!self.observers.is_empty()).then(|| self.ordering.lock())
    }

    fn report(&self, change: Change<'_>) {
        for observer in &self.observers {
            observer.changed(&change);
        }
    }

    /// Calls `then` with every connection's membership while no change can happen, so an
    /// observer can replace what it derived from past changes with this snapshot, atomically.
    pub fn with_snapshot<T>(&self, then: impl FnOnce(Vec<Snapshot>) -> T) -> T {
        let _order = self.ordering.lock();
        then(self.registry.snapshot())
    }
}

impl FanOut for LocalFanOut {
    fn open(&self, id: u64, namespace: usize, conn: Arc<Conn>, user: Option<&str>) {
        let _order = self.order();
        self.registry.insert(id, namespace, conn);
        if let Some(user) = user {
            self.registry.set_user(id, Some(user));
        }
        self.report(Change::Opened { id, namespace, user });
    }

    fn close(&self, id: u64) {
        let _order = self.order();
        if let Some(removed) = self.registry.remove(id) {
            let (namespace, user, rooms) = (removed.namespace, removed.user.as_deref(), removed.rooms.as_slice());
            self.report(Change::Closed { id, namespace, user, rooms });
        }
    }

    fn join(&self, id: u64, room: &str) -> bool {
        let _order = self.order();
        let Some(namespace) = self.registry.join(id, room) else { return false };
        self.report(Change::Joined { id, namespace, room });
        true
    }

    fn leave(&self, id: u64, room: &str) -> bool {
        let _order = self.order();
        let Some(namespace) = self.registry.leave(id, room) else { return false };
        self.report(Change::Left { id, namespace, room });
        true
    }

    fn set_user(&self, id: u64, user: Option<&str>) -> bool {
        let _order = self.order();
        let Some((namespace, previous)) = self.registry.set_user(id, user) else { return false };
        self.report(Change::User { id, namespace, user, previous: previous.as_deref() });
        true
    }

    fn deliver_local(&self, audience: &Audience<'_>, deliver: &mut dyn FnMut(&Arc<Conn>)) -> usize {
        self.registry.for_each_in(audience, deliver)
    }

    fn connection(&self, id: u64) -> Option<Arc<Conn>> {
        self.registry.get(id)
    }

    fn connections(&self) -> Vec<Arc<Conn>> {
        self.registry.all()
    }

    fn room_members(&self, namespace: usize, room: &str) -> Vec<u64> {
        self.registry.room_members(namespace, room)
    }

    fn count(&self, namespace: usize) -> usize {
        self.registry.count_in(namespace)
    }

    fn user_connections(&self, namespace: usize, user: &str) -> Vec<u64> {
        self.registry.user_connections(namespace, user)
    }

    fn totals(&self) -> (usize, usize, usize) {
        self.registry.totals()
    }

    fn largest_rooms(&self, namespace: usize, limit: usize) -> (usize, Vec<(String, usize)>) {
        self.registry.largest_rooms(namespace, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnOptions;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Observer for Recorder {
        fn changed(&self, change: &Change<'_>) {
            self.0.lock().push(format!("{change:?}"));
        }
    }

    /// A real `Conn` needs a socket and a driver; membership only needs a handle to store.
    fn conn(id: u64) -> Arc<Conn> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let options = ConnOptions { max_queued_messages: 10, max_buffered_bytes: 1000, max_inflight: 10, deflate_window: 0 };
        Arc::new(Conn::new(id, 0, stream, Arc::default(), options))
    }

    #[test]
    fn changes_that_apply_are_reported_in_order_and_the_index_answers() {
        let recorder = Arc::new(Recorder::default());
        let fanout = LocalFanOut::new(1, vec![recorder.clone()]);
        fanout.open(1, 0, conn(1), Some("ada"));
        fanout.open(2, 0, conn(2), None);
        assert!(fanout.join(1, "r") && fanout.join(2, "r"));
        assert!(!fanout.join(1, "r"), "already a member: not reported");
        assert!(fanout.leave(2, "r"));
        assert!(fanout.set_user(2, Some("bob")));
        fanout.close(1);
        fanout.close(1);
        assert!(!fanout.join(1, "r"), "gone: not reported");
        assert_eq!(fanout.room_members(0, "r"), Vec::<u64>::new());
        assert_eq!(fanout.count(0), 1);
        let users = ["bob".to_string()];
        let mut reached = Vec::new();
        let n = fanout.deliver_local(&Audience { users: &users, ..Default::default() }, &mut |c| reached.push(c.id));
        assert_eq!((n, reached), (1, vec![2]));
        assert_eq!(
            *recorder.0.lock(),
            vec![
                r#"Opened { id: 1, namespace: 0, user: Some("ada") }"#,
                "Opened { id: 2, namespace: 0, user: None }",
                r#"Joined { id: 1, namespace: 0, room: "r" }"#,
                r#"Joined { id: 2, namespace: 0, room: "r" }"#,
                r#"Left { id: 2, namespace: 0, room: "r" }"#,
                r#"User { id: 2, namespace: 0, user: Some("bob"), previous: None }"#,
                r#"Closed { id: 1, namespace: 0, user: Some("ada"), rooms: ["r"] }"#,
            ]
        );
    }
}
