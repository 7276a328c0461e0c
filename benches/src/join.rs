//! `--join NAME`: this process is one member of a benchmark group spread over hosts.
//!
//! Every host runs the same command, with `--members` counting the members on all of them;
//! the process starts no children. It joins the group NAME over the network of its `--bind`
//! address: multicast goes out of and comes in on that interface, or, with `--transport
//! unicast`, members find each other through `--seeds`. Whoever starts first founds the
//! group and the others join it; of members that start together and hear each other only
//! the lowest endpoint founds ([`horus::GroupBuilder::founder`]), so they form one group.
//!
//! From the view of all `--members` on, the members coordinate over the group itself, by
//! [`Note`]s cast at fifo behind [`NOTE_TAG`], which no benchmark message can carry. A
//! member's index is its rank in that full view.
//!
//! 1. Each casts its settings, and checks every member's against its own: one that differs
//!    ends the run at every member with [`BenchError::Mismatch`], naming the flag and the
//!    member.
//! 2. A member that has every member's settings starts its sender, if it is one (all, or with
//!    `--senders one` the last rank: not the coordinator, which sequences total order). This
//!    is the `go` of a run on one host.
//! 3. A member that has delivered every message casts its result.
//! 4. Once it has every member's result, the raw UDP baseline (unless `--no-baseline`): it
//!    opens raw sockets as a member process of a run on one host does (multicast to an
//!    address derived from NAME`-raw`, on the same interface; or unicast on the `--bind`
//!    address) and casts their address; once it knows every member's, it gives its raw member
//!    the orders a local run's parent gives: the addresses (unicast) and `go`; `drain` once
//!    every raw sender has cast that it is done. Then it casts its raw result.
//! 5. Once it has every raw result it leaves the group and computes the report from the
//!    results in rank order: every member prints the same report.
//!
//! A note of a later step may come before this member got there (fifo orders each member's
//! notes, not the members'), so notes are kept by kind and rank until they are looked at.
//!
//! # Bounds and failures
//! `--timeout` bounds the horus half from the start (joining, the full view, the settings,
//! the deliveries, the results) and the raw half from its start. A view that never fills, a
//! member lost, deliveries or results that never come: each ends the run with an error naming
//! what was waited for and from whom. A member that fails casts why before it leaves, so the
//! others end with its reason rather than a bare loss. A member leaves only once it has every
//! result, and virtual synchrony delivers those results to every member that sees it leave
//! before the view without it: a member that has finished never makes another fail.
//!
//! # Clocks
//! Latency is the receiver's `CLOCK_REALTIME` at delivery less the sender's when it cast
//! ([`crate::proto::now_ns`]). Across hosts that is only as good as the hosts' clock
//! synchronization: an offset between two clocks adds to or takes from every latency between
//! them. Throughput is measured on each member's own clock and does not depend on it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use horus::{Endpoint, Event, Group, Level, View, ViewChange};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::BenchError;
use crate::multi::{self, in_member, BenchArgs, Report, Senders, Spec, Tally, Transport};
use crate::proto::{Line, MemberResult, Order, NOTE_TAG};
use crate::raw;

/// Where a member is bound unless `--bind` says otherwise.
const DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// How long a member waits for its leave to finish, and, when it fails, for the note saying
/// why to go out before it.
const LEAVE_BOUND: Duration = Duration::from_secs(5);

/// What to check when the view does not fill.
const REACH: &str = "check that every member runs --join with the same NAME and --members, \
                     that they reach each other (multicast out of the --bind interface; or \
                     --transport unicast with --seeds naming the others), and that no other \
                     run uses the name; members that could not hear each other when they \
                     started may have founded groups of their own: start them again";

/// What to check when a run is too slow to finish in time.
const SLOW: &str = "raise --timeout, or lower --count, if the hosts or the network are too \
                    slow for this run";

/// The flags every member of a run must agree on; `--json`, `--timeout` and the network
/// flags are each member's own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    version: String,
    members: usize,
    senders: Senders,
    size: usize,
    count: u32,
    level: String,
    transport: Transport,
    rate: Option<f64>,
    no_baseline: bool,
    stack: String,
}

