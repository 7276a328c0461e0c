//! The deterministic simulator: N complete stacks on a virtual clock over a seeded network.
//!
//! Each simulated process runs a real [`Stack`](crate::Stack) (or a membership service's
//! [`Node`] that builds one per view) with a recording application on top (see
//! [`workload`]). The network ([`net`]) loses, duplicates, reorders and delays datagrams per
//! link, and can be partitioned or lose one direction of a link; processes can pause, crash and
//! restart as new incarnations ([`fault`]). Every process's views, casts and deliveries are
//! recorded as a [`History`] for the [checker](crate::check).
//!
//! With processes that transfer state ([`Processes::state_transfer`]), the application keeps
//! a state ([`workload::AppState`]: a digest of the casts it delivered, padded to
//! [`Traffic::state_size`] bytes), answers [`Up::Snapshot`] with it, installs [`Up::State`],
//! and records `snapshot` and `state` events and its digest at every view.
//!
//! Everything random is drawn from one seed, and nothing depends on wall-clock time or hash
//! order, so a seed replays exactly: same seed, same history, same trace.
//!
//! A run has three phases: faults happen in `[0, fault_window)`; the application casts in
//! `[0, fault_window + traffic_tail)`; then the run goes on for `settle` with no fault and no
//! new cast, so that the stacks can finish what they promised.
//!
//! ```
//! use horus_core::sim::{simulate, SimConfig};
//! use horus_core::Registry;
//!
//! let plan = Registry::new().plan("none").unwrap();
//! let out = simulate(&plan, &SimConfig { nodes: 3, seed: 7, ..SimConfig::default() }).unwrap();
//! // Without loss even best-effort multicast reaches everyone: 3 nodes, 3 deliveries a cast.
//! assert_eq!(out.stats.deliveries, 3 * out.stats.casts);
//! ```

pub mod app;
pub mod fault;
pub mod net;
pub mod workload;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::event::{Down, Snapshot as _, Up};
use crate::history::{Event, History, Liveness, MsgId, Promises};
use crate::ids::{Endpoint, GroupName, View, ViewId};
use crate::level::Level;
use crate::message::Message;
use crate::node::{Node, Processes};
use crate::rng::Rng;
use crate::spec::StackError;
use crate::stack::{Dest, Transmit};
use crate::time::Time;
use crate::view_state::ViewState;

use app::AppAction;
pub use app::{AppCx, AppFactory, Application};
pub use fault::{Fault, FaultConfig};
pub use net::{LinkModel, Net};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// The model of every link (per-link overrides in `links`).
    pub link: LinkModel,
    pub links: Vec<(usize, usize, LinkModel)>,
    /// Kinds of random fault, drawn from the seed within `fault_window`.
    pub faults: FaultConfig,
    /// Faults at fixed times, in addition to the drawn ones.
    pub script: Vec<(Time, Fault)>,
    pub fault_window: Duration,
    pub traffic: Traffic,
    /// Time with no fault and no new cast at the end of the run.
    pub settle: Duration,
    /// Record a readable line for every event.
    pub trace: bool,
    /// Every process starts outside any view and asks to join, all at once; the first
    /// incarnations may found the group (concurrent first joiners must end in one group).
    pub founding: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 5,
            seed: 0,
            link: LinkModel::default(),
            links: Vec::new(),
            faults: FaultConfig::default(),
            script: Vec::new(),
            fault_window: Duration::from_secs(2),
            traffic: Traffic::default(),
            settle: Duration::from_secs(3),
            trace: false,
            founding: false,
        }
    }
}

/// What the application casts.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// Casts per process incarnation.
    pub msgs: usize,
    /// Sizes are drawn log-uniformly from `min_size..=max_size` bytes.
    pub min_size: usize,
    pub max_size: usize,
    /// Levels drawn uniformly; empty means every level the stack offers (or `Fifo` when it
    /// offers none: a best-effort stack is then checked against what FIFO promises).
    pub levels: Vec<Level>,
    /// Casts go on this long after the fault window closes.
    pub tail: Duration,
    /// Point-to-point sends per process incarnation, each to a member drawn at random. They
    /// are checked by the simulator itself (the history format covers casts): every stream
    /// from one process to another is delivered exactly once, in order, and, when both live
    /// to the end, completely.
    pub sends: usize,
    /// With state transfer: bytes of padding in the application's state, beyond its 8-byte
    /// digest.
    pub state_size: usize,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            msgs: 20,
            min_size: 1,
            max_size: 1024,
            levels: Vec::new(),
            tail: Duration::from_millis(500),
            sends: 0,
            state_size: 0,
        }
    }
}

/// A configuration the simulator cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the simulation needs at least one node")]
    NoNodes,
    #[error("service level `{level}` is not offered by stack `{stack}`; it offers: {offered}")]
    LevelNotOffered { level: Level, stack: String, offered: String },
    #[error("restarts and founding need processes that can join a group; those of `{0}` cannot")]
    RestartsNeedMembership(String),
    #[error("size range {0}..={1} is empty")]
    BadSizes(usize, usize),
    #[error(transparent)]
    Stack(#[from] StackError),
}

