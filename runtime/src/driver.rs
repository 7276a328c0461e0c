//! The driver: one task per member, running its node over the sockets.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use horus_core::stack::parse_outside;
use horus_core::{Dest, Down, Endpoint, Node, Time, Transmit, Up, ViewId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use crate::counters::{CounterValues, Counters};
use crate::directory::Directory;
use crate::faults::{FaultSwitch, Faults};
use crate::io::{RxBatch, TxBatch};
use crate::socket::Sockets;
use crate::sync::Arc;
use crate::wire::{is_outside, peek_sender, Gossip, GOSSIP_MAX_ENTRIES, GOSSIP_TAG};

/// A request from the handle.
#[derive(Debug)]
pub(crate) enum Command {
    Down(Down),
    /// The node's counters, answered at once.
    NodeCounters(oneshot::Sender<Vec<(&'static str, &'static str, u64)>>),
    /// The directory, answered at once.
    Directory(oneshot::Sender<Vec<(Endpoint, SocketAddr)>>),
}

/// Commands handled in one go before the node is pumped.
const COMMAND_BATCH: usize = 64;

/// Rounds of due timers fired in one turn (see [`Run::fire_due`]).
const DUE_ROUNDS: usize = 4;

/// How the driver reaches the other members.
#[derive(Debug)]
pub(crate) enum Route {
    /// Casts to this group address.
    Multicast(SocketAddr),
    /// Casts as one datagram per member; join requests also to the seeds.
    UnicastOnly { seeds: Vec<SocketAddr>, gossip_every: Duration },
}

/// Everything a driver is made of; `run` consumes it.
#[derive(Debug)]
pub(crate) struct Driver {
    pub node: Box<dyn Node>,
    pub group_tag: u32,
    pub sockets: Sockets,
    pub route: Route,
    pub recv_batch: usize,
    pub max_backlog: u64,
    pub counters: Arc<Counters>,
    pub switch: FaultSwitch,
    pub commands: mpsc::Receiver<Command>,
    /// Counters and directory requests: answered even while back-pressure holds commands.
    pub queries: mpsc::Receiver<Command>,
    pub events: mpsc::Sender<Up>,
    pub stop: oneshot::Receiver<()>,
    pub epoch: Instant,
}

/// The driver's state while it runs.
struct Run {
    node: Box<dyn Node>,
    me: Endpoint,
    group_tag: u32,
    route: Route,
    recv_batch: usize,
    max_backlog: u64,
    epoch: Instant,
    dir: Directory,
    faults: Faults,
    switch: FaultSwitch,
    shared: Arc<Counters>,
    /// Counted since the last publication.
    delta: CounterValues,
    rx: RxBatch,
    tx: TxBatch,
    /// Scratch: the addresses a cast goes to in unicast-only mode.
    targets: Vec<(SocketAddr, Option<Endpoint>)>,
    /// An event the application's channel had no room for: polled again once it has.
    pending_up: Option<Up>,
    /// The application dropped its receiver: events are dropped.
    app_gone: bool,
    /// The node exited: the driver stops once what it had to send and say is out.
    exited: bool,
    view: ViewId,
    next_gossip: Option<Instant>,
    /// Where our own casts come back from (multicast loop), once seen.
    own_addr: Option<SocketAddr>,
    /// Whether a send error was logged already (they are counted each; logged once).
    send_error_logged: bool,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("me", &self.me).field("view", &self.view).finish()
    }
}

