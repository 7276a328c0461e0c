//! Messages: a payload plus a stack of per-layer headers.
//!
//! Going down, each layer [pushes](Message::push) its header in front of the ones pushed by
//! the layers above it, so the bottom layer's header comes first on the wire. Going up, each layer [pops](Message::pop) the header at the
//! front, which is its own. Headers are written into headroom kept inline in the message (a
//! heap buffer only if a stack's headers outgrow it), so pushing allocates nothing and never
//! touches the payload. A received datagram becomes a message without a copy: popping only
//! advances a cursor over the shared [`Bytes`].
//!
//! Headers are encoded with postcard: integers are varints, enums a one-byte tag, so a layer
//! with nothing to say costs one byte.
//!
//! ```
//! use bytes::Bytes;
//! use horus_core::Message;
//!
//! let mut msg = Message::new(Bytes::from_static(b"hello"));
//! msg.push(&7u32); // a layer high in the stack
//! msg.push(&(1u8, 300u64)); // a layer below it
//! let wire = msg.to_bytes(); // what the transport sends: headers, then payload
//!
//! let mut got = Message::from_wire(wire);
//! assert_eq!(got.pop::<(u8, u64)>().unwrap(), (1, 300)); // the lower layer pops first
//! assert_eq!(got.pop::<u32>().unwrap(), 7);
//! assert_eq!(got.payload(), &b"hello"[..]);
//! ```

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use std::sync::Arc;

use crate::ids::Seqno;
use crate::level::Level;

/// Bytes of header room kept inline in every message: enough for the reliable stack and the
/// ordering layers of small groups. Beyond it the headers move to the heap once.
const INLINE: usize = 36;

