//! The fast lane: sessions in their steady state served by a plain event loop.
//!
//! Most of what a session does is ordinary traffic: a request is read, found harmless by the
//! pre-filter and forwarded; the answer is scanned and forwarded. Driven by the worker's
//! tokio task, each of those wake-ups also pays the runtime's timer wheel, task scheduling,
//! waker bookkeeping and readiness polls of both sockets — measured with callgrind
//! (`benches/profile.py`), more user-space instructions per transaction than pgbouncer spends
//! on the whole transaction. On the lane the same session code ([`Session::on_client_data`],
//! [`Session::on_upstream_data`]) runs straight from `epoll`: one `epoll_wait`, one read and
//! one write per direction, nothing else.
//!
//! Each worker has one lane thread. A session moves to its worker's lane once it has been
//! quiet for [`QUIET_REQUESTS_BEFORE_LANE`] requests in a row (nothing held, governed,
//! planned or audited) and both of its legs are plain TCP; its tokio task waits meanwhile
//! (it stays tracked, so shutdown still waits for it). A move there and back costs about
//! 40 µs of CPU (eight `epoll_ctl`, two cross-thread wake-ups; measured with a session that
//! alternates a `LOCK TABLE` with a few plain requests) and a request served on the lane saves
//! about 1.5 µs, so the first move comes early — an application's sessions are on the lane
//! after their first few queries — and every return for a request that needs the task doubles
//! the quiet stretch the next move waits for, up to [`QUIET_REQUESTS_BEFORE_LANE_MAX`]: a
//! session that is governed every few statements soon stops moving. It goes back to its task — sockets,
//! buffers and all — as soon as anything needs more than forwarding: a request the policy
//! must see, the routines' refresh, an end of stream, an error, or a change of the shutdown
//! phase. The task then carries on exactly where the lane stopped; nothing the session does
//! differs by where it runs. Migration sessions, which hold a request every few statements,
//! therefore stay on their task: the lane serves application traffic, and the governed path
//! pays no hand-over.
//!
//! TLS sessions stay on their task (the lane reads raw sockets).

use std::io::{self, IoSlice, Write};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::super::error::SessionError;
use super::super::phase::{Phase, ShutdownPhase};
use super::super::stream::Stream;
use super::{Ending, Event, HIGH_WATER, Session};

/// Quiet requests in a row after which a session first moves to the lane.
pub(super) const QUIET_REQUESTS_BEFORE_LANE: u32 = 4;

/// The most quiet requests a session waits for before it moves to the lane again; each time
/// it comes back because a request needed its task, the wait doubles up to this.
pub(super) const QUIET_REQUESTS_BEFORE_LANE_MAX: u32 = 64;
/// The lane's own token (arrivals, shutdown phase changes).
const WAKE: Token = Token(usize::MAX);
/// Bytes read from a socket at a time.
const READ_SIZE: usize = 64 * 1024;

/// A worker's lane: where its sessions are sent.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    arrivals: Option<mpsc::Sender<Arrival>>,
    waker: Arc<mio::Waker>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sender goes first: the lane thread, woken, then finds its inbox closed.
        drop(self.arrivals.take());
        if let Err(e) = self.waker.wake() {
            warn!(error = %e, "cannot wake the fast lane to stop it");
        }
    }
}

/// A session handed to the lane.
struct Arrival {
    session: Box<Session>,
    client: TcpStream,
    upstream: TcpStream,
    back: oneshot::Sender<Return>,
}

/// A session handed back to its task.
pub(super) struct Return {
    pub(super) session: Box<Session>,
    pub(super) client: std::net::TcpStream,
    pub(super) upstream: std::net::TcpStream,
    pub(super) exit: Exit,
}

/// Why the lane handed a session back.
#[derive(Debug)]
pub(super) enum Exit {
    /// The session needs its task: something is held, governed or closing (its state says
    /// which; the task's next `drive` takes it from there).
    Needs,
    /// An event only the task handles (end of stream, an I/O error, a phase change).
    Event(Event),
    /// Handling the data failed (a protocol error): the session ends with it.
    Failed(SessionError),
}