impl Settings {
    pub(crate) fn of(args: &BenchArgs) -> Settings {
        Settings {
            version: env!("CARGO_PKG_VERSION").into(),
            members: args.members,
            senders: args.senders,
            size: args.size,
            count: args.count,
            level: args.level.as_str().into(),
            transport: args.transport,
            rate: args.rate,
            no_baseline: args.no_baseline,
            stack: args.stack.clone(),
        }
    }

    /// The first setting in which `other` differs from these: its flag, this value, that.
    pub(crate) fn difference(&self, other: &Settings) -> Option<(&'static str, String, String)> {
        let rate = |r: Option<f64>| r.map_or("none".into(), |r| r.to_string());
        let fields = [
            ("the version of horus bench", self.version.clone(), other.version.clone()),
            ("--members", self.members.to_string(), other.members.to_string()),
            ("--senders", self.senders.to_string(), other.senders.to_string()),
            ("--size", self.size.to_string(), other.size.to_string()),
            ("--count", self.count.to_string(), other.count.to_string()),
            ("--level", self.level.clone(), other.level.clone()),
            ("--transport", self.transport.to_string(), other.transport.to_string()),
            ("--rate", rate(self.rate), rate(other.rate)),
            ("--no-baseline", self.no_baseline.to_string(), other.no_baseline.to_string()),
            ("--stack", self.stack.clone(), other.stack.clone()),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }
}

/// What a member says to the others, cast at fifo behind [`NOTE_TAG`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Note {
    /// Its settings, and its unicast address (which names it in errors).
    Settings { addr: SocketAddr, settings: Settings },
    /// Horus: it delivered every message.
    Result(MemberResult),
    /// Raw UDP: its sockets are open; the unicast address others send to.
    RawBound { addr: SocketAddr },
    /// Raw UDP: it sent everything.
    RawSent,
    /// Raw UDP: its socket fell quiet, or it received everything.
    RawResult(MemberResult),
    /// It failed, and why.
    Failed { message: String },
}

impl Note {
    fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::from(&NOTE_TAG[..]);
        serde_json::to_writer((&mut buf).writer(), self)
            .expect("a note of numbers and strings serializes");
        buf.freeze()
    }

    /// The note in `data`: `None` if it is not one (a benchmark message); an error if it is
    /// one that does not decode.
    fn read(data: &[u8]) -> Option<Result<Note, String>> {
        let body = data.strip_prefix(&NOTE_TAG[..])?;
        Some(serde_json::from_slice(body).map_err(|e| e.to_string()))
    }
}

/// What the members said, by rank in the full view.
#[derive(Debug)]
struct Board {
    addr: Vec<Option<SocketAddr>>,
    /// Settings equal to this member's (one that differs ends the run at once).
    settings: Vec<Option<()>>,
    horus: Vec<Option<MemberResult>>,
    raw_addr: Vec<Option<SocketAddr>>,
    raw_sent: Vec<Option<()>>,
    raw: Vec<Option<MemberResult>>,
}

impl Board {
    fn new(n: usize) -> Board {
        Board {
            addr: vec![None; n],
            settings: vec![None; n],
            horus: vec![None; n],
            raw_addr: vec![None; n],
            raw_sent: vec![None; n],
            raw: vec![None; n],
        }
    }
}

/// Every entry, in rank order, once all are in.
fn all<T: Clone>(said: &[Option<T>]) -> Option<Vec<T>> {
    said.iter().cloned().collect()
}

/// The ranks not heard from yet.
fn missing<T>(said: &[Option<T>]) -> Vec<usize> {
    said.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i).collect()
}

/// The full view, and this member's place in it.
#[derive(Debug)]
struct Full {
    view: Arc<View>,
    /// This member's settings as a member process's: its index, whether it sends.
    spec: Spec,
}

/// The raw UDP member running beside this one, on a thread of its own.
#[derive(Debug)]
struct RawRun {
    orders: std::sync::mpsc::Sender<Order>,
    lines: mpsc::UnboundedReceiver<Line>,
    went: bool,
    drained: bool,
}

/// What the members measured, in rank order: horus, and raw UDP unless `--no-baseline`.
type Results = (Vec<MemberResult>, Option<Vec<MemberResult>>);

