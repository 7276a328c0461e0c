//! Members of the default stack over real UDP on the loopback interface: groups form, cast at
//! every level, survive a crash, faults and garbage.
//!
//! Each test has its own group name, multicast address and port, so the tests run in
//! parallel. They check behaviour, never timing: every wait has a generous timeout, so a
//! hang fails the test instead of blocking the run.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use horus_core::{Down, Endpoint, GroupName, Level, Message, Rng, StackPlan, Time, Up, View};
use horus_gms::Member;
use horus_runtime::{spawn, MemberControl, MemberHandle, RuntimeError, TransportConfig};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Casts per member and level.
const PER_LEVEL: usize = 5;

fn plan() -> StackPlan {
    let mut r = horus_layers::registry();
    r.add_layer(horus_gms::INFO);
    r.plan("vsync").expect("the default stack builds")
}

/// A UDP port free now on the loopback interface.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port()
}

fn loopback_multicast(last: u8) -> TransportConfig {
    let group = SocketAddr::from(([239, 255, 77, last], free_port()));
    TransportConfig::multicast(group)
        .interface_v4(Ipv4Addr::LOCALHOST)
        .bind("127.0.0.1:0".parse().unwrap())
}

/// What the application of one member saw.
#[derive(Debug, Default)]
struct Record {
    views: Vec<Arc<View>>,
    /// Casts delivered: sender, level, payload.
    delivered: Vec<(Option<Endpoint>, Level, Bytes)>,
    exited: bool,
}

impl Record {
    fn view(&self) -> Option<&Arc<View>> {
        self.views.last()
    }
}

/// One member and the application task that reads its events.
struct Peer {
    control: MemberControl,
    record: watch::Receiver<Record>,
    stop: oneshot::Sender<()>,
    app: JoinHandle<Result<(), RuntimeError>>,
}

impl Peer {
    fn start(
        group: &GroupName,
        node: u64,
        may_found: bool,
        transport: TransportConfig,
    ) -> Result<Peer, RuntimeError> {
        let me = Endpoint::new(node, 0);
        let member = Member::join(plan(), group.clone(), me, Rng::new(node), Time::ZERO, may_found)
            .expect("the plan builds");
        let handle = spawn(Box::new(member), group, transport)?;
        let control = handle.control();
        let (tx, record) = watch::channel(Record::default());
        let (stop, stopped) = oneshot::channel();
        let app = tokio::spawn(application(handle, tx, stopped));
        Ok(Peer { control, record, stop, app })
    }

    fn endpoint(&self) -> Endpoint {
        self.control.endpoint()
    }

    /// Waits until `cond` holds of what the application saw.
    async fn until(&self, what: &str, cond: impl Fn(&Record) -> bool) {
        let mut rx = self.record.clone();
        let waited = tokio::time::timeout(PATIENCE, rx.wait_for(|r| cond(r))).await;
        if !matches!(waited, Ok(Ok(_))) {
            let r = self.record.borrow();
            panic!(
                "{} never {what}: views {:?}, {} delivered, exited {}",
                self.endpoint(),
                r.views.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                r.delivered.len(),
                r.exited
            );
        }
    }

    /// Waits until the member's view is exactly `members`; returns it.
    async fn until_view(&self, members: &[Endpoint]) -> Arc<View> {
        let want: BTreeSet<Endpoint> = members.iter().copied().collect();
        let same = |v: &View| v.members.iter().copied().collect::<BTreeSet<_>>() == want;
        self.until(&format!("installed a view of {members:?}"), |r| {
            r.view().is_some_and(|v| same(v))
        })
        .await;
        self.record.borrow().view().cloned().expect("a view")
    }

    /// Stops the member cleanly and waits until it has.
    async fn shutdown(self) -> Result<(), RuntimeError> {
        let _ = self.stop.send(());
        self.app.await.expect("the application task ends")
    }

    /// Kills the member: no leave, nothing more sent.
    async fn crash(self) {
        self.app.abort();
        let _ = self.app.await;
    }
}

/// The application: answers blocks, records views and deliveries, and on request stops the
/// member cleanly.
async fn application(
    mut handle: MemberHandle,
    record: watch::Sender<Record>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), RuntimeError> {
    loop {
        let ev = tokio::select! {
            _ = &mut stop => return handle.shutdown().await,
            ev = handle.next_event() => ev,
        };
        match ev {
            None => return Ok(()),
            Some(Up::Block) => handle.down(Down::BlockOk).await?,
            Some(Up::View(v)) => record.send_modify(|r| r.views.push(v)),
            Some(Up::Cast { from, msg }) => record.send_modify(|r| {
                let from = r.view().and_then(|v| v.member(from));
                r.delivered.push((from, msg.level(), msg.payload().clone()));
            }),
            Some(Up::Exit) => record.send_modify(|r| r.exited = true),
            Some(_) => {}
        }
    }
}

