//! `frag`: fragmentation and reassembly.
//!
//! Adds: messages of any size ([`Props::LARGE`]). A message longer than `size` bytes (its
//! payload plus the headers the layers above pushed) goes down as a train of fragments of at
//! most `size` bytes each, and comes up whole, once, from the same sender.
//!
//! Needs below: reliable FIFO cast and send. The fragments of one sender therefore arrive
//! complete and in order, so reassembly is appending, and a lost fragment is retransmitted
//! alone by the layers below (the reason `frag` sits above them). Sends and casts are
//! reassembled apart, per sender.
//!
//! Header, one per message or fragment (postcard: a one-byte tag, then varints):
//! - `Whole`: the message is not split (one byte). Every message up to `size` bytes, and every
//!   unreliable message whatever its size: control traffic is never fragmented, since a lost
//!   fragment of it would never be resent (counted in `unreliable_oversize`).
//! - `Frag { index, count }`: fragment `index` of `count`. The bytes of the original message
//!   (headers pushed above, then payload) are cut in `size`-byte pieces; the first fragments
//!   carry the headers, copied (they are a few bytes), and every fragment's payload is a slice
//!   of the original payload, not a copy. Each fragment carries the message's level and
//!   unreliable mark.
//!
//! Reassembly appends the fragments of one message into one buffer (the one copy this layer
//! makes), then hands the buffer up as a received datagram, so the layers above pop their
//! headers from it. The message goes up with the level and mark of its last fragment.
//!
//! Parameters:
//! - `size`: the most bytes of one fragment before this layer's header (default 1400, which
//!   fits a 1500-byte Ethernet MTU after IP, UDP and the headers of the layers below; on
//!   loopback, whose datagrams reach 64 KiB, `frag(size=64000)` sends far fewer fragments).
//! - `max`: the largest message accepted (default 64 MiB). A larger one is dropped by its
//!   sender, and a train announcing one is dropped by its receivers without allocating it;
//!   both count `too_large`.
//!
//! View change: on `Up::Flush` the messages still partly reassembled are dropped
//! (`dropped_at_flush`): their missing fragments were sent by a failed member and are held by
//! no survivor, so every survivor drops the same ones. Then `Flush` goes up.
//!
//! Timers: none. Queues: at most one partial message per sender for casts and one for sends,
//! each at most `max` bytes.
//!
//! Counters: `fragmented` (messages split), `fragments_sent`, `reassembled`, `dropped_at_flush`,
//! `bad_header`, `bad_sequence` (a fragment out of order: the partial message is dropped; never
//! happens over reliable FIFO layers), `too_large`, `unreliable_oversize`.
//!
//! Source: the FRAG layer of Horus (van Renesse, Birman, Maffeis, *Horus: a flexible group
//! communication system*, CACM 39(4), 1996) and of Ensemble (Hayden, *The Ensemble System*,
//! Cornell TR98-1662, and the Ensemble reference manual, FRAG), which also put fragmentation
//! above reliability so that only lost fragments are resent.

use bytes::BytesMut;
use horus_core::spec::Args;
use horus_core::{Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Up, ViewState};
use serde::{Deserialize, Serialize};

/// The layer as stack specs name it.
///
/// # Examples
///
/// ```
/// use horus_core::{Props, Registry};
///
/// let mut registry = Registry::new();
/// registry.add_layer(horus_layers::frag::INFO);
/// assert!(horus_layers::frag::INFO.gives.contains(Props::LARGE));
/// // Fragments must not be lost alone: frag needs reliable layers below it.
/// let err = registry.plan("frag(size=64000)").unwrap_err();
/// assert!(err.to_string().contains("reliable FIFO multicast"));
/// ```
pub const INFO: LayerInfo = LayerInfo {
    name: "frag",
    doc: "fragments messages longer than `size` (default 1400) and reassembles them",
    needs: Props::RELIABLE_CAST.union(Props::RELIABLE_SEND),
    gives: Props::LARGE,
    // Fragments are what stability counts; the casts above are not.
    hides: Props::STABLE,
    build,
};