/// What a run produced.
#[derive(Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub history: History,
    pub promises: Promises,
    pub stats: SimStats,
    /// The faults that happened, drawn and scripted.
    pub scenario: Vec<(Time, Fault)>,
    /// One line per event, when tracing.
    pub trace: Vec<String>,
}

/// Counts from one run.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub casts: u64,
    pub deliveries: u64,
    /// Delivered payloads that were not what was cast, and installed states that were not a
    /// snapshot of the application (a stack bug).
    pub corrupt: u64,
    /// States installed by joiners, and snapshots given for them.
    pub states: u64,
    pub snapshots: u64,
    pub sends: u64,
    pub send_deliveries: u64,
    /// Point-to-point streams delivered out of order, twice, or incompletely.
    pub send_violations: Vec<String>,
    pub datagrams: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    pub dropped_link: u64,
    /// Arrived at a crashed process, or one with another incarnation.
    pub dropped_dead: u64,
    /// Arrived while the receiver was paused and its queue was full.
    pub dropped_overflow: u64,
    pub duplicated: u64,
    /// Casts an application asked for at a level the stack does not offer (refused, as a
    /// real group refuses them).
    pub app_refused: u64,
    /// Simulator events handled.
    pub events: u64,
    /// Virtual time at the end.
    pub end: Time,
    /// Every stack counter summed over processes, by `(layer, counter)`.
    pub counters: BTreeMap<(&'static str, &'static str), u64>,
}

/// Records a trace line, formatting nothing unless tracing.
macro_rules! trace {
    ($sim:expr, $who:expr, $($what:tt)*) => {
        if $sim.config.trace {
            let line = format!("{:>12}  {:<7} {}", $sim.now.to_string(), $who.to_string(), format_args!($($what)*));
            $sim.trace.push(line);
        }
    };
}

/// How long a blocked application waits before trying a cast again.
const BLOCKED_RETRY: Duration = Duration::from_millis(1);

/// Datagrams a paused process can hold (a socket buffer), beyond which they are dropped.
const PAUSE_QUEUE: usize = 10_000;

/// Runs one seeded simulation of `plan`.
pub fn simulate(plan: &dyn Processes, config: &SimConfig) -> Result<SimOutcome, SimError> {
    Sim::new(plan, config, None)?.run()
}

/// Runs one seeded simulation of `plan` with an [`Application`] from `apps` on each process
/// incarnation in place of the workload's filler casts: it gets `config.traffic.msgs` turns
/// to act per incarnation, and its casts and sends are recorded and checked like the
/// workload's. With state transfer, its snapshots travel behind the workload's digest.
pub fn simulate_apps(
    plan: &dyn Processes,
    config: &SimConfig,
    apps: &mut dyn AppFactory,
) -> Result<SimOutcome, SimError> {
    Sim::new(plan, config, Some(apps))?.run()
}

enum QEv {
    Arrive { to: usize, incarnation: Option<u32>, from: usize, datagram: Bytes },
    Timer { node: usize, incarnation: u32, gen: u64 },
    Cast { node: usize, incarnation: u32 },
    Send { node: usize, incarnation: u32 },
    Fault(Fault),
    Resume { node: usize, incarnation: u32 },
}

struct Queued {
    at: Time,
    seq: u64,
    ev: QEv,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // Earliest first out of the max-heap; ties in the order queued.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Proc {
    endpoint: Endpoint,
    /// `None` once the process has crashed or exited.
    stack: Option<Box<dyn Node>>,
    /// Blocks answered and not yet followed by a view: while any is, or before the first view,
    /// the application holds its casts (a joiner that pulls the state passes the blocks of
    /// later views up before the views themselves, so they are counted, as the Group does).
    blocks: u32,
    /// The view the application last saw: deliveries name their sender by its rank there
    /// (the node may already run a later view's stack while its old view's last events wait).
    view: Arc<View>,
    paused_until: Option<Time>,
    inbox: VecDeque<(usize, Bytes)>,
    timer: Option<Time>,
    timer_gen: u64,
    next_seq: u64,
    /// Sends so far to each endpoint in each view (a stream per view).
    sent_to: BTreeMap<(Endpoint, ViewId), u64>,
    /// The application's state (with state transfer).
    app: workload::AppState,
    /// The application run on top, if any (see [`simulate_apps`]), with its random source and
    /// the casts and sends it made while blocked.
    user: Option<Box<dyn Application>>,
    user_rng: Rng,
    held: Vec<AppAction>,
    /// The process has installed a view (a joiner has not, until its first).
    in_view: bool,
}

