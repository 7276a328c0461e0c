//! The Group's task: the one place that talks to the member's runtime. It reads the member's
//! up events in order, turns them into [`Event`]s for the application, and hands the
//! application's casts, sends, calls and replies down.
//!
//! # Views and blocks
//! The task tracks the view the application is in from the `Up::View` events, in order, as
//! the simulator does: the member's stack may already run a later view, but a delivery names
//! its sender by rank in the view it was delivered in, which is the last view read.
//!
//! On `Up::Block` the task answers `Down::BlockOk` at once and holds every command (casts,
//! sends, calls, replies, leave) until the next view: having answered, the member may install
//! the next view at any moment, and a cast handed down after that would go out in a view the
//! application has not seen, and a send would name its destination by a rank of the wrong
//! view. Commands are handed down only by this task, in order, so none can slip between a
//! `BlockOk` and the view it lets through. A joiner that pulls the state passes blocks of
//! later views up before the views themselves, so the task counts the blocks answered and
//! lets commands through once as many views have followed.
//!
//! # Back-pressure
//! At most one event waits for room in the application's queue; while it does, the task reads
//! no more up events (they wait in the member), but still hands commands down. While a
//! snapshot request is unanswered it reads no up events either, so that the state given is the
//! state at the view boundary.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use horus_core::history::{Event as HistoryEvent, MsgId};
use horus_core::{Down, Endpoint, Level, Message, Rank, Up, View, ViewId};
use horus_runtime::MemberHandle;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::group::{Command, Event, SnapshotRequest, Stats, Status, ViewChange};
use crate::record::{self, Recorder};
use crate::rpc::{self, Call, CallId};
use crate::wire::Header;

/// The task's state.
#[derive(Debug)]
pub(crate) struct Pump {
    pub member: MemberHandle,
    pub me: Endpoint,
    pub commands: mpsc::Receiver<Command>,
    /// For the calls handed to the application: does not keep the queue open.
    pub replier: mpsc::WeakSender<Command>,
    pub events: mpsc::Sender<Event>,
    pub status: watch::Sender<Status>,
    pub stop: Arc<Notify>,
    pub stats: Arc<Stats>,
    pub recorder: Option<Recorder>,
    /// The view the application is in: the last `Up::View` read.
    pub view: Option<Arc<View>>,
    /// Blocks answered minus views installed since: commands wait while positive.
    pub blocks: u32,
    /// This member's casts so far (the next cast is `casts + 1`).
    pub casts: u64,
    /// This member's calls waiting for replies, by call number.
    pub calls: HashMap<u64, rpc::Shared>,
    /// A snapshot request the application has not answered yet.
    pub snapshot: Option<(ViewId, oneshot::Receiver<Bytes>)>,
    /// An event waiting for room in the application's queue.
    pub pending: Option<Event>,
    /// The application dropped its events: they are dropped too.
    pub app_gone: bool,
    pub exited: bool,
}

/// How the task ended.
enum End {
    /// The member exited the group; the exit was recorded.
    Exited,
    /// Every handle was dropped, or a timeout stopped the member: to the others, a crash.
    Stopped,
}

/// Up events handled in one turn of the pump.
const UP_BATCH: usize = 64;

