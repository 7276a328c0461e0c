//! `pack`: message packing.
//!
//! Adds: fewer, fuller datagrams ([`Props::PACKED`]). Messages bound for the same destination
//! (the group, or one member) within a short window share one datagram, up to `size` bytes, and
//! are taken apart on receipt, in order, each as if it had come alone. Everything a stack emits
//! in one turn of its driver (a burst of casts, acks, retransmissions) leaves in one datagram
//! per destination.
//!
//! Needs below: best-effort cast and send (the transport). Sits at the bottom of the stack so
//! that retransmissions and control traffic are packed too.
//!
//! Header, one per datagram (postcard: a one-byte tag):
//! - `One`: a pack of one message, sent as it is (no copy).
//! - `Many`: the payload is one buffer: the number of messages (at least two), then each
//!   message (its headers and payload) as a varint length and its bytes. A pack's content, so
//!   counted, is at most `size` bytes, except a single message longer than `size`, which goes
//!   alone as a `One`. This layer's header adds one byte to the datagram.
//!
//! Down: a cast or send joins the pending pack of its destination; if it would overflow
//! `size`, that pack is flushed first. The first message of a pack arms the flush timer (if it
//! is not armed already) at `now + delay`; when it fires every pending pack goes. Any other
//! down event flushes every pending pack first, so nothing overtakes what was sent before it.
//! A pack is bounded by `size`, so at most `size` messages wait per destination.
//!
//! Up: a `One` goes up as it is; a `Many` is split into messages that are slices of the
//! datagram (no copy), passed up in order with the same sender and kind. A malformed pack
//! (lengths past the end, a count that does not match) is dropped whole and counted
//! (`bad_header`): nothing from it is delivered.
//!
//! Parameters:
//! - `size`: most bytes of a pack's content (default 1400, for a 1500-byte Ethernet MTU after
//!   IP, UDP and the transport header; `pack(size=64000)` suits loopback's 64 KiB datagrams).
//! - `delay`: how long the first message of a pack may wait (default 0: the timer set at `now`
//!   fires at the end of the driver's current turn).
//!
//! Timers: at most one armed, the flush timer.
//!
//! Counters: `packs` (datagrams sent), `packed_msgs` (messages sent in them), `unpacked`
//! (messages received), `bad_header`.
//!
//! Source: message packing in Horus (Friedman and van Renesse, *Packing messages as a tool for
//! boosting the performance of total ordering protocols*, HPDC 1997) and the bundler of
//! JGroups' transport (JGroups manual, "Message bundling").

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use horus_core::codec::{put_varint, varint_len};
use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Token, Up, ViewState,
};
use serde::{Deserialize, Serialize};

/// The layer as stack specs name it.
///
/// # Examples
///
/// ```
/// use horus_core::{Props, Registry};
///
/// let mut registry = Registry::new();
/// registry.add_layer(horus_layers::pack::INFO);
/// let plan = registry.plan("pack(size=64000,delay=1ms)").unwrap();
/// assert!(plan.gives().contains(Props::PACKED));
/// ```
pub const INFO: LayerInfo = LayerInfo {
    name: "pack",
    doc: "packs small messages to one destination into one datagram of up to `size` bytes",
    needs: Props::CAST.union(Props::SEND),
    gives: Props::PACKED,
    hides: Props::NONE,
    build,
};

/// Default pack size: a 1500-byte Ethernet MTU less IP, UDP and the transport header.
const DEFAULT_SIZE: usize = 1400;
/// The flush timer's token.
const FLUSH: Token = Token(0);

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum Header {
    /// One message, as it is.
    One,
    /// Several messages: a count, then each one's varint length and bytes.
    Many,
}

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
struct Pack {
    size: usize,
    delay: Duration,
    /// Index 0: casts; index `1 + r`: sends to rank `r`.
    pending: Vec<Pending>,
    /// Whether the flush timer is set.
    armed: bool,
    /// Packs are written here; its allocation is reused once the datagrams cut from it are gone.
    arena: BytesMut,
    stats: Stats,
}

