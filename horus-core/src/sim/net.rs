//! The simulated network: per-link loss, duplication, reordering and delay; partitions into
//! components; one-way link failures.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::rng::Rng;

/// How one direction of a link treats datagrams.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub dup: f64,
    /// Probability that a datagram is held back by up to `reorder_delay`, so later ones pass it.
    pub reorder: f64,
    /// One-way delay every datagram takes.
    pub latency: Duration,
    /// Extra delay, uniform in `[0, jitter)`.
    pub jitter: Duration,
    /// The most a reordered datagram is held back.
    pub reorder_delay: Duration,
}

impl Default for LinkModel {
    fn default() -> Self {
        LinkModel {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            latency: Duration::from_micros(50),
            jitter: Duration::from_micros(50),
            reorder_delay: Duration::from_millis(2),
        }
    }
}

/// Why a datagram did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    Loss,
    Partition,
    LinkDown,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Loss => "loss",
            Drop::Partition => "partition",
            Drop::LinkDown => "link down",
        }
    }
}

/// The network between `n` nodes.
#[derive(Clone, Debug)]
pub struct Net {
    default: LinkModel,
    /// Per-link overrides, `links[from * n + to]`.
    links: Vec<Option<LinkModel>>,
    /// The component each node is in; all zero when the network is whole.
    component: Vec<usize>,
    /// One-way failures: `(from, to)` carries nothing.
    down: BTreeSet<(usize, usize)>,
    n: usize,
}

impl Net {
    pub fn new(n: usize, default: LinkModel) -> Self {
        Net { default, links: vec![None; n * n], component: vec![0; n], down: BTreeSet::new(), n }
    }

    /// Overrides the model of the link `from → to`.
    pub fn set_link(&mut self, from: usize, to: usize, model: LinkModel) {
        self.links[from * self.n + to] = Some(model);
    }

    pub fn link(&self, from: usize, to: usize) -> &LinkModel {
        self.links[from * self.n + to].as_ref().unwrap_or(&self.default)
    }

    /// Splits the nodes into components; nodes not named form one more component.
    pub fn partition(&mut self, components: &[Vec<usize>]) {
        self.component = vec![components.len(); self.n];
        for (c, nodes) in components.iter().enumerate() {
            for &node in nodes {
                if node < self.n {
                    self.component[node] = c;
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.component = vec![0; self.n];
    }

    pub fn set_link_down(&mut self, from: usize, to: usize, down: bool) {
        if down {
            self.down.insert((from, to));
        } else {
            self.down.remove(&(from, to));
        }
    }

    pub fn is_whole(&self) -> bool {
        self.down.is_empty() && self.component.iter().all(|c| *c == 0)
    }

    pub fn connected(&self, from: usize, to: usize) -> bool {
        self.component[from] == self.component[to] && !self.down.contains(&(from, to))
    }

    /// The fate of one datagram on `from → to`: the delays after which its copies arrive
    /// (none if lost, two if duplicated), or why it was dropped.
    pub fn transmit(&self, from: usize, to: usize, rng: &mut Rng) -> Result<Vec<Duration>, Drop> {
        if self.component[from] != self.component[to] {
            return Err(Drop::Partition);
        }
        if self.down.contains(&(from, to)) {
            return Err(Drop::LinkDown);
        }
        let link = *self.link(from, to);
        if rng.chance(link.loss) {
            return Err(Drop::Loss);
        }
        let delay = |rng: &mut Rng| {
            let mut d = link.latency + rand_duration(rng, link.jitter);
            if rng.chance(link.reorder) {
                d += rand_duration(rng, link.reorder_delay);
            }
            d
        };
        let first = delay(rng);
        if rng.chance(link.dup) {
            let second = delay(rng);
            Ok(vec![first, second])
        } else {
            Ok(vec![first])
        }
    }
}

fn rand_duration(rng: &mut Rng, max: Duration) -> Duration {
    Duration::from_nanos(rng.range(0, max.as_nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_separates_components_and_heal_rejoins_them() {
        let mut net = Net::new(4, LinkModel::default());
        let mut rng = Rng::new(1);
        net.partition(&[vec![0, 1]]);
        assert_eq!(net.transmit(0, 2, &mut rng), Err(Drop::Partition));
        assert!(net.transmit(0, 1, &mut rng).is_ok());
        assert!(net.transmit(2, 3, &mut rng).is_ok());
        net.heal();
        assert!(net.transmit(0, 2, &mut rng).is_ok());
    }

    #[test]
    fn one_way_failure_blocks_one_direction_only() {
        let mut net = Net::new(2, LinkModel::default());
        let mut rng = Rng::new(1);
        net.set_link_down(0, 1, true);
        assert_eq!(net.transmit(0, 1, &mut rng), Err(Drop::LinkDown));
        assert!(net.transmit(1, 0, &mut rng).is_ok());
    }

    #[test]
    fn loss_and_duplication_follow_the_link_model() {
        let lossy = LinkModel { loss: 0.3, dup: 0.2, ..LinkModel::default() };
        let mut net = Net::new(2, LinkModel::default());
        net.set_link(0, 1, lossy);
        let mut rng = Rng::new(5);
        let (mut lost, mut dups) = (0, 0);
        for _ in 0..10_000 {
            match net.transmit(0, 1, &mut rng) {
                Err(_) => lost += 1,
                Ok(v) if v.len() == 2 => dups += 1,
                Ok(_) => {}
            }
        }
        assert!((2_700..3_300).contains(&lost), "{lost}");
        assert!((1_200..1_600).contains(&dups), "{dups}");
        // The other direction keeps the default, lossless model.
        assert!((0..1000).all(|_| net.transmit(1, 0, &mut rng).is_ok()));
    }
}
