//! Connection drivers: each runs many WebSockets on one tokio task over an epoll set of its own.
//!
//! Why not one tokio task per connection: under tokio an idle socket costs a task cell (384 B,
//! 128-byte aligned) plus an I/O registration (`ScheduledIo`, 256 B), more than the rest of the
//! connection together. A driver instead holds each connection as a token in its own epoll set
//! (mio, edge-triggered) plus a boxed 64-byte entry (its [`Session`]). The driver's epoll fd is
//! itself registered once with tokio (`AsyncFd`), so drivers run on the runtime's threads next to
//! the handshakes, and the runtime's park hook still hands JS its batch when the thread runs dry.
//!
//! With `inline_io` (one CPU), the JS thread also runs drivers between its batches
//! ([`SharedDriver::assist`]): whoever holds a driver's state runs it, so on a single core the
//! messages that arrived while JS worked are read by JS itself instead of by an I/O thread the
//! scheduler must switch to and back from for every batch.
//!
//! Other threads reach a connection through its [`DriverHandle`]: the handshake adopts a new
//! connection into it, and publishers, acks and `close` wake a connection by (slot, id), so a
//! wake-up meant for a connection that has since ended never runs its slot's next occupant for
//! real (a spurious run only finds nothing to do).

use crate::conn::Conn;
use crate::session::{self, Session, SessionContext, Step};
use crate::wakeups::Wakeups;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

/// Connection runs per poll of the driver task before it yields the thread to other tasks.
const RUNS_PER_POLL: usize = 256;
/// Readiness events taken from epoll per call.
const EVENTS_PER_CALL: usize = 1024;
/// How often connections paused by global congestion re-check the bridge.
const CONGESTION_POLL: Duration = Duration::from_millis(5);

/// What other threads hold to hand a driver work.
pub struct DriverHandle {
    /// New connections with the bytes that arrived after their HTTP head (bound: one per finished
    /// handshake; the bytes are what one read after the head brought).
    adopt: Mutex<Vec<(Arc<Conn>, Vec<u8>)>>,
    /// Connections with new work (they hold this too, see [`Conn::new`]).
    wakeups: Arc<Wakeups>,
}

impl DriverHandle {
    /// Hands a freshly upgraded connection (non-blocking socket) to this driver.
    pub(crate) fn adopt(&self, conn: Arc<Conn>, early: Vec<u8>) {
        self.adopt.lock().push((conn, early));
        self.wakeups.notify();
    }

    /// The queue a connection of this driver wakes it through.
    pub(crate) fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }
}

/// A driver as its task and the JS thread's assists share it: its state goes to whoever takes
/// the lock, and the task never waits for it (an assist that held it wakes the task after).
pub(crate) struct SharedDriver {
    handle: Arc<DriverHandle>,
    /// `None` until the task starts, and again once the runtime dropped it.
    state: Mutex<Option<Driver>>,
    /// The task found an assist running the driver and waits for it to let go.
    task_waiting: AtomicBool,
}

/// Connection runs per assist (the JS thread returns to its event loop between assists).
const RUNS_PER_ASSIST: usize = 1024;

impl SharedDriver {
    pub(crate) fn handle(&self) -> &Arc<DriverHandle> {
        &self.handle
    }

    /// Runs the driver once on the calling thread (the JS thread, between batches) unless
    /// another thread runs it now: adopts, takes what epoll has without waiting, and runs up to
    /// [`RUNS_PER_ASSIST`] connections; what they read lands in the bridge's batch. No timers:
    /// the task keeps those, and is woken when work or a new deadline is left for it. Returns
    /// whether there was anything to do.
    pub(crate) fn assist(&self) -> bool {
        let Some(mut state) = self.state.try_lock() else { return false };
        let Some(driver) = state.as_mut() else { return false };
        let (progress, leftover) = driver.assist(RUNS_PER_ASSIST);
        drop(state);
        if self.task_waiting.swap(false, Ordering::SeqCst) || leftover {
            self.handle.wakeups.notify();
        }
        progress
    }