impl Driver {
    /// Runs the member until it is stopped, its handle is dropped, or it exits the group.
    pub(crate) async fn run(self) {
        let Driver {
            node,
            group_tag,
            sockets,
            route,
            recv_batch,
            max_backlog,
            counters,
            switch,
            mut commands,
            mut queries,
            events,
            mut stop,
            epoch,
        } = self;
        let Sockets { unicast, multicast, .. } = sockets;
        let next_gossip = match &route {
            Route::UnicastOnly { .. } => Some(epoch),
            Route::Multicast(_) => None,
        };
        let mut run = Run {
            me: node.endpoint(),
            view: node.view().id,
            node,
            group_tag,
            route,
            recv_batch,
            max_backlog,
            epoch,
            dir: Directory::default(),
            faults: Faults::new(&switch),
            switch,
            shared: counters,
            delta: CounterValues::default(),
            rx: RxBatch::new(recv_batch),
            tx: TxBatch::default(),
            targets: Vec::new(),
            pending_up: None,
            app_gone: false,
            exited: false,
            next_gossip,
            own_addr: None,
            send_error_logged: false,
        };
        let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep_until(epoch));
        let mut armed: Option<Instant> = None;
        loop {
            run.fire_due();
            run.pump(&unicast, &events).await;
            if run.exited && run.pending_up.is_none() {
                tracing::debug!("member exited: driver stops");
                break;
            }
            let deadline = run.deadline();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(at);
                }
                armed = deadline;
            }
            // Back-pressure: while the node holds much for the network, the application's
            // events wait in the bounded command queue, and its `down` waits on the queue.
            let room = run.node.backlog() <= run.max_backlog;
            tokio::select! {
                _ = &mut stop => break,
                cmd = commands.recv(), if room => match cmd {
                    Some(cmd) => {
                        run.on_command(cmd);
                        for _ in 1..COMMAND_BATCH {
                            match commands.try_recv() {
                                Ok(cmd) => run.on_command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    // The handle is gone: nobody can stop us any more, so stop now.
                    None => break,
                },
                Some(query) = queries.recv() => run.on_command(query),
                r = unicast.readable() => run.on_readable(&unicast, r),
                r = readable(multicast.as_ref()), if multicast.is_some() => {
                    if let Some(m) = multicast.as_ref() {
                        run.on_readable(m, r);
                    }
                }
                () = &mut timer, if armed.is_some() => armed = None,
                permit = events.reserve(), if run.pending_up.is_some() => match permit {
                    Ok(permit) => {
                        if let Some(ev) = run.pending_up.take() {
                            permit.send(ev);
                        }
                    }
                    Err(_) => run.on_app_gone(),
                },
            }
        }
        run.publish();
    }
}

async fn readable(socket: Option<&UdpSocket>) -> std::io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

impl Run {
    /// The node's clock: nanoseconds since the driver started.
    #[inline]
    fn now(&self) -> Time {
        Time::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Time) -> Instant {
        // A deadline past what the clock can hold is as good as never.
        self.epoch
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }

    /// The earliest of the node's deadline and the next gossip.
    fn deadline(&self) -> Option<Instant> {
        let node = self.node.poll_timeout().map(|t| self.instant(t));
        [node, self.next_gossip].into_iter().flatten().min()
    }

    /// Fires the node's timers and the gossip if they are due. Checked on every turn of the
    /// loop, so that sockets that are always ready cannot hold timers back.
    ///
    /// A timer armed at `now` while timers fire (the flush of a pack, after the sequencer's
    /// announcement was cast into it) belongs to this same turn: it fires here too, rather
    /// than after another round through the runtime's timer, which would add that round to
    /// the latency of every message it holds. At most [`DUE_ROUNDS`] rounds, so a layer that
    /// re-arms at `now` every time cannot spin the driver.
    fn fire_due(&mut self) {
        let now = self.now();
        for _ in 0..DUE_ROUNDS {
            match self.node.poll_timeout() {
                Some(at) if at <= now => self.node.on_timeout(now),
                _ => break,
            }
        }
        if self.next_gossip.is_some_and(|at| at <= Instant::now()) {
            self.gossip();
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Down(ev) => {
                let now = self.now();
                self.node.down(now, ev);
            }
            Command::NodeCounters(reply) => {
                let _ = reply.send(self.node.counters());
            }
            Command::Directory(reply) => {
                let _ = reply.send(self.dir.entries().collect());
            }
        }
    }

    fn on_readable(&mut self, socket: &UdpSocket, ready: std::io::Result<()>) {
        if let Err(e) = ready {
            self.delta.recv_errors += 1;
            tracing::warn!(error = %e, "socket readiness failed");
            return;
        }
        if let Some(e) = self.rx.recv(socket, self.recv_batch) {
            self.delta.recv_errors += 1;
            tracing::warn!(error = %e, "receive failed");
        }
        if self.rx.datagrams.is_empty() {
            return;
        }
        self.delta.recv_batches += 1;
        self.faults.refresh(&self.switch);
        let now = self.now();
        let mut batch = std::mem::take(&mut self.rx.datagrams);
        for (datagram, from) in batch.drain(..) {
            self.on_datagram(now, datagram, from);
        }
        self.rx.datagrams = batch;
    }

