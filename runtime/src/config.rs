//! [`TransportConfig`]: how a member reaches the others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::error::RuntimeError;
use crate::faults::FaultConfig;

/// Socket buffers asked for by default: large, so that a burst is not lost in the kernel.
pub const DEFAULT_BUFFER: usize = 4 << 20;

/// Datagrams read from one socket before the driver pumps the node.
pub const DEFAULT_RECV_BATCH: usize = 64;

/// Events held for the application before the driver stops polling the node for more.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Commands (down events) queued before [`MemberControl::down`](crate::MemberControl::down)
/// waits.
pub const DEFAULT_COMMAND_CAPACITY: usize = 1024;

/// Bytes a member may hold for the network (flow control's backlog) before the driver takes no
/// more of the application's events.
pub const DEFAULT_MAX_BACKLOG: u64 = 8 << 20;

/// The datagram size the stack is tuned to on the loopback interface, whose MTU is 64 KiB: a
/// little under the largest UDP payload, to leave room for the headers.
pub const LOOPBACK_DATAGRAM: usize = 60_000;

/// The datagram size the stack is tuned to elsewhere: an Ethernet MTU of 1500 bytes, after IP
/// and UDP headers and the stack's own.
pub const ETHERNET_DATAGRAM: usize = 1_400;

/// How often a unicast-only member gossips its directory.
pub const DEFAULT_GOSSIP_EVERY: Duration = Duration::from_millis(200);

/// The interface multicast goes out of and is received on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// An IPv4 interface, by one of its addresses (`0.0.0.0`: the kernel's choice).
    V4(Ipv4Addr),
    /// An IPv6 interface, by index (`0`: the kernel's choice); `ip link` shows the indices.
    V6(u32),
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interface::V4(a) => write!(f, "{a}"),
            Interface::V6(i) => write!(f, "index {i}"),
        }
    }
}

/// How a member reaches the others: by IP multicast (the default), or, where there is none,
/// by unicast to every member (unicast-only mode).
///
/// Every member sends from one unicast socket, bound to [`bind`](Self::bind) (an ephemeral
/// port on every interface by default), and in multicast mode receives casts on a second
/// socket bound to the group's address and port, shared with the other members on the host.
///
/// # Examples
/// ```
/// use std::net::{Ipv4Addr, SocketAddr};
/// use horus_runtime::TransportConfig;
///
/// // IP multicast on the loopback interface.
/// let mc = TransportConfig::multicast("239.255.0.1:7400".parse().unwrap())
///     .interface_v4(Ipv4Addr::LOCALHOST)
///     .bind("127.0.0.1:0".parse().unwrap())
///     .ttl(1);
/// assert!(!mc.is_unicast_only());
///
/// // No multicast: casts go to every member, addresses learnt from the seeds.
/// let seed: SocketAddr = "10.0.0.1:7400".parse().unwrap();
/// let uc = TransportConfig::unicast_only([seed]).bind("0.0.0.0:7400".parse().unwrap());
/// assert!(uc.is_unicast_only());
/// ```
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub(crate) group: Option<SocketAddr>,
    pub(crate) interface: Interface,
    pub(crate) ttl: u32,
    pub(crate) recv_buffer: usize,
    pub(crate) send_buffer: usize,
    pub(crate) bind: SocketAddr,
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) gossip_every: Duration,
    pub(crate) recv_batch: usize,
    pub(crate) event_capacity: usize,
    pub(crate) command_capacity: usize,
    pub(crate) max_backlog: u64,
    pub(crate) max_datagram: Option<usize>,
    pub(crate) faults: FaultConfig,
}

impl TransportConfig {
    /// IP multicast to `group` (address and port). The interface and the unicast bind address
    /// default to the kernel's choice in the group's family.
    pub fn multicast(group: SocketAddr) -> Self {
        let (interface, bind) = match group.ip() {
            IpAddr::V4(_) => (Interface::V4(Ipv4Addr::UNSPECIFIED), any(false)),
            IpAddr::V6(_) => (Interface::V6(0), any(true)),
        };
        TransportConfig { group: Some(group), interface, bind, ..Self::base() }
    }