/// Runs one member of the group `name` (`--join NAME`); blocks until every member's results are
/// in and the member has left, or until the run fails. See the [module doc](self).
///
/// # Errors
/// [`BenchError::BadArgs`] before anything starts; [`BenchError::Mismatch`] when the members'
/// settings differ; [`BenchError::TimedOut`], [`BenchError::Member`] or
/// [`BenchError::InMember`] when the run cannot finish. The member has left the group (or
/// stopped) by the time it returns.
pub(crate) fn run(args: &BenchArgs, name: &str) -> Result<Report, BenchError> {
    args.validate()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| in_member(format!("cannot start the tokio runtime: {e}")))?;
    let outcome = rt.block_on(join(args, name.to_owned(), rt.handle().clone()));
    // A paced sender may still be sleeping in its thread: do not wait for it.
    rt.shutdown_background();
    outcome
}

async fn join(
    args: &BenchArgs,
    name: String,
    rt: tokio::runtime::Handle,
) -> Result<Report, BenchError> {
    let start = Instant::now();
    let bind = args.bind.unwrap_or(DEFAULT_BIND);
    let group_addr = match args.transport {
        Transport::Multicast => args.multicast.or_else(|| horus::default_transport(&name).group()),
        Transport::Unicast => None,
    };
    let group = Group::builder(&name)
        .stack(&args.stack)
        .transport(multi::transport(group_addr, &args.seeds, bind))
        .join_timeout(args.timeout)
        .leave_timeout(LEAVE_BOUND)
        .join()
        .await
        .map_err(|e| in_member(format!("cannot join group {name}: {e}")))?;
    let mut member = Member::new(args, name, multi::host(bind), group, rt, start + args.timeout);
    match member.run().await {
        Ok((horus, raw)) => {
            if let Err(e) = member.leave(None).await {
                // Every result is in: the others have them too, and the report stands.
                eprintln!("horus bench: the member did not leave the group cleanly: {e}");
            }
            Ok(multi::report(args, &horus, raw.as_deref()))
        }
        Err(e) => {
            // Errors heard from the others, or that each member finds for itself, are not
            // said again.
            let own = !matches!(e, BenchError::Member { .. } | BenchError::Mismatch { .. });
            let last = (own && member.full.is_some())
                .then(|| Note::Failed { message: e.to_string() }.to_bytes());
            let _ = member.leave(last).await;
            Err(e)
        }
    }
}

/// One member of a `--join` run, from its join to its results.
struct Member<'a> {
    args: &'a BenchArgs,
    name: String,
    host: Ipv4Addr,
    settings: Settings,
    group: Group,
    rt: tokio::runtime::Handle,
    /// The level notes go at: fifo, or the run's if the stack has no fifo.
    note_level: Level,
    /// Notes for the caster task, which casts them in order (a cast may wait for a view
    /// change, which needs the events read: the event loop must not wait on one).
    notes: mpsc::UnboundedSender<Bytes>,
    /// Failures of the sender and of the caster, as what to say.
    fails: mpsc::UnboundedReceiver<String>,
    fail_tx: mpsc::UnboundedSender<String>,
    full: Option<Full>,
    board: Board,
    tally: Tally,
    going: bool,
    reported: bool,
    raw: Option<RawRun>,
    deadline: Instant,
}

/// What woke the event loop.
enum Step {
    Failed(String),
    Raw(Line),
    Event(Option<Event>),
    Deadline,
}

impl<'a> Member<'a> {
    fn new(
        args: &'a BenchArgs,
        name: String,
        host: Ipv4Addr,
        group: Group,
        rt: tokio::runtime::Handle,
        deadline: Instant,
    ) -> Self {
        let handle = group.handle();
        let note_level =
            if handle.levels().contains(&Level::Fifo) { Level::Fifo } else { args.level };
        let (fail_tx, fails) = mpsc::unbounded_channel();
        let (notes, mut queue) = mpsc::unbounded_channel::<Bytes>();
        let caster_fails = fail_tx.clone();
        tokio::spawn(async move {
            while let Some(note) = queue.recv().await {
                if let Err(e) = handle.cast(note, note_level).await {
                    let _ = caster_fails.send(format!("a note to the others failed: {e}"));
                    return;
                }
            }
        });
        let expected = args.sender_count() as u64 * u64::from(args.count);
        Member {
            args,
            name,
            host,
            settings: Settings::of(args),
            group,
            rt,
            note_level,
            notes,
            fails,
            fail_tx,
            full: None,
            board: Board::new(args.members),
            tally: Tally::new(expected),
            going: false,
            reported: false,
            raw: None,
            deadline,
        }
    }

