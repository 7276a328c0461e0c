//! `horus probe`: asks every member of a group for its view and counters and prints a table,
//! as JGroups' probe does; and the [`Responder`] that the members run by `horus member` and
//! `horus demo` answer it with.
//!
//! # The protocol
//! Outside every group and every view, so a probe causes no view change and no member's
//! stack sees it. A member answers on two sockets of its own (not the group's): one bound to
//! the diagnostics multicast address [`PROBE_GROUP`] on the loopback interface, shared by
//! every member on the host (`SO_REUSEADDR`, `SO_REUSEPORT`: each gets a copy), and one on an
//! ephemeral unicast port of its own, for probes sent to it by address (`--to`, e.g. where
//! there is no multicast). The request and the answer are one JSON datagram each:
//!
//! ```text
//! request  {"horus_probe":1,"group":"chat","nonce":42}       group null: every group answers
//! answer   {"horus_probe":1,"nonce":42,"group":"chat","endpoint":[7,0],"pid":1234,
//!           "stack":"gms:...","view":{"ltime":3,"coord":[1,0]},"members":[[1,0],[7,0]],
//!           "counters":{"casts":12,"delivered":36,...}}
//! ```
//!
//! The answer goes by unicast to the request's source. A datagram that does not parse, or is
//! of another group, is ignored.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use horus::{Counters, Endpoint, GroupHandle, ViewId};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::member::parse_duration;

/// The diagnostics multicast address every member on a host listens to for probes.
pub const PROBE_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 75, 75), 7500);

/// The protocol version in requests and answers.
const VERSION: u32 = 1;

