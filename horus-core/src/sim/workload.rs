//! The recording application: casts a mix of sizes and levels, and checks every payload it
//! delivers.
//!
//! Payload layout: `sender node (varint) | sender incarnation (varint) | seq (varint) |
//! kind (1 byte: the level of a cast, or `SEND`) | filler`, where every filler byte is
//! `seq as u8`. A delivered payload that does not parse, or whose filler is wrong, counts as
//! corrupt. Casts are numbered per sender; point-to-point sends per sender and destination.
//!
//! The application's state ([`AppState`]), for state transfer: a digest of the casts it has
//! delivered, the wrapping sum of a 64-bit hash of each one's id (so members that delivered
//! the same set have the same digest, whatever the order), padded to a chosen size. As bytes:
//! `digest (8 bytes, little-endian) | padding`, where padding byte `i` is `i % 251` (a prime,
//! so that a 64 KiB chunk put at the wrong offset shows).

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{get_varint, mix64, put_varint};
use crate::event::Snapshot;
use crate::history::MsgId;
use crate::ids::Endpoint;
use crate::level::Level;

/// The kind byte of a point-to-point send.
const SEND: u8 = 0x80;

/// Set in the kind byte when an application's data follows the header in place of the filler
/// (see [`app_payload`]).
const APP: u8 = 0x40;

/// What a payload carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cast(Level),
    Send,
}

/// Makes the payload of cast `id` at `level`, `size` bytes long (or just the header, if
/// longer).
pub fn payload(id: MsgId, level: Level, size: usize) -> Bytes {
    make(id, level as u8, size)
}

/// Makes the payload of point-to-point send `id` (`id.seq` counts the sends to one
/// destination).
pub fn send_payload(id: MsgId, size: usize) -> Bytes {
    make(id, SEND, size)
}

fn make(id: MsgId, kind: u8, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(24));
    put_varint(&mut b, id.sender.node);
    put_varint(&mut b, u64::from(id.sender.incarnation));
    put_varint(&mut b, id.seq);
    b.put_u8(kind);
    let filler = size.saturating_sub(b.len());
    b.put_bytes(id.seq as u8, filler);
    b.freeze()
}

/// Makes the payload of cast or send `id` carrying an application's `data` after the header
/// and a 64-bit hash of the data (a simulated [`Application`](super::Application)'s message),
/// so that it is recorded and checked like any other, its bytes included.
pub fn app_payload(id: MsgId, kind: Kind, data: &[u8]) -> Bytes {
    let kind = match kind {
        Kind::Cast(level) => level as u8,
        Kind::Send => SEND,
    };
    let mut b = BytesMut::with_capacity(24 + data.len());
    put_varint(&mut b, id.sender.node);
    put_varint(&mut b, u64::from(id.sender.incarnation));
    put_varint(&mut b, id.seq);
    b.put_u8(kind | APP);
    b.put_u64_le(data_hash(data));
    b.put_slice(data);
    b.freeze()
}

/// Reads a payload made by [`payload`] or [`send_payload`]; `None` if it is corrupt (or
/// carries an application's data).
pub fn parse(p: &[u8]) -> Option<(MsgId, Kind)> {
    match parse_any(p)? {
        (id, kind, None) => Some((id, kind)),
        (_, _, Some(_)) => None,
    }
}

/// Reads any payload: its id and kind, and where an application's data starts in it (for
/// those made by [`app_payload`]); `None` if it is corrupt.
pub fn parse_any(p: &[u8]) -> Option<(MsgId, Kind, Option<usize>)> {
    let mut r = p;
    let node = get_varint(&mut r)?;
    let inc = u32::try_from(get_varint(&mut r)?).ok()?;
    let seq = get_varint(&mut r)?;
    let (&kind, rest) = r.split_first()?;
    let app = kind & APP != 0;
    let kind = match kind & !APP {
        SEND => Kind::Send,
        k => Kind::Cast(*Level::ALL.get(usize::from(k))?),
    };
    let id = MsgId { sender: Endpoint::new(node, inc), seq };
    if app {
        let (hash, data) = rest.split_at_checked(8)?;
        if u64::from_le_bytes(hash.try_into().ok()?) != data_hash(data) {
            return None;
        }
        return Some((id, kind, Some(p.len() - data.len())));
    }
    if rest.iter().any(|b| *b != seq as u8) {
        return None;
    }
    Some((id, kind, None))
}

/// The simulated application's state: the digest of the casts it delivered, and how many
/// bytes of padding its snapshots carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    pub digest: u64,
    pub padding: usize,
    /// States given to [`Snapshot::install`] that were not snapshots of this application
    /// (wrong length or padding); the digest is then left as it was.
    pub bad_installs: u64,
}

impl AppState {
    /// A state with nothing delivered yet, whose snapshots carry `padding` bytes of padding.
    pub fn new(padding: usize) -> Self {
        AppState { digest: 0, padding, bad_installs: 0 }
    }