/// What the lane sets in a session while it rides, for the session's own code to use.
#[derive(Debug, Default)]
pub(super) struct OnLane {
    /// The session is on the lane.
    pub(super) on: bool,
    /// Client bytes forwarded: left at the front of the session's buffer by
    /// [`Session::on_client_data`] and written from there by the lane, instead of being split
    /// off into the queue (which costs a reference-counted buffer and a queue entry per
    /// request). How many leading bytes of the client buffer are decided and not yet written.
    pub(super) write_through: usize,
    /// When the lane woke for the events it is serving: the session's clock for the time
    /// being (the routines' refresh, [`Session::start_routines_read`]), instead of a clock
    /// read per request.
    pub(super) woke_at: Option<tokio::time::Instant>,
    /// Bytes forwarded to the server and to the client and not yet counted in the metrics:
    /// the lane adds them up over its sessions and counts them once per wake-up, instead of
    /// two shared counter updates per round trip.
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
}

/// Wakes the lane thread from another thread (shutdown phase changes).
struct PhaseWake(Arc<mio::Waker>);

impl Wake for PhaseWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Err(e) = self.0.wake() {
            warn!(error = %e, "cannot wake the fast lane");
        }
    }
}

/// Starts the lane thread of worker `index`, under `SCHED_BATCH` when `batch` is set.
pub(crate) fn start(index: usize, phase: &Arc<Phase>, batch: bool) -> io::Result<Handle> {
    let poll = Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
    let (arrivals, inbox) = mpsc::channel();
    let watch = phase.watch(
        u64::MAX - index as u64,
        &Waker::from(Arc::new(PhaseWake(Arc::clone(&waker)))),
    );
    let phase = Arc::downgrade(phase);
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name(format!("ddlgate-lane-{index}"))
        // Sessions review statements here too.
        .stack_size(crate::analysis::STACK_SIZE)
        .spawn(move || {
            super::super::sched::serving_thread(batch);
            let _entered = span.enter();
            let mut lane = Lane {
                poll,
                inbox,
                phase,
                rides: Vec::new(),
                free: Vec::new(),
                ready: Vec::new(),
                unfinished: Vec::new(),
                scratch: vec![0; READ_SIZE],
                tally: Tally::default(),
            };
            lane.run();
            drop(watch);
        })?;
    Ok(Handle {
        inner: Arc::new(Inner {
            arrivals: Some(arrivals),
            waker,
        }),
    })
}

impl Handle {
    /// Carries `session` on the lane until it needs its task again. `None` when the lane is
    /// gone (shutting down, or its thread failed): the session is lost with it only in the
    /// second case, which is logged there.
    pub(super) async fn ride(
        &self,
        session: Box<Session>,
        client: TcpStream,
        upstream: TcpStream,
    ) -> Result<Return, LaneGone> {
        let (back, answer) = oneshot::channel();
        let arrival = Arrival {
            session,
            client,
            upstream,
            back,
        };
        let Some(arrivals) = &self.inner.arrivals else {
            return Err(LaneGone::Refused(Box::new(arrival.into_return())));
        };
        if let Err(mpsc::SendError(arrival)) = arrivals.send(arrival) {
            return Err(LaneGone::Refused(Box::new(arrival.into_return())));
        }
        if let Err(e) = self.inner.waker.wake() {
            // The arrival is in the inbox; the lane finds it at its next wake-up.
            warn!(error = %e, "cannot wake the fast lane");
        }
        answer.await.map_err(|_| LaneGone::Lost)
    }
}

/// The lane could not carry a session.
pub(super) enum LaneGone {
    /// It never took it: here it is back.
    Refused(Box<Return>),
    /// It took it and stopped without handing it back.
    Lost,
}

impl Arrival {
    fn into_return(self) -> Return {
        Return {
            session: self.session,
            client: self.client.into(),
            upstream: self.upstream.into(),
            exit: Exit::Needs,
        }
    }
}

