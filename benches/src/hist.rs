//! [`Histogram`]: latencies in nanoseconds, HDR-style, mergeable across processes.
//!
//! Values below 256 ns are counted exactly; above, each power of two is cut into 128 buckets,
//! so a percentile read back is within 0.8 % of the true sample (the bucket's midpoint is
//! reported). The largest value is kept exactly. Recording is an index computation and an
//! add: no allocation, no sorting, and a member's histogram goes to the parent as its
//! non-empty buckets only.

use serde::{Deserialize, Serialize};

/// Bits of precision: `2^BITS` exact values, then `2^(BITS-1)` buckets per power of two.
const BITS: u32 = 8;
const LINEAR: u64 = 1 << BITS;
const HALF: u64 = 1 << (BITS - 1);
/// Buckets for every `u64`.
const BUCKETS: usize = (LINEAR + (64 - BITS as u64) * HALF) as usize;

/// A latency histogram (nanoseconds).
///
/// # Examples
/// ```
/// use horus_benches::hist::Histogram;
///
/// let mut h = Histogram::new();
/// for us in 1..=100u64 {
///     h.record(us * 1000);
/// }
/// let p50 = h.percentile(0.5);
/// assert!((49_500..=50_500).contains(&p50), "{p50}");
/// assert_eq!(h.max(), 100_000);
/// assert_eq!(h.count(), 100);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Sparse", into = "Sparse")]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram { counts: vec![0; BUCKETS], count: 0, max: 0 }
    }

    /// Counts one sample of `value` nanoseconds.
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.count += 1;
        self.max = self.max.max(value);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest sample (0 if none).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value under which a fraction `q` (0 to 1) of the samples fall: the midpoint of the
    /// bucket holding the sample of rank `ceil(q × count)`, never above the largest sample;
    /// 0 if there is none.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bounds(i);
                return (lo + (hi - lo) / 2).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of `v`.
fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let m = 63 - v.leading_zeros(); // floor(log2 v), at least BITS
    let top = v >> (m - (BITS - 1)); // in [HALF, LINEAR)
    (LINEAR + u64::from(m - BITS) * HALF + (top - HALF)) as usize
}

/// The values of bucket `i`, inclusive.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i);
    }
    let m = (i - LINEAR) / HALF + u64::from(BITS);
    let top = (i - LINEAR) % HALF + HALF;
    let shift = m - u64::from(BITS - 1);
    let lo = top << shift;
    (lo, lo + ((1u64 << shift) - 1))
}

/// The wire form: non-empty buckets only.
#[derive(Serialize, Deserialize)]
struct Sparse {
    count: u64,
    max: u64,
    /// `(bucket, count)`.
    buckets: Vec<(u32, u64)>,
}

impl From<Histogram> for Sparse {
    fn from(h: Histogram) -> Sparse {
        let buckets = h
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (i as u32, c))
            .collect();
        Sparse { count: h.count, max: h.max, buckets }
    }
}

impl From<Sparse> for Histogram {
    /// Buckets out of range (a corrupt line) are dropped; the total is recounted from what
    /// is kept, so percentiles stay consistent.
    fn from(s: Sparse) -> Histogram {
        let mut h = Histogram::new();
        for (i, c) in s.buckets {
            if let Some(slot) = h.counts.get_mut(i as usize) {
                *slot += c;
                h.count += c;
            }
        }
        h.max = s.max;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_inside_its_buckets_bounds() {
        let mut v = 0u64;
        while v < u64::MAX / 3 {
            let (lo, hi) = bounds(index(v));
            assert!(lo <= v && v <= hi, "{v} not in {lo}..={hi}");
            assert!((hi - lo) as f64 <= (lo as f64 / 128.0).max(0.0), "{v}: bucket too wide");
            v = v * 3 / 2 + 1;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_within_a_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.percentile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "p{q}: {got} vs {want}");
        }
        assert_eq!(h.percentile(1.0), 1_000_000);
    }

    #[test]
    fn merged_histograms_read_as_one_and_survive_the_wire() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        (0..1000).for_each(|v| a.record(v));
        (1000..2000).for_each(|v| b.record(v));
        a.merge(&b);
        assert_eq!((a.count(), a.max()), (2000, 1999));
        let p50 = a.percentile(0.5);
        assert!((990..=1010).contains(&p50), "{p50}");
        let back: Histogram = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn empty_histogram_and_corrupt_buckets_do_not_panic() {
        assert_eq!(Histogram::new().percentile(0.99), 0);
        let h: Histogram =
            serde_json::from_str(r#"{"count":9,"max":5,"buckets":[[4000000000,3],[5,2]]}"#)
                .unwrap();
        assert_eq!((h.count(), h.percentile(0.5)), (2, 5));
    }
}