    fn on_datagram(&mut self, now: Time, datagram: Bytes, from: SocketAddr) {
        self.delta.datagrams_received += 1;
        self.delta.bytes_received += datagram.len() as u64;
        if datagram.first() == Some(&GOSSIP_TAG) {
            if self.faults.drops(self.dir.endpoint(from)) {
                self.delta.fault_dropped_in += 1;
            } else {
                self.on_gossip(&datagram, from);
            }
            return;
        }
        let sender = self.identify(&datagram, from);
        if self.faults.drops(sender.or_else(|| self.dir.endpoint(from))) {
            self.delta.fault_dropped_in += 1;
            return;
        }
        match sender {
            Some(e) if e == self.me => self.own_addr = Some(from),
            Some(e) => {
                self.dir.learn(e, from, self.node.view());
            }
            None => {}
        }
        self.node.receive(now, datagram);
    }

    /// Who sent `datagram`, if it says and the directory does not know already (ourselves,
    /// known by address, so our looped-back casts are not parsed again).
    #[inline]
    fn identify(&self, datagram: &Bytes, from: SocketAddr) -> Option<Endpoint> {
        if is_outside(datagram) {
            // It names its sender: a new incarnation may be at an old address.
            return parse_outside(self.group_tag, datagram).map(|(e, _)| e);
        }
        if self.own_addr == Some(from) {
            return Some(self.me);
        }
        if self.dir.endpoint(from).is_some() {
            return None;
        }
        let (tag, view, rank) = peek_sender(datagram)?;
        let current = self.node.view();
        (tag == self.group_tag && view == current.id).then(|| current.member(rank)).flatten()
    }

    fn on_gossip(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(g) = Gossip::decode(datagram).filter(|g| g.group == self.group_tag) else {
            self.delta.bad_gossip += 1;
            return;
        };
        self.delta.gossip_received += 1;
        let view = self.node.view().clone();
        if g.from != self.me {
            self.dir.learn(g.from, from, &view);
        }
        for (e, addr) in g.entries {
            if e != self.me {
                self.dir.learn_gossip(e, addr, &view);
            }
        }
    }

