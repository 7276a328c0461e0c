//! Making the sockets, through socket2: options that std and tokio do not offer (reuse, buffer
//! sizes, multicast interface, TTL, loop) are set before binding.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::config::{Interface, TransportConfig};
use crate::error::RuntimeError;

/// The socket buffer sizes the kernel granted (Linux reports twice what it will use for
/// data, its bookkeeping included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buffers {
    pub recv: usize,
    pub send: usize,
}

/// A member's sockets.
#[derive(Debug)]
pub(crate) struct Sockets {
    /// Sends everything, casts included; receives what is sent to this member alone.
    pub unicast: UdpSocket,
    /// Bound to the group's address and port, shared with the other members on the host.
    pub multicast: Option<UdpSocket>,
    /// What the kernel granted the unicast socket.
    pub buffers: Buffers,
}

impl Sockets {
    pub(crate) fn open(config: &TransportConfig) -> Result<Sockets, RuntimeError> {
        let bind = config.bind;
        let unicast = new_socket(bind)?;
        let buffers = set_buffers(&unicast, bind, config)?;
        if config.group.is_some() {
            set_multicast_send(&unicast, bind, config.interface, config.ttl)?;
        }
        unicast.bind(&bind.into()).map_err(|source| RuntimeError::Bind { addr: bind, source })?;
        let unicast = into_tokio(unicast, bind)?;
        let multicast = match config.group {
            Some(group) => Some(open_multicast(group, config)?),
            None => None,
        };
        Ok(Sockets { unicast, multicast, buffers })
    }
}

fn new_socket(addr: SocketAddr) -> Result<Socket, RuntimeError> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|source| RuntimeError::Socket { addr, source })?;
    if addr.is_ipv6() {
        // An IPv6 member speaks IPv6 only; mapped IPv4 addresses would split the directory.
        option(s.set_only_v6(true), "IPV6_V6ONLY", addr)?;
    }
    option(s.set_nonblocking(true), "O_NONBLOCK", addr)?;
    Ok(s)
}

fn set_buffers(
    s: &Socket,
    addr: SocketAddr,
    config: &TransportConfig,
) -> Result<Buffers, RuntimeError> {
    option(s.set_recv_buffer_size(config.recv_buffer), "SO_RCVBUF", addr)?;
    option(s.set_send_buffer_size(config.send_buffer), "SO_SNDBUF", addr)?;
    Ok(Buffers {
        recv: option(s.recv_buffer_size(), "SO_RCVBUF", addr)?,
        send: option(s.send_buffer_size(), "SO_SNDBUF", addr)?,
    })
}

/// The options of the socket that sends casts: out of which interface, how far, and whether
/// the members on this host hear them (they must: several members may share a host).
fn set_multicast_send(
    s: &Socket,
    addr: SocketAddr,
    interface: Interface,
    ttl: u32,
) -> Result<(), RuntimeError> {
    let bad_interface =
        |source| RuntimeError::MulticastInterface { interface: interface.to_string(), source };
    match interface {
        Interface::V4(ifaddr) => {
            s.set_multicast_if_v4(&ifaddr).map_err(bad_interface)?;
            option(s.set_multicast_ttl_v4(ttl), "IP_MULTICAST_TTL", addr)?;
            option(s.set_multicast_loop_v4(true), "IP_MULTICAST_LOOP", addr)
        }
        Interface::V6(index) => {
            s.set_multicast_if_v6(index).map_err(bad_interface)?;
            option(s.set_multicast_hops_v6(ttl), "IPV6_MULTICAST_HOPS", addr)?;
            option(s.set_multicast_loop_v6(true), "IPV6_MULTICAST_LOOP", addr)
        }
    }
}

fn open_multicast(group: SocketAddr, config: &TransportConfig) -> Result<UdpSocket, RuntimeError> {
    let s = new_socket(group)?;
    option(s.set_reuse_address(true), "SO_REUSEADDR", group)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    option(s.set_reuse_port(true), "SO_REUSEPORT", group)?;
    set_buffers(&s, group, config)?;
    // Bound to the group's address, the socket gets that group's datagrams on the port and
    // not those of another group or a unicast to the port (Linux, the BSDs; Windows would
    // want the unspecified address here).
    let bind = match group {
        SocketAddr::V6(g) => {
            let scope = match config.interface {
                Interface::V6(i) => i,
                Interface::V4(_) => 0,
            };
            SocketAddr::V6(std::net::SocketAddrV6::new(*g.ip(), g.port(), 0, scope))
        }
        v4 => v4,
    };
    s.bind(&bind.into()).map_err(|source| RuntimeError::Bind { addr: bind, source })?;
    let joined = match (group.ip(), config.interface) {
        (IpAddr::V4(g), Interface::V4(ifaddr)) => s.join_multicast_v4(&g, &ifaddr),
        (IpAddr::V6(g), Interface::V6(index)) => s.join_multicast_v6(&g, index),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "interface of another IP family")),
    };
    joined.map_err(|source| RuntimeError::JoinMulticast {
        group: group.ip(),
        interface: config.interface.to_string(),
        source,
    })?;
    into_tokio(s, group)
}

fn into_tokio(s: Socket, addr: SocketAddr) -> Result<UdpSocket, RuntimeError> {
    UdpSocket::from_std(s.into()).map_err(|source| RuntimeError::Socket { addr, source })
}

fn option<T>(r: io::Result<T>, option: &'static str, addr: SocketAddr) -> Result<T, RuntimeError> {
    r.map_err(|source| RuntimeError::SocketOption { option, addr, source })
}