    /// No IP multicast: a cast is sent to each member whose address is known. Addresses are
    /// learnt from `seeds` (members to ask to join through) and from the members' gossip.
    pub fn unicast_only(seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        let seeds: Vec<SocketAddr> = seeds.into_iter().collect();
        let v6 = seeds.first().is_some_and(|s| s.is_ipv6());
        TransportConfig { seeds, bind: any(v6), ..Self::base() }
    }

    fn base() -> Self {
        TransportConfig {
            group: None,
            interface: Interface::V4(Ipv4Addr::UNSPECIFIED),
            ttl: 1,
            recv_buffer: DEFAULT_BUFFER,
            send_buffer: DEFAULT_BUFFER,
            bind: any(false),
            seeds: Vec::new(),
            gossip_every: DEFAULT_GOSSIP_EVERY,
            recv_batch: DEFAULT_RECV_BATCH,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            command_capacity: DEFAULT_COMMAND_CAPACITY,
            max_backlog: DEFAULT_MAX_BACKLOG,
            max_datagram: None,
            faults: FaultConfig::none(),
        }
    }

    /// Sends and receives multicast on the IPv4 interface with this address.
    pub fn interface_v4(mut self, addr: Ipv4Addr) -> Self {
        self.interface = Interface::V4(addr);
        self
    }

    /// Sends and receives multicast on the IPv6 interface with this index.
    pub fn interface_v6(mut self, index: u32) -> Self {
        self.interface = Interface::V6(index);
        self
    }

    /// Multicast TTL (IPv4) or hop limit (IPv6); 1, the default, stays on the local network.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Socket receive and send buffer sizes to ask for; the kernel may grant less (see
    /// [`MemberControl::buffers`](crate::MemberControl::buffers)).
    pub fn buffers(mut self, recv: usize, send: usize) -> Self {
        self.recv_buffer = recv;
        self.send_buffer = send;
        self
    }

    /// The address of the member's unicast socket; port 0 picks a free one.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Seed members' unicast addresses, where a unicast-only member asks to join and sends
    /// its gossip. Unused in multicast mode, where join requests go to the group.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// How often a unicast-only member gossips its directory (also at each view change).
    pub fn gossip_every(mut self, every: Duration) -> Self {
        self.gossip_every = every;
        self
    }

    /// Datagrams read from one socket in one go before the node is pumped.
    pub fn recv_batch(mut self, n: usize) -> Self {
        self.recv_batch = n;
        self
    }

    /// Events held for the application; past it the node keeps them until there is room.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Down events queued for the driver; past it [`MemberControl::down`] waits.
    ///
    /// [`MemberControl::down`]: crate::MemberControl::down
    pub fn command_capacity(mut self, n: usize) -> Self {
        self.command_capacity = n;
        self
    }

    /// Bytes the member may hold for the network before the driver stops taking the
    /// application's events ([`DEFAULT_MAX_BACKLOG`]): flow control holds casts that the
    /// slowest member has no room for yet, and past this the application's `down` (and a
    /// `Group`'s `cast`) waits instead of the backlog growing.
    pub fn max_backlog(mut self, bytes: u64) -> Self {
        self.max_backlog = bytes;
        self
    }

