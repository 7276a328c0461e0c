//! Group RPC, after Coyote's and JGroups' group calls: a request cast to the group, answered
//! by each member's application point to point, and a rule for how many answers the caller
//! waits for.
//!
//! A call is a cast at the `fifo` level whose header says "call" ([`wire`](crate::wire));
//! every member, the caller included, delivers it as [`Event::Call`](crate::Event::Call), and
//! its application answers with [`Call::reply`]. A reply is a send to the caller naming the
//! call by its number. The caller's Group keeps a [`PendingCall`] per call, adds the replies
//! as they come and re-evaluates the rule at each view change:
//! - [`Replies::First`]: one reply;
//! - [`Replies::Majority`]: replies from a majority of the current view's members;
//! - [`Replies::All`]: a reply from every member of the view the call was cast in that is still
//!   in the current view (a member that fails or leaves is not waited for).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use horus_core::{Endpoint, View};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::group::Command;

/// How many replies a [`call`](crate::GroupHandle::call) waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Replies {
    /// The first reply, from any member.
    First,
    /// Replies from a majority of the members of the current view.
    Majority,
    /// A reply from every member of the view at call time that is still in the view.
    All,
}

/// A call's identity: the caller and the number of the cast that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId {
    /// The member that made the call.
    pub caller: Endpoint,
    /// The caller's cast counter when it cast the call.
    pub seq: u64,
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.caller, self.seq)
    }
}

/// A call delivered to this member: answer it with [`Call::reply`].
///
/// Dropping it unanswered is allowed: the caller then counts no reply from this member (and
/// times out if it waited for one).
#[derive(Debug)]
pub struct Call {
    /// The member that made the call (this one too: a member delivers its own calls).
    pub from: Endpoint,
    /// The call's identity, for [`GroupHandle::reply`](crate::GroupHandle::reply).
    pub id: CallId,
    /// What the caller asks.
    pub request: Bytes,
    pub(crate) commands: tokio::sync::mpsc::Sender<Command>,
}

impl Call {
    /// Sends `response` to the caller, waiting while the Group's queue is full.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member is no longer in the group. A caller that has left the
    /// view by the time the reply goes out is not an error: the reply is dropped and counted
    /// (`replies_dropped`).
    pub async fn reply(self, response: impl Into<Bytes>) -> Result<(), Error> {
        let cmd = Command::Reply { to: self.id.caller, call: self.id.seq, data: response.into() };
        self.commands.send(cmd).await.map_err(|_| Error::Exited)
    }
}

/// What the caller waits on, shared by the caller and the Group's task.
#[derive(Debug)]
pub(crate) struct PendingCall {
    replies: Replies,
    /// The members of the view the call was cast in (for `All`); empty until cast.
    awaited: Vec<Endpoint>,
    got: Vec<(Endpoint, Bytes)>,
    /// How many replies complete the call, as of the last view seen.
    wanted: usize,
    done: Option<oneshot::Sender<()>>,
}

/// A pending call, as held by the caller and the task.
pub(crate) type Shared = Arc<Mutex<PendingCall>>;

impl PendingCall {
    /// A call waiting for `replies`, in `view` (the caller's estimate until it is cast).
    pub(crate) fn new(replies: Replies, view: &View, done: oneshot::Sender<()>) -> Self {
        let mut p = PendingCall {
            replies,
            awaited: Vec::new(),
            got: Vec::new(),
            wanted: 0,
            done: Some(done),
        };
        p.wanted = p.wanted_in(view);
        p
    }

    /// The call is cast in `view`: for `All`, its members are the ones waited for.
    pub(crate) fn cast_in(&mut self, view: &View) {
        self.awaited = view.members.clone();
        self.on_view(view);
    }

    /// A reply from `from`; the first from each member counts. Returns whether the call is
    /// complete.
    pub(crate) fn on_reply(&mut self, from: Endpoint, data: Bytes, view: &View) -> bool {
        if !self.got.iter().any(|(e, _)| *e == from) {
            self.got.push((from, data));
        }
        self.settle(view)
    }