/// Default fragment size: a 1500-byte Ethernet MTU less IP, UDP and the lower layers' headers.
const DEFAULT_SIZE: usize = 1400;
/// Default largest message.
const DEFAULT_MAX: usize = 64 << 20;

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum Header {
    /// A message not split.
    Whole,
    /// Fragment `index` (from 0) of a message cut into `count`.
    Frag { index: u64, count: u64 },
}

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
struct Frag {
    size: usize,
    max: usize,
    /// By sender rank: the cast being reassembled.
    casts: Vec<Partial>,
    /// By sender rank: the send being reassembled.
    sends: Vec<Partial>,
    stats: Stats,
}

/// Reassembly of one sender's messages of one kind.
#[derive(Debug, Default)]
enum Partial {
    /// Between messages: the next fragment must be an index 0.
    #[default]
    Idle,
    /// Fragments `0..next` of a `count`-fragment message are in `buf`.
    Filling { next: u64, count: u64, buf: BytesMut },
    /// A message being dropped (too large): its fragments are passed over until the last.
    Skipping { next: u64, count: u64 },
}

#[derive(Debug, Default)]
struct Stats {
    fragmented: u64,
    fragments_sent: u64,
    reassembled: u64,
    bad_header: u64,
    bad_sequence: u64,
    too_large: u64,
    unreliable_oversize: u64,
    dropped_at_flush: u64,
}

/// Whether a message came as a cast or a send.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Cast,
    Send,
}

impl Kind {
    fn up(self, from: Rank, msg: Message) -> Up {
        match self {
            Kind::Cast => Up::Cast { from, msg },
            Kind::Send => Up::Send { from, msg },
        }
    }
}

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let size = args.size("size", DEFAULT_SIZE)?;
    if size == 0 {
        return Err(ParamError {
            layer: INFO.name,
            key: "size".into(),
            reason: "a fragment must hold at least one byte".into(),
        });
    }
    let max = args.size("max", DEFAULT_MAX)?;
    Ok(Box::new(Frag::new(size, max, vs.view.len())))
}

impl Layer for Frag {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, msg } => self.on_data(Kind::Cast, from, msg, cx),
            Up::Send { from, msg } => self.on_data(Kind::Send, from, msg, cx),
            Up::Flush => {
                self.on_flush();
                cx.up(Up::Flush);
            }
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(msg) => self.on_down(msg, cx, Down::Cast),
            Down::Send(to, msg) => self.on_down(msg, cx, |m| Down::Send(to, m)),
            ev => cx.down(ev),
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("fragmented", s.fragmented);
        report("fragments_sent", s.fragments_sent);
        report("reassembled", s.reassembled);
        report("dropped_at_flush", s.dropped_at_flush);
        report("bad_header", s.bad_header);
        report("bad_sequence", s.bad_sequence);
        report("too_large", s.too_large);
        report("unreliable_oversize", s.unreliable_oversize);
    }
}

impl Frag {
    fn new(size: usize, max: usize, nmembers: usize) -> Self {
        let idle = || (0..nmembers).map(|_| Partial::Idle).collect();
        Frag { size, max, casts: idle(), sends: idle(), stats: Stats::default() }
    }

    /// The view ends: a message still partial never gets its last fragments.
    fn on_flush(&mut self) {
        for slot in self.casts.iter_mut().chain(&mut self.sends) {
            if !matches!(slot, Partial::Idle) {
                self.stats.dropped_at_flush += 1;
            }
            *slot = Partial::Idle;
        }
    }

    /// A cast or send from above: whole, or cut into fragments.
    fn on_down(&mut self, mut msg: Message, cx: &mut Cx<'_>, wrap: impl Fn(Message) -> Down) {
        let len = msg.len();
        if len <= self.size || msg.is_unreliable() {
            if len > self.size {
                self.stats.unreliable_oversize += 1;
            }
            msg.push(&Header::Whole);
            return cx.down(wrap(msg));
        }
        if len > self.max {
            // Every receiver would drop it: do not spend the network on it.
            self.stats.too_large += 1;
            return;
        }
        let (size, head, body) = (self.size, msg.headers(), msg.payload());
        let h = head.len();
        let count = len.div_ceil(size);
        for index in 0..count {
            // This fragment's bytes of the message `head ++ body`: [lo, hi).
            let (lo, hi) = (index * size, ((index + 1) * size).min(len));
            let mut frag = Message::new(body.slice(lo.max(h) - h..hi.max(h) - h));
            if lo < h {
                frag.push_raw(&head[lo..hi.min(h)]);
            }
            frag.set_level(msg.level());
            frag.set_unreliable(msg.is_unreliable());
            frag.push(&Header::Frag { index: index as u64, count: count as u64 });
            cx.down(wrap(frag));
        }
        self.stats.fragmented += 1;
        self.stats.fragments_sent += count as u64;
    }

