//! [`Group`]: a member of a process group, as the application holds it; [`GroupHandle`], the
//! part of it other tasks can hold; [`Event`], what the application is told.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use horus_core::{Endpoint, Level, View, ViewId};
use horus_runtime::{FaultSwitch, MemberControl, MemberCounters};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::error::Error;
use crate::rpc::{self, Call, CallId, PendingCall, Replies};

/// What happened in the group, for the application, in the order it happened at this member.
///
/// Every member that moves from one view to the next is told the same messages in between
/// (virtual synchrony): deliveries between two [`Event::View`]s are those of the first view.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A message: a cast to the group at `level` (`Some`), or a send to this member (`None`).
    Message { from: Endpoint, level: Option<Level>, data: Bytes },
    /// A new view is installed; the messages that follow belong to it.
    View(ViewChange),
    /// A view change is under way. Informational: the Group has already answered it, and
    /// holds the casts, sends and calls made from now on (they wait, and go out in the next
    /// view; none fails because of the change).
    Block,
    /// State transfer: members are joining; give them the application's state with
    /// [`SnapshotRequest::reply`] before handling the next event.
    Snapshot(SnapshotRequest),
    /// State transfer: this member joined; install this state, given by the members as of
    /// the view it joined in. It comes before any message of that view.
    State(Bytes),
    /// A group call to answer with [`Call::reply`].
    Call(Call),
    /// This member left the group, or was excluded from it: nothing more will come.
    Exit,
}

/// A view, and how it differs from this member's previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewChange {
    /// The view installed.
    pub view: Arc<View>,
    /// Members new to this member: those not in its previous view (for its first view, just
    /// itself).
    pub joined: Vec<Endpoint>,
    /// Members of the previous view that are not in this one.
    pub left: Vec<Endpoint>,
    /// Members of this view that come from the previous view with this member, the
    /// transitional set of extended virtual synchrony (for the first view, every member).
    pub transitional: Vec<Endpoint>,
}

impl ViewChange {
    /// The change from `previous` (none for a first view) to `view`, as `me` sees it.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use horus::{Endpoint, View, ViewChange};
    ///
    /// let (a, b, c) = (Endpoint::new(1, 0), Endpoint::new(2, 0), Endpoint::new(3, 0));
    /// let old = View::initial(vec![a, b]);
    /// let new = Arc::new(View::initial(vec![a, c]));
    /// let change = ViewChange::new(Some(&old), new, a);
    /// assert_eq!((change.joined, change.left, change.transitional), (vec![c], vec![b], vec![a]));
    /// ```
    pub fn new(previous: Option<&View>, view: Arc<View>, me: Endpoint) -> Self {
        let (joined, left, transitional) = match previous {
            None => (vec![me], Vec::new(), view.members.clone()),
            Some(p) => (
                view.members.iter().copied().filter(|e| !p.contains(*e)).collect(),
                p.members.iter().copied().filter(|e| !view.contains(*e)).collect(),
                view.members.iter().copied().filter(|e| p.contains(*e)).collect(),
            ),
        };
        ViewChange { view, joined, left, transitional }
    }
}

/// A request for the application's state, for the members joining in [`view`](Self::view).
///
/// Answer it with [`reply`](Self::reply) before handling the next event, so the state given is
/// the state at the view's boundary: every message of the previous view applied, none of the
/// new one. Until it is answered the Group delivers nothing more. Dropped without a reply, it
/// gives the joiners an empty state, and a warning is logged.
#[derive(Debug)]
pub struct SnapshotRequest {
    pub(crate) view: ViewId,
    pub(crate) reply: Option<oneshot::Sender<Bytes>>,
}

impl SnapshotRequest {
    /// The view whose joiners are given the state.
    pub fn view(&self) -> ViewId {
        self.view
    }

    /// Gives `state` to the joiners.
    pub fn reply(mut self, state: impl Into<Bytes>) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(state.into());
        }
    }
}

