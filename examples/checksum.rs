//! Two layers of our own: `checksum`, which puts a checksum on every message and drops those
//! that do not match, and `delay`, which holds everything from below for a while, in order.
//! Registered beside the toolkit's layers, they go into a stack spec like any other, and the
//! simulator runs that stack and the checker judges it.
//!
//! `cargo run --release --example checksum`; the book's "Writing your own layer" walks through
//! it.

use std::collections::VecDeque;
use std::time::Duration;

use horus::core::check::check;
use horus::core::sim::{simulate, Fault, LinkModel, SimConfig};
use horus::core::spec::Args;
use horus::core::{
    Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Registry, Time, Token, Up, ViewState,
};

fn main() {
    let registry = registry();
    let spec = "vsync:checksum:delay(by=1ms)";
    let (line, _) = run(&registry, spec, 1);
    println!("{spec}: {line}");
    // A spec that breaks a layer's needs is refused, with the fix.
    if let Err(e) = registry.plan("gms:checksum") {
        println!("gms:checksum: {e}");
    }
}

// ANCHOR: info
/// The layer as stack specs name it: what it needs from the layers below, what it gives the
/// layers above, and how to build it for a view.
const CHECKSUM: LayerInfo = LayerInfo {
    name: "checksum",
    doc: "drops every message whose checksum does not match the one it was sent with",
    // Best-effort cast and send: what the transport gives under every stack.
    needs: Props::CAST.union(Props::SEND),
    // Nothing new for the layers above, and it takes nothing away.
    gives: Props::NONE,
    hides: Props::NONE,
    build: |_args, _view| Ok(Box::new(Checksum::default())),
};
// ANCHOR_END: info

// ANCHOR: layer
/// State for one view; the next view builds a fresh one.
#[derive(Debug, Default)]
struct Checksum {
    checked: u64,
    bad_checksum: u64,
    bad_header: u64,
}

impl Layer for Checksum {
    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) => {
                msg.push(&checksum(&msg));
                cx.down(Down::Cast(msg));
            }
            Down::Send(to, mut msg) => {
                msg.push(&checksum(&msg));
                cx.down(Down::Send(to, msg));
            }
            // Blocks, flushes, leaves, stability...: not ours, passed on unchanged.
            ev => cx.down(ev),
        }
    }

    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, msg } => {
                if let Some(msg) = self.check(msg) {
                    cx.up(Up::Cast { from, msg });
                }
            }
            Up::Send { from, msg } => {
                if let Some(msg) = self.check(msg) {
                    cx.up(Up::Send { from, msg });
                }
            }
            ev => cx.up(ev),
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("checked", self.checked);
        report("bad_checksum", self.bad_checksum);
        report("bad_header", self.bad_header);
    }
}

impl Checksum {
    /// The message without our header if its checksum matches; `None`, counted, if not.
    fn check(&mut self, mut msg: Message) -> Option<Message> {
        match msg.pop::<u32>() {
            Ok(sum) if sum == checksum(&msg) => {
                self.checked += 1;
                Some(msg)
            }
            Ok(_) => {
                self.bad_checksum += 1;
                None
            }
            Err(_) => {
                self.bad_header += 1;
                None
            }
        }
    }
}