struct Sim<'a> {
    plan: &'a dyn Processes,
    config: &'a SimConfig,
    group: GroupName,
    levels: Vec<Level>,
    /// The levels the stack offers (an application's casts at others are refused).
    offered: Vec<Level>,
    net: Net,
    rng: Rng,
    queue: BinaryHeap<Queued>,
    seq: u64,
    now: Time,
    procs: Vec<Proc>,
    static_view: Arc<View>,
    history: History,
    stats: SimStats,
    trace: Vec<String>,
    traffic_end: Time,
    /// Per (receiver, sender, view): the next send seq expected. A stream of sends is that of
    /// one view: like casts, sends are owed only between members that stay together.
    send_next: BTreeMap<(Endpoint, Endpoint, ViewId), u64>,
    /// Streams already reported out of order: one report each.
    send_reported: std::collections::BTreeSet<(Endpoint, Endpoint, ViewId)>,
    /// The processes transfer state: the application answers snapshots, and digests are
    /// recorded.
    state_transfer: bool,
    apps: Option<&'a mut dyn AppFactory>,
}

impl<'a> Sim<'a> {
    fn new(
        plan: &'a dyn Processes,
        config: &'a SimConfig,
        apps: Option<&'a mut dyn AppFactory>,
    ) -> Result<Self, SimError> {
        if config.nodes == 0 {
            return Err(SimError::NoNodes);
        }
        let t = &config.traffic;
        if t.min_size > t.max_size {
            return Err(SimError::BadSizes(t.min_size, t.max_size));
        }
        let restarts = config.founding
            || config.faults.restarts
            || config.script.iter().any(|(_, f)| matches!(f, Fault::Restart(_)));
        if restarts && !plan.can_join() {
            // A restarted process is a new endpoint, which must join a running group.
            return Err(SimError::RestartsNeedMembership(plan.name()));
        }
        let offered = plan.levels();
        let levels: Vec<Level> = if !t.levels.is_empty() {
            for &level in &t.levels {
                let best_effort_fifo = offered.is_empty() && level == Level::Fifo;
                if !(offered.contains(&level) || best_effort_fifo) {
                    let names: Vec<&str> = offered.iter().map(|l| l.as_str()).collect();
                    return Err(SimError::LevelNotOffered {
                        level,
                        stack: plan.name(),
                        offered: if names.is_empty() {
                            "best effort only".into()
                        } else {
                            names.join(", ")
                        },
                    });
                }
            }
            t.levels.clone()
        } else if offered.is_empty() {
            vec![Level::Fifo]
        } else {
            offered.clone()
        };
        let mut net = Net::new(config.nodes, config.link);
        for &(from, to, model) in &config.links {
            if from < config.nodes && to < config.nodes {
                net.set_link(from, to, model);
            }
        }
        let members: Vec<Endpoint> =
            (0..config.nodes as u64).map(|n| Endpoint::new(n, 0)).collect();
        let traffic_end = Time::ZERO + config.fault_window + t.tail;
        Ok(Sim {
            plan,
            config,
            group: GroupName::new("sim"),
            levels,
            offered,
            net,
            rng: Rng::new(config.seed),
            queue: BinaryHeap::new(),
            seq: 0,
            now: Time::ZERO,
            procs: Vec::new(),
            static_view: Arc::new(View::initial(members)),
            history: History::new(),
            stats: SimStats::default(),
            trace: Vec::new(),
            traffic_end,
            send_next: BTreeMap::new(),
            send_reported: Default::default(),
            state_transfer: plan.state_transfer(),
            apps,
        })
    }

    fn push(&mut self, at: Time, ev: QEv) {
        self.queue.push(Queued { at, seq: self.seq, ev });
        self.seq += 1;
    }

    fn run(mut self) -> Result<SimOutcome, SimError> {
        let mut scenario =
            self.config.faults.draw(self.config.nodes, self.config.fault_window, &mut self.rng);
        scenario.extend(self.config.script.iter().cloned());
        scenario.sort_by_key(|(t, _)| *t);
        for (at, f) in &scenario {
            self.push(*at, QEv::Fault(f.clone()));
        }
        if self.config.faults.any() {
            // Whatever the draw, the network is whole when the fault window closes.
            let end = Time::ZERO + self.config.fault_window;
            self.push(end, QEv::Fault(Fault::Heal));
            scenario.push((end, Fault::Heal));
        }
        let last_fault = scenario.iter().map(|(t, _)| *t).max().unwrap_or(Time::ZERO);
        for node in 0..self.config.nodes {
            let endpoint = Endpoint::new(node as u64, 0);
            self.start(node, endpoint)?;
        }
        let end = self.traffic_end + self.config.settle;
        while let Some(q) = self.queue.pop() {
            if q.at > end {
                break;
            }
            self.now = q.at;
            self.stats.events += 1;
            match q.ev {
                QEv::Arrive { to, incarnation, from, datagram } => {
                    self.on_arrive(to, incarnation, from, datagram)
                }
                QEv::Timer { node, incarnation, gen } => self.on_timer(node, incarnation, gen),
                QEv::Cast { node, incarnation } => self.on_cast(node, incarnation),
                QEv::Send { node, incarnation } => self.on_send(node, incarnation),
                QEv::Fault(f) => self.on_fault(f),
                QEv::Resume { node, incarnation } => self.on_resume(node, incarnation),
            }
        }
        self.stats.end = end;
        self.check_sends_complete();
        for p in &self.procs {
            if let Some(stack) = &p.stack {
                for (layer, counter, v) in stack.counters() {
                    *self.stats.counters.entry((layer, counter)).or_default() += v;
                }
            }
        }
        let promises = Promises {
            membership: self.plan.membership(),
            liveness: Some(Liveness { after: last_fault, bound: None }),
            state_transfer: self.state_transfer,
        };
        Ok(SimOutcome {
            seed: self.config.seed,
            history: self.history,
            promises,
            stats: self.stats,
            scenario,
            trace: self.trace,
        })
    }

