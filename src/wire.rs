//! The header a [`Group`](crate::Group) puts in front of the application's bytes on every cast
//! and send: a one-byte kind, then at most one varint.
//!
//! ```text
//! on a cast  0x00 seq     application data
//!            0x01 seq     a call (group RPC request); its id is (sender, seq)
//! on a send  0x02         application data
//!            0x03 call    a reply to the call (receiver, call)
//! ```
//!
//! `seq` is the sender's cast counter (1, 2, 3, … in the order it casts, calls included), a
//! postcard varint: with the sender's endpoint it is the message's id in a recorded history
//! ([`MsgId`](horus_core::MsgId)), exactly as the simulator numbers casts. A call's id is the
//! seq of the cast that carries it, so a reply names it by that number. So a cast costs 2 bytes
//! up to the 127th, 3 up to the 16383rd; a send 1, a reply 2 or more.
//!
//! The header goes into the message's headroom like a layer's ([`Message::push`]), so it costs
//! no allocation and never copies the payload. A header that does not decode, or whose kind
//! does not belong on a cast (or a send), is dropped and counted (`bad_header`), never a panic.

use horus_core::{DecodeError, Message};

const DATA: u8 = 0x00;
const CALL: u8 = 0x01;
const SEND: u8 = 0x02;
const REPLY: u8 = 0x03;

/// What a cast or send carries, as the Group frames it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A cast of application data, the sender's `seq`th cast.
    Data { seq: u64 },
    /// A call, cast as the sender's `seq`th cast; answered by [`Header::Reply`].
    Call { seq: u64 },
    /// A send of application data.
    Send,
    /// A send answering the receiver's call number `call`.
    Reply { call: u64 },
}

impl Header {
    /// Pushes the header in front of `msg`'s payload.
    pub(crate) fn push_on(self, msg: &mut Message) {
        match self {
            Header::Data { seq } => {
                msg.push(&seq);
                msg.push(&DATA);
            }
            Header::Call { seq } => {
                msg.push(&seq);
                msg.push(&CALL);
            }
            Header::Send => msg.push(&SEND),
            Header::Reply { call } => {
                msg.push(&call);
                msg.push(&REPLY);
            }
        }
    }

    /// Pops the header off a delivered message, leaving the application's bytes.
    pub(crate) fn pop_from(msg: &mut Message) -> Result<Header, DecodeError> {
        match msg.pop::<u8>()? {
            DATA => Ok(Header::Data { seq: msg.pop()? }),
            CALL => Ok(Header::Call { seq: msg.pop()? }),
            SEND => Ok(Header::Send),
            REPLY => Ok(Header::Reply { call: msg.pop()? }),
            _ => Err(DecodeError::Invalid("unknown group header kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use horus_core::Rng;

    use super::*;

    fn round_trip(h: Header, payload: &'static [u8]) -> (Header, Bytes, usize) {
        let mut msg = Message::new(Bytes::from_static(payload));
        h.push_on(&mut msg);
        let wire = msg.to_bytes();
        let len = wire.len() - payload.len();
        let mut got = Message::from_wire(wire);
        let back = Header::pop_from(&mut got).expect("a header we wrote decodes");
        (back, got.into_payload(), len)
    }

    #[test]
    fn every_kind_round_trips_and_leaves_the_payload() {
        for h in [
            Header::Data { seq: 1 },
            Header::Data { seq: u64::MAX },
            Header::Call { seq: 300 },
            Header::Send,
            Header::Reply { call: 7 },
        ] {
            let (back, payload, _) = round_trip(h, b"payload");
            assert_eq!(back, h);
            assert_eq!(&payload[..], b"payload");
        }
    }

    #[test]
    fn header_costs_a_few_bytes() {
        assert_eq!(round_trip(Header::Data { seq: 127 }, b"").2, 2);
        assert_eq!(round_trip(Header::Data { seq: 128 }, b"").2, 3);
        assert_eq!(round_trip(Header::Send, b"x").2, 1);
        assert_eq!(round_trip(Header::Reply { call: 5 }, b"x").2, 2);
    }

    #[test]
    fn unknown_kind_and_truncation_are_errors() {
        for bad in [&[][..], &[0x04], &[0xff, 1], &[DATA], &[CALL, 0x80], &[REPLY, 0xff, 0xff]] {
            let mut msg = Message::from_wire(Bytes::copy_from_slice(bad));
            assert!(Header::pop_from(&mut msg).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng::new(11);
        for len in 0..64 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let mut msg = Message::from_wire(Bytes::from(bytes));
                if let Ok(h) = Header::pop_from(&mut msg) {
                    // Whatever decoded re-encodes to a header that decodes the same.
                    assert_eq!(round_trip_owned(h), h);
                }
            }
        }
    }

    fn round_trip_owned(h: Header) -> Header {
        let mut msg = Message::new(Bytes::new());
        h.push_on(&mut msg);
        Header::pop_from(&mut Message::from_wire(msg.to_bytes())).expect("decodes")
    }
}
