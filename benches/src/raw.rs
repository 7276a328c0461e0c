//! The raw UDP member: the benchmark's pattern with no protocol, for the baseline.
//!
//! Multicast: every member receives on a socket bound to the group's address and port (shared
//! by the members on a host, `SO_REUSEADDR` and `SO_REUSEPORT`, joined through the member's
//! host address, `127.0.0.1` on one host) and sends from a socket of its own on that address
//! with `IP_MULTICAST_IF` set to it and loop on, as the runtime does. Unicast: one socket on
//! the host address, and a sender sends each datagram to every member, itself included (as a
//! cast is delivered to its sender). Buffers are asked as large as the runtime asks for its
//! own, so neither side has a kernel advantage.
//!
//! Sockets are blocking; the receiver reads with a short timeout so it can take its orders,
//! and stops once it has every message, or once it is told every sender is done and nothing
//! has come for [`QUIET`]. The orders come on a channel and the member says what it did
//! through a callback: a member process takes them from its parent on stdin and answers on
//! stdout, a member of `--join` takes them from the group's notes and casts its answers.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::BenchError;
use crate::multi::{pace, Spec, Tally};
use crate::proto::{self, Header, Line, Order};

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// How long a draining receiver waits for one more datagram.
pub const QUIET: Duration = Duration::from_millis(200);

/// How often a receiver with nothing to read looks at its orders.
const POLL: Duration = Duration::from_millis(10);

/// How often a receiver looks at its orders while traffic flows (an order such as `go` must
/// not wait behind a stream of datagrams, or the senders start apart).
const ORDERS_EVERY: Duration = Duration::from_millis(1);

fn err(what: &str, e: io::Error) -> BenchError {
    BenchError::InMember(format!("raw UDP: {what}: {e}"))
}

/// Where a raw member says what it did ([`Line::Bound`], [`Line::Sent`], [`Line::Result`]),
/// from its own thread and its sender's; an error means nobody listens any more.
pub(crate) type Say = Arc<dyn Fn(Line) -> io::Result<()> + Send + Sync>;

