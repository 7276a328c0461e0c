//! Replicas: applications written as deterministic state machines over a group's events, so
//! that one piece of code runs between real processes ([`Replicated`], over a [`Group`]) and,
//! seeded and repeatable, in the simulator ([`SimReplica`]), where an oracle can check it
//! under crashes and partitions.
//!
//! A [`Replica`] is told what the group does (messages, views, state transfer) and what its
//! local users ask for ([`Replica::request`]); it answers through an [`Outbox`]: casts and sends
//! to make, and the responses to give, each to the request it answers (a [`Ticket`]). It does
//! no IO and keeps no clock, so it behaves the same wherever it runs.
//!
//! ```
//! use horus::replica::{Outbox, Replica, Ticket};
//! use horus::{Bytes, Endpoint, Level, ViewChange};
//!
//! /// A counter every member adds to; `request` returns the total once its own add is
//! /// delivered, in the same total order everywhere.
//! #[derive(Default)]
//! struct Counter {
//!     total: u64,
//!     waiting: std::collections::VecDeque<Ticket>,
//! }
//!
//! impl Replica for Counter {
//!     type Request = u64;
//!     type Response = u64;
//!     fn request(&mut self, add: u64, ticket: Ticket, out: &mut Outbox<u64>) {
//!         self.waiting.push_back(ticket);
//!         out.cast(Level::Total, add.to_le_bytes().to_vec());
//!     }
//!     fn message(&mut self, from: Endpoint, _: Option<Level>, data: Bytes, out: &mut Outbox<u64>) {
//!         let Ok(add) = <[u8; 8]>::try_from(&data[..]) else { return };
//!         self.total += u64::from_le_bytes(add);
//!         if from == out.me() {
//!             if let Some(t) = self.waiting.pop_front() {
//!                 out.done(t, self.total);
//!             }
//!         }
//!     }
//!     fn view(&mut self, _: &ViewChange, _: &mut Outbox<u64>) {}
//!     fn snapshot(&self) -> Bytes {
//!         Bytes::copy_from_slice(&self.total.to_le_bytes())
//!     }
//!     fn restore(&mut self, state: Bytes, _: &mut Outbox<u64>) {
//!         self.total = state[..].try_into().map_or(0, u64::from_le_bytes);
//!     }
//! }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use horus_core::sim::{AppCx, Application};
use horus_core::{Endpoint, Level, Time, View};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::group::{Event, Group, GroupHandle, ViewChange};

// ANCHOR: replica
/// An application as a deterministic state machine over a group's events.
///
/// Every method gets an [`Outbox`] for what it wants done. Methods are called one at a time,
/// in the order the events happened at this member: a view's messages come between its
/// [`view`](Self::view) and the next one, and a joiner's [`restore`](Self::restore) comes
/// after its first view and before any message of it.
pub trait Replica: Send + 'static {
    /// What a local user asks.
    type Request: Send + 'static;
    /// What the user is answered.
    type Response: Send + 'static;

    /// A local user's request; answer it with [`Outbox::done`] under `ticket`, now or later
    /// (a request is usually answered once what it cast is delivered).
    fn request(&mut self, request: Self::Request, ticket: Ticket, out: &mut Outbox<Self::Response>);

    /// A message: a cast at `level` (`Some`) or a send to this member (`None`).
    fn message(
        &mut self,
        from: Endpoint,
        level: Option<Level>,
        data: Bytes,
        out: &mut Outbox<Self::Response>,
    );

    /// A new view (also in `out.view()`); the messages that follow belong to it.
    fn view(&mut self, change: &ViewChange, out: &mut Outbox<Self::Response>);

    /// A view change is under way: what is cast from now on goes out in the next view (and
    /// what was cast just before may too: a cast goes out in the view it is handed down in,
    /// the current one or a later one).
    fn block(&mut self, _out: &mut Outbox<Self::Response>) {}

    /// State transfer: the state to give members joining the view just installed.
    fn snapshot(&self) -> Bytes;

    /// State transfer: the state given to this member as it joined (or, after a merge of
    /// partitions, the state of the side it merged into).
    fn restore(&mut self, state: Bytes, out: &mut Outbox<Self::Response>);
}
// ANCHOR_END: replica

