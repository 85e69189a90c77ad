//! The fan-out index: which connections exist, which namespace each belongs to, which rooms it
//! joined and which user it speaks for. It never touches sockets: it is generic over the handle
//! it stores (`Arc<Conn>` in the server, plain values in tests) and only answers "who is in this
//! audience", each connection at most once.

use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes connection ids with one multiply. Ids are counters this process hands out, never peer
/// input, so SipHash's resistance to chosen keys buys nothing here, and an id is looked up on
/// every send. (Room and user names, which peers can influence, keep the default hasher.)
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the odd constant spreads sequential ids over the high bits.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by connection id.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Recipients of one publish: `(rooms ∪ users ∪ connections) − except`, within one namespace,
/// or every connection of the namespace when `everyone` is set.
#[derive(Debug, Default, Clone, Copy)]
pub struct Audience<'a> {
    pub namespace: usize,
    pub everyone: bool,
    pub rooms: &'a [String],
    pub users: &'a [String],
    pub connections: &'a [u64],
    pub except: &'a [u64],
}

/// Every connection has one, so it is kept small (40 B with an `Arc` handle): most connections
/// join no room or one and have no user, and an empty `Vec`/`String` inline would cost 24 B each.
struct Member<H> {
    namespace: u32,
    handle: H,
    // One pointer instead of a Vec's three words; joins and leaves are rare next to publishes.
    #[allow(clippy::box_collection)]
    rooms: Option<Box<Vec<String>>>,
    user: Option<Box<str>>,
}

impl<H> Member<H> {
    fn namespace(&self) -> usize {
        self.namespace as usize
    }

    fn rooms(&self) -> &[String] {
        self.rooms.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// What [`Registry::remove`] took out.
pub struct Removed<H> {
    pub handle: H,
    pub namespace: usize,
    pub rooms: Vec<String>,
    pub user: Option<Box<str>>,
}

/// One connection's membership, as [`Registry::snapshot`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: u64,
    pub namespace: usize,
    pub user: Option<Box<str>>,
    pub rooms: Vec<String>,
}

struct Namespace<H> {
    members: IdMap<H>,
    rooms: HashMap<String, IdMap<H>>,
    users: HashMap<String, IdMap<H>>,
}

impl<H> Default for Namespace<H> {
    fn default() -> Self {
        Self { members: IdMap::default(), rooms: HashMap::new(), users: HashMap::new() }
    }
}

struct Inner<H> {
    members: IdMap<Member<H>>,
    namespaces: Vec<Namespace<H>>,
}

pub struct Registry<H> {
    inner: RwLock<Inner<H>>,
}

fn add_to<H>(index: &mut HashMap<String, IdMap<H>>, key: &str, id: u64, handle: H) {
    match index.get_mut(key) {
        Some(set) => {
            set.insert(id, handle);
        }
        None => {
            index.insert(key.to_owned(), IdMap::from_iter([(id, handle)]));
        }
    }
}

fn remove_from<H>(index: &mut HashMap<String, IdMap<H>>, key: &str, id: u64) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

impl<H: Clone> Registry<H> {
    pub fn new(namespaces: usize) -> Self {
        Self {
            inner: RwLock::new(Inner {
                members: IdMap::default(),
                namespaces: (0..namespaces).map(|_| Namespace::default()).collect(),
            }),
        }
    }

    pub fn insert(&self, id: u64, namespace: usize, handle: H) {
        let mut inner = self.inner.write();
        inner.namespaces[namespace].members.insert(id, handle.clone());
        let ns = u32::try_from(namespace).expect("namespace index fits u32");
        inner.members.insert(id, Member { namespace: ns, handle, rooms: None, user: None });
    }

    /// Removes a connection from every index; returns what it was if it was present.
    pub fn remove(&self, id: u64) -> Option<Removed<H>> {
        let mut inner = self.inner.write();
        let member = inner.members.remove(&id)?;
        let ns = &mut inner.namespaces[member.namespace()];
        ns.members.remove(&id);
        for room in member.rooms() {
            remove_from(&mut ns.rooms, room, id);
        }
        if let Some(user) = &member.user {
            remove_from(&mut ns.users, user, id);
        }
        Some(Removed {
            namespace: member.namespace(),
            rooms: member.rooms.map_or_else(Vec::new, |rooms| *rooms),
            user: member.user,
            handle: member.handle,
        })
    }

    pub fn get(&self, id: u64) -> Option<H> {
        self.inner.read().members.get(&id).map(|m| m.handle.clone())
    }

