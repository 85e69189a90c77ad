//! The benchmark protocol answered entirely in Rust: the reference that shows what crossing into
//! JS costs. Installed only with the `__referenceHandlers` option, which the bench's
//! `ferrosocket-rust` peer sets; an application never does.
//!
//! Protocol (bench/README.md): `echo` comes back as `{"event":"echo","data":<data>}`; `sub`
//! `{room}` joins the room and answers `subscribed`; `bcast` `{room, …}` publishes
//! `{"event":"bcast","data":<data>}` to the room. Like the JS path, a batch of input is corked:
//! frames are queued and each touched socket is written once after the batch.

use crate::conn::Conn;
use crate::session::InboundHook;
use crate::envelope::Envelope;
use crate::protocol::frame;
use crate::fanout::FanOut;
use crate::registry::Audience;
use serde::Deserialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// Connections this driver thread queued frames for since the last `after_input`.
    static CORKED: RefCell<Vec<Arc<Conn>>> = const { RefCell::new(Vec::new()) };
}

/// The reference handlers, joining and publishing through the server's fan-out.
pub struct ReferenceHandlers {
    fanout: Arc<dyn FanOut>,
}

impl ReferenceHandlers {
    pub fn new(fanout: Arc<dyn FanOut>) -> Self {
        Self { fanout }
    }
}

impl InboundHook for ReferenceHandlers {
    fn on_event(&self, conn: &Arc<Conn>, envelope: &Envelope<'_>) -> bool {
        CORKED.with(|corked| handle(conn, &*self.fanout, envelope, &mut corked.borrow_mut()))
    }

    /// Writes what `on_event` queued: one vectored write per touched socket.
    fn after_input(&self) {
        CORKED.with(|corked| {
            for conn in corked.borrow_mut().drain(..) {
                conn.flush_corked();
            }
        });
    }
}

#[derive(Deserialize)]
struct RoomField<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
}

fn room_of(data: Option<&serde_json::value::RawValue>) -> Option<String> {
    let raw = data?.get();
    serde_json::from_str::<RoomField<'_>>(raw).ok().map(|r| r.room.into_owned())
}

fn event_frame(event: &str, data: Option<&serde_json::value::RawValue>) -> bytes::Bytes {
    let data = data.map_or("null", |d| d.get());
    frame::encode(frame::OP_TEXT, format!("{{\"event\":\"{event}\",\"data\":{data}}}").as_bytes())
}

/// Handles one bench envelope; returns false when it is not part of the protocol.
fn handle(conn: &Arc<Conn>, fanout: &dyn FanOut, envelope: &Envelope<'_>, corked: &mut Vec<Arc<Conn>>) -> bool {
    let mut queue = |target: &Arc<Conn>, frame: &bytes::Bytes| {
        if target.send_corked(frame) {
            corked.push(target.clone());
        }
    };
    match envelope.event.as_ref() {
        "echo" => queue(conn, &event_frame("echo", envelope.data)),
        "sub" => {
            if let Some(room) = room_of(envelope.data) {
                fanout.join(conn.id, &room);
            }
            queue(conn, &event_frame("subscribed", envelope.data));
        }
        "bcast" => {
            let Some(room) = room_of(envelope.data) else { return true };
            let frame = event_frame("bcast", envelope.data);
            let rooms = [room];
            let audience = Audience { namespace: conn.namespace(), rooms: &rooms, ..Default::default() };
            fanout.deliver_local(&audience, &mut |member| queue(member, &frame));
        }
        _ => return false,
    }
    true
}