    async fn run(&mut self) -> Result<Results, BenchError> {
        loop {
            if let Some(results) = self.advance().await? {
                return Ok(results);
            }
            // Biased, in this order: failures and the raw member's lines, rare, are looked at
            // every turn even while deliveries stream in; the deadline only when nothing is
            // ready.
            let step = tokio::select! {
                biased;
                Some(why) = self.fails.recv() => Step::Failed(why),
                Some(line) = next_line(self.raw.as_mut()) => Step::Raw(line),
                ev = self.group.next_event() => Step::Event(ev),
                () = tokio::time::sleep_until(self.deadline) => Step::Deadline,
            };
            match step {
                Step::Failed(why) => return Err(in_member(why)),
                Step::Raw(line) => self.on_raw_line(line)?,
                Step::Event(ev) => self.on_event(ev)?,
                Step::Deadline => {
                    let hint = if self.full.is_some() { SLOW } else { REACH };
                    return Err(BenchError::TimedOut { what: self.waiting_for(), hint });
                }
            }
        }
    }

    /// Takes every step the members' notes and this member's deliveries allow; the results
    /// once they are all in.
    async fn advance(&mut self) -> Result<Option<Results>, BenchError> {
        let Some(full) = &self.full else { return Ok(None) };
        if !self.going && all(&self.board.settings).is_some() {
            self.going = true;
            if full.spec.sender {
                let level = Level::from_str(&full.spec.level).map_err(in_member)?;
                let fails = self.fail_tx.clone();
                multi::start_sender(&full.spec, self.group.handle(), level, self.rt.clone(), fails);
            }
        }
        if !self.reported && self.tally.is_complete() {
            self.reported = true;
            let result = self.tally.measured(&self.group).await?;
            self.cast(&Note::Result(result));
        }
        let Some(horus) = all(&self.board.horus) else { return Ok(None) };
        if self.args.no_baseline {
            return Ok(Some((horus, None)));
        }
        if self.raw.is_none() {
            self.start_raw()?;
        }
        let went = self.raw.as_ref().is_some_and(|r| r.went);
        if !went {
            let Some(addrs) = all(&self.board.raw_addr) else { return Ok(None) };
            if self.args.transport == Transport::Unicast {
                let peers = self.reachable(addrs).await?;
                self.order(Order::Peers(peers))?;
            }
            self.order(Order::Go)?;
            self.raw.as_mut().expect("started above").went = true;
        }
        let senders_done = (0..self.args.members)
            .filter(|&i| self.args.is_sender(i))
            .all(|i| self.board.raw_sent[i].is_some());
        if senders_done && self.raw.as_ref().is_some_and(|r| !r.drained) {
            self.order(Order::Drain)?;
            self.raw.as_mut().expect("started above").drained = true;
        }
        Ok(all(&self.board.raw).map(|raw| (horus, Some(raw))))
    }

    fn on_event(&mut self, ev: Option<Event>) -> Result<(), BenchError> {
        match ev {
            Some(Event::Message { from, level: Some(_), data }) => match Note::read(&data) {
                None => self.tally.on_message(&data),
                Some(note) => self.on_note(from, note)?,
            },
            Some(Event::View(change)) => self.on_view(change)?,
            Some(Event::Exit) | None => {
                return Err(in_member(format!(
                    "excluded from group {} while waiting for {}",
                    self.name,
                    self.waiting_for()
                )))
            }
            _ => {}
        }
        Ok(())
    }