/// A session on the lane, with its sockets and what epoll last said about them.
struct Ride {
    session: Box<Session>,
    client: TcpStream,
    upstream: TcpStream,
    back: oneshot::Sender<Return>,
    client_ready: Readiness,
    upstream_ready: Readiness,
    /// Already in the lane's ready list.
    queued: bool,
}

/// What epoll (edge-triggered) last said about a socket, until a call finds otherwise.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    readable: bool,
    writable: bool,
    /// The peer closed its side (or the socket failed): read until the read that says so,
    /// whatever the reads before it returned — that edge has been reported once, with the
    /// last data.
    closed: bool,
}

impl Readiness {
    /// Until epoll says otherwise, a socket is taken as ready: a session may arrive with
    /// bytes already buffered, and a read that finds nothing costs one call.
    const ASSUMED: Self = Self {
        readable: true,
        writable: true,
        closed: false,
    };
}

struct Lane {
    poll: Poll,
    inbox: mpsc::Receiver<Arrival>,
    phase: Weak<Phase>,
    /// Sessions by slot; a session's client socket is token `2 * slot`, its server `+ 1`.
    rides: Vec<Option<Ride>>,
    free: Vec<usize>,
    /// Slots with news since the last `epoll_wait`.
    ready: Vec<usize>,
    /// Slots that used up their turn with more to do: served again after the others.
    unfinished: Vec<usize>,
    /// Where reads land before they are appended to a session's buffer.
    scratch: Vec<u8>,
    /// The bytes its sessions forwarded since the metrics were last told.
    tally: Tally,
}

/// Bytes forwarded on the lane, counted in the metrics once per wake-up ([`OnLane`]).
#[derive(Default)]
struct Tally {
    bytes_in: u64,
    bytes_out: u64,
    /// The metrics' counters (the same for every session of the proxy), from the first
    /// session that arrived.
    counters: Option<(metrics::Counter, metrics::Counter)>,
}

impl Tally {
    /// Takes what `session` counted since its last turn.
    fn take(&mut self, session: &mut Session) {
        self.bytes_in += std::mem::take(&mut session.on_lane.bytes_in);
        self.bytes_out += std::mem::take(&mut session.on_lane.bytes_out);
    }

    /// Tells the metrics.
    fn report(&mut self) {
        if let Some((bytes_in, bytes_out)) = &self.counters {
            if self.bytes_in > 0 {
                bytes_in.increment(std::mem::take(&mut self.bytes_in));
            }
            if self.bytes_out > 0 {
                bytes_out.increment(std::mem::take(&mut self.bytes_out));
            }
        }
    }
}

