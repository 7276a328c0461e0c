//! The multi-process benchmark (`horus-bench`, later `horus bench`): a group of member
//! processes on this host casting over real UDP, measured beside raw UDP in the same run.
//!
//! [`run`] starts `--members` processes (the program a [`Launcher`] names, with a hidden
//! subcommand that calls [`member`]). Each joins one group through [`horus::Group`] with the
//! given stack over loopback (multicast through `127.0.0.1`, or unicast-only), and says so on
//! its stdout. Once every member has a view of all of them, the parent says `go`, and the
//! senders (all, or with `--senders one` the last member to join, so that total-order casts
//! go through a sequencer that is another member, as they generally do) cast `--count`
//! messages each at `--level`. Every member counts its deliveries and records each one's
//! latency: the sender writes its send time in the message (see [`proto::now_ns`] for the
//! clock), the receiver subtracts it from the delivery time. Once a member has delivered
//! every message it reports one JSON line; the parent aggregates them into a [`Report`].
//!
//! Then, unless `--no-baseline`, it does the same over raw UDP: the same number of
//! processes, senders, sizes, counts and pacing, multicast to a group address of the same
//! kind or one datagram per member by unicast, no protocol. Raw UDP has no flow control, so
//! a sender at full speed overruns the receivers' socket buffers; the datagrams lost are
//! counted, and raw rates are computed from what was received over the receive interval.
//! A message longer than a datagram (65,507 bytes) goes as several, and counts when its last
//! part arrives.
//!
//! With `--join NAME` the process starts no members: it is itself one member of a group
//! spread over hosts, every host running the same command, and the members coordinate over
//! the group itself (see the `join` module: `benches/src/join.rs`).
//!
//! # The figures
//! - `msgs_per_sec`: messages delivered per second per member, as in JGroups' MPerf: at each
//!   member, messages delivered ÷ (last delivery − first delivery), averaged over members.
//! - `mb_per_sec`: `msgs_per_sec` × size, in MB (10⁶ bytes) per second.
//! - `lat_*_us`: delivery latency, over every message at every member, in microseconds, from
//!   an HDR-style histogram (within 0.8 %); `max` exact.
//! - `raw_*`: the same for raw UDP; `raw_lost` the messages some receiver never got.
//! - `ratio`: `msgs_per_sec` ÷ `raw_msgs_per_sec`.
//! - `retransmissions`: summed over members: `mnak`'s `retrans_sent` and `pt2pt`'s `retrans`.
//! - `datagrams_per_msg`: datagrams the members sent (the runtime's `datagrams_sent`,
//!   acknowledgements and the other control traffic included) per message cast.
//!
//! # Pacing
//! With `--rate R` each sender sends R messages a second (a token bucket: message `i` is due
//! at `start + i/R`; the sender sleeps until the next is due and then sends every message
//! that is due). A sleep overshoots by the kernel's timer slack (about 50–60 µs on Linux),
//! so at 10,000 a second messages leave singly or in pairs, never late by more than one
//! interval; over the run the rate is exact. Without `--rate` senders cast as fast as the
//! stack takes casts (its queues give back-pressure).
//!
//! # Bounds
//! `--timeout` bounds each half of the run (horus, then raw UDP) from the start of its
//! processes to its last report: a member that cannot join, a view that never fills, a
//! member lost, deliveries that stop, all end the run with a [`BenchError`] naming what was
//! waited for. Member processes are killed and reaped on every path, and exit by themselves
//! when the parent goes away (their stdin closes).
//!
//! # Loopback and fragment sizes
//! The default stack `vsync` fragments and packs at 1400 bytes, for an Ethernet MTU. On
//! loopback datagrams reach 64 KiB: a stack such as
//! `gms:frag(size=60000):total:causal:safe:flow:stable:mnak:suspect:pt2pt:pack(size=60000)`
//! sends a 64 KiB message in two datagrams instead of 47, and packs many small messages in
//! one. Pass it with `--stack` to see what that gives.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use horus::{Event, Group, GroupHandle, Level, TransportConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::BenchError;
use crate::fleet::Fleet;
pub use crate::fleet::Launcher;
use crate::hist::Histogram;
use crate::proto::{self, say, Header, Line, MemberResult, Order, HEADER_LEN};
use crate::raw;

/// The most members a run starts.
pub const MAX_MEMBERS: usize = 32;

/// The largest message: raw UDP must send it in at most 255 datagrams.
pub const MAX_SIZE: usize = 8 << 20;

/// The long help of the benchmark's command, whose name is `program` (`horus bench`).
pub fn long_about(program: &str) -> String {
    format!(
        "\
Measure a group of member processes on this host, beside raw UDP with the same pattern.

Starts --members processes that join one group over loopback (multicast, or unicast with one
datagram per member), waits for the full view, then the senders cast --count messages of
--size bytes each at --level; every member counts deliveries and measures each message's
latency. In the same run it measures raw UDP with the same processes and pattern (unless
--no-baseline), so every figure comes with its ratio to what the host gives.

With --join NAME the process is itself one member of the group NAME, spread over hosts: run
the same command on every host (--members counts them all; --bind gives each its address),
and every member prints the same report. Latency is measured from the sender's clock to the
receiver's (CLOCK_REALTIME): across hosts it is only as good as their clocks' synchronization
(NTP, PTP), and an offset between two clocks adds to it or takes from it. Throughput does not
depend on the clocks.

Examples:
  {program} --members 3 --size 1000 --count 100000 --level fifo --json
  {program} --members 3 --size 1000 --count 100000 --level total --rate 10000
  {program} --join lab --members 3 --bind 10.0.0.5:0 --level total   (on each of 3 hosts)"
    )
}

