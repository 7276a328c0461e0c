//! The history checker: the oracle every simulated and real run is judged by.
//!
//! [`check`] reads a [`History`] and the run's [`Promises`] and reports every violation of the
//! guarantees of DESIGN.md section 1 (after Chockler, Keidar and Vitenberg, *Group
//! Communication Specifications: a Comprehensive Study*, ACM Computing Surveys 2001, and
//! Birman, *Building Secure and Reliable Network Applications*, ch. 13 and 15).
//!
//! # Words
//! A *process* is one endpoint (incarnation). A process *is in view V* from its installing V to
//! its installing its next view, or to the end of its history. A message's *sending view* is
//! the view its sender had last installed when it recorded the cast; a cast made before any
//! view has none. A message *is cast* when its sender's own history holds a `Cast` with its id
//! (the first one counts; a `Cast` whose id names another sender casts nothing). A process is
//! *alive at the end* unless its history ends with `Crash` or `Exit`. "Delivered" means the
//! first delivery of a message at a process; repeats matter only to no duplication and
//! sending view delivery. A delivery of a message never cast is delivery integrity's alone;
//! one with a wrong `from` or `level` still counts as a delivery of that message for the
//! other checks, which go by the level it was cast at.
//!
//! # The properties, as checked
//! 1. [Self inclusion](Property::SelfInclusion): every view p installs contains p.
//! 2. [Local monotonicity](Property::LocalMonotonicity): the ids of the views p installs
//!    strictly increase.
//! 3. [Delivery integrity](Property::DeliveryIntegrity): every delivery names a message that
//!    was cast, with `from` its sender and `level` its cast level; and the histories can be
//!    replayed so that every cast comes before its deliveries (no delivery before its cast).
//! 4. [No duplication](Property::NoDuplication): no process delivers one message twice.
//! 5. [Sending view delivery](Property::SendingViewDelivery): p delivers m only while in m's
//!    sending view (so never a message cast before any view).
//! 6. [Virtual synchrony](Property::VirtualSynchrony): processes that install V and then, as
//!    their next view, the same V', delivered the same messages while in V.
//! 7. [Self delivery](Property::SelfDelivery): if p casts m in V and later installs another
//!    view, p delivered m before leaving V; if V is p's last view and p is alive at the end, p
//!    delivered m. A cast made before any view puts no obligation here.
//! 8. [FIFO](Property::Fifo), every level, gap-free: if m1 and m2 are cast in this order by
//!    one sender with one sending view and q delivers m2, q delivered m1 before m2.
//! 9. [Causal](Property::Causal): if m happens before m' (one sender cast m then m', or the
//!    sender of m' delivered m before casting m', transitively through casts delivered at a
//!    causal level: a cast delivered at a lower level, out of causal order, brings only itself
//!    into its deliverer's past, not what its sender had delivered), m' is at a causal level, both
//!    have one sending view and q delivers m', q delivered m before m'. Pairs with one sender
//!    are FIFO's and are not reported again here.
//! 10. [Total](Property::Total): two processes that both deliver m and m', both at a total
//!     level, deliver them in the same order. For `Total` (not `Safe`) casts the order binds a
//!     process only in the views it survives (moves on from, or is alive in at the end): a
//!     process that crashes or is excluded may have delivered its last view's `Total` casts in
//!     an order the survivors never learnt, as with Isis' ABCAST (non-uniform total order).
//!     `Safe` casts are in one order at every process (uniform total order). With
//!     `Membership::Partitionable` two processes are held to one order for the casts of a view
//!     only if they went on to the same next view (or both stayed in it).
//! 11. [Uniform](Property::Uniform): if any process, even one that then crashes, delivers a
//!     `Safe` m while in V, every q that installed V and then another view delivered m before
//!     leaving V, and every q alive at the end with V its last view delivered m. Reported only
//!     when the delivering process and q did not both move on to the same next view: that case
//!     is virtual synchrony's. With `Membership::Partitionable` (extended virtual synchrony)
//!     the deliverer obliges q only if it is a member of q's next view: each side of a
//!     partition delivers at its own flush what all of that side holds.
//! 12. [Primary component](Property::PrimaryComponent), with `Membership::Primary` only: the
//!     distinct views installed, sorted by id, form a sequence in which each view keeps a
//!     strict majority of the members of the one before and names it in `prev`.
//! 13. [Liveness](Property::Liveness), when promised: the processes L alive at the end (if any)
//!     all have one last view W; with dynamic membership W's members are exactly L; with a
//!     bound, each of L installed W by `after + bound`; each of L delivered every message sent
//!     in W that a process of L delivered or cast (its own casts are self delivery's); a message
//!     that only crashed processes held is owed to nobody.
//! 14. [State transfer](Property::StateTransfer): for each view V, every `snapshot` of V (the
//!     state old members gave V's joiners) has one digest, and every `state` of V (installed by
//!     a joiner) has that digest too. A process takes a snapshot of V or installs a state of V
//!     only while in V and before delivering anything there, and installs V's state at most
//!     once. When the run promises state transfer, a process whose first view names a
//!     previous view (a joiner) installs its state before delivering anything in it. Where
//!     `view` events carry digests: processes that move from V to the same V' have one digest
//!     as they install V' (virtual synchrony, applied to the state), and a snapshot of V has the
//!     digest its taker had as it installed V.
//!
//! # Reports
//! Deterministic: the same history gives the same report, violations in property order and,
//! within a property, in the order of the processes (by endpoint) and of their events.
//! Bounded: at most [`MAX_PER_PROPERTY`] violations of each property are listed, and
//! [`Report::left_off`] counts the rest; a violation lists at most [`MAX_LISTED`] messages.
//! Any history, however inconsistent, is checked without panicking.
//!
//! # Cost
//! Linear in the events, times the number of processes for the vector clocks of the causal
//! check, plus one scan of the total-order deliveries per pair of processes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::ops::Range;

use hashbrown::{HashMap, HashSet};

use crate::history::{Event, History, Membership, MsgId, Promises};
use crate::ids::{Endpoint, View, ViewId};
use crate::level::Level;
use crate::time::Time;

/// How many violations of one property a report lists; the rest are counted in
/// [`Report::left_off`].
pub const MAX_PER_PROPERTY: usize = 20;

/// How many messages one violation lists; its detail says how many more there were.
pub const MAX_LISTED: usize = 10;