impl Lane {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut inbox_open = true;
        loop {
            self.tally.report();
            // With a session still busy, only look for news before serving it again.
            let timeout = (!self.unfinished.is_empty()).then_some(std::time::Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!(error = %e, "the fast lane cannot wait for events; its sessions go back to their tasks");
                break;
            }
            let mut woken = false;
            for event in &events {
                if event.token() == WAKE {
                    woken = true;
                    continue;
                }
                let slot = event.token().0 / 2;
                let Some(Some(ride)) = self.rides.get_mut(slot) else {
                    continue;
                };
                // Errors and hang-ups surface as reads and writes that fail or end.
                let closed = event.is_read_closed() || event.is_error();
                let readable = event.is_readable() || closed;
                let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                let side = if event.token().0 % 2 == 0 {
                    &mut ride.client_ready
                } else {
                    &mut ride.upstream_ready
                };
                side.readable |= readable;
                side.writable |= writable;
                side.closed |= closed;
                if !ride.queued {
                    ride.queued = true;
                    self.ready.push(slot);
                }
            }
            if woken {
                inbox_open = self.take_arrivals();
                let running = self
                    .phase
                    .upgrade()
                    .is_some_and(|p| p.get() == ShutdownPhase::Running);
                if !running {
                    self.hand_back_all();
                }
            }
            for slot in std::mem::take(&mut self.unfinished) {
                if let Some(Some(ride)) = self.rides.get_mut(slot)
                    && !ride.queued
                {
                    ride.queued = true;
                    self.ready.push(slot);
                }
            }
            let woke_at = tokio::time::Instant::now();
            // In the order the news came (epoll reports sockets in the order they became
            // ready), the unfinished last: no session's answer waits behind later ones.
            let mut ready = std::mem::take(&mut self.ready);
            for slot in ready.drain(..) {
                self.serve(slot, woke_at);
            }
            self.ready = ready;
            if !inbox_open && self.free.len() == self.rides.len() {
                self.tally.report();
                return;
            }
        }
        self.hand_back_all();
        self.tally.report();
    }

    /// Registers the sessions sent since the last wake-up; false once no task can send more.
    fn take_arrivals(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(arrival) => self.admit(arrival),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn admit(&mut self, arrival: Arrival) {
        let slot = self.free.pop().unwrap_or(self.rides.len());
        let Arrival {
            session,
            mut client,
            mut upstream,
            back,
        } = arrival;
        let registry = self.poll.registry();
        let both = Interest::READABLE | Interest::WRITABLE;
        let registered = registry
            .register(&mut client, Token(2 * slot), both)
            .and_then(|()| {
                registry
                    .register(&mut upstream, Token(2 * slot + 1), both)
                    .inspect_err(|_| {
                        let _ = registry.deregister(&mut client);
                    })
            });
        let mut ride = Ride {
            session,
            client,
            upstream,
            back,
            client_ready: Readiness::ASSUMED,
            upstream_ready: Readiness::ASSUMED,
            queued: true,
        };
        if let Err(e) = registered {
            warn!(error = %e, "the fast lane cannot watch a session's sockets; it stays with its task");
            send_back(ride, Exit::Needs);
            return;
        }
        ride.session.on_lane.on = true;
        let metrics = &ride.session.shared.metrics;
        if self.tally.counters.is_none() {
            self.tally.counters = Some((metrics.bytes_in.clone(), metrics.bytes_out.clone()));
        }
        metrics.fast_lane_handovers.increment(1);
        metrics.fast_lane_sessions.increment(1.0);
        if slot == self.rides.len() {
            self.rides.push(Some(ride));
        } else if let Some(place) = self.rides.get_mut(slot) {
            *place = Some(ride);
        }
        self.ready.push(slot);
    }

    fn hand_back_all(&mut self) {
        self.ready.clear();
        for slot in 0..self.rides.len() {
            self.hand_back(slot, Exit::Needs);
        }
    }

    fn hand_back(&mut self, slot: usize, exit: Exit) {
        let Some(mut ride) = self.rides.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        ride.session
            .shared
            .metrics
            .fast_lane_sessions
            .decrement(1.0);
        let registry = self.poll.registry();
        deregister(registry, &mut ride.client);
        deregister(registry, &mut ride.upstream);
        send_back(ride, exit);
    }

    /// Moves one session along as far as its sockets allow, within its turn.
    fn serve(&mut self, slot: usize, woke_at: tokio::time::Instant) {
        let Some(Some(ride)) = self.rides.get_mut(slot) else {
            return;
        };
        ride.queued = false;
        ride.session.on_lane.woke_at = Some(woke_at);
        let step = ride.step(&mut self.scratch);
        self.tally.take(&mut ride.session);
        match step {
            Step::Idle => {}
            Step::Unfinished => self.unfinished.push(slot),
            Step::Exit(exit) => self.hand_back(slot, exit),
        }
    }
}

/// How a session's turn ended.
enum Step {
    /// Neither side can move until epoll says so.
    Idle,
    /// The turn is over with more to do (a long result or COPY in full flow): the lane's
    /// other sessions go first.
    Unfinished,
    /// The session goes back to its task.
    Exit(Exit),
}

/// Reads per turn: a session streaming a large result or COPY yields after this many, so the
/// lane's other sessions wait for at most a few of its reads (64 KiB each).
const READS_PER_TURN: usize = 16;

