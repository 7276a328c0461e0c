//! The public API over real UDP on the loopback interface: members made with
//! `Group::builder` join, cast at every level, send, call, leave, transfer state and record
//! histories the checker accepts.
//!
//! Each test has its own group name, multicast address and port, so the tests run in
//! parallel. They check behaviour, never timing: every wait has a generous timeout, so a hang
//! fails the test instead of blocking the run.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use horus::{
    Bytes, Endpoint, Error, Event, Group, GroupBuilder, GroupHandle, Level, Replies,
    TransportConfig, ViewChange, ViewId,
};
use horus_core::check::{check, Property};
use horus_core::history::{Event as HistoryEvent, History, Membership};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Casts per member and level.
const PER_LEVEL: usize = 4;

/// A UDP port free now on the loopback interface.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port()
}

/// Loopback multicast on an address of this test's own.
fn transport(last: u8) -> TransportConfig {
    let group = SocketAddr::from(([239, 255, 78, last], free_port()));
    TransportConfig::multicast(group)
        .interface_v4(Ipv4Addr::LOCALHOST)
        .bind("127.0.0.1:0".parse().unwrap())
}

/// What one member's application saw.
#[derive(Debug, Default)]
struct Seen {
    views: Vec<ViewChange>,
    /// Messages: sender, level (`None` for a send), data.
    messages: Vec<(Endpoint, Option<Level>, Bytes)>,
    blocks: usize,
    calls: usize,
    /// The counter application's value: casts of `inc` delivered, or the state installed.
    counter: u64,
    /// Snapshots given: the view joined, the counter given.
    snapshots: Vec<(ViewId, u64)>,
    /// The state installed, if any, and how many messages had been delivered before it.
    state: Option<(u64, usize)>,
    exited: bool,
}

impl Seen {
    fn members(&self) -> BTreeSet<Endpoint> {
        self.views.last().map(|c| c.view.members.iter().copied().collect()).unwrap_or_default()
    }
}

/// One member and the application task that reads its events.
struct Peer {
    handle: GroupHandle,
    seen: watch::Receiver<Seen>,
    app: JoinHandle<()>,
}

impl Peer {
    /// Joins with `builder`; the application answers calls if `answers`.
    async fn join(builder: GroupBuilder, answers: bool) -> Peer {
        let group = builder.join().await.expect("joins");
        let handle = group.handle();
        let (tx, seen) = watch::channel(Seen::default());
        let app = tokio::spawn(application(group, tx, answers));
        Peer { handle, seen, app }
    }

    fn endpoint(&self) -> Endpoint {
        self.handle.endpoint()
    }

    /// Waits until `cond` holds of what the application saw.
    async fn until(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let mut rx = self.seen.clone();
        let waited = tokio::time::timeout(PATIENCE, rx.wait_for(|s| cond(s))).await;
        if !matches!(waited, Ok(Ok(_))) {
            let s = self.seen.borrow();
            panic!(
                "{} never {what}: views {:?}, {} messages, exited {}",
                self.endpoint(),
                s.views.iter().map(|c| c.view.to_string()).collect::<Vec<_>>(),
                s.messages.len(),
                s.exited
            );
        }
    }

    async fn until_members(&self, members: &[Endpoint]) {
        let want: BTreeSet<Endpoint> = members.iter().copied().collect();
        self.until(&format!("installed a view of {members:?}"), |s| s.members() == want).await;
    }

    /// Kills the member: no leave; to the others it has crashed.
    async fn crash(self) {
        self.app.abort();
        let _ = self.app.await;
        drop(self.handle);
    }
}

/// The application: records what it sees, keeps a counter of the `inc` casts it delivered
/// (its replicated state), answers snapshots with it, and answers calls with its endpoint if
/// `answers`.
async fn application(mut group: Group, seen: watch::Sender<Seen>, answers: bool) {
    let mut counter = 0u64;
    while let Some(ev) = group.next_event().await {
        match ev {
            Event::Message { from, level, data } => {
                if level.is_some() && &data[..] == b"inc" {
                    counter += 1;
                }
                seen.send_modify(|s| {
                    s.messages.push((from, level, data));
                    s.counter = counter;
                });
            }
            Event::View(change) => seen.send_modify(|s| s.views.push(change)),
            Event::Block => seen.send_modify(|s| s.blocks += 1),
            Event::Snapshot(request) => {
                let view = request.view();
                request.reply(counter.to_le_bytes().to_vec());
                seen.send_modify(|s| s.snapshots.push((view, counter)));
            }
            Event::State(state) => {
                counter = <[u8; 8]>::try_from(&state[..]).map(u64::from_le_bytes).unwrap_or(0);
                seen.send_modify(|s| {
                    s.state = Some((counter, s.messages.len()));
                    s.counter = counter;
                });
            }
            Event::Call(call) => {
                seen.send_modify(|s| s.calls += 1);
                if answers {
                    let me = group.endpoint().to_string();
                    let _ = call.reply(me).await;
                }
            }
            Event::Exit => seen.send_modify(|s| s.exited = true),
            _ => {}
        }
    }
}

