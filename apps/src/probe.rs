//! `horus probe`: asks every member of a group for its view and counters and prints a table,
//! as JGroups' probe does. Every member made through `horus::Group` answers, unless built
//! with `probe(false)`: see `horus::probe` for the protocol.
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
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use horus::{Counters, Endpoint};
use socket2::{Domain, Protocol, Socket, Type};

use crate::member::parse_duration;

use horus::probe::{counter_map, Answer, Request, MAX_DATAGRAM, PROBE_GROUP, VERSION};

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
/// Every member made with `horus::Group` answers (unless built with `probe(false)`), on the
/// loopback interface, with no effect on the group: a probe is no member and causes no view
/// change. Exits with status 1 if no member answered.
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
    use horus::ViewId;

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