/// A guarantee of DESIGN.md section 1, as the checker names it.
///
/// # Examples
/// ```
/// use horus_core::check::Property;
/// assert_eq!(Property::SendingViewDelivery.to_string(), "sending view delivery");
/// assert!(Property::SelfInclusion < Property::Liveness);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Property {
    SelfInclusion,
    LocalMonotonicity,
    DeliveryIntegrity,
    NoDuplication,
    SendingViewDelivery,
    VirtualSynchrony,
    SelfDelivery,
    Fifo,
    Causal,
    Total,
    Uniform,
    PrimaryComponent,
    Liveness,
    StateTransfer,
}

impl Property {
    /// Every property, in the order reports list them.
    pub const ALL: [Property; 14] = [
        Property::SelfInclusion,
        Property::LocalMonotonicity,
        Property::DeliveryIntegrity,
        Property::NoDuplication,
        Property::SendingViewDelivery,
        Property::VirtualSynchrony,
        Property::SelfDelivery,
        Property::Fifo,
        Property::Causal,
        Property::Total,
        Property::Uniform,
        Property::PrimaryComponent,
        Property::Liveness,
        Property::StateTransfer,
    ];

    /// The property's name as DESIGN.md writes it, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Property::SelfInclusion => "self inclusion",
            Property::LocalMonotonicity => "local monotonicity",
            Property::DeliveryIntegrity => "delivery integrity",
            Property::NoDuplication => "no duplication",
            Property::SendingViewDelivery => "sending view delivery",
            Property::VirtualSynchrony => "virtual synchrony",
            Property::SelfDelivery => "self delivery",
            Property::Fifo => "fifo",
            Property::Causal => "causal",
            Property::Total => "total",
            Property::Uniform => "uniform",
            Property::PrimaryComponent => "primary component",
            Property::Liveness => "liveness",
            Property::StateTransfer => "state transfer",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One violation: the property, who and what it involves, and a sentence saying what happened.
///
/// `processes` starts with the process that broke the property (or failed to meet it), then
/// the witnesses; `messages` and `views` are the ones the detail names.
///
/// # Examples
/// ```
/// use horus_core::check::{Property, Violation};
/// use horus_core::Endpoint;
/// let v = Violation {
///     property: Property::SelfInclusion,
///     processes: vec![Endpoint::new(2, 0)],
///     messages: vec![],
///     views: vec![],
///     detail: "p2.0 installed a view without it".into(),
/// };
/// assert_eq!(v.to_string(), "self inclusion: p2.0 installed a view without it");
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    pub property: Property,
    pub processes: Vec<Endpoint>,
    pub messages: Vec<MsgId>,
    pub views: Vec<ViewId>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

/// What the checked history held.
///
/// # Examples
/// ```
/// use horus_core::check::check;
/// use horus_core::history::{History, Promises};
/// let stats = check(&History::new(), &Promises::default()).stats;
/// assert_eq!((stats.processes, stats.views, stats.casts, stats.deliveries), (0, 0, 0, 0));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct CheckStats {
    /// Processes (endpoints) with a history.
    pub processes: usize,
    /// Distinct views installed, by id.
    pub views: usize,
    /// `Cast` events.
    pub casts: usize,
    /// `Deliver` events.
    pub deliveries: usize,
}

/// The outcome of [`check`].
///
/// # Examples
/// ```
/// use horus_core::check::check;
/// use horus_core::history::{History, Promises};
/// let report = check(&History::new(), &Promises::default());
/// assert!(report.is_ok());
/// assert!(report.properties().is_empty());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Report {
    /// The violations found, in property order, at most [`MAX_PER_PROPERTY`] of each.
    pub violations: Vec<Violation>,
    /// Per property, how many further violations were found and left off the list.
    pub left_off: BTreeMap<Property, usize>,
    pub stats: CheckStats,
}

impl Report {
    /// Whether the history has every property checked.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty() && self.left_off.is_empty()
    }

    /// The properties violated.
    pub fn properties(&self) -> BTreeSet<Property> {
        self.violations.iter().map(|v| v.property).collect()
    }

    /// The listed violations of `property`.
    pub fn of(&self, property: Property) -> impl Iterator<Item = &Violation> + '_ {
        self.violations.iter().filter(move |v| v.property == property)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        if self.is_ok() {
            return write!(
                f,
                "no violations ({} processes, {} views, {} casts, {} deliveries)",
                s.processes, s.views, s.casts, s.deliveries
            );
        }
        for v in &self.violations {
            writeln!(f, "{v}")?;
        }
        for (p, n) in &self.left_off {
            writeln!(f, "{p}: ... and {n} more")?;
        }
        Ok(())
    }
}

/// Checks `history` against every property every run must have and those `promises` adds.
/// See the [module documentation](self) for the exact definitions.
///
/// # Examples
/// ```
/// use horus_core::check::{check, Property};
/// use horus_core::history::{Event, History, MsgId, Promises};
/// use horus_core::{Endpoint, Level, Time, View};
///
/// let (p, q) = (Endpoint::new(0, 0), Endpoint::new(1, 0));
/// let v = View::initial(vec![p, q]);
/// let m = MsgId { sender: p, seq: 1 };
/// let mut h = History::new();
/// h.record(Time(1), p, Event::View { view: v.clone(), digest: None });
/// h.record(Time(1), q, Event::View { view: v, digest: None });
/// h.record(Time(2), p, Event::Cast { id: m, level: Level::Fifo });
/// h.record(Time(3), p, Event::Deliver { id: m, from: p, level: Level::Fifo });
/// h.record(Time(3), q, Event::Deliver { id: m, from: p, level: Level::Fifo });
/// assert!(check(&h, &Promises::default()).is_ok());
///
/// h.record(Time(4), q, Event::Deliver { id: m, from: p, level: Level::Fifo });
/// let report = check(&h, &Promises::default());
/// assert_eq!(report.properties().into_iter().collect::<Vec<_>>(), [Property::NoDuplication]);
/// assert_eq!(report.violations[0].processes, [q]);
/// ```
pub fn check(history: &History, promises: &Promises) -> Report {
    let run = Run::new(history);
    let mut sink = Sink::default();
    run.self_inclusion(&mut sink);
    run.local_monotonicity(&mut sink);
    run.delivery_integrity(&mut sink);
    run.no_duplication(&mut sink);
    run.sending_view_delivery(&mut sink);
    run.virtual_synchrony(&mut sink);
    run.self_delivery(&mut sink);
    run.fifo(&mut sink);
    let clocks = run.replay(&mut sink);
    run.causal(&clocks, &mut sink);
    let partitionable = promises.membership == Membership::Partitionable;
    run.total(partitionable, &mut sink);
    run.uniform(partitionable, &mut sink);
    if promises.membership == Membership::Primary {
        run.primary_component(&mut sink);
    }
    if let Some(liveness) = &promises.liveness {
        run.liveness(promises.membership, liveness.after, liveness.bound, &mut sink);
    }
    run.state_transfer(promises.state_transfer, partitionable, &mut sink);
    // Checks emit in property order except the replay's integrity findings; a stable sort
    // keeps each property's own order.
    sink.violations.sort_by_key(|v| v.property);
    Report { violations: sink.violations, left_off: sink.left_off, stats: run.stats }
}

