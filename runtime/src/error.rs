//! [`RuntimeError`]: what can go wrong starting or driving a member.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// An error of the runtime. Errors from [`spawn`](crate::spawn) leave nothing running: the
/// sockets made so far are closed. Errors from a [`MemberHandle`](crate::MemberHandle) change
/// nothing.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The group address of a multicast transport is not a multicast address.
    #[error(
        "{addr} is not a multicast address: use 224.0.0.0/4 (e.g. 239.255.0.1) for IPv4, \
         ff00::/8 (e.g. ff12::1) for IPv6, or unicast-only mode"
    )]
    NotMulticast { addr: IpAddr },
    /// Two addresses of the configuration are of different IP families.
    #[error(
        "{what} {addr} is not of the transport's IP family ({family}): use IPv4 or IPv6 \
         addresses throughout"
    )]
    MixedFamilies { what: &'static str, addr: SocketAddr, family: &'static str },
    /// A setting is out of range.
    #[error("bad transport setting: {0}")]
    BadSetting(&'static str),
    /// `spawn` was called outside a tokio runtime.
    #[error("spawn must be called from within a tokio runtime (e.g. under #[tokio::main])")]
    NoRuntime,
    /// A socket could not be made.
    #[error("could not open a UDP socket for {addr}: {source}")]
    Socket { addr: SocketAddr, source: io::Error },
    /// A socket could not be bound.
    #[error(
        "could not bind a UDP socket to {addr}: {source}; check the address is one of this \
         host's, and the port is free (port 0 picks one)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    /// A socket option was refused.
    #[error("could not set {option} on the socket bound to {addr}: {source}")]
    SocketOption { option: &'static str, addr: SocketAddr, source: io::Error },
    /// The multicast interface could not be used to send.
    #[error(
        "could not send multicast out of interface {interface}: {source}; check that it is \
         an address (IPv4) or index (IPv6) of one of this host's interfaces (`ip addr`)"
    )]
    MulticastInterface { interface: String, source: io::Error },
    /// Joining the multicast group failed.
    #[error(
        "could not join multicast group {group} on interface {interface}: {source}; check that \
         the interface exists and has multicast enabled (`ip link`), name another interface, \
         or use unicast-only mode with seeds"
    )]
    JoinMulticast { group: IpAddr, interface: String, source: io::Error },
    /// The member's driver has stopped: shut down, exited the group, or failed.
    #[error("the member has stopped (shut down, left the group, or failed): spawn a new one")]
    Stopped,
    /// The driver panicked; the member is gone.
    #[error("the member's driver panicked: this is a bug, please report it with the trace")]
    Panicked,
}
