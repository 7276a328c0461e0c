//! The protocol layers of Horus for Rust, one per module, named as in stack specs.
//!
//! The canonical order, top to bottom, is
//! `frag:flow:stable:mnak:pt2pt:pack` (the preset `reliable`): fragmentation above the
//! reliable layers, so a lost fragment is resent alone; flow control above reliability, so it
//! counts what receivers really got; stability just above `mnak`, whose sequence numbers it
//! counts in; packing at the bottom, so retransmissions and control traffic are packed too.

use horus_core::Registry;

pub mod causal;
pub mod flow;
pub mod frag;
pub mod mnak;
pub mod pack;
pub mod pt2pt;
pub mod stable;

/// Every layer of this crate, and the presets built from them.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    for info in all() {
        r.add_layer(info);
    }
    r.add_preset(
        "reliable",
        "frag:flow:stable:mnak:pt2pt:pack",
        "reliable FIFO multicast and point-to-point, any size, flow-controlled and packed",
    );
    r
}

/// The layers of this crate.
pub fn all() -> Vec<horus_core::LayerInfo> {
    vec![causal::INFO, frag::INFO, flow::INFO, stable::INFO, mnak::INFO, pt2pt::INFO, pack::INFO]
}