    /// Counts cast `id` as delivered.
    pub fn deliver(&mut self, id: MsgId) {
        self.digest = self.digest.wrapping_add(hash(id));
    }

    /// The digest a snapshot carries, if `state` is one with `padding` bytes of padding.
    pub fn parse(state: &[u8], padding: usize) -> Option<u64> {
        if state.len() != 8 + padding {
            return None;
        }
        let (digest, pad) = state.split_at(8);
        // By 251-byte runs: the pattern repeats, so each run is one slice comparison.
        let pattern = pattern();
        if !pad.chunks(251).all(|c| c == &pattern[..c.len()]) {
            return None;
        }
        Some(u64::from_le_bytes(digest.try_into().ok()?))
    }
}

/// One period of the padding.
fn pattern() -> [u8; 251] {
    std::array::from_fn(|i| i as u8)
}

impl Snapshot for AppState {
    fn snapshot(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(8 + self.padding);
        b.put_u64_le(self.digest);
        let pattern = pattern();
        let mut left = self.padding;
        while left > 0 {
            let n = left.min(pattern.len());
            b.put_slice(&pattern[..n]);
            left -= n;
        }
        b.freeze()
    }

    fn install(&mut self, state: Bytes) {
        match AppState::parse(&state, self.padding) {
            Some(d) => self.digest = d,
            None => self.bad_installs += 1,
        }
    }
}

/// A 64-bit hash of an application's bytes (FNV-1a, then splitmix64's finaliser).
fn data_hash(data: &[u8]) -> u64 {
    mix64(
        data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        }),
    )
}

/// A 64-bit hash of a message id (splitmix64's finaliser over its fields).
fn hash(id: MsgId) -> u64 {
    mix64(
        id.seq
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(id.sender.node.rotate_left(32))
            .wrapping_add(u64::from(id.sender.incarnation).rotate_left(48)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn payload_round_trips_and_detects_corruption() {
        let id = MsgId { sender: Endpoint::new(300, 2), seq: 77 };
        let p = payload(id, Level::Safe, 1000);
        assert_eq!(p.len(), 1000);
        assert_eq!(parse(&p), Some((id, Kind::Cast(Level::Safe))));
        assert_eq!(parse(&send_payload(id, 10)), Some((id, Kind::Send)));
        let mut bad = p.to_vec();
        bad[500] ^= 1;
        assert_eq!(parse(&bad), None);
        assert_eq!(parse(&p[..3]), None);
    }

    #[test]
    fn an_application_payload_carries_its_data() {
        let id = MsgId { sender: Endpoint::new(3, 1), seq: 9 };
        for kind in [Kind::Cast(Level::Total), Kind::Send] {
            let p = app_payload(id, kind, b"acquire x");
            let (got, k, at) = parse_any(&p).expect("parses");
            assert_eq!((got, k), (id, kind));
            assert_eq!(&p[at.expect("application data")..], b"acquire x");
            assert_eq!(parse(&p), None, "not a workload payload");
            let mut bad = p.to_vec();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(parse_any(&bad), None, "a changed byte of the data shows");
        }
    }

    #[test]
    fn state_round_trips_whatever_the_order_of_deliveries() {
        let ids: Vec<MsgId> =
            (1..50).map(|s| MsgId { sender: Endpoint::new(s % 3, 1), seq: s }).collect();
        let (mut a, mut b) = (AppState::new(1000), AppState::new(1000));
        ids.iter().for_each(|&id| a.deliver(id));
        ids.iter().rev().for_each(|&id| b.deliver(id));
        assert_eq!(a.digest, b.digest);
        let mut c = AppState::new(1000);
        c.install(a.snapshot());
        assert_eq!((c.digest, c.bad_installs), (a.digest, 0));
        // One delivery more or less shows.
        b.deliver(MsgId { sender: Endpoint::new(0, 0), seq: 1 });
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn a_state_of_the_wrong_size_or_padding_is_refused() {
        let a = AppState { digest: 99, padding: 70_000, bad_installs: 0 };
        let snap = a.snapshot();
        assert_eq!(snap.len(), 70_008);
        let mut b = AppState::new(70_000);
        b.install(snap.slice(..70_007));
        let mut moved = snap.to_vec();
        // A 64 KiB chunk shifted by one period's remainder is caught.
        moved.copy_within(8 + 65_536..8 + 65_536 + 100, 8 + 65_536 + 7);
        b.install(Bytes::from(moved));
        assert_eq!((b.digest, b.bad_installs), (0, 2));
        assert_eq!(AppState::parse(&AppState::new(0).snapshot(), 0), Some(0));
    }

    quickcheck! {
        fn garbage_payload_never_panics(bytes: Vec<u8>) -> bool {
            let _ = parse(&bytes);
            let _ = parse_any(&bytes);
            true
        }

        fn garbage_state_never_panics(bytes: Vec<u8>, padding: u8) -> bool {
            let mut s = AppState::new(usize::from(padding));
            s.install(Bytes::from(bytes));
            true
        }
    }
}
