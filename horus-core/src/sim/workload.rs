//! The recording application: casts a mix of sizes and levels, and checks every payload it
//! delivers.
//!
//! Payload layout: `sender node (varint) | sender incarnation (varint) | seq (varint) |
//! kind (1 byte: the level of a cast, or `SEND`) | filler`, where every filler byte is
//! `seq as u8`. A delivered payload that does not parse, or whose filler is wrong, counts as
//! corrupt. Casts are numbered per sender; point-to-point sends per sender and destination.

use bytes::{BufMut, Bytes, BytesMut};

use crate::history::MsgId;
use crate::ids::Endpoint;
use crate::level::Level;

/// The kind byte of a point-to-point send.
const SEND: u8 = 0x80;

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

/// Reads a payload made by [`payload`] or [`send_payload`]; `None` if it is corrupt.
pub fn parse(p: &[u8]) -> Option<(MsgId, Kind)> {
    let mut r = p;
    let node = get_varint(&mut r)?;
    let inc = u32::try_from(get_varint(&mut r)?).ok()?;
    let seq = get_varint(&mut r)?;
    let (&kind, rest) = r.split_first()?;
    let kind = match kind {
        SEND => Kind::Send,
        k => Kind::Cast(*Level::ALL.get(usize::from(k))?),
    };
    if rest.iter().any(|b| *b != seq as u8) {
        return None;
    }
    Some((MsgId { sender: Endpoint::new(node, inc), seq }, kind))
}

fn put_varint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = r.split_first()?;
        *r = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
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

    quickcheck! {
        fn garbage_payload_never_panics(bytes: Vec<u8>) -> bool {
            let _ = parse(&bytes);
            true
        }
    }
}
