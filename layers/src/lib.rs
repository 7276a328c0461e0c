//! The protocol layers of Horus for Rust, one per module, named as in stack specs.
//!
//! The canonical order, top to bottom, is
//! `frag:total:causal:safe:flow:stable:mnak:pt2pt:pack` (the preset `ordered`; `reliable` is
//! the same without the three ordering layers):
//! - fragmentation on top, so every layer below works on fragments: a lost fragment is resent
//!   alone, and the ordering layers order fragments, which keeps their counts in step with
//!   stability's;
//! - `total` over `causal`, so the sequencer sees casts in causal order and the total order is
//!   causal too (levels nest as Spread's do);
//! - `safe` right over the layers that count casts as `stable` does (flow only holds casts);
//! - flow control above reliability, so it counts what receivers really got;
//! - stability just above `mnak`, whose sequence numbers it counts in;
//! - failure suspicion (`suspect`) right under `mnak`, where it hears first-hand datagrams;
//! - packing at the bottom, so retransmissions and control traffic are packed too.

use horus_core::Registry;

pub mod causal;
pub mod flow;
pub mod frag;
pub mod mnak;
pub mod pack;
pub mod pt2pt;
pub mod safe;
pub mod stable;
pub mod suspect;
pub mod total;

/// Every layer of this crate, and the presets built from them.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    for info in all() {
        r.add_layer(info);
    }
    r.add_preset(
        "vsync",
        "gms:frag:total:causal:safe:flow:stable:mnak:suspect:pt2pt:pack",
        "the default: every service level, in views that change when members fail",
    );
    r.add_preset(
        "evs",
        "gms(partitionable=true):frag:total:causal:safe:flow:stable:mnak:suspect:pt2pt:pack",
        "every service level, partitionable: each side of a partition goes on, and views merge when it heals",
    );
    r.add_preset(
        "ordered",
        "frag:total:causal:safe:flow:stable:mnak:pt2pt:pack",
        "every service level: fifo, causal, total and safe, over the reliable layers",
    );
    r.add_preset(
        "reliable",
        "frag:flow:stable:mnak:pt2pt:pack",
        "reliable FIFO multicast and point-to-point, any size, flow-controlled and packed",
    );
    r
}

/// The layers of this crate.
pub fn all() -> Vec<horus_core::LayerInfo> {
    vec![
        frag::INFO,
        total::INFO,
        causal::INFO,
        safe::INFO,
        flow::INFO,
        stable::INFO,
        mnak::INFO,
        suspect::INFO,
        pt2pt::INFO,
        pack::INFO,
    ]
}