    /// Starts (or restarts) `node` as `endpoint`.
    fn start(&mut self, node: usize, endpoint: Endpoint) -> Result<(), SimError> {
        // The first incarnations are members of the initial view (or, founding, join with
        // leave to found the group); later ones join.
        let may_found = self.config.founding && endpoint.incarnation == 0;
        let joining = endpoint.incarnation > 0 || may_found;
        let stack = if joining {
            match self.plan.join(&self.group, endpoint, self.rng.fork(), self.now, may_found) {
                Some(node) => node?,
                None => return Err(SimError::RestartsNeedMembership(self.plan.name())),
            }
        } else {
            let vs = ViewState::new(self.group.clone(), endpoint, self.static_view.clone())
                .expect("every node is in the static view");
            self.plan.start(&vs.group, endpoint, vs.view.clone(), self.rng.fork(), self.now)?
        };
        let view = stack.view().clone();
        let now = self.now;
        let user = self.apps.as_mut().map(|f| f.start(endpoint, now));
        let proc = Proc {
            endpoint,
            stack: Some(stack),
            // A joiner's application waits for its first view.
            blocks: 0,
            view,
            paused_until: None,
            inbox: VecDeque::new(),
            timer: None,
            timer_gen: 0,
            next_seq: 1,
            sent_to: BTreeMap::new(),
            app: workload::AppState::new(if user.is_some() {
                0
            } else {
                self.config.traffic.state_size
            }),
            user,
            user_rng: self.rng.fork(),
            held: Vec::new(),
            in_view: !joining,
        };
        if node < self.procs.len() {
            self.procs[node] = proc;
        } else {
            self.procs.push(proc);
        }
        if joining {
            trace!(self, endpoint, "start, asking to join");
        } else {
            let digest = self.state_transfer.then_some(0);
            self.history.record(
                self.now,
                endpoint,
                Event::View { view: (*self.static_view).clone(), digest },
            );
            trace!(self, endpoint, "start in view {}", self.static_view);
            self.with_app(node, |app, cx| app.view(None, cx));
        }
        // The casts of this incarnation, spread over the rest of the traffic phase.
        if self.now < self.traffic_end {
            let (lo, hi) = (self.now.0, self.traffic_end.0);
            for _ in 0..self.config.traffic.msgs {
                let at = Time(self.rng.range(lo, hi));
                self.push(at, QEv::Cast { node, incarnation: endpoint.incarnation });
            }
            // An application makes its own sends: the workload's are for the recording one.
            if self.config.nodes > 1 && self.apps.is_none() {
                for _ in 0..self.config.traffic.sends {
                    let at = Time(self.rng.range(lo, hi));
                    self.push(at, QEv::Send { node, incarnation: endpoint.incarnation });
                }
            }
        }
        self.pump(node);
        Ok(())
    }

    fn live(&self, node: usize, incarnation: u32) -> bool {
        let p = &self.procs[node];
        p.endpoint.incarnation == incarnation && p.stack.is_some()
    }

    fn paused(&self, node: usize) -> Option<Time> {
        self.procs[node].paused_until.filter(|t| *t > self.now)
    }

    /// Whether the application of `node` may act now; if not, `again` is queued for when it
    /// may: a paused process acts when it resumes, and a blocked one (a view change is under
    /// way, or it has not joined yet) holds its cast or send until its next view.
    fn app_may_act(&mut self, node: usize, incarnation: u32, again: QEv) -> bool {
        if !self.live(node, incarnation) {
            return false;
        }
        if let Some(until) = self.paused(node) {
            self.push(until, again);
            return false;
        }
        // An application is asked to act while a view change is under way too (a real one
        // takes requests at any time; what it casts is held); the workload waits.
        let p = &self.procs[node];
        let may = if p.user.is_some() { p.in_view } else { !self.blocked(node) };
        if !may {
            self.push(self.now + BLOCKED_RETRY, again);
        }
        may
    }

    /// Whether `node`'s casts are held: before its first view, or while a block it answered
    /// waits for its view.
    fn blocked(&self, node: usize) -> bool {
        let p = &self.procs[node];
        !p.in_view || p.blocks > 0
    }