/// A request from the handles to the Group's task.
#[derive(Debug)]
pub(crate) enum Command {
    Cast { data: Bytes, level: Level },
    Call { request: Bytes, call: rpc::Shared },
    Send { to: Endpoint, data: Bytes },
    Reply { to: Endpoint, call: u64, data: Bytes },
    Leave,
}

/// What the Group's task publishes to the handles.
#[derive(Clone, Debug, Default)]
pub(crate) struct Status {
    /// The last view installed; `None` until the first.
    pub view: Option<Arc<View>>,
    /// The member exited or was stopped.
    pub exited: bool,
}

macro_rules! group_counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// What the Group counted (the layers and the runtime count the rest: see
        /// [`Counters`]).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct GroupCounters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// The Group's counters, shared by its task, which adds, and its handles, which read.
        #[derive(Debug, Default)]
        pub(crate) struct Stats {
            $(pub $name: AtomicU64,)*
        }

        impl Stats {
            pub(crate) fn snapshot(&self) -> GroupCounters {
                GroupCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

group_counters! {
    /// Casts handed to the stack, calls included.
    casts,
    /// Casts delivered, calls included.
    delivered,
    /// Sends handed to the stack, replies included.
    sends,
    /// Sends delivered to the application.
    sends_delivered,
    /// Calls this member made.
    calls,
    /// Replies to this member's calls that came after the call was over.
    replies_late,
    /// Sends and replies dropped because their destination had left the view by the time
    /// they went out (they were held during a view change).
    sends_dropped,
    /// Messages whose Group header did not decode, or of a kind that does not belong there.
    bad_header,
    /// Messages from a rank outside the view.
    unknown_sender,
    /// Snapshot requests dropped without a reply (an empty state was given).
    snapshots_unanswered,
}

impl Stats {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A member's counters: the Group's, the runtime's and the stack's.
#[derive(Clone, Debug)]
pub struct Counters {
    /// What the Group counted.
    pub group: GroupCounters,
    /// What the runtime and the layers counted.
    pub member: MemberCounters,
}

impl Counters {
    /// A counter of the stack by layer and name (e.g. `("mnak", "retrans")`); 0 if no layer
    /// counts it.
    pub fn node(&self, layer: &str, counter: &str) -> u64 {
        self.member.node(layer, counter)
    }
}

/// What the handles of one member share; dropping the last stops the member.
#[derive(Debug)]
pub(crate) struct Inner {
    pub endpoint: Endpoint,
    pub group: String,
    pub spec: String,
    pub levels: Vec<Level>,
    pub state_transfer: bool,
    pub leave_timeout: Duration,
    pub control: MemberControl,
    pub commands: mpsc::Sender<Command>,
    pub stats: Arc<Stats>,
    pub stop: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No handle is left to cast or read: the member stops, as a crash would.
        self.stop.notify_one();
    }
}

/// Everything about a member of a group but its events: cast, send, call, leave, read the
/// view and the counters. Cheap to clone, for tasks that cast while another reads the events
/// ([`Group::handle`]).
///
/// The member runs while its [`Group`] or any handle is held; dropping all of them stops it
/// at once, as a crash would (to the others, it has failed). [`leave`](Self::leave) first
/// for a clean exit.
///
/// # Flow control and back-pressure
/// Casts, sends, calls and replies go to the Group's task through a bounded queue, and from
/// it to the runtime's driver through another ([`TransportConfig::command_capacity`]): when
/// they are full, [`cast`](Self::cast) waits. During a view change the Group holds them all
/// (see [`Event::Block`]), so a `cast` may wait for the change to end. Below, the `flow` layer
/// keeps each sender within a window of unacknowledged bytes per receiver and holds what does
/// not fit inside the member, in order, until the receivers credit it; that queue is not
/// bounded by count. Memory stays bounded only if the application waits for its casts to be
/// delivered (or calls) now and then, as a sender that outruns its slowest receiver for long
/// would anyway.
///
/// [`TransportConfig::command_capacity`]: horus_runtime::TransportConfig::command_capacity
#[derive(Clone, Debug)]
pub struct GroupHandle {
    pub(crate) inner: Arc<Inner>,
    pub(crate) status: watch::Receiver<Status>,
}

impl GroupHandle {
    /// This member's endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.endpoint
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.group
    }

    /// The stack this member runs, as a spec (presets expanded).
    pub fn stack(&self) -> &str {
        &self.inner.spec
    }

    /// The service levels the stack offers.
    pub fn levels(&self) -> &[Level] {
        &self.inner.levels
    }

    /// The last view this member installed (its [`Event::View`] may still be on its way to
    /// [`Group::next_event`]).
    pub fn view(&self) -> Arc<View> {
        let status = self.status.borrow();
        status.view.clone().unwrap_or_else(|| Arc::new(View::initial(vec![self.inner.endpoint])))
    }

    /// Whether the group was built with state transfer
    /// ([`GroupBuilder::state_transfer`](crate::GroupBuilder::state_transfer)): a member that
    /// joins a running group is then given the state ([`Event::State`]) after its first view.
    pub fn state_transfer(&self) -> bool {
        self.inner.state_transfer
    }

    /// Whether this member has exited the group (or was stopped).
    pub fn has_exited(&self) -> bool {
        self.status.borrow().exited
    }

    /// Casts `data` to every member of the view, this one included, at `level`. Returns once
    /// the cast is queued; it is delivered to every member that stays in the view, as an
    /// [`Event::Message`] with `level: Some(level)`. Waits while the queues are full or a
    /// view change is under way (see the [type doc](Self)).
    ///
    /// # Errors
    /// [`Error::LevelNotOffered`] if the stack does not offer `level`; [`Error::Exited`] if the
    /// member is no longer in the group. Nothing was sent.
    pub async fn cast(&self, data: impl Into<Bytes>, level: Level) -> Result<(), Error> {
        self.check_level(level)?;
        self.command(Command::Cast { data: data.into(), level }).await
    }

    /// Sends `data` to the member `to`, which delivers it as an [`Event::Message`] with
    /// `level: None`. Reliable and FIFO per pair of members, within a view.
    ///
    /// A send held during a view change is dropped (and counted, `sends_dropped`) if `to` is
    /// not in the next view.
    ///
    /// # Errors
    /// [`Error::NotMember`] if `to` is not in the current view; [`Error::Exited`] if this
    /// member is no longer in the group. Nothing was sent.
    pub async fn send(&self, to: Endpoint, data: impl Into<Bytes>) -> Result<(), Error> {
        self.check_member(to)?;
        self.command(Command::Send { to, data: data.into() }).await
    }

    /// Group RPC: casts `request` (at the `fifo` level) to every member, this one included,
    /// whose application answers it ([`Event::Call`], [`Call::reply`]); returns the replies
    /// once `replies` says enough are in, in the order they came. See [`Replies`].
    ///
    /// This member answers its own calls too, so some task must be reading its events.
    ///
    /// # Errors
    /// [`Error::CallTimedOut`] after `timeout`, with the replies that did arrive;
    /// [`Error::Exited`] if the member is no longer in the group.
    pub async fn call(
        &self,
        request: impl Into<Bytes>,
        replies: Replies,
        timeout: Duration,
    ) -> Result<Vec<(Endpoint, Bytes)>, Error> {
        let (done, wait) = oneshot::channel();
        let call = Arc::new(std::sync::Mutex::new(PendingCall::new(replies, &self.view(), done)));
        Stats::add(&self.inner.stats.calls);
        let cmd = Command::Call { request: request.into(), call: call.clone() };
        let outcome = tokio::time::timeout(timeout, async {
            self.command(cmd).await?;
            wait.await.map_err(|_| Error::Exited)
        })
        .await;
        let mut call = rpc::lock(&call);
        match outcome {
            Ok(Ok(())) => Ok(call.take_replies()),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let (got, wanted) = call.progress();
                Err(Error::CallTimedOut {
                    waited: timeout,
                    got,
                    wanted,
                    replies: call.take_replies(),
                })
            }
        }
    }

    /// Answers the call `call` with `response` (the same as [`Call::reply`]).
    ///
    /// # Errors
    /// [`Error::NotMember`] if the caller is no longer in the view; [`Error::Exited`] if this
    /// member is no longer in the group.
    pub async fn reply(&self, call: CallId, response: impl Into<Bytes>) -> Result<(), Error> {
        self.check_member(call.caller)?;
        self.command(Command::Reply { to: call.caller, call: call.seq, data: response.into() })
            .await
    }

    /// Leaves the group: the member takes part in the view change that removes it, then
    /// exits. Returns once it has (the event stream ends with [`Event::Exit`]); at once if it
    /// had already exited.
    ///
    /// # Errors
    /// [`Error::LeaveTimedOut`] if it has not exited within the builder's leave timeout; the
    /// member is then stopped, as if crashed.
    pub async fn leave(&self) -> Result<(), Error> {
        if self.has_exited() {
            return Ok(());
        }
        let mut status = self.status.clone();
        let waited = self.inner.leave_timeout;
        let exit = async {
            // A member that exits meanwhile closes the queue: that is the exit we wait for.
            let _ = self.inner.commands.send(Command::Leave).await;
            let _ = status.wait_for(|s| s.exited).await;
        };
        // The request may wait behind a view change too: the timeout covers it.
        if tokio::time::timeout(waited, exit).await.is_ok() {
            return Ok(());
        }
        self.inner.stop.notify_one();
        Err(Error::LeaveTimedOut { waited })
    }

    /// The Group's, the runtime's and the stack's counters.
    ///
    /// # Errors
    /// [`Error::Exited`] once the member has stopped.
    pub async fn counters(&self) -> Result<Counters, Error> {
        let member = self.inner.control.counters().await.map_err(|e| match e {
            horus_runtime::RuntimeError::Stopped => Error::Exited,
            e => Error::Runtime(e),
        })?;
        Ok(Counters { group: self.inner.stats.snapshot(), member })
    }

    /// The runtime's fault-injection switch of this member: make it lose datagrams, or cut it
    /// off from chosen members, on a real network (for tests and drills).
    pub fn faults(&self) -> &FaultSwitch {
        self.inner.control.faults()
    }

    /// The runtime's control of this member: its addresses, directory and socket buffers.
    pub fn control(&self) -> &MemberControl {
        &self.inner.control
    }

    async fn command(&self, cmd: Command) -> Result<(), Error> {
        if self.has_exited() {
            return Err(Error::Exited);
        }
        self.inner.commands.send(cmd).await.map_err(|_| Error::Exited)
    }

    fn check_level(&self, level: Level) -> Result<(), Error> {
        let offered = &self.inner.levels;
        // A best-effort stack offers no level; its casts go as `fifo`, unordered.
        if offered.contains(&level) || (offered.is_empty() && level == Level::Fifo) {
            return Ok(());
        }
        let names: Vec<&str> = offered.iter().map(|l| l.as_str()).collect();
        Err(Error::LevelNotOffered {
            level,
            stack: self.inner.spec.clone(),
            offered: if names.is_empty() { "best effort only".into() } else { names.join(", ") },
        })
    }

    fn check_member(&self, to: Endpoint) -> Result<(), Error> {
        let view = self.view();
        if view.contains(to) {
            return Ok(());
        }
        let members: Vec<String> = view.members.iter().map(|e| e.to_string()).collect();
        Err(Error::NotMember { endpoint: to, members: members.join(", ") })
    }
}