    fn on_view(&mut self, change: ViewChange) -> Result<(), BenchError> {
        let n = self.args.members;
        if self.full.is_some() {
            // A member left or joined before every result was in (the loop ends once they
            // are, and then views no longer matter).
            if let Some(e) = change.left.first() {
                return Err(BenchError::Member {
                    member: self.who(self.rank(*e)),
                    waiting_for: self.waiting_for(),
                    why: "it left the view (it stopped, or was cut off)".into(),
                });
            }
            if !change.joined.is_empty() {
                return Err(self.crowded(&change.view));
            }
            return Ok(());
        }
        match change.view.len() {
            len if len < n => Ok(()),
            len if len > n => Err(self.crowded(&change.view)),
            _ => {
                let me = self.group.endpoint();
                let rank = change.view.rank_of(me).expect("a member is in its own view").index();
                let spec = Spec::new(self.args, rank, &self.name, false, self.args.timeout);
                self.full = Some(Full { view: change.view, spec });
                let addr = self.group.control().local_addr();
                self.board.addr[rank] = Some(addr);
                self.cast(&Note::Settings { addr, settings: self.settings.clone() });
                Ok(())
            }
        }
    }

    /// The view has more members than the run.
    fn crowded(&self, view: &View) -> BenchError {
        in_member(format!(
            "the view of group {} has {} members, more than --members {}: were more members \
             started, or does another run use the name? give each run a name of its own",
            self.name,
            view.len(),
            self.args.members
        ))
    }

    fn on_note(&mut self, from: Endpoint, note: Result<Note, String>) -> Result<(), BenchError> {
        // Notes are cast in the full view, after its install: there is one by now.
        let Some(i) = self.full.as_ref().and_then(|f| f.view.rank_of(from)) else {
            return Ok(());
        };
        let i = i.index();
        let note = note.map_err(|why| BenchError::Member {
            member: self.who(Some(i)),
            waiting_for: self.waiting_for(),
            why: format!("its note does not decode ({why}): is it another version?"),
        })?;
        let b = &mut self.board;
        match note {
            Note::Settings { addr, settings } => {
                b.addr[i] = Some(addr);
                if let Some((flag, mine, theirs)) = self.settings.difference(&settings) {
                    let me = self.full.as_ref().and_then(|f| f.view.rank_of(self.group.endpoint()));
                    return Err(BenchError::Mismatch {
                        flag,
                        mine,
                        theirs,
                        me: self.who(me.map(|r| r.index())),
                        member: self.who(Some(i)),
                    });
                }
                b.settings[i] = Some(());
            }
            Note::Result(r) => b.horus[i] = Some(r),
            Note::RawBound { addr } => b.raw_addr[i] = Some(addr),
            Note::RawSent => b.raw_sent[i] = Some(()),
            Note::RawResult(r) => b.raw[i] = Some(r),
            Note::Failed { message } => {
                return Err(BenchError::Member {
                    member: self.who(Some(i)),
                    waiting_for: self.waiting_for(),
                    why: message,
                })
            }
        }
        Ok(())
    }

    fn on_raw_line(&mut self, line: Line) -> Result<(), BenchError> {
        match line {
            Line::Bound { addr } => self.cast(&Note::RawBound { addr }),
            Line::Sent => self.cast(&Note::RawSent),
            Line::Result(r) => self.cast(&Note::RawResult(r)),
            Line::Error { message } => return Err(in_member(message)),
            Line::Joined { .. } | Line::Ready => {}
        }
        Ok(())
    }

    /// Starts the raw UDP member on a thread, with the raw half's own time bound.
    fn start_raw(&mut self) -> Result<(), BenchError> {
        let full = self.full.as_ref().expect("results come after the full view");
        let group = format!("{}-raw", self.name);
        let mut spec = Spec::new(self.args, full.spec.index, &group, true, self.args.timeout);
        spec.host = self.host;
        let (orders_tx, orders) = std::sync::mpsc::channel();
        let (lines_tx, lines) = mpsc::unbounded_channel();
        let say: raw::Say = Arc::new(move |line| {
            lines_tx.send(line).map_err(|_| io::Error::other("the run has ended"))
        });
        std::thread::Builder::new()
            .name("raw UDP member".into())
            .spawn(move || {
                if let Err(e) = raw::member(&spec, orders, say.clone()) {
                    let _ = say(Line::Error { message: e.to_string() });
                }
            })
            .map_err(|e| in_member(format!("cannot start the raw UDP member: {e}")))?;
        self.raw = Some(RawRun { orders: orders_tx, lines, went: false, drained: false });
        self.deadline = Instant::now() + self.args.timeout;
        Ok(())
    }