impl Ride {
    /// Writes what is queued and reads what is there until neither side can move or the
    /// turn is over.
    fn step(&mut self, scratch: &mut [u8]) -> Step {
        let mut reads = 0;
        loop {
            if self.upstream_ready.writable {
                match self.session.to_upstream.write_now(&mut Raw(&self.upstream)) {
                    Ok(done) => self.upstream_ready.writable = done,
                    Err(e) => return Step::Exit(Exit::Event(Event::UpstreamFailed(e))),
                }
            }
            if self.client_ready.writable {
                match self.session.to_client.write_now(&mut Raw(&self.client)) {
                    Ok(done) => self.client_ready.writable = done,
                    Err(e) => return Step::Exit(Exit::Event(Event::ClientFailed(e))),
                }
            }
            if !self.session.lane_can_keep() {
                return Step::Exit(Exit::Needs);
            }
            let mut moved = false;
            if self.client_ready.readable && self.session.to_upstream.len() < HIGH_WATER {
                match read(&self.client, scratch, &mut self.client_ready) {
                    Ok(None) => {}
                    Ok(Some([])) => {
                        return Step::Exit(Exit::Event(Event::ClientEof));
                    }
                    Ok(Some(bytes)) => {
                        self.session.client_buf.extend_from_slice(bytes);
                        let taken = self.session.on_client_data();
                        // Before anything else, even a failure: the bytes were decided.
                        if let Err(exit) = self.write_through() {
                            return Step::Exit(exit);
                        }
                        if let Err(e) = taken {
                            return Step::Exit(Exit::Failed(e));
                        }
                        moved = true;
                    }
                    Err(e) => return Step::Exit(Exit::Event(Event::ClientFailed(e))),
                }
            }
            if self.upstream_ready.readable
                && self.session.to_client.len() < HIGH_WATER
                && (!moved || self.session.lane_can_keep())
            {
                match read(&self.upstream, scratch, &mut self.upstream_ready) {
                    Ok(None) => {}
                    Ok(Some([])) => {
                        return Step::Exit(Exit::Event(Event::UpstreamEof));
                    }
                    Ok(Some(bytes)) => {
                        if let Err(exit) = self.take_upstream_bytes(bytes) {
                            return Step::Exit(exit);
                        }
                        moved = true;
                    }
                    Err(e) => return Step::Exit(Exit::Event(Event::UpstreamFailed(e))),
                }
            }
            if !moved {
                return Step::Idle;
            }
            // The usual end of a turn: both sockets drained, everything written.
            if !self.client_ready.readable
                && !self.upstream_ready.readable
                && self.session.to_upstream.is_empty()
                && self.session.to_client.is_empty()
            {
                return if self.session.lane_can_keep() {
                    Step::Idle
                } else {
                    Step::Exit(Exit::Needs)
                };
            }
            reads += 1;
            if reads == READS_PER_TURN {
                return Step::Unfinished;
            }
        }
    }
}

impl Ride {
    /// Writes the client bytes [`Session::on_client_data`] left at the front of the buffer
    /// ([`OnLane::write_through`]); what the server's socket does not take now is queued as
    /// usual.
    fn write_through(&mut self) -> Result<(), Exit> {
        let session = &mut self.session;
        let decided = std::mem::take(&mut session.on_lane.write_through);
        if decided == 0 {
            return Ok(());
        }
        let bytes = session.client_buf.get(..decided).unwrap_or_default();
        let written = write_direct(&self.upstream, bytes, &mut self.upstream_ready)
            .map_err(|e| Exit::Event(Event::UpstreamFailed(e)))?;
        bytes::Buf::advance(&mut session.client_buf, written);
        session.forget_client_prefix(written);
        if written < decided {
            session.queue_client_prefix(decided - written);
        }
        Ok(())
    }