    /// Moves what the node produced out: events to the application, datagrams to the network.
    async fn pump(&mut self, socket: &UdpSocket, events: &mpsc::Sender<Up>) {
        while self.pending_up.is_none() {
            let Some(ev) = self.node.poll_up() else { break };
            self.observe(&ev);
            if self.app_gone {
                continue;
            }
            match events.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => self.pending_up = Some(ev),
                Err(mpsc::error::TrySendError::Closed(_)) => self.on_app_gone(),
            }
        }
        let view = self.node.view().id;
        if view != self.view {
            self.view = view;
            // New members must learn each other's addresses before they suspect each other.
            if self.next_gossip.is_some() {
                self.gossip();
            }
        }
        self.faults.refresh(&self.switch);
        while let Some(t) = self.node.poll_transmit() {
            self.route(t);
        }
        if !self.tx.is_empty() {
            let sent = self.tx.send(socket).await;
            self.delta.send_batches += 1;
            self.delta.datagrams_sent += sent.datagrams;
            self.delta.bytes_sent += sent.bytes;
            self.delta.send_errors += sent.errors;
            if let Some(e) = sent.first_error {
                if !self.send_error_logged {
                    self.send_error_logged = true;
                    tracing::warn!(error = %e, "send failed (counted as send_errors; logged once)");
                } else {
                    tracing::debug!(error = %e, "send failed");
                }
            }
        }
        self.publish();
    }

    /// Logs the events worth a line, and notes the node's exit.
    fn observe(&mut self, ev: &Up) {
        match ev {
            Up::View(view) => {
                tracing::info!(view = %view, members = view.len(), "view installed");
            }
            Up::Suspect(ranks) => {
                let view = self.node.view();
                let who: Vec<Endpoint> = ranks.iter().filter_map(|r| view.member(*r)).collect();
                tracing::warn!(view = %view.id, suspects = ?who, "members suspected");
            }
            Up::Exit => {
                tracing::info!("member exited the group");
                self.exited = true;
            }
            _ => {}
        }
    }

    fn on_app_gone(&mut self) {
        if !self.app_gone {
            tracing::debug!("application dropped its events: dropping them from now on");
        }
        self.app_gone = true;
        self.pending_up = None;
    }

    /// Encodes `t` into the send batch, to each address it goes to.
    fn route(&mut self, t: Transmit) {
        let at = self.tx.write(|buf| {
            buf.reserve(t.msg.len());
            t.msg.write_to(buf);
        });
        match (t.dest, &self.route) {
            (Dest::Cast, Route::Multicast(group)) => {
                let group = *group;
                if self.faults.drops(None) {
                    self.delta.fault_dropped_out += 1;
                } else {
                    self.tx.push_to(at, group);
                }
            }
            (Dest::Cast, Route::UnicastOnly { .. }) => {
                // A join request goes wherever a member may be; a cast to the view.
                let outside = is_outside(self.tx.bytes(at.clone()));
                self.fill_targets(outside, true);
                self.push_targets(at);
            }
            (Dest::Member(e), _) => match self.dir.addr(e) {
                Some(_) if self.faults.drops(Some(e)) => self.delta.fault_dropped_out += 1,
                Some(addr) => self.tx.push_to(at, addr),
                None => self.delta.unknown_address += 1,
            },
        }
    }

    /// Fills `targets` with the other members of the view whose address is known and, if
    /// `beyond_view`, every other address known and the seeds; each address once.
    fn fill_targets(&mut self, beyond_view: bool, count_unknown: bool) {
        self.targets.clear();
        let view = self.node.view();
        for e in view.members.iter().filter(|e| **e != self.me) {
            match self.dir.addr(*e) {
                Some(a) => self.targets.push((a, Some(*e))),
                None if count_unknown => self.delta.unknown_address += 1,
                None => {}
            }
        }
        if beyond_view {
            let me = self.me;
            let known = self.dir.entries().filter(|(e, _)| *e != me).map(|(e, a)| (a, Some(e)));
            self.targets.extend(known);
            if let Route::UnicastOnly { seeds, .. } = &self.route {
                let dir = &self.dir;
                self.targets.extend(seeds.iter().map(|a| (*a, dir.endpoint(*a))));
            }
            self.targets.retain(|(_, e)| *e != Some(me));
            self.targets.sort_unstable_by_key(|(a, _)| *a);
            self.targets.dedup_by_key(|(a, _)| *a);
        }
    }

    /// Sends the datagram at `at` to every address in `targets` that faults let through;
    /// returns how many.
    fn push_targets(&mut self, at: std::ops::Range<usize>) -> u64 {
        let mut n = 0;
        for &(addr, e) in &self.targets {
            if self.faults.drops(e) {
                self.delta.fault_dropped_out += 1;
            } else {
                self.tx.push_to(at.clone(), addr);
                n += 1;
            }
        }
        n
    }

    /// Tells the members of the view, every member known and the seeds which addresses this
    /// member knows of its view.
    fn gossip(&mut self) {
        let Route::UnicastOnly { gossip_every, .. } = &self.route else { return };
        self.next_gossip = Some(Instant::now() + *gossip_every);
        let view = self.node.view();
        let frame = Gossip {
            group: self.group_tag,
            from: self.me,
            entries: self.dir.of_view(view).take(GOSSIP_MAX_ENTRIES).collect(),
        }
        .encode();
        let at = self.tx.write(|buf| buf.put_slice(&frame));
        self.fill_targets(true, false);
        self.delta.gossip_sent += self.push_targets(at);
    }

    /// Publishes what was counted since the last time.
    fn publish(&mut self) {
        if !self.delta.is_zero() {
            self.shared.add(&self.delta);
            self.delta = CounterValues::default();
        }
    }
}
