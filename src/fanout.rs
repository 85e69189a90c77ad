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
use crate::registry::{Audience, Registry};
use parking_lot::Mutex;
use std::sync::Arc;

/// One membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A connection opened in `namespace` (index), speaking for `user` if `authenticate` named one.
    Opened { id: u64, namespace: usize, user: Option<&'a str> },
    Closed { id: u64 },
    Joined { id: u64, room: &'a str },
    Left { id: u64, room: &'a str },
    /// The connection's user was set, or cleared with `None`.
    User { id: u64, user: Option<&'a str> },
}

/// Listens to membership changes. Called while changes are serialised: keep it quick and never
/// call back into the fan-out.
pub trait Observer: Send + Sync {
    fn changed(&self, change: &Change<'_>);
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

    /// Applies `apply` and reports `change` if it applied.
    fn change(&self, change: Change<'_>, apply: impl FnOnce(&Registry<Arc<Conn>>) -> bool) -> bool {
        if self.observers.is_empty() {
            return apply(&self.registry);
        }
        let _order = self.ordering.lock();
        let applied = apply(&self.registry);
        if applied {
            for observer in &self.observers {
                observer.changed(&change);
            }
        }
        applied
    }
}

impl FanOut for LocalFanOut {
    fn open(&self, id: u64, namespace: usize, conn: Arc<Conn>, user: Option<&str>) {
        self.change(Change::Opened { id, namespace, user }, |r| {
            r.insert(id, namespace, conn);
            if let Some(user) = user {
                r.set_user(id, Some(user));
            }
            true
        });
    }

    fn close(&self, id: u64) {
        self.change(Change::Closed { id }, |r| r.remove(id).is_some());
    }

    fn join(&self, id: u64, room: &str) -> bool {
        self.change(Change::Joined { id, room }, |r| r.join(id, room))
    }

    fn leave(&self, id: u64, room: &str) -> bool {
        self.change(Change::Left { id, room }, |r| r.leave(id, room))
    }

    fn set_user(&self, id: u64, user: Option<&str>) -> bool {
        self.change(Change::User { id, user }, |r| r.set_user(id, user))
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Arc::new(Conn::new(id, 0, stream, Arc::default(), 10, 1000, 10))
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
                r#"Joined { id: 1, room: "r" }"#,
                r#"Joined { id: 2, room: "r" }"#,
                r#"Left { id: 2, room: "r" }"#,
                r#"User { id: 2, user: Some("bob") }"#,
                "Closed { id: 1 }",
            ]
        );
    }
}