    /// Takes in bytes read from the server. When nothing of the server's is buffered or
    /// queued (the usual case: a whole answer in one read), the answer goes to the client
    /// straight from the read buffer: no copy into the session, no queue. What the client's
    /// socket does not take now, and a partial last message, are kept as usual.
    fn take_upstream_bytes(&mut self, bytes: &[u8]) -> Result<(), Exit> {
        let session = &mut self.session;
        if !session.upstream_buf.is_empty() || !session.to_client.is_empty() {
            session.upstream_buf.extend_from_slice(bytes);
            return session.on_upstream_data().map_err(Exit::Failed);
        }
        let done = super::scan_upstream(&mut session.backend, &mut session.state, bytes)
            .map_err(Exit::Failed)?;
        let (whole, partial) = bytes.split_at(done.min(bytes.len()));
        if !whole.is_empty() {
            session.count_bytes_out(whole.len() as u64);
            let written = write_direct(&self.client, whole, &mut self.client_ready)
                .map_err(|e| Exit::Event(Event::ClientFailed(e)))?;
            if let Some(rest) = whole.get(written..).filter(|rest| !rest.is_empty()) {
                session.to_client.push(bytes::Bytes::copy_from_slice(rest));
            }
        }
        session.upstream_buf.extend_from_slice(partial);
        Ok(())
    }
}