    /// Faults injected from the start (they can be changed through the handle).
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// The most bytes the stack should put in one datagram (pack sizes and fragments): set
    /// it to the path MTU less about 100 bytes on a network with jumbo frames, or lower on one
    /// that fragments. By default [`LOOPBACK_DATAGRAM`] when every packet stays on the loopback
    /// interface, else [`ETHERNET_DATAGRAM`].
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = Some(bytes);
        self
    }

    /// The datagram size the stack is to be tuned to (see [`max_datagram`](Self::max_datagram)).
    pub fn datagram_limit(&self) -> usize {
        let loopback_if = match self.interface {
            Interface::V4(a) => a.is_loopback(),
            Interface::V6(_) => false,
        };
        let on_loopback = self.bind.ip().is_loopback()
            && (self.group.is_none() || loopback_if)
            && self.seeds.iter().all(|s| s.ip().is_loopback());
        let default = if on_loopback { LOOPBACK_DATAGRAM } else { ETHERNET_DATAGRAM };
        self.max_datagram.unwrap_or(default)
    }

    /// Whether casts go as one unicast per member.
    pub fn is_unicast_only(&self) -> bool {
        self.group.is_none()
    }

    /// The multicast group, if any.
    pub fn group(&self) -> Option<SocketAddr> {
        self.group
    }

    /// Checks the settings agree with each other.
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        let v6 = self.bind.is_ipv6();
        let family = if v6 { "IPv6" } else { "IPv4" };
        if let Some(group) = self.group {
            if !group.ip().is_multicast() {
                return Err(RuntimeError::NotMulticast { addr: group.ip() });
            }
            if group.is_ipv6() != v6 {
                return Err(RuntimeError::MixedFamilies { what: "group", addr: group, family });
            }
            if group.port() == 0 {
                return Err(RuntimeError::BadSetting("the multicast group needs a port"));
            }
            if matches!(self.interface, Interface::V6(_)) != v6 {
                return Err(RuntimeError::BadSetting(
                    "the multicast interface is of another IP family than the group: use \
                     interface_v4 for an IPv4 group, interface_v6 for an IPv6 one",
                ));
            }
        }
        if let Some(seed) = self.seeds.iter().find(|s| s.is_ipv6() != v6) {
            return Err(RuntimeError::MixedFamilies { what: "seed", addr: *seed, family });
        }
        if self.recv_batch == 0 || self.event_capacity == 0 || self.command_capacity == 0 {
            return Err(RuntimeError::BadSetting(
                "recv_batch, event_capacity and command_capacity must be at least 1",
            ));
        }
        if self.gossip_every.is_zero() {
            return Err(RuntimeError::BadSetting("gossip_every must be longer than zero"));
        }
        Ok(())
    }
}

fn any(v6: bool) -> SocketAddr {
    if v6 {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn unicast_group_address_is_refused() {
        let c = TransportConfig::multicast("10.0.0.1:7400".parse().unwrap());
        assert!(matches!(c.validate(), Err(RuntimeError::NotMulticast { .. })));
    }

    #[test]
    fn seeds_of_another_family_are_refused() {
        let c = TransportConfig::multicast("239.1.1.1:7400".parse().unwrap())
            .seeds(["[::1]:7400".parse().unwrap()]);
        assert!(matches!(c.validate(), Err(RuntimeError::MixedFamilies { what: "seed", .. })));
    }

    #[test]
    fn ipv6_group_gets_ipv6_defaults() {
        let c = TransportConfig::multicast("[ff12::1]:7400".parse().unwrap());
        assert!(c.bind.is_ipv6());
        assert_eq!(c.interface, Interface::V6(0));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_datagram_limit_is_loopback_sized_only_when_every_packet_stays_on_loopback() {
        let lo = "127.0.0.1:0".parse().unwrap();
        let group = "239.255.0.1:7400".parse().unwrap();
        let on_lo = TransportConfig::multicast(group).interface_v4(Ipv4Addr::LOCALHOST).bind(lo);
        assert_eq!(on_lo.datagram_limit(), LOOPBACK_DATAGRAM);
        // The default interface is the kernel's choice: a real network.
        assert_eq!(TransportConfig::multicast(group).bind(lo).datagram_limit(), ETHERNET_DATAGRAM);
        let seeds = TransportConfig::unicast_only(["10.0.0.1:7400".parse().unwrap()]).bind(lo);
        assert_eq!(seeds.datagram_limit(), ETHERNET_DATAGRAM);
        assert_eq!(on_lo.max_datagram(9000).datagram_limit(), 9000);
    }
}
