//! A message from another node, done to this node's connections: which ones a copy is for
//! (see `message.rs` on targets), then the same native fan-out as a local publish. No JS.

use super::message::{self, Kind, Message, NO_TARGET};
use super::names;
use crate::conn::Conn;
use crate::fanout::FanOut;
use crate::frames::OutboundFrames;
use crate::protocol::deflate::DeflateConfig;
use crate::protocol::frame;
use crate::registry::Audience;
use std::collections::HashMap;
use std::sync::Arc;

/// The parts of a local audience a received copy resolves to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub everyone: bool,
    pub rooms: Vec<String>,
    pub users: Vec<String>,
    pub connections: Vec<u64>,
    pub except: Vec<u64>,
}

/// Local members of a room or a user, for excluding earlier targets.
pub trait Members {
    fn room(&self, namespace: usize, room: &str) -> Vec<u64>;
    fn user(&self, namespace: usize, user: &str) -> Vec<u64>;
}

impl<F: FanOut + ?Sized> Members for F {
    fn room(&self, namespace: usize, room: &str) -> Vec<u64> {
        self.room_members(namespace, room)
    }

    fn user(&self, namespace: usize, user: &str) -> Vec<u64> {
        self.user_connections(namespace, user)
    }
}

/// Resolves a copy to this node's audience (`id_prefix` = `"{nodeId}:"`).
pub fn plan<M: Members + ?Sized>(m: &Message<'_>, namespace: usize, id_prefix: &str, members: &M) -> Plan {
    let local = |ids: &[&str]| ids.iter().filter_map(|id| names::local_id(id, id_prefix)).collect::<Vec<u64>>();
    let mut plan = Plan { except: local(&m.except), ..Plan::default() };
    if m.everyone {
        plan.everyone = true;
        return plan;
    }
    if m.target == NO_TARGET {
        // Sent once (one target): the whole audience.
        plan.rooms = m.rooms.iter().map(|s| s.to_string()).collect();
        plan.users = m.users.iter().map(|s| s.to_string()).collect();
        plan.connections = local(&m.connections);
        return plan;
    }
    let target = m.target as usize;
    let (rooms, users) = (m.rooms.len(), m.users.len());
    // Members of the targets before this one got the message from their own copy.
    let earlier_rooms = &m.rooms[..target.min(rooms)];
    let earlier_users = &m.users[..target.saturating_sub(rooms).min(users)];
    for room in earlier_rooms {
        plan.except.extend(members.room(namespace, room));
    }
    for user in earlier_users {
        plan.except.extend(members.user(namespace, user));
    }
    if target < rooms {
        plan.rooms.push(m.rooms[target].to_owned());
    } else if target < rooms + users {
        plan.users.push(m.users[target - rooms].to_owned());
    } else {
        // This node's copy of the connections named by id.
        plan.connections = local(&m.connections);
    }
    plan
}

/// Counters of what arrived.
pub enum Outcome {
    /// Our own publish, echoed by Redis: already delivered locally.
    Own,
    Delivered(usize),
    /// Undecodable, another version, or an unknown namespace.
    Invalid,
}

/// Delivers one received message to this node's connections. Frames are queued corked: each
/// connection that got its first one since the last flush is pushed on `corked`, and the caller
/// flushes them all after a burst of messages (one vectored write per socket per burst, as for a
/// batch of publishes from JS).
pub fn deliver(bytes: &[u8], node_id: &str, id_prefix: &str, namespaces: &HashMap<String, usize>, fanout: &dyn FanOut, corked: &mut Vec<Arc<Conn>>, deflate: Option<&DeflateConfig>) -> Outcome {
    let Ok(m) = message::decode(bytes) else { return Outcome::Invalid };
    if m.origin == node_id {
        return Outcome::Own;
    }
    let Some(&namespace) = namespaces.get(m.namespace) else { return Outcome::Invalid };
    let p = plan(&m, namespace, id_prefix, fanout);
    let audience = Audience {
        namespace,
        everyone: p.everyone,
        rooms: &p.rooms,
        users: &p.users,
        connections: &p.connections,
        except: &p.except,
    };
    match m.kind {
        Kind::Publish => {
            let mut frames = OutboundFrames::new(frame::OP_TEXT, m.payload, deflate);
            Outcome::Delivered(fanout.deliver_local(&audience, &mut |conn| {
                if conn.send_corked(frames.for_conn(conn)) {
                    corked.push(conn.clone());
                }
            }))
        }
        Kind::Close { code, reason } => {
            let mut closing: Vec<Arc<Conn>> = Vec::new();
            let n = fanout.deliver_local(&audience, &mut |conn| closing.push(conn.clone()));
            for conn in closing {
                conn.close(code, reason); // outside the index's lock: closing wakes the driver
            }
            Outcome::Delivered(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::message::{encode, set_target, Outgoing};

    /// Room "a" has local members 1, 2; room "b" 2, 3; user "u" 3, 4.
    struct Stub;

    impl Members for Stub {
        fn room(&self, _: usize, room: &str) -> Vec<u64> {
            match room {
                "a" => vec![1, 2],
                "b" => vec![2, 3],
                _ => vec![],
            }
        }

        fn user(&self, _: usize, user: &str) -> Vec<u64> {
            if user == "u" { vec![3, 4] } else { vec![] }
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_copy_excludes_the_members_of_earlier_targets() {
        let (rooms, users, conns, except) = (s(&["a", "b"]), s(&["u"]), s(&["n2:5", "n1:9", "n2:6"]), s(&["n2:4", "n1:1"]));
        let out = Outgoing { kind: &Kind::Publish, origin: "n1", namespace: "/", everyone: false, rooms: &rooms, users: &users, connections: &conns, except: &except, payload: b"x" };
        let mut bytes = encode(&out);
        let copy = |bytes: &mut Vec<u8>, t: u16| {
            set_target(bytes, t);
            plan(&message::decode(bytes).unwrap(), 0, "n2:", &Stub)
        };
        assert_eq!(copy(&mut bytes, 0), Plan { rooms: s(&["a"]), except: vec![4], ..Plan::default() });
        assert_eq!(copy(&mut bytes, 1), Plan { rooms: s(&["b"]), except: vec![4, 1, 2], ..Plan::default() });
        assert_eq!(copy(&mut bytes, 2), Plan { users: s(&["u"]), except: vec![4, 1, 2, 2, 3], ..Plan::default() });
        let nodes = copy(&mut bytes, 3);
        assert_eq!(nodes.connections, vec![5, 6], "only this node's ids");
        assert_eq!(nodes.except, vec![4, 1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn a_message_sent_once_is_the_whole_audience() {
        let (rooms, except) = (s(&["a"]), s(&["n2:2"]));
        let out = Outgoing { kind: &Kind::Publish, origin: "n1", namespace: "/", everyone: false, rooms: &rooms, users: &[], connections: &[], except: &except, payload: b"x" };
        let bytes = encode(&out);
        assert_eq!(plan(&message::decode(&bytes).unwrap(), 0, "n2:", &Stub), Plan { rooms: s(&["a"]), except: vec![2], ..Plan::default() });
    }
}
