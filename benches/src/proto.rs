//! What the benchmark's processes say to each other: the header every message carries, the
//! clock they share, the parent's orders and the members' reports.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::hist::Histogram;

/// Bytes of [`Header`] at the start of every message: the smallest message size.
pub const HEADER_LEN: usize = 16;

/// The first bytes of a note the members of a `--join` run cast to each other. Byte 3 is a
/// benchmark message's count of parts, and 0 here: [`Header::read`] refuses every note, so no
/// note is counted as a benchmark message, and no benchmark message (whose count is at least
/// 1) is taken for a note.
pub const NOTE_TAG: [u8; 4] = [b'h', b'b', 0xff, 0];

/// The first bytes of every benchmark message, horus and raw alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sending member's index.
    pub sender: u16,
    /// Which datagram of the message this is (raw UDP cuts a message longer than a datagram
    /// into several; a horus cast is always part 0 of 1).
    pub part: u8,
    /// Datagrams of the message.
    pub parts: u8,
    /// The message's number at its sender, from 0.
    pub seq: u32,
    /// When the sender began to send it: [`now_ns`].
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`]: sizes are checked with the arguments.
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&self.sender.to_le_bytes());
        buf[2] = self.part;
        buf[3] = self.parts;
        buf[4..8].copy_from_slice(&self.seq.to_le_bytes());
        buf[8..16].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// The header at the start of `buf`; `None` if it is too short or malformed.
    pub fn read(buf: &[u8]) -> Option<Header> {
        let b = buf.get(..HEADER_LEN)?;
        let h = Header {
            sender: u16::from_le_bytes([b[0], b[1]]),
            part: b[2],
            parts: b[3],
            seq: u32::from_le_bytes(b[4..8].try_into().ok()?),
            sent_ns: u64::from_le_bytes(b[8..16].try_into().ok()?),
        };
        (h.parts > 0 && h.part < h.parts).then_some(h)
    }

    /// Whether this datagram completes its message (the last part).
    pub fn is_last(&self) -> bool {
        self.part + 1 == self.parts
    }
}

/// The clock every process of one host shares: `CLOCK_REALTIME` in nanoseconds since the Unix
/// epoch. `Instant` (`CLOCK_MONOTONIC`) is not comparable across processes by its API; the
/// realtime clock is the same clock for every process on a host, so a receiver can subtract
/// a sender's reading. It may be stepped (NTP) during a run; a negative difference counts as
/// zero.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// An order from the parent, one line on a member's stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// Start sending (senders) now.
    Go,
    /// Raw UDP, unicast: the members' addresses, by index.
    Peers(Vec<SocketAddr>),
    /// Raw UDP: every sender has finished; stop once the socket falls quiet.
    Drain,
    /// Exit now.
    Exit,
}

impl Order {
    /// The line for this order (without its newline).
    pub fn to_line(&self) -> String {
        match self {
            Order::Go => "go".into(),
            Order::Drain => "drain".into(),
            Order::Exit => "exit".into(),
            Order::Peers(p) => {
                let addrs: Vec<String> = p.iter().map(|a| a.to_string()).collect();
                format!("peers {}", addrs.join(","))
            }
        }
    }

    /// The order on `line`; `None` if it is not one.
    pub fn parse(line: &str) -> Option<Order> {
        match line.trim() {
            "go" => Some(Order::Go),
            "drain" => Some(Order::Drain),
            "exit" => Some(Order::Exit),
            l => {
                let list = l.strip_prefix("peers ")?;
                list.split(',').map(|a| a.parse().ok()).collect::<Option<_>>().map(Order::Peers)
            }
        }
    }
}

/// A report from a member, one JSON line on its stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// Horus: joined (a first view is installed); its unicast address, a seed for the others.
    Joined { addr: SocketAddr },
    /// Horus: the view holds every member.
    Ready,
    /// Raw UDP: the sockets are open; the unicast address others send to.
    Bound { addr: SocketAddr },
    /// Raw UDP: this sender has sent everything.
    Sent,
    /// Measurements, once every message was delivered (or, raw, the socket fell quiet).
    Result(MemberResult),
    /// The member failed: what it was doing and why.
    Error { message: String },
}

/// What one member measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemberResult {
    /// Messages delivered (raw: received whole).
    pub delivered: u64,
    /// Messages it should have delivered: senders × count.
    pub expected: u64,
    /// From its first delivery to its last.
    pub first_to_last_ns: u64,
    /// Delivery latency of every message, from its send time.
    pub latency: Histogram,
    /// Retransmissions this member sent (horus: `mnak` `retrans_sent` + `pt2pt` `retrans`).
    pub retransmissions: u64,
    /// Horus: datagrams this member handed to the kernel, control traffic included.
    #[serde(default)]
    pub datagrams_sent: u64,
}

impl MemberResult {
    /// Messages per second over the delivery interval (0 with fewer than two deliveries).
    pub fn rate(&self) -> f64 {
        if self.delivered < 2 || self.first_to_last_ns == 0 {
            return 0.0;
        }
        self.delivered as f64 / Duration::from_nanos(self.first_to_last_ns).as_secs_f64()
    }
}

/// Reads the parent's orders from stdin on a thread of its own, handing each to `deliver`
/// (which says `false` once nobody listens); stdin closing (the parent has gone) reads as
/// [`Order::Exit`].
pub fn read_orders(deliver: impl Fn(Order) -> bool + Send + 'static) {
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Some(o) = Order::parse(&line) {
                        if !deliver(o) {
                            return;
                        }
                    }
                }
            }
        }
        deliver(Order::Exit);
    });
}

/// Writes `line` as one JSON line on stdout, flushed at once. A parent that has gone away
/// makes this fail; the member then has nobody to report to and stops.
pub fn say(line: &Line) -> std::io::Result<()> {
    let text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reads_back_what_was_written() {
        let h = Header { sender: 7, part: 1, parts: 2, seq: 123_456, sent_ns: u64::MAX - 3 };
        let mut buf = [0u8; 20];
        h.write(&mut buf);
        assert_eq!(Header::read(&buf), Some(h));
        assert!(h.is_last());
    }

    #[test]
    fn short_or_malformed_header_is_refused() {
        assert_eq!(Header::read(&[0u8; 15]), None);
        let mut buf = [0u8; 16];
        Header { sender: 0, part: 0, parts: 1, seq: 0, sent_ns: 0 }.write(&mut buf);
        buf[2] = 1; // part 1 of 1
        assert_eq!(Header::read(&buf), None);
        buf[2] = 0;
        buf[3] = 0; // of 0 parts
        assert_eq!(Header::read(&buf), None);
    }

    #[test]
    fn a_note_is_never_read_as_a_benchmark_message() {
        for body in [&b""[..], b"{}", &[0u8; 64], &[0xffu8; 64]] {
            let note = [&NOTE_TAG[..], body].concat();
            assert_eq!(Header::read(&note), None, "{body:?}");
        }
        let mut buf = [0u8; 16];
        for parts in 1..=255u8 {
            let h = Header { sender: 0x6268, part: parts - 1, parts, seq: 0, sent_ns: 0 };
            h.write(&mut buf);
            assert!(!buf.starts_with(&NOTE_TAG), "{h:?}");
        }
    }

    #[test]
    fn orders_read_back_and_garbage_is_not_an_order() {
        let peers = Order::Peers(vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()]);
        for o in [Order::Go, Order::Drain, Order::Exit, peers] {
            assert_eq!(Order::parse(&o.to_line()), Some(o));
        }
        assert_eq!(Order::parse("peers 1.2.3.4"), None);
        assert_eq!(Order::parse("stop"), None);
    }

    #[test]
    fn rate_needs_two_deliveries_and_an_interval() {
        let r =
            MemberResult { delivered: 1000, first_to_last_ns: 500_000_000, ..Default::default() };
        assert!((r.rate() - 2000.0).abs() < 1e-9);
        assert_eq!(MemberResult { delivered: 1, ..r.clone() }.rate(), 0.0);
        assert_eq!(MemberResult { first_to_last_ns: 0, ..r }.rate(), 0.0);
    }
}