/// Collects violations, keeping at most [`MAX_PER_PROPERTY`] of each property.
#[derive(Default)]
struct Sink {
    violations: Vec<Violation>,
    listed: BTreeMap<Property, usize>,
    left_off: BTreeMap<Property, usize>,
}

/// The parts of a violation besides its property.
type Parts = (Vec<Endpoint>, Vec<MsgId>, Vec<ViewId>, String);

impl Sink {
    /// Records a violation of `property`; `parts` is only built when it will be listed.
    fn add(&mut self, property: Property, parts: impl FnOnce() -> Parts) {
        let listed = self.listed.entry(property).or_insert(0);
        if *listed >= MAX_PER_PROPERTY {
            *self.left_off.entry(property).or_insert(0) += 1;
            return;
        }
        *listed += 1;
        let (processes, messages, views, detail) = parts();
        self.violations.push(Violation { property, processes, messages, views, detail });
    }
}

/// At most [`MAX_LISTED`] messages, and how a detail says the list goes on.
fn listed(mut ids: Vec<MsgId>) -> (Vec<MsgId>, String) {
    let more = ids.len().saturating_sub(MAX_LISTED);
    ids.truncate(MAX_LISTED);
    let mut text = ids.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(" ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    (ids, text)
}

fn endpoints(es: &[Endpoint]) -> String {
    es.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
}

fn view_name(v: Option<ViewId>) -> String {
    v.map_or_else(|| "no view".to_string(), |v| v.to_string())
}

/// A message that was cast, indexed by its position in `Run::msgs`.
struct Msg {
    id: MsgId,
    sender: usize,
    /// Position of the cast in the sender's events.
    pos: usize,
    level: Level,
    /// The sender's segment (view) the cast was made in.
    seg: Option<usize>,
    /// The sender's count of casts before this one.
    ord: usize,
    /// Whether any process delivered it.
    delivered: bool,
}

/// The stretch of one process's history spent in one view.
struct Seg<'h> {
    view: &'h View,
    at: Time,
    /// The application's state digest as the process installed the view, if recorded.
    digest: Option<u64>,
    /// The ordinals of the casts the process made in this view.
    casts: Range<usize>,
    /// Messages first delivered in this view.
    delivered: HashSet<usize>,
}

/// One `Deliver` event.
struct Delivery {
    pos: usize,
    id: MsgId,
    from: Endpoint,
    level: Level,
    /// The message, if it was cast.
    msg: Option<usize>,
    seg: Option<usize>,
    /// Whether this is the process's first delivery of the message.
    first: bool,
}

struct Proc<'h> {
    ep: Endpoint,
    events: &'h [(Time, Event)],
    segs: Vec<Seg<'h>>,
    alive: bool,
    /// Messages this process cast, by ordinal.
    casts: Vec<usize>,
    deliveries: Vec<Delivery>,
    /// Message → position of its first delivery here.
    first_delivery: HashMap<usize, usize>,
}

impl Proc<'_> {
    fn view_of(&self, seg: Option<usize>) -> Option<ViewId> {
        seg.and_then(|s| self.segs.get(s)).map(|s| s.view.id)
    }

    fn last_view(&self) -> Option<&View> {
        self.segs.last().map(|s| s.view)
    }

    fn first_deliveries(&self) -> impl Iterator<Item = (&Delivery, usize)> + '_ {
        self.deliveries.iter().filter(|d| d.first).filter_map(|d| Some((d, d.msg?)))
    }
}

/// The history, indexed for the checks.
struct Run<'h> {
    procs: Vec<Proc<'h>>,
    msgs: Vec<Msg>,
    msg_index: HashMap<MsgId, usize>,
    stats: CheckStats,
}

impl<'h> Run<'h> {
    fn new(history: &'h History) -> Self {
        let mut procs = Vec::with_capacity(history.procs.len());
        let mut msgs = Vec::new();
        let mut msg_index = HashMap::new();
        let mut stats = CheckStats { processes: history.procs.len(), ..CheckStats::default() };
        let mut views = HashSet::new();

        // Views and casts first, so that deliveries can refer to casts made later.
        for (i, (ep, ph)) in history.procs.iter().enumerate() {
            let mut segs: Vec<Seg<'h>> = Vec::new();
            let mut casts = Vec::new();
            for (pos, (at, ev)) in ph.events.iter().enumerate() {
                match ev {
                    Event::View { view, digest } => {
                        views.insert(view.id);
                        let c = casts.len();
                        segs.push(Seg {
                            view,
                            at: *at,
                            digest: *digest,
                            casts: c..c,
                            delivered: HashSet::new(),
                        });
                    }
                    Event::Cast { id, level } => {
                        stats.casts += 1;
                        if id.sender != *ep || msg_index.contains_key(id) {
                            continue;
                        }
                        let m = msgs.len();
                        msg_index.insert(*id, m);
                        let seg = segs.len().checked_sub(1);
                        let ord = casts.len();
                        msgs.push(Msg {
                            id: *id,
                            sender: i,
                            pos,
                            level: *level,
                            seg,
                            ord,
                            delivered: false,
                        });
                        casts.push(m);
                        if let Some(s) = segs.last_mut() {
                            s.casts.end = casts.len();
                        }
                    }
                    Event::Deliver { .. } => stats.deliveries += 1,
                    Event::Snapshot { .. }
                    | Event::State { .. }
                    | Event::Crash
                    | Event::Exit
                    | Event::Leave => {}
                }
            }
            procs.push(Proc {
                ep: *ep,
                events: &ph.events,
                segs,
                alive: !ph.ended(),
                casts,
                deliveries: Vec::new(),
                first_delivery: HashMap::new(),
            });
        }
        stats.views = views.len();

        for proc in &mut procs {
            let mut seg = None;
            for (pos, (_, ev)) in proc.events.iter().enumerate() {
                match ev {
                    Event::View { .. } => seg = Some(seg.map_or(0, |s| s + 1)),
                    Event::Deliver { id, from, level } => {
                        // Only casts in their sender's own history were indexed.
                        let msg = msg_index.get(id).copied();
                        let mut first = false;
                        if let Some(m) = msg {
                            if !proc.first_delivery.contains_key(&m) {
                                first = true;
                                proc.first_delivery.insert(m, pos);
                                msgs[m].delivered = true;
                                if let Some(s) = seg.and_then(|s| proc.segs.get_mut(s)) {
                                    s.delivered.insert(m);
                                }
                            }
                        }
                        proc.deliveries.push(Delivery {
                            pos,
                            id: *id,
                            from: *from,
                            level: *level,
                            msg,
                            seg,
                            first,
                        });
                    }
                    Event::Cast { .. }
                    | Event::Snapshot { .. }
                    | Event::State { .. }
                    | Event::Crash
                    | Event::Exit
                    | Event::Leave => {}
                }
            }
        }
        Run { procs, msgs, msg_index, stats }
    }