/// The messages waiting for one destination. The vector keeps its capacity across flushes.
#[derive(Debug, Default)]
struct Pending {
    msgs: Vec<Message>,
    /// Their framed length: each message's varint length and bytes.
    bytes: usize,
}

#[derive(Debug, Default)]
struct Stats {
    packs: u64,
    packed_msgs: u64,
    unpacked: u64,
    bad_header: u64,
}

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let size = args.size("size", DEFAULT_SIZE)?;
    let delay = args.duration("delay", Duration::ZERO)?;
    Ok(Box::new(Pack::new(size, delay, vs.view.len())))
}

impl Layer for Pack {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, mut msg } => match msg.pop::<Header>() {
                Ok(hdr) => self.on_pack(hdr, msg, cx, |msg| Up::Cast { from, msg }),
                Err(_) => self.stats.bad_header += 1,
            },
            Up::Send { from, mut msg } => match msg.pop::<Header>() {
                Ok(hdr) => self.on_pack(hdr, msg, cx, |msg| Up::Send { from, msg }),
                Err(_) => self.stats.bad_header += 1,
            },
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(msg) => self.on_down(0, msg, cx),
            Down::Send(to, msg) if to.index() + 1 < self.pending.len() => {
                self.on_down(1 + to.index(), msg, cx)
            }
            // Leave, stability, a send to a rank outside the view (the transport counts it):
            // after everything sent before it.
            ev => {
                self.flush_all(cx);
                cx.down(ev)
            }
        }
    }

    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        if token == FLUSH {
            self.armed = false;
            self.flush_all(cx);
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("packs", s.packs);
        report("packed_msgs", s.packed_msgs);
        report("unpacked", s.unpacked);
        report("bad_header", s.bad_header);
    }
}

impl Pack {
    fn new(size: usize, delay: Duration, nmembers: usize) -> Self {
        Pack {
            size,
            delay,
            pending: (0..=nmembers).map(|_| Pending::default()).collect(),
            armed: false,
            arena: BytesMut::new(),
            stats: Stats::default(),
        }
    }

    /// A cast (`dest` 0) or a send (`dest` 1 + rank) from above.
    fn on_down(&mut self, dest: usize, msg: Message, cx: &mut Cx<'_>) {
        let len = msg.len();
        if len > self.size {
            // Too long to share a datagram: it goes alone, after what waits for its destination.
            self.flush(dest, cx);
            return self.emit(dest, Header::One, msg, 1, cx);
        }
        let framed = varint_len(len as u64) + len;
        let p = &self.pending[dest];
        let n = p.msgs.len();
        if n > 0 && varint_len(n as u64 + 1) + p.bytes + framed > self.size {
            self.flush(dest, cx);
        }
        if self.pending[dest].msgs.is_empty() && !self.armed {
            self.armed = true;
            cx.timer_at(cx.now() + self.delay, FLUSH);
        }
        let p = &mut self.pending[dest];
        p.msgs.push(msg);
        p.bytes += framed;
    }

    fn flush_all(&mut self, cx: &mut Cx<'_>) {
        for dest in 0..self.pending.len() {
            self.flush(dest, cx);
        }
    }

    /// Sends the pending pack of `dest`, if any.
    fn flush(&mut self, dest: usize, cx: &mut Cx<'_>) {
        let p = &mut self.pending[dest];
        let n = p.msgs.len();
        let msg = match n {
            0 => return,
            1 => {
                p.bytes = 0;
                let msg = p.msgs.pop().expect("a pack of one");
                return self.emit(dest, Header::One, msg, 1, cx);
            }
            _ => {
                let content = varint_len(n as u64) + p.bytes;
                if self.arena.capacity() < content {
                    self.arena.reserve(content.max(16 * self.size));
                }
                put_varint(&mut self.arena, n as u64);
                for m in p.msgs.drain(..) {
                    put_varint(&mut self.arena, m.len() as u64);
                    m.write_to(&mut self.arena);
                }
                p.bytes = 0;
                debug_assert_eq!(self.arena.len(), content);
                Message::new(self.arena.split().freeze())
            }
        };
        self.emit(dest, Header::Many, msg, n, cx);
    }