    fn poll_task(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before trying the lock: an assist's release wakes this waker.
        self.handle.wakeups.register(cx.waker());
        loop {
            if let Some(mut state) = self.state.try_lock() {
                return match state.as_mut() {
                    Some(driver) => driver.poll(cx),
                    None => Poll::Ready(()),
                };
            }
            // Flag first, then look again: an assist lets go before it reads the flag, so
            // either it sees the flag or we see the lock free.
            self.task_waiting.store(true, Ordering::SeqCst);
            if self.state.is_locked() {
                return Poll::Pending;
            }
        }
    }
}

/// Creates a driver (shared state, empty until its task starts) and the epoll set it runs on.
pub(crate) fn new_driver() -> io::Result<(Arc<SharedDriver>, mio::Poll)> {
    let poll = mio::Poll::new()?;
    let handle = Arc::new(DriverHandle { adopt: Mutex::default(), wakeups: Arc::default() });
    let shared = SharedDriver { handle, state: Mutex::new(None), task_waiting: AtomicBool::new(false) };
    Ok((Arc::new(shared), poll))
}

/// Empties the shared state when the task ends or is dropped with the runtime: nothing may run
/// the driver without its task (its sleep and epoll registration belong to the runtime).
struct ClearOnDrop<'a>(&'a SharedDriver);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.state.lock().take();
    }
}

/// The driver task: runs until the runtime shuts down. Must be spawned on the runtime.
pub(crate) async fn run(shared: Arc<SharedDriver>, poll: mio::Poll, ctx: Arc<SessionContext>) {
    // SAFETY: the `AsyncFd` owns the `mio::Poll`, so the epoll descriptor stays open and the same
    // for the `AsyncFd`'s whole life (mio::Poll never replaces its descriptor).
    let ready = match unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) } {
        Ok(ready) => ready,
        Err(e) => {
            let e = e.into_parts().1;
            eprintln!("ferrosocket: cannot start a connection driver: {e}");
            return;
        }
    };
    let driver = Driver {
        ready,
        handle: shared.handle.clone(),
        ctx,
        events: Events::with_capacity(EVENTS_PER_CALL),
        entries: Vec::new(),
        free: Vec::new(),
        run: VecDeque::new(),
        deadlines: BinaryHeap::new(),
        congested: Vec::new(),
        congested_until: None,
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        sleep_armed: None,
        adopting: Vec::new(),
        woken: Vec::new(),
    };
    *shared.state.lock() = Some(driver);
    let _clear = ClearOnDrop(&shared);
    std::future::poll_fn(|cx| shared.poll_task(cx)).await;
}

struct Entry {
    conn: Arc<Conn>,
    session: Session,
    /// On the run queue already (runs are not queued twice).
    queued: bool,
    /// A close deadline for this connection is on the heap.
    deadline_set: bool,
    /// On the congested list.
    congested: bool,
}

struct Driver {
    /// The driver's own epoll set, registered with tokio: readable when it has events.
    ready: AsyncFd<mio::Poll>,
    handle: Arc<DriverHandle>,
    ctx: Arc<SessionContext>,
    events: Events,
    /// Connections by slot (= epoll token). Boxed: the vector's spare capacity costs 8 B a slot.
    entries: Vec<Option<Box<Entry>>>,
    free: Vec<u32>,
    run: VecDeque<u32>,
    /// Close deadlines: (when, slot, connection id). At most one per connection (`deadline_set`).
    deadlines: BinaryHeap<Reverse<(Instant, u32, u64)>>,
    /// Connections paused by the global inbound bound, at most once each (`Entry::congested`).
    congested: Vec<u32>,
    congested_until: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    sleep_armed: Option<Instant>,
    /// Spare buffers swapped with the handle's queues.
    adopting: Vec<(Arc<Conn>, Vec<u8>)>,
    woken: Vec<(u32, u64)>,
}