    /// The sending view of message `m`.
    fn sending_view(&self, m: usize) -> Option<ViewId> {
        let msg = &self.msgs[m];
        self.procs[msg.sender].view_of(msg.seg)
    }

    fn self_inclusion(&self, sink: &mut Sink) {
        for p in &self.procs {
            for s in p.segs.iter().filter(|s| !s.view.contains(p.ep)) {
                sink.add(Property::SelfInclusion, || {
                    let detail =
                        format!("{} installed {}, which does not contain it", p.ep, s.view);
                    (vec![p.ep], vec![], vec![s.view.id], detail)
                });
            }
        }
    }

    fn local_monotonicity(&self, sink: &mut Sink) {
        for p in &self.procs {
            for w in p.segs.windows(2) {
                let (a, b) = (w[0].view.id, w[1].view.id);
                if b <= a {
                    sink.add(Property::LocalMonotonicity, || {
                        let detail = format!("{} installed {b} after {a}", p.ep);
                        (vec![p.ep], vec![], vec![a, b], detail)
                    });
                }
            }
        }
    }

    fn delivery_integrity(&self, sink: &mut Sink) {
        for p in &self.procs {
            for d in &p.deliveries {
                let mut wrong = Vec::new();
                match d.msg {
                    None => wrong.push(format!("which {} never cast", d.id.sender)),
                    Some(m) => {
                        if d.from != d.id.sender {
                            wrong.push(format!("as from {}", d.from));
                        }
                        let cast = self.msgs[m].level;
                        if d.level != cast {
                            wrong.push(format!("at level {}, but it was cast at {cast}", d.level));
                        }
                    }
                }
                if wrong.is_empty() {
                    continue;
                }
                sink.add(Property::DeliveryIntegrity, || {
                    let detail = format!("{} delivered {} {}", p.ep, d.id, wrong.join(" and "));
                    (vec![p.ep, d.id.sender], vec![d.id], vec![], detail)
                });
            }
        }
    }

    fn no_duplication(&self, sink: &mut Sink) {
        for p in &self.procs {
            for d in p.deliveries.iter().filter(|d| !d.first) {
                let Some(first) = d.msg.and_then(|m| p.first_delivery.get(&m)) else {
                    continue;
                };
                sink.add(Property::NoDuplication, || {
                    let at = |pos: usize| p.events.get(pos).map_or(Time::ZERO, |e| e.0);
                    let detail = format!(
                        "{} delivered {} again at {} (first at {})",
                        p.ep,
                        d.id,
                        at(d.pos),
                        at(*first)
                    );
                    (vec![p.ep], vec![d.id], vec![], detail)
                });
            }
        }
    }

    fn sending_view_delivery(&self, sink: &mut Sink) {
        for p in &self.procs {
            for d in &p.deliveries {
                let Some(m) = d.msg else { continue };
                let sent = self.sending_view(m);
                let here = p.view_of(d.seg);
                if sent.is_some() && sent == here {
                    continue;
                }
                sink.add(Property::SendingViewDelivery, || {
                    let detail = match sent {
                        Some(v) => format!(
                            "{} delivered {} in {}, but it was sent in {v}",
                            p.ep,
                            d.id,
                            view_name(here)
                        ),
                        None => format!(
                            "{} delivered {}, which was cast before its sender installed any view",
                            p.ep, d.id
                        ),
                    };
                    let views = sent.into_iter().chain(here).collect();
                    (vec![p.ep, d.id.sender], vec![d.id], views, detail)
                });
            }
        }
    }

    fn virtual_synchrony(&self, sink: &mut Sink) {
        // (V, V') → the processes that moved from V to V', with their segment in V.
        let mut moves: BTreeMap<(ViewId, ViewId), Vec<(usize, usize)>> = BTreeMap::new();
        for (i, p) in self.procs.iter().enumerate() {
            for (k, w) in p.segs.windows(2).enumerate() {
                moves.entry((w[0].view.id, w[1].view.id)).or_default().push((i, k));
            }
        }
        for ((v, next), movers) in &moves {
            if movers.len() < 2 {
                continue;
            }
            let mut union: HashSet<usize> = HashSet::new();
            for &(i, k) in movers {
                union.extend(self.procs[i].segs[k].delivered.iter().copied());
            }
            for &(i, k) in movers {
                let own = &self.procs[i].segs[k].delivered;
                if own.len() == union.len() {
                    continue;
                }
                let mut missing: Vec<usize> = union.difference(own).copied().collect();
                missing.sort_by_key(|&m| self.msgs[m].id);
                let p = self.procs[i].ep;
                sink.add(Property::VirtualSynchrony, || {
                    let witnesses: Vec<Endpoint> = movers
                        .iter()
                        .filter(|&&(j, l)| {
                            j != i && missing.iter().any(|m| self.procs[j].segs[l].delivered.contains(m))
                        })
                        .map(|&(j, _)| self.procs[j].ep)
                        .collect();
                    let ids = missing.iter().map(|&m| self.msgs[m].id).collect();
                    let (ids, text) = listed(ids);
                    let detail = format!(
                        "{p} moved from {v} to {next} without delivering {text}, which {} delivered in {v} before moving to {next} too",
                        endpoints(&witnesses)
                    );
                    let processes = std::iter::once(p).chain(witnesses).collect();
                    (processes, ids, vec![*v, *next], detail)
                });
            }
        }
    }