/// The largest answer read (one datagram).
const MAX_DATAGRAM: usize = 65_536;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Request {
    horus_probe: u32,
    group: Option<String>,
    nonce: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Answer {
    horus_probe: u32,
    nonce: u64,
    group: String,
    endpoint: Endpoint,
    pid: u32,
    stack: String,
    view: ViewId,
    members: Vec<Endpoint>,
    counters: BTreeMap<String, u64>,
}

const PROBE_HELP: &str = "\
Columns: the member and its process, the view it is in and how many members it has, the casts
it made and delivered, the sends it made, the retransmissions it made (mnak and pt2pt), the
suspicions its failure detector raised, the views it installed, the datagrams it sent and
received, and those the fault-injection switch dropped.

Examples:
  horus probe --group chat
  horus probe                                every group on this host
  horus probe --group chat --timeout 300ms
  horus probe --group chat --to 127.0.0.1:41234   one member, by the address it printed";

/// Asks every member of a group for its view and counters, and prints a table.
///
/// Members started by `horus member` and `horus demo` answer, on the loopback interface, with
/// no effect on the group: a probe is no member and causes no view change. Exits with status 1
/// if no member answered.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = PROBE_HELP)]
pub struct ProbeArgs {
    /// The group to probe [default: every group].
    #[arg(long)]
    group: Option<String>,
    /// How long to wait for answers.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
    /// Also ask these members directly, by the probe address they print.
    #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
    to: Vec<SocketAddr>,
    /// Print each answer as a JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ProbeArgs) -> ExitCode {
    match probe(&args) {
        Ok(answers) if answers.is_empty() => {
            let group =
                args.group.as_deref().map_or("any group".into(), |g| format!("group `{g}`"));
            eprintln!(
                "no member of {group} answered within {:?}: are members running on this host \
                 (horus member, horus demo)?",
                args.timeout
            );
            ExitCode::FAILURE
        }
        Ok(answers) => {
            if args.json {
                for a in &answers {
                    say!("{}", serde_json::to_string(a).unwrap_or_default());
                }
            } else {
                say_part!("{}", table(&answers));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("horus probe: {e}");
            ExitCode::from(2)
        }
    }
}

fn probe(args: &ProbeArgs) -> std::io::Result<Vec<Answer>> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
    socket.set_multicast_loop_v4(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    let socket: UdpSocket = socket.into();
    let nonce = random();
    let request = Request { horus_probe: VERSION, group: args.group.clone(), nonce };
    let bytes = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
    socket.send_to(&bytes, PROBE_GROUP)?;
    for to in &args.to {
        socket.send_to(&bytes, to)?;
    }
    let deadline = Instant::now() + args.timeout;
    let mut answers: BTreeMap<Endpoint, Answer> = BTreeMap::new();
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Ok(a) = serde_json::from_slice::<Answer>(&buf[..n]) {
                    if a.nonce == nonce && a.horus_probe == VERSION {
                        answers.insert(a.endpoint, a);
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            // An ICMP error from a `--to` address that is not listening: keep waiting.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    Ok(answers.into_values().collect())
}

/// The answers as a table, one line per member.
fn table(answers: &[Answer]) -> String {
    let head = [
        "GROUP",
        "MEMBER",
        "PID",
        "VIEW",
        "SIZE",
        "CASTS",
        "DELIVERED",
        "SENDS",
        "RETRANS",
        "SUSPICIONS",
        "VIEWS",
        "DGRAMS-OUT",
        "DGRAMS-IN",
        "DROPPED",
    ];
    let mut rows = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for a in answers {
        let c = |k: &str| a.counters.get(k).copied().unwrap_or(0).to_string();
        rows.push(vec![
            a.group.clone(),
            a.endpoint.to_string(),
            a.pid.to_string(),
            a.view.to_string(),
            a.members.len().to_string(),
            c("casts"),
            c("delivered"),
            c("sends"),
            c("retrans"),
            c("suspicions"),
            c("views"),
            c("datagrams_sent"),
            c("datagrams_received"),
            c("fault_dropped"),
        ]);
    }
    let widths: Vec<usize> =
        (0..head.len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> =
            r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The counters a probe answers with, by name: the Group's, the runtime's, and the stack's
/// as `layer.counter`, plus the table's sums.
fn counter_map(c: &Counters) -> BTreeMap<String, u64> {
    let g = &c.group;
    let mut m: BTreeMap<String, u64> = [
        ("casts", g.casts),
        ("delivered", g.delivered),
        ("sends", g.sends),
        ("sends_delivered", g.sends_delivered),
        ("calls", g.calls),
        ("sends_dropped", g.sends_dropped),
        ("bad_header", g.bad_header),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    m.extend(c.member.runtime.iter().map(|(k, v)| (k.to_owned(), v)));
    for (layer, name, v) in &c.member.node {
        *m.entry(format!("{layer}.{name}")).or_default() += v;
    }
    let r = &c.member.runtime;
    m.insert("fault_dropped".into(), r.fault_dropped_in + r.fault_dropped_out);
    m.insert("retrans".into(), c.node("mnak", "retrans_sent") + c.node("pt2pt", "retrans"));
    m.insert("suspicions".into(), c.node("suspect", "suspicions"));
    m.insert("views".into(), c.node("member", "views"));
    m
}

/// One line of a member's main counters, for `horus member`'s `/counters`.
pub fn summarize(c: &Counters) -> String {
    let m = counter_map(c);
    let keys = [
        "casts",
        "delivered",
        "sends",
        "retrans",
        "suspicions",
        "views",
        "datagrams_sent",
        "datagrams_received",
        "fault_dropped",
    ];
    keys.iter()
        .map(|k| format!("{k}={}", m.get(*k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Answers probes for one member while it is held; stops when dropped.
#[derive(Debug)]
pub struct Responder {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    /// Starts answering probes for `handle`'s member: on the diagnostics multicast address
    /// (IPv4 only) and on a unicast port of `ip`. Must be called within a tokio runtime.
    /// `None` (with a warning on stderr) if no socket could be opened.
    pub fn start(handle: GroupHandle, ip: IpAddr) -> Option<Responder> {
        let unicast = match std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UdpSocket::from_std)
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("horus: not answering probes: cannot bind {ip}: {e}");
                return None;
            }
        };
        let addr = unicast.local_addr().ok()?;
        let multicast = match ip {
            IpAddr::V4(_) => match listen_multicast() {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("horus: answering probes only at {addr}: cannot listen on {PROBE_GROUP}: {e}");
                    None
                }
            },
            IpAddr::V6(_) => None,
        };
        let task = tokio::spawn(answer(handle, unicast, multicast));
        Some(Responder { addr, task })
    }

    /// The unicast address it answers at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn listen_multicast() -> std::io::Result<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::V4(PROBE_GROUP).into())?;
    s.join_multicast_v4(PROBE_GROUP.ip(), &Ipv4Addr::LOCALHOST)?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

async fn answer(
    handle: GroupHandle,
    unicast: tokio::net::UdpSocket,
    multicast: Option<tokio::net::UdpSocket>,
) {
    let mut ubuf = vec![0; 2048];
    let mut mbuf = vec![0; 2048];
    loop {
        let got = tokio::select! {
            r = unicast.recv_from(&mut ubuf) => r.map(|(n, from)| (ubuf[..n].to_vec(), from)),
            r = async {
                match &multicast {
                    Some(m) => m.recv_from(&mut mbuf).await,
                    None => std::future::pending().await,
                }
            } => r.map(|(n, from)| (mbuf[..n].to_vec(), from)),
        };
        let Ok((datagram, from)) = got else { continue };
        let Ok(request) = serde_json::from_slice::<Request>(&datagram) else { continue };
        if request.horus_probe != VERSION
            || request.group.as_deref().is_some_and(|g| g != handle.name())
        {
            continue;
        }
        let Ok(counters) = handle.counters().await else { return };
        let view = handle.view();
        let answer = Answer {
            horus_probe: VERSION,
            nonce: request.nonce,
            group: handle.name().to_owned(),
            endpoint: handle.endpoint(),
            pid: std::process::id(),
            stack: handle.stack().to_owned(),
            view: view.id,
            members: view.members.clone(),
            counters: counter_map(&counters),
        };
        if let Ok(bytes) = serde_json::to_vec(&answer) {
            let _ = unicast.send_to(&bytes, from).await;
        }
    }
}

/// 64 random bits from the standard library's per-process random keys.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_and_garbage_is_refused() {
        let r = Request { horus_probe: 1, group: Some("g".into()), nonce: 9 };
        let back: Request = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        for junk in [&b""[..], b"{}", b"\xff\x00", b"{\"horus_probe\":1}"] {
            assert!(serde_json::from_slice::<Request>(junk).is_err());
        }
    }

    #[test]
    fn table_has_a_header_and_a_row_per_member() {
        let a = Answer {
            horus_probe: 1,
            nonce: 1,
            group: "g".into(),
            endpoint: Endpoint::new(3, 0),
            pid: 77,
            stack: "vsync".into(),
            view: ViewId::new(2, Endpoint::new(1, 0)),
            members: vec![Endpoint::new(1, 0), Endpoint::new(3, 0)],
            counters: [("casts".to_owned(), 5), ("retrans".to_owned(), 2)].into_iter().collect(),
        };
        let t = table(&[a]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("GROUP  MEMBER  PID"), "{t}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&cells[..6], ["g", "p3.0", "77", "v2@p1.0", "2", "5"]);
        assert_eq!(cells[8], "2");
    }
}