impl Driver {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.handle.wakeups.register(cx.waker());
        let mut budget = RUNS_PER_POLL;
        loop {
            let mut progress = self.take_inbox();
            progress |= self.fire_timers(cx);
            match self.ready.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    // A batch short of the buffer's size drained the set. The guard was taken
                    // before epoll was asked, and an event arriving after the ask is a new edge
                    // on our epoll fd that tokio reports again: clearing never loses one.
                    let taken = collect_events(guard.get_inner_mut(), &mut self.events, &mut self.entries, &mut self.run);
                    if taken < EVENTS_PER_CALL {
                        guard.clear_ready();
                    }
                    // Either way, ask again: only a `Pending` answer registers our waker.
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    eprintln!("ferrosocket: connection driver failed: {e}");
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            while let Some(slot) = self.run.pop_front() {
                if budget == 0 {
                    self.run.push_front(slot);
                    cx.waker().wake_by_ref(); // plenty done: let handshakes and others run first
                    return Poll::Pending;
                }
                budget -= 1;
                self.run_slot(slot);
                progress = true;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// One pass for [`SharedDriver::assist`]: (anything done, work or a new deadline left for
    /// the task).
    fn assist(&mut self, mut budget: usize) -> (bool, bool) {
        let timers = (self.deadlines.len(), self.congested.len());
        let mut progress = self.take_inbox();
        progress |= collect_events(self.ready.get_mut(), &mut self.events, &mut self.entries, &mut self.run) > 0;
        while budget > 0 {
            let Some(slot) = self.run.pop_front() else { break };
            budget -= 1;
            self.run_slot(slot);
            progress = true;
        }
        // Nothing but `fire_timers` removes timers, so a length that changed means a new one
        // the task's sleep does not know of yet.
        let leftover = !self.run.is_empty() || (self.deadlines.len(), self.congested.len()) != timers;
        (progress, leftover)
    }

    /// Adopts new connections and queues woken ones. True when there was anything.
    fn take_inbox(&mut self) -> bool {
        let mut any = false;
        {
            let mut adopt = self.handle.adopt.lock();
            if !adopt.is_empty() {
                std::mem::swap(&mut *adopt, &mut self.adopting);
                any = true;
            }
        }
        let mut adopting = std::mem::take(&mut self.adopting);
        for (conn, early) in adopting.drain(..) {
            self.adopt(conn, early);
        }
        self.adopting = adopting;
        if !self.handle.wakeups.take(&mut self.woken) {
            return any;
        }
        for (slot, id) in self.woken.drain(..) {
            if let Some(Some(entry)) = self.entries.get_mut(slot as usize) {
                if entry.conn.id == id && !entry.queued {
                    entry.queued = true;
                    self.run.push_back(slot);
                }
            }
        }
        true
    }

    fn adopt(&mut self, conn: Arc<Conn>, mut early: Vec<u8>) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
        };
        conn.set_slot(slot);
        let fd = conn.stream().as_raw_fd();
        let interest = Interest::READABLE | Interest::WRITABLE;
        // Only the driver registers: other threads hand connections over through the inbox.
        if self.ready.get_ref().registry().register(&mut SourceFd(&fd), Token(slot as usize), interest).is_err() {
            self.free.push(slot);
            conn.terminate();
            session::finish(&conn, &self.ctx, false, false);
            return;
        }
        let session = Session::new(&self.ctx, &conn);
        let entry = Entry { conn, session, queued: true, deadline_set: false, congested: false };
        let entry = self.entries[slot as usize].insert(Box::new(entry));
        if !early.is_empty() {
            let ctx = &*self.ctx;
            let ingested = std::panic::catch_unwind(AssertUnwindSafe(|| {
                entry.session.ingest(&entry.conn, ctx, &mut early)
            }));
            if ingested.is_err() {
                return self.remove(slot, true);
            }
        }
        self.run.push_back(slot);
    }