/// Starts `n` members: the first founds the group, the others join it. `transport(seed)`
/// configures a member given the founder's address (`None` for the founder).
async fn form(
    name: &str,
    n: u64,
    transport: impl Fn(Option<SocketAddr>) -> TransportConfig,
) -> Vec<Peer> {
    let group = GroupName::new(name);
    let founder = Peer::start(&group, 1, true, transport(None)).expect("the founder starts");
    founder.until_view(&[founder.endpoint()]).await;
    let seed = founder.control.local_addr();
    let mut peers = vec![founder];
    for node in 2..=n {
        peers.push(
            Peer::start(&group, node, false, transport(Some(seed))).expect("a joiner starts"),
        );
    }
    let all: Vec<Endpoint> = peers.iter().map(|p| p.endpoint()).collect();
    let views = wait_all(peers.iter().map(|p| p.until_view(&all))).await;
    assert!(views.iter().all(|v| v.id == views[0].id), "one view for all: {views:?}");
    peers
}

async fn wait_all<T>(waits: impl Iterator<Item = impl Future<Output = T>>) -> Vec<T> {
    let mut out = Vec::new();
    for w in waits {
        out.push(w.await);
    }
    out
}

/// Every member casts `PER_LEVEL` messages at every level; waits until every member has
/// delivered all of them, each once, from the member that cast it.
async fn cast_and_deliver_all(peers: &[Peer]) {
    let mut want = BTreeSet::new();
    for p in peers {
        for level in Level::ALL {
            for k in 0..PER_LEVEL {
                let payload = Bytes::from(format!("{}/{level}/{k}", p.endpoint()));
                want.insert((Some(p.endpoint()), level, payload.clone()));
                let msg = Message::new(payload).with_level(level);
                p.control.down(Down::Cast(msg)).await.expect("the member runs");
            }
        }
    }
    for p in peers {
        p.until("delivered every cast", |r| r.delivered.len() >= want.len()).await;
        let r = p.record.borrow();
        let got: BTreeSet<_> = r.delivered.iter().cloned().collect();
        assert_eq!(got.len(), r.delivered.len(), "{} delivered a cast twice", p.endpoint());
        assert_eq!(got, want, "{} delivered other casts than were cast", p.endpoint());
    }
}