/// FNV-1a over what the layers above wrote: their headers, then the payload. Going down these
/// are the headers pushed so far and the payload; going up, what is left once ours is popped.
fn checksum(msg: &Message) -> u32 {
    let bytes = msg.headers().iter().chain(msg.payload().iter());
    bytes.fold(0x811c_9dc5, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}
// ANCHOR_END: layer

// ANCHOR: delay
/// `delay(by=...)`: holds every event from below for `by`, then passes it up, in order.
const DELAY: LayerInfo = LayerInfo {
    name: "delay",
    doc: "holds every event from below for `by` (default 1ms), then passes it up, in order",
    needs: Props::NONE,
    gives: Props::NONE,
    hides: Props::NONE,
    build: build_delay,
};

fn build_delay(args: &mut Args<'_>, _view: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let by = args.duration("by", Duration::from_millis(1))?;
    Ok(Box::new(Delay { by, held: VecDeque::new(), delayed: 0 }))
}

/// The token of our one timer.
const RELEASE: Token = Token(0);

#[derive(Debug)]
struct Delay {
    by: Duration,
    /// Events from below and when each is due, oldest first.
    held: VecDeque<(Time, Up)>,
    delayed: u64,
}

impl Layer for Delay {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        let due = cx.now() + self.by;
        // The first event held sets the timer; those behind it wait their turn.
        if self.held.is_empty() {
            cx.timer_at(due, RELEASE);
        }
        self.held.push_back((due, ev));
        self.delayed += 1;
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        cx.down(ev);
    }

    fn timer(&mut self, _token: Token, cx: &mut Cx<'_>) {
        while self.held.front().is_some_and(|(due, _)| *due <= cx.now()) {
            if let Some((_, ev)) = self.held.pop_front() {
                cx.up(ev);
            }
        }
        if let Some((due, _)) = self.held.front() {
            cx.timer_at(*due, RELEASE);
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("delayed", self.delayed);
    }
}
// ANCHOR_END: delay

// ANCHOR: registry
/// The toolkit's layers and presets, and ours.
fn registry() -> Registry {
    let mut registry = horus::registry();
    registry.add_layer(CHECKSUM).add_layer(DELAY);
    registry
}
// ANCHOR_END: registry

// ANCHOR: simulate
/// Simulates five members of `spec` over a network that loses 5% of the datagrams, one of
/// them crashing at 700 ms; returns a summary and the checker's violations.
fn run(registry: &Registry, spec: &str, seed: u64) -> (String, usize) {
    let plan = horus::processes(registry.plan(spec).expect("the spec builds"));
    let config = SimConfig {
        seed,
        link: LinkModel { loss: 0.05, ..LinkModel::default() },
        script: vec![(Time::from_millis(700), Fault::Crash(3))],
        ..SimConfig::default()
    };
    let run = simulate(&*plan, &config).expect("the simulation runs");
    let violations = check(&run.history, &run.promises).violations.len();
    // Every layer's counters, summed over the members.
    let counter = |layer, name| run.stats.counters.get(&(layer, name)).copied().unwrap_or(0);
    let line = format!(
        "{} casts, {} deliveries; checksum checked {}, bad {}; delay held {}; {} violations",
        run.stats.casts,
        run.stats.deliveries,
        counter("checksum", "checked"),
        counter("checksum", "bad_checksum"),
        counter("delay", "delayed"),
        violations,
    );
    (line, violations)
}
// ANCHOR_END: simulate

#[cfg(test)]
mod tests {
    use super::*;
    use horus::core::testing::Harness;
    use horus::core::Rank;
    use horus::Bytes;

    // ANCHOR: test
    #[test]
    fn a_message_altered_on_the_way_is_dropped_and_counted() {
        let mut h = Harness::from_info(3, 0, &CHECKSUM, "");
        h.down(Down::Cast(Message::new(Bytes::from_static(b"hello"))));
        let [Down::Cast(sent)] = &h.take_downs()[..] else { panic!("one cast goes down") };
        let wire = sent.to_bytes();

        // As sent: delivered, without the checksum.
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(wire.clone()) });
        let [Up::Cast { msg, .. }] = &h.take_ups()[..] else { panic!("one cast comes up") };
        assert_eq!(msg.payload(), &b"hello"[..]);

        // One bit flipped in the payload: dropped.
        let mut altered = wire.to_vec();
        *altered.last_mut().unwrap() ^= 1;
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(altered.into()) });
        assert!(h.take_ups().is_empty());
        assert_eq!((h.counter("checked"), h.counter("bad_checksum")), (1, 1));
    }

    #[test]
    fn events_from_below_come_up_after_the_delay_in_order() {
        let mut h = Harness::from_info(3, 0, &DELAY, "by=5ms");
        h.up(Up::Cast { from: Rank(1), msg: Message::new(Bytes::from_static(b"a")) });
        h.advance(Duration::from_millis(2));
        h.up(Up::Cast { from: Rank(2), msg: Message::new(Bytes::from_static(b"b")) });
        h.advance(Duration::from_millis(4));
        assert_eq!(h.take_ups().len(), 1, "a is due at 5ms, b at 7ms");
        h.advance(Duration::from_millis(1));
        assert!(matches!(&h.take_ups()[..], [Up::Cast { from: Rank(2), .. }]));
    }
    // ANCHOR_END: test

    #[test]
    fn the_stack_with_both_layers_keeps_every_promise() {
        let registry = registry();
        for seed in 0..5 {
            let (line, violations) = run(&registry, "vsync:checksum:delay(by=1ms)", seed);
            assert_eq!(violations, 0, "seed {seed}: {line}");
        }
        assert!(registry.plan("gms:checksum").is_err());
    }
}
