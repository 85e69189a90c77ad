//! What the integration tests share: a listening ferrosocket `Server` on 127.0.0.1 whose JS
//! wake-ups arrive on a channel, so a test can play the JS side (take batches when woken).

use ferrosocket::config::Config;
use ferrosocket::server::Server;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Mutex;

/// Starts a server with `worker_threads` I/O threads and the options `configure` sets; returns
/// it, its port, and the receiver of its wake-ups.
pub fn start_server(worker_threads: usize, configure: impl FnOnce(&mut Config)) -> (Server, u16, Receiver<()>) {
    let mut config = Config { host: "127.0.0.1".into(), worker_threads, ..Config::default() };
    configure(&mut config);
    let (tx, wakes) = channel();
    let tx = Mutex::new(tx);
    let server = Server::new(config, Box::new(move || {
        let _ = tx.lock().unwrap().send(());
    }), None)
    .expect("server starts");
    let port = server.listen().expect("listens");
    (server, port, wakes)
}