/// Starts `n` members: the first founds the group, the others join it one by one;
/// waits until all are in one view. `answers(i)` says whether member `i` answers calls.
async fn form(
    n: usize,
    builder: impl Fn(usize) -> GroupBuilder,
    answers: impl Fn(usize) -> bool,
) -> Vec<Peer> {
    let first = Peer::join(builder(0).founder(true), answers(0)).await;
    let mut peers = vec![first];
    for i in 1..n {
        let peer = Peer::join(builder(i).founder(false), answers(i)).await;
        peers.push(peer);
    }
    let all: Vec<Endpoint> = peers.iter().map(|p| p.endpoint()).collect();
    for p in &peers {
        p.until_members(&all).await;
    }
    peers
}

fn builder(name: &str, transport: &TransportConfig) -> GroupBuilder {
    Group::builder(name).transport(transport.clone()).join_timeout(PATIENCE)
}

/// Every member casts `PER_LEVEL` messages at every level; waits until every member has
/// delivered all of them, each once, with the right sender and level.
async fn cast_at_every_level(peers: &[Peer]) {
    let mut want = BTreeSet::new();
    for p in peers {
        for level in Level::ALL {
            for k in 0..PER_LEVEL {
                let data = Bytes::from(format!("{}/{level}/{k}", p.endpoint()));
                want.insert((p.endpoint(), Some(level), data.clone()));
                p.handle.cast(data, level).await.expect("casts");
            }
        }
    }
    for p in peers {
        let casts = |s: &Seen| s.messages.iter().filter(|m| m.1.is_some()).count();
        p.until("delivered every cast", |s| casts(s) >= want.len()).await;
        let s = p.seen.borrow();
        let got: BTreeSet<_> = s.messages.iter().filter(|m| m.1.is_some()).cloned().collect();
        assert_eq!(got.len(), casts(&s), "{} delivered a cast twice", p.endpoint());
        assert_eq!(got, want, "{} delivered other casts than were cast", p.endpoint());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_cast_send_see_views_and_one_leaves() {
    let t = transport(1);
    let peers = form(3, |_| builder("api-basics", &t), |_| true).await;
    let (a, b, c) = (peers[0].endpoint(), peers[1].endpoint(), peers[2].endpoint());

    // The views, as each member was told them.
    let views = |p: &Peer| -> Vec<(Vec<Endpoint>, Vec<Endpoint>, Vec<Endpoint>)> {
        let s = p.seen.borrow();
        s.views.iter().map(|v| (v.joined.clone(), v.left.clone(), v.transitional.clone())).collect()
    };
    assert_eq!(
        views(&peers[0]),
        vec![(vec![a], vec![], vec![a]), (vec![b], vec![], vec![a]), (vec![c], vec![], vec![a, b])]
    );
    assert_eq!(
        views(&peers[1]),
        vec![(vec![b], vec![], vec![a, b]), (vec![c], vec![], vec![a, b])]
    );
    assert_eq!(views(&peers[2]), vec![(vec![c], vec![], vec![a, b, c])]);
    assert!(peers[0].seen.borrow().blocks >= 2, "a view change blocks the members first");
    assert_eq!(peers[0].handle.view().members, vec![a, b, c]);

    cast_at_every_level(&peers).await;

    // Point to point: a to b and c; b to a.
    peers[0].handle.send(b, "to b").await.expect("sends");
    peers[0].handle.send(c, "to c").await.expect("sends");
    peers[1].handle.send(a, "to a").await.expect("sends");
    for (p, from, text) in [(&peers[1], a, "to b"), (&peers[2], a, "to c"), (&peers[0], b, "to a")]
    {
        let want = (from, None, Bytes::from(text));
        p.until("received its send", |s| s.messages.contains(&want)).await;
    }

    // c leaves: it exits, and the others are told it left.
    let mut peers = peers;
    let leaver = peers.pop().expect("three");
    leaver.handle.leave().await.expect("leaves");
    leaver.until("exited", |s| s.exited).await;
    assert!(leaver.handle.has_exited());
    assert!(matches!(leaver.handle.cast("late", Level::Fifo).await, Err(Error::Exited)));
    for p in &peers {
        p.until_members(&[a, b]).await;
        let s = p.seen.borrow();
        let last = s.views.last().expect("a view");
        assert_eq!((last.left.clone(), last.transitional.clone()), (vec![c], vec![a, b]));
    }
    let counters = peers[0].handle.counters().await.expect("runs");
    assert_eq!(counters.group.casts, (Level::ALL.len() * PER_LEVEL) as u64);
    assert!(counters.group.delivered >= (3 * Level::ALL.len() * PER_LEVEL) as u64);
    assert_eq!((counters.group.sends, counters.group.bad_header), (2, 0));
    assert!(counters.node("member", "views") >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_wait_for_first_majority_or_all_and_not_for_a_failed_member() {
    let t = transport(2);
    // The third member never answers.
    let peers = form(3, |_| builder("api-calls", &t), |i| i < 2).await;
    let (a, b) = (peers[0].endpoint(), peers[1].endpoint());
    let caller = &peers[0].handle;
    let answered_by = |replies: &[(Endpoint, Bytes)]| -> BTreeSet<Endpoint> {
        for (from, data) in replies {
            assert_eq!(&data[..], from.to_string().as_bytes(), "a reply names its sender");
        }
        replies.iter().map(|(e, _)| *e).collect()
    };

    let first = caller.call("first?", Replies::First, PATIENCE).await.expect("one answers");
    assert_eq!(first.len(), 1);
    assert!(answered_by(&first).is_subset(&[a, b].into()));

    let majority = caller.call("most?", Replies::Majority, PATIENCE).await.expect("two answer");
    assert_eq!(answered_by(&majority), [a, b].into());

    let err = caller.call("all?", Replies::All, Duration::from_millis(1500)).await.unwrap_err();
    match &err {
        Error::CallTimedOut { got: 2, wanted: 3, replies, .. } => {
            assert_eq!(answered_by(replies), [a, b].into());
        }
        other => panic!("expected a timeout with 2 of 3 replies, got {other:?}"),
    }
    assert!(err.to_string().contains("2 of 3 replies"), "{err}");
    for p in &peers {
        p.until("delivered the three calls", |s| s.calls >= 3).await;
    }

    // The silent member crashes while a call waits for all: the call completes without it.
    let mut peers = peers;
    let silent = peers.pop().expect("three");
    let caller = peers[0].handle.clone();
    let call =
        tokio::spawn(async move { caller.call("all, again?", Replies::All, PATIENCE).await });
    peers[0].until("delivered the fourth call", |s| s.calls >= 4).await;
    silent.crash().await;
    let replies = call.await.expect("the call task ends").expect("the survivors answer");
    assert_eq!(answered_by(&replies), [a, b].into());
    assert_eq!(peers[0].handle.view().members, vec![a, b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_is_given_the_members_state() {
    let t = transport(3);
    let with_state = |_| builder("api-state", &t).state_transfer(true);
    let peers = form(2, with_state, |_| true).await;
    for _ in 0..20 {
        peers[0].handle.cast("inc", Level::Total).await.expect("casts");
    }
    // Casts go on while the third member joins.
    let caster = peers[1].handle.clone();
    let casting = tokio::spawn(async move {
        for _ in 0..30 {
            caster.cast("inc", Level::Fifo).await.expect("casts");
        }
    });
    let joiner = Peer::join(with_state(2).founder(false), true).await;
    casting.await.expect("the casts went out");
    let all: Vec<Endpoint> = peers.iter().chain([&joiner]).map(|p| p.endpoint()).collect();
    for p in peers.iter().chain([&joiner]) {
        p.until_members(&all).await;
        p.until("counted every increment", |s| s.counter == 50).await;
    }
    let joined = joiner.seen.borrow().views[0].view.id;
    let (state, delivered_before) = joiner.seen.borrow().state.expect("the joiner got a state");
    assert_eq!(delivered_before, 0, "the state comes before any message");
    for p in &peers {
        let given = p.seen.borrow().snapshots.iter().find(|(v, _)| *v == joined).map(|(_, c)| *c);
        assert_eq!(given, Some(state), "{} gave another state for {joined}", p.endpoint());
    }
}

/// Reads the histories in `files` as one.
fn read_histories(files: &[PathBuf]) -> (History, horus_core::history::Promises) {
    let mut history = History::new();
    let mut promises = None;
    for f in files {
        let file = std::fs::File::open(f).expect("the history file exists");
        promises = history.extend_jsonl(BufReader::new(file)).expect("it parses").or(promises);
    }
    (history, promises.expect("the files carry promises"))
}

/// Copies `from` to `to` without its `n`th `deliver` line from the middle.
fn drop_a_delivery(from: &Path, to: &Path) {
    let lines: Vec<String> = BufReader::new(std::fs::File::open(from).expect("exists"))
        .lines()
        .map(|l| l.expect("reads"))
        .collect();
    let deliveries: Vec<usize> =
        (0..lines.len()).filter(|i| lines[*i].contains("\"ev\":\"deliver\"")).collect();
    assert!(deliveries.len() > 4, "too few deliveries to doctor");
    let gone = deliveries[deliveries.len() / 2];
    let mut out = std::fs::File::create(to).expect("creates");
    for (i, l) in lines.iter().enumerate() {
        if i != gone {
            writeln!(out, "{l}").expect("writes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_histories_with_state_transfer_pass_the_checker_and_a_doctored_one_does_not() {
    let dir = std::env::temp_dir().join(format!("horus-api-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let files: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("m{i}.jsonl"))).collect();
    let t = transport(4);
    // State transfer on, so the joiners' states are recorded and checked too.
    let recording = |i: usize| builder("api-record", &t).state_transfer(true).record(&files[i]);
    let peers = form(3, recording, |_| true).await;
    cast_at_every_level(&peers).await;
    // Calls are casts too, and are recorded as such.
    peers[1].handle.call("ping", Replies::All, PATIENCE).await.expect("all answer");
    // Everyone leaves, the last alone.
    for p in peers.iter().rev() {
        p.handle.leave().await.expect("leaves");
        p.until("exited", |s| s.exited).await;
    }

    let (history, promises) = read_histories(&files);
    assert_eq!(promises.membership, Membership::Primary);
    assert!(promises.state_transfer);
    let states = |p: &horus_core::history::ProcessHistory| {
        p.events.iter().filter(|(_, e)| matches!(e, HistoryEvent::State { .. })).count()
    };
    assert_eq!(history.procs.values().map(states).sum::<usize>(), 2, "both joiners got a state");
    assert_eq!(history.procs.len(), 3);
    assert!(history.procs.values().all(|p| p.ended()), "every member recorded its exit");
    let report = check(&history, &promises);
    assert!(report.is_ok(), "the real run violates:\n{report}");
    assert!(report.stats.deliveries >= 3 * (3 * Level::ALL.len() * PER_LEVEL + 1));

    let doctored = dir.join("m1-doctored.jsonl");
    drop_a_delivery(&files[1], &doctored);
    let (history, promises) = read_histories(&[files[0].clone(), doctored, files[2].clone()]);
    let report = check(&history, &promises);
    assert!(!report.is_ok(), "a removed delivery went unnoticed");
    let found = report.properties();
    assert!(
        found.contains(&Property::VirtualSynchrony) || found.contains(&Property::Fifo),
        "{report}"
    );
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_went_wrong() {
    // A stack of the fifo level only.
    let spec = "gms:frag:flow:stable:mnak:suspect:pt2pt:pack";
    let t = transport(5);
    let group = builder("api-errors", &t).stack(spec).join().await.expect("founds alone");
    let err = group.cast("x", Level::Total).await.unwrap_err();
    assert!(matches!(err, Error::LevelNotOffered { level: Level::Total, .. }), "{err}");
    assert!(err.to_string().contains("offers fifo"), "{err}");
    group.cast("x", Level::Fifo).await.expect("fifo is offered");

    let stranger = Endpoint::new(999, 0);
    let err = group.send(stranger, "x").await.unwrap_err();
    assert!(matches!(err, Error::NotMember { endpoint, .. } if endpoint == stranger), "{err}");

    // Nobody to join, and not allowed to found.
    let lonely = builder("api-errors-lonely", &transport(6))
        .founder(false)
        .join_timeout(Duration::from_secs(1))
        .join()
        .await
        .unwrap_err();
    assert!(matches!(lonely, Error::JoinTimedOut { .. }), "{lonely}");
    assert!(lonely.to_string().contains("founding was not allowed"), "{lonely}");

    group.leave().await.expect("a member alone leaves");
    assert!(group.has_exited());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_next_event_takes_what_is_ready_in_order_and_never_waits() {
    let t = transport(9);
    let mut group = builder("api-try-next", &t).founder(true).join().await.expect("founds");
    // The first view is all there is: nothing else is ready.
    let first = tokio::time::timeout(PATIENCE, group.next_event()).await.expect("a view");
    assert!(matches!(first, Some(Event::View(_))), "first event: {first:?}");
    assert!(group.try_next_event().is_none(), "an event out of nowhere");
    let sent: Vec<Bytes> = (0..5).map(|k| Bytes::from(format!("burst {k}"))).collect();
    for data in &sent {
        group.handle().cast(data.clone(), Level::Fifo).await.expect("casts");
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < sent.len() {
        match group.try_next_event() {
            Some(Event::Message { data, .. }) => got.push(data),
            Some(other) => panic!("only the casts were due, got {other:?}"),
            // Not delivered yet: look again shortly (this test checks order, not speed).
            None => {
                assert!(tokio::time::Instant::now() < deadline, "casts not delivered: {got:?}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    assert_eq!(got, sent, "delivered in the order cast");
    assert!(group.try_next_event().is_none(), "more than was cast");
}