    fn emit(&mut self, dest: usize, hdr: Header, mut msg: Message, n: usize, cx: &mut Cx<'_>) {
        msg.push(&hdr);
        self.stats.packs += 1;
        self.stats.packed_msgs += n as u64;
        cx.down(match dest {
            0 => Down::Cast(msg),
            _ => Down::Send(Rank((dest - 1) as u32), msg),
        });
    }

    /// A datagram from below: one message, or a pack to take apart.
    fn on_pack(
        &mut self,
        hdr: Header,
        msg: Message,
        cx: &mut Cx<'_>,
        wrap: impl Fn(Message) -> Up,
    ) {
        match hdr {
            Header::One => {
                self.stats.unpacked += 1;
                cx.up(wrap(msg));
            }
            Header::Many => {
                let datagram = msg.to_bytes();
                // Check the whole pack before delivering any of it.
                match unpack(&datagram, |_| {}) {
                    Some(n) => {
                        unpack(&datagram, |m| cx.up(wrap(Message::from_wire(m))));
                        self.stats.unpacked += n;
                    }
                    None => self.stats.bad_header += 1,
                }
            }
        }
    }
}

/// Takes a `Many` pack apart, calling `each` on every message in order, and returns how many
/// there were; `None` if the pack is malformed (`each` may have been called on a prefix).
fn unpack(datagram: &Bytes, mut each: impl FnMut(Bytes)) -> Option<u64> {
    let mut pos = 0;
    let count = get_varint(datagram, &mut pos)?;
    // Every message costs at least its length byte: a larger count cannot be honest.
    if count < 2 || count > (datagram.len() - pos) as u64 {
        return None;
    }
    for _ in 0..count {
        let len = usize::try_from(get_varint(datagram, &mut pos)?).ok()?;
        if len > datagram.len() - pos {
            return None;
        }
        each(datagram.slice(pos..pos + len));
        pos += len;
    }
    (pos == datagram.len()).then_some(count)
}

