//! Names of the Redis channels a cluster talks on. Pure functions; the presence scripts build
//! their key names the same way (see `lua/`), from the same prefix.
//!
//! A namespace name is written with its length (`5:/chat`) so that no room or user name, whatever
//! bytes it holds, can make two different (namespace, name) pairs collide.

/// Everything said to every node of a namespace (broadcasts).
pub fn everyone(prefix: &str, namespace: &str) -> String {
    format!("{prefix}:b:{}:{namespace}", namespace.len())
}

/// A room's traffic: subscribed by the nodes where the room has members.
pub fn room(prefix: &str, namespace: &str, room: &str) -> String {
    format!("{prefix}:r:{}:{namespace}:{room}", namespace.len())
}

/// A user's traffic: subscribed by the nodes where the user has connections.
pub fn user(prefix: &str, namespace: &str, user: &str) -> String {
    format!("{prefix}:u:{}:{namespace}:{user}", namespace.len())
}

/// What is addressed to connections of one node by id.
pub fn node(prefix: &str, node_id: &str) -> String {
    format!("{prefix}:n:{node_id}")
}

/// The node part of a global connection id (`"api-1:17"` → `"api-1"`); node ids may hold `:`.
pub fn node_of(connection_id: &str) -> Option<&str> {
    connection_id.rsplit_once(':').map(|(node, _)| node)
}

/// This node's local id from a global one, if it is this node's (`prefix` = `"{nodeId}:"`).
pub fn local_id(connection_id: &str, prefix: &str) -> Option<u64> {
    connection_id.strip_prefix(prefix)?.parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_collide_across_namespaces() {
        assert_ne!(room("p", "/a", ":b:c"), room("p", "/a:b", "c"));
        assert_eq!(room("fs", "/", "lobby"), "fs:r:1:/:lobby");
        assert_eq!(user("fs", "/chat", "ada"), "fs:u:5:/chat:ada");
        assert_eq!(everyone("fs", "/"), "fs:b:1:/");
        assert_eq!(node("fs", "api-1"), "fs:n:api-1");
    }

    #[test]
    fn global_ids_split_at_the_last_colon() {
        assert_eq!(node_of("api-1:17"), Some("api-1"));
        assert_eq!(node_of("host:9000:3"), Some("host:9000"));
        assert_eq!(node_of("nocolon"), None);
        assert_eq!(local_id("api-1:17", "api-1:"), Some(17));
        assert_eq!(local_id("api-10:17", "api-1:"), None);
        assert_eq!(local_id("api-1:0", "api-1:"), None);
        assert_eq!(local_id("api-1:x", "api-1:"), None);
    }
}