    fn self_delivery(&self, sink: &mut Sink) {
        for (m, msg) in self.msgs.iter().enumerate() {
            let p = &self.procs[msg.sender];
            let Some(k) = msg.seg else { continue };
            let Some(seg) = p.segs.get(k) else { continue };
            let next = p.segs.get(k + 1).map(|s| s.view.id);
            if (next.is_none() && !p.alive) || seg.delivered.contains(&m) {
                continue;
            }
            sink.add(Property::SelfDelivery, || {
                let v = seg.view.id;
                let detail = match next {
                    Some(n) => format!(
                        "{} cast {} in {v} but did not deliver it before installing {n}",
                        p.ep, msg.id
                    ),
                    None => format!(
                        "{} cast {} in {v} and never delivered it, though it was alive at the end",
                        p.ep, msg.id
                    ),
                };
                (vec![p.ep], vec![msg.id], std::iter::once(v).chain(next).collect(), detail)
            });
        }
    }

    fn fifo(&self, sink: &mut Sink) {
        /// One receiver's progress through one sender's casts in one view.
        struct Stream {
            got: Vec<bool>,
            /// How many of the casts, from the first, were delivered.
            prefix: usize,
            reported: bool,
        }
        for q in &self.procs {
            let mut streams: HashMap<(usize, usize), Stream> = HashMap::new();
            for (_, m2) in q.first_deliveries() {
                let msg = &self.msgs[m2];
                let Some(k) = msg.seg else { continue };
                let sender = &self.procs[msg.sender];
                let Some(range) = sender.segs.get(k).map(|s| s.casts.clone()) else {
                    continue;
                };
                let Some(i) = msg.ord.checked_sub(range.start).filter(|&i| i < range.len()) else {
                    continue;
                };
                let stream = streams.entry((msg.sender, k)).or_insert_with(|| Stream {
                    got: vec![false; range.len()],
                    prefix: 0,
                    reported: false,
                });
                if i > stream.prefix && !stream.reported {
                    stream.reported = true;
                    let m1 = sender.casts[range.start + stream.prefix];
                    sink.add(Property::Fifo, || {
                        let (id1, id2) = (self.msgs[m1].id, msg.id);
                        let v = sender.segs[k].view.id;
                        let how =
                            if q.first_delivery.contains_key(&m1) { "before" } else { "but never" };
                        let detail =
                            format!("{} delivered {id2} {how} {id1} (both sent in {v})", q.ep);
                        (vec![q.ep, sender.ep], vec![id1, id2], vec![v], detail)
                    });
                }
                stream.got[i] = true;
                while stream.got.get(stream.prefix) == Some(&true) {
                    stream.prefix += 1;
                }
            }
        }
    }

    /// Replays the histories in an order consistent with causality (a delivery after its cast)
    /// and returns, per message, the vector clock of its cast: for each process, how many of
    /// its casts happened before this one. A delivery that no order can put after its cast is
    /// a delivery integrity violation and is skipped.
    fn replay(&self, sink: &mut Sink) -> Vec<Option<Box<[u32]>>> {
        let n = self.procs.len();
        let mut stamps: Vec<Option<Box<[u32]>>> = vec![None; self.msgs.len()];
        let mut clocks = vec![vec![0u32; n]; n];
        let mut cursor = vec![0usize; n];
        // Per process, the index in `deliveries` of the next `Deliver` event.
        let mut next_delivery = vec![0usize; n];
        let mut ready: VecDeque<usize> = (0..n).collect();
        let mut waiting: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut blocked: BTreeMap<usize, usize> = BTreeMap::new();
        loop {
            while let Some(p) = ready.pop_front() {
                let proc = &self.procs[p];
                while let Some((_, ev)) = proc.events.get(cursor[p]) {
                    match ev {
                        Event::Cast { id, .. } => {
                            let m = self.msg_index.get(id).copied();
                            if let Some(m) = m.filter(|&m| {
                                self.msgs[m].sender == p && self.msgs[m].pos == cursor[p]
                            }) {
                                stamps[m] = Some(clocks[p].clone().into_boxed_slice());
                                clocks[p][p] = clocks[p][p].saturating_add(1);
                                for w in waiting.remove(&m).unwrap_or_default() {
                                    blocked.remove(&w);
                                    ready.push_back(w);
                                }
                            }
                        }
                        Event::Deliver { .. } => {
                            let d = proc.deliveries.get(next_delivery[p]);
                            if let Some(m) = d.and_then(|d| d.msg) {
                                match &stamps[m] {
                                    Some(stamp) => {
                                        let clock = &mut clocks[p];
                                        let msg = &self.msgs[m];
                                        // Only a cast delivered in causal order brings its
                                        // sender's past along; any other, only itself.
                                        if msg.level.is_causal() {
                                            for (c, s) in clock.iter_mut().zip(stamp.iter()) {
                                                *c = (*c).max(*s);
                                            }
                                        }
                                        let after = u32::try_from(msg.ord + 1).unwrap_or(u32::MAX);
                                        clock[msg.sender] = clock[msg.sender].max(after);
                                    }
                                    None => {
                                        waiting.entry(m).or_default().push(p);
                                        blocked.insert(p, m);
                                        break;
                                    }
                                }
                            }
                            next_delivery[p] += 1;
                        }
                        Event::View { .. }
                        | Event::Snapshot { .. }
                        | Event::State { .. }
                        | Event::Crash
                        | Event::Exit
                        | Event::Leave => {}
                    }
                    cursor[p] += 1;
                }
            }
            // Every process left is waiting for a cast that waits on it: a causality cycle.
            let Some((p, m)) = blocked.pop_first() else {
                break;
            };
            if let Some(ws) = waiting.get_mut(&m) {
                ws.retain(|&w| w != p);
            }
            let (ep, id) = (self.procs[p].ep, self.msgs[m].id);
            sink.add(Property::DeliveryIntegrity, || {
                let detail = format!(
                    "{ep} delivered {id} before it was cast (no order of the histories puts the cast first)"
                );
                (vec![ep, id.sender], vec![id], vec![], detail)
            });
            cursor[p] += 1;
            next_delivery[p] += 1;
            ready.push_back(p);
        }
        stamps
    }

