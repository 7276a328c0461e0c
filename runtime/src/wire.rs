//! What the runtime reads of the stack's framing, and the one frame of its own: directory
//! gossip.
//!
//! The stack's datagrams begin with one byte, `version << 4 | kind` (`horus_core::stack`):
//! version 1, kinds 0 (cast), 1 (send) and 2 (outside every view), so `0x10`, `0x11` and
//! `0x12`. An in-view frame then names the group's tag, the view id and the sender's rank
//! (read with [`peek_sender`]); an outside frame names the group's tag and the sender's
//! endpoint.
//!
//! # The gossip frame
//! A unicast-only member tells the others the addresses it knows, so that members that never
//! talked can reach each other. The driver consumes these frames; the node never sees them.
//!
//! ```text
//! byte 0     0xff  GOSSIP_TAG, the stack's RESERVED_FRAME_TAG: version nibble 15; the stack
//!                  uses version 1, so no stack frame begins with it, and a stack that got
//!                  one would drop it as of an unknown version
//! then, postcard-encoded (varints):
//!   group    u32                   the group's tag (FNV-1a of its name, as in every frame)
//!   from     Endpoint              the sender (its address is the datagram's source)
//!   entries  Vec<(Endpoint, SocketAddr)>   members of the sender's view and their addresses,
//!                                  as the sender saw them, at most GOSSIP_MAX_ENTRIES
//! ```

use std::net::SocketAddr;

pub use horus_core::stack::peek_sender;
use horus_core::Endpoint;
use serde::{Deserialize, Serialize};

/// The first byte of a gossip frame: the one the stack reserves for a driver's own frames.
pub const GOSSIP_TAG: u8 = horus_core::stack::RESERVED_FRAME_TAG;

/// The most entries one gossip frame carries (it stays far under a datagram's size).
pub const GOSSIP_MAX_ENTRIES: usize = 256;

/// The kind nibble of an outside frame, mirrored from `horus_core::stack` (where it is
/// private); `tests::mirror_matches_the_stack` guards it.
const KIND_OUTSIDE: u8 = 2;

/// Whether `datagram` is a frame outside every view (a join request, a welcome).
#[inline]
pub(crate) fn is_outside(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|t| *t & 0xf == KIND_OUTSIDE)
}

/// A directory gossip frame, after its tag byte.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(crate) struct Gossip {
    pub group: u32,
    pub from: Endpoint,
    pub entries: Vec<(Endpoint, SocketAddr)>,
}

impl Gossip {
    /// The frame, tag byte first.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![GOSSIP_TAG];
        // Serializing a struct of integers and addresses into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// The frame in `datagram`, if it is a well-formed one.
    pub(crate) fn decode(datagram: &[u8]) -> Option<Gossip> {
        let (&tag, body) = datagram.split_first()?;
        if tag != GOSSIP_TAG {
            return None;
        }
        let g: Gossip = postcard::from_bytes(body).ok()?;
        (g.entries.len() <= GOSSIP_MAX_ENTRIES).then_some(g)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use horus_core::stack::{frame_outside, parse_outside};
    use horus_core::view_state::ViewState;
    use horus_core::{Down, GroupName, Message, Rank, Rng, Time, View};

    use super::*;

    #[test]
    fn mirror_matches_the_stack() {
        let group = GroupName::new("mirror");
        let (a, b) = (Endpoint::new(1, 0), Endpoint::new(2, 3));
        let view = Arc::new(View::initial(vec![a, b]));
        let vs = ViewState::new(group.clone(), b, view.clone()).unwrap();
        let plan = horus_layers::registry().plan("pt2pt").unwrap();
        let mut stack = plan.build(vs, Rng::new(1), Time::ZERO).unwrap();
        stack.down(Time::ZERO, Down::Cast(Message::new(Bytes::from_static(b"x"))));
        stack.down(Time::ZERO, Down::Send(Rank(0), Message::new(Bytes::from_static(b"y"))));
        let mut n = 0;
        while let Some(t) = stack.poll_transmit() {
            let d = t.msg.to_bytes();
            assert_eq!(peek_sender(&d), Some((group.tag(), view.id, Rank(1))));
            assert!(!is_outside(&d) && d[0] != GOSSIP_TAG);
            n += 1;
        }
        assert!(n >= 2);
        let outside = frame_outside(&group, b, Message::control()).to_bytes();
        assert!(is_outside(&outside) && peek_sender(&outside).is_none());
        assert_eq!(parse_outside(group.tag(), &outside).map(|(e, _)| e), Some(b));
    }

    #[test]
    fn gossip_round_trips_and_is_no_stack_frame() {
        let g = Gossip {
            group: 7,
            from: Endpoint::new(1, 0),
            entries: vec![
                (Endpoint::new(2, 0), "127.0.0.1:9".parse().unwrap()),
                (Endpoint::new(3, 1), "[::1]:10".parse().unwrap()),
            ],
        };
        let d = g.encode();
        assert_eq!(Gossip::decode(&d), Some(g));
        assert!(peek_sender(&d).is_none() && !is_outside(&d));
        assert!(horus_core::stack::peek_view(&d).is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng::new(5);
        for len in 0..200 {
            for _ in 0..50 {
                let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                if len > 0 && rng.chance(0.5) {
                    d[0] = [GOSSIP_TAG, 0x10, 0x11, 0x12][rng.index(4)];
                }
                let _ = peek_sender(&d);
                let _ = Gossip::decode(&d);
                let _ = is_outside(&d);
            }
        }
    }
}
