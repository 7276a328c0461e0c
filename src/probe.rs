//! Answering `horus probe`: every member, unless built with
//! [`GroupBuilder::probe(false)`](crate::GroupBuilder::probe), tells a probe its view and
//! counters, as JGroups' diagnostics do.
//!
//! # The protocol
//! Outside every group and every view, so a probe causes no view change and no member's
//! stack sees it. A member answers on two sockets of its own (not the group's): one bound to
//! the diagnostics multicast address [`PROBE_GROUP`] on the loopback interface, shared by
//! every member on the host (`SO_REUSEADDR`, `SO_REUSEPORT`: each gets a copy), and one on an
//! ephemeral unicast port of its own ([`Group::probe_addr`](crate::Group::probe_addr)), for
//! probes sent to it by address (where there is no multicast). The request and the answer
//! are one JSON datagram each:
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
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{Counters, Endpoint, GroupHandle, ViewId};

/// The diagnostics multicast address every member on a host listens to for probes.
pub const PROBE_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 75, 75), 7500);

/// The protocol version in requests and answers.
pub const VERSION: u32 = 1;

/// The largest answer read (one datagram).
pub const MAX_DATAGRAM: usize = 65_536;

/// A probe's question: every member of `group` (of every group, if none) answers.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Request {
    pub horus_probe: u32,
    pub group: Option<String>,
    pub nonce: u64,
}

/// A member's answer: who it is, its view, and its counters.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Answer {
    pub horus_probe: u32,
    pub nonce: u64,
    pub group: String,
    pub endpoint: Endpoint,
    pub pid: u32,
    pub stack: String,
    pub view: ViewId,
    pub members: Vec<Endpoint>,
    pub counters: BTreeMap<String, u64>,
}

/// The counters a probe answers with, by name: the Group's, the runtime's, and the stack's
/// as `layer.counter`, plus the table's sums.
pub fn counter_map(c: &Counters) -> BTreeMap<String, u64> {
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
                tracing::warn!(%ip, error = %e, "not answering probes: cannot bind");
                return None;
            }
        };
        let addr = unicast.local_addr().ok()?;
        let multicast = match ip {
            IpAddr::V4(_) => match listen_multicast() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(%addr, group = %PROBE_GROUP, error = %e, "answering probes only by unicast: cannot listen on the probe group");
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
}