/// A message that did not decode: a malformed or truncated header or datagram.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed header: {0}")]
    Header(#[from] postcard::Error),
    #[error("message truncated: wanted {wanted} more bytes, {left} left")]
    Truncated { wanted: usize, left: usize },
    #[error("{0}")]
    Invalid(&'static str),
}

/// A message: a payload and the headers the layers have pushed on it, plus two marks the
/// layers read and the wire does not carry (the layers that care encode them in their
/// headers): the service level it was cast at, and whether it may be lost.
#[derive(Clone)]
pub struct Message {
    head: Head,
    body: Bytes,
    level: Level,
    unreliable: bool,
    /// For a causal-level cast going up: its vector timestamp, for the layers above that hold
    /// casts (so they keep causal order too). Set by `causal`; never on the wire.
    deps: Option<Arc<Vec<Seqno>>>,
}

impl Message {
    /// A message carrying `payload`, with no headers yet.
    #[inline]
    pub fn new(payload: Bytes) -> Self {
        Message {
            head: Head::new(),
            body: payload,
            level: Level::Fifo,
            unreliable: false,
            deps: None,
        }
    }

    /// A message with an empty payload, for a layer's own control traffic.
    #[inline]
    pub fn control() -> Self {
        Message::new(Bytes::new())
    }

    /// A received datagram: every header still to be popped, then the payload.
    #[inline]
    pub fn from_wire(datagram: Bytes) -> Self {
        Message::new(datagram)
    }

    /// The service level the message was cast at (going down), or delivered at (going up, as
    /// restored by the layers).
    #[inline]
    pub fn level(&self) -> Level {
        self.level
    }

    #[inline]
    pub fn set_level(&mut self, level: Level) {
        self.level = level;
    }

    /// Builder form of [`Message::set_level`].
    #[inline]
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Marks the message as one that may be lost: reliability layers pass it on without
    /// sequencing or retransmitting it, and ordering layers without ordering it. For a layer's
    /// own periodic traffic (gossip, heartbeats), where the next round replaces a lost one.
    #[inline]
    pub fn unreliable(mut self) -> Self {
        self.unreliable = true;
        self
    }

    #[inline]
    pub fn is_unreliable(&self) -> bool {
        self.unreliable
    }

    /// Sets or clears the unreliable mark (a receiving layer restores it from its header).
    #[inline]
    pub fn set_unreliable(&mut self, unreliable: bool) {
        self.unreliable = unreliable;
    }

    /// The vector timestamp of a causal-level cast, as `causal` found it: `deps[r]` casts of
    /// rank `r` come before it. Layers above that hold casts must not pass it before those.
    #[inline]
    pub fn deps(&self) -> Option<&[Seqno]> {
        self.deps.as_deref().map(Vec::as_slice)
    }

    /// Sets the causal dependencies (see [`Message::deps`]).
    pub fn set_deps(&mut self, deps: Option<Arc<Vec<Seqno>>>) {
        self.deps = deps;
    }

    /// Pushes a header in front of the ones already pushed.
    #[inline]
    pub fn push<H: Serialize + ?Sized>(&mut self, header: &H) {
        let mut scratch = [0u8; 128];
        match postcard::to_slice(header, &mut scratch) {
            Ok(bytes) => self.head.prepend(bytes),
            Err(_) => {
                // Headers longer than the scratch (vector timestamps of large groups, nak lists).
                let bytes = postcard::to_allocvec(header).expect("headers are plain data");
                self.head.prepend(&bytes);
            }
        }
    }

    /// Pops the header at the front.
    #[inline]
    pub fn pop<H: DeserializeOwned>(&mut self) -> Result<H, DecodeError> {
        if !self.head.is_empty() {
            let (h, rest) = postcard::take_from_bytes::<H>(self.head.as_slice())?;
            let used = self.head.len() - rest.len();
            self.head.advance(used);
            Ok(h)
        } else {
            let (h, rest) = postcard::take_from_bytes::<H>(&self.body)?;
            let used = self.body.len() - rest.len();
            // `advance`, not `split_to`: no reference count taken and dropped per header.
            bytes::Buf::advance(&mut self.body, used);
            Ok(h)
        }
    }

    /// Pushes raw bytes in front (for a layer that frames other messages, such as `pack`).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.head.prepend(bytes);
    }

    /// Pops `n` raw bytes from the front, without copying when they lie in the payload.
    pub fn pop_raw(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if !self.head.is_empty() {
            if n > self.head.len() {
                return Err(DecodeError::Truncated { wanted: n, left: self.head.len() });
            }
            let out = Bytes::copy_from_slice(&self.head.as_slice()[..n]);
            self.head.advance(n);
            Ok(out)
        } else if n > self.body.len() {
            Err(DecodeError::Truncated { wanted: n, left: self.body.len() })
        } else {
            Ok(self.body.split_to(n))
        }
    }

    /// The payload: what is left once every header has been popped.
    ///
    /// While headers are still pushed (going down) this is the payload without them.
    #[inline]
    pub fn payload(&self) -> &Bytes {
        &self.body
    }

    /// The pushed headers, outermost first (empty on a received message).
    #[inline]
    pub fn headers(&self) -> &[u8] {
        self.head.as_slice()
    }

    /// Bytes on the wire: headers plus payload.
    #[inline]
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the payload, dropping any header still pushed.
    pub fn into_payload(self) -> Bytes {
        self.body
    }

    /// The message as one contiguous buffer: headers, then payload. Zero-copy when no header
    /// is pushed; otherwise one copy, the one a transport makes anyway.
    pub fn to_bytes(&self) -> Bytes {
        if self.head.is_empty() {
            return self.body.clone();
        }
        let mut buf = BytesMut::with_capacity(self.len());
        self.write_to(&mut buf);
        buf.freeze()
    }

    /// Appends headers and payload to `out`.
    pub fn write_to(&self, out: &mut impl BufMut) {
        out.put_slice(self.head.as_slice());
        out.put_slice(&self.body);
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Message({} B headers, {} B payload, {})",
            self.head.len(),
            self.body.len(),
            self.level
        )
    }
}

/// Header room that grows toward the front: headers occupy `storage()[start..]`. Kept small
/// (48 bytes), since every event that carries a message moves it from layer to layer.
#[derive(Clone)]
struct Head {
    inline: [u8; INLINE],
    start: u32,
    /// Where the headers live once they outgrow `inline`. Boxed for a thin pointer: 8 bytes in
    /// every message rather than a `Vec`'s 24, for the rare message that spills.
    #[allow(clippy::box_collection)]
    spill: Option<Box<Vec<u8>>>,
}

impl Head {
    fn new() -> Self {
        Head { inline: [0; INLINE], start: INLINE as u32, spill: None }
    }

    #[inline]
    fn storage(&self) -> &[u8] {
        match &self.spill {
            Some(v) => v,
            None => &self.inline,
        }
    }

