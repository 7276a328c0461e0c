//! The cost per message of each layer and of whole stacks, with no network.
//!
//! Each benchmark casts a batch of messages from one member of a two-member group to the other
//! and runs both stacks until nothing is in flight: headers pushed and popped, datagrams
//! encoded and decoded, acknowledgements, packing and stability included; no socket. The
//! stacks form a ladder, each rung one layer more than the one below it, so a layer's cost is
//! the difference between its rung and the one under it.
//!
//! `cargo bench -p horus-benches` (criterion; `-- --quick` for a short run).

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use horus_benches::Pair;
use horus_core::Level;

/// Bottom to top: each adds one layer.
const LADDER: &[&str] = &[
    "none",
    "pack(size=64000)",
    "pt2pt:pack(size=64000)",
    "mnak:pt2pt:pack(size=64000)",
    "stable:mnak:pt2pt:pack(size=64000)",
    "flow:stable:mnak:pt2pt:pack(size=64000)",
    "frag(size=64000):flow:stable:mnak:pt2pt:pack(size=64000)",
    "frag(size=64000):safe:flow:stable:mnak:pt2pt:pack(size=64000)",
    "frag(size=64000):causal:safe:flow:stable:mnak:pt2pt:pack(size=64000)",
    "frag(size=64000):total:causal:safe:flow:stable:mnak:pt2pt:pack(size=64000)",
];

/// The whole `ordered` stack, for casts at each level.
const ORDERED: &str = "frag(size=64000):total:causal:safe:flow:stable:mnak:pt2pt:pack(size=64000)";

/// Casts per iteration: what a busy sender emits between two flushes.
const BATCH: usize = 32;

fn stacks(c: &mut Criterion) {
    let registry = horus::registry();
    for size in [64usize, 1024] {
        let mut group = c.benchmark_group(format!("stack/{size}B"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
        let payload = Bytes::from(vec![7u8; size]);
        for spec in LADDER {
            let Ok(plan) = registry.plan(spec) else {
                eprintln!("skipping {spec}: not every layer is built yet");
                continue;
            };
            let mut pair = Pair::new(&plan);
            group.bench_function(BenchmarkId::from_parameter(spec), |b| {
                b.iter(|| {
                    let got = pair.cast_batch(&payload, BATCH, Level::Fifo);
                    assert_eq!(got, BATCH as u64, "{spec}: every cast is delivered");
                })
            });
        }
        group.finish();
    }
}

fn levels(c: &mut Criterion) {
    let plan = horus::registry().plan(ORDERED).expect("the ordered stack builds");
    for size in [64usize, 1024] {
        let mut group = c.benchmark_group(format!("ordered/{size}B"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
        let payload = Bytes::from(vec![7u8; size]);
        for level in Level::ALL {
            let mut pair = Pair::new(&plan);
            group.bench_function(BenchmarkId::from_parameter(level), |b| {
                b.iter(|| {
                    let got = pair.cast_batch(&payload, BATCH, level);
                    assert_eq!(got, BATCH as u64, "{level}: every cast is delivered");
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, stacks, levels);
criterion_main!(benches);