/// A member of a process group: the events of the group, and (by deref to [`GroupHandle`])
/// everything else. Made by [`Group::builder`].
///
/// Read the events: the Group holds at most the builder's event capacity of them for the
/// application, then stops taking the member's events (they wait inside the member), and a
/// view change cannot finish at a member whose events are not read past its
/// [`Event::Block`].
///
/// # Examples
/// ```no_run
/// use std::time::Duration;
/// use horus::{Event, Group, Level, Replies};
///
/// # async fn run() -> Result<(), horus::Error> {
/// let mut group = Group::builder("inventory").join().await?;
/// let handle = group.handle();
/// // One task answers calls; the other asks.
/// tokio::spawn(async move {
///     while let Some(ev) = group.next_event().await {
///         if let Event::Call(call) = ev {
///             let _ = call.reply("42").await;
///         }
///     }
/// });
/// let answers = handle.call("stock?", Replies::Majority, Duration::from_secs(2)).await?;
/// println!("{} members answered", answers.len());
/// handle.cast("restock", Level::Total).await?;
/// handle.leave().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Group {
    pub(crate) handle: GroupHandle,
    pub(crate) events: mpsc::Receiver<Event>,
    /// Answers `horus probe` while the group is held.
    pub(crate) probe: Option<crate::probe::Responder>,
}