    fn on_cast(&mut self, node: usize, incarnation: u32) {
        if !self.app_may_act(node, incarnation, QEv::Cast { node, incarnation }) {
            return;
        }
        if self.procs[node].user.is_some() {
            self.with_app(node, |app, cx| app.act(cx));
            self.pump(node);
            return;
        }
        let level = self.levels[self.rng.index(self.levels.len())];
        let t = &self.config.traffic;
        let size = log_uniform(&mut self.rng, t.min_size, t.max_size);
        let p = &mut self.procs[node];
        let id = MsgId { sender: p.endpoint, seq: p.next_seq };
        p.next_seq += 1;
        let msg = Message::new(workload::payload(id, level, size)).with_level(level);
        self.stats.casts += 1;
        self.history.record(self.now, id.sender, Event::Cast { id, level });
        trace!(self, id.sender, "cast {id} {level} {size}B");
        let now = self.now;
        if let Some(stack) = self.procs[node].stack.as_mut() {
            stack.down(now, Down::Cast(msg));
        }
        self.pump(node);
    }

    fn on_send(&mut self, node: usize, incarnation: u32) {
        if !self.app_may_act(node, incarnation, QEv::Send { node, incarnation }) {
            return;
        }
        // To another member of the current view, by its rank there.
        let view = self.procs[node].view.clone();
        let me = self.procs[node].endpoint;
        let others: Vec<_> = view.members.iter().filter(|e| **e != me).collect();
        if others.is_empty() {
            return;
        }
        let target = *others[self.rng.index(others.len())];
        let to = target.node as usize;
        let rank = view.rank_of(target).expect("a member of the view");
        let t = &self.config.traffic;
        let size = log_uniform(&mut self.rng, t.min_size, t.max_size);
        let p = &mut self.procs[node];
        let count = p.sent_to.entry((target, view.id)).or_insert(0);
        *count += 1;
        let id = MsgId { sender: p.endpoint, seq: *count };
        let msg = Message::new(workload::send_payload(id, size));
        self.stats.sends += 1;
        trace!(self, id.sender, "send #{} to n{to} {size}B", id.seq);
        let now = self.now;
        if let Some(stack) = self.procs[node].stack.as_mut() {
            stack.down(now, Down::Send(rank, msg));
        }
        self.pump(node);
    }

    /// A point-to-point send delivered at `me`: the next of its stream, or a violation.
    fn on_send_delivered(&mut self, me: Endpoint, from: Endpoint, id: MsgId, view: ViewId) {
        self.stats.send_deliveries += 1;
        trace!(self, me, "deliver send #{} from {from}", id.seq);
        let key = (me, id.sender, view);
        let next = self.send_next.entry(key).or_insert(1);
        // A stream is reported once, at its first fault, and resynchronises after it.
        let problem = if from != id.sender {
            Some(format!("{me} delivered send #{} of {} as from {from}", id.seq, id.sender))
        } else if id.seq > *next {
            let p = format!(
                "{me} delivered send #{} from {from} in {view}, skipping #{}..#{}",
                id.seq,
                *next,
                id.seq - 1
            );
            *next = id.seq + 1;
            Some(p)
        } else if id.seq < *next {
            Some(format!("{me} delivered send #{} from {from} in {view} again, or late", id.seq))
        } else {
            *next += 1;
            None
        };
        if let Some(p) = problem {
            if self.send_reported.insert(key) {
                self.send_violation(p);
            }
        }
    }

    fn send_violation(&mut self, p: String) {
        if self.stats.send_violations.len() < 100 {
            self.stats.send_violations.push(format!("point-to-point: {p}"));
        }
    }

    /// Every stream of sends between two processes that are alive at the end, made in a view
    /// both installed and left for the same next view (or both are still in), arrived whole.
    fn check_sends_complete(&mut self) {
        let views = |e: Endpoint| -> Vec<ViewId> {
            self.history.procs.get(&e).map_or(Vec::new(), |p| {
                p.events
                    .iter()
                    .filter_map(|(_, ev)| match ev {
                        Event::View { view, .. } => Some(view.id),
                        _ => None,
                    })
                    .collect()
            })
        };
        let next_of = |vs: &[ViewId], v: ViewId| {
            vs.iter().position(|x| *x == v).map(|i| vs.get(i + 1).copied())
        };
        let mut missing = Vec::new();
        for sender in self.procs.iter().filter(|p| p.stack.is_some()) {
            let sender_views = views(sender.endpoint);
            for (&(to, view), &sent) in &sender.sent_to {
                let Some(receiver) =
                    self.procs.iter().find(|p| p.endpoint == to && p.stack.is_some())
                else {
                    continue;
                };
                let receiver_views = views(receiver.endpoint);
                let together = next_of(&receiver_views, view).is_some()
                    && next_of(&receiver_views, view) == next_of(&sender_views, view);
                if !together {
                    continue;
                }
                let got =
                    self.send_next.get(&(to, sender.endpoint, view)).copied().unwrap_or(1) - 1;
                if got < sent {
                    missing.push(format!(
                        "{to} never delivered sends #{}..#{sent} from {} in {view}",
                        got + 1,
                        sender.endpoint
                    ));
                }
            }
        }
        for m in missing {
            self.send_violation(m);
        }
    }

