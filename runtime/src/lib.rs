//! The tokio runtime of Horus for Rust: runs a member's sans-IO [`Node`](horus_core::Node) over real UDP.
//!
//! [`spawn`] opens the member's sockets ([`TransportConfig`]: IP multicast, or unicast-only
//! with seeds) and starts one tokio task, the *driver*, that owns the node and the sockets. The
//! application talks to it through the [`MemberHandle`]: down events in, up events out, both
//! over bounded channels, plus counters, fault injection and shutdown; a [`MemberControl`]
//! cloned from it lets other tasks cast.
//!
//! # The driver loop
//! Each turn:
//! 1. fires the node's timers that are due (and, in unicast-only mode, the directory gossip);
//! 2. pumps the node: its up events go to the application's channel until it is full (the
//!    rest wait in the node, which goes on running its protocols; the driver is woken when
//!    the application makes room), and every datagram it wants sent is encoded into one send
//!    batch, which is then handed to the kernel;
//! 3. waits for the first of: a stop, commands from the handle (up to 64 handled in one go),
//!    a socket ready to read (every datagram it holds is read, up to
//!    [`TransportConfig::recv_batch`], before the node is pumped again), the earliest deadline
//!    (the node's [`Node::poll_timeout`](horus_core::Node::poll_timeout), or the next gossip), room in the application's
//!    channel.
//!
//! The node's clock ([`horus_core::Time`]) is the monotonic clock in nanoseconds since
//! `spawn`, so a node should be built with [`Time::ZERO`](horus_core::Time::ZERO) as its
//! start. Counters are kept in plain integers during a turn and published to the shared
//! atomics once per turn; the fault switch is read with one atomic load per batch. The hot
//! path takes no lock and allocates nothing of its own: datagrams are read into large
//! buffers shared by the datagrams cut from them, and written back to back into one reused
//! send buffer. The IO is split out ([`io`]) so a batched backend (recvmmsg/sendmmsg, GSO)
//! can replace it.
//!
//! # Sockets
//! A member sends everything from one unicast socket, bound to [`TransportConfig::bind`]: casts
//! to the group's address, sends to the member's address. In multicast mode it also receives
//! on a socket bound to the group's address and port with `SO_REUSEADDR` and `SO_REUSEPORT`,
//! so that the members on one host share the port, and joined to the group on the configured
//! interface. Multicast loop is on (members on one host hear each other), the TTL is
//! configurable, and both sockets ask for large buffers ([`MemberControl::buffers`] tells what
//! the kernel granted).
//!
//! # The directory
//! An in-view datagram names its sender by rank in the view, not by address, so the driver
//! keeps a directory from endpoint to address ([`directory`]), learnt from what it receives:
//! the source address of an in-view datagram of its current view, and of a frame outside every
//! view (a join request or a welcome, which names its sender's endpoint). A send to an
//! endpoint whose address is not known yet is dropped and counted (`unknown_address`): the
//! reliable layers send it again.
//!
//! In unicast-only mode a cast goes as one datagram to each other member of the view whose
//! address is known, and a join request to every address known and to the seeds. Members
//! learn the others' addresses from the seeds and from *directory gossip*, a frame of the
//! runtime's own (first byte `0xff`, see [`wire`]) that the driver consumes and never hands to
//! the node: each member sends the addresses it knows of its view's members to those members
//! and to the seeds, every [`TransportConfig::gossip_every`] and at once when its view changes,
//! so members that never talked learn each other before they would suspect each other.
//!
//! # Faults
//! [`FaultSwitch`] (set in [`TransportConfig::faults`], changed through
//! [`MemberControl::faults`]) drops a seeded fraction of the datagrams each way, or every
//! datagram from and to chosen endpoints; it heals at once.
//!
//! # Examples
//! A group of one on the loopback interface, in unicast-only mode (no multicast needed):
//! ```
//! use horus_core::{Down, Endpoint, GroupName, Level, Message, Rng, Time, Up};
//! use horus_gms::Member;
//! use horus_runtime::{spawn, TransportConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = horus_layers::registry();
//! registry.add_layer(horus_gms::INFO);
//! let plan = registry.plan("vsync")?;
//! let group = GroupName::new("doc");
//! let me = Endpoint::new(1, 0);
//! // Nobody to join: after a few requests it founds the group alone.
//! let node = Member::join(plan, group.clone(), me, Rng::new(1), Time::ZERO, true)?;
//! let transport = TransportConfig::unicast_only([]).bind("127.0.0.1:0".parse()?);
//! let mut member = spawn(Box::new(node), &group, transport)?;
//! while let Some(ev) = member.next_event().await {
//!     match ev {
//!         Up::View(view) => {
//!             assert_eq!(view.members, vec![me]);
//!             let msg = Message::new("hello".into()).with_level(Level::Total);
//!             member.down(Down::Cast(msg)).await?;
//!         }
//!         Up::Cast { msg, .. } => {
//!             assert_eq!(&msg.payload()[..], b"hello");
//!             break;
//!         }
//!         Up::Block => member.down(Down::BlockOk).await?,
//!         _ => {}
//!     }
//! }
//! member.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(loom, allow(dead_code))]

// Under `--cfg loom` only the state the handle and the driver share is built (tokio leaves
// out its networking there), for `tests/loom.rs` to model.
mod config;
mod counters;
pub mod directory;
#[cfg(not(loom))]
mod driver;
mod error;
mod faults;
#[cfg(not(loom))]
mod handle;
#[cfg(not(loom))]
pub mod io;
#[cfg(not(loom))]
mod socket;
#[cfg(not(loom))]
mod spawn;
mod sync;
pub mod wire;

pub use config::{
    Interface, TransportConfig, DEFAULT_BUFFER, DEFAULT_COMMAND_CAPACITY, DEFAULT_EVENT_CAPACITY,
    DEFAULT_GOSSIP_EVERY, DEFAULT_MAX_BACKLOG, DEFAULT_RECV_BATCH, ETHERNET_DATAGRAM,
    LOOPBACK_DATAGRAM,
};
pub use counters::{CounterValues, Counters};
pub use error::RuntimeError;
pub use faults::{FaultConfig, FaultSwitch};
#[cfg(not(loom))]
pub use handle::{MemberControl, MemberCounters, MemberHandle};
#[cfg(not(loom))]
pub use socket::Buffers;
#[cfg(not(loom))]
pub use spawn::spawn;