    /// Queues connections whose close deadline passed and, every few milliseconds, those paused
    /// by congestion; keeps the sleep armed for the next one. True when it queued any.
    fn fire_timers(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        let mut fired = false;
        while let Some(&Reverse((when, slot, id))) = self.deadlines.peek() {
            if when > now {
                break;
            }
            self.deadlines.pop();
            if let Some(Some(entry)) = self.entries.get_mut(slot as usize) {
                if entry.conn.id == id {
                    entry.deadline_set = false;
                    fired |= queue(&mut self.run, entry, slot);
                }
            }
        }
        if self.congested_until.is_some_and(|until| until <= now) {
            self.congested_until = None;
            for slot in self.congested.drain(..) {
                if let Some(Some(entry)) = self.entries.get_mut(slot as usize) {
                    entry.congested = false;
                    fired |= queue(&mut self.run, entry, slot);
                }
            }
        }
        let next = match (self.deadlines.peek().map(|d| d.0 .0), self.congested_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(next) = next {
            if self.sleep_armed != Some(next) {
                self.sleep_armed = Some(next);
                self.sleep.as_mut().reset(tokio::time::Instant::from_std(next));
            }
            if self.sleep.as_mut().poll(cx).is_ready() {
                self.sleep_armed = None;
                cx.waker().wake_by_ref(); // due now: fire on the next pass
            }
        }
        fired
    }

    fn run_slot(&mut self, slot: u32) {
        let Some(Some(entry)) = self.entries.get_mut(slot as usize) else { return };
        entry.queued = false;
        entry.conn.take_wake();
        let ctx = &*self.ctx;
        let step = std::panic::catch_unwind(AssertUnwindSafe(|| entry.session.run(&entry.conn, ctx)));
        let step = match step {
            Ok(step) => step,
            Err(_) => {
                return self.remove(slot, true);
            }
        };
        match step {
            Step::Wait => {}
            Step::Again => {
                entry.queued = true;
                self.run.push_back(slot);
            }
            Step::WaitUntil(when) => {
                if !entry.deadline_set {
                    entry.deadline_set = true;
                    // The poll loop passes through `fire_timers` again after this run, which
                    // arms the sleep for it.
                    self.deadlines.push(Reverse((when, slot, entry.conn.id)));
                }
            }
            Step::Congested => {
                if !entry.congested {
                    entry.congested = true;
                    self.congested.push(slot);
                    self.congested_until.get_or_insert_with(|| Instant::now() + CONGESTION_POLL);
                }
            }
            Step::Done => self.remove(slot, false),
        }
    }

    /// The connection is over. Its descriptor leaves the epoll set when it closes (the last
    /// `Arc<Conn>` goes); an event still arriving for the slot only causes a harmless run.
    fn remove(&mut self, slot: u32, panicked: bool) {
        if let Some(entry) = self.entries[slot as usize].take() {
            self.free.push(slot);
            session::finish(&entry.conn, &self.ctx, panicked, entry.session.abandoned());
        }
    }
}

fn queue(run: &mut VecDeque<u32>, entry: &mut Entry, slot: u32) -> bool {
    if entry.queued {
        return false;
    }
    entry.queued = true;
    run.push_back(slot);
    true
}

/// Takes what epoll has (without blocking) and queues those connections. Returns the count.
fn collect_events(
    poll: &mut mio::Poll,
    events: &mut Events,
    entries: &mut [Option<Box<Entry>>],
    run: &mut VecDeque<u32>,
) -> usize {
    loop {
        match poll.poll(events, Some(Duration::ZERO)) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return 0,
        }
    }
    let mut count = 0;
    for event in events.iter() {
        count += 1;
        let slot = event.token().0 as u32;
        if let Some(Some(entry)) = entries.get_mut(slot as usize) {
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                entry.session.readable = true;
            }
            // Recorded whether or not we are reading: a paused connection must still notice
            // that its peer left (see `Session::paused`). Both ends closed or an error is a
            // reset; only the read side closed is a FIN.
            if event.is_error() || (event.is_read_closed() && event.is_write_closed()) {
                entry.session.peer_reset = true;
            } else if event.is_read_closed() {
                entry.session.peer_hung_up = true;
            }
            queue(run, entry, slot);
        }
    }
    count
}