    fn on_arrive(&mut self, to: usize, incarnation: Option<u32>, from: usize, datagram: Bytes) {
        let p = &self.procs[to];
        if p.stack.is_none() || incarnation.is_some_and(|i| i != p.endpoint.incarnation) {
            self.stats.dropped_dead += 1;
            return;
        }
        if self.paused(to).is_some() {
            let p = &mut self.procs[to];
            if p.inbox.len() >= PAUSE_QUEUE {
                self.stats.dropped_overflow += 1;
            } else {
                p.inbox.push_back((from, datagram));
            }
            return;
        }
        trace!(self, self.procs[to].endpoint, "recv {}B from n{from}", datagram.len());
        let now = self.now;
        if let Some(stack) = self.procs[to].stack.as_mut() {
            stack.receive(now, datagram);
        }
        self.pump(to);
    }

    fn on_timer(&mut self, node: usize, incarnation: u32, gen: u64) {
        if !self.live(node, incarnation) || self.procs[node].timer_gen != gen {
            return; // stale: the process died, or its deadline moved
        }
        if self.paused(node).is_some() {
            return; // the resume fires what is overdue
        }
        self.procs[node].timer = None;
        let now = self.now;
        if let Some(stack) = self.procs[node].stack.as_mut() {
            stack.on_timeout(now);
        }
        self.pump(node);
    }

    fn on_resume(&mut self, node: usize, incarnation: u32) {
        if !self.live(node, incarnation) || self.paused(node).is_some() {
            return;
        }
        self.procs[node].paused_until = None;
        let queued = std::mem::take(&mut self.procs[node].inbox);
        trace!(self, self.procs[node].endpoint, "resume ({} datagrams queued)", queued.len());
        let now = self.now;
        for (_, d) in queued {
            if let Some(stack) = self.procs[node].stack.as_mut() {
                stack.receive(now, d);
            }
            self.pump(node);
        }
        self.procs[node].timer = None;
        if let Some(stack) = self.procs[node].stack.as_mut() {
            stack.on_timeout(now);
        }
        self.pump(node);
    }

    fn on_fault(&mut self, f: Fault) {
        trace!(self, "fault", "{f}");
        match f {
            Fault::Partition(components) => self.net.partition(&components),
            Fault::Heal => {
                self.net.heal();
                for from in 0..self.config.nodes {
                    for to in 0..self.config.nodes {
                        self.net.set_link_down(from, to, false);
                    }
                }
            }
            Fault::LinkDown { from, to } => self.net.set_link_down(from, to, true),
            Fault::LinkUp { from, to } => self.net.set_link_down(from, to, false),
            Fault::Crash(node) if node < self.procs.len() => {
                let p = &mut self.procs[node];
                if p.stack.take().is_some() {
                    p.inbox.clear();
                    p.paused_until = None;
                    if let Some(app) = p.user.as_mut() {
                        app.stop(self.now, true);
                    }
                    let e = p.endpoint;
                    self.history.record(self.now, e, Event::Crash);
                }
            }
            Fault::Restart(node) if node < self.procs.len() && self.procs[node].stack.is_none() => {
                let e = self.procs[node].endpoint;
                let next = Endpoint::new(e.node, e.incarnation + 1);
                // Restarts are refused with static membership before the run starts.
                let _ = self.start(node, next);
            }
            Fault::Pause { node, pause } if node < self.procs.len() => {
                if self.procs[node].stack.is_some() && self.paused(node).is_none() {
                    let until = self.now + pause;
                    self.procs[node].paused_until = Some(until);
                    let incarnation = self.procs[node].endpoint.incarnation;
                    self.push(until, QEv::Resume { node, incarnation });
                }
            }
            Fault::Leave(node) if node < self.procs.len() && self.paused(node).is_none() => {
                let now = self.now;
                if let Some(stack) = self.procs[node].stack.as_mut() {
                    stack.down(now, Down::Leave);
                    let me = self.procs[node].endpoint;
                    self.history.record(now, me, Event::Leave);
                    trace!(self, me, "leave");
                }
                self.pump(node);
            }
            Fault::Crash(_) | Fault::Restart(_) | Fault::Pause { .. } | Fault::Leave(_) => {}
        }
    }