/// Writes as much of `bytes` as the socket takes now (none when it is known not to take
/// any); how much. A socket that would block is marked so.
fn write_direct(socket: &TcpStream, bytes: &[u8], ready: &mut Readiness) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() && ready.writable {
        match Raw(socket).write(bytes.get(written..).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// One read: `Ok(None)` when there is nothing (then `readable` is cleared), an empty slice at
/// the end of the stream. A read shorter than asked also clears `readable`, unless the peer
/// has closed: the socket is drained, and epoll (edge-triggered) reports the next bytes.
fn read<'a>(
    socket: &TcpStream,
    scratch: &'a mut [u8],
    ready: &mut Readiness,
) -> io::Result<Option<&'a [u8]>> {
    loop {
        match rustix::net::recv(socket, &mut *scratch, rustix::net::RecvFlags::empty()) {
            Ok((n, _)) => {
                if n < scratch.len() && !ready.closed {
                    ready.readable = false;
                }
                return Ok(scratch.get(..n));
            }
            Err(rustix::io::Errno::AGAIN) => {
                ready.readable = false;
                return Ok(None);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A lane socket written with system calls made directly (see `rustix` in Cargo.toml).
struct Raw<'a>(&'a TcpStream);

impl Write for Raw<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // NOSIGNAL: a client gone is an error here, not a SIGPIPE.
        rustix::net::send(self.0, bytes, rustix::net::SendFlags::NOSIGNAL).map_err(Into::into)
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        rustix::io::writev(self.0, slices).map_err(Into::into)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn deregister(registry: &Registry, socket: &mut TcpStream) {
    if let Err(e) = registry.deregister(socket) {
        warn!(error = %e, "the fast lane cannot stop watching a socket");
    }
}

fn send_back(ride: Ride, exit: Exit) {
    let Ride {
        mut session,
        client,
        upstream,
        back,
        ..
    } = ride;
    session.on_lane.on = false;
    session.on_lane.woke_at = None;
    // Nothing is left uncounted: a session's tally is taken after each of its turns, and it
    // leaves the lane only after a turn or before its first.
    debug_assert_eq!(
        (session.on_lane.bytes_in, session.on_lane.bytes_out),
        (0, 0)
    );
    let decided = std::mem::take(&mut session.on_lane.write_through);
    if decided > 0 {
        session.queue_client_prefix(decided);
    }
    let returned = Return {
        session,
        client: client.into(),
        upstream: upstream.into(),
        exit,
    };
    if back.send(returned).is_err() {
        // The task is gone (its runtime stopped): the session ends here, its sockets close.
        warn!("a session's task is gone; the fast lane drops its connection");
    }
}

impl Session {
    /// Counts bytes forwarded to the server: on the lane in the session's tally, which the lane
    /// reports in bulk ([`OnLane`]), elsewhere in the metrics at once.
    pub(super) fn count_bytes_in(&mut self, n: u64) {
        if self.on_lane.on {
            self.on_lane.bytes_in += n;
        } else if n > 0 {
            self.shared.metrics.bytes_in.increment(n);
        }
    }

    /// Counts bytes forwarded to the client, as [`Self::count_bytes_in`] does.
    pub(super) fn count_bytes_out(&mut self, n: u64) {
        if self.on_lane.on {
            self.on_lane.bytes_out += n;
        } else if n > 0 {
            self.shared.metrics.bytes_out.increment(n);
        }
    }

    /// Whether nothing in the session needs its task: nothing held, planned, governed,
    /// audited or timed, and no end in sight.
    pub(super) fn lane_can_keep(&self) -> bool {
        !self.client_done
            && !self.draining
            && self.pending.is_none()
            && self.planning.is_none()
            && self.conductor.is_none()
            && self.audit_wait.is_none()
            && self.retry_timer.is_none()
            && self.watch.is_none()
            && self.deferred_restore.is_none()
    }

    /// Whether the session should move to the lane now.
    pub(super) fn may_take_lane(&self) -> bool {
        self.lane.is_some()
            && self.quiet_requests >= self.lane_after
            && matches!(self.client, Stream::Tcp(_))
            && matches!(self.upstream, Stream::Tcp(_))
            && self.phase_seen == ShutdownPhase::Running
            && self.shared.phase.get() == ShutdownPhase::Running
            && self.lane_can_keep()
    }

    /// Rides `lane` until the session needs its task; what the lane handed it back for.
    /// `Err`: the session ended on the way (with this ending).
    pub(super) async fn take_lane(
        mut self: Box<Self>,
        lane: &Handle,
    ) -> Result<(Box<Self>, Exit), Ending> {
        self.quiet_requests = 0;
        let client = std::mem::replace(&mut self.client, Stream::Away);
        let upstream = std::mem::replace(&mut self.upstream, Stream::Away);
        let (client, upstream) = match (client, upstream) {
            (Stream::Tcp(client), Stream::Tcp(upstream)) => (client, upstream),
            (client, upstream) => {
                self.client = client;
                self.upstream = upstream;
                self.lane = None;
                return Ok((self, Exit::Needs));
            }
        };
        let (client, upstream) = match (client.into_std(), upstream.into_std()) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(e), _) => return Err(self.close(Ending::Failed(SessionError::ClientIo(e))).await),
            (_, Err(e)) => {
                return Err(self
                    .close(Ending::Failed(SessionError::UpstreamIo(e)))
                    .await);
            }
        };
        let ridden = lane
            .ride(
                self,
                TcpStream::from_std(client),
                TcpStream::from_std(upstream),
            )
            .await;
        let (back, refused) = match ridden {
            Ok(back) => (back, false),
            Err(LaneGone::Refused(back)) => (*back, true),
            Err(LaneGone::Lost) => {
                error!("the fast lane stopped with a session on it; the session is lost");
                return Err(Ending::Failed(SessionError::ClientIo(io::Error::other(
                    "the fast lane stopped with the session on it",
                ))));
            }
        };
        let Return {
            session,
            client,
            upstream,
            exit,
        } = back;
        let mut session = session;
        if refused {
            session.lane = None;
        }
        match tokio::net::TcpStream::from_std(client) {
            Ok(client) => session.client = Stream::Tcp(client),
            Err(e) => {
                return Err(session
                    .close(Ending::Failed(SessionError::ClientIo(e)))
                    .await);
            }
        }
        match tokio::net::TcpStream::from_std(upstream) {
            Ok(upstream) => session.upstream = Stream::Tcp(upstream),
            Err(e) => {
                return Err(session
                    .close(Ending::Failed(SessionError::UpstreamIo(e)))
                    .await);
            }
        }
        if matches!(exit, Exit::Needs) {
            session.lane_after = session
                .lane_after
                .saturating_mul(2)
                .min(QUIET_REQUESTS_BEFORE_LANE_MAX);
        }
        Ok((session, exit))
    }
}