    /// A new view: members that left are no longer waited for. Returns whether the call is
    /// complete.
    pub(crate) fn on_view(&mut self, view: &View) -> bool {
        self.wanted = self.wanted_in(view);
        self.settle(view)
    }

    /// The member exited: the caller's wait ends with no result.
    pub(crate) fn abandon(&mut self) {
        self.done = None;
    }

    /// Replies so far, and how many are wanted.
    pub(crate) fn progress(&self) -> (usize, usize) {
        (self.got.len(), self.wanted)
    }

    /// The replies, taken.
    pub(crate) fn take_replies(&mut self) -> Vec<(Endpoint, Bytes)> {
        std::mem::take(&mut self.got)
    }

    fn wanted_in(&self, view: &View) -> usize {
        match self.replies {
            Replies::First => 1,
            Replies::Majority => view.len() / 2 + 1,
            Replies::All => self.awaited.iter().filter(|e| view.contains(**e)).count(),
        }
    }

    fn counted(&self, view: &View) -> usize {
        match self.replies {
            Replies::First => self.got.len(),
            Replies::Majority => self.got.iter().filter(|(e, _)| view.contains(*e)).count(),
            Replies::All => self
                .got
                .iter()
                .filter(|(e, _)| view.contains(*e) && self.awaited.contains(e))
                .count(),
        }
    }

    /// Completes the call if enough replies are in.
    fn settle(&mut self, view: &View) -> bool {
        let complete = self.counted(view) >= self.wanted;
        if complete {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
        complete
    }
}

/// Locks a pending call. A panic while holding the lock leaves whole fields behind, so a
/// poisoned lock is still a valid call.
pub(crate) fn lock(call: &Shared) -> MutexGuard<'_, PendingCall> {
    call.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u64) -> Endpoint {
        Endpoint::new(n, 0)
    }

    fn view(members: &[u64]) -> View {
        View::initial(members.iter().map(|n| e(*n)).collect())
    }

    fn pending(replies: Replies, v: &View) -> (PendingCall, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut p = PendingCall::new(replies, v, tx);
        p.cast_in(v);
        (p, rx)
    }

    #[test]
    fn first_completes_on_one_reply() {
        let v = view(&[1, 2, 3]);
        let (mut p, mut rx) = pending(Replies::First, &v);
        assert!(rx.try_recv().is_err());
        assert!(p.on_reply(e(2), Bytes::from_static(b"x"), &v));
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn majority_counts_distinct_members_of_the_current_view() {
        let v = view(&[1, 2, 3, 4, 5]);
        let (mut p, _rx) = pending(Replies::Majority, &v);
        assert_eq!(p.progress(), (0, 3));
        assert!(!p.on_reply(e(1), Bytes::new(), &v));
        assert!(!p.on_reply(e(1), Bytes::new(), &v), "a second reply of one member counts once");
        assert!(!p.on_reply(e(2), Bytes::new(), &v));
        // Two members fail: a majority of three is two, which are in.
        assert!(p.on_view(&view(&[1, 2, 3])));
    }

    #[test]
    fn all_does_not_wait_for_members_that_left() {
        let v = view(&[1, 2, 3]);
        let (mut p, mut rx) = pending(Replies::All, &v);
        assert!(!p.on_reply(e(1), Bytes::new(), &v));
        assert!(!p.on_reply(e(2), Bytes::new(), &v));
        assert_eq!(p.progress(), (2, 3));
        assert!(p.on_view(&view(&[1, 2])));
        assert!(rx.try_recv().is_ok());
        assert_eq!(p.take_replies().len(), 2);
    }

    #[test]
    fn all_ignores_joiners_of_later_views() {
        let v = view(&[1, 2]);
        let (mut p, _rx) = pending(Replies::All, &v);
        let later = view(&[1, 2, 9]);
        assert!(!p.on_view(&later));
        assert!(!p.on_reply(e(9), Bytes::new(), &later));
        assert!(!p.on_reply(e(1), Bytes::new(), &later));
        assert!(p.on_reply(e(2), Bytes::new(), &later));
    }

    #[test]
    fn abandoned_call_wakes_the_caller_with_no_result() {
        let v = view(&[1]);
        let (mut p, mut rx) = pending(Replies::All, &v);
        p.abandon();
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
    }
}