/// Reads a varint at `*pos`, advancing it; `None` if truncated or longer than a `u64`.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut r = buf.get(*pos..)?;
    let v = horus_core::codec::get_varint(&mut r)?;
    *pos = buf.len() - r.len();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use horus_core::testing::Harness;
    use quickcheck::quickcheck;

    fn harness(size: usize, delay: Duration) -> Harness {
        Harness::new(3, 0, |vs| Box::new(Pack::new(size, delay, vs.view.len())))
    }

    fn msg(payload: &[u8]) -> Message {
        Message::new(Bytes::copy_from_slice(payload))
    }

    /// Delivers what `a` sent, off the wire, to `b` as coming from rank 0; returns what `b`
    /// passed up.
    fn carry(a: &mut Harness, b: &mut Harness) -> Vec<Up> {
        for d in a.take_downs() {
            let from = Rank(0);
            match d {
                Down::Cast(m) => b.up(Up::Cast { from, msg: Message::from_wire(m.to_bytes()) }),
                Down::Send(_, m) => b.up(Up::Send { from, msg: Message::from_wire(m.to_bytes()) }),
                other => panic!("unexpected {other:?}"),
            }
        }
        b.take_ups()
    }

    fn payloads(ups: &[Up]) -> Vec<&[u8]> {
        ups.iter()
            .map(|u| match u {
                Up::Cast { msg, .. } | Up::Send { msg, .. } => &msg.payload()[..],
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn small_casts_in_one_turn_share_one_datagram() {
        let (mut a, mut b) = (harness(1400, Duration::ZERO), harness(1400, Duration::ZERO));
        for p in [&b"a"[..], b"bb", b"", b"ccc"] {
            a.down(Down::Cast(msg(p)));
        }
        assert!(a.take_downs().is_empty(), "nothing leaves before the turn ends");
        assert_eq!(a.next_timer(), Some(a.now()));
        a.advance(Duration::ZERO);
        let downs = a.take_downs();
        assert_eq!(downs.len(), 1);
        b.up(match downs.into_iter().next() {
            Some(Down::Cast(m)) => {
                Up::Cast { from: Rank(2), msg: Message::from_wire(m.to_bytes()) }
            }
            other => panic!("{other:?}"),
        });
        let ups = b.take_ups();
        assert_eq!(payloads(&ups), [&b"a"[..], b"bb", b"", b"ccc"]);
        assert!(ups.iter().all(|u| matches!(u, Up::Cast { from: Rank(2), .. })));
        assert_eq!((a.counter("packs"), a.counter("packed_msgs")), (1, 4));
        assert_eq!(b.counter("unpacked"), 4);
    }

    #[test]
    fn pack_is_flushed_when_the_next_message_would_exceed_size() {
        // Content of a pack of k 10-byte messages: 1 (count) + 11k bytes.
        let (mut a, mut b) = (harness(45, Duration::ZERO), harness(45, Duration::ZERO));
        for i in 0..5u8 {
            a.down(Down::Cast(msg(&[i; 10])));
        }
        let first = a.take_downs();
        assert_eq!(first.len(), 1, "four fit in 45 bytes, the fifth flushes them");
        let Down::Cast(m) = &first[0] else { panic!() };
        assert_eq!(m.len(), 1 + 1 + 4 * 11);
        a.advance(Duration::ZERO);
        let second = a.take_downs();
        assert_eq!(second.len(), 1);
        for d in first.into_iter().chain(second) {
            let Down::Cast(m) = d else { panic!() };
            b.up(Up::Cast { from: Rank(0), msg: Message::from_wire(m.to_bytes()) });
        }
        let ups = b.take_ups();
        let expected: Vec<[u8; 10]> = (0..5).map(|i| [i; 10]).collect();
        assert_eq!(payloads(&ups), expected.iter().map(|p| &p[..]).collect::<Vec<_>>());
    }

    #[test]
    fn a_message_larger_than_size_goes_alone() {
        let (mut a, mut b) = (harness(100, Duration::ZERO), harness(100, Duration::ZERO));
        a.down(Down::Cast(msg(b"small")));
        let big = Bytes::from(vec![7u8; 101]);
        a.down(Down::Cast(Message::new(big.clone())));
        let downs = a.take_downs();
        assert_eq!(downs.len(), 2, "the waiting pack, then the large message");
        let Down::Cast(m) = &downs[1] else { panic!() };
        assert_eq!(m.payload().as_ptr(), big.as_ptr(), "sent as it is");
        assert_eq!(m.len(), 102);
        for d in downs {
            let Down::Cast(m) = d else { panic!() };
            b.up(Up::Cast { from: Rank(0), msg: Message::from_wire(m.to_bytes()) });
        }
        assert_eq!(payloads(&b.take_ups()), [&b"small"[..], &big[..]]);
        a.advance(Duration::ZERO);
        assert!(a.take_downs().is_empty());
    }

    #[test]
    fn sends_to_different_members_are_packed_apart() {
        let (mut a, mut b) = (harness(1400, Duration::ZERO), harness(1400, Duration::ZERO));
        for (to, p) in [(1, b"x1"), (2, b"y1"), (1, b"x2"), (2, b"y2"), (2, b"y3")] {
            a.down(Down::Send(Rank(to), msg(p)));
        }
        a.down(Down::Cast(msg(b"c")));
        a.advance(Duration::ZERO);
        let downs = a.take_downs();
        let dests: Vec<Option<Rank>> = downs
            .iter()
            .map(|d| match d {
                Down::Cast(_) => None,
                Down::Send(to, _) => Some(*to),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(dests, [None, Some(Rank(1)), Some(Rank(2))]);
        b.take_ups();
        for d in downs {
            let Down::Send(to, m) = d else { continue };
            b.up(Up::Send { from: Rank(0), msg: Message::from_wire(m.to_bytes()) });
            let ups = b.take_ups();
            assert!(ups.iter().all(|u| matches!(u, Up::Send { from: Rank(0), .. })));
            let want: &[&[u8]] =
                if to == Rank(1) { &[b"x1", b"x2"] } else { &[b"y1", b"y2", b"y3"] };
            assert_eq!(payloads(&ups), want);
        }
    }

    #[test]
    fn order_is_kept_across_flushes() {
        let (mut a, mut b) = (harness(30, Duration::from_millis(5)), harness(30, Duration::ZERO));
        let mut sent = Vec::new();
        for i in 0..40u8 {
            let p = vec![i; usize::from(i % 9) * 4];
            sent.push(p.clone());
            a.down(Down::Cast(Message::new(Bytes::from(p))));
            if i == 20 {
                a.down(Down::Suspect(vec![Rank(2)]));
            }
        }
        a.advance(Duration::from_millis(1));
        let downs = a.take_downs();
        assert!(a.next_timer().is_some(), "the last pack waits for the timer");
        let suspect = downs.iter().position(|d| matches!(d, Down::Suspect(_)));
        let mut got = Vec::new();
        let mut delivered_before_suspect = 0;
        for (i, d) in downs
            .into_iter()
            .chain({
                a.advance(Duration::from_millis(5));
                a.take_downs()
            })
            .enumerate()
        {
            let Down::Cast(m) = d else { continue };
            b.up(Up::Cast { from: Rank(0), msg: Message::from_wire(m.to_bytes()) });
            for up in b.take_ups() {
                let Up::Cast { msg, .. } = up else { panic!() };
                got.push(msg.payload().to_vec());
                if Some(i) < suspect {
                    delivered_before_suspect += 1;
                }
            }
        }
        assert_eq!(got, sent);
        assert_eq!(delivered_before_suspect, 21, "the suspicion follows every earlier cast");
    }

    #[test]
    fn the_first_message_of_a_pack_waits_at_most_delay() {
        let mut a = harness(1400, Duration::from_millis(2));
        a.down(Down::Cast(msg(b"x")));
        a.advance(Duration::from_micros(1999));
        assert!(a.take_downs().is_empty());
        a.down(Down::Cast(msg(b"y")));
        a.advance(Duration::from_micros(1));
        assert_eq!(a.take_downs().len(), 1);
        assert_eq!(a.next_timer(), None);
    }

    #[test]
    fn malformed_pack_is_dropped_whole() {
        let mut b = harness(1400, Duration::ZERO);
        let bad: [&[u8]; 7] = [
            &[1, 3, 1, b'a', 1, b'b'],    // count says three, two follow
            &[1, 2, 1, b'a', 5, b'b'],    // a length past the end
            &[1, 2, 1, b'a', 1, b'b', 0], // bytes after the last message
            &[1, 1, 1, b'a'],             // a pack of one is sent as `One`
            &[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // count overflows
            &[1, 0x80],                   // truncated count
            &[2],                         // no such header
        ];
        for raw in bad {
            b.up(Up::Cast { from: Rank(1), msg: Message::from_wire(Bytes::copy_from_slice(raw)) });
        }
        assert!(b.take_ups().is_empty());
        assert_eq!(b.counter("bad_header"), 7);
    }

    #[test]
    fn unpacking_does_not_copy() {
        let (mut a, mut b) = (harness(1400, Duration::ZERO), harness(1400, Duration::ZERO));
        a.down(Down::Cast(msg(b"one")));
        a.down(Down::Cast(msg(b"two")));
        a.advance(Duration::ZERO);
        let Some(Down::Cast(m)) = a.take_downs().pop() else { panic!() };
        let wire = m.to_bytes();
        b.up(Up::Cast { from: Rank(0), msg: Message::from_wire(wire.clone()) });
        let range = wire.as_ptr_range();
        for up in b.take_ups() {
            let Up::Cast { msg, .. } = up else { panic!() };
            assert!(range.contains(&msg.payload().as_ptr()));
        }
    }

    #[test]
    fn other_up_events_pass_unchanged() {
        let mut h = harness(1400, Duration::ZERO);
        h.up(Up::Block);
        assert!(matches!(h.take_ups().as_slice(), [Up::Block]));
    }

    #[test]
    fn a_cast_pack_crosses_two_stacks() {
        use horus_core::{Endpoint, GroupName, Registry, Rng, Time, View};
        use std::sync::Arc;
        let mut r = Registry::new();
        r.add_layer(INFO);
        let plan = r.plan("pack(size=64000)").unwrap();
        let view = Arc::new(View::initial(vec![Endpoint::new(0, 0), Endpoint::new(1, 0)]));
        let mk = |n: u64| {
            let vs = ViewState::new(GroupName::new("g"), Endpoint::new(n, 0), view.clone());
            plan.build(vs.unwrap(), Rng::new(n), Time::ZERO).unwrap()
        };
        let (mut a, mut b) = (mk(0), mk(1));
        for i in 0..100u32 {
            a.down(Time(1), Down::Cast(Message::new(Bytes::from(i.to_le_bytes().to_vec()))));
        }
        a.on_timeout(Time(1));
        let t = a.poll_transmit().expect("one datagram");
        assert!(a.poll_transmit().is_none());
        b.receive(Time(2), t.msg.to_bytes());
        for stack in [&mut a, &mut b] {
            let ups: Vec<Up> = std::iter::from_fn(|| stack.poll_up()).collect();
            let want: Vec<[u8; 4]> = (0..100u32).map(|i| i.to_le_bytes()).collect();
            assert_eq!(payloads(&ups), want.iter().map(|p| &p[..]).collect::<Vec<_>>());
        }
    }

    quickcheck! {
        fn varints_round_trip(v: u64) -> bool {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut pos = 0;
            buf.len() == varint_len(v) && get_varint(&buf, &mut pos) == Some(v) && pos == buf.len()
        }

        fn any_messages_are_unpacked_as_sent_in_order(
            msgs: Vec<(Vec<u8>, Vec<u8>)>,
            size: u16,
            send: bool
        ) -> bool {
            let size = usize::from(size % 300);
            let (mut a, mut b) = (harness(size, Duration::ZERO), harness(size, Duration::ZERO));
            for (hdr, payload) in &msgs {
                let mut m = msg(payload);
                m.push_raw(hdr);
                a.down(if send { Down::Send(Rank(1), m) } else { Down::Cast(m) });
            }
            a.advance(Duration::ZERO);
            let ups = carry(&mut a, &mut b);
            ups.len() == msgs.len()
                && ups.into_iter().zip(&msgs).all(|(up, (hdr, payload))| match up {
                    Up::Cast { from: Rank(0), mut msg } if !send => {
                        msg.pop_raw(hdr.len()).ok().as_deref() == Some(hdr) && msg.payload() == payload
                    }
                    Up::Send { from: Rank(0), mut msg } if send => {
                        msg.pop_raw(hdr.len()).ok().as_deref() == Some(hdr) && msg.payload() == payload
                    }
                    _ => false,
                })
        }

        fn garbage_never_panics(datagrams: Vec<(bool, Vec<u8>)>) -> bool {
            let mut b = harness(1400, Duration::ZERO);
            for (cast, d) in datagrams {
                let (from, msg) = (Rank(1), Message::from_wire(Bytes::from(d)));
                b.up(if cast { Up::Cast { from, msg } } else { Up::Send { from, msg } });
            }
            true
        }
    }
}