/// Kills the third of three members; the two others install one view of the two of them.
async fn crash_the_third(peers: Vec<Peer>) -> [Peer; 2] {
    let mut peers = peers.into_iter();
    let (a, b, c) = (peers.next().unwrap(), peers.next().unwrap(), peers.next().unwrap());
    c.crash().await;
    let survivors = [a.endpoint(), b.endpoint()];
    let (va, vb) = (a.until_view(&survivors).await, b.until_view(&survivors).await);
    assert_eq!(va.id, vb.id);
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_group_over_multicast_and_survive_a_crash() {
    let config = loopback_multicast(1);
    let peers = form("udp-multicast", 3, |_| config.clone()).await;
    cast_and_deliver_all(&peers).await;
    let [a, b] = crash_the_third(peers).await;
    let counters = a.control.counters().await.expect("a runs");
    assert!(counters.runtime.datagrams_sent > 0 && counters.runtime.datagrams_received > 0);
    assert!(counters.runtime.recv_batches > 0 && counters.runtime.send_batches > 0);
    assert!(counters.node("member", "views") >= 3);
    a.shutdown().await.expect("clean stop");
    b.shutdown().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_group_in_unicast_only_mode_with_seeds() {
    let config = |seed| {
        TransportConfig::unicast_only(seed)
            .bind("127.0.0.1:0".parse().unwrap())
            .gossip_every(Duration::from_millis(100))
    };
    let peers = form("udp-unicast", 3, config).await;
    // The joiners, seeded with the founder's address only, learnt each other's.
    let (b, c) = (&peers[1], &peers[2]);
    let dir = b.control.directory().await.expect("b runs");
    assert!(dir.contains(&(c.endpoint(), c.control.local_addr())), "{dir:?}");
    assert!(b.control.runtime_counters().gossip_received > 0);
    cast_and_deliver_all(&peers).await;
    let [a, b] = crash_the_third(peers).await;
    a.shutdown().await.expect("clean stop");
    b.shutdown().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_loses_every_datagram_is_excluded() {
    let config = loopback_multicast(3);
    let peers = form("udp-isolate", 3, |_| config.clone()).await;
    peers[2].control.faults().isolate();
    let survivors = [peers[0].endpoint(), peers[1].endpoint()];
    peers[0].until_view(&survivors).await;
    peers[1].until_view(&survivors).await;
    let dropped = peers[2].control.runtime_counters();
    assert!(dropped.fault_dropped_in > 0 && dropped.fault_dropped_out > 0, "{dropped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_set_on_both_sides_excludes_the_cut_off_member() {
    let config = loopback_multicast(4);
    let peers = form("udp-partition", 3, |_| config.clone()).await;
    let (a, b, c) = (peers[0].endpoint(), peers[1].endpoint(), peers[2].endpoint());
    peers[0].control.faults().partition([c]);
    peers[1].control.faults().partition([c]);
    peers[2].control.faults().partition([a, b]);
    peers[0].until_view(&[a, b]).await;
    peers[1].until_view(&[a, b]).await;
    assert!(peers[0].control.runtime_counters().fault_dropped_in > 0);
    for p in &peers {
        p.control.faults().heal();
        assert!(!p.control.faults().get().is_active());
    }
    // The two that stayed still deliver to each other once healed.
    cast_and_deliver_some(&peers[..2]).await;
}

/// Each member casts one message at the total level; every member delivers all of them.
async fn cast_and_deliver_some(peers: &[Peer]) {
    let before: Vec<usize> = peers.iter().map(|p| p.record.borrow().delivered.len()).collect();
    for p in peers {
        let msg =
            Message::new(Bytes::from(format!("after/{}", p.endpoint()))).with_level(Level::Total);
        p.control.down(Down::Cast(msg)).await.expect("the member runs");
    }
    for (p, n) in peers.iter().zip(before) {
        p.until("delivered the later casts", |r| r.delivered.len() >= n + peers.len()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_still_delivers_everything() {
    let config = loopback_multicast(5);
    let peers = form("udp-loss", 3, |_| config.clone()).await;
    for (i, p) in peers.iter().enumerate() {
        let faults = p.control.faults();
        faults.set(horus_runtime::FaultConfig { loss: 0.05, seed: 100 + i as u64, ..faults.get() });
    }
    cast_and_deliver_all(&peers).await;
    let dropped: u64 = peers
        .iter()
        .map(|p| p.control.runtime_counters())
        .map(|c| c.fault_dropped_in + c.fault_dropped_out)
        .sum();
    assert!(dropped > 0, "the switch dropped nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_not_fatal() {
    let config = loopback_multicast(6);
    let group = config.group().expect("multicast");
    let peers = form("udp-garbage", 2, |_| config.clone()).await;
    let before = peers[0].control.counters().await.expect("runs");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let mut rng = Rng::new(3);
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x10],                   // a cast's first byte, nothing after
        vec![0x11, 0xff, 0xff],       // a send, truncated in the group tag
        vec![0x12, 0x01],             // an outside frame, truncated
        vec![0xff],                   // a gossip frame, no body
        vec![0xff, 0x07, 0x80, 0x80], // a gossip frame, truncated varints
    ];
    garbage.extend((0..50).map(|n| (0..n * 20).map(|_| rng.next_u64() as u8).collect()));
    for d in &garbage {
        sender.send_to(d, group).expect("send to the group");
        sender.send_to(d, peers[0].control.local_addr()).expect("send to a member");
    }
    let sent = 2 * garbage.len() as u64;
    let a = &peers[0];
    let garbage_seen = async {
        loop {
            let c = a.control.counters().await.expect("a runs");
            if c.runtime.bad_gossip >= 4
                && c.node("transport", "bad_header") > before.node("transport", "bad_header")
            {
                return c;
            }
            tokio::task::yield_now().await;
        }
    };
    let after = tokio::time::timeout(PATIENCE, garbage_seen).await.expect("garbage counted");
    assert!(after.runtime.datagrams_received >= before.runtime.datagrams_received + sent / 2);
    // Still a working group.
    cast_and_deliver_some(&peers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_driver_and_closes_the_sockets() {
    let group = GroupName::new("udp-shutdown");
    let config = loopback_multicast(7);
    let member =
        Member::join(plan(), group.clone(), Endpoint::new(1, 0), Rng::new(1), Time::ZERO, true)
            .expect("the plan builds");
    let handle = spawn(Box::new(member), &group, config).expect("spawns");
    let control = handle.control();
    let addr = control.local_addr();
    assert!(control.buffers().recv > 0 && control.buffers().send > 0);
    handle.shutdown().await.expect("clean stop");
    assert!(matches!(control.down(Down::Leave).await, Err(RuntimeError::Stopped)));
    assert!(matches!(control.counters().await, Err(RuntimeError::Stopped)));
    // The port is free again: the socket is closed.
    UdpSocket::bind(addr).expect("the member's port is free after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transport_settings_are_refused_with_the_reason() {
    let group = GroupName::new("udp-bad");
    let member = || {
        let m =
            Member::join(plan(), group.clone(), Endpoint::new(1, 0), Rng::new(1), Time::ZERO, true)
                .expect("the plan builds");
        Box::new(m)
    };
    let not_multicast = TransportConfig::multicast("127.0.0.1:7400".parse().unwrap());
    let err = spawn(member(), &group, not_multicast).expect_err("not a multicast address");
    assert!(matches!(err, RuntimeError::NotMulticast { .. }), "{err}");
    // No interface of this host has the address 192.0.2.1 (TEST-NET-1).
    let bad_interface = loopback_multicast(8).interface_v4(Ipv4Addr::new(192, 0, 2, 1));
    let err = spawn(member(), &group, bad_interface).expect_err("no such interface");
    assert!(
        matches!(err, RuntimeError::MulticastInterface { .. } | RuntimeError::JoinMulticast { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("192.0.2.1"), "{err}");
}

/// Whether IPv6 multicast works on the loopback interface here: one datagram, sent and heard.
fn ipv6_loopback_multicast() -> Result<u32, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let index: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .map_err(|e| format!("no loopback interface index: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("bad loopback interface index: {e}"))?;
    let group: std::net::Ipv6Addr = "ff12::7:1".parse().unwrap();
    let port = free_port();
    let to = SocketAddr::V6(std::net::SocketAddrV6::new(group, port, 0, index));
    let probe = || -> std::io::Result<()> {
        let rx = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        rx.set_reuse_address(true)?;
        rx.bind(&to.into())?;
        rx.join_multicast_v6(&group, index)?;
        rx.set_read_timeout(Some(Duration::from_secs(1)))?;
        let tx = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        tx.set_multicast_if_v6(index)?;
        tx.set_multicast_loop_v6(true)?;
        tx.send_to(b"probe", &to.into())?;
        let rx: UdpSocket = rx.into();
        rx.recv_from(&mut [0; 16]).map(|_| ())
    };
    probe().map(|()| index).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_on_the_loopback_interface() {
    let ipv6_unicast = |seed| {
        TransportConfig::unicast_only(seed)
            .bind("[::1]:0".parse().unwrap())
            .gossip_every(Duration::from_millis(100))
    };
    let peers = match ipv6_loopback_multicast() {
        Ok(index) => {
            let group =
                SocketAddr::from(("ff12::7:2".parse::<std::net::Ipv6Addr>().unwrap(), free_port()));
            let config = TransportConfig::multicast(group)
                .interface_v6(index)
                .bind("[::1]:0".parse().unwrap());
            form("udp-ipv6-multicast", 3, |_| config.clone()).await
        }
        Err(why) => {
            println!("skipping IPv6 multicast: not available on the loopback interface ({why}); running IPv6 unicast-only instead");
            ipv6_multicast_send_errors_are_counted_not_fatal().await;
            if UdpSocket::bind("[::1]:0").is_err() {
                println!("skipping IPv6 altogether: ::1 cannot be bound");
                return;
            }
            form("udp-ipv6-unicast", 3, ipv6_unicast).await
        }
    };
    assert!(peers.iter().all(|p| p.control.local_addr().is_ipv6()));
    cast_and_deliver_all(&peers).await;
}

/// Where IPv6 multicast cannot go out, a member still opens its sockets and runs: its casts
/// fail and are counted.
async fn ipv6_multicast_send_errors_are_counted_not_fatal() {
    let group = GroupName::new("udp-ipv6-unreachable");
    let index = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    let addr = SocketAddr::from(("ff12::7:3".parse::<std::net::Ipv6Addr>().unwrap(), free_port()));
    let config =
        TransportConfig::multicast(addr).interface_v6(index).bind("[::1]:0".parse().unwrap());
    let member =
        Member::join(plan(), group.clone(), Endpoint::new(1, 0), Rng::new(1), Time::ZERO, false)
            .expect("the plan builds");
    let handle = match spawn(Box::new(member), &group, config) {
        Ok(h) => h,
        Err(e) => return println!("IPv6 multicast sockets cannot be opened here either: {e}"),
    };
    let errors = async {
        while handle.runtime_counters().send_errors == 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(PATIENCE, errors).await.expect("failed casts are counted");
    handle.counters().await.expect("the member still runs");
    handle.shutdown().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_gets_every_event_in_order_through_a_full_channel() {
    let group = GroupName::new("udp-slow-app");
    let member =
        Member::join(plan(), group.clone(), Endpoint::new(1, 0), Rng::new(1), Time::ZERO, true)
            .expect("the plan builds");
    // Room for one event: the rest wait in the node while the application is not reading.
    let config =
        TransportConfig::unicast_only([]).bind("127.0.0.1:0".parse().unwrap()).event_capacity(1);
    let mut handle = spawn(Box::new(member), &group, config).expect("spawns");
    let events = async {
        while !matches!(handle.next_event().await, Some(Up::View(_))) {}
        for k in 0..100u32 {
            let msg = Message::new(Bytes::from(k.to_be_bytes().to_vec())).with_level(Level::Fifo);
            handle.down(Down::Cast(msg)).await.expect("runs");
        }
        let mut next = 0u32;
        while next < 100 {
            match handle.next_event().await.expect("the member runs") {
                Up::Cast { msg, .. } => {
                    assert_eq!(&msg.payload()[..], next.to_be_bytes(), "out of order");
                    next += 1;
                }
                Up::Block => handle.down(Down::BlockOk).await.expect("runs"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, events).await.expect("every cast delivered");
    handle.shutdown().await.expect("clean stop");
}

/// A member whose peer never answers: flow control holds its casts, and past the backlog
/// limit the application's `down` waits instead of the held bytes growing; once the peer is
/// heard again, everything goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_makes_down_wait_while_the_backlog_is_high() {
    // A static group of two (no membership, so nobody is suspected while the peer is cut off).
    let plan = horus_layers::registry().plan("reliable").expect("reliable builds");
    let group = GroupName::new("backpressure");
    let (a, b) = (Endpoint::new(1, 0), Endpoint::new(2, 0));
    let view = Arc::new(View::initial(vec![a, b]));
    let max_backlog = 256 << 10;
    let transport = loopback_multicast(60).max_backlog(max_backlog).command_capacity(4);
    let node = |me| {
        let vs = horus_core::ViewState::new(group.clone(), me, view.clone()).expect("a member");
        Box::new(plan.build(vs, Rng::new(me.node), Time::ZERO).expect("builds"))
    };
    let mut ha = spawn(node(a), &group, transport.clone()).expect("a starts");
    let hb = spawn(node(b), &group, transport).expect("b starts");
    // a hears nothing from b: no credit comes back.
    ha.faults().partition([b]);
    let control = ha.control();
    let size = 1024;
    let total = 4096; // 4 MiB: far past the flow window and the backlog limit
    let sender = tokio::spawn(async move {
        let mut sent = 0;
        for _ in 0..total {
            let msg = Message::new(Bytes::from(vec![7u8; size])).with_level(Level::Fifo);
            if control.down(Down::Cast(msg)).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    // The sender stalls: the backlog stays near the limit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sender.is_finished(), "4 MiB of casts went down with no credit");
    let held = ha.counters().await.expect("counters").node("flow", "held_bytes");
    let slack = (COMMAND_SLACK * (size + 64)) as u64;
    assert!(held > 0 && held <= max_backlog + slack, "held {held} bytes");
    // b is heard again: credit flows, every cast goes down.
    ha.faults().heal();
    let sent = tokio::time::timeout(PATIENCE, sender).await.expect("the sender finishes");
    assert_eq!(sent.expect("no panic"), total);
    // Drain a's events so its driver is not held back by the application.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), ha.next_event()).await {
    }
    hb.shutdown().await.expect("b stops");
    ha.shutdown().await.expect("a stops");
}

/// Commands the driver may take in one turn past the backlog check (its command batch plus
/// the queue), each a held cast at most.
const COMMAND_SLACK: usize = 64 + 4;