/// Names a request, so that its response finds the user who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a [`Replica`] wants done: casts and sends, in order, and responses to requests.
#[derive(Debug)]
pub struct Outbox<R> {
    me: Endpoint,
    view: Arc<View>,
    offered: Arc<[Level]>,
    actions: Vec<Action>,
    done: Vec<(Ticket, R)>,
}

#[derive(Debug)]
enum Action {
    Cast(Level, Bytes),
    Send(Endpoint, Bytes),
}

impl<R> Outbox<R> {
    fn new(me: Endpoint, view: Arc<View>, offered: Arc<[Level]>) -> Self {
        Outbox { me, view, offered, actions: Vec::new(), done: Vec::new() }
    }

    /// Whether the stack offers `level`: a cast at a level it does not offer is refused (and
    /// logged), so a replica that would wait for one to come back answers at once instead.
    pub fn offers(&self, level: Level) -> bool {
        self.offered.contains(&level)
    }

    /// This member.
    pub fn me(&self) -> Endpoint {
        self.me
    }

    /// The view this member is in, as far as the replica has been told (before its first
    /// view event, the group's view at the time).
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// Casts `data` to every member of the view, this one included, at `level`.
    pub fn cast(&mut self, level: Level, data: impl Into<Bytes>) {
        self.actions.push(Action::Cast(level, data.into()));
    }

    /// Sends `data` to the member `to` (dropped if `to` is not in the view it goes out in).
    pub fn send(&mut self, to: Endpoint, data: impl Into<Bytes>) {
        self.actions.push(Action::Send(to, data.into()));
    }

    /// Answers the request `ticket` with `response`.
    pub fn done(&mut self, ticket: Ticket, response: R) {
        self.done.push((ticket, response));
    }
}

/// A read of a replica, run by its task between two events.
type Read<R> = Box<dyn FnOnce(&R) + Send>;

/// A command to the task that runs a replica.
enum Command<R: Replica> {
    Request(R::Request, oneshot::Sender<R::Response>),
    Inspect(Read<R>),
}

/// A [`Replica`] running on a [`Group`]: one task owns both, feeds the replica the group's
/// events and the users' requests, and carries out what it asks. Cheap to clone; every clone
/// talks to the same replica.
///
/// Dropping every clone (and every clone of [`group`](Self::group)) stops the member at once,
/// without leaving: to the others it has crashed. Leave first (`group().leave()`) to go
/// cleanly.
pub struct Replicated<R: Replica> {
    commands: mpsc::UnboundedSender<Command<R>>,
    group: GroupHandle,
}

impl<R: Replica> Clone for Replicated<R> {
    fn clone(&self) -> Self {
        Replicated { commands: self.commands.clone(), group: self.group.clone() }
    }
}

impl<R: Replica> fmt::Debug for Replicated<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicated").field("member", &self.group.endpoint()).finish()
    }
}

impl<R: Replica> Replicated<R> {
    /// Runs `replica` on `group`, in a task of its own (on the current tokio runtime). The
    /// task ends when the member exits; requests then fail with [`Error::Exited`].
    pub fn start(group: Group, replica: R) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let handle = group.handle();
        tokio::spawn(run(group, replica, rx));
        Replicated { commands, group: handle }
    }

    /// Asks the replica, and waits for its answer.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member left or was excluded before the request was answered.
    pub async fn request(&self, request: R::Request) -> Result<R::Response, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Request(request, tx)).map_err(|_| Error::Exited)?;
        rx.await.map_err(|_| Error::Exited)
    }

    /// Reads the replica's state, between two events: what `read` returns of it. A read waits
    /// until the replica has its first view and, for a member that joined a running group
    /// with state transfer, the state it was given: it never sees the empty replica a joiner
    /// starts with.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&R) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let read = Box::new(move |r: &R| {
            let _ = tx.send(read(r));
        });
        self.commands.send(Command::Inspect(read)).map_err(|_| Error::Exited)?;
        rx.await.map_err(|_| Error::Exited)
    }

    /// The group this replica runs on: its view, counters, fault switch, and `leave`.
    pub fn group(&self) -> &GroupHandle {
        &self.group
    }
}