    /// Drains what a process's stack produced: events for the application, datagrams, and its
    /// next deadline.
    fn pump(&mut self, node: usize) {
        loop {
            let Some(stack) = self.procs[node].stack.as_mut() else {
                return;
            };
            if let Some(ev) = stack.poll_up() {
                self.on_up(node, ev);
            } else if let Some(t) = stack.poll_transmit() {
                self.send(node, t);
            } else {
                break;
            }
        }
        let Some(stack) = self.procs[node].stack.as_ref() else {
            return;
        };
        let next = stack.poll_timeout();
        let p = &mut self.procs[node];
        if next.is_some() && next != p.timer {
            p.timer = next;
            p.timer_gen += 1;
            let (gen, incarnation) = (p.timer_gen, p.endpoint.incarnation);
            let at = next.unwrap_or(Time::MAX).max(self.now);
            self.push(at, QEv::Timer { node, incarnation, gen });
        }
    }

    fn on_up(&mut self, node: usize, ev: Up) {
        let me = self.procs[node].endpoint;
        match ev {
            Up::Cast { from, msg } | Up::Send { from, msg } => {
                let from_ep = self.procs[node].view.member(from);
                let user = self.procs[node].user.is_some();
                let parsed = workload::parse_any(msg.payload())
                    .filter(|(_, _, data)| data.is_some() == user);
                match (parsed, from_ep) {
                    (Some((id, workload::Kind::Cast(level), data)), Some(from)) => {
                        self.stats.deliveries += 1;
                        self.procs[node].app.deliver(id);
                        self.history.record(self.now, me, Event::Deliver { id, from, level });
                        trace!(self, me, "deliver {id} {level} from {from}");
                        if let Some(at) = data {
                            let data = msg.payload().slice(at..);
                            self.with_app(node, |app, cx| app.deliver(from, Some(level), data, cx));
                        }
                    }
                    (Some((id, workload::Kind::Send, data)), Some(from)) => {
                        let view = self.procs[node].view.id;
                        self.on_send_delivered(me, from, id, view);
                        if let Some(at) = data {
                            let data = msg.payload().slice(at..);
                            self.with_app(node, |app, cx| app.deliver(from, None, data, cx));
                        }
                    }
                    _ => {
                        self.stats.corrupt += 1;
                        trace!(self, me, "deliver CORRUPT payload from {from}");
                    }
                }
            }
            Up::View(view) => {
                trace!(self, me, "view {view}");
                let p = &mut self.procs[node];
                p.blocks = p.blocks.saturating_sub(1);
                // A joiner's first view has no previous one.
                let first = !std::mem::replace(&mut p.in_view, true);
                let digest = self.state_transfer.then_some(self.procs[node].app.digest);
                let previous = std::mem::replace(&mut self.procs[node].view, view.clone());
                self.history.record(self.now, me, Event::View { view: (*view).clone(), digest });
                if self.procs[node].user.is_some() {
                    // What the application held goes out in this view (or is held on, while
                    // blocks of later views wait), before what it does on hearing of the view.
                    let held = std::mem::take(&mut self.procs[node].held);
                    self.app_actions(node, held);
                    self.with_app(node, |app, cx| {
                        app.view(if first { None } else { Some(&previous) }, cx)
                    });
                }
            }
            Up::Snapshot => {
                // Answered at once: the state as of the view just installed.
                let (view, digest) = (self.procs[node].view.id, self.procs[node].app.digest);
                let mut state = self.procs[node].app.snapshot();
                if self.procs[node].user.is_some() {
                    // The digest, then the application's own state.
                    let mut mine = Bytes::new();
                    self.with_app(node, |app, cx| mine = app.snapshot(cx));
                    let mut both = Vec::with_capacity(8 + mine.len());
                    both.extend_from_slice(&state);
                    both.extend_from_slice(&mine);
                    state = Bytes::from(both);
                }
                self.stats.snapshots += 1;
                trace!(self, me, "snapshot for {view}: digest {digest:#x}, {}B", state.len());
                self.history.record(self.now, me, Event::Snapshot { view, digest });
                let now = self.now;
                if let Some(s) = self.procs[node].stack.as_mut() {
                    s.down(now, Down::Snapshot(state));
                }
            }
            Up::State(mut state) => {
                let (view, len) = (self.procs[node].view.id, state.len());
                let user_state = match self.procs[node].user.is_some() {
                    true if state.len() >= 8 => Some(state.split_off(8)),
                    _ => None,
                };
                let app = &mut self.procs[node].app;
                let bad = app.bad_installs;
                app.install(state);
                if let Some(s) = user_state.filter(|_| app.bad_installs == bad) {
                    self.with_app(node, |app, cx| app.install(s, cx));
                }
                let app = &mut self.procs[node].app;
                if app.bad_installs > bad {
                    self.stats.corrupt += 1;
                    trace!(self, me, "state for {view}: CORRUPT, {len}B");
                } else {
                    let digest = app.digest;
                    self.stats.states += 1;
                    trace!(self, me, "state for {view}: digest {digest:#x}, {len}B");
                    self.history.record(self.now, me, Event::State { view, digest });
                }
            }
            Up::Block => {
                trace!(self, me, "block");
                self.procs[node].blocks += 1;
                self.with_app(node, |app, cx| app.block(cx));
                let now = self.now;
                if let Some(s) = self.procs[node].stack.as_mut() {
                    s.down(now, Down::BlockOk);
                }
            }
            Up::Exit => {
                trace!(self, me, "exit");
                self.history.record(self.now, me, Event::Exit);
                self.procs[node].stack = None;
                if let Some(app) = self.procs[node].user.as_mut() {
                    app.stop(self.now, false);
                }
            }
            // The membership service handles these below the application.
            Up::Suspect(_)
            | Up::Stable(_)
            | Up::BlockOk
            | Up::Received(_)
            | Up::Flush
            | Up::MergeReady { .. } => {}
        }
    }