/// Who sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Senders {
    /// Every member.
    All,
    /// One member: the last in the view (not the coordinator, which sequences total order).
    One,
}

/// How members reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// IP multicast: on the loopback interface; with --join, on the --bind interface.
    Multicast,
    /// A datagram to each member.
    Unicast,
}

impl fmt::Display for Senders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Senders::All => "all",
            Senders::One => "one",
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Multicast => "multicast",
            Transport::Unicast => "unicast",
        })
    }
}

/// The benchmark's arguments; a program embeds them with `#[command(flatten)]`.
///
/// # Examples
/// ```
/// use clap::Parser;
/// use horus_benches::multi::BenchArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     bench: BenchArgs,
/// }
///
/// let cli = Cli::parse_from(["bench", "--members", "2", "--level", "total", "--json"]);
/// assert_eq!(cli.bench.members, 2);
/// assert!(cli.bench.validate().is_ok());
/// ```
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Member processes to start on this host (2 to 32); with --join, the members of the
    /// group on all hosts, this one included.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Who casts: every member, or one.
    #[arg(long, value_enum, default_value_t = Senders::All)]
    pub senders: Senders,
    /// Bytes per message (16 B to 8 MiB; suffixes k, K, M: `1k` = 1000, `64K` = 65536).
    #[arg(long, default_value = "1000", value_parser = parse_size)]
    pub size: usize,
    /// Messages each sender casts.
    #[arg(long, default_value_t = 100_000)]
    pub count: u32,
    /// Service level of the casts: fifo, causal, total or safe.
    #[arg(long, default_value = "fifo", value_parser = parse_level)]
    pub level: Level,
    /// Multicast (on loopback; with --join, out of the --bind interface), or unicast to each
    /// member.
    #[arg(long, value_enum, default_value_t = Transport::Multicast)]
    pub transport: Transport,
    /// Messages per second each sender casts (default: as fast as the stack takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the raw UDP run (no `raw_*` figures, no ratio).
    #[arg(long)]
    pub no_baseline: bool,
    /// The stack: a spec with `gms` on top, or a preset.
    #[arg(long, default_value = horus::DEFAULT_STACK)]
    pub stack: String,
    /// Bound on each half of the run (horus, raw UDP): `60s`, `500ms`, `2m`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Members other than the first try to join a group nobody founds (tests the bound).
    #[arg(long, hide = true, conflicts_with = "join")]
    pub fail_join: bool,
    /// Be one member of the group NAME, spread over hosts, instead of starting members here:
    /// run the same command on every host; whoever starts first founds the group. Latency
    /// across hosts is only as good as their clock synchronization.
    #[arg(long, value_name = "NAME")]
    pub join: Option<String>,
    /// With --join: this member's unicast address (port 0: any free port); multicast goes out
    /// of the interface with its address [default: 127.0.0.1:0].
    #[arg(long, value_name = "ADDR", requires = "join")]
    pub bind: Option<SocketAddr>,
    /// With --join: the group's multicast address and port [default: derived from NAME].
    #[arg(long, value_name = "ADDR", requires = "join")]
    pub multicast: Option<SocketAddr>,
    /// With --join and --transport unicast: unicast addresses of members to join through,
    /// comma-separated (every member's address, its own included, serves on every host).
    #[arg(long, value_delimiter = ',', value_name = "ADDR,...", requires = "join")]
    pub seeds: Vec<SocketAddr>,
}