/// The replica's task: events and requests in, casts, sends and answers out. What the replica
/// casts goes to a second task, so that a cast waiting on back-pressure or a view change
/// never stops this one from reading events.
async fn run<R: Replica>(
    mut group: Group,
    mut replica: R,
    mut commands: mpsc::UnboundedReceiver<Command<R>>,
) {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Action>();
    let sender = group.handle();
    tokio::spawn(async move {
        while let Some(action) = out_rx.recv().await {
            let sent = match action {
                Action::Cast(level, data) => sender.cast(data, level).await,
                Action::Send(to, data) => sender.send(to, data).await,
            };
            match sent {
                Ok(()) => {}
                Err(Error::Exited) => break,
                // The destination left the view: as a send held through a view change.
                Err(e @ Error::NotMember { .. }) => tracing::debug!("replica send dropped: {e}"),
                Err(e) => tracing::error!("a replica's cast or send was refused: {e}"),
            }
        }
    });
    let me = group.endpoint();
    let offered: Arc<[Level]> = group.levels().into();
    let mut previous: Option<Arc<View>> = None;
    let mut pending: HashMap<Ticket, oneshot::Sender<R::Response>> = HashMap::new();
    let mut next_ticket = 0u64;
    // Reads wait until the replica has its first view and, joining a running group with
    // state transfer, its state.
    let mut ready = false;
    let mut reads: Vec<Read<R>> = Vec::new();
    loop {
        let view = previous.clone().unwrap_or_else(|| group.view());
        let mut out = Outbox::new(me, view, offered.clone());
        tokio::select! {
            event = group.next_event() => match event {
                None | Some(Event::Exit) => break,
                Some(Event::Message { from, level, data }) => {
                    replica.message(from, level, data, &mut out)
                }
                Some(Event::View(change)) => {
                    if previous.is_none() {
                        // A founder's first view is itself alone; a joiner's first view has
                        // others, whose state follows if the group transfers it.
                        ready = !group.state_transfer() || change.view.len() == 1;
                    }
                    out.view = change.view.clone();
                    previous = Some(change.view.clone());
                    replica.view(&change, &mut out);
                }
                Some(Event::Block) => replica.block(&mut out),
                Some(Event::Snapshot(request)) => request.reply(replica.snapshot()),
                Some(Event::State(state)) => {
                    replica.restore(state, &mut out);
                    ready = true;
                }
                // A replica answers no group call: the caller's timeout says so.
                Some(Event::Call(_)) => {}
            },
            command = commands.recv() => match command {
                // Every handle is gone: the member stops, as a Group whose handles are all
                // dropped does (to the others it has crashed).
                None => break,
                Some(Command::Request(request, answer)) => {
                    next_ticket += 1;
                    let ticket = Ticket(next_ticket);
                    pending.insert(ticket, answer);
                    replica.request(request, ticket, &mut out);
                }
                Some(Command::Inspect(read)) if ready => read(&replica),
                Some(Command::Inspect(read)) => reads.push(read),
            },
        }
        if ready {
            for read in reads.drain(..) {
                read(&replica);
            }
        }
        for action in out.actions {
            if out_tx.send(action).is_err() {
                break;
            }
        }
        for (ticket, response) in out.done {
            if let Some(answer) = pending.remove(&ticket) {
                let _ = answer.send(response);
            }
        }
    }
    // Dropping what is pending answers it with `Error::Exited`.
}

