//! What the runtime counts: traffic, batches, and datagrams it dropped and why.
//!
//! The driver counts into plain integers while it handles a batch ([`CounterValues`]) and
//! publishes the batch's delta to the shared [`Counters`] once, with relaxed atomic adds: no
//! lock, and one atomic operation per counter that moved, not per datagram. A reader gets
//! each counter exactly as of some point; two counters read together need not be of the same
//! batch.

use crate::sync::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// The runtime's counters as plain values: a snapshot, or a delta the driver is
        /// about to publish.
        #[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
        pub struct CounterValues {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// The runtime's counters, shared between a member's driver, which adds to them, and
        /// its handle, which reads them.
        #[derive(Debug)]
        pub struct Counters {
            $($name: AtomicU64,)*
        }

        impl Counters {
            /// Every counter at zero.
            pub fn new() -> Self {
                Counters { $($name: AtomicU64::new(0),)* }
            }

            /// Adds `delta` (what a driver does once per batch).
            pub fn add(&self, delta: &CounterValues) {
                $(if delta.$name != 0 {
                    self.$name.fetch_add(delta.$name, Ordering::Relaxed);
                })*
            }

            /// The current values.
            pub fn snapshot(&self) -> CounterValues {
                CounterValues { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl CounterValues {
            /// Every counter as `(name, value)`, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }

            /// Whether every counter is zero.
            pub fn is_zero(&self) -> bool {
                *self == CounterValues::default()
            }
        }
    };
}

counters! {
    /// Datagrams handed to the kernel (a cast in unicast-only mode counts once per member).
    datagrams_sent,
    /// Bytes of those datagrams.
    bytes_sent,
    /// Datagrams read from the sockets, before fault injection.
    datagrams_received,
    /// Bytes of those datagrams.
    bytes_received,
    /// Incoming datagrams dropped by fault injection.
    fault_dropped_in,
    /// Outgoing datagrams dropped by fault injection.
    fault_dropped_out,
    /// Datagrams not sent because the destination's address is not known yet (the reliable
    /// layers send them again).
    unknown_address,
    /// Sends that failed (the datagram is lost; the reliable layers send it again).
    send_errors,
    /// Reads that failed for another reason than having nothing to read.
    recv_errors,
    /// Times the driver drained a socket and found at least one datagram.
    recv_batches,
    /// Times the driver sent out at least one datagram in one go.
    send_batches,
    /// Directory gossip frames sent (unicast-only mode).
    gossip_sent,
    /// Directory gossip frames received and applied.
    gossip_received,
    /// Gossip frames that did not decode or were of another group.
    bad_gossip,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn deltas_add_up_and_zero_fields_are_skipped() {
        let c = Counters::new();
        c.add(&CounterValues { datagrams_sent: 3, bytes_sent: 300, ..CounterValues::default() });
        c.add(&CounterValues { datagrams_sent: 2, ..CounterValues::default() });
        let s = c.snapshot();
        assert_eq!((s.datagrams_sent, s.bytes_sent, s.recv_errors), (5, 300, 0));
        assert!(!s.is_zero());
        assert_eq!(s.iter().find(|(k, _)| *k == "datagrams_sent"), Some(("datagrams_sent", 5)));
    }
}