    /// The raw members' addresses to send to: one bound on `0.0.0.0` is reached at the
    /// address this member knows it by.
    async fn reachable(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, BenchError> {
        if addrs.iter().all(|a| !a.ip().is_unspecified()) {
            return Ok(addrs);
        }
        let known = self.group.control().directory().await.map_err(in_member)?;
        let view = &self.full.as_ref().expect("results come after the full view").view;
        let me = self.group.endpoint();
        let mut out = Vec::with_capacity(addrs.len());
        for (i, mut a) in addrs.into_iter().enumerate() {
            let e = view.members[i];
            if a.ip().is_unspecified() && e != me {
                let Some((_, at)) = known.iter().find(|(k, _)| *k == e) else {
                    return Err(in_member(format!(
                        "raw UDP: {} is bound on {a}, and its address is not known here",
                        self.who(Some(i))
                    )));
                };
                a.set_ip(at.ip());
            }
            out.push(a);
        }
        Ok(out)
    }

    fn order(&self, order: Order) -> Result<(), BenchError> {
        let raw = self.raw.as_ref().expect("orders go to a raw member that started");
        raw.orders.send(order).map_err(|_| in_member("raw UDP: the member stopped"))
    }

    fn cast(&self, note: &Note) {
        // The caster stops only after a failure, which it reports on `fails`.
        let _ = self.notes.send(note.to_bytes());
    }

    /// Leaves the group, reading its events meanwhile (a view change needs them read), after
    /// casting `last` if given; within [`LEAVE_BOUND`] or so.
    async fn leave(&mut self, last: Option<Bytes>) -> Result<(), horus::Error> {
        let handle = self.group.handle();
        let level = self.note_level;
        let leaving = tokio::spawn(async move {
            if let Some(note) = last {
                let _ = tokio::time::timeout(LEAVE_BOUND, handle.cast(note, level)).await;
            }
            handle.leave().await
        });
        let events = async {
            while let Some(ev) = self.group.next_event().await {
                if matches!(ev, Event::Exit) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LEAVE_BOUND * 2, events).await;
        match tokio::time::timeout(LEAVE_BOUND, leaving).await {
            Ok(Ok(left)) => left,
            _ => Err(horus::Error::LeaveTimedOut { waited: LEAVE_BOUND }),
        }
    }

    fn rank(&self, e: Endpoint) -> Option<usize> {
        self.full.as_ref().and_then(|f| f.view.rank_of(e)).map(|r| r.index())
    }

    /// `member I (ENDPOINT at ADDR)`, as far as it is known.
    fn who(&self, rank: Option<usize>) -> String {
        let Some((i, full)) = rank.zip(self.full.as_ref()) else {
            return "a member".into();
        };
        let e = full.view.members[i];
        match self.board.addr[i] {
            Some(addr) => format!("member {i} ({e} at {addr})"),
            None => format!("member {i} ({e})"),
        }
    }

    fn whos(&self, ranks: &[usize]) -> String {
        let names: Vec<String> = ranks.iter().map(|&i| self.who(Some(i))).collect();
        names.join(", ")
    }

    /// What the run waits for now.
    fn waiting_for(&self) -> String {
        let n = self.args.members;
        if self.full.is_none() {
            let view = self.group.view();
            let members: Vec<String> = view.members.iter().map(|e| e.to_string()).collect();
            return format!(
                "a view of {n} members of group {} (the last had {}: {})",
                self.name,
                view.len(),
                members.join(", ")
            );
        }
        let b = &self.board;
        let unsaid = missing(&b.settings);
        if !unsaid.is_empty() {
            return format!("the settings of {}", self.whos(&unsaid));
        }
        if !self.tally.is_complete() {
            let r = &self.tally.result;
            return format!(
                "the delivery of every cast ({} senders x {}): {} of {} delivered here",
                self.args.sender_count(),
                self.args.count,
                r.delivered,
                r.expected
            );
        }
        let unsaid = missing(&b.horus);
        if !unsaid.is_empty() {
            return format!("the results of {}", self.whos(&unsaid));
        }
        let (unsaid, what) = match &self.raw {
            Some(r) if !r.went => (missing(&b.raw_addr), "raw UDP: the sockets of"),
            Some(r) if !r.drained => {
                let senders = (0..n).filter(|&i| self.args.is_sender(i));
                let unsent = senders.filter(|&i| b.raw_sent[i].is_none()).collect();
                (unsent, "raw UDP: the end of sending at")
            }
            _ => (missing(&b.raw), "raw UDP: the counts of"),
        };
        format!("{what} {}", self.whos(&unsaid))
    }
}

/// The next line of the raw member, if one runs; never, if none does.
async fn next_line(raw: Option<&mut RawRun>) -> Option<Line> {
    match raw {
        Some(r) => r.lines.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::tests::try_args;

    /// The arguments of `bench --join lab EXTRA...`.
    fn args(extra: &[&str]) -> BenchArgs {
        crate::multi::tests::args(&[&["--join", "lab"], extra].concat())
    }

    #[test]
    fn equal_settings_have_no_difference_and_the_first_that_differs_is_named() {
        let a = Settings::of(&args(&["--size", "1000", "--count", "10"]));
        assert_eq!(a.difference(&Settings::of(&args(&["--count", "10", "--json"]))), None);
        let b = Settings::of(&args(&["--size", "2000", "--count", "20"]));
        assert_eq!(a.difference(&b), Some(("--size", "1000".into(), "2000".into())));
        let c = Settings::of(&args(&["--count", "10", "--rate", "500"]));
        assert_eq!(a.difference(&c), Some(("--rate", "none".into(), "500".into())));
    }

    #[test]
    fn notes_read_back_and_a_benchmark_message_is_not_a_note() {
        let settings = Settings::of(&args(&[]));
        let addr: SocketAddr = "10.0.0.5:7400".parse().unwrap();
        let note = Note::Settings { addr, settings: settings.clone() };
        match Note::read(&note.to_bytes()) {
            Some(Ok(Note::Settings { addr: a, settings: s })) => {
                assert_eq!((a, s), (addr, settings));
            }
            other => panic!("{other:?}"),
        }
        let mut payloads = multi::Payloads::new(100, 0);
        assert!(Note::read(&payloads.next(0)).is_none());
        let garbled = [&NOTE_TAG[..], b"{\"settings\":"].concat();
        assert!(matches!(Note::read(&garbled), Some(Err(_))));
    }

    #[test]
    fn network_flags_are_checked_against_the_transport() {
        for (bad, says) in [
            (&["--seeds", "127.0.0.1:7400"][..], "serve --transport unicast"),
            (&["--multicast", "10.0.0.1:7400"], "multicast address"),
            (&["--multicast", "239.1.1.1:0"], "and a port"),
            (&["--transport", "unicast", "--multicast", "239.1.1.1:7400"], "not with"),
            (&["--transport", "unicast", "--seeds", "127.0.0.1:0"], "with their port"),
            (&["--bind", "[::1]:0"], "IPv4"),
        ] {
            let err = args(bad).validate().unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let empty = try_args(&["--join", " "]).unwrap();
        assert!(empty.validate().unwrap_err().to_string().contains("name"));
        let ok = args(&["--transport", "unicast", "--seeds", "10.0.0.5:7400,10.0.0.6:7400"]);
        assert!(ok.validate().is_ok());
        assert!(args(&["--bind", "10.0.0.5:0", "--multicast", "239.1.1.1:7400"])
            .validate()
            .is_ok());
    }

    #[test]
    fn network_flags_need_join_and_fail_join_is_for_local_runs() {
        for bad in [
            &["--bind", "127.0.0.1:0"][..],
            &["--seeds", "127.0.0.1:7400"],
            &["--multicast", "239.1.1.1:7400"],
            &["--join", "lab", "--fail-join"],
        ] {
            assert!(try_args(bad).is_err(), "{bad:?}");
        }
    }
}