/// What an oracle is told of a [`SimReplica`]: requests made and answered, and the replica
/// after each event, with the simulated time.
pub trait Observer<R: Replica> {
    /// `me` asked `request`, under `ticket`.
    fn requested(&mut self, _now: Time, _me: Endpoint, _ticket: Ticket, _request: &R::Request) {}
    /// `me`'s request `ticket` was answered.
    fn answered(&mut self, _now: Time, _me: Endpoint, _ticket: Ticket, _response: &R::Response) {}
    /// `me`'s replica after an event (a message, a view, a restore, a request), in `view`.
    fn after(&mut self, _now: Time, _me: Endpoint, _view: &View, _replica: &R) {}
    /// `me` crashed (`crashed`) or exited; `replica` is as it was.
    fn stopped(&mut self, _now: Time, _me: Endpoint, _crashed: bool, _replica: &R) {}
}

/// Draws the requests a simulated user makes, at the workload's times: `None` for no request
/// this time.
pub type Workload<R> =
    Box<dyn FnMut(&mut horus_core::Rng, &R, Endpoint) -> Option<<R as Replica>::Request>>;

/// A [`Replica`] as an application of the simulator
/// ([`simulate_apps`](horus_core::sim::simulate_apps)): its users' requests come from a
/// [`Workload`], and an [`Observer`] is told everything, for an oracle to check.
pub struct SimReplica<R: Replica> {
    replica: R,
    me: Endpoint,
    view: Option<Arc<View>>,
    next_ticket: u64,
    workload: Workload<R>,
    observer: Box<dyn Observer<R>>,
}

impl<R: Replica> fmt::Debug for SimReplica<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimReplica").field("me", &self.me).finish()
    }
}

impl<R: Replica> SimReplica<R> {
    /// `replica` as member `me`, with its users' `workload`, told to `observer`.
    pub fn new(
        me: Endpoint,
        replica: R,
        workload: Workload<R>,
        observer: impl Observer<R> + 'static,
    ) -> Self {
        SimReplica {
            replica,
            me,
            view: None,
            next_ticket: 0,
            workload,
            observer: Box::new(observer),
        }
    }

    /// Calls the replica with an outbox, then carries out what it asked.
    fn step(&mut self, cx: &mut AppCx<'_>, f: impl FnOnce(&mut R, &mut Outbox<R::Response>)) {
        let mut out = Outbox::new(self.me, cx.view.clone(), cx.offered.into());
        f(&mut self.replica, &mut out);
        for action in out.actions {
            match action {
                Action::Cast(level, data) => cx.cast(level, data),
                Action::Send(to, data) => cx.send(to, data),
            }
        }
        for (ticket, response) in &out.done {
            self.observer.answered(cx.now, self.me, *ticket, response);
        }
        self.observer.after(cx.now, self.me, cx.view, &self.replica);
    }
}

impl<R: Replica> Application for SimReplica<R> {
    fn act(&mut self, cx: &mut AppCx<'_>) {
        let Some(request) = (self.workload)(cx.rng, &self.replica, self.me) else { return };
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        self.observer.requested(cx.now, self.me, ticket, &request);
        self.step(cx, |r, out| r.request(request, ticket, out));
    }

    fn deliver(&mut self, from: Endpoint, level: Option<Level>, data: Bytes, cx: &mut AppCx<'_>) {
        self.step(cx, |r, out| r.message(from, level, data, out));
    }

    fn view(&mut self, _previous: Option<&View>, cx: &mut AppCx<'_>) {
        let change = ViewChange::new(self.view.as_deref(), cx.view.clone(), self.me);
        self.view = Some(cx.view.clone());
        self.step(cx, |r, out| r.view(&change, out));
    }

    fn block(&mut self, cx: &mut AppCx<'_>) {
        self.step(cx, |r, out| r.block(out));
    }

    fn snapshot(&mut self, _cx: &mut AppCx<'_>) -> Bytes {
        self.replica.snapshot()
    }

    fn install(&mut self, state: Bytes, cx: &mut AppCx<'_>) {
        self.step(cx, |r, out| r.restore(state, out));
    }

    fn stop(&mut self, now: Time, crashed: bool) {
        self.observer.stopped(now, self.me, crashed, &self.replica);
    }
}