impl BenchArgs {
    /// Checks the arguments describe a run this host can attempt: members, size, count, rate
    /// and timeout in range, and a stack that builds, has membership and offers the level.
    ///
    /// # Errors
    /// [`BenchError::BadArgs`], saying which and what to give.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |s: String| Err(BenchError::BadArgs(s));
        if !(2..=MAX_MEMBERS).contains(&self.members) {
            return bad(format!("--members {}: give 2 to {MAX_MEMBERS}", self.members));
        }
        if !(HEADER_LEN..=MAX_SIZE).contains(&self.size) {
            return bad(format!(
                "--size {}: give {HEADER_LEN} bytes (the send time and sequence number every \
                 message carries) to {MAX_SIZE}",
                self.size
            ));
        }
        if self.count == 0 {
            return bad("--count 0: give at least 1".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r >= 1.0) {
                return bad(format!("--rate {r}: give at least 1 message per second"));
            }
        }
        if self.timeout.is_zero() {
            return bad("--timeout 0: give a positive duration, e.g. 60s".into());
        }
        let plan = horus::registry()
            .plan(&self.stack)
            .map_err(|e| BenchError::BadArgs(format!("--stack {}: {e}", self.stack)))?;
        if !plan.gives().contains(horus::core::Props::MEMBERSHIP) {
            return bad(format!(
                "--stack {}: a group needs the membership layer on top (`gms:` before the \
                 spec, or the preset vsync)",
                self.stack
            ));
        }
        if !plan.levels().contains(&self.level) {
            return bad(format!(
                "--level {}: stack {} does not offer it",
                self.level.as_str(),
                self.stack
            ));
        }
        if self.join.is_some() {
            self.validate_join()?;
        }
        Ok(())
    }

    /// The network flags of `--join`: IPv4 (as the raw baseline is), and each with the
    /// transport it serves.
    fn validate_join(&self) -> Result<(), BenchError> {
        let bad = |s: String| Err(BenchError::BadArgs(s));
        if self.join.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return bad("--join: give the group a name".into());
        }
        if let Some(bind) = self.bind.filter(|b| !b.is_ipv4()) {
            return bad(format!("--bind {bind}: give an IPv4 address, e.g. 10.0.0.5:0"));
        }
        match self.transport {
            Transport::Multicast => {
                if let Some(seed) = self.seeds.first() {
                    return bad(format!(
                        "--seeds {seed}: seeds serve --transport unicast; with multicast the \
                         members find each other at the group's address"
                    ));
                }
                if let Some(m) = self.multicast {
                    let v4_multicast = matches!(m.ip(), IpAddr::V4(ip) if ip.is_multicast());
                    if !v4_multicast || m.port() == 0 {
                        return bad(format!(
                            "--multicast {m}: give an IPv4 multicast address and a port, e.g. \
                             239.255.1.1:7400"
                        ));
                    }
                }
            }
            Transport::Unicast => {
                if let Some(m) = self.multicast {
                    return bad(format!("--multicast {m}: not with --transport unicast"));
                }
                if let Some(seed) = self.seeds.iter().find(|s| !s.is_ipv4() || s.port() == 0) {
                    return bad(format!("--seeds {seed}: give IPv4 addresses with their port"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn sender_count(&self) -> usize {
        match self.senders {
            Senders::All => self.members,
            Senders::One => 1,
        }
    }

    pub(crate) fn is_sender(&self, index: usize) -> bool {
        match self.senders {
            Senders::All => true,
            Senders::One => index + 1 == self.members,
        }
    }
}

/// The hidden subcommand a member process runs; its settings come from the parent.
#[derive(clap::Args, Clone, Debug)]
pub struct MemberArgs {
    /// The member's settings, as the parent wrote them (JSON).
    #[arg(long)]
    pub spec: String,
}

/// What the run measured: one JSON line (`--json`) or a table (`Display`).
///
/// The first fields are those of #8, in its order; `None` (JSON `null`) for the raw figures
/// with `--no-baseline`, or for a ratio to a raw rate of zero.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub members: usize,
    pub senders: Senders,
    pub size: usize,
    pub level: String,
    pub transport: Transport,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub lat_p50_us: f64,
    pub lat_p99_us: f64,
    pub lat_max_us: f64,
    pub raw_msgs_per_sec: Option<f64>,
    pub raw_mb_per_sec: Option<f64>,
    pub ratio: Option<f64>,
    pub retransmissions: u64,
    /// Messages each sender cast.
    pub count: u32,
    /// Each sender's pace, if any.
    pub rate: Option<f64>,
    /// The stack, as given.
    pub stack: String,
    /// Datagrams the members sent per message cast, control traffic included: how well
    /// small messages are packed (below 1) or large ones fragmented (above 1).
    pub datagrams_per_msg: f64,
    /// Raw UDP: messages sent and never received, summed over receivers.
    pub raw_lost: Option<u64>,
    pub raw_lat_p50_us: Option<f64>,
    pub raw_lat_p99_us: Option<f64>,
    /// With `--join`: the group's name (its members ran on their own hosts, and latency is
    /// only as good as the hosts' clock synchronization); `None` for a run on this host.
    pub join: Option<String>,
}

impl Report {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and strings serializes")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pace = self.rate.map_or("as fast as taken".into(), |r| format!("{r} msgs/s each"));
        let joined = self.join.as_ref().map_or(String::new(), |g| format!(" of group {g}"));
        writeln!(
            f,
            "{} members{joined}, {} sending {} x {} B at {}, {}, {pace}, stack {}",
            self.members,
            self.senders,
            self.count,
            self.size,
            self.level,
            self.transport,
            self.stack
        )?;
        writeln!(
            f,
            "{:<8} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "", "msgs/s/member", "MB/s", "p50 us", "p99 us", "max us", "lost"
        )?;
        writeln!(
            f,
            "{:<8} {:>14.0} {:>10.2} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            "horus",
            self.msgs_per_sec,
            self.mb_per_sec,
            self.lat_p50_us,
            self.lat_p99_us,
            self.lat_max_us,
            0
        )?;
        match (self.raw_msgs_per_sec, self.raw_mb_per_sec) {
            (Some(m), Some(mb)) => writeln!(
                f,
                "{:<8} {:>14.0} {:>10.2} {:>10.1} {:>10.1} {:>10} {:>10}",
                "raw UDP",
                m,
                mb,
                self.raw_lat_p50_us.unwrap_or(0.0),
                self.raw_lat_p99_us.unwrap_or(0.0),
                "",
                self.raw_lost.unwrap_or(0)
            )?,
            _ => writeln!(f, "raw UDP  (not measured: --no-baseline)")?,
        }
        match self.ratio {
            Some(r) => write!(f, "ratio {r:.3}")?,
            None => write!(f, "ratio -")?,
        }
        write!(
            f,
            "; retransmissions {}; datagrams per message {}",
            self.retransmissions, self.datagrams_per_msg
        )?;
        if self.join.is_some() {
            write!(
                f,
                "\nlatency runs from the sender's clock to the receiver's: across hosts it is \
                 only as good as their clocks' synchronization (NTP, PTP)"
            )?;
        }
        Ok(())
    }
}

/// A command-line run: the report printed (one JSON line with `--json`), or the error on
/// stderr; exit status 0, 1 when the run fails, 2 on a usage error (with `--join`, settings
/// that differ between the members included). Members are started as this program with the
/// arguments `member` (its hidden member subcommand); with `--join` this process is the
/// member.
pub fn cli(args: &BenchArgs, member: &[&str]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let outcome = Launcher::current_exe(member.iter().copied()).and_then(|l| run(args, &l));
    match outcome {
        Ok(report) if args.json => println!("{}", report.to_json()),
        Ok(report) => println!("{report}"),
        Err(e @ (BenchError::BadArgs(_) | BenchError::Mismatch { .. })) => {
            eprintln!("horus bench: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("horus bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Runs the benchmark `args` describe, starting members with `launcher` (with `--join`, this
/// process is one member and starts none); blocks until the run ends (each half within
/// `args.timeout`). `args.json` is for the caller: print [`Report::to_json`] or the report's
/// table.
///
/// # Errors
/// [`BenchError::BadArgs`] before anything starts; [`BenchError::Spawn`],
/// [`BenchError::TimedOut`] or [`BenchError::Member`] when a run cannot finish; with
/// `--join`, [`BenchError::Mismatch`] when the members' settings differ, and
/// [`BenchError::InMember`] when this member fails. Every member process is killed and reaped
/// on return; with `--join`, the member has left its group.
pub fn run(args: &BenchArgs, launcher: &Launcher) -> Result<Report, BenchError> {
    if let Some(name) = &args.join {
        return crate::join::run(args, name);
    }
    args.validate()?;
    let name = format!("horus-bench-{}-{}", std::process::id(), proto::now_ns());
    let horus = run_horus(args, launcher, &name)?;
    let raw = if args.no_baseline { None } else { Some(run_raw(args, launcher, &name)?) };
    Ok(report(args, &horus, raw.as_deref()))
}

/// The settings of one member process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub raw: bool,
    pub index: usize,
    pub members: usize,
    pub sender: bool,
    pub senders: usize,
    pub size: usize,
    pub count: u32,
    pub level: String,
    pub unicast: bool,
    pub group: String,
    /// The multicast group's address (multicast only).
    pub addr: Option<SocketAddr>,
    /// A member to join through (horus, unicast only).
    pub seed: Option<SocketAddr>,
    pub rate: Option<f64>,
    pub timeout_ms: u64,
    pub stack: String,
    pub founder: bool,
    /// The address of this member's host: its sockets are bound there, and multicast goes
    /// out of and comes in on that interface (`0.0.0.0`: the kernel's choice).
    pub host: Ipv4Addr,
}

impl Spec {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Messages this member should deliver.
    pub(crate) fn expected(&self) -> u64 {
        self.senders as u64 * u64::from(self.count)
    }

    pub(crate) fn new(
        args: &BenchArgs,
        index: usize,
        group: &str,
        raw: bool,
        left: Duration,
    ) -> Spec {
        let unicast = args.transport == Transport::Unicast;
        Spec {
            raw,
            index,
            members: args.members,
            sender: args.is_sender(index),
            senders: args.sender_count(),
            size: args.size,
            count: args.count,
            level: args.level.as_str().into(),
            unicast,
            group: group.into(),
            addr: if unicast { None } else { horus::default_transport(group).group() },
            seed: None,
            rate: args.rate,
            timeout_ms: left.as_millis().max(1) as u64,
            stack: args.stack.clone(),
            founder: index == 0,
            host: Ipv4Addr::LOCALHOST,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec of numbers and strings serializes")
    }
}

/// What to check when members do not find each other in time.
const REACH: &str = "check that the members can reach each other on this transport \
                     (multicast through 127.0.0.1; or try --transport unicast), or raise \
                     --timeout";

/// What to check when a run is too slow to finish in time.
const SLOW: &str = "raise --timeout, or lower --count or --members if the host is too slow \
                    for this run";

fn run_horus(
    args: &BenchArgs,
    launcher: &Launcher,
    name: &str,
) -> Result<Vec<MemberResult>, BenchError> {
    let deadline = Instant::now() + args.timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut fleet = Fleet::new("member");
    // The first member founds the group alone; the others join it, so that members started
    // together never found groups of their own.
    fleet.spawn(launcher, &Spec::new(args, 0, name, false, left()).to_json())?;
    let seed = fleet.wait_for(&[0], ("a first view (joined)", REACH), deadline, |l| match l {
        Line::Joined { addr } => Some(*addr),
        _ => None,
    })?[0];
    for i in 1..args.members {
        let mut spec = Spec::new(args, i, name, false, left());
        if spec.unicast {
            spec.seed = Some(seed);
        }
        if args.fail_join {
            spec.group = format!("{name}-elsewhere");
            spec.addr = spec.addr.and(horus::default_transport(&spec.group).group());
            spec.seed = None;
        }
        fleet.spawn(launcher, &spec.to_json())?;
    }
    let all = fleet.all();
    let full = format!("a view of all {} members", args.members);
    fleet.wait_for(&all, (&full, REACH), deadline, |l| matches!(l, Line::Ready).then_some(()))?;
    fleet.order_all(&Order::Go)?;
    let what =
        format!("the delivery of every cast ({} senders x {})", args.sender_count(), args.count);
    let results = fleet.wait_for(&all, (&what, SLOW), deadline, |l| match l {
        Line::Result(r) => Some(r.clone()),
        _ => None,
    })?;
    fleet.finish();
    Ok(results)
}

fn run_raw(
    args: &BenchArgs,
    launcher: &Launcher,
    name: &str,
) -> Result<Vec<MemberResult>, BenchError> {
    let deadline = Instant::now() + args.timeout;
    let group = format!("{name}-raw");
    let mut fleet = Fleet::new("raw UDP member");
    for i in 0..args.members {
        let left = deadline.saturating_duration_since(Instant::now());
        fleet.spawn(launcher, &Spec::new(args, i, &group, true, left).to_json())?;
    }
    let all = fleet.all();
    let addrs = fleet.wait_for(&all, ("open sockets", SLOW), deadline, |l| match l {
        Line::Bound { addr } => Some(*addr),
        _ => None,
    })?;
    if args.transport == Transport::Unicast {
        fleet.order_all(&Order::Peers(addrs))?;
    }
    fleet.order_all(&Order::Go)?;
    let senders: Vec<usize> = all.iter().copied().filter(|&i| args.is_sender(i)).collect();
    fleet.wait_for(&senders, ("the end of sending", SLOW), deadline, |l| {
        matches!(l, Line::Sent).then_some(())
    })?;
    fleet.order_all(&Order::Drain)?;
    let results = fleet.wait_for(&all, ("the receivers' counts", SLOW), deadline, |l| match l {
        Line::Result(r) => Some(r.clone()),
        _ => None,
    })?;
    fleet.finish();
    Ok(results)
}

/// Rounds to `digits` decimals.
fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn us(ns: u64) -> f64 {
    round(ns as f64 / 1000.0, 1)
}

/// The figures of one half of the run.
struct Summary {
    msgs_per_sec: f64,
    latency: Histogram,
    retransmissions: u64,
    lost: u64,
}

fn summarize(results: &[MemberResult]) -> Summary {
    let mut latency = Histogram::new();
    results.iter().for_each(|r| latency.merge(&r.latency));
    let n = results.len().max(1) as f64;
    Summary {
        msgs_per_sec: results.iter().map(MemberResult::rate).sum::<f64>() / n,
        latency,
        retransmissions: results.iter().map(|r| r.retransmissions).sum(),
        lost: results.iter().map(|r| r.expected.saturating_sub(r.delivered)).sum(),
    }
}

/// The report of a run whose members measured `horus` and `raw` (in the members' order).
pub(crate) fn report(
    args: &BenchArgs,
    horus: &[MemberResult],
    raw: Option<&[MemberResult]>,
) -> Report {
    let h = summarize(horus);
    let r = raw.map(summarize);
    let mb = |rate: f64| round(rate * args.size as f64 / 1e6, 2);
    let ratio = r
        .as_ref()
        .filter(|r| r.msgs_per_sec > 0.0)
        .map(|r| round(h.msgs_per_sec / r.msgs_per_sec, 3));
    Report {
        members: args.members,
        senders: args.senders,
        size: args.size,
        level: args.level.as_str().into(),
        transport: args.transport,
        msgs_per_sec: round(h.msgs_per_sec, 0),
        mb_per_sec: mb(h.msgs_per_sec),
        lat_p50_us: us(h.latency.percentile(0.5)),
        lat_p99_us: us(h.latency.percentile(0.99)),
        lat_max_us: us(h.latency.max()),
        raw_msgs_per_sec: r.as_ref().map(|r| round(r.msgs_per_sec, 0)),
        raw_mb_per_sec: r.as_ref().map(|r| mb(r.msgs_per_sec)),
        ratio,
        retransmissions: h.retransmissions,
        count: args.count,
        rate: args.rate,
        stack: args.stack.clone(),
        datagrams_per_msg: round(
            horus.iter().map(|m| m.datagrams_sent).sum::<u64>() as f64
                / (args.sender_count() as f64 * f64::from(args.count)),
            3,
        ),
        raw_lost: r.as_ref().map(|r| r.lost),
        raw_lat_p50_us: r.as_ref().map(|r| us(r.latency.percentile(0.5))),
        raw_lat_p99_us: r.as_ref().map(|r| us(r.latency.percentile(0.99))),
        join: args.join.clone(),
    }
}

/// Runs a member process: what the hidden subcommand calls. Reports on stdout, takes orders
/// on stdin, and returns when the parent says `exit` or goes away.
///
/// # Errors
/// [`BenchError::BadArgs`] for a spec that does not parse; [`BenchError::InMember`] when the
/// member fails (it has then said why on stdout, for the parent).
pub fn member(args: &MemberArgs) -> Result<(), BenchError> {
    let spec: Spec = serde_json::from_str(&args.spec)
        .map_err(|e| BenchError::BadArgs(format!("--spec: {e} (it is written by the parent)")))?;
    let outcome = if spec.raw {
        let (tx, orders) = std::sync::mpsc::channel();
        proto::read_orders(move |o| tx.send(o).is_ok());
        raw::member(&spec, orders, Arc::new(|l| say(&l)))
    } else {
        horus_member(&spec)
    };
    if let Err(e) = &outcome {
        let _ = say(&Line::Error { message: e.to_string() });
    }
    outcome
}

/// The parent's orders, as a tokio channel.
fn orders() -> mpsc::UnboundedReceiver<Order> {
    let (tx, rx) = mpsc::unbounded_channel();
    proto::read_orders(move |o| tx.send(o).is_ok());
    rx
}

pub(crate) fn in_member(what: impl fmt::Display) -> BenchError {
    BenchError::InMember(what.to_string())
}

fn horus_member(spec: &Spec) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| in_member(format!("cannot start the tokio runtime: {e}")))?;
    let outcome = rt.block_on(HorusMember::run(spec, rt.handle().clone()));
    // A paced sender may still be sleeping in its thread: do not wait for it.
    rt.shutdown_background();
    outcome
}

/// Counts deliveries and their latencies.
#[derive(Default)]
pub(crate) struct Tally {
    pub result: MemberResult,
    first: Option<Instant>,
    pub malformed: u64,
}

impl Tally {
    pub(crate) fn new(expected: u64) -> Self {
        Tally { result: MemberResult { expected, ..MemberResult::default() }, ..Tally::default() }
    }

    /// A message whose header is `h` was delivered now.
    pub(crate) fn on_deliver(&mut self, h: &Header) {
        let now = Instant::now();
        let first = *self.first.get_or_insert(now);
        let r = &mut self.result;
        r.latency.record(proto::now_ns().saturating_sub(h.sent_ns));
        r.delivered += 1;
        r.first_to_last_ns = now.duration_since(first).as_nanos() as u64;
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.result.delivered >= self.result.expected
    }

    /// A horus member delivered the benchmark message `data`.
    pub(crate) fn on_message(&mut self, data: &[u8]) {
        match Header::read(data) {
            Some(h) => self.on_deliver(&h),
            None => self.malformed += 1,
        }
    }

    /// What a horus member measured, with what its stack counted: the retransmissions it
    /// sent and the datagrams it handed to the kernel.
    pub(crate) async fn measured(&self, group: &GroupHandle) -> Result<MemberResult, BenchError> {
        let counters = group.counters().await.map_err(in_member)?;
        let mut result = self.result.clone();
        result.retransmissions =
            counters.node("mnak", "retrans_sent") + counters.node("pt2pt", "retrans");
        result.datagrams_sent = counters.member.runtime.datagrams_sent;
        Ok(result)
    }
}

/// How long the first member looks for its group before founding it.
const FOUNDER_DISCOVERY: Duration = Duration::from_millis(50);

/// Bytes of the buffers messages are cut from.
const PAYLOAD_CHUNK: usize = 64 << 10;

/// Messages of one sender, cut from shared buffers (one allocation per [`PAYLOAD_CHUNK`], not
/// per message).
pub(crate) struct Payloads {
    buf: BytesMut,
    size: usize,
    sender: u16,
}

impl Payloads {
    pub(crate) fn new(size: usize, sender: usize) -> Self {
        Payloads { buf: BytesMut::new(), size, sender: sender as u16 }
    }

    /// Message `seq`, stamped with the time now.
    pub(crate) fn next(&mut self, seq: u32) -> Bytes {
        if self.buf.capacity() < self.size {
            // Small enough to come from malloc's free lists rather than fresh pages (a fresh
            // megabyte costs 256 page faults, which showed in the profile).
            self.buf = BytesMut::with_capacity(self.size.max(PAYLOAD_CHUNK));
        }
        self.buf.resize(self.size, 0);
        let mut m = self.buf.split();
        Header { sender: self.sender, part: 0, parts: 1, seq, sent_ns: proto::now_ns() }
            .write(&mut m);
        m.freeze()
    }
}

/// Sleeps until message `seq` of a sender pacing at `rate` from `start` is due.
pub(crate) fn pace(start: Instant, rate: f64, seq: u32) {
    let due = start + Duration::from_secs_f64(f64::from(seq) / rate);
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// Events taken in one turn of a member's loop.
const BURST: usize = 256;

struct HorusMember;

impl HorusMember {
    async fn run(spec: &Spec, rt: tokio::runtime::Handle) -> Result<(), BenchError> {
        let deadline = tokio::time::Instant::now() + spec.timeout();
        let level = Level::from_str(&spec.level).map_err(in_member)?;
        let mut orders = orders();
        let group = spec.addr.filter(|_| !spec.unicast);
        let seeds: Vec<SocketAddr> = spec.seed.into_iter().collect();
        let mut builder = Group::builder(&spec.group)
            .stack(&spec.stack)
            .transport(transport(group, &seeds, SocketAddr::from((spec.host, 0))))
            .founder(spec.founder)
            .join_timeout(spec.timeout());
        if spec.founder {
            // The founder starts alone, in a group of a name nobody else uses: it need not
            // look for the group long before founding it.
            builder = builder.discovery_timeout(FOUNDER_DISCOVERY);
        }
        let mut group = builder.join().await.map_err(|e| in_member(format!("cannot join: {e}")))?;
        say(&Line::Joined { addr: group.control().local_addr() }).map_err(in_member)?;

        // A view of every member.
        loop {
            tokio::select! {
                ev = group.next_event() => match ev {
                    Some(Event::View(c)) if c.view.members.len() >= spec.members => break,
                    Some(Event::Exit) | None => {
                        return Err(in_member("excluded from the group before its view was full"))
                    }
                    _ => {}
                },
                o = orders.recv() => if matches!(o, None | Some(Order::Exit)) { return Ok(()) },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(in_member(format!(
                        "no view of {} members within the timeout; the last had {}",
                        spec.members,
                        group.view().members.len()
                    )))
                }
            }
        }
        say(&Line::Ready).map_err(in_member)?;

        // Deliveries may begin before this member is told `go`: count from now.
        let mut tally = Tally::new(spec.expected());
        let (fail_tx, mut fails) = mpsc::unbounded_channel::<String>();
        let mut reported = false;
        loop {
            // Biased, in this order (no random draw per turn): the orders and the sender's
            // failures, almost never ready, are looked at every turn, even while events
            // stream in; the deadline only when no event is ready.
            tokio::select! {
                biased;
                o = orders.recv() => match o {
                    Some(Order::Go) if spec.sender => {
                        start_sender(spec, group.handle(), level, rt.clone(), fail_tx.clone())
                    }
                    None | Some(Order::Exit) => return Ok(()),
                    _ => {}
                },
                Some(why) = fails.recv() => return Err(in_member(format!("a cast failed: {why}"))),
                ev = group.next_event() => {
                    // The rest of a burst is taken here, without another turn of the
                    // select; a bounded number, so orders are still looked at.
                    let (mut next, mut taken) = (Some(ev), 0);
                    while let Some(ev) = next.take() {
                        match ev {
                            Some(Event::Message { level: Some(_), data, .. }) => {
                                tally.on_message(&data);
                                if !reported && tally.is_complete() {
                                    reported = true;
                                    let result = tally.measured(&group).await?;
                                    say(&Line::Result(result)).map_err(in_member)?;
                                }
                            }
                            Some(Event::View(c)) if !reported && c.view.members.len() < spec.members => {
                                return Err(in_member(format!(
                                    "a member was lost: the view went to {} of {} members after {} of {} deliveries",
                                    c.view.members.len(),
                                    spec.members,
                                    tally.result.delivered,
                                    tally.result.expected
                                )))
                            }
                            Some(Event::Exit) | None if !reported => {
                                return Err(in_member(format!(
                                    "excluded from the group after {} of {} deliveries",
                                    tally.result.delivered, tally.result.expected
                                )))
                            }
                            Some(Event::Exit) | None => return Ok(()),
                            _ => {}
                        }
                        taken += 1;
                        if taken < BURST {
                            next = group.try_next_event().map(Some);
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline), if !reported => {
                    return Err(in_member(format!(
                        "delivered {} of {} messages within the timeout",
                        tally.result.delivered, tally.result.expected
                    )))
                }
            }
        }
    }
}

/// How a member bound at `bind` (IPv4) reaches the others: multicast to `group` out of the
/// interface with `bind`'s address (the kernel's choice if it is `0.0.0.0`), or, without a
/// group, unicast to each member, found through `seeds`.
pub(crate) fn transport(
    group: Option<SocketAddr>,
    seeds: &[SocketAddr],
    bind: SocketAddr,
) -> TransportConfig {
    match group {
        Some(group) => TransportConfig::multicast(group).interface_v4(host(bind)),
        None => TransportConfig::unicast_only(seeds.iter().copied()),
    }
    .bind(bind)
}

/// The IPv4 address of the host of a member bound at `bind`: where its multicast goes out and
/// its raw sockets are bound (`0.0.0.0`, the kernel's choice, for an IPv6 `bind`).
pub(crate) fn host(bind: SocketAddr) -> Ipv4Addr {
    match bind.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

/// Starts casting: a task on this runtime at full speed, or a thread that sleeps between
/// casts when paced (tokio's timer has millisecond resolution; the thread's sleep is finer).
pub(crate) fn start_sender(
    spec: &Spec,
    handle: GroupHandle,
    level: Level,
    rt: tokio::runtime::Handle,
    fails: mpsc::UnboundedSender<String>,
) {
    let (count, mut payloads) = (spec.count, Payloads::new(spec.size, spec.index));
    match spec.rate {
        None => {
            tokio::spawn(async move {
                for seq in 0..count {
                    if let Err(e) = handle.cast(payloads.next(seq), level).await {
                        let _ = fails.send(e.to_string());
                        return;
                    }
                }
            });
        }
        Some(rate) => {
            std::thread::spawn(move || {
                let start = Instant::now();
                for seq in 0..count {
                    pace(start, rate, seq);
                    if let Err(e) = cast_from_thread(&rt, handle.cast(payloads.next(seq), level)) {
                        let _ = fails.send(e.to_string());
                        return;
                    }
                }
            });
        }
    }
}

/// Runs a cast from a thread outside the runtime. A cast with room in the queue completes
/// on its first poll: that poll is made here, with no waker, so the usual case costs no
/// entering of the runtime and no parking; only a cast that must wait for room (flow control
/// holding the sender) is handed to the runtime to wait on.
fn cast_from_thread<F: std::future::Future>(rt: &tokio::runtime::Handle, cast: F) -> F::Output {
    let mut cast = std::pin::pin!(cast);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match cast.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => rt.block_on(cast),
    }
}

/// Parses a size: bytes, or with a suffix `k` (10³), `K` (2¹⁰), `M` (2²⁰).
///
/// # Examples
/// ```
/// use horus_benches::multi::parse_size;
/// assert_eq!(parse_size("1k"), Ok(1000));
/// assert_eq!(parse_size("64K"), Ok(65536));
/// assert!(parse_size("lots").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k')) => (&s[..i], 1000),
        Some((i, 'K')) => (&s[..i], 1024),
        Some((i, 'M')) => (&s[..i], 1 << 20),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("`{s}` is not a size: give bytes, e.g. 1000, 1k or 64K"))
}

/// Parses a duration: a number with `ms`, `s` or `m` (seconds if bare).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use horus_benches::multi::parse_duration;
/// assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0 && n * unit < 1e9)
        .map(|n| Duration::from_secs_f64(n * unit))
        .ok_or_else(|| format!("`{s}` is not a duration: give e.g. 60s, 500ms or 2m"))
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::from_str(s)
        .map_err(|_| format!("`{s}` is not a level: give fifo, causal, total or safe"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// The arguments of a command line `bench EXTRA...`.
    pub(crate) fn try_args(extra: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(extra.iter().copied())).map(|c| c.bench)
    }

    pub(crate) fn args(extra: &[&str]) -> BenchArgs {
        try_args(extra).expect("the arguments parse")
    }

    #[test]
    fn out_of_range_arguments_are_refused_with_the_range() {
        for (bad, says) in [
            (&["--members", "1"][..], "2 to"),
            (&["--size", "15"], "16 bytes"),
            (&["--count", "0"], "at least 1"),
            (&["--rate", "0"], "at least 1"),
            (&["--timeout", "0s"], "positive"),
            (&["--stack", "reliable"], "membership"),
            (&["--stack", "gms:nosuch"], "nosuch"),
        ] {
            let err = args(bad).validate().unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(args(&["--members", "8", "--size", "64K", "--level", "safe"]).validate().is_ok());
    }

    #[test]
    fn bad_values_do_not_parse() {
        for bad in [
            &["--level", "loud"][..],
            &["--size", "9999999999999999999999"],
            &["--timeout", "soon"],
            &["--transport", "carrier-pigeon"],
        ] {
            assert!(try_args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_sender_is_the_last_member() {
        let a = args(&["--members", "4", "--senders", "one"]);
        assert_eq!(a.sender_count(), 1);
        assert_eq!((0..4).filter(|&i| a.is_sender(i)).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn report_averages_members_and_divides_by_raw() {
        let a = args(&["--members", "2", "--size", "1000"]);
        let member = |delivered: u64, ms: u64, lat_us: u64| {
            let mut latency = Histogram::new();
            latency.record(lat_us * 1000);
            MemberResult {
                delivered,
                expected: 2000,
                first_to_last_ns: ms * 1_000_000,
                latency,
                retransmissions: 1,
                datagrams_sent: 1500,
            }
        };
        // 2000 in 1 s and 2000 in 0.5 s: 3000 msgs/s on average.
        let horus = [member(2000, 1000, 10), member(2000, 500, 30)];
        // 1000 in 0.25 s and 2000 in 0.5 s: 4000; 1000 lost.
        let raw = [member(1000, 250, 5), member(2000, 500, 5)];
        let r = report(&a, &horus, Some(&raw));
        assert_eq!(r.msgs_per_sec, 3000.0);
        assert_eq!(r.mb_per_sec, 3.0);
        assert_eq!(r.raw_msgs_per_sec, Some(4000.0));
        assert_eq!(r.ratio, Some(0.75));
        assert_eq!((r.retransmissions, r.raw_lost), (2, Some(1000)));
        assert_eq!((r.lat_p50_us, r.lat_max_us), (10.0, 30.0));
        // 3000 datagrams for 2 senders x 100000 default count.
        assert_eq!(r.datagrams_per_msg, 0.015);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["senders"], "all");
        assert_eq!(json["transport"], "multicast");
        let none = report(&a, &horus, None);
        assert_eq!((none.raw_msgs_per_sec, none.ratio), (None, None));
        assert!(none.to_string().contains("--no-baseline"));
    }

    #[test]
    fn a_joined_run_names_its_group_and_says_latency_needs_synchronized_clocks() {
        let members = [MemberResult::default(), MemberResult::default()];
        let joined = report(&args(&["--members", "2", "--join", "lab"]), &members, None);
        let table = joined.to_string();
        assert!(table.contains("2 members of group lab"), "{table}");
        assert!(table.contains("clocks' synchronization"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&joined.to_json()).unwrap();
        assert_eq!(json["join"], "lab");
        let local = report(&args(&["--members", "2"]), &members, None);
        assert!(!local.to_string().contains("clocks"));
        assert_eq!(local.join, None);
    }

    #[test]
    fn payloads_carry_their_header_at_the_given_size() {
        let mut p = Payloads::new(1000, 3);
        let (a, b) = (p.next(0), p.next(1));
        assert_eq!((a.len(), b.len()), (1000, 1000));
        let (ha, hb) = (Header::read(&a).unwrap(), Header::read(&b).unwrap());
        assert_eq!((ha.sender, ha.seq, hb.seq), (3, 0, 1));
        assert!(hb.sent_ns >= ha.sent_ns);
    }
}