    #[inline]
    fn storage_mut(&mut self) -> &mut [u8] {
        match &mut self.spill {
            Some(v) => v,
            None => &mut self.inline,
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        &self.storage()[self.start as usize..]
    }

    #[inline]
    fn len(&self) -> usize {
        self.storage().len() - self.start as usize
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n as u32;
    }

    #[inline]
    fn prepend(&mut self, bytes: &[u8]) {
        if bytes.len() > self.start as usize {
            self.grow(bytes.len());
        }
        let start = self.start as usize - bytes.len();
        self.start = start as u32;
        self.storage_mut()[start..start + bytes.len()].copy_from_slice(bytes);
    }

    #[cold]
    fn grow(&mut self, need: usize) {
        let used = self.len();
        let cap = (self.storage().len() * 2).max(used + need + INLINE);
        let cap = u32::try_from(cap).expect("headers stay under 4 GiB") as usize;
        let mut heap = vec![0u8; cap];
        heap[cap - used..].copy_from_slice(self.as_slice());
        self.spill = Some(Box::new(heap));
        self.start = (cap - used) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Hdr {
        Pass,
        Data { seqno: u64, ranks: Vec<u32> },
    }

    #[test]
    fn headers_pop_in_reverse_push_order_through_the_wire() {
        let mut m = Message::new(Bytes::from_static(b"payload"));
        m.push(&Hdr::Pass);
        m.push(&Hdr::Data { seqno: 1 << 40, ranks: vec![1, 2] });
        m.push(&5u8);
        let mut r = Message::from_wire(m.to_bytes());
        assert_eq!(r.pop::<u8>().unwrap(), 5);
        assert_eq!(r.pop::<Hdr>().unwrap(), Hdr::Data { seqno: 1 << 40, ranks: vec![1, 2] });
        assert_eq!(r.pop::<Hdr>().unwrap(), Hdr::Pass);
        assert_eq!(r.payload(), &b"payload"[..]);
    }

    #[test]
    fn a_layer_with_nothing_to_say_costs_one_byte() {
        let mut m = Message::control();
        m.push(&Hdr::Pass);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_message_is_small_enough_to_move_cheaply() {
        assert!(std::mem::size_of::<Message>() <= 96, "{}", std::mem::size_of::<Message>());
    }

    #[test]
    fn popping_on_the_way_down_reads_pushed_headers_first() {
        let mut m = Message::new(Bytes::from_static(b"x"));
        m.push(&300u64);
        assert_eq!(m.pop::<u64>().unwrap(), 300);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn headers_past_the_inline_room_move_to_the_heap_intact() {
        let mut m = Message::new(Bytes::from_static(b"p"));
        for i in 0..100u64 {
            m.push(&(i * 1_000_003));
        }
        m.push(&vec![7u32; 200]);
        let mut r = Message::from_wire(m.to_bytes());
        assert_eq!(r.pop::<Vec<u32>>().unwrap(), vec![7u32; 200]);
        for i in (0..100u64).rev() {
            assert_eq!(r.pop::<u64>().unwrap(), i * 1_000_003);
        }
        assert_eq!(r.payload(), &b"p"[..]);
    }

    #[test]
    fn receiving_does_not_copy_the_payload() {
        let mut m = Message::new(Bytes::from(vec![9u8; 1000]));
        m.push(&1u8);
        let wire = m.to_bytes();
        let mut r = Message::from_wire(wire.clone());
        r.pop::<u8>().unwrap();
        // The payload is a view into the datagram's buffer.
        assert_eq!(r.payload().as_ptr(), wire[1..].as_ptr());
    }

    #[test]
    fn truncated_header_is_an_error() {
        let mut r = Message::from_wire(Bytes::from_static(&[0x80]));
        assert!(r.pop::<u64>().is_err());
        assert!(r.pop_raw(5).is_err());
    }

    quickcheck! {
        fn codec_round_trips(hs: Vec<(u64, Vec<u32>, bool)>, payload: Vec<u8>) -> bool {
            let mut m = Message::new(Bytes::from(payload.clone()));
            for h in &hs {
                m.push(h);
            }
            let mut r = Message::from_wire(m.to_bytes());
            hs.iter().rev().all(|h| r.pop::<(u64, Vec<u32>, bool)>().ok().as_ref() == Some(h))
                && r.payload() == &payload[..]
        }

        fn garbage_never_panics(bytes: Vec<u8>) -> bool {
            let mut r = Message::from_wire(Bytes::from(bytes));
            let _ = r.pop::<Hdr>();
            let _ = r.pop::<(u64, String)>();
            let _ = r.pop_raw(3);
            true
        }
    }
}