    /// Calls `node`'s application, if it has one, and carries out what it asked for.
    fn with_app(&mut self, node: usize, f: impl FnOnce(&mut dyn Application, &mut AppCx<'_>)) {
        let p = &mut self.procs[node];
        let Some(app) = p.user.as_mut() else { return };
        let mut out = Vec::new();
        let mut cx = AppCx {
            now: self.now,
            me: p.endpoint,
            view: &p.view,
            offered: &self.offered,
            rng: &mut p.user_rng,
            out: &mut out,
        };
        f(app.as_mut(), &mut cx);
        self.app_actions(node, out);
    }

    /// Casts and sends an application asked for: held while it is blocked, and otherwise
    /// numbered, recorded and passed to its stack like the workload's. The caller pumps.
    fn app_actions(&mut self, node: usize, actions: Vec<AppAction>) {
        for action in actions {
            if self.procs[node].stack.is_none() {
                return;
            }
            if self.blocked(node) {
                self.procs[node].held.push(action);
                continue;
            }
            let p = &mut self.procs[node];
            let (me, now) = (p.endpoint, self.now);
            let ev = match action {
                AppAction::Cast { level, .. } if !self.offered.contains(&level) => {
                    // As a real Group refuses it: the stack does not offer the level.
                    self.stats.app_refused += 1;
                    trace!(self, me, "cast at {level} refused: not offered by the stack");
                    continue;
                }
                AppAction::Cast { level, data } => {
                    let id = MsgId { sender: me, seq: p.next_seq };
                    p.next_seq += 1;
                    let payload = workload::app_payload(id, workload::Kind::Cast(level), &data);
                    self.stats.casts += 1;
                    self.history.record(now, me, Event::Cast { id, level });
                    trace!(self, me, "cast {id} {level} {}B (application)", data.len());
                    Down::Cast(Message::new(payload).with_level(level))
                }
                AppAction::Send { to, data } => {
                    let view = p.view.clone();
                    let Some(rank) = view.rank_of(to).filter(|_| to != me) else {
                        trace!(self, me, "send to {to} dropped: not another member of {view}");
                        continue;
                    };
                    let count = p.sent_to.entry((to, view.id)).or_insert(0);
                    *count += 1;
                    let id = MsgId { sender: me, seq: *count };
                    let payload = workload::app_payload(id, workload::Kind::Send, &data);
                    self.stats.sends += 1;
                    trace!(self, me, "send #{} to {to} {}B (application)", id.seq, data.len());
                    Down::Send(rank, Message::new(payload))
                }
            };
            if let Some(stack) = self.procs[node].stack.as_mut() {
                stack.down(now, ev);
            }
        }
    }

    fn send(&mut self, from: usize, t: Transmit) {
        let datagram = t.msg.to_bytes();
        let targets: Vec<(usize, Option<u32>)> = match t.dest {
            Dest::Cast => {
                (0..self.config.nodes).filter(|n| *n != from).map(|n| (n, None)).collect()
            }
            Dest::Member(e) if (e.node as usize) < self.config.nodes => {
                vec![(e.node as usize, Some(e.incarnation))]
            }
            Dest::Member(_) => Vec::new(),
        };
        for (to, incarnation) in targets {
            self.stats.datagrams += 1;
            match self.net.transmit(from, to, &mut self.rng) {
                Ok(delays) => {
                    self.stats.duplicated += delays.len() as u64 - 1;
                    for d in delays {
                        let at = self.now + d;
                        self.push(
                            at,
                            QEv::Arrive { to, incarnation, from, datagram: datagram.clone() },
                        );
                    }
                }
                Err(why) => {
                    match why {
                        net::Drop::Loss => self.stats.dropped_loss += 1,
                        net::Drop::Partition => self.stats.dropped_partition += 1,
                        net::Drop::LinkDown => self.stats.dropped_link += 1,
                    }
                    let me = self.procs[from].endpoint;
                    trace!(self, me, "-> n{to} {}B dropped ({})", datagram.len(), why.as_str());
                }
            }
        }
    }
}

/// A size drawn log-uniformly from `lo..=hi`, so that small messages are common and large
/// ones still occur.
fn log_uniform(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    if lo >= hi {
        return lo;
    }
    let (l, h) = ((lo.max(1) as f64).ln(), ((hi + 1) as f64).ln());
    let x = (l + rng.next_f64() * (h - l)).exp() as usize;
    x.clamp(lo, hi)
}