    pub fn len(&self) -> usize {
        self.inner.read().members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the connection to `room`; its namespace, or `None` if it does not exist or was
    /// already a member.
    pub fn join(&self, id: u64, room: &str) -> Option<usize> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let member = inner.members.get_mut(&id)?;
        if member.rooms().iter().any(|r| r == room) {
            return None;
        }
        member.rooms.get_or_insert_with(Box::default).push(room.to_owned());
        let handle = member.handle.clone();
        add_to(&mut inner.namespaces[member.namespace()].rooms, room, id, handle);
        Some(member.namespace())
    }

    /// Takes the connection out of `room`; its namespace, or `None` if it does not exist or was
    /// not a member.
    pub fn leave(&self, id: u64, room: &str) -> Option<usize> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let member = inner.members.get_mut(&id)?;
        let rooms = member.rooms.as_mut()?;
        let pos = rooms.iter().position(|r| r == room)?;
        rooms.swap_remove(pos);
        if rooms.is_empty() {
            member.rooms = None;
        }
        remove_from(&mut inner.namespaces[member.namespace()].rooms, room, id);
        Some(member.namespace())
    }

    /// Sets (or with `None` clears) the user a connection speaks for; its namespace and previous
    /// user, or `None` if it does not exist.
    pub fn set_user(&self, id: u64, user: Option<&str>) -> Option<(usize, Option<Box<str>>)> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let member = inner.members.get_mut(&id)?;
        let users = &mut inner.namespaces[member.namespace()].users;
        let previous = member.user.take();
        if let Some(old) = &previous {
            remove_from(users, old, id);
        }
        if let Some(user) = user {
            add_to(users, user, id, member.handle.clone());
            member.user = Some(user.into());
        }
        Some((member.namespace(), previous))
    }

    /// Every connection's membership (a cluster restores its presence from it).
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let inner = self.inner.read();
        let mut out: Vec<Snapshot> = inner
            .members
            .iter()
            .map(|(&id, m)| Snapshot { id, namespace: m.namespace(), user: m.user.clone(), rooms: m.rooms().to_vec() })
            .collect();
        out.sort_unstable_by_key(|s| s.id);
        out
    }

    /// Every connection (heartbeats, shutdown). Clones the handles so no lock is held while the
    /// caller works on them.
    pub fn all(&self) -> Vec<H> {
        self.inner.read().members.values().map(|m| m.handle.clone()).collect()
    }

    /// Ids of the members of `room` in `namespace`.
    pub fn room_members(&self, namespace: usize, room: &str) -> Vec<u64> {
        let inner = self.inner.read();
        let members = inner.namespaces.get(namespace).and_then(|ns| ns.rooms.get(room));
        members.map_or_else(Vec::new, |set| set.keys().copied().collect())
    }

    /// The `limit` largest rooms of `namespace` as (name, members), largest first (ties by name),
    /// and how many rooms it has. For operators (the dashboard): one pass over the room map under
    /// the read lock, keeping at most `limit` candidates, so the cost and the answer stay bounded
    /// whatever the number of rooms.
    pub fn largest_rooms(&self, namespace: usize, limit: usize) -> (usize, Vec<(String, usize)>) {
        let inner = self.inner.read();
        let Some(ns) = inner.namespaces.get(namespace) else { return (0, Vec::new()) };
        let mut top: std::collections::BinaryHeap<std::cmp::Reverse<(usize, std::cmp::Reverse<&str>)>> =
            std::collections::BinaryHeap::with_capacity(limit.min(ns.rooms.len()) + 1);
        for (name, members) in &ns.rooms {
            top.push(std::cmp::Reverse((members.len(), std::cmp::Reverse(name.as_str()))));
            if top.len() > limit {
                top.pop();
            }
        }
        let mut rooms: Vec<(String, usize)> =
            top.into_iter().map(|std::cmp::Reverse((size, std::cmp::Reverse(name)))| (name.to_owned(), size)).collect();
        rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (ns.rooms.len(), rooms)
    }

    /// Connections of one namespace.
    pub fn count_in(&self, namespace: usize) -> usize {
        self.inner.read().namespaces.get(namespace).map_or(0, |ns| ns.members.len())
    }

    /// Ids of the connections speaking for `user` in `namespace`.
    pub fn user_connections(&self, namespace: usize, user: &str) -> Vec<u64> {
        let inner = self.inner.read();
        let set = inner.namespaces.get(namespace).and_then(|ns| ns.users.get(user));
        set.map_or_else(Vec::new, |set| set.keys().copied().collect())
    }

    /// Totals over every namespace: (connections, rooms with members, users with connections).
    /// A room or user name in two namespaces counts twice.
    pub fn totals(&self) -> (usize, usize, usize) {
        let inner = self.inner.read();
        let rooms = inner.namespaces.iter().map(|ns| ns.rooms.len()).sum();
        let users = inner.namespaces.iter().map(|ns| ns.users.len()).sum();
        (inner.members.len(), rooms, users)
    }

    /// Calls `f` once for every connection in `audience`; returns how many were visited.
    /// Runs under the read lock: `f` must be quick and must not call back into the registry.
    pub fn for_each_in(&self, audience: &Audience<'_>, mut f: impl FnMut(&H)) -> usize {
        let inner = self.inner.read();
        let Some(ns) = inner.namespaces.get(audience.namespace) else { return 0 };
        let excluded = |id: &u64| audience.except.contains(id);
        let mut count = 0;
        let mut visit = |id: &u64, h: &H| {
            if !excluded(id) {
                f(h);
                count += 1;
            }
        };
        if audience.everyone {
            ns.members.iter().for_each(|(id, h)| visit(id, h));
            return count;
        }
        let sources = audience.rooms.len() + audience.users.len() + audience.connections.len();
        if sources == 1 {
            // One room or one user: its members are already distinct, no dedup set needed.
            let set = if let Some(room) = audience.rooms.first() {
                ns.rooms.get(room)
            } else if let Some(user) = audience.users.first() {
                ns.users.get(user)
            } else {
                let id = audience.connections[0];
                if let Some(h) = ns.members.get(&id) {
                    visit(&id, h);
                }
                None
            };
            if let Some(set) = set {
                set.iter().for_each(|(id, h)| visit(id, h));
            }
            return count;
        }
        let mut seen: HashSet<u64> = HashSet::new();
        let groups = audience
            .rooms
            .iter()
            .filter_map(|r| ns.rooms.get(r))
            .chain(audience.users.iter().filter_map(|u| ns.users.get(u)));
        for set in groups {
            for (id, h) in set {
                if seen.insert(*id) {
                    visit(id, h);
                }
            }
        }
        for id in audience.connections {
            if let Some(h) = ns.members.get(id) {
                if seen.insert(*id) {
                    visit(id, h);
                }
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry<u64> {
        let r = Registry::new(2);
        for id in 1..=5 {
            r.insert(id, 0, id);
        }
        r.insert(9, 1, 9);
        r
    }

    fn who(r: &Registry<u64>, a: Audience<'_>) -> Vec<u64> {
        let mut v = Vec::new();
        let n = r.for_each_in(&a, |h| v.push(*h));
        assert_eq!(n, v.len());
        v.sort();
        v
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn room_members_and_counts_per_namespace() {
        let r = reg();
        r.join(2, "a");
        r.join(4, "a");
        r.join(9, "a");
        let mut members = r.room_members(0, "a");
        members.sort();
        assert_eq!(members, vec![2, 4]);
        assert_eq!(r.room_members(1, "a"), vec![9]);
        assert!(r.room_members(0, "none").is_empty());
        assert_eq!((r.count_in(0), r.count_in(1), r.count_in(7)), (5, 1, 0));
        r.set_user(3, Some("ada"));
        r.set_user(5, Some("ada"));
        r.set_user(9, Some("ada"));
        let mut ada = r.user_connections(0, "ada");
        ada.sort();
        assert_eq!(ada, vec![3, 5]);
        assert_eq!(r.user_connections(1, "ada"), vec![9]);
        assert_eq!(r.totals(), (6, 2, 2), "room 'a' and user 'ada' in both namespaces");
    }

    #[test]
    fn largest_rooms_keeps_the_biggest_within_the_limit() {
        let r: Registry<u64> = Registry::new(2);
        for id in 1..=6 {
            r.insert(id, 0, id);
        }
        r.insert(7, 1, 7);
        for id in 1..=6 {
            r.join(id, "big");
        }
        for id in 1..=3 {
            r.join(id, "mid");
        }
        r.join(1, "b-small");
        r.join(2, "a-small");
        r.join(7, "other-namespace");
        assert_eq!(r.largest_rooms(0, 3), (4, vec![("big".into(), 6), ("mid".into(), 3), ("a-small".into(), 1)]));
        assert_eq!(r.largest_rooms(0, 0), (4, vec![]));
        assert_eq!(r.largest_rooms(1, 10), (1, vec![("other-namespace".into(), 1)]));
        assert_eq!(r.largest_rooms(5, 10), (0, vec![]));
    }

    #[test]
    fn rooms_contain_only_their_members() {
        let r = reg();
        assert_eq!(r.join(1, "a"), Some(0));
        assert!(r.join(2, "a").is_some());
        assert_eq!(r.join(2, "a"), None, "joining twice is a no-op");
        assert!(r.join(3, "b").is_some());
        let rooms = s(&["a"]);
        assert_eq!(who(&r, Audience { rooms: &rooms, ..Default::default() }), vec![1, 2]);
        assert_eq!(r.leave(1, "a"), Some(0));
        assert_eq!(r.leave(1, "a"), None);
        assert_eq!(who(&r, Audience { rooms: &rooms, ..Default::default() }), vec![2]);
    }

    #[test]
    fn users_span_connections_and_can_move() {
        let r = reg();
        r.set_user(1, Some("u"));
        r.set_user(2, Some("u"));
        let users = s(&["u"]);
        assert_eq!(who(&r, Audience { users: &users, ..Default::default() }), vec![1, 2]);
        let (namespace, previous) = r.set_user(2, Some("v")).expect("present");
        assert_eq!((namespace, previous.as_deref()), (0, Some("u")));
        assert_eq!(who(&r, Audience { users: &users, ..Default::default() }), vec![1]);
        assert!(r.set_user(42, None).is_none());
        r.set_user(1, None);
        assert_eq!(who(&r, Audience { users: &users, ..Default::default() }), Vec::<u64>::new());
    }

    #[test]
    fn audience_is_a_deduplicated_union_minus_except() {
        let r = reg();
        r.join(1, "a");
        r.join(2, "a");
        r.join(2, "b");
        r.join(3, "b");
        r.set_user(3, Some("u"));
        r.set_user(4, Some("u"));
        let rooms = s(&["a", "b"]);
        let users = s(&["u"]);
        let a = Audience { rooms: &rooms, users: &users, connections: &[1, 5], ..Default::default() };
        assert_eq!(who(&r, a), vec![1, 2, 3, 4, 5]);
        let a = Audience { rooms: &rooms, users: &users, except: &[2, 4], ..Default::default() };
        assert_eq!(who(&r, a), vec![1, 3]);
    }

    #[test]
    fn namespaces_are_isolated() {
        let r = reg();
        r.join(9, "a");
        r.join(1, "a");
        let rooms = s(&["a"]);
        assert_eq!(who(&r, Audience { namespace: 1, rooms: &rooms, ..Default::default() }), vec![9]);
        assert_eq!(who(&r, Audience { namespace: 0, everyone: true, ..Default::default() }), vec![1, 2, 3, 4, 5]);
        assert_eq!(who(&r, Audience { namespace: 0, connections: &[9], ..Default::default() }), Vec::<u64>::new());
        assert_eq!(who(&r, Audience { namespace: 1, everyone: true, except: &[9], ..Default::default() }), Vec::<u64>::new());
    }

    #[test]
    fn remove_cleans_every_index() {
        let r = reg();
        r.join(1, "a");
        r.set_user(1, Some("u"));
        r.join(1, "b");
        let removed = r.remove(1).expect("present");
        assert_eq!((removed.handle, removed.namespace, removed.rooms, removed.user.as_deref()), (1, 0, s(&["a", "b"]), Some("u")));
        assert!(r.remove(1).is_none());
        assert_eq!(r.join(1, "a"), None);
        let rooms = s(&["a"]);
        let users = s(&["u"]);
        assert_eq!(who(&r, Audience { rooms: &rooms, users: &users, ..Default::default() }), Vec::<u64>::new());
        assert_eq!(r.len(), 5);
        let inner = r.inner.read();
        assert!(inner.namespaces[0].rooms.is_empty() && inner.namespaces[0].users.is_empty());
    }

    #[test]
    fn snapshot_lists_every_membership_by_id() {
        let r = reg();
        r.join(2, "a");
        r.join(2, "b");
        r.set_user(3, Some("ada"));
        let snap = r.snapshot();
        assert_eq!(snap.len(), 6);
        assert_eq!(snap[1], Snapshot { id: 2, namespace: 0, user: None, rooms: s(&["a", "b"]) });
        assert_eq!(snap[2], Snapshot { id: 3, namespace: 0, user: Some("ada".into()), rooms: vec![] });
        assert_eq!(snap[5].namespace, 1);
    }
}