    fn on_data(&mut self, kind: Kind, from: Rank, mut msg: Message, cx: &mut Cx<'_>) {
        match msg.pop::<Header>() {
            Ok(Header::Whole) => cx.up(kind.up(from, msg)),
            Ok(Header::Frag { index, count }) => self.on_frag(kind, from, index, count, msg, cx),
            Err(_) => self.stats.bad_header += 1,
        }
    }

    fn on_frag(
        &mut self,
        kind: Kind,
        from: Rank,
        index: u64,
        count: u64,
        msg: Message,
        cx: &mut Cx<'_>,
    ) {
        let table = match kind {
            Kind::Cast => &mut self.casts,
            Kind::Send => &mut self.sends,
        };
        // A sender cuts only messages longer than one fragment.
        let Some(slot) = table.get_mut(from.index()).filter(|_| count >= 2 && index < count) else {
            self.stats.bad_header += 1;
            return;
        };
        let part = msg.len();
        let expected = match slot {
            Partial::Idle => None,
            Partial::Filling { next, count, .. } | Partial::Skipping { next, count } => {
                Some((*next, *count))
            }
        };
        if expected != Some((index, count)) {
            if index != 0 || expected.is_some() {
                // Out of sequence (reliable FIFO below makes this impossible): drop the
                // partial message; a fragment 0 still starts the next one.
                self.stats.bad_sequence += 1;
                *slot = Partial::Idle;
            }
            if index != 0 {
                return;
            }
            // Every fragment but the last is as long as the first, so the message has at
            // least this many bytes: refuse it before allocating anything.
            let least = (count - 1).saturating_mul(part as u64).saturating_add(1);
            if least > self.max as u64 {
                self.stats.too_large += 1;
                *slot = Partial::Skipping { next: 1, count };
                return;
            }
            let cap = (count.saturating_mul(part as u64)).min(self.max as u64) as usize;
            *slot = Partial::Filling { next: 0, count, buf: BytesMut::with_capacity(cap) };
        }
        let last = index + 1 == count;
        match slot {
            Partial::Filling { next, buf, .. } => {
                if buf.len() + part > self.max {
                    self.stats.too_large += 1;
                    *slot = if last {
                        Partial::Idle
                    } else {
                        Partial::Skipping { next: index + 1, count }
                    };
                    return;
                }
                // The one copy: the fragment's bytes, headers (on a local delivery) and payload.
                buf.extend_from_slice(msg.headers());
                buf.extend_from_slice(msg.payload());
                *next += 1;
                if last {
                    let buf = std::mem::take(buf);
                    *slot = Partial::Idle;
                    let mut whole = Message::from_wire(buf.freeze());
                    whole.set_level(msg.level());
                    whole.set_unreliable(msg.is_unreliable());
                    self.stats.reassembled += 1;
                    cx.up(kind.up(from, whole));
                }
            }
            Partial::Skipping { next, .. } => {
                *next += 1;
                if last {
                    *slot = Partial::Idle;
                }
            }
            Partial::Idle => unreachable!("a fragment in sequence has a partial message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use horus_core::Level;
    use quickcheck::{quickcheck, TestResult};

    fn harness(size: usize, max: usize) -> Harness {
        Harness::new(3, 0, |vs| Box::new(Frag::new(size, max, vs.view.len())))
    }

    fn bytes(n: usize, seed: u8) -> Bytes {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
    }

    /// What went down, as the receiver gets it off the wire.
    fn wire(downs: Vec<Down>) -> Vec<Message> {
        downs
            .into_iter()
            .map(|d| match d {
                Down::Cast(m) | Down::Send(_, m) => Message::from_wire(m.to_bytes()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn cast_up(h: &mut Harness, from: u32, msgs: Vec<Message>) {
        for msg in msgs {
            h.up(Up::Cast { from: Rank(from), msg });
        }
    }

    /// The one event in `v`.
    fn only<T>(mut v: Vec<T>) -> Option<T> {
        (v.len() == 1).then(|| v.pop()).flatten()
    }

    fn frag_header(m: &Message) -> Header {
        Message::from_wire(m.to_bytes()).pop::<Header>().unwrap()
    }

    #[test]
    fn a_message_of_size_bytes_goes_whole_with_a_one_byte_header() {
        let mut h = harness(100, 1 << 20);
        let mut msg = Message::new(bytes(96, 1));
        msg.push(&0xabcd_u32); // 3 bytes as a varint: 99 bytes
        msg.push(&0u8); // 100 bytes
        h.down(Down::Cast(msg));
        let Some(Down::Cast(m)) = only(h.take_downs()) else { panic!() };
        assert_eq!(m.len(), 101);
        assert_eq!(frag_header(&m), Header::Whole);
        assert_eq!(h.counter("fragmented"), 0);
    }

    #[test]
    fn a_long_message_is_cut_into_size_byte_fragments_with_level_and_count() {
        let mut h = harness(100, 1 << 20);
        let msg = Message::new(bytes(250, 2)).with_level(Level::Total);
        h.down(Down::Send(Rank(2), msg));
        let downs = h.take_downs();
        assert_eq!(downs.len(), 3);
        for (i, d) in downs.iter().enumerate() {
            let Down::Send(Rank(2), m) = d else { panic!("{d:?}") };
            assert_eq!(m.level(), Level::Total);
            assert_eq!(m.payload().len(), [100, 100, 50][i]);
            let hdr = Header::Frag { index: i as u64, count: 3 };
            assert_eq!(frag_header(m), hdr);
        }
        assert_eq!((h.counter("fragmented"), h.counter("fragments_sent")), (1, 3));
    }

    #[test]
    fn partial_messages_at_flush_are_dropped() {
        let (mut a, mut b) = (harness(10, 1 << 20), harness(10, 1 << 20));
        a.down(Down::Cast(Message::new(bytes(35, 6))));
        a.down(Down::Send(Rank(0), Message::new(bytes(25, 7))));
        let mut frags = wire(a.take_downs());
        assert_eq!(frags.len(), 7);
        let sends = frags.split_off(4);
        // All but the last fragment of each: the sender failed before it went.
        cast_up(&mut b, 2, frags[..3].to_vec());
        for msg in sends.into_iter().take(2) {
            b.up(Up::Send { from: Rank(1), msg });
        }
        assert!(b.take_ups().is_empty());
        b.up(Up::Flush);
        assert!(matches!(b.take_ups().as_slice(), [Up::Flush]));
        assert_eq!(b.counter("dropped_at_flush"), 2);
    }

    #[test]
    fn fragmenting_does_not_copy_the_payload() {
        let mut h = harness(1000, 1 << 20);
        let payload = bytes(10_000, 3);
        let mut msg = Message::new(payload.clone());
        msg.push(&7u64);
        h.down(Down::Cast(msg));
        let range = payload.as_ptr_range();
        let downs = h.take_downs();
        assert_eq!(downs.len(), 11);
        for d in downs {
            let Down::Cast(m) = d else { panic!() };
            let p = m.payload().as_ptr_range();
            assert!(range.start <= p.start && p.end <= range.end);
        }
    }

    #[test]
    fn an_unreliable_message_is_never_fragmented() {
        let mut h = harness(10, 1 << 20);
        h.down(Down::Cast(Message::new(bytes(50, 4)).unreliable()));
        let Some(Down::Cast(m)) = only(h.take_downs()) else { panic!() };
        assert!(m.is_unreliable());
        assert_eq!(frag_header(&m), Header::Whole);
        assert_eq!(h.counter("unreliable_oversize"), 1);
    }

    #[test]
    fn fragments_are_reassembled_into_the_message_with_its_headers() {
        let (mut a, mut b) = (harness(7, 1 << 20), harness(7, 1 << 20));
        let mut msg = Message::new(bytes(40, 5));
        msg.push(&(300u64, 9u8)); // headers longer than a fragment
        msg.push(&[1u8; 10]);
        a.down(Down::Cast(msg));
        cast_up(&mut b, 0, wire(a.take_downs()));
        let Some(Up::Cast { from: Rank(0), mut msg }) = only(b.take_ups()) else { panic!() };
        assert_eq!(msg.pop::<[u8; 10]>().unwrap(), [1; 10]);
        assert_eq!(msg.pop::<(u64, u8)>().unwrap(), (300, 9));
        assert_eq!(msg.payload(), &bytes(40, 5));
        assert_eq!(b.counter("reassembled"), 1);
    }

    #[test]
    fn the_reassembled_message_takes_the_level_of_its_last_fragment() {
        let (mut a, mut b) = (harness(10, 1 << 20), harness(10, 1 << 20));
        a.down(Down::Cast(Message::new(bytes(25, 6))));
        let mut frags = wire(a.take_downs());
        frags[2].set_level(Level::Safe); // as the layers below restore it
        cast_up(&mut b, 1, frags);
        let Some(Up::Cast { msg, .. }) = only(b.take_ups()) else { panic!() };
        assert_eq!(msg.level(), Level::Safe);
    }

    #[test]
    fn casts_and_sends_of_several_senders_are_reassembled_apart() {
        let (mut a, mut b) = (harness(10, 1 << 20), harness(10, 1 << 20));
        a.down(Down::Cast(Message::new(bytes(30, 7))));
        let cast = wire(a.take_downs());
        a.down(Down::Send(Rank(0), Message::new(bytes(30, 8))));
        let send = wire(a.take_downs());
        let other = cast.clone();
        // Interleave: a cast from 1, a send from 1 and a cast from 2, fragment by fragment.
        for ((c, s), o) in cast.into_iter().zip(send).zip(other) {
            b.up(Up::Cast { from: Rank(1), msg: c });
            b.up(Up::Send { from: Rank(1), msg: s });
            b.up(Up::Cast { from: Rank(2), msg: o });
        }
        let ups = b.take_ups();
        assert_eq!(ups.len(), 3);
        for up in ups {
            match up {
                Up::Cast { from, msg } => {
                    assert!(from == Rank(1) || from == Rank(2));
                    assert_eq!(msg.payload(), &bytes(30, 7));
                }
                Up::Send { from, msg } => {
                    assert_eq!(from, Rank(1));
                    assert_eq!(msg.payload(), &bytes(30, 8));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_out_of_sequence_fragment_drops_the_partial_message() {
        let (mut a, mut b) = (harness(10, 1 << 20), harness(10, 1 << 20));
        a.down(Down::Cast(Message::new(bytes(40, 9))));
        let mut frags = wire(a.take_downs());
        frags.remove(1);
        cast_up(&mut b, 1, frags);
        assert!(b.take_ups().is_empty());
        assert_eq!(b.counter("bad_sequence"), 2); // the gap, then the orphan last fragment
                                                  // The next message from that sender is reassembled again.
        a.down(Down::Cast(Message::new(bytes(30, 10))));
        cast_up(&mut b, 1, wire(a.take_downs()));
        assert_eq!(b.take_ups().len(), 1);
    }

    #[test]
    fn a_train_announcing_more_than_max_is_dropped_without_allocating() {
        let mut b = harness(1000, 10_000);
        let mut first = Message::new(bytes(1000, 11));
        first.push(&Header::Frag { index: 0, count: u64::MAX });
        b.up(Up::Cast { from: Rank(1), msg: Message::from_wire(first.to_bytes()) });
        assert_eq!(b.counter("too_large"), 1);
        // The rest of that train is passed over quietly.
        let mut next = Message::new(bytes(1000, 11));
        next.push(&Header::Frag { index: 1, count: u64::MAX });
        b.up(Up::Cast { from: Rank(1), msg: next });
        assert_eq!(b.counter("bad_sequence"), 0);
        assert!(b.take_ups().is_empty());
    }

    #[test]
    fn a_message_longer_than_max_is_not_sent() {
        let mut a = harness(10, 100);
        a.down(Down::Cast(Message::new(bytes(101, 12))));
        assert!(a.take_downs().is_empty());
        assert_eq!(a.counter("too_large"), 1);
    }

    #[test]
    fn a_train_that_outgrows_max_is_dropped() {
        let (mut a, mut b) = (harness(10, 1 << 20), harness(10, 25));
        a.down(Down::Cast(Message::new(bytes(21, 13)))); // announces 21..=30 bytes
        let mut frags = wire(a.take_downs());
        let mut last = Message::new(bytes(10, 13)); // but the last one is long
        last.push(&Header::Frag { index: 2, count: 3 });
        frags[2] = Message::from_wire(last.to_bytes());
        cast_up(&mut b, 1, frags);
        assert!(b.take_ups().is_empty());
        assert_eq!(b.counter("too_large"), 1);
    }

    #[test]
    fn bad_headers_are_dropped_and_counted() {
        let mut b = harness(10, 100);
        for raw in [&[9u8][..], &[], &[1, 5, 2], &[1, 0, 1], &[1, 0x80]] {
            b.up(Up::Send { from: Rank(1), msg: Message::from_wire(Bytes::copy_from_slice(raw)) });
        }
        // A fragment from a rank outside the view.
        b.up(Up::Cast {
            from: Rank(7),
            msg: Message::from_wire(Bytes::from_static(&[1, 0, 2, 0])),
        });
        assert!(b.take_ups().is_empty());
        assert_eq!(b.counter("bad_header"), 6);
    }

    #[test]
    fn other_events_pass_unchanged() {
        let mut h = harness(10, 100);
        h.down(Down::Leave);
        h.up(Up::Block);
        assert!(matches!(h.take_downs().as_slice(), [Down::Leave]));
        assert!(matches!(h.take_ups().as_slice(), [Up::Block]));
    }

    #[test]
    fn parameters_are_read_with_defaults() {
        let vs =
            ViewState::singleton(horus_core::GroupName::new("g"), horus_core::Endpoint::new(0, 0));
        let params = [("size".to_string(), "64000".to_string())];
        assert!(build(&mut Args::new("frag", &params), &vs).is_ok());
        let params = [("size".to_string(), "0".to_string())];
        let err = build(&mut Args::new("frag", &params), &vs).unwrap_err();
        assert!(err.to_string().contains("at least one byte"), "{err}");
        let params = [("max".to_string(), "lots".to_string())];
        assert!(build(&mut Args::new("frag", &params), &vs).is_err());
    }

    /// Stands in for the reliable layers: the test network below is lossless and in order.
    #[derive(Debug)]
    struct Reliable;

    impl Layer for Reliable {
        fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
            cx.up(ev)
        }
        fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
            cx.down(ev)
        }
    }

    /// Pushes a header on every cast and send, and delivers only what comes back with it.
    #[derive(Debug)]
    struct Above;

    const ABOVE: (u64, u8) = (0xfeed_beef, 42);

    impl Layer for Above {
        fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
            let strip = |mut msg: Message| (msg.pop::<(u64, u8)>() == Ok(ABOVE)).then_some(msg);
            match ev {
                Up::Cast { from, msg } => {
                    if let Some(msg) = strip(msg) {
                        cx.up(Up::Cast { from, msg })
                    }
                }
                Up::Send { from, msg } => {
                    if let Some(msg) = strip(msg) {
                        cx.up(Up::Send { from, msg })
                    }
                }
                ev => cx.up(ev),
            }
        }
        fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
            match ev {
                Down::Cast(mut msg) => {
                    msg.push(&ABOVE);
                    cx.down(Down::Cast(msg))
                }
                Down::Send(to, mut msg) => {
                    msg.push(&ABOVE);
                    cx.down(Down::Send(to, msg))
                }
                ev => cx.down(ev),
            }
        }
    }

    fn pair(spec: &str) -> (horus_core::Stack, horus_core::Stack) {
        use horus_core::{Endpoint, GroupName, Registry, Rng, Time, View};
        use std::sync::Arc;
        let mut r = Registry::new();
        r.add_layer(INFO);
        r.add_layer(LayerInfo {
            name: "reliable",
            doc: "passes events: over a lossless, ordered test network that is reliable",
            needs: Props::CAST.union(Props::SEND),
            gives: Props::RELIABLE_CAST.union(Props::RELIABLE_SEND),
            hides: Props::NONE,
            build: |_, _| Ok(Box::new(Reliable)),
        });
        r.add_layer(LayerInfo {
            name: "above",
            doc: "pushes a header",
            needs: Props::LARGE,
            gives: Props::NONE,
            hides: Props::NONE,
            build: |_, _| Ok(Box::new(Above)),
        });
        let plan = r.plan(spec).unwrap();
        let view = Arc::new(View::initial(vec![Endpoint::new(0, 0), Endpoint::new(1, 0)]));
        let mk = |n: u64| {
            let vs = ViewState::new(GroupName::new("g"), Endpoint::new(n, 0), view.clone());
            plan.build(vs.unwrap(), Rng::new(n), Time::ZERO).unwrap()
        };
        (mk(0), mk(1))
    }

    #[test]
    fn sixteen_mib_cast_and_send_cross_two_stacks_intact() {
        use horus_core::Time;
        let (mut a, mut b) = pair("above:frag:reliable");
        let big = bytes(16 << 20, 14);
        a.down(Time(1), Down::Cast(Message::new(big.clone())));
        a.down(Time(1), Down::Send(Rank(1), Message::new(big.slice(1..))));
        let mut datagrams = 0;
        while let Some(t) = a.poll_transmit() {
            b.receive(Time(2), t.msg.to_bytes());
            datagrams += 1;
        }
        assert_eq!(datagrams, 2 * (16usize << 20).div_ceil(1400));
        // The sender delivers its own cast, reassembled too.
        match std::iter::from_fn(|| a.poll_up()).collect::<Vec<_>>().as_slice() {
            [Up::Cast { from: Rank(0), msg }] => assert!(msg.payload() == &big),
            other => panic!("{other:?}"),
        }
        match std::iter::from_fn(|| b.poll_up()).collect::<Vec<_>>().as_slice() {
            [Up::Cast { from: Rank(0), msg: c }, Up::Send { from: Rank(0), msg: s }] => {
                assert!(c.payload() == &big);
                assert!(s.payload() == &big[1..]);
            }
            other => panic!("{other:?}"),
        }
        assert!(b.counters().contains(&("frag", "reassembled", 2)));
    }

    /// Cuts a message with `hdr` pushed over `len` payload bytes into `size`-byte fragments,
    /// carries them over the wire, and checks the reassembled message.
    fn round_trips(hdr: &[u8], len: usize, size: usize) -> bool {
        let (mut a, mut b) = (harness(size, 1 << 20), harness(size, 1 << 20));
        let payload = bytes(len, len as u8);
        let mut msg = Message::new(payload.clone());
        msg.push_raw(hdr);
        a.down(Down::Send(Rank(1), msg));
        for m in wire(a.take_downs()) {
            b.up(Up::Send { from: Rank(0), msg: m });
        }
        match b.take_ups().as_mut_slice() {
            [Up::Send { from: Rank(0), msg }] => {
                msg.pop_raw(hdr.len()).ok().as_deref() == Some(hdr) && msg.payload() == &payload
            }
            _ => false,
        }
    }

    quickcheck! {
        fn header_codec_round_trips(frag: bool, index: u64, count: u64) -> bool {
            let h = if frag { Header::Frag { index, count } } else { Header::Whole };
            let mut m = Message::control();
            m.push(&h);
            Message::from_wire(m.to_bytes()).pop::<Header>() == Ok(h)
        }

        fn any_message_round_trips_at_any_size(len: u32, size: u16) -> bool {
            round_trips(&[], len as usize % 200_000, 64 + size as usize)
        }

        fn headers_longer_than_a_fragment_round_trip(hdr: Vec<u8>, len: u16, size: u8) -> TestResult {
            if size == 0 {
                return TestResult::discard();
            }
            TestResult::from_bool(round_trips(&hdr, len as usize % 2000, size as usize % 32 + 1))
        }

        fn garbage_never_panics(datagrams: Vec<(bool, u8, Vec<u8>)>) -> bool {
            let mut b = harness(4, 64);
            for (cast, from, d) in datagrams {
                let (from, msg) = (Rank(u32::from(from % 4)), Message::from_wire(Bytes::from(d)));
                b.up(if cast { Up::Cast { from, msg } } else { Up::Send { from, msg } });
            }
            true
        }
    }
}