    fn causal(&self, stamps: &[Option<Box<[u32]>>], sink: &mut Sink) {
        // Per sender, per view: the ordinals of its casts there.
        let ranges: Vec<HashMap<ViewId, Vec<Range<usize>>>> = self
            .procs
            .iter()
            .map(|p| {
                let mut by_view: HashMap<ViewId, Vec<Range<usize>>> = HashMap::new();
                for s in p.segs.iter().filter(|s| !s.casts.is_empty()) {
                    by_view.entry(s.view.id).or_default().push(s.casts.clone());
                }
                by_view
            })
            .collect();
        let mut reported: HashSet<(usize, usize)> = HashSet::new();
        for (qi, q) in self.procs.iter().enumerate() {
            for (d, m2) in q.first_deliveries() {
                let msg2 = &self.msgs[m2];
                if !msg2.level.is_causal() {
                    continue;
                }
                let (Some(view), Some(stamp)) = (self.sending_view(m2), &stamps[m2]) else {
                    continue;
                };
                for (s, &before) in stamp.iter().enumerate() {
                    // The sender's own earlier casts are FIFO's business.
                    if s == msg2.sender || before == 0 {
                        continue;
                    }
                    let Some(spans) = ranges[s].get(&view) else {
                        continue;
                    };
                    // The latest of s's casts in this view that happened before m2: if FIFO
                    // holds, q delivering it before m2 covers the earlier ones.
                    let k = before as usize;
                    let latest =
                        spans.iter().filter(|r| r.start < k).map(|r| r.end.min(k) - 1).max();
                    let Some(m1) = latest.and_then(|o| self.procs[s].casts.get(o).copied()) else {
                        continue;
                    };
                    let on_time = q.first_delivery.get(&m1).is_some_and(|&pos| pos < d.pos);
                    if on_time || !reported.insert((qi, m1)) {
                        continue;
                    }
                    sink.add(Property::Causal, || {
                        let (id1, id2) = (self.msgs[m1].id, msg2.id);
                        let how = if q.first_delivery.contains_key(&m1) { "before" } else { "but never" };
                        let detail = format!(
                            "{} delivered {id2} {how} {id1}, which happened before it (both sent in {view})",
                            q.ep
                        );
                        (vec![q.ep, id1.sender, id2.sender], vec![id1, id2], vec![view], detail)
                    });
                }
            }
        }
    }

    fn total(&self, partitionable: bool, sink: &mut Sink) {
        // Each process's total-level deliveries that the order binds: all `Safe` ones, and the
        // `Total` ones made in a view the process survived (moved on from, or was alive in at
        // the end). A process that crashes or is excluded may have delivered `Total` casts of
        // its last view in an order the survivors never learnt: non-uniform total order.
        let sequences: Vec<Vec<usize>> = self
            .procs
            .iter()
            .map(|p| {
                p.first_deliveries()
                    .filter(|&(d, m)| {
                        let level = self.msgs[m].level;
                        let survived = d.seg.is_some_and(|k| k + 1 < p.segs.len() || p.alive);
                        level.is_total() && (level.is_safe() || survived)
                    })
                    .map(|(_, m)| m)
                    .collect()
            })
            .collect();
        let positions: Vec<HashMap<usize, usize>> = sequences
            .iter()
            .map(|seq| seq.iter().enumerate().map(|(i, &m)| (m, i)).collect())
            .collect();
        // Partitionable: the view each process went on to after delivering each message.
        let next: Vec<HashMap<usize, Option<ViewId>>> = self
            .procs
            .iter()
            .map(|p| {
                let after = |d: &Delivery| p.view_of(d.seg.map(|k| k + 1));
                p.first_deliveries().filter(|_| partitionable).map(|(d, m)| (m, after(d))).collect()
            })
            .collect();
        for (i, p) in self.procs.iter().enumerate() {
            for (j, q) in self.procs.iter().enumerate().skip(i + 1) {
                // The message p delivered earliest that q delivered latest so far.
                let mut ahead: Option<(usize, usize)> = None;
                for &m in &sequences[i] {
                    let Some(&pos) = positions[j].get(&m) else {
                        continue;
                    };
                    if partitionable && next[i].get(&m) != next[j].get(&m) {
                        // Gone on to different views: each side ordered the casts it lacked an
                        // order for at its own flush (the transitional configuration).
                        continue;
                    }
                    match ahead {
                        Some((at, earlier)) if pos < at => {
                            sink.add(Property::Total, || {
                                let (a, b) = (self.msgs[earlier].id, self.msgs[m].id);
                                let detail = format!(
                                    "{} delivered {a} before {b}, {} delivered them in the other order",
                                    p.ep, q.ep
                                );
                                (vec![p.ep, q.ep], vec![a, b], vec![], detail)
                            });
                            break;
                        }
                        _ => ahead = Some((pos, m)),
                    }
                }
            }
        }
    }

