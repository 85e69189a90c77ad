//! Test hook: running a connection panics when it receives one named event, so the tests can
//! check that a panic closes only that connection (1011) and never reaches Node.

use crate::conn::Conn;
use crate::session::InboundHook;
use crate::envelope::Envelope;
use std::sync::Arc;

pub struct PanicOnEvent {
    pub event: String,
}

impl InboundHook for PanicOnEvent {
    fn on_event(&self, _conn: &Arc<Conn>, envelope: &Envelope<'_>) -> bool {
        if envelope.event == self.event.as_str() {
            panic!("ferrosocket test hook: panic on event {:?}", envelope.event);
        }
        false
    }
}