impl Pump {
    /// Runs the member until it exits or is stopped.
    pub(crate) async fn run(mut self) {
        let end = loop {
            if self.exited && self.pending.is_none() {
                break End::Exited;
            }
            let read_up = self.pending.is_none() && self.snapshot.is_none() && !self.exited;
            let take_commands = self.view.is_some() && self.blocks == 0 && !self.exited;
            let flush = self.recorder.as_ref().and_then(|r| r.flush_due());
            tokio::select! {
                () = self.stop.notified() => break End::Stopped,
                up = self.member.next_event(), if read_up => match up {
                    Some(up) => {
                        self.on_up(up).await;
                        // The rest of a burst in this turn, while the application keeps up.
                        for _ in 1..UP_BATCH {
                            if self.pending.is_some() || self.snapshot.is_some() || self.exited {
                                break;
                            }
                            match self.member.try_next_event() {
                                Some(up) => self.on_up(up).await,
                                None => break,
                            }
                        }
                    }
                    // The driver stopped without an exit: it failed.
                    None => break End::Stopped,
                },
                room = deliver(&self.events, &mut self.pending), if self.pending.is_some() => {
                    if !room {
                        self.on_app_gone();
                    }
                }
                cmd = self.commands.recv(), if take_commands => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => break End::Stopped,
                },
                state = answer(&mut self.snapshot), if self.snapshot.is_some() => {
                    self.on_snapshot_answer(state).await;
                }
                () = flush_at(flush), if flush.is_some() => {
                    if let Some(r) = self.recorder.as_mut() {
                        r.flush();
                    }
                }
            }
        };
        if let End::Stopped = end {
            if !self.exited {
                tracing::debug!(endpoint = %self.me, "member stopped without leaving");
                self.record(HistoryEvent::Crash);
            }
        }
        self.finish();
        if let Err(e) = self.member.shutdown().await {
            tracing::warn!(error = %e, "member did not stop cleanly");
        }
    }

    /// Tells the handles the member is gone, and callers that no reply will come.
    fn finish(&mut self) {
        self.exited = true;
        self.status.send_modify(|s| s.exited = true);
        for call in self.calls.values() {
            rpc::lock(call).abandon();
        }
        self.calls.clear();
        if let Some(r) = self.recorder.as_mut() {
            r.flush();
        }
    }

    fn record(&mut self, ev: HistoryEvent) {
        if let Some(r) = self.recorder.as_mut() {
            r.record(&ev);
        }
    }

    fn flush(&mut self) {
        if let Some(r) = self.recorder.as_mut() {
            r.flush();
        }
    }

    /// Hands `ev` to the member; a member that has stopped has exited.
    async fn down(&mut self, ev: Down) {
        if self.member.down(ev).await.is_err() {
            self.on_exit();
        }
    }

    /// Passes `ev` to the application, or keeps it until there is room.
    fn emit(&mut self, ev: Event) {
        if self.app_gone {
            return;
        }
        match self.events.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => self.pending = Some(ev),
            Err(mpsc::error::TrySendError::Closed(_)) => self.on_app_gone(),
        }
    }

    fn on_app_gone(&mut self) {
        if !self.app_gone {
            tracing::debug!("the application dropped its events: dropping them from now on");
        }
        self.app_gone = true;
        self.pending = None;
    }

    async fn on_up(&mut self, up: Up) {
        match up {
            Up::View(view) => self.on_view(view),
            Up::Cast { from, msg } => self.on_cast(from, msg),
            Up::Send { from, msg } => self.on_send(from, msg),
            Up::Block => {
                self.blocks += 1;
                self.down(Down::BlockOk).await;
                self.emit(Event::Block);
            }
            Up::Snapshot => {
                let Some(view) = self.view.as_ref().map(|v| v.id) else { return };
                let (tx, rx) = oneshot::channel();
                self.snapshot = Some((view, rx));
                self.emit(Event::Snapshot(SnapshotRequest { view, reply: Some(tx) }));
            }
            Up::State(state) => {
                if let Some(view) = self.view.as_ref().map(|v| v.id) {
                    let digest = record::digest(&state);
                    self.record(HistoryEvent::State { view, digest });
                }
                self.emit(Event::State(state));
            }
            Up::Exit => self.on_exit(),
            Up::Suspect(ranks) => tracing::debug!(?ranks, "members suspected"),
            // The membership service handles these below the application.
            Up::Stable(_) | Up::BlockOk | Up::Received(_) | Up::Flush | Up::MergeReady { .. } => {}
        }
    }

    fn on_view(&mut self, view: Arc<View>) {
        let change = ViewChange::new(self.view.as_deref(), view.clone(), self.me);
        self.blocks = self.blocks.saturating_sub(1);
        self.view = Some(view.clone());
        self.status.send_modify(|s| s.view = Some(view.clone()));
        self.record(HistoryEvent::View { view: (*view).clone(), digest: None });
        self.flush();
        // Members that left are no longer waited for; callers that gave up are forgotten.
        self.calls.retain(|_, call| Arc::strong_count(call) > 1 && !rpc::lock(call).on_view(&view));
        self.emit(Event::View(change));
    }

    /// The sender of a message delivered in the application's view, by rank.
    fn sender(&self, from: Rank) -> Option<Endpoint> {
        let sender = self.view.as_ref().and_then(|v| v.member(from));
        if sender.is_none() {
            Stats::add(&self.stats.unknown_sender);
        }
        sender
    }

    fn on_cast(&mut self, from: Rank, mut msg: Message) {
        let Some(sender) = self.sender(from) else { return };
        let level = msg.level();
        let (seq, is_call) = match Header::pop_from(&mut msg) {
            Ok(Header::Data { seq }) => (seq, false),
            Ok(Header::Call { seq }) => (seq, true),
            Ok(_) | Err(_) => return Stats::add(&self.stats.bad_header),
        };
        Stats::add(&self.stats.delivered);
        let id = MsgId { sender, seq };
        self.record(HistoryEvent::Deliver { id, from: sender, level });
        let data = msg.into_payload();
        if is_call {
            // No handle left to reply with: nobody is reading the events either.
            let Some(commands) = self.replier.upgrade() else { return };
            let id = CallId { caller: sender, seq };
            self.emit(Event::Call(Call { from: sender, id, request: data, commands }));
        } else {
            self.emit(Event::Message { from: sender, level: Some(level), data });
        }
    }

    fn on_send(&mut self, from: Rank, mut msg: Message) {
        let Some(sender) = self.sender(from) else { return };
        match Header::pop_from(&mut msg) {
            Ok(Header::Send) => {
                Stats::add(&self.stats.sends_delivered);
                let data = msg.into_payload();
                self.emit(Event::Message { from: sender, level: None, data });
            }
            Ok(Header::Reply { call }) => {
                let (Some(entry), Some(view)) = (self.calls.get(&call), self.view.as_ref()) else {
                    return Stats::add(&self.stats.replies_late);
                };
                if rpc::lock(entry).on_reply(sender, msg.into_payload(), view) {
                    self.calls.remove(&call);
                }
            }
            Ok(_) | Err(_) => Stats::add(&self.stats.bad_header),
        }
    }

    async fn on_snapshot_answer(&mut self, answer: Result<Bytes, oneshot::error::RecvError>) {
        let Some((view, _)) = self.snapshot.take() else { return };
        let state = answer.unwrap_or_else(|_| {
            Stats::add(&self.stats.snapshots_unanswered);
            tracing::warn!(%view, "snapshot request dropped without a reply: the joiners get an empty state");
            Bytes::new()
        });
        self.record(HistoryEvent::Snapshot { view, digest: record::digest(&state) });
        self.down(Down::Snapshot(state)).await;
    }

    fn on_exit(&mut self) {
        if self.exited {
            return;
        }
        self.record(HistoryEvent::Exit);
        self.flush();
        self.finish();
        self.emit(Event::Exit);
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Cast { data, level } => {
                let seq = self.next_seq();
                self.cast(Header::Data { seq }, data, level).await;
            }
            Command::Call { request, call } => {
                let seq = self.next_seq();
                if let Some(view) = self.view.as_ref() {
                    rpc::lock(&call).cast_in(view);
                }
                self.calls.retain(|_, c| Arc::strong_count(c) > 1);
                self.calls.insert(seq, call);
                self.cast(Header::Call { seq }, request, Level::Fifo).await;
            }
            Command::Send { to, data } => self.send(to, Header::Send, data).await,
            Command::Reply { to, call, data } => self.send(to, Header::Reply { call }, data).await,
            Command::Leave => {
                self.record(HistoryEvent::Leave);
                self.flush();
                self.down(Down::Leave).await;
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.casts += 1;
        self.casts
    }

    async fn cast(&mut self, header: Header, data: Bytes, level: Level) {
        let seq = match header {
            Header::Data { seq } | Header::Call { seq } => seq,
            Header::Send | Header::Reply { .. } => return,
        };
        let mut msg = Message::new(data).with_level(level);
        header.push_on(&mut msg);
        self.record(HistoryEvent::Cast { id: MsgId { sender: self.me, seq }, level });
        Stats::add(&self.stats.casts);
        self.down(Down::Cast(msg)).await;
    }

    async fn send(&mut self, to: Endpoint, header: Header, data: Bytes) {
        let Some(rank) = self.view.as_ref().and_then(|v| v.rank_of(to)) else {
            tracing::debug!(%to, "send dropped: its destination left the view");
            return Stats::add(&self.stats.sends_dropped);
        };
        let mut msg = Message::new(data);
        header.push_on(&mut msg);
        Stats::add(&self.stats.sends);
        self.down(Down::Send(rank, msg)).await;
    }
}

/// Waits until `due`, if any (never otherwise).
async fn flush_at(due: Option<std::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Waits for room in the application's queue and passes the pending event; `false` if the
/// application dropped its events. Cancel-safe: the event is taken only once there is room.
async fn deliver(events: &mpsc::Sender<Event>, pending: &mut Option<Event>) -> bool {
    match events.reserve().await {
        Ok(permit) => {
            if let Some(ev) = pending.take() {
                permit.send(ev);
            }
            true
        }
        Err(_) => false,
    }
}

/// The application's answer to the snapshot request, when there is one.
async fn answer(
    snapshot: &mut Option<(ViewId, oneshot::Receiver<Bytes>)>,
) -> Result<Bytes, oneshot::error::RecvError> {
    match snapshot {
        Some((_, rx)) => rx.await,
        None => std::future::pending().await,
    }
}