    fn uniform(&self, partitionable: bool, sink: &mut Sink) {
        /// A process that delivered a message in a view, and the view it installed next.
        type Deliverer = (usize, Option<ViewId>);
        // (message, view it was delivered in) → its deliverers there.
        let mut deliverers: BTreeMap<(usize, ViewId), Vec<Deliverer>> = BTreeMap::new();
        // View → (process, its segment there) for every installation.
        let mut installed: HashMap<ViewId, Vec<(usize, usize)>> = HashMap::new();
        for (i, p) in self.procs.iter().enumerate() {
            for (k, s) in p.segs.iter().enumerate() {
                installed.entry(s.view.id).or_default().push((i, k));
            }
            for (d, m) in p.first_deliveries() {
                let Some(k) = d.seg.filter(|_| self.msgs[m].level.is_safe()) else {
                    continue;
                };
                let (Some(v), next) = (p.view_of(Some(k)), p.view_of(Some(k + 1))) else {
                    continue;
                };
                deliverers.entry((m, v)).or_default().push((i, next));
            }
        }
        for (&(m, v), ds) in &deliverers {
            for &(qi, k) in installed.get(&v).map_or(&[][..], |x| x) {
                let q = &self.procs[qi];
                if q.segs[k].delivered.contains(&m) {
                    continue;
                }
                let next = q.view_of(Some(k + 1));
                if next.is_none() && !q.alive {
                    continue; // q crashed or left while in V: no obligation.
                }
                // Both moving on to one next view is virtual synchrony's case. Partitionable:
                // only a deliverer that stays connected with q (in q's next view) obliges it.
                let next_holds = |d: usize| {
                    let ep = self.procs[d].ep;
                    q.segs.get(k + 1).is_none_or(|s| s.view.contains(ep))
                };
                let witness = ds.iter().find(|&&(d, dn)| {
                    d != qi && !(dn.is_some() && dn == next) && (!partitionable || next_holds(d))
                });
                let Some(&(d, _)) = witness else { continue };
                sink.add(Property::Uniform, || {
                    let (id, dp) = (self.msgs[m].id, self.procs[d].ep);
                    let detail = match next {
                        Some(n) => format!(
                            "{} installed {n} without delivering {id} in {v}, which {dp} delivered there",
                            q.ep
                        ),
                        None => format!(
                            "{} stayed alive in {v} without delivering {id}, which {dp} delivered there",
                            q.ep
                        ),
                    };
                    (vec![q.ep, dp], vec![id], std::iter::once(v).chain(next).collect(), detail)
                });
            }
        }
    }

    fn primary_component(&self, sink: &mut Sink) {
        let mut views: BTreeMap<ViewId, &View> = BTreeMap::new();
        for p in &self.procs {
            for s in &p.segs {
                views.entry(s.view.id).or_insert(s.view);
            }
        }
        let views: Vec<&View> = views.into_values().collect();
        // A member that asked to leave and whose last view is `a` took part in the change
        // that removed it: it counts toward the majority, as it can join no other component.
        let left: BTreeSet<(Endpoint, ViewId)> = self
            .procs
            .iter()
            .filter(|p| p.events.iter().any(|(_, e)| matches!(e, Event::Leave)))
            .filter_map(|p| p.segs.last().map(|s| (p.ep, s.view.id)))
            .collect();
        for w in views.windows(2) {
            let (a, b) = (w[0], w[1]);
            let a_members: BTreeSet<Endpoint> = a.members.iter().copied().collect();
            let b_members: BTreeSet<Endpoint> = b.members.iter().copied().collect();
            let kept = a_members
                .iter()
                .filter(|e| b_members.contains(e) || left.contains(&(**e, a.id)))
                .count();
            let majority = 2 * kept > a_members.len();
            let follows = b.prev.contains(&a.id);
            if majority && follows {
                continue;
            }
            sink.add(Property::PrimaryComponent, || {
                let mut why = Vec::new();
                if !majority {
                    why.push(format!(
                        "keeps {kept} of the {} members of {}",
                        a_members.len(),
                        a.id
                    ));
                }
                if !follows {
                    why.push(format!("does not name {} among the views it was made from", a.id));
                }
                let detail = format!("{} {}", b.id, why.join(" and "));
                let processes =
                    b.members.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
                (processes, vec![], vec![a.id, b.id], detail)
            });
        }
    }

    fn liveness(
        &self,
        membership: Membership,
        after: Time,
        bound: Option<std::time::Duration>,
        sink: &mut Sink,
    ) {
        let live: Vec<&Proc<'_>> = self.procs.iter().filter(|p| p.alive).collect();
        let Some(first) = live.first() else { return };
        let last = first.last_view();
        let settled = last.is_some()
            && live.iter().all(|p| p.last_view().map(|v| v.id) == last.map(|v| v.id));
        let Some(w) = last.filter(|_| settled) else {
            sink.add(Property::Liveness, || {
                let each: Vec<String> = live
                    .iter()
                    .map(|p| format!("{} in {}", p.ep, view_name(p.last_view().map(|v| v.id))))
                    .collect();
                let views: BTreeSet<ViewId> =
                    live.iter().filter_map(|p| p.last_view().map(|v| v.id)).collect();
                let detail = format!(
                    "the processes alive at the end did not settle on one view: {}",
                    each.join(", ")
                );
                (live.iter().map(|p| p.ep).collect(), vec![], views.into_iter().collect(), detail)
            });
            return;
        };

        let live_set: BTreeSet<Endpoint> = live.iter().map(|p| p.ep).collect();
        let members: BTreeSet<Endpoint> = w.members.iter().copied().collect();
        if membership != Membership::Static && members != live_set {
            sink.add(Property::Liveness, || {
                let absent: Vec<Endpoint> = live_set.difference(&members).copied().collect();
                let gone: Vec<Endpoint> = members.difference(&live_set).copied().collect();
                let mut why = Vec::new();
                if !absent.is_empty() {
                    why.push(format!("lacks {}, alive at the end", endpoints(&absent)));
                }
                if !gone.is_empty() {
                    why.push(format!("holds {}, not alive at the end", endpoints(&gone)));
                }
                let detail = format!("the last view {} {}", w.id, why.join(" and "));
                (absent.into_iter().chain(gone).collect(), vec![], vec![w.id], detail)
            });
        }

        if let Some(bound) = bound {
            let deadline = after + bound;
            for p in &live {
                let Some(at) = p.segs.last().map(|s| s.at).filter(|&at| at > deadline) else {
                    continue;
                };
                sink.add(Property::Liveness, || {
                    let detail = format!(
                        "{} installed {} at {at}, after the deadline {deadline}",
                        p.ep, w.id
                    );
                    (vec![p.ep], vec![], vec![w.id], detail)
                });
            }
        }

        let mut owed: Vec<usize> = (0..self.msgs.len())
            .filter(|&m| {
                let msg = &self.msgs[m];
                // Owed: what a live process cast or delivered. A message only crashed
                // processes ever held cannot be demanded of anyone (uniformity is the safe
                // level's promise, checked apart).
                self.sending_view(m) == Some(w.id)
                    && (self.procs[msg.sender].alive
                        || live.iter().any(|p| p.first_delivery.contains_key(&m)))
            })
            .collect();
        owed.sort_by_key(|&m| self.msgs[m].id);
        for (i, p) in self.procs.iter().enumerate().filter(|(_, p)| p.alive) {
            // A live sender's own messages are self delivery's.
            let missing: Vec<MsgId> = owed
                .iter()
                .filter(|&&m| self.msgs[m].sender != i && !p.first_delivery.contains_key(&m))
                .map(|&m| self.msgs[m].id)
                .collect();
            if missing.is_empty() {
                continue;
            }
            sink.add(Property::Liveness, || {
                let (ids, text) = listed(missing);
                let detail =
                    format!("{} never delivered {text}, sent in its last view {}", p.ep, w.id);
                (vec![p.ep], ids, vec![w.id], detail)
            });
        }
    }