/// Runs a raw UDP member until it is told `exit` or its orders' channel closes.
pub(crate) fn member(spec: &Spec, orders: Receiver<Order>, say: Say) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_millis(spec.timeout_ms);
    let (recv, send) = open(spec)?;
    recv.set_read_timeout(Some(POLL)).map_err(|e| err("SO_RCVTIMEO", e))?;
    let addr = send.local_addr().map_err(|e| err("local address", e))?;
    say(Line::Bound { addr }).map_err(|e| err("report", e))?;
    let mut dests: Vec<SocketAddr> = spec.addr.into_iter().collect();
    let mut tally = Tally::new(spec.expected());
    let mut drain_since: Option<Instant> = None;
    let mut last_rx = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut orders_at = Instant::now();
    loop {
        match recv.recv(&mut buf) {
            Ok(n) => {
                last_rx = Instant::now();
                match Header::read(&buf[..n]) {
                    Some(h) if h.is_last() => tally.on_deliver(&h),
                    Some(_) => {}
                    None => tally.malformed += 1,
                }
                if tally.is_complete() {
                    break;
                }
                if last_rx.duration_since(orders_at) < ORDERS_EVERY {
                    continue;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // An ICMP error from an earlier unicast send: nothing was read.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(err("receive", e)),
        }
        orders_at = Instant::now();
        loop {
            match orders.try_recv() {
                Ok(Order::Peers(p)) if spec.unicast => dests = p,
                Ok(Order::Go) if spec.sender => {
                    let socket = send.try_clone().map_err(|e| err("clone the socket", e))?;
                    start_sender(spec, socket, dests.clone(), say.clone());
                }
                Ok(Order::Drain) => drain_since = Some(Instant::now()),
                Ok(Order::Exit) | Err(TryRecvError::Disconnected) => return Ok(()),
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        let quiet = drain_since.is_some_and(|d| now.duration_since(d.max(last_rx)) >= QUIET);
        if quiet || now >= deadline {
            break;
        }
    }
    say(Line::Result(tally.result)).map_err(|e| err("report", e))?;
    // Stay until told to go, as a horus member does.
    loop {
        match orders.recv() {
            Ok(Order::Exit) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// The sockets: one to receive on, one to send from (the same socket in unicast), on the
/// member's host address (`0.0.0.0`: the kernel's choice of interface).
fn open(spec: &Spec) -> Result<(UdpSocket, UdpSocket), BenchError> {
    let host = spec.host;
    let local = SocketAddr::from((host, 0));
    let send = new_socket()?;
    match spec.addr.filter(|_| !spec.unicast) {
        Some(group) => {
            send.set_multicast_if_v4(&host)
                .map_err(|e| err(&format!("IP_MULTICAST_IF {host}"), e))?;
            send.set_multicast_loop_v4(true).map_err(|e| err("IP_MULTICAST_LOOP", e))?;
            send.set_multicast_ttl_v4(1).map_err(|e| err("IP_MULTICAST_TTL", e))?;
            send.bind(&local.into()).map_err(|e| err(&format!("bind {local}"), e))?;
            let recv = new_socket()?;
            recv.set_reuse_address(true).map_err(|e| err("SO_REUSEADDR", e))?;
            recv.set_reuse_port(true).map_err(|e| err("SO_REUSEPORT", e))?;
            recv.bind(&group.into()).map_err(|e| err(&format!("bind {group}"), e))?;
            let SocketAddr::V4(g) = group else {
                return Err(BenchError::InMember(format!("raw UDP: {group} is not IPv4")));
            };
            recv.join_multicast_v4(g.ip(), &host)
                .map_err(|e| err(&format!("join {} on {host}", g.ip()), e))?;
            Ok((recv.into(), send.into()))
        }
        None => {
            send.bind(&local.into()).map_err(|e| err(&format!("bind {local}"), e))?;
            let send: UdpSocket = send.into();
            let recv = send.try_clone().map_err(|e| err("clone the socket", e))?;
            Ok((recv, send))
        }
    }
}

fn new_socket() -> Result<Socket, BenchError> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| err("socket", e))?;
    s.set_recv_buffer_size(horus::runtime::DEFAULT_BUFFER).map_err(|e| err("SO_RCVBUF", e))?;
    s.set_send_buffer_size(horus::runtime::DEFAULT_BUFFER).map_err(|e| err("SO_SNDBUF", e))?;
    Ok(s)
}

/// The sizes of the datagrams a message of `size` bytes goes as: one, or even parts of at
/// most [`MAX_DATAGRAM`] (each at least a header long, since `size` is).
pub(crate) fn parts(size: usize) -> Vec<usize> {
    let n = size.div_ceil(MAX_DATAGRAM).max(1);
    (0..n).map(|i| size / n + usize::from(i < size % n)).collect()
}

/// Sends `spec.count` messages to `dests` from a thread, then says `sent`.
fn start_sender(spec: &Spec, socket: UdpSocket, dests: Vec<SocketAddr>, say: Say) {
    let (count, rate, sender) = (spec.count, spec.rate, spec.index as u16);
    let parts = parts(spec.size);
    thread::spawn(move || {
        let mut buf = vec![0u8; parts[0]];
        let start = Instant::now();
        let mut failed = 0u64;
        for seq in 0..count {
            if let Some(rate) = rate {
                pace(start, rate, seq);
            }
            let sent_ns = proto::now_ns();
            for (part, &len) in parts.iter().enumerate() {
                let h = Header { sender, part: part as u8, parts: parts.len() as u8, seq, sent_ns };
                h.write(&mut buf);
                for d in &dests {
                    if socket.send_to(&buf[..len], d).is_err() {
                        failed += 1;
                    }
                }
            }
        }
        if failed > 0 {
            eprintln!("raw UDP: {failed} sends failed");
        }
        let _ = say(Line::Sent);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_in_even_datagrams_that_each_hold_a_header() {
        assert_eq!(parts(1000), vec![1000]);
        assert_eq!(parts(MAX_DATAGRAM), vec![MAX_DATAGRAM]);
        assert_eq!(parts(65_536), vec![32_768, 32_768]);
        for size in [MAX_DATAGRAM + 1, 3 * MAX_DATAGRAM + 7, crate::multi::MAX_SIZE] {
            let p = parts(size);
            assert_eq!(p.iter().sum::<usize>(), size);
            assert!(p.len() <= 255 && p.iter().all(|&l| (16..=MAX_DATAGRAM).contains(&l)));
        }
    }
}