impl std::ops::Deref for Group {
    type Target = GroupHandle;
    fn deref(&self) -> &GroupHandle {
        &self.handle
    }
}

impl Group {
    /// The unicast address this member answers `horus probe` at (`horus probe --to ADDR`), if
    /// it answers probes.
    pub fn probe_addr(&self) -> Option<std::net::SocketAddr> {
        self.probe.as_ref().map(|p| p.addr())
    }

    /// A builder for a member of the group `name`: see [`GroupBuilder`](crate::GroupBuilder).
    pub fn builder(name: impl Into<String>) -> crate::GroupBuilder {
        crate::GroupBuilder::new(name)
    }

    /// A handle for other tasks: cast, send, call, leave while this one reads events.
    pub fn handle(&self) -> GroupHandle {
        self.handle.clone()
    }

    /// The next event; `None` once the member has stopped and every event was read (after
    /// [`Event::Exit`], or once it was stopped).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is ready now, without waiting: for taking the rest of a burst
    /// after [`next_event`](Self::next_event) returned its first. `None` when no event is
    /// ready (or the member has stopped and every event was read).
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u64) -> Endpoint {
        Endpoint::new(n, 0)
    }

    #[test]
    fn first_view_joins_only_me_and_everyone_is_transitional() {
        let v = Arc::new(View::initial(vec![e(1), e(2), e(3)]));
        let c = ViewChange::new(None, v.clone(), e(3));
        assert_eq!(c.joined, vec![e(3)]);
        assert!(c.left.is_empty());
        assert_eq!(c.transitional, v.members);
    }

    #[test]
    fn later_view_tells_who_joined_left_and_stayed() {
        let old = View::initial(vec![e(1), e(2), e(3)]);
        let new = Arc::new(View::initial(vec![e(1), e(3), e(4), e(5)]));
        let c = ViewChange::new(Some(&old), new, e(1));
        assert_eq!(c.joined, vec![e(4), e(5)]);
        assert_eq!(c.left, vec![e(2)]);
        assert_eq!(c.transitional, vec![e(1), e(3)]);
    }

    #[test]
    fn unanswered_snapshot_request_closes_its_channel() {
        let (tx, mut rx) = oneshot::channel();
        drop(SnapshotRequest { view: View::initial(vec![e(1)]).id, reply: Some(tx) });
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        let (tx, mut rx) = oneshot::channel();
        SnapshotRequest { view: View::initial(vec![e(1)]).id, reply: Some(tx) }.reply("s");
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"s"));
    }
}