    fn state_transfer(&self, promised: bool, partitionable: bool, sink: &mut Sink) {
        // View → the first snapshot of it, by process order: the digest every other snapshot
        // and every state of that view must have.
        let mut first: BTreeMap<ViewId, (Endpoint, u64)> = BTreeMap::new();
        for p in &self.procs {
            for (_, ev) in p.events {
                if let Event::Snapshot { view, digest } = ev {
                    first.entry(*view).or_insert((p.ep, *digest));
                }
            }
        }
        for p in &self.procs {
            // The view p is in, whether it delivered there yet, and whether it still owes
            // itself the state of the view it joined in.
            let mut seg: Option<usize> = None;
            let mut delivered = false;
            let mut owed = false;
            let mut installed: BTreeSet<ViewId> = BTreeSet::new();
            for (_, ev) in p.events {
                match ev {
                    Event::View { view, .. } => {
                        // A joiner: its first view was made from an earlier one.
                        owed = promised && seg.is_none() && !view.prev.is_empty();
                        seg = Some(seg.map_or(0, |s| s + 1));
                        delivered = false;
                    }
                    Event::Deliver { id, .. } => {
                        if owed {
                            owed = false;
                            let v = p.view_of(seg);
                            sink.add(Property::StateTransfer, || {
                                let detail = format!(
                                    "{} delivered {id} in {}, which it joined, before installing its state",
                                    p.ep,
                                    view_name(v)
                                );
                                (vec![p.ep], vec![*id], v.into_iter().collect(), detail)
                            });
                        }
                        delivered = true;
                    }
                    Event::Snapshot { view, digest } => {
                        self.check_boundary(p, seg, delivered, *view, "took a snapshot of", sink);
                        let ours = p.segs.get(seg.unwrap_or(usize::MAX));
                        if let Some(d) = ours.filter(|s| s.view.id == *view).and_then(|s| s.digest)
                        {
                            if d != *digest {
                                sink.add(Property::StateTransfer, || {
                                    let detail = format!(
                                        "{} took a snapshot of digest {digest:#x} for {view}, but had digest {d:#x} as it installed {view}",
                                        p.ep
                                    );
                                    (vec![p.ep], vec![], vec![*view], detail)
                                });
                            }
                        }
                        self.check_equal(p.ep, "snapshot", *view, *digest, &first, sink);
                    }
                    Event::State { view, digest } => {
                        self.check_boundary(
                            p,
                            seg,
                            delivered,
                            *view,
                            "installed the state of",
                            sink,
                        );
                        if !installed.insert(*view) {
                            sink.add(Property::StateTransfer, || {
                                let detail =
                                    format!("{} installed the state of {view} twice", p.ep);
                                (vec![p.ep], vec![], vec![*view], detail)
                            });
                        }
                        if p.view_of(seg) == Some(*view) {
                            owed = false;
                        }
                        self.check_equal(p.ep, "state", *view, *digest, &first, sink);
                    }
                    Event::Cast { .. } | Event::Crash | Event::Exit | Event::Leave => {}
                }
            }
        }
        // Virtual synchrony of the state: one digest among those moving from V to V'. With
        // partitionable membership the two sides of a merge keep the states they had (the
        // application reconciles them), so only those that entered V with one state are held
        // to one state in V'.
        let mut moved: BTreeMap<(ViewId, ViewId, Option<u64>), (Endpoint, u64)> = BTreeMap::new();
        for p in &self.procs {
            for w in p.segs.windows(2) {
                let Some(d) = w[1].digest else { continue };
                let (from, to) = (w[0].view.id, w[1].view.id);
                let entered = if partitionable { w[0].digest } else { None };
                match moved.get(&(from, to, entered)) {
                    None => {
                        moved.insert((from, to, entered), (p.ep, d));
                    }
                    Some(&(q, dq)) if dq != d => sink.add(Property::StateTransfer, || {
                        let detail = format!(
                            "{} and {q} both moved from {from} to {to}, with digests {d:#x} and {dq:#x}",
                            p.ep
                        );
                        (vec![p.ep, q], vec![], vec![from, to], detail)
                    }),
                    Some(_) => {}
                }
            }
        }
    }

    /// A snapshot or state of `view` at `p` must be taken or installed in `view`, before any
    /// delivery there.
    fn check_boundary(
        &self,
        p: &Proc<'_>,
        seg: Option<usize>,
        delivered: bool,
        view: ViewId,
        what: &str,
        sink: &mut Sink,
    ) {
        let current = p.view_of(seg);
        if current != Some(view) {
            sink.add(Property::StateTransfer, || {
                let detail = format!("{} {what} {view} while in {}", p.ep, view_name(current));
                (vec![p.ep], vec![], std::iter::once(view).chain(current).collect(), detail)
            });
        } else if delivered {
            sink.add(Property::StateTransfer, || {
                let detail =
                    format!("{} {what} {view} after delivering in it, not at its boundary", p.ep);
                (vec![p.ep], vec![], vec![view], detail)
            });
        }
    }

    /// A snapshot or state of `view` must have the digest of the first snapshot of `view`.
    fn check_equal(
        &self,
        who: Endpoint,
        what: &str,
        view: ViewId,
        digest: u64,
        first: &BTreeMap<ViewId, (Endpoint, u64)>,
        sink: &mut Sink,
    ) {
        let Some(&(q, d)) = first.get(&view) else { return };
        if d == digest {
            return;
        }
        sink.add(Property::StateTransfer, || {
            let detail = format!(
                "{who}'s {what} of {view} has digest {digest:#x}, {q}'s snapshot of it {d:#x}"
            );
            (vec![who, q], vec![], vec![view], detail)
        });
    }
}
